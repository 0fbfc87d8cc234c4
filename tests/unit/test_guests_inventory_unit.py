"""Pure logic of the virt_qga.guest_agent.guests inventory plugin (names, URIs, facts)."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

pytest.importorskip("ansible")

from ansible.errors import AnsibleParserError

from tests.unit.collection_loader import collection_loader  # noqa: F401  (autouse fixture)
from virt_qga.errors import AgentNotConfiguredError, AgentTimeoutError, CommandNotSupportedError


@pytest.fixture
def inv() -> Any:
    """The plugin module (importable once the collection finder is installed)."""
    return importlib.import_module("ansible_collections.virt_qga.guest_agent.plugins.inventory.guests")


def test_group_and_hypervisor_names(inv: Any) -> None:
    assert inv.group_name("state", "shut off") == "state_shut_off"
    assert inv.group_name("os", "Debian") == "os_debian"
    assert inv.group_name("hv", "--") == "hv_unknown"
    assert inv.hypervisor_name("qemu+ssh://root@hv01.example.com/system") == "hv01.example.com"
    assert inv.hypervisor_name("qemu:///system") == "system"
    assert inv.hypervisor_name("qemu+unix:///session?socket=/x/libvirt-sock") == "session"


def test_uris_accept_strings_and_dicts_and_keep_names_unique(inv: Any) -> None:
    got = inv.parse_uris(["qemu+ssh://hv1/system", {"uri": "qemu:///system", "name": "Local HV"},
                          "qemu+tcp://hv1/system"])
    assert got == [("qemu+ssh://hv1/system", "hv1"), ("qemu:///system", "local_hv"),
                   ("qemu+tcp://hv1/system", "hv1_2")]
    with pytest.raises(AnsibleParserError, match="uris"):
        inv.parse_uris([{"name": "no uri"}])


def test_addresses_skip_loopback(inv: Any) -> None:
    ifaces = [{"name": "lo", "ip_addresses": [{"ip_address": "127.0.0.1"}]},
              {"name": "eth0", "ip_addresses": [{"ip_address": "192.0.2.7"}, {"ip_address": "fe80::1"},
                                                {"ip_address": "::1"}]},
              {"name": "eth1"}]
    assert inv.addresses(ifaces) == ["192.0.2.7", "fe80::1"]


class FakeAgent:
    def __init__(self, version: Any = "10.0.2", missing: tuple[str, ...] = (), failing: tuple[str, ...] = ()):
        self._version, self.missing, self.failing = version, missing, failing

    @property
    def version(self) -> str:
        if isinstance(self._version, Exception):
            raise self._version
        return str(self._version)

    def _read(self, name: str, value: Any) -> Any:
        if name in self.missing:
            raise CommandNotSupportedError(f"command {name} is not supported")
        if name in self.failing:
            raise AgentTimeoutError(f"no reply to {name}\nwithin 5 s")
        return value

    def get_osinfo(self) -> Any:
        return self._read("osinfo", {"id": "debian", "kernel-release": "6.1", "version-id": "12"})

    def get_host_name(self) -> Any:
        return self._read("hostname", {"host-name": "web01"})

    def network_get_interfaces(self) -> Any:
        return self._read("interfaces", [{"name": "eth0", "ip-addresses": [{"ip-address": "192.0.2.9"}]}])


def facts_with(inv: Any, monkeypatch: pytest.MonkeyPatch, agent: FakeAgent) -> dict[str, Any]:
    monkeypatch.setattr(inv, "LibvirtTransport", lambda dom, timeout: None)
    monkeypatch.setattr(inv, "GuestAgent", lambda transport, timeout: agent)
    result: dict[str, Any] = inv.agent_facts(object(), 5.0)
    return result


def test_agent_facts(inv: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    f = facts_with(inv, monkeypatch, FakeAgent())
    assert f["virt_qga_agent"] is True and f["virt_qga_agent_version"] == "10.0.2"
    assert f["virt_qga_os"] == {"id": "debian", "kernel_release": "6.1", "version_id": "12"}
    assert f["virt_qga_hostname"] == "web01" and f["virt_qga_addresses"] == ["192.0.2.9"]
    assert "virt_qga_agent_error" not in f and "virt_qga_unavailable" not in f


def test_agent_without_some_commands_keeps_the_rest(inv: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    f = facts_with(inv, monkeypatch, FakeAgent(version="2.5.0", missing=("osinfo",), failing=("interfaces",)))
    assert f["virt_qga_agent"] is True and "virt_qga_os" not in f and f["virt_qga_hostname"] == "web01"
    assert f["virt_qga_unavailable"] == ["virt_qga_os", "virt_qga_interfaces"]
    assert f["virt_qga_agent_error"] == "no reply to interfaces within 5 s", "one line"


def test_domain_without_agent_is_listed_with_the_reason(inv: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = AgentNotConfiguredError("no guest agent channel configured")
    f = facts_with(inv, monkeypatch, FakeAgent(version=missing))
    assert f == {"virt_qga_agent": False, "virt_qga_agent_error": "no guest agent channel configured"}
