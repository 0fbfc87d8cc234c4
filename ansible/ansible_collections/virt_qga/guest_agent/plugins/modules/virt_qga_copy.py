#!/usr/bin/python
# Copyright (c) virt-qga developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ansible module: copy one file between the hypervisor and a guest, idempotently."""

from __future__ import annotations

# Ansible's documentation blocks repeat per module by design (author, attributes, the
# options tools/gen_ansible.py writes from shared workflow options, the failure keys of
# RETURN): data, not code, so ./dev lint's duplicate-code check skips them.
# pylint: disable=duplicate-code
DOCUMENTATION = r"""
---
module: virt_qga_copy
short_description: Copy a file between the hypervisor and a guest through its guest agent
version_added: 0.1.0
description:
  - Pushes a file from the hypervisor (the managed node) into a guest, or pulls one from
    the guest onto the hypervisor, with C(guest-file-open/read/write).
  - The SHA-256 of both sides is compared first; when they are identical nothing is
    copied and C(changed) is false (only the mode is fixed when O(mode) differs).
  - A push writes a temporary file next to the target, verifies it with C(sha256sum) in the
    guest (or by reading it back) and renames it over the target, so the target is either
    the old or the new file. A pull does the same on the hypervisor.
author:
  - virt-qga developers (@virt-qga)
extends_documentation_fragment:
  - virt_qga.guest_agent.common
attributes:
  check_mode:
    support: full
    description: Checksums and modes are compared; nothing is written.
  diff_mode:
    support: none
    description: Files may be binary and large; no diff is produced.
options:
  src:
    description:
      - With O(direction=push), a file on the hypervisor; with O(direction=pull), a file
        in the guest.
      - A guest path is used as given (C(~) and C($VARS) mean nothing to the agent); a
        hypervisor path has C(~) and C($VARS) expanded on the hypervisor.
    type: str
    required: true
  dest:
    description:
      - The target file, in the guest for a push, on the hypervisor for a pull.
      - When it is an existing directory (or ends with C(/)), the file keeps the base
        name of O(src) inside it.
      - Expanded like O(src) - only on the hypervisor side.
    type: str
    required: true
  direction:
    description: V(push) copies into the guest, V(pull) copies out of it.
    type: str
    choices: [push, pull]
    default: push
  mode:
    description:
      - Permissions of the target as an octal string such as V('0644'). Quote it; a bare
        YAML C(0644) is read as an octal number and accepted too.
      - When not given, a push keeps the source file's mode and a pull takes the guest
        file's mode.
    type: raw
  force:
    description:
      - When the target exists with different content, V(true) replaces it and V(false)
        leaves it as it is (the task then reports no change).
    type: bool
    default: true
  verify:
    description: Check the copy's SHA-256 on the target side before renaming it into place.
    type: bool
    default: true
notes:
  - A push needs C(guest-exec) in the agent for the atomic rename and for C(sha256sum); without
    it the target is written in place and verified by reading it back (a warning says so).
  - O(timeout) bounds each agent reply, not the whole copy.
"""

EXAMPLES = r"""
- name: Push a config file into the guest
  virt_qga.guest_agent.virt_qga_copy:
    domain: web01
    src: /srv/configs/web01/app.conf
    dest: /etc/app/app.conf
    mode: "0640"

- name: Pull a log out of the guest into a directory on the hypervisor
  virt_qga.guest_agent.virt_qga_copy:
    domain: web01
    direction: pull
    src: /var/log/app/error.log
    dest: /srv/collected/web01/

- name: Only install a file the guest does not have yet
  virt_qga.guest_agent.virt_qga_copy:
    domain: web01
    src: /srv/seed/id.txt
    dest: /etc/seed-id
    force: false
"""

