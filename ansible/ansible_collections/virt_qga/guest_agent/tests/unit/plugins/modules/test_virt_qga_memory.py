# Copyright (c) virt-qga developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""virt_qga_memory planning and idempotence with fake views (the hotplug itself runs
against real guests in the workflow's integration tests)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from virt_qga import errors as E
from virt_qga.outcome import State
from virt_qga.workflows import memory as wf

from ansible_collections.virt_qga.guest_agent.plugins.modules import virt_qga_memory as mod

MIB = 1024 * 1024
BLOCK = 128 * MIB


def dimm(alias: str, mb: int, base: int) -> Any:
    return SimpleNamespace(alias=alias, size=mb * MIB, base=base, model="dimm")


def view(*dimms: Any) -> Any:
    layout = SimpleNamespace(dimms=list(dimms))
    return SimpleNamespace(layout=layout, block_size=BLOCK,
                           to_dict=lambda: {"dimms": [d.alias for d in dimms]})


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Any:
    state: dict[str, Any] = {"views": [], "calls": []}
    monkeypatch.setattr(mod, "open_domain", lambda module, what=None: SimpleNamespace(name="vm"))
    monkeypatch.setattr(mod, "open_agent", lambda module, timeout=None: SimpleNamespace(close=lambda: None))
    monkeypatch.setattr(wf, "read_view", lambda d, a: state["views"].pop(0))

    def fake_plug(domain: Any, agent: Any, size: int, **kw: Any) -> Any:
        state["calls"].append(("plug", size // MIB))
        if len(state["calls"]) == state.get("fail_at"):
            raise state["raise"]
        return wf.MemoryResult(domain="vm", action="plug", size=size)

    def fake_unplug(domain: Any, agent: Any, **kw: Any) -> Any:
        state["calls"].append(("unplug", kw["alias"]))
        return wf.MemoryResult(domain="vm", action="unplug")

    monkeypatch.setattr(wf, "plug", fake_plug)
    state["config"] = wf.ConfigDimmChanges()
    monkeypatch.setattr(wf, "config_dimm_changes", lambda d: state["config"])
    monkeypatch.setattr(wf, "sync_config_dimms", lambda d, changes, node=0: state["calls"].append(
        ("config", changes.to_dict())))
    monkeypatch.setattr(wf, "unplug", fake_unplug)
    return state


def test_at_target_is_unchanged(run_module: Any, host: Any) -> None:
    host["views"] = [view(dimm("dimm0", 256, 1 << 32))]
    res = run_module(mod, {"domain": "vm", "dimm_mb": 256})
    assert res.result["changed"] is False and host["calls"] == []


def test_grow_in_steps(run_module: Any, host: Any) -> None:
    host["views"] = [view(), view(dimm("a", 256, 1 << 32), dimm("b", 256, (1 << 32) + 256 * MIB))]
    res = run_module(mod, {"domain": "vm", "dimm_mb": 512, "dimm_size_mb": 256})
    assert host["calls"] == [("plug", 256), ("plug", 256)]
    assert res.result["changed"] is True and res.result["after_mb"] == 512
    assert res.result["plan"] == {"plug": [256, 256]}


def test_shrink_removes_highest_dimms(run_module: Any, host: Any) -> None:
    a, b = dimm("dimm0", 256, 1 << 32), dimm("dimm1", 256, (1 << 32) + 256 * MIB)
    host["views"] = [view(a, b), view(a)]
    res = run_module(mod, {"domain": "vm", "dimm_mb": 256})
    assert host["calls"] == [("unplug", "dimm1")] and res.result["after_mb"] == 256


def test_check_mode_plans_only(run_module: Any, host: Any) -> None:
    host["views"] = [view()]
    res = run_module(mod, {"domain": "vm", "dimm_mb": 256}, check_mode=True)
    assert res.result["changed"] is True and res.result["plan"] == {"plug": [256]}
    assert host["calls"] == []


def test_not_a_block_multiple(run_module: Any, host: Any) -> None:
    host["views"] = [view()]
    res = run_module(mod, {"domain": "vm", "dimm_mb": 100})
    assert res.failed and res.result["exit_code"] == 2 and host["calls"] == []


def test_shrink_must_be_whole_dimms(run_module: Any, host: Any) -> None:
    host["views"] = [view(dimm("dimm0", 512, 1 << 32))]
    res = run_module(mod, {"domain": "vm", "dimm_mb": 256})
    assert res.failed and res.result["exit_code"] == 2 and host["calls"] == []


def test_second_dimm_failing_reports_the_first(run_module: Any, host: Any) -> None:
    """The second DIMM of two fails: the task fails with changed=true and both reports."""
    host["views"] = [view()]
    host["fail_at"] = 2
    host["raise"] = E.OperationError("libvirt refused the DIMM; nothing changed", state=State.ROLLED_BACK,
                                     result={"action": "plug", "state": "rolled-back"})
    res = run_module(mod, {"domain": "vm", "dimm_mb": 512, "dimm_size_mb": 256})
    assert res.failed and res.result["changed"] is True
    assert [r["state"] for r in res.result["results"]] == ["done", "rolled-back"]
    assert host["calls"] == [("plug", 256), ("plug", 256)]


def test_first_dimm_rolled_back_is_unchanged(run_module: Any, host: Any) -> None:
    host["views"] = [view()]
    host["fail_at"] = 1
    host["raise"] = E.OperationError("refused", state=State.ROLLED_BACK, result={"state": "rolled-back"})
    res = run_module(mod, {"domain": "vm", "dimm_mb": 512, "dimm_size_mb": 256})
    assert res.failed and res.result["changed"] is False and len(res.result["results"]) == 1


def test_config_behind_live_is_fixed(run_module: Any, host: Any) -> None:
    """Live DIMMs right, the persistent definition lacking one: config=true adds it there only."""
    d = dimm("dimm0", 256, 1 << 32)
    host["views"] = [view(d), view(d)]
    host["config"] = wf.ConfigDimmChanges(add=[256 * MIB], config_total=0)
    res = run_module(mod, {"domain": "vm", "dimm_mb": 256, "config": True})
    assert res.result["changed"] is True
    assert host["calls"] == [("config", {"add": [256 * MIB], "remove": [], "config_total": 0})]
    assert res.result["diff"] == {"before": {"dimm_mb": 256, "config_dimm_mb": 0},
                                  "after": {"dimm_mb": 256, "config_dimm_mb": 256}}
    host["views"] = [view(d)]
    host["config"] = wf.ConfigDimmChanges(config_total=256 * MIB)
    again = run_module(mod, {"domain": "vm", "dimm_mb": 256, "config": True})
    assert again.result["changed"] is False


def test_diff_without_config(run_module: Any, host: Any) -> None:
    host["views"] = [view(), view(dimm("a", 256, 1 << 32))]
    res = run_module(mod, {"domain": "vm", "dimm_mb": 256})
    assert res.result["diff"] == {"before": {"dimm_mb": 0}, "after": {"dimm_mb": 256}}
