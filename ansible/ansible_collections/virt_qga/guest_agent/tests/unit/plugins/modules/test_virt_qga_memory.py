"""virt_qga_memory planning and idempotence with fake views (the hotplug itself runs
against real guests in the workflow's integration tests)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
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
        return wf.MemoryResult(domain="vm", action="plug", size=size)

    def fake_unplug(domain: Any, agent: Any, **kw: Any) -> Any:
        state["calls"].append(("unplug", kw["alias"]))
        return wf.MemoryResult(domain="vm", action="unplug")

    monkeypatch.setattr(wf, "plug", fake_plug)
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
