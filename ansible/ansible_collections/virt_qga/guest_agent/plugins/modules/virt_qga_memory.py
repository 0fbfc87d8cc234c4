#!/usr/bin/python
# Copyright: virt-qga developers
# MIT License (see the repository's LICENSE)
"""Ansible module: hot-plug or hot-unplug DIMMs until the domain has the wanted amount."""

from __future__ import annotations

# Ansible's documentation blocks repeat per module by design (author, attributes, the
# options tools/gen_ansible.py writes from shared workflow options, the failure keys of
# RETURN): data, not code, so ./dev lint's duplicate-code check skips them.
# pylint: disable=duplicate-code
DOCUMENTATION = r"""
---
module: virt_qga_memory
short_description: Hot-plug or unplug DIMM memory of a running domain, with the guest agent
version_added: 0.1.0
description:
  - Brings the total size of the hot-plugged DIMMs of a running libvirt domain to
    O(dimm_mb) MiB.
  - Growing attaches DIMMs, waits for their memory blocks to appear in the guest and onlines
    any the guest left offline. Shrinking removes whole DIMMs, highest address first - the
    guest offlines their blocks first (C(guest-set-memory-blocks), retried while busy), then
    the DIMM is detached; a refusal puts the blocks back online.
  - Idempotent - when the DIMMs already add up to O(dimm_mb), nothing is done.
  - The memory the domain boots with (outside DIMMs) is never touched. virtio-mem devices
    are not handled by this module (use C(virt-qga memory) on the hypervisor).
author:
  - virt-qga developers (@virt-qga)
extends_documentation_fragment:
  - virt_qga.guest_agent.common
attributes:
  check_mode:
    support: full
    description: The DIMMs to plug or remove are computed and returned; nothing is changed.
  diff_mode:
    support: none
    description: The before/after views are returned instead.
options:
  dimm_mb:
    description:
      - Total MiB of hot-plugged DIMM memory wanted. V(0) removes every DIMM.
      - Must be a multiple of the guest's memory block size (often 128 MiB). Shrinking must
        land on a sum of whole existing DIMMs, taken from the highest address down.
    type: int
    required: true
  dimm_size_mb:
    description:
      - Size of each DIMM added when growing; default one DIMM for the whole difference.
      - The difference must be a multiple of it.
    type: int
  node:
    description: Guest NUMA node of added DIMMs.
    type: int
    default: 0
  config:
    description: Also change the persistent domain definition.
    type: bool
    default: false
  timeout:
    description: Deadline in seconds for each plug or unplug step.
    type: float
    default: 120
notes:
  - Needs libvirt (O(domain)); O(socket) is refused because the host side is changed too.
  - The domain needs C(<maxMemory slots=...>) and a NUMA cell; the guest kernel needs memory
    hotplug (and C(memhp_default_state=online_movable) for unplug to succeed reliably).
"""

EXAMPLES = r"""
- name: Give db01 1 GiB of extra memory in two DIMMs
  virt_qga.guest_agent.virt_qga_memory:
    domain: db01
    dimm_mb: 1024
    dimm_size_mb: 512

- name: Take it back after the batch
  virt_qga.guest_agent.virt_qga_memory:
    domain: db01
    dimm_mb: 0
    timeout: 300
"""

RETURN = r"""
dimm_mb:
  description: The DIMM total asked for, in MiB.
  returned: always
  type: int
  sample: 1024
before_mb:
  description: The DIMM total before the task, in MiB.
  returned: success
  type: int
  sample: 0
after_mb:
  description: The DIMM total after the task, in MiB.
  returned: success
  type: int
  sample: 1024
plan:
  description: What was (or, in check mode, would be) done - V(plug) sizes in MiB, or the
    aliases of the DIMMs to V(unplug).
  returned: success
  type: dict
  sample: {plug: [512, 512]}
results:
  description: The workflow report of each plug or unplug step (devices, blocks, timed steps).
  returned: when a change was made
  type: list
  elements: dict
  sample: [{action: plug, state: done, devices: [{alias: dimm0, size: 536870912, blocks: [32, 33, 34, 35]}]}]
view:
  description: Memory as libvirt, QEMU and the guest see it after the task (DIMMs, blocks,
    disagreements).
  returned: success
  type: dict
  sample: {block_size: 134217728, dimms: [], disagreements: []}
msg:
  description: What happened, in words.
  returned: always
  type: str
  sample: DIMM memory 0 -> 1024 MiB
exit_code:
  description: On failure, the virt-qga exit code (1 refused and rolled back, 5 partial, 9 inconsistent...).
  returned: failure
  type: int
  sample: 1
error:
  description: On failure, the virt-qga error class.
  returned: failure
  type: str
  sample: OperationError
"""
# pylint: enable=duplicate-code

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virt_qga.guest_agent.plugins.module_utils.virt_qga_common import (
    common_argument_spec,
    module_kwargs,
    open_agent,
    open_domain,
    require_library,
    run_guarded,
)

#: Longest single agent reply wait, whatever the step's own deadline.
MAX_CALL_TIMEOUT = 30.0


def argument_spec():
    return common_argument_spec(
        dimm_mb=dict(type="int", required=True),
        dimm_size_mb=dict(type="int"),
        node=dict(type="int", default=0),
        config=dict(type="bool", default=False),
        timeout=dict(type="float", default=120.0),
    )


def body(module):
    require_library(module)
    from virt_qga.workflows.memory import MIB, plan_dimm_total, plug, read_view, unplug

    p = module.params
    if p.get("dimm_size_mb") is not None and p["dimm_size_mb"] <= 0:
        from virt_qga.errors import BadInputError

        raise BadInputError("dimm_size_mb must be positive", field="dimm_size_mb")
    domain = open_domain(module, "virt_qga_memory")
    agent = open_agent(module, timeout=min(p["timeout"], MAX_CALL_TIMEOUT))
    try:
        before = read_view(domain, agent)
        plan = plan_dimm_total(before, p["dimm_mb"] * MIB, (p.get("dimm_size_mb") or 0) * MIB)
        before_mb = plan.current // MIB
        if not plan.changes:
            module.exit_json(changed=False, dimm_mb=p["dimm_mb"], before_mb=before_mb, after_mb=before_mb,
                             plan={}, view=before.to_dict(), msg=f"DIMM memory already {before_mb} MiB")
        if module.check_mode:
            module.exit_json(changed=True, dimm_mb=p["dimm_mb"], before_mb=before_mb, after_mb=p["dimm_mb"],
                             plan=plan.to_dict(), view=before.to_dict(),
                             msg=f"would change DIMM memory {before_mb} -> {p['dimm_mb']} MiB (check mode)")
        results = []
        for size in plan.plug:
            results.append(plug(domain, agent, size, node=p["node"], config=p["config"],
                                timeout=p["timeout"]).to_dict())
        for alias in plan.unplug:
            results.append(unplug(domain, agent, alias=alias, config=p["config"],
                                  timeout=p["timeout"]).to_dict())
        after = read_view(domain, agent)
    finally:
        agent.close()
    after_mb = sum(d.size for d in after.layout.dimms) // MIB
    module.exit_json(changed=True, dimm_mb=p["dimm_mb"], before_mb=before_mb, after_mb=after_mb,
                     plan=plan.to_dict(), results=results, view=after.to_dict(),
                     msg=f"DIMM memory {before_mb} -> {after_mb} MiB")


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True, **module_kwargs())
    run_guarded(module, body)


if __name__ == "__main__":
    main()
