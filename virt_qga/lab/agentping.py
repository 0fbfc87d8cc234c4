"""A minimal raw guest-agent client for the lab's own readiness checks.

The lab must not depend on the project's transports (they are what the lab tests), so
this is deliberately tiny: connect to the channel socket, resynchronise with
``0xFF`` + ``guest-sync-delimited`` (discarding everything up to the ``0xFF`` sentinel
and the reply carrying our id: the agent first answers the stray byte with a parse
error), then run one command.
"""

from __future__ import annotations

import json
import random
import socket
import time
from typing import Any


class AgentSocketError(Exception):
    pass


def socket_command(path: str, command: dict[str, Any], timeout: float = 5.0) -> Any:
    """Run one agent command over the channel socket at ``path``; return its ``return``."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        reader = _Reader(sock, deadline)
        sync_id = random.randint(1, 2**31 - 1)
        sock.sendall(
            b"\xff"
            + json.dumps({"execute": "guest-sync-delimited", "arguments": {"id": sync_id}}).encode()
            + b"\n"
        )
        while True:
            reader.skip_to_sentinel()
            reply = reader.json_line()
            if isinstance(reply, dict) and reply.get("return") == sync_id:
                break
        sock.sendall(json.dumps(command).encode() + b"\n")
        while True:
            reply = reader.json_line()
            if isinstance(reply, dict) and "error" in reply:
                raise AgentSocketError(str(reply["error"].get("desc", reply["error"])))
            if isinstance(reply, dict) and "return" in reply:
                return reply["return"]


class _Reader:
    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buf = b""

    def _fill(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("agent did not answer in time")
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise AgentSocketError("agent channel closed")
        if len(self.buf) > 1 << 20:
            raise AgentSocketError("agent reply too large")
        self.buf += chunk

    def skip_to_sentinel(self) -> None:
        while b"\xff" not in self.buf:
            self.buf = b""
            self._fill()
        self.buf = self.buf.split(b"\xff", 1)[1]

    def json_line(self) -> Any:
        while b"\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            return None
