#!/usr/bin/python
# Copyright: virt-qga developers
# MIT License (see the repository's LICENSE)
"""Ansible module: back up a running domain (consistent snapshot, copy, merge back)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: virt_qga_backup
short_description: Back up a running domain - consistent snapshot, copy of its disks, merge back
version_added: 0.1.0
description:
  - Takes a consistent external snapshot (the guest's filesystems frozen through the guest
    agent, with the thaw guard of M(virt_qga.guest_agent.virt_qga_snapshot)), copies the
    now-stable base images with C(qemu-img convert) into O(dest)/DOMAIN/SNAPSHOT/, and
    merges the overlays back into the bases. It is the virt-qga C(backup) workflow.
  - The merge back always runs - also when the copy fails - so the domain is never left on
    an overlay without the task saying so (RV(state=inconsistent), with RV(undo)).
  - A backup directory under its final name is complete; copies in progress live in a
    hidden C(.SNAPSHOT.partial) directory that a later run removes.
  - A disk that already runs on a virt-qga overlay (a run that died before its merge back)
    is refused, since copying its base would copy only part of the chain.
author:
  - virt-qga developers (@virt-qga)
extends_documentation_fragment:
  - virt_qga.guest_agent.common
attributes:
  check_mode:
    support: full
    description:
      - The domain is looked up (it must be running) and O(dest) checked; nothing is frozen,
        copied or pruned.
  diff_mode:
    support: none
    description: Nothing to diff.
options:
  dest:
    description: Directory that receives C(DOMAIN/SNAPSHOT/TARGET.qcow2) and a C(manifest.json).
    type: path
    required: true
  keep:
    description: After a successful backup keep only the newest O(keep) backups of the domain.
    type: int
  disks:
    description: Disk targets (for example V(vda)) to back up; default every writable disk.
    type: list
    elements: str
  quiesce:
    description:
      - V(required) fails when the guest cannot be frozen; V(preferred) then makes a
        crash-consistent backup and warns; V(off) never freezes.
    type: str
    choices: [required, preferred, "off"]
    default: required
  pre_freeze:
    description: Guest shell command run just before the freeze.
    type: str
  post_thaw:
    description: Guest shell command run after the thaw.
    type: str
  max_frozen:
    description: The guard thaws the guest after this many seconds frozen, whatever happens.
    type: float
    default: 10
  wait_lock:
    description: Seconds to wait when another virt-qga job holds this domain's lock.
    type: float
    default: 0
  copy_timeout:
    description: Deadline in seconds for copying one disk.
    type: float
    default: 3600
notes:
  - Needs libvirt (O(domain)); an agent O(socket) has no disks to copy.
  - A backup is a new object every time, so the task always reports a change.
"""

EXAMPLES = r"""
- name: Nightly backup, keep a week
  virt_qga.guest_agent.virt_qga_backup:
    domain: db01
    dest: /srv/backup
    keep: 7
    pre_freeze: "psql -c CHECKPOINT"
  register: bk

- name: Accept a crash-consistent backup when the agent is down
  virt_qga.guest_agent.virt_qga_backup:
    domain: web01
    dest: /srv/backup
    quiesce: preferred
"""

RETURN = r"""
directory:
  description: The backup directory.
  returned: success
  type: str
  sample: /srv/backup/db01/vqga-20261127T021500Z
consistency:
  description: V(application) (frozen, with hooks), V(filesystem) (frozen) or V(crash).
  returned: when the snapshot was taken
  type: str
  sample: filesystem
disks:
  description: One entry per disk copied (source, backup, bytes, seconds).
  returned: success
  type: list
  elements: dict
  sample: [{target: vda, source: /images/db01.qcow2, backup: /srv/backup/db01/vqga-20261127T021500Z/vda.qcow2,
            bytes: 1179648, seconds: 0.2}]
pruned:
  description: Backup directories removed by O(keep).
  returned: success
  type: list
  elements: str
  sample: [/srv/backup/db01/vqga-20261120T021500Z]
result:
  description: The full workflow report (timings, the snapshot result, what was merged back).
  returned: always, except for bad options
  type: dict
  sample: {state: done, exit_code: 0}
msg:
  description: What happened, in words.
  returned: always
  type: str
  sample: backup of db01 in /srv/backup/db01/vqga-20261127T021500Z (filesystem-consistent)
exit_code:
  description:
    - On failure, the virt-qga exit code - 9 when a disk was left on an overlay (see
      RV(undo)), 8 when the guest may be frozen, 10 when another job holds the lock, 6 when
      the domain is missing or not running, 1 when the copy failed (merged back).
  returned: failure
  type: int
  sample: 1
error:
  description: On failure, a short error class.
  returned: failure
  type: str
  sample: BackupFailed
state:
  description: On failure, what was left (V(failed) - nothing left, V(inconsistent), V(maybe-frozen)).
  returned: failure
  type: str
  sample: failed
undo:
  description: On failure, the command that repairs what was left, when known.
  returned: failure
  type: str
  sample: virt-qga snapshot db01 --commit-back
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virt_qga.guest_agent.plugins.module_utils.virt_qga_common import (
    common_argument_spec,
    connection_uri,
    module_kwargs,
    open_domain,
    require_library,
    run_guarded,
)

#: Backup exit codes that still mean "a backup was made".
USABLE = (0, 7)


def argument_spec():
    return common_argument_spec(
        dest=dict(type="path", required=True),
        keep=dict(type="int"),
        disks=dict(type="list", elements="str"),
        quiesce=dict(type="str", default="required", choices=["required", "preferred", "off"]),
        pre_freeze=dict(type="str"),
        post_thaw=dict(type="str"),
        max_frozen=dict(type="float", default=10.0),
        wait_lock=dict(type="float", default=0.0),
        copy_timeout=dict(type="float", default=3600.0),
    )


def body(module):
    require_library(module)
    from pathlib import Path

    from virt_qga.workflows.backup import backup
    from virt_qga.workflows.snapshot import SnapshotOptions

    p = module.params
    domain = open_domain(module, "virt_qga_backup")
    dest = Path(p["dest"]).expanduser().absolute()
    opts = SnapshotOptions(disks=tuple(p.get("disks") or ()), quiesce=p["quiesce"],
                           pre_freeze=p.get("pre_freeze"), post_thaw=p.get("post_thaw"),
                           max_frozen=p["max_frozen"], wait_lock=p["wait_lock"], timeout=p["timeout"])
    opts.validate()
    if module.check_mode:
        module.exit_json(changed=True,
                         msg=f"would back up {domain.name} into {dest / domain.name} (check mode)")
    res = backup(p["domain"], connection_uri(p), dest, options=opts, keep=p.get("keep"),
                 copy_timeout=p["copy_timeout"])
    for warning in res.warnings:
        module.warn(warning)
    out = dict(consistency=res.consistency, result=res.to_dict())
    if res.exit_code not in USABLE:
        module.fail_json(msg=f"backup of {res.domain} failed: {res.error}", changed=bool(res.committed),
                         exit_code=res.exit_code, error="BackupFailed", state=res.state, undo=res.undo,
                         **out)
    if res.consistency == "crash" and p["quiesce"] != "off":
        module.warn(f"the backup of {res.domain} is only crash-consistent")
    module.exit_json(changed=True, directory=res.directory, disks=res.disks, pruned=res.pruned,
                     msg=f"backup of {res.domain} in {res.directory} ({res.consistency}-consistent)", **out)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        **module_kwargs()
    )
    run_guarded(module, body)


if __name__ == "__main__":
    main()
