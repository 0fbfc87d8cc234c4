"""A scripted stand-in for qemu-ga's channel socket, for unit tests of SocketTransport.

A UNIX stream server in a thread. Like QEMU's ``-chardev socket,server=on`` it serves
one connection at a time (others wait in the backlog). Each accepted connection runs
the next script from ``scripts``; when they run out, connections run ``default``
(by default: behave like a well-behaved agent, see :class:`Serve`).

A script is a list of steps::

    ScriptedPeer(path, scripts=[[
        Expect("guest-sync-delimited"),     # read the next request, check its command
        SyncReply(before=b'{"return": 7}\\n'),  # stale data, then 0xFF + echo of the id
        Expect("guest-ping"),
        Send(b'{"return": {}}\\n', chunk=1, delay=0.001),  # byte by byte
        Close(),
    ]])

Requests are parsed out of the byte stream (0xFF bytes are noted and dropped, each
line is one JSON request), so ``SyncReply`` can echo the id the client chose.
Whatever goes wrong on the peer side is appended to ``peer.errors``; tests assert it
stays empty.
"""

from __future__ import annotations

import json
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

STRAY_ERROR = (b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\ufffd\'"}}\n')


@dataclass
class Context:
    """What a step can see: the last request and the last sync id."""

    conn: socket.socket
    peer: ScriptedPeer
    index: int  # connection number, from 0
    buf: bytearray = field(default_factory=bytearray)
    request: dict[str, Any] | None = None
    saw_ff: bool = False  # the last request was preceded by 0xFF
    sync_id: int | None = None

    def sendall(self, data: bytes) -> bool:
        try:
            self.conn.sendall(data)
            return True
        except OSError:
            return False


class Step:
    def run(self, ctx: Context) -> bool:
        """Do the step; False ends the connection."""
        raise NotImplementedError


class _Stop(Exception):
    pass


def _read_request(ctx: Context, timeout: float) -> dict[str, Any] | None:
    """The next request (one line of JSON), or None on EOF / timeout / stop."""
    deadline = time.monotonic() + timeout
    while True:
        nl = ctx.buf.find(b"\n")
        if nl >= 0:
            line = bytes(ctx.buf[:nl])
            del ctx.buf[: nl + 1]
            ctx.saw_ff = b"\xff" in line
            line = line.replace(b"\xff", b"").strip()
            if not line:
                continue
            try:
                req: dict[str, Any] = json.loads(line)
            except ValueError:
                ctx.peer.errors.append(f"peer got unparsable request {line[:80]!r}")
                return None
            ctx.request = req
            ctx.peer.requests.append(req)
            if req.get("execute") in ("guest-sync-delimited", "guest-sync"):
                ctx.sync_id = req.get("arguments", {}).get("id")
            return req
        left = deadline - time.monotonic()
        if left <= 0 or ctx.peer.stopping.is_set():
            return None
        ready, _, _ = select.select([ctx.conn], [], [], min(left, 0.05))
        if not ready:
            continue
        try:
            data = ctx.conn.recv(65536)
        except OSError:
            return None
        if not data:
            return None
        ctx.buf += data


@dataclass
class Expect(Step):
    """Wait for the next request; if ``command`` is given it must match."""

    command: str | None = None
    timeout: float = 5.0

    def run(self, ctx: Context) -> bool:
        req = _read_request(ctx, self.timeout)
        if req is None:
            return False
        if self.command is not None and req.get("execute") != self.command:
            ctx.peer.errors.append(f"expected {self.command}, got {req.get('execute')}")
            return False
        return True


@dataclass
class Send(Step):
    """Send bytes (or ``fn(ctx) -> bytes``) in chunks of ``chunk`` bytes, ``delay`` apart."""

    data: bytes | Callable[[Context], bytes]
    chunk: int | None = None
    delay: float = 0.0

    def payload(self, ctx: Context) -> bytes:
        return self.data(ctx) if callable(self.data) else self.data

    def run(self, ctx: Context) -> bool:
        data = self.payload(ctx)
        size = self.chunk or len(data) or 1
        for i in range(0, len(data), size):
            if i and self.delay:
                time.sleep(self.delay)
            if not ctx.sendall(data[i : i + size]):
                return False
        return True


def sync_reply_bytes(ctx: Context, *, stray_error: bool = True, before: bytes = b"",
                     after: bytes = b"", ident: int | None = None) -> bytes:
    """What qemu-ga sends for ``0xFF`` + guest-sync-delimited: the error for the stray
    byte, then the 0xFF sentinel and the echoed id."""
    head = STRAY_ERROR if (stray_error and ctx.saw_ff) else b""
    echo = ctx.sync_id if ident is None else ident
    return head + before + b"\xff" + json.dumps({"return": echo}).encode() + b"\n" + after


@dataclass
class SyncReply(Send):
    """Answer the last guest-sync-delimited. ``before`` goes ahead of the sentinel."""

    data: Any = b""
    stray_error: bool = True
    before: bytes = b""
    after: bytes = b""

    def payload(self, ctx: Context) -> bytes:
        return sync_reply_bytes(ctx, stray_error=self.stray_error, before=self.before, after=self.after)