RETURN = r"""
src:
  description: The source path, as given.
  returned: always
  type: str
  sample: /srv/configs/web01/app.conf
dest:
  description: The target file actually written or compared (a directory O(dest) resolved).
  returned: always
  type: str
  sample: /etc/app/app.conf
direction:
  description: V(push) or V(pull).
  returned: always
  type: str
  sample: push
checksum:
  description: SHA-256 of the source content.
  returned: success
  type: str
  sample: 3b7e...e1
size:
  description: Size of the source in bytes.
  returned: success
  type: int
  sample: 2048
mode:
  description: The target's mode after the task (octal string), when known.
  returned: success
  type: str
  sample: "0640"
copied:
  description: Whether file content was (or, in check mode, would be) transferred.
  returned: success
  type: bool
  sample: true
transfer:
  description: Details of the transfer (bytes, chunks, duration, verification method...).
  returned: when content was copied
  type: dict
  sample: {bytes: 2048, chunks: 1, verified: true, verify_method: sha256sum, atomic: true}
msg:
  description: What happened, in words.
  returned: always
  type: str
  sample: copied into the guest
exit_code:
  description: On failure, the virt-qga exit code (see the collection documentation).
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

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.validation import check_type_path

from ansible_collections.virt_qga.guest_agent.plugins.module_utils.virt_qga_common import (
    common_argument_spec,
    module_kwargs,
    open_agent,
    require_library,
    run_guarded,
)


def argument_spec():
    return common_argument_spec(
        src=dict(type="str", required=True),
        dest=dict(type="str", required=True),
        direction=dict(type="str", default="push", choices=["push", "pull"]),
        mode=dict(type="raw"),
        force=dict(type="bool", default=True),
        verify=dict(type="bool", default=True),
    )


def parse_mode_option(value):
    """The O(mode) option as an int, or None. Ints come from unquoted YAML octals."""
    from virt_qga.errors import BadInputError
    from virt_qga.workflows.files import parse_mode

    if value is None:
        return None
    if isinstance(value, bool):
        raise BadInputError("mode must be an octal string like '0644'", field="mode")
    if isinstance(value, int):
        if not 0 <= value <= 0o7777:
            raise BadInputError(f"mode {value} is out of range", field="mode")
        return value
    return parse_mode(str(value))


def fmt_mode(mode):
    return None if mode is None else f"{mode:04o}"


def do_push(module, agent, p, mode, has_exec):
    from virt_qga.workflows import files

    plan = files.plan_push(agent, p["src"], p["dest"], force=p["force"], has_exec=has_exec)
    out = dict(src=p["src"], dest=plan.target, direction="push", checksum=plan.checksum, size=plan.size)
    if not plan.needed:
        change_mode = mode is not None and has_exec and plan.current_mode != mode
        if change_mode and not module.check_mode:
            files.fix_mode(agent, plan, mode)
        new_mode = mode if change_mode else plan.current_mode
        why = "identical in the guest" if plan.reason == "identical" else \
            "differs in the guest; left as it is (force=false)"
        module.exit_json(changed=change_mode, copied=False, mode=fmt_mode(new_mode),
                         msg=why + ("; mode changed" if change_mode else ""), **out)
    if module.check_mode:
        module.exit_json(changed=True, copied=True, mode=fmt_mode(mode),
                         msg=f"would copy into the guest (target {plan.reason})", **out)
    res = files.push(agent, p["src"], plan.target, force=True, mode=mode, verify=p["verify"],
                     in_place=not has_exec)
    for warning in res.warnings:
        module.warn(warning)
    module.exit_json(changed=True, copied=True, mode=res.mode, transfer=res.to_dict(),
                     msg="copied into the guest", **out)


def do_pull(module, agent, p, mode, has_exec):
    from virt_qga.workflows import files

    plan = files.plan_pull(agent, p["src"], p["dest"], force=p["force"], has_exec=has_exec)
    out = dict(src=p["src"], dest=plan.target, direction="pull", checksum=plan.checksum)
    if not plan.needed:
        change_mode = mode is not None and plan.current_mode != mode
        if change_mode and not module.check_mode:
            files.fix_mode(agent, plan, mode)
        new_mode = mode if change_mode else plan.current_mode
        why = "identical on the hypervisor" if plan.reason == "identical" else \
            "differs on the hypervisor; left as it is (force=false)"
        module.exit_json(changed=change_mode, copied=False, mode=fmt_mode(new_mode),
                         size=os.path.getsize(plan.target) if plan.reason == "identical" else None,
                         msg=why + ("; mode changed" if change_mode else ""), **out)
    if module.check_mode:
        module.exit_json(changed=True, copied=True, mode=fmt_mode(mode),
                         msg=f"would copy from the guest (target {plan.reason})", **out)
    res = files.pull(agent, p["src"], plan.target, force=True, mode=mode, verify=p["verify"])
    for warning in res.warnings:
        module.warn(warning)
    out["checksum"] = res.sha256
    module.exit_json(changed=True, copied=True, mode=res.mode, size=res.bytes, transfer=res.to_dict(),
                     msg="copied from the guest", **out)


def body(module):
    require_library(module)
    from virt_qga.workflows import exec as wexec

    p = dict(module.params)
    # Guest paths are the agent's business; only the hypervisor side is expanded here.
    host_side = "src" if p["direction"] == "push" else "dest"
    p[host_side] = check_type_path(p[host_side])
    mode = parse_mode_option(p.get("mode"))
    agent = open_agent(module)
    try:
        has_exec = wexec.exec_available(agent)
        if not has_exec:
            module.warn("guest-exec is not available: checksums are computed by reading the guest "
                        "file, and a push writes the target in place (not atomic)")
        if p["direction"] == "push":
            do_push(module, agent, p, mode, has_exec)
        else:
            do_pull(module, agent, p, mode, has_exec)
    finally:
        agent.close()


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True, **module_kwargs())
    run_guarded(module, body)


if __name__ == "__main__":
    main()
