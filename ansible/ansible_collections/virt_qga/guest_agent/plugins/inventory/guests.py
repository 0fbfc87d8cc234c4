# Copyright (c) virt-qga developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ansible inventory plugin: the domains of libvirt hypervisors, with their guest agents' facts."""

from __future__ import annotations

DOCUMENTATION = r"""
name: guests
short_description: libvirt domains as hosts, with facts from their QEMU guest agents
version_added: 0.1.0
author:
  - virt-qga developers (@virt-qga)
description:
  - Lists the domains of one or more libvirt hypervisors as inventory hosts, set up to be managed
    through their guest agents with the P(virt_qga.guest_agent.qga#connection) connection plugin,
    so no network path into the guests is needed.
  - For every running domain the guest agent is asked for its version, the operating system, the
    host name and the network addresses. A domain whose agent does not answer (stopped, no agent
    channel, agent not running) is still listed, with what libvirt knows and the reason in
    C(virt_qga_agent_error); it never fails the inventory.
  - "Host variables: C(ansible_connection) (V(virt_qga.guest_agent.qga)), C(ansible_virt_qga_uri),
    C(ansible_virt_qga_domain), C(virt_qga_hypervisor), C(virt_qga_uuid), C(virt_qga_state),
    C(virt_qga_agent) (whether the agent answered), and when it did C(virt_qga_agent_version),
    C(virt_qga_os) (the agent's C(guest-get-osinfo), dashes in keys turned into underscores),
    C(virt_qga_hostname), C(virt_qga_interfaces) and C(virt_qga_addresses) (all non-loopback
    IP addresses)."
  - "Groups: C(hv_<name>) per hypervisor, C(state_<state>) (for example C(state_running),
    C(state_shut_off)), C(os_<id>) from the agent's OS id (for example C(os_debian)) and
    C(virt_qga_agent) for the hosts whose agent answered."
  - The inventory source is a YAML file whose name ends in C(virt_qga.yml) or C(virt_qga.yaml).
extends_documentation_fragment:
  - constructed
requirements:
  - the virt-qga Python package and libvirt-python on the control node
options:
  plugin:
    description: The name of this plugin; makes the file an inventory source of it.
    type: str
    required: true
    choices: [virt_qga.guest_agent.guests]
  uris:
    description:
      - The hypervisors, as libvirt URIs (a string each), or as dictionaries with C(uri) and
        C(name), the name giving the hypervisor's group C(hv_<name>).
      - Without a name, it is taken from the URI's host (C(qemu+ssh://root@hv01/system) is
        C(hv01)), else from its path (C(qemu:///system) is C(system)).
      - A hypervisor that cannot be reached is left out with a warning (or fails the inventory
        with O(strict)).
    type: list
    elements: raw
    default: [qemu:///system]
  agent_facts:
    description: Ask the guest agents of running domains for facts. Without them, only what libvirt knows.
    type: bool
    default: true
  running_only:
    description: List only running domains.
    type: bool
    default: false
  timeout:
    description: Seconds to wait for each guest agent reply.
    type: float
    default: 5
  workers:
    description: Guest agents asked at the same time.
    type: int
    default: 8
"""

EXAMPLES = r"""
# lab.virt_qga.yml
plugin: virt_qga.guest_agent.guests
uris:
  - uri: qemu+ssh://root@hv01/system
    name: hv01
  - qemu+ssh://root@hv02/system
running_only: true
# constructed: more groups and variables from the facts
keyed_groups:
  - key: virt_qga_os.version_id | default('unknown')
    prefix: os_version
groups:
  old_agents: virt_qga_agent_version is defined and virt_qga_agent_version is version('8.0', '<')

# ansible-inventory -i lab.virt_qga.yml --graph
# ansible-playbook -i lab.virt_qga.yml site.yml   (tasks run inside the guests over their agents)
"""

import re
import typing as t
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable
from ansible.utils.display import Display

try:
    from virt_qga.agent import GuestAgent
    from virt_qga.connection import domain_state, open_connection
    from virt_qga.errors import CommandNotSupportedError, VirtQgaError
    from virt_qga.transport.libvirt import LibvirtTransport
