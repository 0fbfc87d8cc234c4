# Copyright (c) virt-qga developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""virt_qga_snapshot: option mapping and validation, check mode, crash-consistent fallback
warning, post-thaw failure, commit-back idempotence (the workflow itself is faked here; the
repository's integration tests take real snapshots)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from virt_qga import errors as E
from virt_qga.exitcodes import ExitCode
from virt_qga.outcome import State
from virt_qga.workflows import snapshot as wf

from ansible_collections.virt_qga.guest_agent.plugins.modules import virt_qga_snapshot as mod


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Any:
    state: dict[str, Any] = {"snap": [], "result": None, "domain": []}

    def fake_snapshot(domain: str, uri: Any, *, options: Any) -> Any:
        state["snap"].append((domain, uri, options))
        if "error" in state:
            raise state["error"]
        return state["result"] or wf.SnapshotResult(domain=domain, uri=uri, mode=options.mode,
                                                    name="vqga-x", consistency="filesystem",
                                                    frozen_window_ms=12.5, frozen=1, thawed=1)

    monkeypatch.setattr(wf, "snapshot", fake_snapshot)
    monkeypatch.setattr(mod, "open_domain",
                        lambda module, what=None: state["domain"].append(what) or SimpleNamespace())
    return state


def test_options_mirror_the_cli(run_module: Any, calls: Any) -> None:
    res = run_module(mod, {"domain": "db", "uri": "qemu:///session", "disks": ["vda"], "dir": "/o",
                           "mountpoints": ["/data"], "quiesce": "preferred", "pre_freeze": "sync",
                           "max_frozen": 3, "wait_lock": 7})
    assert not res.failed and res.result["changed"] is True
    domain, uri, o = calls["snap"][0]
    assert (domain, uri) == ("db", "qemu:///session")
    assert (o.mode, o.disks, o.directory, o.mountpoints, o.quiesce, o.pre_freeze, o.max_frozen,
            o.wait_lock) == ("external", ("vda",), "/o", ("/data",), "preferred", "sync", 3.0, 7.0)
    assert res.result["consistency"] == "filesystem" and res.result["frozen_window_ms"] == 12.5
    assert "filesystem-consistent" in res.result["msg"]


def test_check_mode_takes_nothing(run_module: Any, calls: Any) -> None:
    res = run_module(mod, {"domain": "db"}, check_mode=True)
    assert res.result["changed"] is True and calls["snap"] == [] and calls["domain"]


def test_workflow_validation_is_bad_input(run_module: Any, calls: Any) -> None:
    res = run_module(mod, {"domain": "db", "quiesce": "off", "pre_freeze": "sync"})
    assert res.failed and res.result["exit_code"] == 2 and calls["snap"] == []
    res = run_module(mod, {"socket": "/run/q.sock", "mode": "external"})
    assert res.failed and res.result["exit_code"] == 2


def test_command_mode_needs_command(run_module: Any, calls: Any) -> None:
    res = run_module(mod, {"domain": "db", "mode": "command"})
    assert res.failed and "command" in res.result["msg"]


def test_crash_consistent_fallback_warns(run_module: Any, calls: Any) -> None:
    calls["result"] = wf.SnapshotResult(domain="db", uri=None, mode="external", name="vqga-y",
                                        consistency="crash", consistency_reason="agent not answering",
                                        exit_code=int(ExitCode.CRASH_CONSISTENT))
    res = run_module(mod, {"domain": "db", "quiesce": "preferred"})
    assert not res.failed and res.result["consistency"] == "crash"
    assert any("crash-consistent" in w for w in res.result["_warnings"])


def test_post_thaw_failure_fails_with_5(run_module: Any, calls: Any) -> None:
    calls["result"] = wf.SnapshotResult(domain="db", uri=None, mode="external", name="vqga-z",
                                        consistency="application", exit_code=int(ExitCode.PARTIAL))
    res = run_module(mod, {"domain": "db", "post_thaw": "false"})
    assert res.failed and res.result["exit_code"] == 5 and res.result["changed"] is True
    assert res.result["snapshot"] == "vqga-z"


def test_maybe_frozen_carries_undo(run_module: Any, calls: Any) -> None:
    calls["error"] = E.OperationError("thaw unconfirmed", state=State.MAYBE_FROZEN,
                                      undo="virt-qga recover db", domain="db")
    res = run_module(mod, {"domain": "db"})
    assert res.failed and res.result["exit_code"] == 8
    assert res.result["undo"] == {"module": "virt_qga.guest_agent.virt_qga_recover", "args": {"domain": "db"}}
    assert res.result["state"] == "maybe-frozen" and res.result["changed"] is True


def test_lock_busy_is_10(run_module: Any, calls: Any) -> None:
    calls["error"] = E.LockBusyError("another job holds the lock", domain="db")
    res = run_module(mod, {"domain": "db"})
    assert res.failed and res.result["exit_code"] == 10


def test_commit_back_without_overlays_is_unchanged(run_module: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mod, "open_domain", lambda module, what=None: SimpleNamespace())
    monkeypatch.setattr(wf, "overlays_to_commit", lambda domain, disks: [])
    res = run_module(mod, {"domain": "db", "commit_back": True})
    assert res.result["changed"] is False


def test_overlay_pattern() -> None:
    # the module keeps no pattern of its own: the workflow's one decides
    from virt_qga.host.snapshots import is_vqga_overlay

    assert not hasattr(mod, "VQGA_OVERLAY")
    assert is_vqga_overlay("/i/db.vqga-20261125T060000Z.qcow2")
    assert is_vqga_overlay("/i/db.vqga-20261125T060000123Z.qcow2")
    assert not is_vqga_overlay("/i/db.qcow2")
