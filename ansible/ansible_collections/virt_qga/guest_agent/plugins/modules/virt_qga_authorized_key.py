#!/usr/bin/python
# Copyright (c) virt-qga developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ansible module: a guest user's SSH authorized keys, through the agent."""

from __future__ import annotations

# pylint: disable=duplicate-code
DOCUMENTATION = r"""
---
module: virt_qga_authorized_key
short_description: Manage a guest user's SSH authorized keys through its guest agent
version_added: 0.1.0
description:
  - Adds or removes lines of a guest user's C(~/.ssh/authorized_keys) with the agent's
    C(guest-ssh-*) commands (qemu-ga 5.2 or newer), without any network path into the
    guest.
  - Idempotent - the current keys are read first (C(guest-ssh-get-authorized-keys)) and
    only the difference is sent. Keys compare as whole lines (type, key and comment).
author:
  - virt-qga developers (@virt-qga)
extends_documentation_fragment:
  - virt_qga.guest_agent.common
attributes:
  check_mode:
    support: full
    description: Reads the current keys and reports what would change.
  diff_mode:
    support: full
    description: The keys before and after, one per line.
options:
  user:
    description: The guest account whose C(~/.ssh/authorized_keys) is managed.
    type: str
    required: true
  keys:
    description:
      - Public keys, one per item, as in C(authorized_keys) (C(TYPE BASE64 [comment])).
      - Required (at least one) unless O(state=exclusive); O(state=exclusive) with no keys
        removes them all.
    type: list
    elements: str
    default: []
  state:
    description:
      - V(present) adds the keys that are missing; V(absent) removes the given keys;
        V(exclusive) makes O(keys) the user's only keys.
    type: str
    choices: [present, absent, exclusive]
    default: present
"""

EXAMPLES = r"""
- name: Let the deploy key in
  virt_qga.guest_agent.virt_qga_authorized_key:
    domain: web01
    user: deploy
    keys:
      - "{{ lookup('ansible.builtin.file', 'files/deploy.pub') }}"

- name: Only the admins' keys, nothing else
  virt_qga.guest_agent.virt_qga_authorized_key:
    domain: web01
    user: root
    state: exclusive
    keys: "{{ admin_keys }}"
"""

RETURN = r"""
user:
  description: The account.
  returned: always
  type: str
  sample: deploy
state:
  description: The O(state) asked for.
  returned: always
  type: str
  sample: present
keys:
  description: The user's keys afterwards (in check mode, what they would be).
  returned: success
  type: list
  elements: str
  sample: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... deploy@ci"]
added:
  description: Keys that were (or would be) added.
  returned: success
  type: list
  elements: str
  sample: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... deploy@ci"]
removed:
  description: Keys that were (or would be) removed.
  returned: success
  type: list
  elements: str
  sample: []
exit_code:
  description: On failure, the virt-qga exit code.
  returned: failure
  type: int
  sample: 2
error:
  description: On failure, the virt-qga error class.
  returned: failure
  type: str
  sample: BadInputError
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


def argument_spec():
    return common_argument_spec(
        user=dict(type="str", required=True),
        keys=dict(type="list", elements="str", default=[], no_log=False),
        state=dict(type="str", default="present", choices=["present", "absent", "exclusive"]),
    )


def lines(keys):
    return "".join(f"{k}\n" for k in keys)


def body(module):
    require_library(module)
    from virt_qga.workflows.accounts import ensure_keys

    p = module.params
    agent = open_agent(module)
    try:
        change = ensure_keys(agent, p["user"], p["keys"], p["state"], check=module.check_mode)
    finally:
        agent.close()
    result = change.to_dict()
    if module._diff:
        result["diff"] = dict(before=lines(change.before), after=lines(change.after),
                              before_header=f"{p['user']}: authorized_keys",
                              after_header=f"{p['user']}: authorized_keys")
    module.exit_json(**result)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True, **module_kwargs())
    run_guarded(module, body)


if __name__ == "__main__":
    main()