except ImportError as _exc:  # reported when the plugin is used
    VIRT_QGA_IMPORT_ERROR: ImportError | None = _exc
else:
    VIRT_QGA_IMPORT_ERROR = None

display = Display()

CONNECTION = "virt_qga.guest_agent.qga"

#: Longest one-line error kept in a host variable.
MAX_ERROR = 300


def group_name(prefix: str, text: str) -> str:
    """A valid Ansible group name: lowercase, runs of other characters become one ``_``."""
    body = re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_") or "unknown"
    return f"{prefix}_{body}"


def hypervisor_name(uri: str) -> str:
    """``qemu+ssh://root@hv01/system`` -> ``hv01``; ``qemu:///system`` -> ``system``;
    ``qemu+unix:///session?socket=...`` -> ``session``."""
    parts = urlsplit(uri)
    return parts.hostname or parts.path.strip("/").split("/")[-1] or parts.scheme or "local"


def parse_uris(entries: list[t.Any]) -> list[tuple[str, str]]:
    """``uris`` option -> [(uri, name)], names unique (a repeated one gets ``_2``, ``_3``)."""
    out: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for entry in entries:
        if isinstance(entry, str):
            uri, name = entry, hypervisor_name(entry)
        elif isinstance(entry, dict) and isinstance(entry.get("uri"), str):
            uri = entry["uri"]
            name = str(entry.get("name") or hypervisor_name(uri))
        else:
            raise AnsibleParserError("uris: each entry is a URI or a dict with 'uri' (and 'name'), "
                                     f"got {entry!r}")
        base = group_name("hv", name)[3:]
        seen[base] = seen.get(base, 0) + 1
        out.append((uri, base if seen[base] == 1 else f"{base}_{seen[base]}"))
    return out


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:MAX_ERROR]


