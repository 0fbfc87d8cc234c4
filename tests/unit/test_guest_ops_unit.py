"""Pure logic of the guest operations: backoff, chunk sizing, decoding, cp operands."""

from __future__ import annotations

import base64
import io
import itertools

import pytest

from virt_qga.cli.files import Location, parse_location
from virt_qga.errors import BadInputError, VirtQgaError
from virt_qga.workflows import exec as gexec
from virt_qga.workflows import files, guest_info

# ------------------------------------------------------------------ exec


def test_backoff_doubles_from_1ms_to_100ms_cap() -> None:
    delays = list(itertools.islice(gexec.backoff_delays(), 10))
    assert delays[:8] == [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.1]
    assert delays[8:] == [0.1, 0.1]
    # a 1 s wait costs about 16 polls, not 1000 (tight loop) and not 10 (fixed 0.1 s: slow start)
    total, n = 0.0, 0
    for d in gexec.backoff_delays():
        total += d
        n += 1
        if total >= 1.0:
            break
    assert 14 <= n <= 18


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        next(gexec.backoff_delays(first=0))
    with pytest.raises(ValueError):
        next(gexec.backoff_delays(first=1, cap=0.5))


@pytest.mark.parametrize("raw", [0, 1, 2, 3, 4, 5, 1000, 3 * 1024 * 1024])
def test_b64_lengths_match_the_codec(raw: int) -> None:
    assert gexec.b64_len(raw) == len(base64.b64encode(b"x" * raw))
    budget = gexec.b64_len(raw)
    assert gexec.raw_len_for_b64(budget) >= raw
    assert gexec.b64_len(gexec.raw_len_for_b64(budget)) <= budget


def test_decode_output() -> None:
    assert gexec.decode_output(b"h\xc3\xa9\n") == ("hé\n", "utf-8")
    text, enc = gexec.decode_output(b"\xff\x00")
    assert enc == "base64" and base64.b64decode(text) == b"\xff\x00"
    assert gexec.decode_output(b"") == ("", "utf-8")


def test_exec_result_status_and_dict() -> None:
    r = gexec.ExecResult(pid=7, exitcode=None, signal=9, stdout=b"\xff", stderr=b"e")
    assert r.status == 137
    d = r.to_dict()
    assert d["stdout_encoding"] == "base64" and d["stderr"] == "e" and d["status"] == 137
    assert gexec.ExecResult(pid=1, exitcode=3, signal=None).status == 3


def test_truncation_inferred_at_the_cap() -> None:
    r = gexec.ExecResult(pid=1, exitcode=0, signal=None, stdout=b"\0" * gexec.AGENT_OUTPUT_CAP)
    gexec.mark_truncation(r)
    assert r.out_truncated and not r.err_truncated and "treated as truncated" in r.warnings[0]
    r = gexec.ExecResult(pid=1, exitcode=0, signal=None, stderr=b"x", err_truncated=True)
    gexec.mark_truncation(r)
    assert r.err_truncated and "truncated by the agent" in r.warnings[0]
    r = gexec.ExecResult(pid=1, exitcode=0, signal=None, stdout=b"x" * 100)
    gexec.mark_truncation(r)
    assert not r.out_truncated and not r.warnings


def test_build_command_and_env() -> None:
    assert gexec.build_command(["ls", "-l"], None) == ("ls", ["-l"])
    path, args = gexec.build_command(["pwd"], "/data")
    assert path == "/bin/sh" and args[-2:] == ["/data", "pwd"]
    with pytest.raises(BadInputError):
        gexec.build_command([], None)
    assert gexec.build_env([]) is None
    env = gexec.build_env(["A=1"])
    assert env is not None and env[0] == "A=1" and env[1].startswith("PATH=")
    assert gexec.build_env(["PATH=/x", "A=1"]) == ["PATH=/x", "A=1"]
    for bad in ("noequals", "=v"):
        with pytest.raises(BadInputError):
            gexec.build_env([bad])


