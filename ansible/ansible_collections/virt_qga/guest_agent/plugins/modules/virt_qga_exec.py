#!/usr/bin/python
# Copyright (c) virt-qga developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ansible module: run a command inside a guest through its agent."""

from __future__ import annotations

# Ansible's documentation blocks repeat per module by design (author, attributes, the
# options tools/gen_ansible.py writes from shared workflow options, the failure keys of
# RETURN): data, not code, so ./dev lint's duplicate-code check skips them.
# pylint: disable=duplicate-code
DOCUMENTATION = r"""
---
module: virt_qga_exec
short_description: Run a command inside a guest through its guest agent
version_added: 0.1.0
description:
  - Starts a process in the guest with C(guest-exec), waits for it with
    C(guest-exec-status) and returns its status and output, like M(ansible.builtin.command)
    does on a host, but without any network path into the guest.
  - The command is given either as an argument vector (O(argv), no shell involved) or as a
    shell string (O(cmd), run by C(/bin/sh -c) in the guest).
  - The task fails when the guest status is not in O(expected_rc).
  - Like M(ansible.builtin.command) it reports C(changed) whenever the command ran; use
    O(creates) or O(removes) to make it idempotent.
author:
  - virt-qga developers (@virt-qga)
extends_documentation_fragment:
  - virt_qga.guest_agent.common
attributes:
  check_mode:
    support: partial
    description: Can run in check mode and report whether the command would run.
    details:
      - The command is never run in check mode; the task reports that it would run
        (C(changed=true)), unless O(creates)/O(removes) show it would be skipped.
      - O(creates) and O(removes) are still checked in the guest in check mode (a
        read-only C(test -e)).
  diff_mode:
    support: none
    description: Nothing to diff.
options:
  argv:
    description:
      - The program and its arguments. The program is looked up on the guest's C(PATH).
      - Exactly one of O(argv) or O(cmd) is required.
    type: list
    elements: str
  cmd:
    description:
      - A shell command line, run as C(/bin/sh -c CMD) in the guest.
    type: str
  stdin:
    description:
      - Text fed to the command's standard input.
      - It travels base64-encoded inside one agent request, so it is limited by the
        transport (about 3 MiB through libvirt); larger data should be copied in with
        M(virt_qga.guest_agent.virt_qga_copy) first.
    type: str
  secret_stdin:
    description:
      - Like O(stdin), for secrets (for example C(user:password) lines for C(chpasswd)).
        The value is never logged nor returned.
    type: str
  stdin_add_newline:
    description: Append a newline to O(stdin) / O(secret_stdin).
    type: bool
    default: true
  env:
    description:
      - Environment of the guest process. The agent passes it as the whole environment,
        so C(PATH) is set to a usual default when it is not in this dict.
    type: dict
  chdir:
    description:
      - Working directory in the guest (done with a C(cd) in a small shell wrapper).
      - A guest path, used as given (nothing is expanded on the hypervisor).
    type: str
  capture:
    description:
      - Which output streams to capture. V(merged) sends stderr into RV(stdout).
    type: str
    choices: [both, stdout, stderr, merged, none]
    default: both
  expected_rc:
    description: Guest statuses that count as success (a signal N is status 128+N).
    type: list
    elements: int
    default: [0]
  creates:
    description:
      - A path in the guest; when it already exists the command is not run.
    type: str
  removes:
    description:
      - A path in the guest; when it does not exist the command is not run.
    type: str
  wait_timeout:
    description:
      - Seconds to wait for the guest command to finish. When it is still running after
        that, the task fails with RV(exit_code=124) and the process keeps running in the
        guest (its RV(pid) is returned).
      - O(timeout) still bounds each single agent reply (at most this deadline).
    type: float
    default: 30
notes:
  - A guest command's output comes back in one agent reply; qemu-ga keeps at most 16 MiB per
    stream and libvirt carries about 3 MiB in total. Redirect big output to a file in the
    guest and fetch it with M(virt_qga.guest_agent.virt_qga_copy).
  - The guards O(creates) and O(removes) need C(/bin/sh) in the guest.
seealso:
  - module: ansible.builtin.command
"""