@dataclass
class Sleep(Step):
    seconds: float

    def run(self, ctx: Context) -> bool:
        return not ctx.peer.stopping.wait(self.seconds)


@dataclass
class Close(Step):
    def run(self, ctx: Context) -> bool:
        return False


@dataclass
class Hold(Step):
    """Stay connected and silent, reading and dropping input, until EOF or stop."""

    def run(self, ctx: Context) -> bool:
        while not ctx.peer.stopping.is_set():
            ready, _, _ = select.select([ctx.conn], [], [], 0.05)
            if ready:
                try:
                    if not ctx.conn.recv(65536):
                        return False
                except OSError:
                    return False
        return False


@dataclass
class Serve(Step):
    """Behave like a well-behaved agent until EOF.

    guest-sync-delimited: stray error (if 0xFF came first), 0xFF, echo; guest-sync:
    echo; guest-ping: {}; test-echo: returns arguments.value; test-sleep: sleeps
    arguments.seconds then returns arguments.value; guest-shutdown: no reply;
    anything else: CommandNotFound.
    """

    def run(self, ctx: Context) -> bool:
        while True:
            req = _read_request(ctx, 3600)
            if req is None:
                return False
            out = answer(ctx, req)
            if out and not ctx.sendall(out):
                return False


def answer(ctx: Context, req: dict[str, Any]) -> bytes:
    cmd = req.get("execute")
    args = req.get("arguments") or {}
    if cmd == "guest-sync-delimited":
        return sync_reply_bytes(ctx)
    if cmd == "guest-sync":
        return json.dumps({"return": args.get("id")}).encode() + b"\n"
    if cmd == "guest-ping":
        return b'{"return": {}}\n'
    if cmd == "test-echo":
        return json.dumps({"return": args.get("value")}).encode() + b"\n"
    if cmd == "test-sleep":
        ctx.peer.stopping.wait(args.get("seconds", 0))
        return json.dumps({"return": args.get("value")}).encode() + b"\n"
    if cmd == "guest-shutdown":
        return b""
    desc = f"The command {cmd} has not been found"
    return json.dumps({"error": {"class": "CommandNotFound", "desc": desc}}).encode() + b"\n"


class Answers(Step):
    """A well-behaved agent (like :class:`Serve`) that also knows the commands of
    ``table``: each is ``(arguments) -> return value``; ``guest-info`` lists them."""

    def __init__(self, table: dict[str, Callable[[dict[str, Any]], Any]], version: str = "7.2.0") -> None:
        self.table = table
        self.version = version

    def run(self, ctx: Context) -> bool:
        names = ["guest-ping", "guest-info", *self.table]
        info = {"version": self.version, "supported_commands": [
            {"name": n, "enabled": True, "success-response": True} for n in names]}
        while True:
            req = _read_request(ctx, 3600)
            if req is None:
                return False
            cmd = str(req.get("execute"))
            if cmd == "guest-info":
                out = json.dumps({"return": info}).encode() + b"\n"
            elif cmd in self.table:
                out = json.dumps({"return": self.table[cmd](req.get("arguments") or {})}).encode() + b"\n"
            else:
                out = answer(ctx, req)
            if out and not ctx.sendall(out):
                return False


class ScriptedPeer:
    """The server. Use as a context manager; ``path`` is where it listens."""

    def __init__(self, path: str, scripts: Sequence[Sequence[Step]] = (),
                 default: Sequence[Step] | None = None) -> None:
        self.path = path
        self.scripts = [list(s) for s in scripts]
        self.default = list(default) if default is not None else [Serve()]
        self.requests: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.connections = 0
        self.stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def commands(self) -> list[str]:
        return [str(r.get("execute")) for r in self.requests]

    def start(self) -> ScriptedPeer:
        abstract = self.path.startswith("@")
        if not abstract and os.path.exists(self.path):
            os.unlink(self.path)
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind("\0" + self.path[1:] if abstract else self.path)
        ls.listen(8)
        self._listener = ls
        self._thread = threading.Thread(target=self._serve, name="scripted-peer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        conn = self._conn
        if conn is not None:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(5)
        if self._listener is not None:
            self._listener.close()
        if not self.path.startswith("@"):
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def __enter__(self) -> ScriptedPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        assert self._listener is not None
        while not self.stopping.is_set():
            ready, _, _ = select.select([self._listener], [], [], 0.01)
            if not ready:
                continue
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            index = self.connections
            self.connections += 1
            steps = self.scripts[index] if index < len(self.scripts) else self.default
            self._conn = conn
            ctx = Context(conn=conn, peer=self, index=index)
            try:
                for step in steps:
                    if self.stopping.is_set() or not step.run(ctx):
                        break
            except Exception as exc:
                self.errors.append(f"peer step failed: {type(exc).__name__}: {exc}")
            finally:
                self._conn = None
                try:
                    conn.close()
                except OSError:
                    pass