def test_stdin_limits_per_transport() -> None:
    lib = gexec.effective_request_cap("libvirt", 4 * 1024 * 1024 - 4096)
    assert lib == gexec.LIBVIRT_SAFE_REQUEST
    sock = gexec.effective_request_cap("socket", 48 * 1024 * 1024)
    assert sock == 48 * 1024 * 1024
    raw_lib = gexec.max_stdin_bytes(lib, ["cat"])
    assert 130 * 1024 < raw_lib < 150 * 1024
    assert gexec.b64_len(raw_lib) + gexec.REQUEST_OVERHEAD <= lib
    assert gexec.max_stdin_bytes(sock, ["cat"]) > 35 * 1024 * 1024
    # long argv/env eat into the budget
    assert gexec.max_stdin_bytes(lib, ["x" * 10000]) < raw_lib


def test_output_limits() -> None:
    lib = gexec.output_limits("libvirt", 4 * 1024 * 1024 - 4096)
    assert 3_000_000 < lib.total < 3 * 1024 * 1024 and lib.per_stream == 16 * 1024 * 1024
    sock = gexec.output_limits("socket", 80 * 1024 * 1024)
    assert sock.total > 2 * 16 * 1024 * 1024


def test_exec_exit_code_mapping() -> None:
    from virt_qga.cli.exec_cmd import _exit_code_for
    from virt_qga.errors import AgentTimeoutError, GuestError, OperationError
    from virt_qga.outcome import State

    classify = gexec.classify_start_failure
    nf = classify(GuestError("Failed to execute child process “/x” (No such file or directory)"))
    assert _exit_code_for(nf) == 127
    denied = classify(GuestError("Failed to execute child process “/x” (Permission denied)"))
    assert _exit_code_for(denied) == 126
    other = GuestError("Failed to execute child process “/x” (Exec format error)")
    assert classify(other) is other and _exit_code_for(other) == 125
    assert _exit_code_for(OperationError("t", state=State.RUNNING)) == 124
    assert _exit_code_for(OperationError("t", state=State.RUNNING, cause=KeyboardInterrupt())) == 130
    assert _exit_code_for(AgentTimeoutError("agent slow")) == 125
    assert _exit_code_for(VirtQgaError("other")) == 125


# ------------------------------------------------------------------ cp


def test_chunk_sizes() -> None:
    lib_req, lib_rep = 4 * 1024 * 1024 - 4096, 4 * 1024 * 1024 - 4096
    w = files.write_chunk_size("libvirt", lib_req)
    r = files.read_chunk_size(lib_rep, "libvirt")
    assert w == 128 * 1024
    assert r == files.LIBVIRT_READ_CAP
    # the base64 of a read chunk plus envelope fits libvirt's 4 MiB RPC string
    assert gexec.b64_len(r) + files.MESSAGE_OVERHEAD <= 4 * 1024 * 1024
    # a transport with a small reply cap gets what fits, aligned
    small = files.read_chunk_size(300_000, "libvirt")
    assert small % files.CHUNK_ALIGN == 0 and gexec.b64_len(small) + files.MESSAGE_OVERHEAD <= 300_000
    assert files.write_chunk_size("socket", 48 * 1024 * 1024) == files.CHUNK_CAP
    assert files.read_chunk_size(80 * 1024 * 1024) == files.CHUNK_CAP
    assert files.chunk_size(10_000) < files.CHUNK_ALIGN  # tiny transports still work
    with pytest.raises(BadInputError):
        files.chunk_size(100)


@pytest.mark.parametrize("arg, expected", [
    ("-", Location("-")),
    ("vm1:/tmp/x", Location("/tmp/x", "vm1")),
    ("vm1:C:\\x", Location("C:\\x", "vm1")),
    ("unix:/run/q.sock:/etc/hosts", Location("/etc/hosts", "unix:/run/q.sock")),
    ("./a:b", Location("./a:b")),
    ("/abs/a:b", Location("/abs/a:b")),
    ("plain", Location("plain")),
    (":/x", Location(":/x")),
    ("vm:rel/path", Location("rel/path", "vm")),
])
def test_parse_location(arg: str, expected: Location) -> None:
    assert parse_location(arg) == expected


@pytest.mark.parametrize("bad", ["", "vm:", "unix:/sock", "unix::/x"])
def test_parse_location_rejects(bad: str) -> None:
    with pytest.raises(BadInputError):
        parse_location(bad)


