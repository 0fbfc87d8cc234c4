"""Direct client for qemu-ga's channel socket (a UNIX stream socket).

This is the host end of the agent's virtio-serial port, e.g. QEMU started with
``-chardev socket,path=qga.sock,server=on,wait=off,id=qga0`` and
``-device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0``; it also works
with ``qemu-ga -m unix-listen``. See ``docs/transport-socket.md`` for the protocol,
the sync algorithm and the limits, and why they were chosen.

In short:

* one request = ``{"execute": C, "arguments": A}`` + ``\\n``, sent in one ``send``;
* one reply = one JSON object (qemu-ga adds a newline, which we do not rely on);
* on connect, and after any timeout or desync, we *resync*: send ``0xFF`` +
  ``guest-sync-delimited`` with a random 63-bit id, discard everything up to the
  agent's ``0xFF`` sentinel, then discard replies until one returns our id;
* every wait has a monotonic deadline, every buffer a size cap, and nothing but
  :mod:`virt_qga.errors` leaves :meth:`SocketTransport.execute`.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import select
import socket
import stat
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from virt_qga.errors import (
    AgentNotConfiguredError,
    AgentNotConnectedError,
    AgentTimeoutError,
    AgentUnavailableError,
    BadInputError,
    ProtocolError,
    VirtQgaError,
)
from virt_qga.transport.base import DEFAULT_TIMEOUT, MAX_REPLY_BYTES
from virt_qga.transport.replies import error_from_reply, sanitize

__all__ = ["MAX_REQUEST_BYTES", "SYNC_SENTINEL", "SocketTransport"]

#: Largest request we send, bytes of serialised JSON. qemu's JSON streamer
#: (qobject/json-streamer.c) rejects a message once the bytes of its tokens exceed
#: MAX_TOKEN_SIZE = 64 MiB (also 2 Mi tokens, 1024 nesting levels). We stop at 48 MiB:
#: requests are compact JSON, so 48 MiB of request is < 48 MiB of tokens, leaving
#: 16 MiB of margin, and a small guest must hold the tokens, the parsed string and
#: the decoded data at once. 48 MiB is also qemu-ga's own cap on guest-file-read.
MAX_REQUEST_BYTES = 48 * 1024 * 1024

#: The byte qemu-ga writes before a guest-sync-delimited reply, and that we send
#: before the request to flush the agent's parser. Never valid in UTF-8.
SYNC_SENTINEL = 0xFF

#: recv size. Large enough that a guest-file-read reply needs few syscalls.
_RECV_CHUNK = 256 * 1024
#: qemu-ga's replies nest a handful of levels; Python's json recursion gives out near 1000.
_MAX_DEPTH = 512

_T = TypeVar("_T")


class _Mark:
    """A scanner outcome that is not a complete object."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


_SENTINEL = _Mark("sentinel")  # a 0xFF byte: everything before it is stale
_GARBAGE = _Mark("garbage")  # a byte that cannot start a JSON object at top level
_TOO_DEEP = _Mark("too-deep")  # nesting beyond _MAX_DEPTH

_WS = re.compile(rb"[ \t\r\n]*")
_OUTSIDE = re.compile(rb'[{}\[\]"\xff]')  # bytes that matter outside a string
_INSIDE = re.compile(rb'["\\\xff]')  # bytes that matter inside a string


def _skip_ws(buf: bytearray) -> None:
    m = _WS.match(buf)
    if m is not None and m.end():
        del buf[: m.end()]


