"""The libvirt transport: ``libvirt_qemu.qemuAgentCommand``.

libvirt owns the agent channel: it syncs with the agent before each command and
serialises commands per domain, so this transport is a thin, stateless layer that
turns timeouts into libvirt's convention and libvirt's errors into ours.

Timeouts. ``qemuAgentCommand`` takes an int: a number of seconds, or one of three
specials, exposed here as :class:`AgentWait`:

* ``BLOCK`` (-2): wait forever. Never used by virt-qga itself; offered for callers
  who know what they do.
* ``DEFAULT`` (-1): the domain's agent timeout (``virDomainAgentSetResponseTimeout``,
  by default libvirt's own, 5 s).
* ``NOWAIT`` (0): return as soon as the command is sent; used for commands that
  never answer on success.
* a positive number of seconds, rounded *up* to a whole second (libvirt's unit).

Size limits. The reply travels in one libvirt RPC string, capped at 4 MiB
(``REMOTE_STRING_MAX``), and libvirtd refuses agent replies above 10 MiB; the request
is a string under the same 4 MiB cap. Callers that move bulk data (file copy) size
their chunks from ``max_reply_bytes`` / ``max_request_bytes``.
"""

from __future__ import annotations

import json
import math
import threading
import time
from enum import IntEnum
from typing import Any

from virt_qga.connection import import_libvirt, lookup_domain, open_connection
from virt_qga.errors import (
    AgentNotConnectedError,
    AgentTimeoutError,
    BadInputError,
    DomainNotRunningError,
    ProtocolError,
)
from virt_qga.libvirt_errors import map_libvirt_error
from virt_qga.transport.base import DEFAULT_TIMEOUT
from virt_qga.transport.replies import error_from_reply

#: libvirt's remote protocol string cap, less room for the JSON envelope.
REMOTE_STRING_MAX = 4 * 1024 * 1024
ENVELOPE = 4096


#: Seconds to wait for an error reply to a command that never answers on success.
NO_REPLY_WAIT = 2


class AgentWait(IntEnum):
    BLOCK = -2
    DEFAULT = -1
    NOWAIT = 0


def libvirt_timeout(timeout: float | AgentWait | None, default: float) -> int:
    """Convert a timeout to qemuAgentCommand's int argument."""
    if isinstance(timeout, AgentWait):
        return int(timeout)
    if timeout is None:
        timeout = default
    if timeout <= 0:
        raise ValueError("timeout must be positive (use AgentWait for the special values)")
    return max(1, math.ceil(timeout))


class LibvirtTransport:
    """Agent commands through libvirt for one domain."""

    kind = "libvirt"
    max_request_bytes = REMOTE_STRING_MAX - ENVELOPE
    max_reply_bytes = REMOTE_STRING_MAX - ENVELOPE

    def __init__(self, domain: str | Any, uri: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT, conn: Any | None = None) -> None:
        self._lv = import_libvirt()
        import libvirt_qemu

        self._qemu = libvirt_qemu
        if isinstance(domain, str):
            self.conn = conn or open_connection(uri)
            self.dom = lookup_domain(self.conn, domain)
        else:
            self.dom = domain
            self.conn = domain.connect()
        self.domain_name: str = self.dom.name()
        self.timeout = timeout
        self.target = f"{self.conn.getURI()} {self.domain_name}"
        # libvirt serialises per domain anyway; the lock keeps our own threads in order
        # so that a timeout in one cannot be mistaken for another's.
        self._lock = threading.Lock()

    def _send(self, command: str, arguments: dict[str, Any] | None, wait: int) -> str | None:
        payload: dict[str, Any] = {"execute": command}
        if arguments:
            payload["arguments"] = arguments
        text = json.dumps(payload, separators=(",", ":"))
        if len(text) > self.max_request_bytes:
            raise BadInputError(f"request of {len(text)} bytes exceeds libvirt's limit of "
                                f"{self.max_request_bytes} bytes", command=command)
        with self._lock:
            start = time.monotonic()
            try:
                result: str | None = self._qemu.qemuAgentCommand(self.dom, text, wait, 0)
                return result
            except self._lv.libvirtError as exc:
                seconds = float(wait) if wait > 0 else None
                raise map_libvirt_error(exc, domain=self.domain_name, command=command, timeout=seconds,
                                        elapsed=time.monotonic() - start) from exc

    def execute(self, command: str, arguments: dict[str, Any] | None = None, *,
                timeout: float | AgentWait | None = None) -> Any:
        wait = libvirt_timeout(timeout, self.timeout)
        raw = self._send(command, arguments, wait)
        if raw is None:
            if wait == AgentWait.NOWAIT:
                return None
            raise ProtocolError("libvirt returned no reply", domain=self.domain_name, command=command)
        if len(raw) > self.max_reply_bytes + ENVELOPE:
            raise ProtocolError(f"reply of {len(raw)} bytes exceeds the cap", command=command)
        try:
            reply = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ProtocolError(f"reply is not JSON: {exc}", domain=self.domain_name,
                                command=command) from exc
        if not isinstance(reply, dict):
            raise ProtocolError("reply is not a JSON object", domain=self.domain_name, command=command)
        if "error" in reply:
            err = error_from_reply(reply["error"], command)
            err.domain = self.domain_name
            raise err
        if "return" not in reply:
            raise ProtocolError("reply has neither 'return' nor 'error'", domain=self.domain_name,
                                command=command)
        return reply["return"]

    def execute_no_reply(self, command: str, arguments: dict[str, Any] | None = None) -> None:
        """Send a command the agent never answers on success (guest-shutdown, -suspend-*).

        Not with ``NOWAIT``: through ``qemuAgentCommand`` a zero timeout also gives
        libvirt's own guest-sync no time, so it fails at once ("Guest agent not available
        for now") and whether the command went out is a race (both seen in the lab).
        Instead wait ``NO_REPLY_WAIT`` seconds: an error reply (suspend unsupported,
        command disabled) is raised; silence, or the domain stopping, means delivered.
        Callers confirm the effect from outside (domain state), never from this call.
        """
        try:
            self.execute(command, arguments, timeout=NO_REPLY_WAIT)
        except (AgentTimeoutError, AgentNotConnectedError, DomainNotRunningError):
            return

    def close(self) -> None:
        """Nothing to release: the connection is shared and cached per URI."""
