"""The virt_qga.guest_agent.qga connection plugin against a fake agent.

Only the edge cases a real qemu-ga cannot produce on demand (truncated output, a stdin
over the request limit, an agent that restarts under a command, a command outliving its
deadline, a missing agent) are driven with fakes here; tests/integration/ansible_conn runs
the plugin through ansible-playbook against real lab guests.
"""

from __future__ import annotations

import base64
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ansible")

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.playbook.play_context import PlayContext
from ansible.plugins.loader import connection_loader

from tests.unit.collection_loader import collection_loader  # noqa: F401  (autouse fixture)
from virt_qga.errors import (
    AgentNotConnectedError,
    CommandNotSupportedError,
    GuestError,
)
from virt_qga.workflows import exec as gexec

MARKER = b"guest-secret-output-7f3a"

Program = Callable[[list[str], bytes], dict[str, Any]]


class FakeTransport:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.max_request_bytes = 4 * 1024 * 1024 - 4096 if kind == "libvirt" else 48 * 1024 * 1024
        self.max_reply_bytes = self.max_request_bytes

    def close(self) -> None:
        pass


class FakeAgent:
    """A guest with a file table and programs; records every guest-exec request."""

    def __init__(self, program: Program, kind: str = "libvirt") -> None:
        self.transport = FakeTransport(kind)
        self.timeout = 5.0
        self.name = "fake"
        self.program = program
        self.requests: list[dict[str, Any]] = []
        self.procs: dict[int, dict[str, Any]] = {}
        self.files: dict[str, bytearray] = {}
        self.handles: dict[int, str] = {}
        self.status_error: Exception | None = None
        self.closed = False

    def capabilities(self, refresh: bool = False) -> Any:
        from virt_qga.agent import Capabilities

        commands = ("guest-exec", "guest-exec-status", "guest-file-open")
        return Capabilities("7.2.0", dict.fromkeys(commands, True))

    def call(self, command: str, args: Any = None, **kw: Any) -> None:
        return None

    def exec(self, path: str, arg: list[str] | None = None, env: Any = None, input_data: str | None = None,
             capture_output: Any = None) -> dict[str, int]:
        argv = [path, *(arg or [])]
        self.requests.append({"argv": argv, "input_data": input_data})
        stdin = base64.b64decode(input_data) if input_data else b""
        pid = 200 + len(self.requests)
        if argv[:3] == ["/bin/sh", "-c", gexec.KILL_TREE_SCRIPT]:
            victim = int(argv[4])
            self.procs[victim] = {"signal": 9}
            self.procs[pid] = {"exitcode": 0, "stdout": f"{victim} {victim + 1}\n".encode()}
        elif argv[:3] == ["/bin/sh", "-c", qga().MKTEMP]:
            self.procs[pid] = {"exitcode": 0, "stdout": b"/tmp/.ansible-qga-stdin.AbCdEf\n"}
        elif argv[:1] == ["rm"]:
            self.files.pop(argv[-1], None)
            self.procs[pid] = {"exitcode": 0}
        else:
            self.procs[pid] = dict(self.program(argv, stdin))
        return {"pid": pid}

    def exec_status(self, pid: int) -> dict[str, Any]:
        if self.status_error is not None:
            raise self.status_error
        proc = self.procs[pid]
        if proc.get("running"):
            return {"exited": False}
        out: dict[str, Any] = {"exited": True}
        if "signal" in proc:
            out["signal"] = proc["signal"]
        else:
            out["exitcode"] = proc.get("exitcode", 0)
        for key, wire in (("stdout", "out-data"), ("stderr", "err-data")):
            if proc.get(key):
                out[wire] = base64.b64encode(proc[key]).decode()
        if proc.get("out_truncated"):
            out["out-truncated"] = True
        return out

    def file_open(self, path: str, mode: str | None = None) -> int:
        handle = 1000 + len(self.handles)
        self.handles[handle] = path
        self.files[path] = bytearray()
        return handle

    def file_write(self, handle: int, buf_b64: str, count: int | None = None) -> dict[str, Any]:
        data = base64.b64decode(buf_b64)
        self.files[self.handles[handle]] += data
        return {"count": len(data), "eof": False}

    def file_close(self, handle: int) -> None:
        self.handles.pop(handle)

    def close(self) -> None:
        self.closed = True


