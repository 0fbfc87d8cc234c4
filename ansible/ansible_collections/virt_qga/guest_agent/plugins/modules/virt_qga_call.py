#!/usr/bin/python
# Copyright (c) virt-qga developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ansible module: run any guest agent command, validated against the schema."""

from __future__ import annotations

# pylint: disable=duplicate-code
DOCUMENTATION = r"""
---
module: virt_qga_call
short_description: Run any guest agent command, its arguments checked against the schema
version_added: 0.1.0
description:
  - Sends one guest agent command (for example C(guest-get-osinfo) or C(guest-fstrim)) with
    the arguments given in O(args), and returns the agent's reply.
  - The arguments are validated against the agent's schema before anything is sent; a
    wrong name, type or value fails the task with the command and the field in the
    message.
  - This module is never idempotent - it cannot know what a command changes. A command
    that changes nothing (a read-only command, see O(command)) reports C(changed=false);
    every other command reports C(changed=true) each time it runs.
  - For tasks that have a dedicated module (passwords, SSH keys, power, files, commands),
    use that module; it checks the current state first.
author:
  - virt-qga developers (@virt-qga)
extends_documentation_fragment:
  - virt_qga.guest_agent.common
attributes:
  check_mode:
    support: partial
    description: Read-only commands run in check mode; the others do not.
    details:
      - In check mode a read-only command is sent and its reply returned; any other
        command is only validated, not sent, and the task reports C(changed=true).
  diff_mode:
    support: none
    description: Nothing to diff.
options:
  command:
    description:
      - The command's name as in the guest agent schema, for example C(guest-get-osinfo).
        The C(guest-) prefix may be left out.
      - "Read-only commands (the library's list: C(guest-ping), C(guest-info),
        C(guest-sync), C(guest-sync-delimited), every C(guest-get-*) command,
        C(guest-network-get-interfaces), C(guest-fsfreeze-status) and
        C(guest-ssh-get-authorized-keys)) report C(changed=false) and run in check mode."
      - Commands that send no reply on success (C(guest-shutdown), C(guest-suspend-*)) are
        refused; use M(virt_qga.guest_agent.virt_qga_power).
    type: str
    required: true
  args:
    description:
      - The command's arguments, with the schema's names (dashes included, for example
        C(input-data)).
      - Not hidden from logs; for secrets use the dedicated modules (for example
        M(virt_qga.guest_agent.virt_qga_user_password)).
    type: dict
    default: {}
seealso:
  - module: virt_qga.guest_agent.virt_qga_info
"""

EXAMPLES = r"""
- name: Trim the guest's filesystems
  virt_qga.guest_agent.virt_qga_call:
    domain: web01
    command: guest-fstrim
    args:
      minimum: 1048576
  register: trim

- name: Disk statistics (read-only, also runs in check mode)
  virt_qga.guest_agent.virt_qga_call:
    domain: web01
    command: get-diskstats
  register: stats
"""

RETURN = r"""
command:
  description: The command's full name.
  returned: always
  type: str
  sample: guest-fstrim
args:
  description: The arguments as validated (options left out are dropped).
  returned: always
  type: dict
  sample: {minimum: 1048576}
read_only:
  description: Whether the command is in the library's list of read-only commands.
  returned: always
  type: bool
  sample: false
reply:
  description: The agent's reply (its C(return) value), as it came.
  returned: when the command was sent
  type: raw
  sample: {paths: [{path: /, trimmed: 0}]}
exit_code:
  description: On failure, the virt-qga exit code (the table of the CLI).
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
        command=dict(type="str", required=True),
        args=dict(type="dict", default={}),
    )


def body(module):
    require_library(module)
    from virt_qga.workflows.call import plan_call

    plan = plan_call(module.params["command"], module.params["args"])
    out = dict(command=plan.command, args=plan.args, read_only=plan.read_only)
    if module.check_mode and not plan.read_only:
        module.exit_json(changed=True, msg=f"would send {plan.command} (check mode)", **out)
    agent = open_agent(module)
    try:
        reply = agent.call(plan.command, plan.args)
    finally:
        agent.close()
    module.exit_json(changed=not plan.read_only, reply=reply, **out)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True, **module_kwargs())
    run_guarded(module, body)


if __name__ == "__main__":
    main()
