#!/usr/bin/python
# Copyright: virt-qga developers
# MIT License (see the repository's LICENSE)
"""Ansible module: a consistent (frozen) snapshot of a running domain, or its commit-back."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: virt_qga_snapshot
short_description: Take a consistent snapshot of a running domain (freeze, snapshot, thaw)
version_added: 0.1.0
description:
  - Freezes the guest's filesystems through the guest agent, takes the snapshot, and thaws,
    keeping the frozen window to the three calls that need it. It is the virt-qga
    C(snapshot) workflow - the same checks, hooks, lock, journal and thaw guard.
  - The guest is never left frozen - a separate guard process thaws it after O(max_frozen)
    seconds even if this task dies; C(virt-qga recover DOMAIN) cleans up after such a run.
  - V(external) mode makes disk-only qcow2 overlays (libvirt), V(internal) a libvirt
    internal checkpoint, V(command) runs O(command) on the hypervisor while the guest is
    frozen (for example a storage array snapshot).
  - With O(commit_back=true) it does the reverse instead - it commits the virt-qga overlays
    the disks run on back into their base images.
  - When the freeze was not possible and O(quiesce=preferred), the snapshot is only
    crash-consistent - RV(consistency) says so and the task emits a warning.
author:
  - virt-qga developers (@virt-qga)
extends_documentation_fragment:
  - virt_qga.guest_agent.common
attributes:
  check_mode:
    support: full
    description:
      - The options are validated and the domain is looked up (it must be running); no
        freeze and no snapshot happen. With O(commit_back=true), the overlays that would
        be committed are listed.
  diff_mode:
    support: none
    description: Nothing to diff.
options:
  mode:
    description: What kind of snapshot to take while the guest is frozen.
    type: str
    choices: [external, internal, command]
    default: external
  disks:
    description:
      - Disk targets (for example V(vda)) to snapshot or commit back; default all writable
        disks (for O(commit_back), those running on a virt-qga overlay).
    type: list
    elements: str
  dir:
    description: Directory for the external overlays (default next to each disk image).
    type: path
  name:
    description: Snapshot name (default C(vqga-<UTC time>)).
    type: str
  metadata:
    description: Let libvirt keep snapshot metadata (C(virsh snapshot-list) shows it).
    type: bool
    default: false
  mountpoints:
    description: Freeze only these guest mount points instead of all filesystems.
    type: list
    elements: str
  quiesce:
    description:
      - V(required) fails when the guest cannot be frozen; V(preferred) then takes a
        crash-consistent snapshot and warns; V(off) never freezes.
    type: str
    choices: [required, preferred, "off"]
    default: required
  pre_freeze:
    description: Guest shell command run just before the freeze (for example flush a database).
    type: str
  post_thaw:
    description:
      - Guest shell command run after the thaw. If it fails the snapshot is kept and the
        task fails with RV(exit_code=5).
    type: str
  hook_timeout:
    description: Deadline in seconds for each guest hook.
    type: float
    default: 60
  command:
    description:
      - With O(mode=command), the hypervisor command run while the guest is frozen.
    type: str
  command_timeout:
    description: Deadline in seconds for O(command).
    type: float
    default: 30
  max_frozen:
    description: The guard thaws the guest after this many seconds frozen, whatever happens.
    type: float
    default: 10
  thaw_timeout:
    description: Seconds to wait for the thaw to be confirmed.
    type: float
    default: 5
  force_thaw_first:
    description: If the guest is already frozen (a previous run died), thaw it first instead of failing.
    type: bool
    default: false
  wait_lock:
    description: Seconds to wait when another virt-qga job holds this domain's lock.
    type: float
    default: 0
  commit_back:
    description:
      - Instead of a snapshot, commit the overlays of O(disks) (default all virt-qga overlays)
        back into their base images and remove them. Reports no change when no disk runs on
        a virt-qga overlay.
    type: bool
    default: false
notes:
  - Over O(socket) only O(mode=command) is possible; libvirt makes the other snapshot kinds.
  - A snapshot is a new object every time, so a snapshot task always reports a change.
"""

