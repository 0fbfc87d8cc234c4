# Copyright (c) virt-qga developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""virt_qga_info with a fake agent: gathering, unsupported facts, check mode, arguments."""

from __future__ import annotations

from typing import Any

from ansible_collections.virt_qga.guest_agent.plugins.modules import virt_qga_info

REPLIES = {
    "guest-get-osinfo": {"id": "debian", "kernel-release": "6.1.0", "machine": "x86_64"},
    "guest-get-host-name": {"host-name": "web01"},
    "guest-get-timezone": {"offset": 0, "zone": "UTC"},
    "guest-get-vcpus": [{"logical-id": 0, "online": True, "can-offline": False}],
    "guest-get-time": 1700000000000000000,
    "guest-get-memory-block-info": {"size": 134217728},
    "guest-get-memory-blocks": [{"phys-index": 32, "online": True, "can-offline": True}],
}


def test_ping_version_commands(run_module: Any, fake_agent: Any) -> None:
    agent = fake_agent(virt_qga_info, disabled=("guest-fsfreeze-freeze",))
    res = run_module(virt_qga_info, {"domain": "web01"})
    assert not res.failed and res.result["changed"] is False
    assert res.result["ping"] is True
    assert res.result["version"] == "7.2.15"
    assert "guest-exec" in res.result["supported_commands"]
    assert res.result["disabled_commands"] == ["guest-fsfreeze-freeze"]
    assert res.result["facts"] == {}
    assert res.result["freeze_status"] == "thawed"
    assert agent.calls == ["guest-ping", "guest-fsfreeze-status"] and agent.closed


def test_freeze_status_frozen_or_unknown(run_module: Any, fake_agent: Any) -> None:
    fake_agent(virt_qga_info, replies={"guest-fsfreeze-status": "frozen"})
    assert run_module(virt_qga_info, {"domain": "web01"}).result["freeze_status"] == "frozen"
    fake_agent(virt_qga_info, version="0.15.0", unknown=("guest-fsfreeze-status",))
    res = run_module(virt_qga_info, {"domain": "web01"})
    assert not res.failed and res.result["freeze_status"] is None


def test_vcpu_views_over_a_socket_are_unavailable_not_a_failure(run_module: Any, fake_agent: Any) -> None:
    agent = fake_agent(virt_qga_info, replies=REPLIES)
    agent.transport.kind = "socket"
    res = run_module(virt_qga_info, {"socket": "/run/x.sock", "gather": ["vcpu_views", "hostname"]})
    assert not res.failed and set(res.result["facts"]) == {"hostname"}
    assert "channel socket" in res.result["unavailable"]["vcpu_views"]


def test_gather_selected_facts_with_underscored_keys(run_module: Any, fake_agent: Any) -> None:
    fake_agent(virt_qga_info, replies=REPLIES)
    res = run_module(virt_qga_info, {"domain": "web01", "gather": ["osinfo", "hostname", "vcpus"]})
    facts = res.result["facts"]
    assert facts["osinfo"]["kernel_release"] == "6.1.0"
    assert facts["hostname"] == "web01"
    assert facts["vcpus"][0]["logical_id"] == 0
    assert set(facts) == {"osinfo", "hostname", "vcpus"}


def test_memory_fact(run_module: Any, fake_agent: Any) -> None:
    fake_agent(virt_qga_info, replies=REPLIES)
    res = run_module(virt_qga_info, {"domain": "web01", "gather": ["memory"]})
    assert res.result["facts"]["memory"] == {
        "block_size": 134217728, "blocks": [{"phys_index": 32, "online": True, "can_offline": True}]}


def test_unsupported_fact_is_a_warning_not_a_failure(run_module: Any, fake_agent: Any) -> None:
    fake_agent(virt_qga_info, replies=REPLIES, version="4.2.0", unknown=("guest-get-disks",))
    res = run_module(virt_qga_info, {"domain": "web01", "gather": ["disks", "timezone"]})
    assert not res.failed
    assert "disks" in res.result["unavailable"]
    assert res.result["facts"] == {"timezone": {"offset": 0, "zone": "UTC"}}
    assert any("disks" in w for w in res.result["_warnings"])


def test_check_mode_reads_the_same(run_module: Any, fake_agent: Any) -> None:
    fake_agent(virt_qga_info, replies=REPLIES)
    res = run_module(virt_qga_info, {"domain": "web01", "gather": ["hostname"]}, check_mode=True)
    assert res.result["facts"]["hostname"] == "web01" and res.result["changed"] is False


def test_gather_all(run_module: Any, fake_agent: Any) -> None:
    replies = dict(REPLIES, **{"guest-get-fsinfo": [], "guest-network-get-interfaces": [],
                               "guest-get-users": [], "guest-get-disks": []})
    agent = fake_agent(virt_qga_info, replies=replies)
    agent.transport.kind = "socket"  # the vCPU views need a libvirt domain (integration tests)
    res = run_module(virt_qga_info, {"domain": "web01", "gather": ["all"]})
    assert set(res.result["facts"]) == set(virt_qga_info.FACTS) - {"vcpu_views"}
    assert set(res.result["unavailable"]) == {"vcpu_views"}


def test_bad_gather_choice(run_module: Any, fake_agent: Any) -> None:
    fake_agent(virt_qga_info)
    res = run_module(virt_qga_info, {"domain": "web01", "gather": ["secrets"]})
    assert res.failed and "gather" in res.result["msg"]
