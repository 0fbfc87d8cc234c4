#!/usr/bin/python
# Copyright (c) virt-qga developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ansible module: read what a guest agent can tell (read-only)."""

from __future__ import annotations

# Ansible's documentation blocks repeat per module by design (author, attributes, the
# options tools/gen_ansible.py writes from shared workflow options, the failure keys of
# RETURN): data, not code, so ./dev lint's duplicate-code check skips them.
# pylint: disable=duplicate-code
DOCUMENTATION = r"""
---
module: virt_qga_info
short_description: Check a guest agent and read facts from the guest
version_added: 0.1.0
description:
  - Pings the QEMU guest agent of a libvirt domain (or behind a channel socket), reports
    its version, which commands it supports and whether the guest's filesystems are
    frozen, and optionally reads facts from the guest such as its OS, hostname,
    filesystems, vCPUs, network interfaces and time zone.
  - Never changes anything in the guest or on the host.
author:
  - virt-qga developers (@virt-qga)
extends_documentation_fragment:
  - virt_qga.guest_agent.common
attributes:
  check_mode:
    support: full
    description: Read-only; behaves the same in check mode.
  diff_mode:
    support: none
    description: Nothing to diff.
options:
  gather:
    description:
      - Which facts to read from the guest, in addition to ping, version and commands.
      - V(all) reads every fact listed here.
      - A fact whose command this agent does not support (or has disabled) is left out
        of RV(facts), recorded in RV(unavailable) and reported as a warning; it does not
        fail the task.
      - V(vcpu_views) gives the three views of the vCPUs that C(virt-qga vcpus DOMAIN) shows
        (the guest's, QEMU's and libvirt's, with their disagreements). It needs libvirt
        (not O(socket)) and asks QEMU through libvirt's monitor passthrough, which libvirt
        records as a taint of the domain (C(custom-monitor)).
    type: list
    elements: str
    choices: [osinfo, hostname, fsinfo, vcpus, interfaces, timezone, users, disks, time, memory,
              vcpu_views, all]
    default: []
"""

EXAMPLES = r"""
- name: Is the agent of web01 answering, and which version is it?
  virt_qga.guest_agent.virt_qga_info:
    domain: web01
  register: agent

- name: Read OS, hostname and filesystems over a session libvirt
  virt_qga.guest_agent.virt_qga_info:
    domain: web01
    uri: qemu:///session
    gather: [osinfo, hostname, fsinfo]
  register: guest

- name: Show the guest kernel
  ansible.builtin.debug:
    msg: "{{ guest.facts.osinfo.kernel_release }}"

- name: Everything, through a plain QEMU channel socket
  virt_qga.guest_agent.virt_qga_info:
    socket: /run/qemu/vm7/qga.sock
    gather: all
"""

RETURN = r"""
ping:
  description: Whether the agent answered C(guest-ping).
  returned: success
  type: bool
  sample: true
version:
  description: The agent's own version (qemu-ga).
  returned: success
  type: str
  sample: "7.2.15"
transport:
  description: How the agent was reached.
  returned: success
  type: str
  sample: libvirt
supported_commands:
  description: Commands the agent knows and has enabled, sorted.
  returned: success
  type: list
  elements: str
  sample: [guest-exec, guest-exec-status, guest-fsfreeze-freeze, guest-ping]
freeze_status:
  description: The guest's filesystem freeze state (C(guest-fsfreeze-status)), V(thawed) or
    V(frozen); null when this agent does not support the command.
  returned: success
  type: str
  sample: thawed
disabled_commands:
  description: Commands the agent knows but has disabled (by configuration or because the
    filesystems are frozen), sorted.
  returned: success
  type: list
  elements: str
  sample: []
facts:
  description:
    - The facts asked for with O(gather), keyed by the O(gather) name.
    - The agent's replies as they are, except that dashes in key names become
      underscores (C(kernel-release) is C(kernel_release)) so templates can use them.
    - O(gather=hostname) gives a string, O(gather=time) nanoseconds since the epoch,
      O(gather=memory) the memory block size and the blocks; O(gather=vcpu_views) a dict
      with C(libvirt) (maximum, current, enabled), C(qemu) (present), C(guest) (present,
      online), one row per vCPU in C(vcpus) and C(disagreements); the others are the
      agent's lists or objects.
  returned: success
  type: dict
  sample:
    osinfo: {id: debian, kernel_release: 6.1.0-56-cloud-amd64, machine: x86_64}
    hostname: web01
unavailable:
  description: Facts that could not be read because this agent does not support their
    command, with the reason.
  returned: success
  type: dict
  sample: {disks: "command guest-get-disks is not supported by this agent (qemu-ga 4.2.0)"}
"""
# pylint: enable=duplicate-code

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virt_qga.guest_agent.plugins.module_utils.virt_qga_common import (
    common_argument_spec,
    module_kwargs,
    open_agent,
    require_library,
    run_guarded,
)

