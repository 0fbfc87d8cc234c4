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
  :mod:`virt_qga.errors` leaves :meth:`SocketTransport.execute`;
* one call, one deadline: the wait for the connection lock, connecting, the resync
  and the command itself all end by ``timeout`` seconds after the call began
  (connecting and syncing are also bounded by their own, shorter limits).

Framing (where a reply ends, the sentinel, id matching, buffer bounds, request
encoding) is :mod:`virt_qga.transport.framing`; opening the socket and its errors is
:mod:`virt_qga.transport.unix`. What is left here, the connection's state machine
(lock, connect, sync, exchange, resync after trouble, close from another thread), is
one class of about 500 lines, kept in one module because its invariants (when
``_synced`` holds, who may drop the socket) are read best in one place.
"""

from __future__ import annotations

import math
import os
import secrets
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from virt_qga.errors import (
    AgentNotConnectedError,
    AgentTimeoutError,
    BadInputError,
    ProtocolError,
    VirtQgaError,
)
from virt_qga.transport.base import DEFAULT_TIMEOUT, MAX_REPLY_BYTES
from virt_qga.transport.framing import (
    GARBAGE,
    MAX_DEPTH,
    MAX_REQUEST_BYTES,
    OVERSIZED,
    SENTINEL,
    SYNC_SENTINEL,
    TOO_DEEP,
    Scanner,
    SyncMatcher,
    decode_object,
    encode_request,
    sync_request,
)
from virt_qga.transport.replies import error_from_reply, sanitize
from virt_qga.transport.unix import connect_unix, secs

__all__ = ["MAX_REQUEST_BYTES", "SYNC_SENTINEL", "SocketTransport"]

#: recv size. Large enough that a guest-file-read reply needs few syscalls.
_RECV_CHUNK = 256 * 1024

_T = TypeVar("_T")


class _Deadline:
    """The caller's deadline for one call: an end on the monotonic clock and the
    nominal length in seconds, which is what error messages quote."""

    __slots__ = ("end", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def capped(self, limit: float) -> tuple[float, float]:
        """(end, seconds) of a step whose own limit is ``limit`` seconds: the step ends
        at its own limit or at the call's deadline, whichever comes first, and says
        the figure that bound it."""
        own_end = time.monotonic() + limit
        if own_end <= self.end:
            return own_end, limit
        return self.end, self.seconds


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

    Each call has one deadline, ``timeout`` (or the per-call one), that covers
    everything it waits for: the lock, connecting (also capped by ``connect_timeout``),
    the sync when one is needed (also capped by ``sync_timeout``) and the reply. So a
    call returns within its timeout plus the granularity of ``poll`` (1 ms) and of
    thread scheduling. After :meth:`close` the transport can be used again; it then
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
        self._scanner = Scanner()
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
        data = encode_request(command, arguments, self.max_request_bytes)
        dl = _Deadline(t)
        self._acquire(command, dl)
        try:
            return self._guarded(command, lambda: self._exchange(command, data, dl))
        finally:
            self._lock.release()

    def execute_no_reply(self, command: str, arguments: dict[str, Any] | None = None) -> None:
        """Send a command the agent does not answer on success (guest-shutdown,
        guest-suspend-*) and return once it is handed to the socket.

        The agent still answers a *failure* of such a command, so the connection is
        marked for resync: that reply is discarded before the next command.
        """
        data = encode_request(command, arguments, self.max_request_bytes)
        dl = _Deadline(self.timeout)
        self._acquire(command, dl)
        try:
            self._guarded(command, lambda: self._hand_over(command, data, dl))
        finally:
            self._lock.release()

    def sync(self, timeout: float | None = None) -> int:
        """Resynchronise now (connecting if needed) and return the id that was echoed.

        For tests and diagnostics; :meth:`execute` syncs by itself when needed.
        """
        t = self.sync_timeout if timeout is None else self._check_seconds(timeout, "timeout")
        dl = _Deadline(t)
        self._acquire("guest-sync-delimited", dl)
        try:
            return self._guarded("guest-sync-delimited", lambda: self._sync_now(dl))
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

    def _acquire(self, command: str, dl: _Deadline) -> None:
        if not self._lock.acquire(timeout=max(0.0, dl.left())):
            raise AgentTimeoutError(f"{command}: no reply within {secs(dl.seconds)} s "
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

    def _connect(self, dl: _Deadline) -> None:
        sock = connect_unix(self.target, *dl.capped(self.connect_timeout))
        self._sock = sock
        self._poll_in = select.poll()
        self._poll_in.register(sock.fileno(), select.POLLIN)
        self._poll_out = select.poll()
        self._poll_out.register(sock.fileno(), select.POLLOUT)
        self._scanner.clear()
        self._synced = False
        self.connects += 1

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

    def _ensure_ready(self, dl: _Deadline) -> None:
        """Connect and sync if needed, each within its own limit and the call's deadline."""
        if self._sock is None:
            self._connect(dl)
        if not self._synced:
            self._sync_with_reconnect(dl, *dl.capped(self.sync_timeout))

    def _sync_now(self, dl: _Deadline) -> int:
        if self._sock is None:
            self._connect(dl)
        return self._sync_with_reconnect(dl, dl.end, dl.seconds)

    def _sync_with_reconnect(self, dl: _Deadline, deadline: float, t: float) -> int:
        try:
            return self._sync_once(deadline, t)
        except _PeerClosed:
            pass
        # One transparent reconnect: the sync is idempotent, so this is safe.
        self._drop()
        self._connect(dl)
        try:
            return self._sync_once(deadline, t)
        except _PeerClosed:
            self._drop()
            raise AgentNotConnectedError(f"connection closed by agent socket {self.target} during "
                                         "guest-sync-delimited (agent gone?)") from None

    def _sync_timeout(self, t: float, what: str = "no reply to") -> AgentNotConnectedError:
        return AgentNotConnectedError(f"agent not responding on {self.target}: {what} "
                                      f"guest-sync-delimited within {secs(t)} s")

    def _sync_once(self, deadline: float, t: float) -> int:
        """Send 0xFF + guest-sync-delimited; discard until the sentinel and our id
        (:class:`~virt_qga.transport.framing.SyncMatcher`). ``t`` is what a timeout
        message quotes."""
        self._synced = False
        self.syncs += 1
        ident = secrets.randbits(63) or 1
        self._scanner.clear()  # whatever is buffered predates this sync: stale
        try:
            self._send(sync_request(ident), deadline)
        except _SendTimeout:
            raise self._sync_timeout(t, "the agent did not take") from None
        matcher = SyncMatcher(self._scanner, ident, self.max_reply_bytes)
        while not matcher.match():
            if matcher.discarded > self.max_discard_bytes:
                self._drop()
                raise ProtocolError(f"discarded more than {self.max_discard_bytes} bytes from "
                                    f"{self.target} without a reply to guest-sync-delimited")
            n = self._recv(deadline)
            if n < 0:
                raise self._sync_timeout(t)
            if n == 0:
                raise _PeerClosed()
        self._synced = True
        return ident

    # ------------------------------------------------------------------ commands

    def _exchange(self, command: str, data: bytes, dl: _Deadline) -> Any:
        self._ensure_ready(dl)  # leftovers after the last reply left _synced False
        self._synced = False  # until this exchange ends cleanly
        try:
            self._send_request(command, data, dl)
        except _PeerClosed as exc:
            self._drop()
            if exc.sent:
                raise self._closed_while_sending(command) from None
            # The peer had closed before we spoke: not one byte was delivered, so
            # the command did not run. Reconnect, resync and send it once more.
            self._ensure_ready(dl)
            try:
                self._send_request(command, data, dl)
            except _PeerClosed:
                self._drop()
                raise self._closed_while_sending(command) from None
        obj = self._read_reply(command, dl)
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

    def _send_request(self, command: str, data: bytes, dl: _Deadline) -> None:
        """Send one request by the call's deadline. Raises _PeerClosed for the caller."""
        try:
            self._send(data, dl.end)
        except _SendTimeout:
            raise AgentTimeoutError(f"{command}: agent did not take the request within "
                                    f"{secs(dl.seconds)} s", command=command) from None

    def _closed_while_sending(self, command: str) -> AgentNotConnectedError:
        return AgentNotConnectedError(f"connection closed by {self.target} while sending {command}",
                                      command=command)

    def _read_reply(self, command: str, dl: _Deadline) -> Any:
        sc = self._scanner
        limit = self.max_reply_bytes
        while True:
            item = sc.next_object(limit)
            if item is None:
                n = self._recv(dl.end)
                if n < 0:
                    raise AgentTimeoutError(f"{command}: no reply within {secs(dl.seconds)} s",
                                            command=command)
                if n == 0:
                    self._drop()
                    raise AgentNotConnectedError(
                        f"connection closed by {self.target} before the reply to {command} "
                        "(the command may or may not have run)", command=command)
                continue
            if item is OVERSIZED:
                self._drop()
                raise ProtocolError(f"reply exceeds {limit} bytes", command=command)
            if item is SENTINEL:
                raise ProtocolError(f"unexpected 0xFF sync sentinel in the reply to {command}",
                                    command=command)
            if item is GARBAGE:
                head = sanitize(repr(sc.head(16)), 60)
                raise ProtocolError(f"reply to {command} is not a JSON object (starts {head})",
                                    command=command)
            if item is TOO_DEEP:
                raise ProtocolError(f"reply to {command} is nested deeper than {MAX_DEPTH} levels",
                                    command=command)
            assert isinstance(item, bytes)
            try:
                return decode_object(item)
            except UnicodeDecodeError:
                raise ProtocolError(f"reply to {command} is not valid UTF-8", command=command) from None
            except RecursionError:
                raise ProtocolError(f"reply to {command} is nested too deeply", command=command) from None
            except ValueError as exc:
                raise ProtocolError(f"reply to {command} is not valid JSON: {sanitize(str(exc), 120)}",
                                    command=command) from None

    def _hand_over(self, command: str, data: bytes, dl: _Deadline) -> None:
        self._ensure_ready(dl)
        # Failure replies to these commands arrive unasked: resync before the next one.
        self._synced = False
        try:
            self._send_request(command, data, dl)
        except _PeerClosed:
            self._drop()
            raise self._closed_while_sending(command) from None
