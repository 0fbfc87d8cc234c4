# Copyright (c) virt-qga developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""virt_qga_exec with a fake agent: status propagation, expected_rc, guards, check mode,
timeouts and secrets. The real-guest behaviour is covered by tests/ansible/ in the repo."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.virt_qga.guest_agent.plugins.modules import virt_qga_exec

TEST_E = ["/bin/sh", "-c", 'test -e "$1"', "sh"]


def guest(existing: frozenset[str] | set[str] = frozenset(), status: int = 0, stdout: bytes = b"",
          stderr: bytes = b"", **extra: Any) -> Any:
    """A tiny guest: `test -e` answers from ``existing``; anything else gets ``status``."""
    def program(argv: list[str], env: Any, stdin: bytes) -> dict[str, Any]:
        if argv[:4] == TEST_E:
            return {"exitcode": 0 if argv[4] in existing else 1}
        return dict(exitcode=status, stdout=stdout, stderr=stderr, **extra)
    return program


def test_argv_runs_and_reports(run_module: Any, fake_agent: Any) -> None:
    agent = fake_agent(virt_qga_exec, program=guest(stdout=b"a\nb\n", stderr=b"warn\n"))
    res = run_module(virt_qga_exec, {"domain": "web01", "argv": ["echo", "x"]})
    r = res.result
    assert not res.failed and r["changed"] is True
    assert (r["rc"], r["stdout_lines"], r["stderr"]) == (0, ["a", "b"], "warn\n")
    assert r["stdout_truncated"] is False and r["cmd"] == ["echo", "x"]
    assert agent.started == [["echo", "x"]]


def test_cmd_goes_through_sh(run_module: Any, fake_agent: Any) -> None:
    agent = fake_agent(virt_qga_exec)
    run_module(virt_qga_exec, {"domain": "web01", "cmd": "echo $HOME | wc -c"})
    assert agent.started == [["/bin/sh", "-c", "echo $HOME | wc -c"]]


def test_nonzero_status_fails_with_rc(run_module: Any, fake_agent: Any) -> None:
    fake_agent(virt_qga_exec, program=guest(status=3, stderr=b"no\n"))
    res = run_module(virt_qga_exec, {"domain": "web01", "argv": ["false"]})
    assert res.failed
    assert res.result["rc"] == 3 and res.result["exit_code"] == 3
    assert res.result["error"] == "NonZeroStatus" and res.result["stderr"] == "no\n"


def test_expected_rc(run_module: Any, fake_agent: Any) -> None:
    fake_agent(virt_qga_exec, program=guest(status=1))
    res = run_module(virt_qga_exec, {"domain": "web01", "argv": ["grep", "x", "/f"],
                                     "expected_rc": [0, 1]})
    assert not res.failed and res.result["rc"] == 1
    # Ansible's executor marks any non-zero rc failed unless the module says otherwise.
    assert res.result["failed"] is False


def test_signal_is_128_plus_n(run_module: Any, fake_agent: Any) -> None:
    fake_agent(virt_qga_exec, program=lambda a, e, s: {"signal": 9})
    res = run_module(virt_qga_exec, {"domain": "web01", "argv": ["sleep", "9"]})
    assert res.failed and res.result["rc"] == 137 and res.result["signal"] == 9


def test_truncation_flag_and_warning(run_module: Any, fake_agent: Any) -> None:
    fake_agent(virt_qga_exec, program=guest(stdout=b"x", out_truncated=True))
    res = run_module(virt_qga_exec, {"domain": "web01", "argv": ["yes"]})
    assert res.result["stdout_truncated"] is True
    assert any("truncated" in w for w in res.result["_warnings"])


def test_binary_output_is_base64(run_module: Any, fake_agent: Any) -> None:
    fake_agent(virt_qga_exec, program=guest(stdout=b"\xff\xfe"))
    res = run_module(virt_qga_exec, {"domain": "web01", "argv": ["head", "-c2", "/dev/urandom"]})
    assert res.result["stdout_encoding"] == "base64" and res.result["stdout"] == "//4="
    assert res.result["stdout_lines"] == []


def test_check_mode_runs_nothing(run_module: Any, fake_agent: Any) -> None:
    agent = fake_agent(virt_qga_exec)
    res = run_module(virt_qga_exec, {"domain": "web01", "argv": ["reboot"]}, check_mode=True)
    assert not res.failed and res.result["changed"] is True
    assert "check mode" in res.result["msg"]
    assert agent.started == []


