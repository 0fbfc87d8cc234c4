#!/usr/bin/python
# Copyright (c) virt-qga developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ansible module: bring a running domain to N vCPUs (hotplug with the guest's consent)."""

from __future__ import annotations

# Ansible's documentation blocks repeat per module by design (author, attributes, the
# options tools/gen_ansible.py writes from shared workflow options, the failure keys of
# RETURN): data, not code, so ./dev lint's duplicate-code check skips them.
# pylint: disable=duplicate-code
DOCUMENTATION = r"""
---
module: virt_qga_vcpus
short_description: Set the number of vCPUs of a running domain, with the guest agent
version_added: 0.1.0
description:
  - Brings a running libvirt domain to O(count) vCPUs that are present in QEMU, enabled in
    libvirt and online in the guest.
  - Shrinking asks the guest to offline vCPUs first (C(guest-set-vcpus)), then unplugs them;
    growing plugs vCPUs, waits for the guest to see them and onlines them. The guest, QEMU
    and libvirt views are read back until they agree or O(wait_timeout) passes.
  - Idempotent - when the three views already show O(count) vCPUs (and, with O(config=true),
    the persistent definition does too), nothing is done and C(changed) is false. When only
    the persistent definition is wrong, only the definition is changed.
  - A change that cannot finish cleanly fails with the state it left (for example
    V(pending), V(rolled-back), V(inconsistent)), the virt-qga exit code and the views.
author:
  - virt-qga developers (@virt-qga)
extends_documentation_fragment:
  - virt_qga.guest_agent.common
attributes:
  check_mode:
    support: full
    description: The three views are read and compared with O(count); nothing is changed.
  diff_mode:
    support: full
    description: The vCPU count online in the guest (and in the persistent definition with
      O(config=true)) before and after.
options:
  count:
    description: The number of vCPUs wanted (online in the guest).
    type: int
    required: true
  guest_only:
    description:
      - Only change which already-present vCPUs are online inside the guest; nothing is
        plugged or unplugged on the host.
    type: bool
    default: false
  config:
    description: Also store the new count in the persistent domain definition.
    type: bool
    default: false
  wait_timeout:
    description:
      - Deadline in seconds for the whole change, reconciliation included.
      - O(timeout) still bounds each single agent reply (at most this deadline).
    type: float
    default: 60
notes:
  - Needs libvirt (O(domain)); O(socket) is refused because the host side is changed too.
  - The domain needs hot-pluggable vCPUs (C(<vcpus>) entries with C(hotpluggable='yes'))
    unless O(guest_only=true).
"""

EXAMPLES = r"""
- name: Four vCPUs for the batch window
  virt_qga.guest_agent.virt_qga_vcpus:
    domain: batch01
    count: 4

- name: Back to two, also after a restart
  virt_qga.guest_agent.virt_qga_vcpus:
    domain: batch01
    count: 2
    config: true
    wait_timeout: 120

- name: Only offline CPUs inside the guest
  virt_qga.guest_agent.virt_qga_vcpus:
    domain: batch01
    count: 1
    guest_only: true
"""

RETURN = r"""
count:
  description: The number of vCPUs asked for.
  returned: always
  type: int
  sample: 4
before:
  description: The views before the task - libvirt (enabled vCPUs), QEMU (present) and the
    guest (present and online), plus any disagreement between them.
  returned: success
  type: dict
  sample: {libvirt: {maximum: 4, current: 2, enabled: [0, 1]}, guest: {online: [0, 1]}}
after:
  description: The same views after the change (equal to RV(before) when nothing changed).
  returned: success
  type: dict
  sample: {libvirt: {maximum: 4, current: 4, enabled: [0, 1, 2, 3]}, guest: {online: [0, 1, 2, 3]}}
result:
  description:
    - What the workflow did - action (grow, shrink, online, offline), state, the vCPUs
      plugged, unplugged or changed in the guest, and timed steps.
    - On failure it is returned as well, with the state that was left.
  returned: when a change was attempted
  type: dict
  sample: {action: grow, state: done, plugged: [2, 3], changed_guest: [2, 3]}
msg:
  description: What happened, in words.
  returned: always
  type: str
  sample: 2 -> 4 vCPUs
exit_code:
  description: On failure, the virt-qga exit code (5 pending/partial, 9 inconsistent...).
  returned: failure
  type: int
  sample: 5
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
    wait_argument_spec,
)


def argument_spec():
    return common_argument_spec(
        count=dict(type="int", required=True),
        guest_only=dict(type="bool", default=False),
        config=dict(type="bool", default=False),
        **wait_argument_spec(60.0),
    )


def in_sync(views, count, guest_only):
    """True when the domain already has ``count`` vCPUs in every view that matters."""
    online = views.guest_online
    if online is None:
        return False
    if guest_only:
        return len(online) == count
    enabled = views.libvirt.enabled_ids
    present = views.qemu_present
    return (len(enabled) == count and online == set(enabled)
            and (present is None or present == set(enabled)) and not views.disagreements())


def summary(views):
    online = views.guest_online
    return len(online) if online is not None else None


def body(module):
    require_library(module)
    from virt_qga.errors import BadInputError
    from virt_qga.workflows.vcpus import config_vcpu_count, read_views, set_config_vcpu_count, set_vcpu_count

    p = module.params
    if p["count"] < 1:
        raise BadInputError(f"count must be at least 1, got {p['count']}", field="count")
    domain = open_domain(module, "virt_qga_vcpus")
    agent = open_agent(module, timeout=min(p["timeout"], p["wait_timeout"]))
    persistent = p["config"] and not p["guest_only"]
    try:
        before = read_views(domain, agent)
        config_before = config_vcpu_count(domain) if persistent else None
        live_ok = in_sync(before, p["count"], p["guest_only"])
        config_ok = config_before is None or config_before == p["count"]
        diff = vcpu_diff(summary(before), config_before, p["count"], persistent)
        if live_ok and config_ok:
            module.exit_json(changed=False, count=p["count"], before=before.to_dict(),
                             after=before.to_dict(), msg=f"already {p['count']} vCPUs")
        if module.check_mode:
            module.exit_json(changed=True, count=p["count"], before=before.to_dict(), diff=diff,
                             msg=f"would change {change_text(summary(before), config_before, p['count'])}"
                                 " (check mode)")
        result = None
        if live_ok:  # only the persistent definition is behind
            set_config_vcpu_count(domain, p["count"])
        else:
            result = set_vcpu_count(domain, agent, p["count"], guest_only=p["guest_only"],
                                    config=p["config"], timeout=p["wait_timeout"])
        after = read_views(domain, agent)
    finally:
        agent.close()
    changed = result is None or bool(result.plugged or result.unplugged or result.changed_guest)
    extra = {} if result is None else {"result": result.to_dict()}
    module.exit_json(changed=changed, count=p["count"], before=before.to_dict(), after=after.to_dict(),
                     diff=diff, msg=change_text(summary(before), config_before, summary(after)), **extra)


def vcpu_diff(live, config, count, persistent):
    """Ansible's diff: the online count (and the persistent one) before and after."""
    before, after = {"vcpus": live}, {"vcpus": count}
    if persistent:
        before["config_vcpus"], after["config_vcpus"] = config, count
    return {"before": before, "after": after}


def change_text(live, config, count):
    text = f"{live} -> {count} vCPUs"
    if config is not None and config != count:
        text += f", persistent definition {config} -> {count}"
    return text


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True, **module_kwargs())
    run_guarded(module, body)


if __name__ == "__main__":
    main()
