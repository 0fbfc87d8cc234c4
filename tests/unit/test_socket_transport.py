"""SocketTransport against a scripted peer (tests/unit/scripted_peer.py): no QEMU needed.

Each test scripts what "the agent" sends, byte for byte, and asserts what a caller of
``execute`` sees: the right answer, or the right error class within its deadline.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import shutil
import socket
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.scripted_peer import (
    STRAY_ERROR,
    Close,
    Context,
    Expect,
    Hold,
    ScriptedPeer,
    Send,
    Sleep,
    Step,
    SyncReply,
)
from virt_qga.errors import (
    AgentNotConfiguredError,
    AgentNotConnectedError,
    AgentTimeoutError,
    BadInputError,
    CommandNotSupportedError,
    GuestError,
    ProtocolError,
    VirtQgaError,
)
from virt_qga.transport.base import Transport
from virt_qga.transport.socket import MAX_REQUEST_BYTES, SocketTransport

pytestmark = pytest.mark.timeout(30)

SYNC = "guest-sync-delimited"
PING_REPLY = b'{"return": {}}\n'


@pytest.fixture
def sock_path() -> Iterator[str]:
    # Short on purpose: AF_UNIX paths are limited to 107 bytes.
    d = tempfile.mkdtemp(prefix="qga-", dir="/tmp")
    yield os.path.join(d, "qga.sock")
    shutil.rmtree(d, ignore_errors=True)


def transport(path: str, **kw: float) -> SocketTransport:
    opts = {"timeout": 2.0, "connect_timeout": 1.0, "sync_timeout": 2.0}
    opts.update(kw)
    return SocketTransport(path, **opts)  # type: ignore[arg-type]


def reply(value: object) -> bytes:
    return json.dumps({"return": value}).encode() + b"\n"


def sync_and(*steps: Step) -> list[Step]:
    """A connection script: answer the sync normally, then the given steps."""
    return [Expect(SYNC), SyncReply(), *steps]


# --------------------------------------------------------------------------- basics


def test_implements_the_transport_protocol(sock_path: str) -> None:
    t = SocketTransport(sock_path)
    assert isinstance(t, Transport)
    assert (t.kind, t.target) == ("socket", sock_path)
    assert t.max_request_bytes == MAX_REQUEST_BYTES == 48 * 1024 * 1024
    assert t.max_reply_bytes > t.max_request_bytes
    assert not t.connected  # lazy: nothing happens before the first call


def test_ping_syncs_once_then_reuses_the_connection(sock_path: str) -> None:
    with ScriptedPeer(sock_path) as peer, transport(sock_path) as t:
        assert t.execute("guest-ping") == {}
        assert t.execute("test-echo", {"value": ["a", 1, None]}) == ["a", 1, None]
        assert t.execute("guest-ping") == {}
    assert peer.commands() == [SYNC, "guest-ping", "test-echo", "guest-ping"]
    assert peer.connections == 1 and t.connects == 1 and t.syncs == 1
    assert not peer.errors


def test_sync_sends_ff_and_a_random_63_bit_id(sock_path: str) -> None:
    with ScriptedPeer(sock_path) as peer, transport(sock_path) as t:
        ids = {t.sync() for _ in range(5)}
    assert len(ids) == 5 and all(0 < i < 2**63 for i in ids)
    sent = [r["arguments"]["id"] for r in peer.requests]
    assert set(sent) == ids


def test_error_replies_are_mapped(sock_path: str) -> None:
    script = sync_and(
        Expect("guest-nope"), Send(b'{"error": {"class": "CommandNotFound", '
                                   b'"desc": "The command guest-nope has not been found"}}\n'),
        Expect("guest-exec"), Send(b'{"error": {"class": "GenericError", '
                                   b'"desc": "Command guest-exec has been disabled"}}\n'),
        Expect("guest-get-time"), Send(b'{"error": {"class": "GenericError", "desc": "boom\\nline2"}}\n'),
        Expect("guest-ping"), Send(PING_REPLY),
    )
    with ScriptedPeer(sock_path, [script]) as peer, transport(sock_path) as t:
        with pytest.raises(CommandNotSupportedError, match="not known"):
            t.execute("guest-nope")
        with pytest.raises(CommandNotSupportedError, match="disabled"):
            t.execute("guest-exec", {"path": "/bin/true"})
        with pytest.raises(GuestError) as ei:
            t.execute("guest-get-time")
        assert ei.value.error_class == "GenericError" and "\n" not in str(ei.value)
        assert t.execute("guest-ping") == {}  # an error reply leaves the stream in step
    assert t.syncs == 1 and not peer.errors


# --------------------------------------------------------------------------- sync


def test_stale_bytes_and_replies_before_the_sentinel_are_discarded(sock_path: str) -> None:
    stale = b'garbage \x00\x01{"return": "stale"}\n{"return": {"x": 1}}\n{"ret'
    script = [
        Send(b'{"return": "from a previous client"}\n{"partial": '),  # waiting before we even ask
        Expect(SYNC),
        SyncReply(before=stale),  # stray-0xFF error, stale data, then 0xFF + our id
        Expect("guest-ping"), Send(PING_REPLY),
    ]
    with ScriptedPeer(sock_path, [script]) as peer, transport(sock_path) as t:
        assert t.execute("guest-ping") == {}
    assert not peer.errors


def test_stray_ff_error_reply_before_the_sentinel_is_discarded(sock_path: str) -> None:
    # What a real qemu-ga 7.2 sends (LAB-NOTES "Channel sync"): the error comes first.
    script = sync_and(Expect("test-echo"), Send(reply("mine")))
    with ScriptedPeer(sock_path, [script]) as peer, transport(sock_path) as t:
        assert t.execute("test-echo", {"value": "mine"}) == "mine"
    assert not peer.errors


def test_error_reply_after_the_sentinel_is_discarded_too(sock_path: str) -> None:
    def after(ctx: Context) -> bytes:
        return b"\xff" + STRAY_ERROR + reply(ctx.sync_id)

    script = [Expect(SYNC), Send(after), Expect("guest-ping"), Send(PING_REPLY)]
    with ScriptedPeer(sock_path, [script]) as peer, transport(sock_path) as t:
        assert t.execute("guest-ping") == {}
    assert not peer.errors


def test_sync_replies_carrying_another_id_are_discarded(sock_path: str) -> None:
    def others(ctx: Context) -> bytes:
        assert ctx.sync_id is not None
        return (STRAY_ERROR + b"\xff" + reply(ctx.sync_id ^ 1) + b"\xff" + reply(ctx.sync_id + 1)
                + reply(str(ctx.sync_id)) + reply(True) + b"\xff" + reply(ctx.sync_id))

    script = [Expect(SYNC), Send(others, chunk=5), Expect("guest-ping"), Send(PING_REPLY)]
    with ScriptedPeer(sock_path, [script]) as peer, transport(sock_path) as t:
        assert t.execute("guest-ping") == {}
    assert not peer.errors


def test_matching_id_without_a_sentinel_is_not_enough(sock_path: str) -> None:
    script = [Expect(SYNC), Send(lambda ctx: reply(ctx.sync_id)), Hold()]
    with ScriptedPeer(sock_path, [script]), transport(sock_path, sync_timeout=0.3) as t:
        with pytest.raises(AgentNotConnectedError, match="no reply to guest-sync-delimited"):
            t.execute("guest-ping")


def test_sync_reply_split_byte_by_byte(sock_path: str) -> None:
    script = [Expect(SYNC), SyncReply(before=b'{"return": 5}\n', chunk=1, delay=0.0005),
              Expect("guest-ping"), Send(PING_REPLY)]
    with ScriptedPeer(sock_path, [script]) as peer, transport(sock_path) as t:
        assert t.execute("guest-ping") == {}
    assert not peer.errors


# --------------------------------------------------------------------------- framing


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
def test_reply_split_across_reads(sock_path: str, chunk: int) -> None:
    value = {"s": 'quote " brace } bracket ] backslash \\ end', "n": [1, 2.5, None, True], "u": "é€𝄞"}
    data = reply(value)
    script = sync_and(Expect("test-echo"), Send(data, chunk=chunk, delay=0.0002 if chunk < 4 else 0))
    with ScriptedPeer(sock_path, [script]) as peer, transport(sock_path) as t:
        assert t.execute("test-echo") == value
    assert not peer.errors


def test_large_reply_in_odd_chunks(sock_path: str) -> None:
    value = "A\\\"}" * 50_000  # escapes everywhere, 200 k characters
    data = reply(value)
    script = sync_and(Expect("test-echo"), Send(data, chunk=4099))
    with ScriptedPeer(sock_path, [script]) as peer, transport(sock_path) as t:
        assert t.execute("test-echo") == value
    assert not peer.errors


def test_reply_without_trailing_newline(sock_path: str) -> None:
    script = sync_and(Expect("guest-ping"), Send(b'{"return":{}}'),
                      Expect("guest-ping"), Send(b'  {"return":{}}'))
    with ScriptedPeer(sock_path, [script]) as peer, transport(sock_path) as t:
        assert t.execute("guest-ping") == {}
        assert t.execute("guest-ping") == {}
    assert t.syncs == 1 and not peer.errors


def test_several_replies_in_one_read_do_not_shift_answers(sock_path: str) -> None:
    # Sync reply and the stale tail in one write; then an unsolicited extra reply glued
    # to the real one: the next command must resync, not take "extra" as its answer.
    script = [
        Expect(SYNC), SyncReply(after=b""),
        Expect("test-echo"), Send(reply("one") + reply("extra")),
        Expect(SYNC), SyncReply(),
        Expect("test-echo"), Send(reply("two")),
    ]
    with ScriptedPeer(sock_path, [script]) as peer, transport(sock_path) as t:
        assert t.execute("test-echo") == "one"
        assert t.execute("test-echo") == "two"
    assert t.syncs == 2 and not peer.errors


BAD_REPLIES = {
    "invalid-utf8": b'{"return": "\xc3\x28"}\n',
    "utf8-surrogate": b'{"return": "\xed\xa0\x80"}\n',
    "invalid-json": b'{"return": tru}\n',
    "nan": b'{"return": NaN}\n',
    "not-an-object": b'[1, 2, 3]\n',
    "bare-word": b'hello\n',
    "neither-return-nor-error": b'{"result": 1}\n',
    "malformed-error": b'{"error": "oops"}\n',
    "huge-integer": b'{"return": 1' + b"0" * 10_000 + b'}\n',
    "deep-nesting": b'{"return": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
    "mismatched-brackets": b'{"return": [1, 2}]}\n',
    "control-char-in-string": b'{"return": "a\x01b"}\n',
    "stray-sentinel": b'{"return": \xff{"return": 1}\n',
}


@pytest.mark.parametrize("name", sorted(BAD_REPLIES))
def test_bad_reply_is_a_protocol_error_and_next_command_works(sock_path: str, name: str) -> None:
    script = [
        Expect(SYNC), SyncReply(),
        Expect("guest-info"), Send(BAD_REPLIES[name]),
        Expect(SYNC), SyncReply(),
        Expect("guest-ping"), Send(PING_REPLY),
    ]
    with ScriptedPeer(sock_path, [script]) as peer, transport(sock_path) as t:
        start = time.monotonic()
        with pytest.raises(ProtocolError) as ei:
            t.execute("guest-info")
        assert time.monotonic() - start < 1.0  # detected, not waited out
        assert "\n" not in str(ei.value)
        assert t.execute("guest-ping") == {}
    assert not peer.errors, peer.errors


def test_oversized_reply_is_refused_with_bounded_memory(sock_path: str) -> None:
    limit = 64 * 1024
    big = b'{"return": "' + b"x" * (32 * 1024 * 1024) + b'"}\n'
    script = sync_and(Expect("guest-file-read"), Send(big))
    with ScriptedPeer(sock_path, [script]) as peer, transport(sock_path) as t:
        t.max_reply_bytes = limit
        t.sync()
        tracemalloc.start()
        try:
            with pytest.raises(ProtocolError, match=f"reply exceeds {limit} bytes"):
                t.execute("guest-file-read", {"handle": 1})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 4 * 1024 * 1024, peak  # never near the 32 MiB on offer
        assert not t.connected  # dropped; the rest of the reply is never read
        assert t.execute("guest-ping") == {}  # reconnects (default script) and resyncs
    assert peer.connections == 2 and not peer.errors


def test_peer_closing_mid_reply_is_not_connected_and_next_call_reconnects(sock_path: str) -> None:
    script = sync_and(Expect("guest-get-osinfo"), Send(b'{"return": {"id": "deb'), Close())
    with ScriptedPeer(sock_path, [script]) as peer, transport(sock_path) as t:
        with pytest.raises(AgentNotConnectedError, match="connection closed"):
            t.execute("guest-get-osinfo")
        assert t.execute("guest-ping") == {}
    assert peer.connections == 2 and t.syncs == 2
    assert peer.commands() == [SYNC, "guest-get-osinfo", SYNC, "guest-ping"]


def test_peer_gone_while_idle_reconnects_without_losing_the_command(sock_path: str) -> None:
    script = sync_and(Expect("guest-ping"), Send(PING_REPLY), Close())
    with ScriptedPeer(sock_path, [script]) as peer, transport(sock_path) as t:
        assert t.execute("guest-ping") == {}
        deadline = time.monotonic() + 2
        while peer.connections == 1 and peer._conn is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        assert t.execute("test-echo", {"value": 42}) == 42
    # The command was delivered exactly once, on the new connection.
    assert peer.commands() == [SYNC, "guest-ping", SYNC, "test-echo"]


def test_eof_during_sync_gets_one_transparent_reconnect(sock_path: str) -> None:
    with ScriptedPeer(sock_path, [[Expect(SYNC), Close()]]) as peer, transport(sock_path) as t:
        assert t.execute("guest-ping") == {}
    assert peer.connections == 2


def test_eof_during_sync_twice_is_not_connected(sock_path: str) -> None:
    closing = [Expect(SYNC), Close()]
    with ScriptedPeer(sock_path, [closing, closing], default=[Hold()]) as peer, transport(sock_path) as t:
        with pytest.raises(AgentNotConnectedError, match="during guest-sync-delimited"):
            t.execute("guest-ping")
    assert peer.connections == 2  # exactly one retry
    assert "guest-ping" not in peer.commands()


# --------------------------------------------------------------------------- timeouts


def test_timeout_then_late_reply_is_never_taken_for_the_next_answer(sock_path: str) -> None:
    script = [
        Expect(SYNC), SyncReply(),
        Expect("test-slow"), Sleep(0.4), Send(reply("late")),
        Expect(SYNC), SyncReply(),
        Expect("test-echo"), Send(reply("fresh")),
    ]
    with ScriptedPeer(sock_path, [script]) as peer, transport(sock_path) as t:
        start = time.monotonic()
        with pytest.raises(AgentTimeoutError) as ei:
            t.execute("test-slow", timeout=0.15)
        elapsed = time.monotonic() - start
        assert 0.15 <= elapsed < 0.35
        assert str(ei.value) == "test-slow: no reply within 0.15 s"
        assert t.execute("test-echo", {"value": "fresh"}) == "fresh"
    assert t.syncs == 2 and peer.connections == 1 and not peer.errors


def test_timeout_message_format(sock_path: str) -> None:
    with ScriptedPeer(sock_path, [sync_and(Hold())]), transport(sock_path, timeout=0.5) as t:
        with pytest.raises(AgentTimeoutError) as ei:
            t.execute("guest-fsfreeze-status")
    assert str(ei.value) == "guest-fsfreeze-status: no reply within 0.5 s"
    assert ei.value.transient


def test_missing_socket_is_not_configured(sock_path: str) -> None:
    t = transport(sock_path)
    start = time.monotonic()
    with pytest.raises(AgentNotConfiguredError) as ei:
        t.execute("guest-ping")
    assert time.monotonic() - start < 0.5
    assert str(ei.value) == f"no agent socket at {sock_path}"
    assert not ei.value.transient


def test_regular_file_is_not_configured(sock_path: str) -> None:
    open(sock_path, "w").close()
    with pytest.raises(AgentNotConfiguredError, match="is not a socket"):
        transport(sock_path).execute("guest-ping")


def test_refused_connection_is_not_connected(sock_path: str) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sock_path)  # bound, never listening: connect() is refused
    try:
        start = time.monotonic()
        with pytest.raises(AgentNotConnectedError, match="connection refused") as ei:
            transport(sock_path).execute("guest-ping")
        assert time.monotonic() - start < 0.5
        assert ei.value.transient
    finally:
        s.close()


def test_silent_peer_fails_sync_within_sync_timeout(sock_path: str) -> None:
    with ScriptedPeer(sock_path, [[Hold()]]) as peer, transport(sock_path, sync_timeout=0.3) as t:
        start = time.monotonic()
        with pytest.raises(AgentNotConnectedError) as ei:
            t.execute("guest-ping", timeout=10)
        elapsed = time.monotonic() - start
    assert 0.3 <= elapsed < 0.6
    assert str(ei.value) == (f"agent not responding on {sock_path}: "
                             "no reply to guest-sync-delimited within 0.3 s")
    assert peer.commands() == []  # Hold() never parsed anything; the ping was never sent


def test_busy_connection_bounds_the_wait_for_the_lock(sock_path: str) -> None:
    with ScriptedPeer(sock_path) as peer, transport(sock_path) as t:
        t.sync()
        slow = threading.Thread(target=t.execute, args=("test-sleep", {"seconds": 1.0, "value": 1}))
        slow.start()
        time.sleep(0.05)
        t.connect_timeout = t.sync_timeout = 0.1
        start = time.monotonic()
        with pytest.raises(AgentTimeoutError, match="busy with another command"):
            t.execute("guest-ping", timeout=0.1)
        assert time.monotonic() - start < 0.6
        slow.join()
    assert not peer.errors


# --------------------------------------------------------------------------- threads, close


def test_concurrent_callers_each_get_their_own_answer(sock_path: str) -> None:
    results: dict[int, list[object]] = {}
    failures: list[BaseException] = []

    with ScriptedPeer(sock_path) as peer, transport(sock_path) as t:
        def worker(n: int) -> None:
            try:
                results[n] = [t.execute("test-echo", {"value": [n, i]}) for i in range(25)]
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(20)
    assert not failures
    assert results == {n: [[n, i] for i in range(25)] for n in range(8)}
    assert t.syncs == 1 and peer.connections == 1 and not peer.errors


def test_close_is_idempotent_and_the_transport_reconnects(sock_path: str) -> None:
    with ScriptedPeer(sock_path) as peer:
        t = transport(sock_path)
        t.close()
        assert t.execute("guest-ping") == {}
        t.close()
        t.close()
        assert not t.connected
        assert t.execute("guest-ping") == {}
        t.close()
    assert peer.connections == 2


def test_close_from_another_thread_interrupts_a_command(sock_path: str) -> None:
    with ScriptedPeer(sock_path, [sync_and(Hold())]), transport(sock_path, timeout=10) as t:
        t.sync()
        errors: list[BaseException] = []

        def run() -> None:
            try:
                t.execute("test-slow")
            except BaseException as exc:
                errors.append(exc)

        th = threading.Thread(target=run)
        start = time.monotonic()
        th.start()
        time.sleep(0.1)
        t.close()
        th.join(5)
        assert time.monotonic() - start < 1.0
    assert len(errors) == 1 and isinstance(errors[0], AgentNotConnectedError)


def test_execute_no_reply_returns_at_once_and_forces_a_resync(sock_path: str) -> None:
    # guest-shutdown answers only on failure; that late error must not be the next answer.
    script = [
        Expect(SYNC), SyncReply(),
        Expect("guest-shutdown"), Sleep(0.1),
        Send(b'{"error": {"class": "GenericError", "desc": "shutdown failed"}}\n'),
        Expect(SYNC), SyncReply(),
        Expect("guest-ping"), Send(PING_REPLY),
    ]
    with ScriptedPeer(sock_path, [script]) as peer, transport(sock_path) as t:
        start = time.monotonic()
        t.execute_no_reply("guest-shutdown", {"mode": "powerdown"})
        assert time.monotonic() - start < 0.1
        assert t.execute("guest-ping") == {}
    assert peer.requests[1] == {"execute": "guest-shutdown", "arguments": {"mode": "powerdown"}}
    assert not peer.errors


# --------------------------------------------------------------------------- input checks


def test_unencodable_arguments_are_bad_input_and_nothing_is_sent(sock_path: str) -> None:
    with ScriptedPeer(sock_path) as peer:
        t = transport(sock_path)
        for args in ({"x": object()}, {"x": float("nan")}, [1, 2]):
            with pytest.raises(BadInputError):
                t.execute("guest-ping", args)  # type: ignore[arg-type]
        with pytest.raises(BadInputError):
            t.execute("", None)
        t.max_request_bytes = 200
        with pytest.raises(BadInputError, match="at most 200"):
            t.execute("guest-file-write", {"handle": 1, "buf-b64": "A" * 300})
        assert not t.connected
    assert peer.connections == 0


def test_constructor_rejects_nonsense() -> None:
    with pytest.raises(BadInputError):
        SocketTransport("")
    with pytest.raises(BadInputError):
        SocketTransport("/x", timeout=0)
    with pytest.raises(BadInputError):
        SocketTransport("/x", sync_timeout=float("inf"))


def test_abstract_socket_name() -> None:
    name = f"@virt-qga-test-{os.getpid()}-{time.monotonic_ns()}"
    with ScriptedPeer(name) as peer, transport(name) as t:
        assert t.execute("guest-ping") == {}
    assert peer.connections == 1


# --------------------------------------------------------------------------- fuzz

_counter = itertools.count()
_FUZZ_DIR = tempfile.mkdtemp(prefix="qga-fz-", dir="/tmp")
atexit.register(shutil.rmtree, _FUZZ_DIR, ignore_errors=True)

# Placeholders, replaced by the peer once it knows the id the client chose.
_GOOD_SYNC, _WRONG_SYNC, _GOOD_REPLY = b"<SYNC>", b"<WRONG>", b"<REPLY>"

_FRAGMENTS = [
    b"\xff", b"{", b"}", b"[", b"]", b'"', b"\\", b"\n", b" ", b'{"return": ', b'{"error": ',
    STRAY_ERROR, PING_REPLY, b'{"error": {"class": "GenericError", "desc": "x"}}\n',
    b'{"return": 1e999999}', b'{"return": -0.0}', b'{"return": ' + b"9" * 5000 + b"}",
    b"[" * 600, b'{"a":' * 600, b"\xc3\x28", b"\xed\xa0\x80", b"\x00", b'{"return": NaN}',
    b'"\\ud800"', b'"\\', b'{"return": "\xff"}', b'{"return": {"id": 1}, "id": 2}\n',
    _GOOD_SYNC, _WRONG_SYNC, _GOOD_REPLY,
]

_fragment = st.sampled_from(_FRAGMENTS)
_part = st.one_of(st.binary(max_size=48), _fragment, _fragment)  # weighted towards structure
_stream = st.lists(_part, max_size=12)


def _render(parts: list[bytes]) -> Callable[[Context], bytes]:
    def fn(ctx: Context) -> bytes:
        ident = ctx.sync_id or 1
        subs = {_GOOD_SYNC: b"\xff" + reply(ident), _WRONG_SYNC: b"\xff" + reply(ident + 1),
                _GOOD_REPLY: reply({"ok": True})}
        return b"".join(subs.get(p, p) for p in parts)
    return fn


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(first=_stream, second=_stream, sync_first=st.booleans(),
       chunk=st.one_of(st.none(), st.integers(1, 17)))
def test_fuzzed_peer_output_never_hangs_and_only_raises_virt_qga_errors(
        first: list[bytes], second: list[bytes], sync_first: bool, chunk: int | None) -> None:
    if sync_first:  # let many examples get past the sync and into reply parsing
        first = [*first, _GOOD_SYNC]
    path = os.path.join(_FUZZ_DIR, f"f{next(_counter)}.sock")
    conn = [Expect(timeout=1), Send(_render(first), chunk=chunk),
            Expect(timeout=1), Send(_render(second), chunk=chunk), Close()]
    with ScriptedPeer(path, [conn, conn], default=[Close()]) as peer:
        t = SocketTransport(path, timeout=0.05, connect_timeout=0.05, sync_timeout=0.05,
                            max_reply_bytes=4096)
        start = time.monotonic()
        for command in ("guest-info", "guest-ping"):
            try:
                t.execute(command)
            except VirtQgaError:
                pass
        t.close()
        elapsed = time.monotonic() - start
    assert elapsed < 1.5, elapsed
    assert not peer.errors, peer.errors


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=20)
    | st.sampled_from(['"', "\\", "}", "]", '\\"}', "\n", "\u00ff", "{[", "\ufffd"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(value=_json_values, chunk=st.integers(1, 40), ascii_only=st.booleans())
def test_any_reply_split_anywhere_round_trips(value: object, chunk: int, ascii_only: bool) -> None:
    data = json.dumps({"return": value}, ensure_ascii=ascii_only).encode() + b"\n"
    path = os.path.join(_FUZZ_DIR, f"r{next(_counter)}.sock")
    with ScriptedPeer(path, [sync_and(Expect("test-echo"), Send(data, chunk=chunk))]) as peer:
        with transport(path) as t:
            assert t.execute("test-echo") == value
    assert not peer.errors