def underscore_keys(value: t.Any) -> t.Any:
    """The agent's ``kernel-release`` becomes ``kernel_release`` (as in virt_qga_info)."""
    if isinstance(value, dict):
        return {str(k).replace("-", "_"): underscore_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [underscore_keys(v) for v in value]
    return value


def agent_facts(dom: t.Any, timeout: float) -> dict[str, t.Any]:
    """What the agent of a running domain tells; ``virt_qga_agent`` False and the reason
    when it does not answer. Facts a given agent lacks are just left out."""
    facts: dict[str, t.Any] = {"virt_qga_agent": False}
    try:
        agent = GuestAgent(LibvirtTransport(dom, timeout=timeout), timeout=timeout)
        facts["virt_qga_agent_version"] = agent.version
    except VirtQgaError as exc:
        facts["virt_qga_agent_error"] = one_line(exc)
        return facts
    facts["virt_qga_agent"] = True
    readers: dict[str, t.Callable[[], t.Any]] = {
        "virt_qga_os": agent.get_osinfo,
        "virt_qga_hostname": agent.get_host_name,
        "virt_qga_interfaces": agent.network_get_interfaces,
    }
    unavailable: list[str] = []
    for var, read in readers.items():
        try:
            facts[var] = underscore_keys(read())
        except CommandNotSupportedError:
            unavailable.append(var)
        except VirtQgaError as exc:
            unavailable.append(var)
            facts.setdefault("virt_qga_agent_error", one_line(exc))
    if isinstance(facts.get("virt_qga_hostname"), dict):
        facts["virt_qga_hostname"] = facts["virt_qga_hostname"].get("host_name")
    if isinstance(facts.get("virt_qga_interfaces"), list):
        facts["virt_qga_addresses"] = addresses(facts["virt_qga_interfaces"])
    if unavailable:
        facts["virt_qga_unavailable"] = unavailable
    return facts


def addresses(interfaces: list[dict[str, t.Any]]) -> list[str]:
    """Every IP address of every interface but loopback, in the agent's order."""
    out: list[str] = []
    for iface in interfaces:
        if iface.get("name") == "lo":
            continue
        for addr in iface.get("ip_addresses") or []:
            ip = addr.get("ip_address")
            if ip and not ip.startswith("127.") and ip != "::1" and ip not in out:
                out.append(ip)
    return out


def _option(plugin: t.Any, name: str) -> t.Any:
    """``plugin.get_option(name)``: ansible-core leaves it unannotated."""
    return plugin.get_option(name)


class InventoryModule(BaseInventoryPlugin, Constructable):
    """See DOCUMENTATION."""

    NAME = "virt_qga.guest_agent.guests"

    def verify_file(self, path: str) -> bool:
        base: t.Any = super()
        return bool(base.verify_file(path)) and path.endswith(("virt_qga.yml", "virt_qga.yaml"))

    def parse(self, inventory: t.Any, loader: t.Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path, cache)
        plugin: t.Any = self  # ansible-core's plugin helpers are unannotated
        plugin._read_config_data(path)
        if VIRT_QGA_IMPORT_ERROR is not None:
            raise AnsibleParserError("the virt_qga.guest_agent.guests inventory needs the virt-qga Python "
                                     f"package (pip install virt-qga): {VIRT_QGA_IMPORT_ERROR}")
        strict = bool(_option(self, "strict"))
        for uri, name in parse_uris(_option(self, "uris") or []):
            try:
                domains = self._domains(uri)
            except VirtQgaError as exc:
                if strict:
                    raise AnsibleParserError(f"hypervisor {name} ({uri}): {exc}") from None
                display.warning(f"virt_qga.guest_agent.guests: hypervisor {name} ({uri}) left out: {exc}")
                continue
            for host in domains:
                self._add(host, uri, name, strict)

    def _domains(self, uri: str) -> list[dict[str, t.Any]]:
        """One record per domain of ``uri``, agents asked in parallel (``workers``)."""
        conn = open_connection(uri, fresh=True)
        try:
            listed = [(dom, domain_state(dom)) for dom in conn.listAllDomains(0)]
            if _option(self, "running_only"):
                listed = [(dom, state) for dom, state in listed if state == "running"]
            timeout = float(_option(self, "timeout"))
            ask = bool(_option(self, "agent_facts"))

            def record(item: tuple[t.Any, str]) -> dict[str, t.Any]:
                dom, state = item
                out: dict[str, t.Any] = {"name": dom.name(), "virt_qga_uuid": dom.UUIDString(),
                                         "virt_qga_state": state, "virt_qga_agent": False}
                if ask and state == "running":
                    out.update(agent_facts(dom, timeout))
                elif state != "running":
                    out["virt_qga_agent_error"] = f"domain is {state}"
                return out

            workers = max(1, min(int(_option(self, "workers")), len(listed) or 1))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                return list(pool.map(record, listed))
        finally:
            try:
                conn.close()
            except Exception:  # already gone: nothing to release
                pass

    def _add(self, record: dict[str, t.Any], uri: str, hv: str, strict: bool) -> None:
        inventory: t.Any = self.inventory  # set by parse(); InventoryData
        domain = record.pop("name")
        host = domain if domain not in inventory.hosts else f"{domain}_{hv}"
        if host != domain:
            display.warning(f"virt_qga.guest_agent.guests: domain {domain} exists on more than one "
                            f"hypervisor; the one on {hv} is host {host}")
        inventory.add_host(host)
        variables = {
            "ansible_connection": CONNECTION,
            "ansible_virt_qga_uri": uri,
            "ansible_virt_qga_domain": domain,
            "virt_qga_hypervisor": hv,
            **record,
        }
        for key, value in variables.items():
            inventory.set_variable(host, key, value)
        groups = [group_name("hv", hv), group_name("state", record["virt_qga_state"])]
        os_id = (record.get("virt_qga_os") or {}).get("id")
        if os_id:
            groups.append(group_name("os", os_id))
        if record.get("virt_qga_agent"):
            groups.append("virt_qga_agent")
        for group in groups:
            inventory.add_group(group)
            inventory.add_child(group, host)
        hostvars = inventory.get_host(host).get_vars()
        plugin: t.Any = self  # the constructed helpers are unannotated
        plugin._set_composite_vars(_option(self, "compose"), hostvars, host, strict=strict)
        plugin._add_host_to_composed_groups(_option(self, "groups"), hostvars, host, strict=strict)
        plugin._add_host_to_keyed_groups(_option(self, "keyed_groups"), hostvars, host, strict=strict)
