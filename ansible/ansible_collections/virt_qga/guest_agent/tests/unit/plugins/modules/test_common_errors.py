# Copyright (c) virt-qga developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every virt-qga error becomes one fail_json: a one-line msg, the CLI's exit code and the
error class, plus what the error carries (state, undo, partial result...)."""

from __future__ import annotations

from typing import Any

import pytest
from virt_qga import errors as E
from virt_qga.outcome import State

from ansible_collections.virt_qga.guest_agent.plugins.module_utils import virt_qga_common as common
from ansible_collections.virt_qga.guest_agent.plugins.modules import virt_qga_exec, virt_qga_info


@pytest.mark.parametrize(("exc", "code"), [
    (E.BadInputError("bad", field="x"), 2),
    (E.AgentNotConfiguredError("no channel"), 3),
    (E.AgentNotConnectedError("silent"), 3),
    (E.CommandNotSupportedError("nope", agent_version="7.2.0"), 3),
    (E.AgentTimeoutError("slow"), 4),
    (E.GuestError("denied", error_class="GenericError"), 1),
    (E.DomainNotFoundError("no such domain"), 6),
    (E.DomainNotRunningError("shut off", state="shut off"), 6),
    (E.LockBusyError("busy"), 10),
    (E.OperationError("maybe frozen", state=State.MAYBE_FROZEN,
                      undo="virt-qga recover web01", result={"frozen": True}), 8),
])
def test_error_result_carries_exit_code_and_class(exc: Exception, code: int) -> None:
    out = common.error_result(exc)
    assert out["exit_code"] == code
    assert out["error"] == type(exc).__name__
    assert "\n" not in out["msg"] and out["msg"]


def test_operation_error_details() -> None:
    exc = E.OperationError("thaw unconfirmed", state=State.MAYBE_FROZEN,
                           undo="virt-qga recover web01", result={"frozen": True}, domain="web01")
    out = common.error_result(exc)
    assert out["state"] == "maybe-frozen"
    assert out["undo"] == {"module": "virt_qga.guest_agent.virt_qga_recover", "args": {"domain": "web01"}}
    assert out["undo_command"] == "virt-qga recover web01"
    assert out["result"] == {"frozen": True}
    assert out["msg"].startswith("web01: ")


def test_guest_error_class_kept() -> None:
    out = common.error_result(E.GuestError("Permission denied", error_class="GenericError",
                                           command="guest-file-open"))
    assert out["error_class"] == "GenericError"
    assert out["command"] == "guest-file-open"


def test_unexpected_exception_is_one_line_exit_1() -> None:
    out = common.error_result(KeyError("boom\nline two"))
    assert out == {"msg": "KeyError: 'boom\\nline two'", "exit_code": 1, "error": "KeyError"}


@pytest.mark.parametrize("exc", [E.DomainNotFoundError("domain 'ghost' not found"),
                                 E.AgentTimeoutError("guest-ping timed out after 1 s"),
                                 RuntimeError("something odd")])
def test_module_fails_cleanly(run_module: Any, monkeypatch: pytest.MonkeyPatch, exc: Exception) -> None:
    def broken(module: Any, timeout: Any = None) -> Any:
        raise exc

    monkeypatch.setattr(virt_qga_info, "open_agent", broken)
    res = run_module(virt_qga_info, {"domain": "ghost"})
    assert res.failed
    assert res.result["error"] == type(exc).__name__
    assert res.result["exit_code"] == getattr(exc, "exit_code", 1)
    assert "Traceback" not in res.result["msg"]


def test_missing_library(run_module: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "HAS_VIRT_QGA", False)
    monkeypatch.setattr(common, "VIRT_QGA_IMPORT_ERROR", "ModuleNotFoundError: virt_qga")
    res = run_module(virt_qga_info, {"domain": "web01"})
    assert res.failed
    assert "virt-qga" in res.result["msg"] and "required" in res.result["msg"]
    assert res.result["error"] == "ImportError"


def test_domain_or_socket_required(run_module: Any) -> None:
    res = run_module(virt_qga_info, {})
    assert res.failed
    assert "domain" in res.result["msg"] and "socket" in res.result["msg"]


def test_uri_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIRT_QGA_CONNECT", raising=False)
    assert common.connection_uri({"uri": None}) == "qemu:///system"
    monkeypatch.setenv("VIRT_QGA_CONNECT", "qemu:///session")
    assert common.connection_uri({"uri": None}) == "qemu:///session"
    assert common.connection_uri({"uri": "qemu+ssh://h/system"}) == "qemu+ssh://h/system"


def test_socket_agent_is_named_after_the_socket() -> None:
    assert common.target_name({"domain": None, "socket": "/run/q.sock"}) == "unix:/run/q.sock"
    assert common.target_name({"domain": "web01", "socket": "/run/q.sock"}) == "web01"


def test_nonpositive_timeout_is_bad_input(run_module: Any) -> None:
    res = run_module(virt_qga_exec, {"domain": "web01", "argv": ["true"], "timeout": 0})
    assert res.failed and res.result["exit_code"] == 2


@pytest.mark.parametrize(("command", "task"), [
    ("virt-qga recover web01",
     {"module": "virt_qga.guest_agent.virt_qga_recover", "args": {"domain": "web01"}}),
    ("virt-qga snapshot db --commit-back --disk vda --disk vdb",
     {"module": "virt_qga.guest_agent.virt_qga_snapshot",
      "args": {"domain": "db", "commit_back": True, "disks": ["vda", "vdb"]}}),
    ("virt-qga snapshot db --commit-back",
     {"module": "virt_qga.guest_agent.virt_qga_snapshot", "args": {"domain": "db", "commit_back": True}}),
    ("kill 4242", {"module": "virt_qga.guest_agent.virt_qga_exec", "args": {"argv": ["kill", "4242"]}}),
    ("virsh snapshot-delete db vqga-1  # libvirt said no",
     {"module": "ansible.builtin.command", "args": {"argv": ["virsh", "snapshot-delete", "db", "vqga-1"]}}),
])
def test_undo_is_a_task(command: str, task: dict[str, Any]) -> None:
    """The undo a module returns is a module and its arguments, not CLI text to copy."""
    out = common.error_result(E.OperationError("left something", state=State.INCONSISTENT, undo=command))
    assert out["undo"] == task and out["undo_command"] == command
    assert out["changed"] is True