def test_guest_target_and_temp_name() -> None:
    assert files.guest_target("/tmp/", "a.txt", False) == "/tmp/a.txt"
    assert files.guest_target("/tmp", "a.txt", True) == "/tmp/a.txt"
    assert files.guest_target("/tmp/b", "a.txt", False) == "/tmp/b"
    with pytest.raises(BadInputError):
        files.guest_target("/tmp/", "-", True)
    t = files.temp_name("/tmp/dir/file.bin")
    assert t.startswith("/tmp/dir/.file.bin.vqga-") and t.endswith(".tmp")
    assert t != files.temp_name("/tmp/dir/file.bin")
    assert files.temp_name("/x").startswith("/.x.vqga-")


def test_parse_mode() -> None:
    assert files.parse_mode(None) is None
    assert files.parse_mode("644") == 0o644
    assert files.parse_mode("0o600") == 0o600
    for bad in ("rwx", "99999", "8"):
        with pytest.raises(BadInputError):
            files.parse_mode(bad)


# ------------------------------------------------------------------ guest info


def test_read_secret_takes_first_line_only() -> None:
    assert guest_info.read_secret(io.BytesIO(b"s3cret\nignored\n")) == "s3cret"
    assert guest_info.read_secret(io.BytesIO(b"s3cret\r\n")) == "s3cret"
    for bad in (b"", b"\n", b"a\0b"):
        with pytest.raises(BadInputError):
            guest_info.read_secret(io.BytesIO(bad))


def test_keys_parsing_and_checks() -> None:
    text = "# comment\n\nssh-ed25519 AAAA a@b\n  ssh-rsa BBBB  \n"
    assert guest_info.parse_keys(text) == ["ssh-ed25519 AAAA a@b", "ssh-rsa BBBB"]
    with pytest.raises(BadInputError):
        guest_info.check_keys(["justoneword"])


def test_password_never_in_error_text() -> None:
    class NoAgent:
        def set_user_password(self, *a: object) -> None:
            raise AssertionError("must not be reached")

    with pytest.raises(BadInputError) as err:
        guest_info.set_password(NoAgent(), "root", "plain-secret", crypted=True)  # type: ignore[arg-type]
    assert "plain-secret" not in str(err.value)


def test_rows_and_formatting() -> None:
    rows = guest_info.net_rows([{"name": "lo", "ip-addresses": [{"ip-address": "127.0.0.1", "prefix": 8,
                                                                 "ip-address-type": "ipv4"}],
                                 "statistics": {"rx-bytes": 1, "tx-bytes": 2, "rx-errs": 0, "tx-errs": 1,
                                                "rx-dropped": 0, "tx-dropped": 0}}])
    assert rows[0][:3] == ("lo", "", "127.0.0.1/8") and rows[0][5] == "1"
    assert guest_info.human_bytes(1536) == "1.5 KiB"
    assert guest_info.format_ns(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456Z"


def _libvirt_agent() -> object:  # an agent whose transport is libvirt
    from types import SimpleNamespace

    return SimpleNamespace(transport=SimpleNamespace(kind="libvirt"))


@pytest.mark.parametrize("message", [
    "libvirt error: Unable to encode message payload",                                    # > 4 MiB RPC
    "libvirt error: No complete agent response found in 10485760 bytes: Numerical result out of range",
])
def test_status_failure_from_an_oversized_reply_says_the_output_is_lost(message: str) -> None:
    from virt_qga.errors import AgentNotConnectedError, HostError

    for exc in (HostError(message), AgentNotConnectedError(message)):
        err = gexec._status_failed(exc, 114, _libvirt_agent())  # type: ignore[arg-type]
        assert err.exit_code == 125 and "larger than libvirt can carry" in str(err)
        assert "reaped" in str(err)


def test_status_failure_from_a_silent_agent_does_not_blame_the_output_size() -> None:
    """Seen in the lab with qemu-ga SIGSTOPped in the guest: libvirt says only 'not
    available'. Nothing was reaped; the command may still run."""
    from virt_qga.errors import AgentNotConnectedError

    exc = AgentNotConnectedError("guest agent is not responding (Guest agent not available for now)")
    err = gexec._status_failed(exc, 114, _libvirt_agent())  # type: ignore[arg-type]
    assert err.exit_code == 125 and err.state == "unknown"
    assert "larger" not in str(err) and "reaped" not in str(err)
    assert "may still be running in the guest (pid 114)" in str(err)