EXAMPLES = r"""
- name: Kernel of the guest
  virt_qga.guest_agent.virt_qga_exec:
    domain: web01
    argv: [uname, -r]
  register: uname
  changed_when: false

- name: A shell pipeline, allowed to find nothing (grep exits 1)
  virt_qga.guest_agent.virt_qga_exec:
    domain: web01
    cmd: "dmesg | grep -i 'i/o error'"
    expected_rc: [0, 1]

- name: Create a marker once
  virt_qga.guest_agent.virt_qga_exec:
    domain: web01
    argv: [touch, /var/lib/provisioned]
    creates: /var/lib/provisioned

- name: Set a password without it showing up anywhere
  virt_qga.guest_agent.virt_qga_exec:
    domain: web01
    argv: [chpasswd]
    secret_stdin: "tester:{{ vault_tester_password }}"

- name: A long job, with its own deadline
  virt_qga.guest_agent.virt_qga_exec:
    domain: db01
    argv: [sh, -c, "sync && fstrim -av"]
    wait_timeout: 600
"""

RETURN = r"""
cmd:
  description: The argument vector that was (or would be) started in the guest.
  returned: always
  type: list
  elements: str
  sample: [uname, -r]
rc:
  description: The guest command's status; 128+N when it was killed by signal N.
  returned: when the command ran
  type: int
  sample: 0
exitcode:
  description: The exit code reported by the agent, null when killed by a signal.
  returned: when the command ran
  type: int
  sample: 0
signal:
  description: The signal that ended the process, when one did.
  returned: when the command ran
  type: int
  sample: null
stdout:
  description: Standard output (UTF-8 text, or base64 when RV(stdout_encoding=base64)).
  returned: when the command ran
  type: str
  sample: "6.1.0-56-cloud-amd64\n"
stderr:
  description: Standard error, encoded like RV(stdout).
  returned: when the command ran
  type: str
  sample: ""
stdout_lines:
  description: RV(stdout) split into lines.
  returned: when the command ran
  type: list
  elements: str
  sample: [6.1.0-56-cloud-amd64]
stderr_lines:
  description: RV(stderr) split into lines.
  returned: when the command ran
  type: list
  elements: str
  sample: []
stdout_encoding:
  description: V(utf-8), or V(base64) when the output was not valid UTF-8.
  returned: when the command ran
  type: str
  sample: utf-8
stderr_encoding:
  description: Like RV(stdout_encoding), for RV(stderr).
  returned: when the command ran
  type: str
  sample: utf-8
stdout_truncated:
  description: True when the agent cut standard output at its capture limit.
  returned: when the command ran
  type: bool
  sample: false
stderr_truncated:
  description: True when the agent cut standard error at its capture limit.
  returned: when the command ran
  type: bool
  sample: false
pid:
  description: The guest process id (also returned when the command timed out).
  returned: when the command was started
  type: int
  sample: 812
delta:
  description: Seconds from start to exit as seen from the hypervisor.
  returned: when the command ran
  type: float
  sample: 0.0123
msg:
  description: What happened, in words.
  returned: always
  type: str
  sample: guest command exited with status 0
exit_code:
  description:
    - On failure, the virt-qga exit code - the guest status when the command exited
      outside O(expected_rc), 124 when it timed out, 125 when it could not be started
      or followed, and the codes of the virt-qga CLI table for other errors.
  returned: failure
  type: int
  sample: 124
error:
  description: On failure, the virt-qga error class, or V(NonZeroStatus) for a guest status
    outside O(expected_rc).
  returned: failure
  type: str
  sample: OperationError
"""
# pylint: enable=duplicate-code

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virt_qga.guest_agent.plugins.module_utils.virt_qga_common import (
    ExitCode,
    common_argument_spec,
    module_kwargs,
    open_agent,
    require_library,
    run_guarded,
    wait_argument_spec,
)


def argument_spec():
    return common_argument_spec(
        argv=dict(type="list", elements="str"),
        cmd=dict(type="str"),
        stdin=dict(type="str"),
        secret_stdin=dict(type="str", no_log=True),
        stdin_add_newline=dict(type="bool", default=True),
        env=dict(type="dict"),
        chdir=dict(type="str"),
        capture=dict(type="str", default="both", choices=["both", "stdout", "stderr", "merged", "none"]),
        expected_rc=dict(type="list", elements="int", default=[0]),
        creates=dict(type="str"),
        removes=dict(type="str"),
        **wait_argument_spec(30.0),
    )