def test_creates_guard_skips(run_module: Any, fake_agent: Any) -> None:
    agent = fake_agent(virt_qga_exec, program=guest(existing={"/done"}))
    res = run_module(virt_qga_exec, {"domain": "web01", "argv": ["touch", "/done"], "creates": "/done"})
    assert res.result["changed"] is False and "exists" in res.result["msg"]
    assert agent.started == [[*TEST_E, "/done"]]


def test_removes_guard_runs_when_present(run_module: Any, fake_agent: Any) -> None:
    agent = fake_agent(virt_qga_exec, program=guest(existing={"/old"}))
    res = run_module(virt_qga_exec, {"domain": "web01", "argv": ["rm", "/old"], "removes": "/old"})
    assert res.result["changed"] is True
    assert agent.started[-1] == ["rm", "/old"]


def test_guard_in_check_mode_is_evaluated_but_command_not_run(run_module: Any, fake_agent: Any) -> None:
    agent = fake_agent(virt_qga_exec, program=guest(existing=set()))
    res = run_module(virt_qga_exec, {"domain": "web01", "argv": ["touch", "/m"], "creates": "/m"},
                     check_mode=True)
    assert res.result["changed"] is True
    assert agent.started == [[*TEST_E, "/m"]]


def test_timeout_reports_pid_and_exit_124(run_module: Any, fake_agent: Any) -> None:
    fake_agent(virt_qga_exec, program=lambda a, e, s: {"running": True})
    res = run_module(virt_qga_exec, {"domain": "web01", "argv": ["sleep", "100"], "wait_timeout": 0.05})
    assert res.failed
    assert res.result["exit_code"] == 124 and res.result["error"] == "OperationError"
    assert res.result["state"] == "running" and res.result["result"]["pid"] == 101


def test_stdin_env_and_secret(run_module: Any, fake_agent: Any) -> None:
    seen: dict[str, Any] = {}

    def program(argv: list[str], env: Any, stdin: bytes) -> dict[str, Any]:
        seen.update(env=env, stdin=stdin)
        return {"exitcode": 0}

    fake_agent(virt_qga_exec, program=program)
    res = run_module(virt_qga_exec, {"domain": "web01", "argv": ["chpasswd"],
                                     "secret_stdin": "tester:hunter2", "env": {"LANG": "C"}})
    assert seen["stdin"] == b"tester:hunter2\n"
    assert "LANG=C" in seen["env"] and any(e.startswith("PATH=") for e in seen["env"])
    assert "hunter2" not in repr(res.result)
    assert virt_qga_exec.argument_spec()["secret_stdin"]["no_log"] is True


def test_argv_and_cmd_exclusive(run_module: Any, fake_agent: Any) -> None:
    fake_agent(virt_qga_exec)
    res = run_module(virt_qga_exec, {"domain": "web01", "argv": ["true"], "cmd": "true"})
    assert res.failed and "mutually exclusive" in res.result["msg"]
    res = run_module(virt_qga_exec, {"domain": "web01"})
    assert res.failed and "argv" in res.result["msg"]


def test_unsupported_exec_maps_to_exit_3(run_module: Any, fake_agent: Any) -> None:
    fake_agent(virt_qga_exec, disabled=("guest-exec",))
    res = run_module(virt_qga_exec, {"domain": "web01", "argv": ["true"]})
    assert res.failed and res.result["exit_code"] == 3
    assert res.result["error"] == "CommandNotSupportedError"


def test_guest_paths_are_not_expanded_on_the_hypervisor(run_module: Any, fake_agent: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """creates/removes/chdir name guest paths: ~ and $VARS reach the guest as written."""
    monkeypatch.setenv("HOME", "/home/hypervisor-admin")
    monkeypatch.setenv("APPDIR", "/hypervisor/app")
    agent = fake_agent(virt_qga_exec, program=guest(existing={"~/done"}))
    res = run_module(virt_qga_exec, {"domain": "web01", "argv": ["true"], "creates": "~/done",
                                     "chdir": "$APPDIR"})
    assert res.result["changed"] is False
    assert agent.started == [[*TEST_E, "~/done"]]
    agent = fake_agent(virt_qga_exec, program=guest(existing={"$APPDIR/old"}))
    res = run_module(virt_qga_exec, {"domain": "web01", "argv": ["true"], "removes": "$APPDIR/old"})
    assert res.result["changed"] is True and agent.started[0] == [*TEST_E, "$APPDIR/old"]