EXAMPLES = r"""
- name: Filesystem-consistent external snapshot of every disk
  virt_qga.guest_agent.virt_qga_snapshot:
    domain: db01
  register: snap

- name: Application-consistent, with hooks, overlays on the backup volume
  virt_qga.guest_agent.virt_qga_snapshot:
    domain: db01
    dir: /srv/backup/overlays
    pre_freeze: "psql -c CHECKPOINT"
    post_thaw: "logger snapshot-done"
    max_frozen: 5
    wait_lock: 60

- name: Storage-side snapshot while the guest is frozen; accept crash consistency
  virt_qga.guest_agent.virt_qga_snapshot:
    domain: web01
    mode: command
    command: "/usr/local/bin/array-snap vol-web01"
    quiesce: preferred

- name: Done with the backup - merge the overlays back
  virt_qga.guest_agent.virt_qga_snapshot:
    domain: db01
    commit_back: true
"""

RETURN = r"""
snapshot:
  description: The snapshot name.
  returned: when a snapshot was taken
  type: str
  sample: vqga-20261125T060000Z
consistency:
  description: V(application) (frozen, with hooks), V(filesystem) (frozen) or V(crash).
  returned: when a snapshot was taken
  type: str
  sample: filesystem
consistency_reason:
  description: Why the snapshot is only crash-consistent, when it is.
  returned: when a snapshot was taken
  type: str
  sample: null
frozen_window_ms:
  description: Milliseconds from the freeze reply to the thaw reply, on the hypervisor clock.
  returned: when a snapshot was taken
  type: float
  sample: 41.7
overlays:
  description: The external overlays created, per disk.
  returned: when a snapshot was taken
  type: list
  elements: dict
  sample: [{target: vda, overlay: /var/lib/libvirt/images/db01.vqga-20261125T060000Z.qcow2}]
result:
  description: The full workflow report (timings per phase, hooks, guard, warnings, exit code).
  returned: when a snapshot was taken, and on failure when the workflow got that far
  type: dict
  sample: {mode: external, frozen: 2, thawed: 2, exit_code: 0}
committed:
  description: With O(commit_back=true), one entry per disk committed back (or, in check
    mode, that would be).
  returned: when O(commit_back=true)
  type: list
  elements: dict
  sample: [{target: vda, overlay: /images/db01.vqga-20261125T060000Z.qcow2, base: /images/db01.qcow2}]
msg:
  description: What happened, in words.
  returned: always
  type: str
  sample: snapshot vqga-20261125T060000Z (filesystem-consistent, frozen 41.7 ms)
exit_code:
  description:
    - On failure, the virt-qga exit code - 8 when the thaw could not be confirmed (the
      guest may be frozen; see RV(undo)), 10 when another job holds the lock, 5 when the
      post-thaw hook failed, 4 when a deadline passed, 3 when the agent is unavailable.
  returned: failure
  type: int
  sample: 8
error:
  description: On failure, the virt-qga error class.
  returned: failure
  type: str
  sample: OperationError
state:
  description: On a workflow failure, what was left (V(rolled-back), V(maybe-frozen), V(inconsistent)).
  returned: failure
  type: str
  sample: rolled-back
undo:
  description: On a workflow failure, the command that repairs what was left, when known.
  returned: failure
  type: str
  sample: virt-qga recover db01
"""

import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virt_qga.guest_agent.plugins.module_utils.virt_qga_common import (
    common_argument_spec,
    connection_uri,
    module_kwargs,
    open_domain,
    require_library,
    run_guarded,
    target_name,
)

#: Overlay file names the snapshot workflow creates (what commit_back picks by default).
VQGA_OVERLAY = re.compile(r".*\.vqga-\d{8}T\d{6}(\d{3})?Z\.qcow2$")

#: Snapshot result exit codes that still mean "a snapshot was made".
CRASH_CONSISTENT = 7
PARTIAL = 5


