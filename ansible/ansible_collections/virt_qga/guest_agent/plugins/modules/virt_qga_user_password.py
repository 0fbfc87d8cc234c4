#!/usr/bin/python
# Copyright (c) virt-qga developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ansible module: set a guest user's password through the agent."""

from __future__ import annotations

# pylint: disable=duplicate-code
DOCUMENTATION = r"""
---
module: virt_qga_user_password
short_description: Set a guest user's password through its guest agent
version_added: 0.1.0
description:
  - Sets the password of an existing account in the guest with C(guest-set-user-password),
    without any network path into the guest. The account is never created.
  - The agent cannot read a password back. What this module can tell, it reads from the
    guest's C(/etc/shadow) through the agent's file commands (the agent runs as root), so
    C(/etc/shadow) is read only when O(update_password=on_create) or O(crypted=true).
  - "O(update_password=always) with a plain-text password sets it on every run and
    always reports C(changed=true): nothing can tell whether it is already set."
  - "O(crypted=true): when the account's hash in C(/etc/shadow) is already O(password),
    nothing changes (C(changed=false))."
  - "O(update_password=on_create): the password is set only while the account has no
    usable one (its C(/etc/shadow) field is empty, or starts with C(!) or C(*), as for an
    account just made by C(useradd)); an account that has any password keeps it.
    C(guest-get-users) cannot serve here, it lists logged-in users only."
author:
  - virt-qga developers (@virt-qga)
extends_documentation_fragment:
  - virt_qga.guest_agent.common
attributes:
  check_mode:
    support: full
    description: Reads C(/etc/shadow) where the options need it and reports whether the
      password would be set, without setting it.
  diff_mode:
    support: none
    description: Passwords are not shown.
options:
  user:
    description: The guest account; it must exist.
    type: str
    required: true
  password:
    description:
      - The new password, in plain text, or a C(crypt(3)) hash such as C($6$salt$hash) when
        O(crypted=true). Never logged nor returned.
    type: str
    required: true
  crypted:
    description: O(password) is already a C(crypt(3)) hash.
    type: bool
    default: false
  update_password:
    description:
      - V(always) sets the password on every run (but see O(crypted)); V(on_create) only
        while the account has no usable password. Details above.
      - V(on_create) needs a guest with C(/etc/shadow) (Linux); elsewhere the task fails.
    type: str
    choices: [always, on_create]
    default: always
notes:
  - Linux guests need C(chpasswd) in the guest (qemu-ga runs it).
"""

EXAMPLES = r"""
- name: Set the rescue password of root on every run
  virt_qga.guest_agent.virt_qga_user_password:
    domain: web01
    user: root
    password: "{{ vault_root_password }}"

- name: Give tester a first password, keep whatever it has later
  virt_qga.guest_agent.virt_qga_user_password:
    domain: web01
    user: tester
    password: "{{ vault_tester_password }}"
    update_password: on_create

- name: A hash, idempotent
  virt_qga.guest_agent.virt_qga_user_password:
    domain: web01
    user: tester
    password: "{{ vault_tester_hash }}"
    crypted: true
"""

RETURN = r"""
user:
  description: The account.
  returned: always
  type: str
  sample: tester
crypted:
  description: Whether O(password) was a hash.
  returned: always
  type: bool
  sample: false
msg:
  description: What happened, in words.
  returned: always
  type: str
  sample: set the password of tester
exit_code:
  description: On failure, the virt-qga exit code (2 for a user that does not exist).
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
        password=dict(type="str", required=True, no_log=True),
        crypted=dict(type="bool", default=False),
        update_password=dict(type="str", default="always", choices=["always", "on_create"], no_log=False),
    )


def body(module):
    require_library(module)
    from virt_qga.workflows.accounts import ensure_password

    p = module.params
    agent = open_agent(module)
    try:
        res = ensure_password(agent, p["user"], p["password"], crypted=p["crypted"],
                              update=p["update_password"], check=module.check_mode)
    finally:
        agent.close()
    module.exit_json(**res.to_dict())


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True, **module_kwargs())
    run_guarded(module, body)


if __name__ == "__main__":
    main()
