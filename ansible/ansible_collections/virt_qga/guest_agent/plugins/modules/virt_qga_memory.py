#!/usr/bin/python
# Copyright (c) virt-qga developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
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
  - Idempotent - when the DIMMs already add up to O(dimm_mb) (and, with O(config=true), the
    persistent definition has the same DIMMs), nothing is done. When only the persistent
    definition differs, only the definition is changed.
  - A failure after some steps succeeded (the second DIMM of two) reports C(changed=true)
    and the steps done in RV(results).
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
    support: full
    description: The DIMM total in MiB (and the persistent definition's with O(config=true))
      before and after.
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
  wait_timeout:
    description:
      - Deadline in seconds for the whole change (every plug or unplug step together).
      - O(timeout) still bounds each single agent reply (at most this deadline).
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
    wait_timeout: 300
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
  description:
    - The workflow report of each plug or unplug step (devices, blocks, timed steps).
    - On a failure, the steps that were done before it and the report of the one that failed.
  returned: when a change was made or attempted
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
    error_changed,
    fail_from_error,
    module_kwargs,
    open_agent,
    open_domain,
    require_library,
    run_guarded,
    wait_argument_spec,
)


def argument_spec():
    return common_argument_spec(
        dimm_mb=dict(type="int", required=True),
        dimm_size_mb=dict(type="int"),
        node=dict(type="int", default=0),
        config=dict(type="bool", default=False),
        **wait_argument_spec(120.0),
    )


def body(module):
    require_library(module)
    from virt_qga.workflows.memory import (
        MIB,
        config_dimm_changes,
        plan_dimm_total,
        read_view,
        sync_config_dimms,
    )

    p = module.params
    if p.get("dimm_size_mb") is not None and p["dimm_size_mb"] <= 0:
        from virt_qga.errors import BadInputError

        raise BadInputError("dimm_size_mb must be positive", field="dimm_size_mb")
    domain = open_domain(module, "virt_qga_memory")
    agent = open_agent(module, timeout=min(p["timeout"], p["wait_timeout"]))
    try:
        before = read_view(domain, agent)
        plan = plan_dimm_total(before, p["dimm_mb"] * MIB, (p.get("dimm_size_mb") or 0) * MIB)
        before_mb = plan.current // MIB
        # With config=true the persistent DIMMs are read; they are fixed on their own only
        # when the live ones are right already (a live change updates both at each step).
        persistent = config_dimm_changes(domain) if p["config"] else None
        config_mb = persistent.config_total // MIB if persistent is not None else None
        config = persistent if persistent and not plan.changes else None
        diff = memory_diff(before_mb, config_mb, p["dimm_mb"], p["config"])
        if not plan.changes and not config:
            module.exit_json(changed=False, dimm_mb=p["dimm_mb"], before_mb=before_mb, after_mb=before_mb,
                             plan={}, view=before.to_dict(), msg=f"DIMM memory already {before_mb} MiB")
        if module.check_mode:
            planned = memory_text(before_mb, config_mb, p["dimm_mb"])
            module.exit_json(changed=True, dimm_mb=p["dimm_mb"], before_mb=before_mb, after_mb=p["dimm_mb"],
                             plan=plan.to_dict(), view=before.to_dict(), diff=diff,
                             msg=f"would change {planned} (check mode)")
        if config:
            sync_config_dimms(domain, config, node=p["node"])
            results = [{"action": "config", "state": "done", **config.to_dict()}]
        else:
            results = run_steps(module, domain, agent, plan)
        after = read_view(domain, agent)
    finally:
        agent.close()
    after_mb = sum(d.size for d in after.layout.dimms) // MIB
    module.exit_json(changed=True, dimm_mb=p["dimm_mb"], before_mb=before_mb, after_mb=after_mb,
                     plan=plan.to_dict(), results=results, view=after.to_dict(), diff=diff,
                     msg=f"DIMM memory {memory_text(before_mb, config_mb, after_mb)}")


def run_steps(module, domain, agent, plan):
    """Plug, then unplug, each step within what is left of O(wait_timeout). A failure
    after a step succeeded fails the task with changed=true and the steps done."""
    import time

    from virt_qga.errors import VirtQgaError
    from virt_qga.workflows.memory import plug, unplug

    p = module.params
    deadline = time.monotonic() + p["wait_timeout"]
    steps = [("plug", size) for size in plan.plug] + [("unplug", alias) for alias in plan.unplug]
    results: list[dict[str, object]] = []
    for kind, what in steps:
        left = max(deadline - time.monotonic(), 1.0)
        try:
            if kind == "plug":
                res = plug(domain, agent, what, node=p["node"], config=p["config"], timeout=left)
            else:
                res = unplug(domain, agent, alias=what, config=p["config"], timeout=left)
        except VirtQgaError as exc:
            failed = getattr(exc, "result", None)
            done = results + ([failed] if failed else [])
            fail_from_error(module, exc, changed=bool(results) or error_changed(exc), results=done)
        results.append(res.to_dict())
    return results


def memory_diff(live_mb, config_mb, want_mb, persistent):
    """Ansible's diff: the DIMM total (and the persistent one) before and after, in MiB."""
    before, after = {"dimm_mb": live_mb}, {"dimm_mb": want_mb}
    if persistent:
        before["config_dimm_mb"] = config_mb
        after["config_dimm_mb"] = want_mb
    return {"before": before, "after": after}


def memory_text(live_mb, config_mb, want_mb):
    text = f"{live_mb} -> {want_mb} MiB"
    if config_mb is not None and config_mb != want_mb:
        text += f", persistent definition {config_mb} -> {want_mb} MiB"
    return text


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True, **module_kwargs())
    run_guarded(module, body)


if __name__ == "__main__":
    main()