def argument_spec():
    return common_argument_spec(
        mode=dict(type="str", default="external", choices=["external", "internal", "command"]),
        disks=dict(type="list", elements="str"),
        dir=dict(type="path"),
        name=dict(type="str"),
        metadata=dict(type="bool", default=False),
        mountpoints=dict(type="list", elements="str"),
        quiesce=dict(type="str", default="required", choices=["required", "preferred", "off"]),
        pre_freeze=dict(type="str"),
        post_thaw=dict(type="str"),
        hook_timeout=dict(type="float", default=60.0),
        command=dict(type="str"),
        command_timeout=dict(type="float", default=30.0),
        max_frozen=dict(type="float", default=10.0),
        thaw_timeout=dict(type="float", default=5.0),
        force_thaw_first=dict(type="bool", default=False),
        wait_lock=dict(type="float", default=0.0),
        commit_back=dict(type="bool", default=False),
    )


def build_options(p):
    """SnapshotOptions from the module parameters (validated by the workflow's own rules)."""
    from virt_qga.workflows.snapshot import SnapshotOptions

    opts = SnapshotOptions(
        mode=p["mode"], disks=tuple(p.get("disks") or ()), directory=p.get("dir"), name=p.get("name"),
        metadata=p["metadata"], mountpoints=tuple(p.get("mountpoints") or ()), quiesce=p["quiesce"],
        pre_freeze=p.get("pre_freeze"), post_thaw=p.get("post_thaw"), hook_timeout=p["hook_timeout"],
        command=p.get("command"), command_timeout=p["command_timeout"], max_frozen=p["max_frozen"],
        force_thaw_first=p["force_thaw_first"], wait_lock=p["wait_lock"], timeout=p["timeout"],
        thaw_timeout=p["thaw_timeout"], socket=p.get("socket"),
    )
    opts.validate()
    return opts


def overlays_to_commit(domain, disks):
    """[(target, overlay, base)] that commit_back would merge."""
    from virt_qga.host import snapshots as hs

    out = []
    for d in hs.list_disks(domain.xml()):
        if disks and d.target not in disks:
            continue
        if d.source and d.backing and (disks or VQGA_OVERLAY.match(d.source)):
            out.append({"target": d.target, "overlay": d.source, "base": d.backing})
    return out


def do_commit_back(module, p):
    from virt_qga.workflows.snapshot import commit_back

    domain = open_domain(module, "commit_back")
    pending = overlays_to_commit(domain, p.get("disks") or [])
    if not pending:
        module.exit_json(changed=False, committed=[], msg="no disk runs on a virt-qga overlay")
    if module.check_mode:
        module.exit_json(changed=True, committed=pending,
                         msg=f"would commit back {', '.join(x['target'] for x in pending)} (check mode)")
    done = commit_back(p["domain"], connection_uri(p), disks=tuple(x["target"] for x in pending),
                       wait_lock=p["wait_lock"])
    module.exit_json(changed=True, committed=done,
                     msg=f"committed back {', '.join(str(x.get('target')) for x in done)}")


def describe(res):
    window = res.frozen_window_ms
    frozen = f", frozen {window:.1f} ms" if window is not None else ""
    return f"snapshot {res.name} ({res.consistency}-consistent{frozen})"


def body(module):
    require_library(module)
    from virt_qga.workflows.snapshot import snapshot

    p = module.params
    if p["commit_back"]:
        do_commit_back(module, p)
        return
    opts = build_options(p)
    label = target_name(p)
    uri = None if p.get("socket") else connection_uri(p)
    if module.check_mode:
        if not p.get("socket"):
            open_domain(module, "virt_qga_snapshot")
        module.exit_json(changed=True, msg=f"would take a {opts.mode} snapshot of {label} (check mode)")
    res = snapshot(label, uri, options=opts)
    for warning in res.warnings:
        module.warn(warning)
    out = dict(snapshot=res.name, consistency=res.consistency, consistency_reason=res.consistency_reason,
               frozen_window_ms=res.frozen_window_ms, overlays=res.overlays, result=res.to_dict())
    if res.consistency == "crash" and p["quiesce"] != "off":
        module.warn(f"snapshot {res.name} is only crash-consistent: {res.consistency_reason}")
    if res.exit_code == PARTIAL:
        module.fail_json(msg=describe(res) + " was made, but the post-thaw hook failed", changed=True,
                         exit_code=PARTIAL, error="PostThawHookFailed", **out)
    module.exit_json(changed=True, msg=describe(res), **out)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        **module_kwargs(required_if=[("mode", "command", ("command",))])
    )
    run_guarded(module, body)


if __name__ == "__main__":
    main()