#: gather name -> GuestAgent method name.
FACTS = {
    "osinfo": "get_osinfo",
    "hostname": "get_host_name",
    "fsinfo": "get_fsinfo",
    "vcpus": "get_vcpus",
    "interfaces": "network_get_interfaces",
    "timezone": "get_timezone",
    "users": "get_users",
    "disks": "get_disks",
    "time": "get_time",
    "memory": "get_memory_blocks",
    "vcpu_views": "",  # not one agent command: see read_fact()
}

#: Why vcpu_views cannot be read over a channel socket.
NO_DOMAIN = "the QEMU and libvirt views need libvirt; a channel socket has no domain behind it"


def argument_spec():
    return common_argument_spec(
        gather=dict(type="list", elements="str", default=[], choices=sorted([*FACTS, "all"])),
    )


def underscore_keys(value):
    """Dashes in dict keys become underscores, recursively (values untouched)."""
    if isinstance(value, dict):
        return {str(k).replace("-", "_"): underscore_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [underscore_keys(v) for v in value]
    return value


def selected_facts(gather):
    if "all" in gather:
        return list(FACTS)
    return [name for name in FACTS if name in gather]


def read_fact(agent, name):
    if name == "hostname":
        return agent.get_host_name().get("host-name")
    if name == "vcpu_views":
        from virt_qga.workflows.power import domain_of
        from virt_qga.workflows.vcpus import read_views

        dom = domain_of(agent)
        return None if dom is None else read_views(dom, agent).to_dict()
    if name == "memory":
        info = agent.get_memory_block_info()
        return {"block_size": info.get("size"), "blocks": underscore_keys(agent.get_memory_blocks())}
    return underscore_keys(getattr(agent, FACTS[name])())


def gather_info(agent, gather):
    """The module's result (without ``changed``); raises virt-qga errors."""
    from virt_qga.errors import CommandNotSupportedError

    agent.ping()
    try:
        freeze = agent.fsfreeze_status()
    except CommandNotSupportedError:
        freeze = None
    caps = agent.capabilities(refresh=True)
    result = {
        "ping": True,
        "freeze_status": freeze,
        "version": caps.version,
        "transport": getattr(agent.transport, "kind", "unknown"),
        "supported_commands": sorted(n for n, on in caps.commands.items() if on),
        "disabled_commands": sorted(n for n, on in caps.commands.items() if not on),
        "facts": {},
        "unavailable": {},
    }
    for name in selected_facts(gather):
        try:
            value = read_fact(agent, name)
        except CommandNotSupportedError as exc:
            result["unavailable"][name] = str(exc)
            continue
        if value is None and name == "vcpu_views":
            result["unavailable"][name] = NO_DOMAIN
        else:
            result["facts"][name] = value
    return result


def body(module):
    require_library(module)
    agent = open_agent(module)
    try:
        result = gather_info(agent, module.params["gather"])
    finally:
        agent.close()
    for name, why in sorted(result["unavailable"].items()):
        module.warn(f"fact {name} not gathered: {why}")
    module.exit_json(changed=False, **result)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True, **module_kwargs())
    run_guarded(module, body)


if __name__ == "__main__":
    main()
