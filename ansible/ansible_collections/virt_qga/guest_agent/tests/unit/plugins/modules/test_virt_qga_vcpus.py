# Copyright (c) virt-qga developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""virt_qga_vcpus decisions with fake views: idempotence, check mode, changed, failures.
The hotplug itself is exercised against real guests by the workflow's own integration tests."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from virt_qga import errors as E
from virt_qga.outcome import State
from virt_qga.workflows import vcpus as wf

from ansible_collections.virt_qga.guest_agent.plugins.modules import virt_qga_vcpus as mod


class Views:
    def __init__(self, enabled: set[int], online: set[int], qemu: set[int] | None = None,
                 problems: tuple[str, ...] = ()) -> None:
        self.libvirt = SimpleNamespace(enabled_ids=set(enabled), maximum=4)
        self.guest_online = set(online)
        self.qemu_present = set(enabled) if qemu is None else qemu
        self._problems = list(problems)

    def disagreements(self) -> list[str]:
        return self._problems

    def to_dict(self) -> dict[str, Any]:
        return {"libvirt": {"enabled": sorted(self.libvirt.enabled_ids)},
                "guest": {"online": sorted(self.guest_online)}}


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Any:
    state: dict[str, Any] = {"views": [], "calls": []}
    agent = SimpleNamespace(close=lambda: None)
    monkeypatch.setattr(mod, "open_domain", lambda module, what=None: SimpleNamespace(name="vm"))
    monkeypatch.setattr(mod, "open_agent", lambda module, timeout=None: agent)
    monkeypatch.setattr(wf, "read_views", lambda d, a: state["views"].pop(0))

    def fake_set(domain: Any, agent: Any, target: int, **kw: Any) -> Any:
        state["calls"].append((target, kw))
        if "raise" in state:
            raise state["raise"]
        return wf.VcpuResult(domain="vm", action="grow", target=target, plugged=[2],
                             changed_guest=[2])

    monkeypatch.setattr(wf, "set_vcpu_count", fake_set)
    state["config"] = 2
    monkeypatch.setattr(wf, "config_vcpu_count", lambda d: state["config"])

    def fake_set_config(domain: Any, count: int) -> None:
        state["calls"].append(("config", count))
        state["config"] = count

    monkeypatch.setattr(wf, "set_config_vcpu_count", fake_set_config)
    return state


def test_already_at_target_is_unchanged(run_module: Any, host: Any) -> None:
    host["views"] = [Views({0, 1}, {0, 1})]
    res = run_module(mod, {"domain": "vm", "count": 2})
    assert res.result["changed"] is False and host["calls"] == []


def test_disagreeing_views_are_not_in_sync(run_module: Any, host: Any) -> None:
    host["views"] = [Views({0, 1, 2}, {0, 1}, qemu={0, 1}, problems=("vCPU 2: libvirt says enabled",)),
                     Views({0, 1}, {0, 1})]
    res = run_module(mod, {"domain": "vm", "count": 2})
    assert host["calls"] and res.result["changed"] is True


def test_check_mode_reports_without_calling(run_module: Any, host: Any) -> None:
    host["views"] = [Views({0, 1}, {0, 1})]
    res = run_module(mod, {"domain": "vm", "count": 3}, check_mode=True)
    assert res.result["changed"] is True and "check mode" in res.result["msg"]
    assert host["calls"] == []


def test_grow_changes(run_module: Any, host: Any) -> None:
    host["views"] = [Views({0, 1}, {0, 1}), Views({0, 1, 2}, {0, 1, 2})]
    res = run_module(mod, {"domain": "vm", "count": 3, "config": True, "wait_timeout": 90})
    assert res.result["changed"] is True and res.result["msg"] == "2 -> 3 vCPUs, persistent definition 2 -> 3"
    assert host["calls"] == [(3, {"guest_only": False, "config": True, "timeout": 90.0})]
    assert res.result["diff"] == {"before": {"vcpus": 2, "config_vcpus": 2},
                                  "after": {"vcpus": 3, "config_vcpus": 3}}


def test_guest_only_counts_online(run_module: Any, host: Any) -> None:
    host["views"] = [Views({0, 1, 2}, {0, 1})]
    res = run_module(mod, {"domain": "vm", "count": 2, "guest_only": True})
    assert res.result["changed"] is False


def test_pending_state_fails_with_exit_5(run_module: Any, host: Any) -> None:
    host["views"] = [Views({0, 1, 2}, {0, 1, 2})]
    host["raise"] = E.OperationError("unplug of vCPU 2 still pending", state=State.PENDING,
                                     result={"state": "pending"})
    res = run_module(mod, {"domain": "vm", "count": 2})
    assert res.failed and res.result["exit_code"] == 5 and res.result["state"] == "pending"