class _Scanner:
    """Incremental framing of a byte stream into top-level JSON objects.

    Tracks brace depth and string/escape state across reads, so an object split over
    any number of reads (byte by byte too) is found, several objects in one read are
    returned one at a time, and each byte is scanned once (the regexes skip long
    strings, e.g. base64 file data, at C speed). A 0xFF byte anywhere resets the
    state, as the guest-sync-delimited doc asks. Objects are validated later by
    ``json.loads``; this only finds where they end.
    """

    __slots__ = ("buf", "depth", "in_str", "pos")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 0
        self.depth = 0
        self.in_str = False

    def clear(self) -> None:
        self.buf.clear()
        self._reset()

    def _reset(self) -> None:
        self.pos = 0
        self.depth = 0
        self.in_str = False

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self.buf += data

    def pending(self) -> int:
        """Bytes held: the partial object being assembled (plus any read after it)."""
        return len(self.buf)

    def idle(self) -> bool:
        """True when nothing but whitespace is buffered."""
        if self.depth:
            return False
        _skip_ws(self.buf)
        return not self.buf

    def skip_to_sentinel(self) -> tuple[bool, int]:
        """Drop everything up to and including the next 0xFF.

        Returns (found, bytes dropped). Without a 0xFF the whole buffer is dropped,
        so stale data costs no memory.
        """
        self._reset()
        idx = self.buf.find(SYNC_SENTINEL)
        if idx < 0:
            dropped = len(self.buf)
            self.buf.clear()
            return False, dropped
        del self.buf[: idx + 1]
        return True, idx + 1

    def next(self) -> bytes | _Mark | None:
        """The next complete object, a mark, or None when more input is needed."""
        buf = self.buf
        if self.depth == 0:
            _skip_ws(buf)
            if not buf:
                return None
            first = buf[0]
            if first == SYNC_SENTINEL:
                del buf[:1]
                return _SENTINEL
            if first != 0x7B:  # '{'
                return _GARBAGE
            self.depth = 1
            self.pos = 1
            self.in_str = False
        while True:
            if self.in_str:
                m = _INSIDE.search(buf, self.pos)
                if m is None:
                    self.pos = len(buf)
                    return None
                i = m.start()
                c = buf[i]
                if c == 0x22:  # closing quote
                    self.in_str = False
                    self.pos = i + 1
                elif c == 0x5C:  # backslash: skip the escaped byte (unless it is 0xFF)
                    if i + 1 >= len(buf):
                        self.pos = i
                        return None
                    self.pos = i + 1 if buf[i + 1] == SYNC_SENTINEL else i + 2
                else:
                    del buf[: i + 1]
                    self._reset()
                    return _SENTINEL
            else:
                m = _OUTSIDE.search(buf, self.pos)
                if m is None:
                    self.pos = len(buf)
                    return None
                i = m.start()
                c = buf[i]
                if c == 0x22:
                    self.in_str = True
                    self.pos = i + 1
                elif c == 0x7B or c == 0x5B:
                    self.depth += 1
                    self.pos = i + 1
                    if self.depth > _MAX_DEPTH:
                        return _TOO_DEEP
                elif c == 0x7D or c == 0x5D:
                    self.depth -= 1
                    self.pos = i + 1
                    if self.depth == 0:
                        obj = bytes(buf[: i + 1])
                        del buf[: i + 1]
                        self._reset()
                        return obj
                else:
                    del buf[: i + 1]
                    self._reset()
                    return _SENTINEL


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _decode(raw: bytes) -> Any:
    """Strict UTF-8, strict JSON. Raises UnicodeDecodeError/ValueError/RecursionError."""
    return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)


def _secs(t: float) -> str:
    """5 -> '5.0', 0.25 -> '0.25': what a user reads in 'no reply within ... s'."""
    return f"{t:.1f}" if round(t, 1) == t else f"{t:.3g}"


class _PeerClosed(Exception):
    """Internal: EOF / EPIPE / ECONNRESET. ``sent`` says whether any byte left us."""

    def __init__(self, sent: bool = True) -> None:
        super().__init__("peer closed")
        self.sent = sent


class _SendTimeout(Exception):
    """Internal: the peer did not take the whole request before the deadline."""