def build_argv(params):
    if params.get("argv"):
        return [str(a) for a in params["argv"]]
    if params.get("cmd"):
        return ["/bin/sh", "-c", params["cmd"]]
    return []


def stdin_bytes(params):
    text = params.get("secret_stdin")
    if text is None:
        text = params.get("stdin")
    if text is None:
        return None
    if params["stdin_add_newline"]:
        text += "\n"
    return text.encode("utf-8")


def env_list(params):
    return ["{}={}".format(k, "" if v is None else v) for k, v in sorted((params.get("env") or {}).items())]


def guest_path_exists(agent, path, timeout):
    """``test -e PATH`` in the guest: True/False, an error for anything else."""
    from virt_qga.errors import GuestError
    from virt_qga.workflows import exec as wexec

    res = wexec.run(agent, ["/bin/sh", "-c", 'test -e "$1"', "sh", path], timeout=timeout)
    if res.status in (0, 1):
        return res.status == 0
    raise GuestError(f"could not check whether {path} exists in the guest (status {res.status})",
                     command="guest-exec")


def guard_skip_reason(agent, params, timeout):
    """Why the command is skipped by creates/removes, or None when it should run."""
    if params.get("creates") and guest_path_exists(agent, params["creates"], timeout):
        return "skipped, since {} exists in the guest".format(params["creates"])
    if params.get("removes") and not guest_path_exists(agent, params["removes"], timeout):
        return "skipped, since {} does not exist in the guest".format(params["removes"])
    return None


def result_fields(res):
    """ExecResult -> the module's return keys."""
    d = res.to_dict()
    return {
        "rc": res.status,
        "exitcode": res.exitcode,
        "signal": res.signal,
        "pid": res.pid,
        "stdout": d["stdout"],
        "stderr": d["stderr"],
        "stdout_lines": d["stdout"].splitlines() if d["stdout_encoding"] == "utf-8" else [],
        "stderr_lines": d["stderr"].splitlines() if d["stderr_encoding"] == "utf-8" else [],
        "stdout_encoding": d["stdout_encoding"],
        "stderr_encoding": d["stderr_encoding"],
        "stdout_truncated": res.out_truncated,
        "stderr_truncated": res.err_truncated,
        "delta": d["duration"],
    }


def body(module):
    require_library(module)
    from virt_qga.workflows import exec as wexec

    p = module.params
    argv = build_argv(p)
    timeout = float(p["wait_timeout"])
    if timeout <= 0:
        module.fail_json(msg=f"wait_timeout must be positive, got {timeout}", exit_code=int(ExitCode.USAGE),
                         error="BadInputError", cmd=argv)
    agent = open_agent(module, timeout=min(p["timeout"], timeout))
    try:
        skip = guard_skip_reason(agent, p, timeout)
        if skip is not None:
            module.exit_json(changed=False, cmd=argv, msg=skip, rc=0, stdout="", stderr="",
                             stdout_lines=[], stderr_lines=[])
        if module.check_mode:
            module.exit_json(changed=True, cmd=argv, msg="would run the command (check mode)")
        res = wexec.run(agent, argv, timeout=timeout, env=env_list(p), stdin=stdin_bytes(p),
                        capture=p["capture"], cwd=p.get("chdir"))
    finally:
        agent.close()
    out = result_fields(res)
    for warning in res.warnings:
        module.warn(warning)
    if res.status not in p["expected_rc"]:
        module.fail_json(msg=f"guest command exited with status {res.status}", cmd=argv,
                         changed=True, exit_code=res.status, error="NonZeroStatus", **out)
    # Ansible treats any non-zero "rc" as failure unless "failed" is set explicitly.
    module.exit_json(changed=True, failed=False, cmd=argv,
                     msg=f"guest command exited with status {res.status}", **out)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        **module_kwargs(
            required_one_of=[("argv", "cmd")],
            mutually_exclusive=[("argv", "cmd"), ("stdin", "secret_stdin")],
        )
    )
    run_guarded(module, body)


if __name__ == "__main__":
    main()
