"""The virt_qga.guest_agent.guests inventory plugin listing the lab's libvirt, for real."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.ansible_conn.conftest import ansible_env, needs_ansible
from virt_qga.lab import Lab, LabGuest

#: On the host stack only. The plugins reach the agent through the library's libvirt
#: transport, whose behaviour on each stack (error codes, timeouts) test_agent.py and
#: test_stacks.py check on both; and the python guest these tests need takes ~100 s to
#: boot under TCG on the debian13 stack (these tests took 330 of its 1140 s in one run).
pytestmark = [needs_ansible, pytest.mark.stacks("host")]


def inventory_file(tmp: Path, lab: Lab, **options: Any) -> Path:
    config = {"plugin": "virt_qga.guest_agent.guests",
              "uris": [{"uri": lab.uri, "name": "lab"}, "qemu+unix:///session?socket=/nonexistent/qga-sock"],
              "keyed_groups": [{"key": "virt_qga_os.version_id | default('none')", "prefix": "osv"}],
              **options}
    path = tmp / "lab.virt_qga.yml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def test_inventory_lists_the_lab(tmp_path: Path, lab: Lab, python_guest: LabGuest,
                                 stopped_domain: str) -> None:
    inv = inventory_file(tmp_path, lab)
    proc = subprocess.run(["ansible-inventory", "-i", str(inv), "--list", "--export"],
                          env=ansible_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    hostvars = data["_meta"]["hostvars"]
    py = _plain(hostvars[python_guest.name])
    assert py["ansible_connection"] == "virt_qga.guest_agent.qga"
    assert py["ansible_virt_qga_uri"] == lab.uri and py["ansible_virt_qga_domain"] == python_guest.name
    assert py["virt_qga_state"] == "running" and py["virt_qga_agent"] is True
    assert py["virt_qga_agent_version"].startswith(python_guest.agent)
    assert py["virt_qga_os"]["id"] == "debian" and py["virt_qga_os"]["kernel_release"]
    assert py["virt_qga_hostname"] == python_guest.name
    assert py["virt_qga_addresses"] == [], "the lab guests have only loopback"
    assert any(i["name"] == "lo" for i in py["virt_qga_interfaces"])

    off = _plain(hostvars[stopped_domain])
    assert off["virt_qga_state"] == "shut off" and off["virt_qga_agent"] is False
    assert off["virt_qga_agent_error"] == "domain is shut off" and "virt_qga_os" not in off

    def members(group: str) -> set[str]:
        return set(data.get(group, {}).get("hosts", []))

    assert {python_guest.name, stopped_domain} <= members("hv_lab")
    assert python_guest.name in members("state_running") and stopped_domain in members("state_shut_off")
    assert python_guest.name in members("os_debian") and python_guest.name in members("virt_qga_agent")
    assert stopped_domain not in members("virt_qga_agent")
    assert python_guest.name in members("osv_12"), "constructed keyed_groups work"
    assert "left out" in proc.stderr and "/nonexistent/qga-sock" in proc.stderr, "an unreachable URI warns"


def test_inventory_drives_the_connection(tmp_path: Path, lab: Lab, python_guest: LabGuest) -> None:
    inv = inventory_file(tmp_path, lab, running_only=True)
    argv = ["ansible", "-i", str(inv), "virt_qga_agent", "-m", "ansible.builtin.raw", "-a", "hostname"]
    proc = subprocess.run(argv, env=ansible_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert f"{python_guest.name} | CHANGED | rc=0" in proc.stdout


def _plain(value: Any) -> Any:
    """ansible-inventory marks values from the guest as untrusted: {"__ansible_unsafe": v}."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