def qga() -> Any:
    import importlib

    return importlib.import_module("ansible_collections.virt_qga.guest_agent.plugins.connection.qga")


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple[Any, FakeAgent]]]:
    """``connect(program, kind="libvirt", **options)`` -> (plugin, fake agent), connected."""
    shown: list[str] = []

    def record(msg: str, *args: Any, **kwargs: Any) -> None:
        shown.append(str(msg))

    mod = qga()
    for level in ("v", "vv", "vvv", "vvvv", "vvvvv", "debug", "warning", "display"):
        monkeypatch.setattr(mod.display, level, record)

    def make(program: Program, kind: str = "libvirt", **options: Any) -> tuple[Any, FakeAgent]:
        conn = connection_loader.get("virt_qga.guest_agent.qga", PlayContext())
        conn.set_options(direct={"remote_addr": "vm1", **options})
        agent = FakeAgent(program, kind)
        conn._agent, conn._connected, conn._label = agent, True, "vm1"
        conn.shown = shown
        return conn, agent

    yield make
    assert not [m for m in shown if MARKER.decode() in m], "guest output reached the display"


def recorder(seen: list[Any], what: Callable[[list[str], bytes], Any]) -> Program:
    """A program that exits 0 and appends ``what(argv, stdin)`` to ``seen``."""
    def program(argv: list[str], stdin: bytes) -> dict[str, Any]:
        seen.append(what(argv, stdin))
        return {"exitcode": 0}
    return program


def ok(stdout: bytes = b"", stderr: bytes = b"", **extra: Any) -> Program:
    return lambda argv, stdin: {"exitcode": 0, "stdout": stdout, "stderr": stderr, **extra}


# ------------------------------------------------------------------ exec


def test_status_output_and_signal(connect: Any) -> None:
    conn, agent = connect(ok(MARKER, b"warn"))
    assert conn.exec_command("echo hi") == (0, MARKER, b"warn")
    argv = agent.requests[-1]["argv"]
    assert argv[:2] == ["/bin/sh", "-c"] and argv[2].endswith("echo hi")
    assert 'HOME="${HOME:-/root}"' in argv[2], "HOME is defaulted for ~/.ansible/tmp"

    conn, _ = connect(lambda argv, stdin: {"signal": 15})
    rc, _, _ = conn.exec_command("kill -TERM $$")
    assert rc == 128 + 15


def test_truncated_output_is_an_error_not_a_short_result(connect: Any) -> None:
    conn, _ = connect(ok(MARKER * 10, out_truncated=True))
    with pytest.raises(AnsibleError, match="stdout was truncated") as info:
        conn.exec_command("cat /dev/urandom | head -c 20M")
    assert not isinstance(info.value, AnsibleConnectionFailure)
    assert MARKER.decode() not in str(info.value)


def test_output_at_the_agent_cap_counts_as_truncated(connect: Any) -> None:
    """qemu-ga 10.0 was seen returning exactly 16 MiB without the flag."""
    conn, _ = connect(ok(b"x" * gexec.AGENT_OUTPUT_CAP))
    with pytest.raises(AnsibleError, match="truncated"):
        conn.exec_command("big")


def test_small_stdin_goes_inside_the_request(connect: Any) -> None:
    seen: list[bytes] = []
    conn, agent = connect(recorder(seen, lambda argv, stdin: stdin))
    payload = b"#!/usr/bin/python\n" + b"x" * 1000
    conn.exec_command("/usr/bin/python3", in_data=payload)
    assert seen == [payload]
    assert len(agent.requests) == 1 and agent.requests[0]["input_data"]


def test_oversized_stdin_goes_through_a_private_guest_file(connect: Any) -> None:
    seen: list[list[str]] = []
    conn, agent = connect(recorder(seen, lambda argv, stdin: argv))
    payload = bytes(range(256)) * 1200  # 300 KiB of binary: over libvirt's ~140 KiB
    assert len(payload) > gexec.stdin_capacity(agent, ["/bin/sh", "-c", "x"])
    assert conn.exec_command("/usr/bin/python3", in_data=payload)[0] == 0
    path = "/tmp/.ansible-qga-stdin.AbCdEf"
    assert bytes(agent.files[path]) == payload, "binary-exact, written in chunks"
    [argv] = seen
    assert argv[:2] == ["/bin/sh", "-c"] and argv[3:] == ["sh", path, "/usr/bin/python3"]
    assert argv[2].startswith(qga().STDIN_FROM_FILE), "the shell opens and removes the file first"
    assert all(r["input_data"] is None for r in agent.requests), "no input-data at all"
    assert any("through a guest file" in m for m in conn.shown)


def test_same_stdin_fits_over_the_socket(connect: Any) -> None:
    seen: list[bytes] = []
    conn, agent = connect(recorder(seen, lambda argv, stdin: stdin), kind="socket")
    payload = b"y" * (300 * 1024)
    conn.exec_command("/usr/bin/python3", in_data=payload)
    assert seen == [payload] and not agent.files


