"""Framing of qemu-ga's channel byte stream: where replies end, and how a sync is found.

The channel socket carries a bare byte stream with no message boundaries: qemu-ga
writes one JSON object per reply (followed by a newline, which nothing here relies
on) and, before the reply to ``guest-sync-delimited``, a single ``0xFF`` byte. This
module is the pure, I/O-free half of :mod:`virt_qga.transport.socket`:

* :class:`Scanner` buffers what was read and cuts it into top-level JSON objects,
  keeping brace depth and string/escape state across reads, so a reply split over
  any number of reads (byte by byte too) and several replies in one read frame alike;
  whitespace and newlines between objects are skipped. A ``0xFF`` byte anywhere is
  the sync sentinel and resets the state. Each byte is scanned once: two precompiled
  regexes jump to the next byte that matters, so long strings (base64 file data) go
  at C speed.
* :meth:`Scanner.next_object` bounds the buffer: a partial object past the caller's
  limit comes back as :data:`OVERSIZED` instead of growing further.
* :class:`SyncMatcher` implements the resync rule of ``guest-sync-delimited``:
  discard everything up to the sentinel without parsing it, then discard objects
  until one is ``{"return": ID}`` with our id; count what was thrown away so the
  caller can give up on a stream that is not an agent's.
* :func:`decode_object` is strict UTF-8 + strict JSON (no NaN/Infinity).

The request side is here too: :func:`encode_request` (compact JSON, newline, size
cap) and :func:`sync_request`. Nothing here reads a socket or knows a deadline; only
:func:`encode_request` raises (``BadInputError``, before anything is sent). The
protocol and its limits are described in ``docs/transport-socket.md``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from virt_qga.errors import BadInputError
from virt_qga.transport.replies import sanitize

__all__ = [
    "GARBAGE", "MAX_DEPTH", "MAX_REQUEST_BYTES", "OVERSIZED", "SENTINEL", "SYNC_SENTINEL",
    "TOO_DEEP", "Mark", "Scanner", "SyncMatcher", "decode_object", "encode_request", "sync_request",
]

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

#: qemu-ga's replies nest a handful of levels; Python's json recursion gives out near 1000.
MAX_DEPTH = 512


class Mark:
    """A scanner outcome that is not a complete object."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


SENTINEL = Mark("sentinel")  # a 0xFF byte: everything before it is stale
GARBAGE = Mark("garbage")  # a byte that cannot start a JSON object at top level
TOO_DEEP = Mark("too-deep")  # nesting beyond MAX_DEPTH
OVERSIZED = Mark("oversized")  # a partial object already larger than the caller's limit

_WS = re.compile(rb"[ \t\r\n]*")
_OUTSIDE = re.compile(rb'[{}\[\]"\xff]')  # bytes that matter outside a string
_INSIDE = re.compile(rb'["\\\xff]')  # bytes that matter inside a string


def encode_request(command: Any, arguments: Any, max_bytes: int = MAX_REQUEST_BYTES) -> bytes:
    """One request on the wire: compact ASCII JSON + newline, at most ``max_bytes``.

    Raises ``BadInputError`` (nothing is sent then) for a bad command name, arguments
    that are not an object or not JSON-serialisable, or a request that is too large.
    """
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
    if len(data) > max_bytes:
        raise BadInputError(f"{command}: request is {len(data)} bytes; the agent socket transport "
                            f"sends at most {max_bytes}", field="arguments", command=command)
    return data


def sync_request(ident: int) -> bytes:
    """The bytes of one resync: the sentinel, then guest-sync-delimited with ``ident``."""
    return b'\xff{"execute":"guest-sync-delimited","arguments":{"id":%d}}\n' % ident


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_object(raw: bytes) -> Any:
    """Strict UTF-8, strict JSON. Raises UnicodeDecodeError/ValueError/RecursionError."""
    return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)


def _skip_ws(buf: bytearray) -> None:
    m = _WS.match(buf)
    if m is not None and m.end():
        del buf[: m.end()]


class Scanner:
    """Incremental framing of a byte stream into top-level JSON objects.

    Objects are validated later by :func:`decode_object`; this only finds where they
    end. ``buf`` holds what is not consumed yet.
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

    def head(self, n: int = 16) -> bytes:
        """The first ``n`` buffered bytes (for error messages)."""
        return bytes(self.buf[:n])

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

    def next_object(self, limit: int) -> bytes | Mark | None:
        """:meth:`next`, bounded: a complete object, or a partial one still being
        assembled, that is larger than ``limit`` bytes gives :data:`OVERSIZED`."""
        item = self.next()
        if item is None:
            return OVERSIZED if len(self.buf) > limit else None
        if isinstance(item, bytes) and len(item) > limit:
            return OVERSIZED
        return item

    def next(self) -> bytes | Mark | None:
        """The next complete object, a mark, or None when more input is needed."""
        buf = self.buf
        if self.depth == 0:
            _skip_ws(buf)
            if not buf:
                return None
            first = buf[0]
            if first == SYNC_SENTINEL:
                del buf[:1]
                return SENTINEL
            if first != 0x7B:  # '{'
                return GARBAGE
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
                    return SENTINEL
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
                    if self.depth > MAX_DEPTH:
                        return TOO_DEEP
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
                    return SENTINEL


class SyncMatcher:
    """The receiving half of one resync with id ``ident``, over a :class:`Scanner`.

    Call :meth:`match` after each read. Until the sentinel is seen, bytes are dropped
    unparsed; after it, each object is dropped unless it is a dict whose ``return`` is
    the integer ``ident`` (the agent's error for the stray 0xFF, stale replies, late
    sync replies with other ids). Garbage, too deep a nesting or a partial object over
    ``max_object_bytes`` sends it back to hunting for the next sentinel. A reply with
    our id *without* a sentinel before it does not count: the sentinel is what proves
    the agent's parser was reset. ``discarded`` counts the bytes thrown away.
    """

    __slots__ = ("discarded", "ident", "max_object_bytes", "scanner", "seen_sentinel")

    def __init__(self, scanner: Scanner, ident: int, max_object_bytes: int) -> None:
        self.scanner = scanner
        self.ident = ident
        self.max_object_bytes = max_object_bytes
        self.seen_sentinel = False
        self.discarded = 0

    def match(self) -> bool:
        """Consume what is buffered; True once our sync reply is found. Then anything
        buffered after it is unsolicited and has been dropped."""
        sc = self.scanner
        while True:
            if not self.seen_sentinel:
                self.seen_sentinel, dropped = sc.skip_to_sentinel()
                self.discarded += dropped
                if not self.seen_sentinel:
                    return False
            item = sc.next()
            if item is None:
                if sc.pending() > self.max_object_bytes:  # an oversized partial object: drop it
                    self.seen_sentinel = False
                    continue
                return False
            if item is SENTINEL:
                continue
            if isinstance(item, Mark):  # garbage or too deep: hunt for the next 0xFF
                self.seen_sentinel = False
                continue
            self.discarded += len(item)
            try:
                obj = decode_object(item)
            except (ValueError, RecursionError):
                continue
            if isinstance(obj, dict):
                ret = obj.get("return")
                if type(ret) is int and ret == self.ident:
                    sc.clear()
                    return True