class SocketTransport:
    """Talks to one qemu-ga over its channel socket. Safe to share between threads.

    ``path`` is the socket's path (``@name`` for an abstract socket). The connection
    is opened lazily, kept open, and resynchronised only on connect, after a timeout
    or after anything that may have left the stream out of step.

    Deadlines are separate and each bounded: connecting (``connect_timeout``), the
    sync (``sync_timeout``, when one is needed) and the command itself (``timeout``,
    or the per-call one). After :meth:`close` the transport can be used again; it then
    reconnects.
    """

    kind = "socket"

    def __init__(
        self,
        path: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = 5.0,
        sync_timeout: float = 5.0,
        max_reply_bytes: int = MAX_REPLY_BYTES,
    ) -> None:
        try:
            path = os.fspath(path)
        except TypeError:
            raise BadInputError(f"agent socket path must be a string, not {type(path).__name__}",
                                field="path") from None
        if not isinstance(path, str) or not path or "\0" in path:
            raise BadInputError("agent socket path must be a non-empty string without NUL bytes",
                                field="path")
        self.target: str = path
        self.timeout = self._check_seconds(timeout, "timeout")
        self.connect_timeout = self._check_seconds(connect_timeout, "connect_timeout")
        self.sync_timeout = self._check_seconds(sync_timeout, "sync_timeout")
        if isinstance(max_reply_bytes, bool) or not isinstance(max_reply_bytes, int) or max_reply_bytes < 64:
            raise BadInputError("max_reply_bytes must be an integer >= 64", field="max_reply_bytes")
        self.max_reply_bytes: int = max_reply_bytes
        self.max_request_bytes: int = MAX_REQUEST_BYTES
        #: Bytes we are willing to read and throw away during one resync: a late
        #: maximal reply (e.g. guest-file-read) plus slack. Beyond that the stream is
        #: not an agent's and we give up with ProtocolError.
        self.max_discard_bytes: int = 2 * max_reply_bytes + (1 << 20)

        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._poll_in: Any = None
        self._poll_out: Any = None
        self._scanner = _Scanner()
        self._synced = False
        self._scratch = bytearray(_RECV_CHUNK)
        self._scratch_view = memoryview(self._scratch)
        #: Counters for tests and diagnostics.
        self.connects = 0
        self.syncs = 0

    # ------------------------------------------------------------------ public API

    def execute(self, command: str, arguments: dict[str, Any] | None = None, *,
                timeout: float | None = None) -> Any:
        """Send one command and return its ``return`` member.

        Raises ``AgentTimeoutError`` when no reply comes within ``timeout`` seconds
        (the late reply is discarded by the resync before the next command),
        ``GuestError``/``CommandNotSupportedError`` for an error reply,
        ``ProtocolError`` for a malformed or oversized one, ``AgentUnavailableError``
        subclasses when there is no agent to talk to, ``BadInputError`` when the
        request cannot be encoded or is too large (nothing is sent then).
        """
        t = self.timeout if timeout is None else self._check_seconds(timeout, "timeout")
        data = self._encode(command, arguments)
        self._acquire(command, t + self.connect_timeout + self.sync_timeout, t)
        try:
            return self._guarded(command, lambda: self._exchange(command, data, t))
        finally:
            self._lock.release()

    def execute_no_reply(self, command: str, arguments: dict[str, Any] | None = None) -> None:
        """Send a command the agent does not answer on success (guest-shutdown,
        guest-suspend-*) and return once it is handed to the socket.

        The agent still answers a *failure* of such a command, so the connection is
        marked for resync: that reply is discarded before the next command.
        """
        data = self._encode(command, arguments)
        t = self.timeout
        self._acquire(command, t + self.connect_timeout + self.sync_timeout, t)
        try:
            self._guarded(command, lambda: self._hand_over(command, data, t))
        finally:
            self._lock.release()

    def sync(self, timeout: float | None = None) -> int:
        """Resynchronise now (connecting if needed) and return the id that was echoed.

        For tests and diagnostics; :meth:`execute` syncs by itself when needed.
        """
        t = self.sync_timeout if timeout is None else self._check_seconds(timeout, "timeout")
        self._acquire("guest-sync-delimited", t + self.connect_timeout, t)
        try:
            return self._guarded("guest-sync-delimited", lambda: self._sync_now(t))
        finally:
            self._lock.release()

    def close(self) -> None:
        """Close the connection. Idempotent; a later call reconnects.

        If another thread is in the middle of a command, its socket is shut down so
        that command fails at once with AgentNotConnectedError.
        """
        if self._lock.acquire(blocking=False):
            try:
                self._drop()
            finally:
                self._lock.release()
        else:
            sock = self._sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def __enter__(self) -> SocketTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "connected" if self._sock is not None else "idle"
        return f"SocketTransport({self.target!r}, {state})"

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _check_seconds(value: Any, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value <= 0:
            raise BadInputError(f"{name} must be a positive number of seconds, not {value!r}", field=name)
        return float(value)

    def _encode(self, command: Any, arguments: Any) -> bytes:
        if not isinstance(command, str) or not command:
            raise BadInputError("command must be a non-empty string", field="command")
        if arguments is not None and not isinstance(arguments, dict):
            raise BadInputError(f"{command}: arguments must be an object (dict), not "
                                f"{type(arguments).__name__}", field="arguments", command=command)
        req: dict[str, Any] = {"execute": command}
        if arguments is not None:
            req["arguments"] = arguments
        try:
            text = json.dumps(req, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise BadInputError(f"{command}: arguments cannot be sent as JSON: {sanitize(str(exc))}",
                                field="arguments", command=command) from None
        data = text.encode("ascii") + b"\n"
        if len(data) > self.max_request_bytes:
            raise BadInputError(f"{command}: request is {len(data)} bytes; the agent socket transport "
                                f"sends at most {self.max_request_bytes}", field="arguments", command=command)
        return data

    def _acquire(self, command: str, wait: float, t: float) -> None:
        if not self._lock.acquire(timeout=wait):
            raise AgentTimeoutError(f"{command}: no reply within {_secs(t)} s "
                                    "(the connection stayed busy with another command)", command=command)

    def _guarded(self, command: str, fn: Callable[[], _T]) -> _T:
        """Run one exchange; let only virt_qga.errors out."""
        try:
            return fn()
        except VirtQgaError:
            raise
        except OSError as exc:
            self._drop()
            why = exc.strerror or type(exc).__name__
            raise AgentNotConnectedError(f"I/O error on agent socket {self.target}: {why}",
                                         command=command) from exc
        except Exception as exc:
            self._drop()
            raise ProtocolError(f"unexpected failure on agent socket {self.target}: "
                                f"{type(exc).__name__}: {sanitize(str(exc), 200)}", command=command) from exc

    # ------------------------------------------------------------------ connection

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        self._poll_in = self._poll_out = None
        self._synced = False
        self._scanner.clear()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _connect(self) -> None:
        path = self.target
        addr = "\0" + path[1:] if path.startswith("@") else path
        deadline = time.monotonic() + self.connect_timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            while True:
                try:
                    sock.connect(addr)
                    break
                except (BlockingIOError, InterruptedError):
                    # AF_UNIX answers EAGAIN when the listener's backlog is full.
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise AgentNotConnectedError(
                            f"agent socket {path} did not accept a connection within "
                            f"{_secs(self.connect_timeout)} s (listener backlog full)") from None
                    time.sleep(min(0.01, left))
        except FileNotFoundError:
            sock.close()
            raise AgentNotConfiguredError(f"no agent socket at {path}") from None
        except NotADirectoryError:
            sock.close()
            raise AgentNotConfiguredError(f"no agent socket at {path} (a parent is not a directory)") \
                from None
        except PermissionError:
            sock.close()
            raise AgentUnavailableError(
                f"permission denied on agent socket {path}: run as a user allowed to open it "
                "(usually root or the owner of the QEMU process)") from None
        except ConnectionRefusedError:
            sock.close()
            if not self._is_socket(path):
                raise AgentNotConfiguredError(f"{path} is not a socket") from None
            raise AgentNotConnectedError(f"nothing is listening on agent socket {path} "
                                         "(connection refused; is the VM running?)") from None
        except OSError as exc:
            sock.close()
            if "too long" in str(exc):
                raise BadInputError(f"agent socket path is too long for AF_UNIX: {path}",
                                    field="path") from None
            raise AgentNotConnectedError(f"cannot connect to agent socket {path}: "
                                         f"{exc.strerror or exc}") from None
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._poll_in = select.poll()
        self._poll_in.register(sock.fileno(), select.POLLIN)
        self._poll_out = select.poll()
        self._poll_out.register(sock.fileno(), select.POLLOUT)
        self._scanner.clear()
        self._synced = False
        self.connects += 1

    @staticmethod
    def _is_socket(path: str) -> bool:
        if path.startswith("@"):
            return True
        try:
            return stat.S_ISSOCK(os.stat(path).st_mode)
        except OSError:
            return True  # cannot tell; keep the "refused" message

    # ------------------------------------------------------------------ raw I/O

    def _send(self, data: bytes, deadline: float) -> None:
        """Send all of data. Raises _PeerClosed(sent=...) or _SendTimeout."""
        sock = self._sock
        assert sock is not None
        view = memoryview(data)
        sent_any = False
        while view:
            try:
                n = sock.send(view, socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                n = -1
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                raise _PeerClosed(sent=sent_any) from None
            if n > 0:
                sent_any = True
                view = view[n:]
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise _SendTimeout()
            self._poll_out.poll(max(1, math.ceil(left * 1000)))

    def _recv(self, deadline: float) -> int:
        """Read one chunk into the scanner. Returns bytes read, 0 on EOF, -1 on deadline."""
        sock = self._sock
        assert sock is not None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return -1
            if not self._poll_in.poll(max(1, math.ceil(left * 1000))):
                continue
            try:
                n = sock.recv_into(self._scratch_view, _RECV_CHUNK)
            except (BlockingIOError, InterruptedError):
                continue
            except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
                return 0
            if n:
                self._scanner.feed(self._scratch_view[:n])
            return n

    # ------------------------------------------------------------------ sync

    def _ensure_ready(self) -> None:
        if self._sock is None:
            self._connect()
        if not self._synced:
            self._sync_with_reconnect(time.monotonic() + self.sync_timeout, self.sync_timeout)

    def _sync_now(self, t: float) -> int:
        if self._sock is None:
            self._connect()
        return self._sync_with_reconnect(time.monotonic() + t, t)

    def _sync_with_reconnect(self, deadline: float, t: float) -> int:
        try:
            return self._sync_once(deadline, t)
        except _PeerClosed:
            pass
        # One transparent reconnect: the sync is idempotent, so this is safe.
        self._drop()
        self._connect()
        try:
            return self._sync_once(deadline, t)
        except _PeerClosed:
            self._drop()
            raise AgentNotConnectedError(f"connection closed by agent socket {self.target} during "
                                         "guest-sync-delimited (agent gone?)") from None

    def _sync_timeout(self, t: float, what: str = "no reply to") -> AgentNotConnectedError:
        return AgentNotConnectedError(f"agent not responding on {self.target}: {what} "
                                      f"guest-sync-delimited within {_secs(t)} s")

    def _sync_once(self, deadline: float, t: float) -> int:
        """Send 0xFF + guest-sync-delimited; discard until the sentinel and our id."""
        self._synced = False
        self.syncs += 1
        ident = secrets.randbits(63) or 1
        sc = self._scanner
        sc.clear()  # whatever is buffered predates this sync: stale
        req = b'\xff{"execute":"guest-sync-delimited","arguments":{"id":%d}}\n' % ident
        try:
            self._send(req, deadline)
        except _SendTimeout:
            raise self._sync_timeout(t, "the agent did not take") from None
        seen_sentinel = False
        discarded = 0
        while True:
            while True:  # consume what is buffered
                if not seen_sentinel:
                    seen_sentinel, dropped = sc.skip_to_sentinel()
                    discarded += dropped
                    if not seen_sentinel:
                        break
                item = sc.next()
                if item is None:
                    if sc.pending() > self.max_reply_bytes:
                        seen_sentinel = False  # an oversized partial object: drop it
                        continue
                    break
                if item is _SENTINEL:
                    continue
                if isinstance(item, _Mark):  # garbage or too deep: hunt for the next 0xFF
                    seen_sentinel = False
                    continue
                discarded += len(item)
                try:
                    obj = _decode(item)
                except (ValueError, RecursionError):
                    continue
                if isinstance(obj, dict):
                    ret = obj.get("return")
                    if type(ret) is int and ret == ident:
                        # Nothing of ours is pending after the sync reply: anything
                        # else buffered is unsolicited, and dropped.
                        sc.clear()
                        self._synced = True
                        return ident
                # Stale reply, the agent's error for the stray 0xFF, or another id.
            if discarded > self.max_discard_bytes:
                self._drop()
                raise ProtocolError(f"discarded more than {self.max_discard_bytes} bytes from "
                                    f"{self.target} without a reply to guest-sync-delimited")
            n = self._recv(deadline)
            if n < 0:
                raise self._sync_timeout(t)
            if n == 0:
                raise _PeerClosed()

    # ------------------------------------------------------------------ commands

    def _exchange(self, command: str, data: bytes, t: float) -> Any:
        self._ensure_ready()  # leftovers after the last reply left _synced False
        self._synced = False  # until this exchange ends cleanly
        deadline = time.monotonic() + t
        try:
            self._send(data, deadline)
        except _SendTimeout:
            raise AgentTimeoutError(f"{command}: agent did not take the request within {_secs(t)} s",
                                    command=command) from None
        except _PeerClosed as exc:
            self._drop()
            if exc.sent:
                raise AgentNotConnectedError(f"connection closed by {self.target} while sending {command}",
                                             command=command) from None
            # The peer had closed before we spoke: not one byte was delivered, so
            # the command did not run. Reconnect, resync and send it once more.
            self._ensure_ready()
            try:
                self._send(data, deadline)
            except _SendTimeout:
                raise AgentTimeoutError(f"{command}: agent did not take the request within {_secs(t)} s",
                                        command=command) from None
            except _PeerClosed:
                self._drop()
                raise AgentNotConnectedError(f"connection closed by {self.target} while sending {command}",
                                             command=command) from None
        obj = self._read_reply(command, deadline, t)
        if not isinstance(obj, dict):
            raise ProtocolError(f"reply to {command} is not a JSON object", command=command)
        if "return" in obj:
            self._synced = self._scanner.idle()
            return obj["return"]
        if "error" in obj:
            err = error_from_reply(obj["error"], command)  # raises ProtocolError if malformed
            self._synced = self._scanner.idle()
            raise err
        keys = ", ".join(sorted(str(k) for k in obj)[:5])
        raise ProtocolError(f"reply to {command} has neither 'return' nor 'error' "
                            f"(keys: {sanitize(keys, 100)})", command=command)

    def _read_reply(self, command: str, deadline: float, t: float) -> Any:
        sc = self._scanner
        limit = self.max_reply_bytes
        while True:
            item = sc.next()
            if item is None:
                if sc.pending() > limit:
                    self._drop()
                    raise ProtocolError(f"reply exceeds {limit} bytes", command=command)
                n = self._recv(deadline)
                if n < 0:
                    raise AgentTimeoutError(f"{command}: no reply within {_secs(t)} s", command=command)
                if n == 0:
                    self._drop()
                    raise AgentNotConnectedError(
                        f"connection closed by {self.target} before the reply to {command} "
                        "(the command may or may not have run)", command=command)
                continue
            if item is _SENTINEL:
                raise ProtocolError(f"unexpected 0xFF sync sentinel in the reply to {command}",
                                    command=command)
            if item is _GARBAGE:
                head = sanitize(repr(bytes(sc.buf[:16])), 60)
                raise ProtocolError(f"reply to {command} is not a JSON object (starts {head})",
                                    command=command)
            if item is _TOO_DEEP:
                raise ProtocolError(f"reply to {command} is nested deeper than {_MAX_DEPTH} levels",
                                    command=command)
            assert isinstance(item, bytes)
            if len(item) > limit:
                self._drop()
                raise ProtocolError(f"reply exceeds {limit} bytes", command=command)
            try:
                return _decode(item)
            except UnicodeDecodeError:
                raise ProtocolError(f"reply to {command} is not valid UTF-8", command=command) from None
            except RecursionError:
                raise ProtocolError(f"reply to {command} is nested too deeply", command=command) from None
            except ValueError as exc:
                raise ProtocolError(f"reply to {command} is not valid JSON: {sanitize(str(exc), 120)}",
                                    command=command) from None

    def _hand_over(self, command: str, data: bytes, t: float) -> None:
        self._ensure_ready()
        # Failure replies to these commands arrive unasked: resync before the next one.
        self._synced = False
        deadline = time.monotonic() + t
        try:
            self._send(data, deadline)
        except _SendTimeout:
            raise AgentTimeoutError(f"{command}: agent did not take the request within {_secs(t)} s",
                                    command=command) from None
        except _PeerClosed:
            self._drop()
            raise AgentNotConnectedError(f"connection closed by {self.target} while sending {command}",
                                         command=command) from None