def test_command_past_its_deadline_is_killed(connect: Any) -> None:
    conn, agent = connect(lambda argv, stdin: {"running": True}, command_timeout=0.3)
    with pytest.raises(AnsibleError, match=r"did not finish within 0\.3 s \(command_timeout\)") as info:
        conn.exec_command("sleep 1000")
    assert "killed in the guest" in str(info.value)
    victim = agent.requests[0]
    kills = [r for r in agent.requests if r["argv"][:3] == ["/bin/sh", "-c", gexec.KILL_TREE_SCRIPT]]
    assert len(kills) == 1 and kills[0]["argv"][4] == str(200 + agent.requests.index(victim) + 1)


def test_task_timeout_alarm_shortens_the_deadline(connect: Any) -> None:
    conn, _ = connect(ok())
    old = signal.signal(signal.SIGALRM, lambda *a: None)
    try:
        signal.setitimer(signal.ITIMER_REAL, 20.0)
        limit, why = conn._command_deadline()
        assert why == "the task's timeout" and 15 < limit < 20 - qga().KILL_MARGIN + 0.1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert conn._command_deadline() == (3600.0, "command_timeout")


def test_interrupted_wait_kills_the_command(connect: Any) -> None:
    class TaskTimeout(BaseException):
        pass

    conn, agent = connect(lambda argv, stdin: {"running": True})
    calls = {"n": 0}
    real: Callable[[int], dict[str, Any]] = agent.exec_status

    def status(pid: int) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise TaskTimeout()
        return real(pid)

    agent.exec_status = status
    with pytest.raises(TaskTimeout):
        conn.exec_command("sleep 1000")
    assert any(r["argv"][:3] == ["/bin/sh", "-c", gexec.KILL_TREE_SCRIPT] for r in agent.requests)


def test_ctrl_c_kills_the_command(connect: Any) -> None:
    conn, agent = connect(lambda argv, stdin: {"running": True})
    real: Callable[[int], dict[str, Any]] = agent.exec_status
    calls = {"n": 0}

    def status(pid: int) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(pid)

    agent.exec_status = status
    with pytest.raises(AnsibleError, match="interrupted; the command was killed in the guest"):
        conn.exec_command("sleep 1000")
    assert any(r["argv"][:3] == ["/bin/sh", "-c", gexec.KILL_TREE_SCRIPT] for r in agent.requests)


# ------------------------------------------------------------------ error classes


def test_agent_gone_is_unreachable_a_refusal_is_a_task_error(connect: Any) -> None:
    conn, agent = connect(ok())

    def gone(*a: Any, **k: Any) -> Any:
        raise AgentNotConnectedError("guest agent is not responding", command="guest-exec")

    agent.exec = gone
    with pytest.raises(AnsibleConnectionFailure):
        conn.exec_command("true")

    def disabled(*a: Any, **k: Any) -> Any:
        raise CommandNotSupportedError("command guest-exec is disabled in this agent", command="guest-exec")

    agent.exec = disabled
    with pytest.raises(AnsibleError) as info:
        conn.exec_command("true")
    assert not isinstance(info.value, AnsibleConnectionFailure)


def test_agent_restarted_under_a_command_is_unreachable(connect: Any) -> None:
    """After a reboot the new agent does not know the pid (seen in the lab on reboot)."""
    conn, agent = connect(ok())
    agent.status_error = GuestError("Invalid parameter 'pid'", command="guest-exec-status")
    with pytest.raises(AnsibleConnectionFailure, match="lost track"):
        conn.exec_command("shutdown -r now")


def test_missing_socket_is_unreachable(tmp_path: Path) -> None:
    conn = connection_loader.get("virt_qga.guest_agent.qga", PlayContext())
    conn.set_options(direct={"remote_addr": "vm1", "socket": str(tmp_path / "nothing.sock"), "timeout": 1})
    with pytest.raises(AnsibleConnectionFailure, match="unreachable"):
        conn._connect()
    assert not conn.connected


def test_reset_forgets_the_agent(connect: Any) -> None:
    conn, agent = connect(ok())
    conn.reset()
    assert agent.closed and not conn.connected and conn._agent is None


def test_bad_timeouts_are_refused(connect: Any) -> None:
    conn, _ = connect(ok(), command_timeout=0)
    with pytest.raises(AnsibleError, match="command_timeout must be positive"):
        conn.exec_command("true")


# ------------------------------------------------------------------ files


def test_put_file_refuses_a_missing_source(connect: Any, tmp_path: Path) -> None:
    from ansible.errors import AnsibleFileNotFound

    conn, _ = connect(ok())
    with pytest.raises(AnsibleFileNotFound):
        conn.put_file(str(tmp_path / "absent"), "/tmp/x")