def test_socket_is_refused(run_module: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    res = run_module(mod, {"socket": "/run/q.sock", "count": 2})
    assert res.failed and res.result["exit_code"] == 2 and "libvirt" in res.result["msg"]


def test_count_must_be_positive(run_module: Any) -> None:
    res = run_module(mod, {"domain": "vm", "count": 0})
    assert res.failed and res.result["exit_code"] == 2


def test_config_behind_live_is_fixed(run_module: Any, host: Any) -> None:
    """Live already at 3, the persistent definition at 2: config=true changes only the
    definition, reports changed, and the next run is idempotent."""
    host["views"] = [Views({0, 1, 2}, {0, 1, 2}), Views({0, 1, 2}, {0, 1, 2})]
    res = run_module(mod, {"domain": "vm", "count": 3, "config": True})
    assert res.result["changed"] is True and host["calls"] == [("config", 3)]
    assert res.result["diff"] == {"before": {"vcpus": 3, "config_vcpus": 2},
                                  "after": {"vcpus": 3, "config_vcpus": 3}}
    assert "persistent definition 2 -> 3" in res.result["msg"]
    host["views"] = [Views({0, 1, 2}, {0, 1, 2})]
    again = run_module(mod, {"domain": "vm", "count": 3, "config": True})
    assert again.result["changed"] is False and host["calls"] == [("config", 3)]


def test_config_behind_live_check_mode(run_module: Any, host: Any) -> None:
    host["views"] = [Views({0, 1, 2}, {0, 1, 2})]
    res = run_module(mod, {"domain": "vm", "count": 3, "config": True}, check_mode=True)
    assert res.result["changed"] is True and host["calls"] == []


def test_config_false_ignores_the_definition(run_module: Any, host: Any) -> None:
    host["views"] = [Views({0, 1, 2}, {0, 1, 2})]
    res = run_module(mod, {"domain": "vm", "count": 3})
    assert res.result["changed"] is False and host["calls"] == []


def test_partial_failure_reports_changed(run_module: Any, host: Any) -> None:
    """A failure that left something done (partial, pending, inconsistent) is changed."""
    host["views"] = [Views({0, 1}, {0, 1})]
    host["raise"] = E.OperationError("vCPU 3 refused", state=State.PARTIAL,
                                     result={"state": "partial", "plugged": [2]})
    res = run_module(mod, {"domain": "vm", "count": 4})
    assert res.failed and res.result["changed"] is True and res.result["result"]["plugged"] == [2]


def test_rolled_back_failure_is_not_changed(run_module: Any, host: Any) -> None:
    host["views"] = [Views({0, 1}, {0, 1})]
    host["raise"] = E.OperationError("guest refused", state=State.ROLLED_BACK,
                                     result={"state": "rolled-back"})
    res = run_module(mod, {"domain": "vm", "count": 4})
    assert res.failed and res.result["changed"] is False


def test_timeout_is_per_reply_and_wait_timeout_the_deadline(run_module: Any, host: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    def fake_open(module: Any, timeout: Any = None) -> Any:
        seen.append(timeout)
        return SimpleNamespace(close=lambda: None)

    monkeypatch.setattr(mod, "open_agent", fake_open)
    host["views"] = [Views({0, 1}, {0, 1}), Views({0, 1, 2}, {0, 1, 2})]
    run_module(mod, {"domain": "vm", "count": 3, "timeout": 7, "wait_timeout": 200})
    assert seen == [7.0] and host["calls"][0][1]["timeout"] == 200.0


def test_out_of_range_count_names_the_module_option(run_module: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workflow's range check speaks of count (the module's option), not the CLI's N."""
    from virt_qga.workflows.vcpus import change

    views = SimpleNamespace(guest={"online": [0, 1]}, libvirt=SimpleNamespace(maximum=4, enabled_ids={0, 1}))
    monkeypatch.setattr(change, "read_views", lambda d, a: views)
    monkeypatch.setattr(mod, "open_domain", lambda module, what=None: SimpleNamespace(name="vm"))
    monkeypatch.setattr(mod, "open_agent", lambda module, timeout=None: SimpleNamespace(close=lambda: None))
    monkeypatch.setattr(mod, "in_sync", lambda views, count, guest_only: False)
    monkeypatch.setattr(wf, "read_views", lambda d, a: Views({0, 1}, {0, 1}))
    res = run_module(mod, {"domain": "vm", "count": 9})
    assert res.failed and res.result["exit_code"] == 2, res.result
    assert res.result["msg"].startswith("count must be between 1 and 4") and res.result["field"] == "count"
