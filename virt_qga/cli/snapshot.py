"""``virt-qga snapshot`` and ``virt-qga recover``: thin callers of the workflows."""

from __future__ import annotations

from typing import Any

import click

from virt_qga.cli.common import clean, domain_argument, print_kv, resolve
from virt_qga.cli.context import emit, get_ctx
from virt_qga.cli.options import build, click_options
from virt_qga.workflows.recover import RecoverOptions
from virt_qga.workflows.snapshot.options import SnapshotOptions


def _exit(code: int) -> None:
    if code:
        click.get_current_context().exit(code)


def _human_result(d: dict[str, Any]) -> None:
    rows: list[tuple[str, Any]] = [
        ("domain", d["domain"]), ("snapshot", d["snapshot"]), ("mode", d["mode"]),
        ("consistency", d["consistency"] + (f" ({d['consistency_reason']})"
                                            if d.get("consistency_reason") else "")),
    ]
    if d.get("frozen") is not None:
        rows.append(("frozen/thawed", f"{d['frozen']} / {d['thawed']} filesystem(s)"))
    if d.get("frozen_window_ms") is not None:
        rows.append(("frozen window", f"{d['frozen_window_ms']:.1f} ms (host-measured)"))
    for ov in d.get("overlays", []):
        rows.append((f"overlay {ov['target']}", ov["overlay"]))
    if d.get("command"):
        rows.append(("command status", d["command"]["status"]))
    t = d.get("timings_ms", {})
    if t:
        rows.append(("timings", ", ".join(f"{k} {v:.1f} ms" for k, v in t.items())))
    print_kv(rows)
    for w in d.get("warnings", []):
        click.echo(f"warning: {clean(w)}", err=True)


#: The snapshot options the CLI offers, in --help order (all of SnapshotOptions').
SNAPSHOT_OPTIONS = ("mode", "disks", "directory", "name", "metadata", "mountpoints", "quiesce",
                    "pre_freeze", "post_thaw", "hook_timeout", "command", "command_timeout",
                    "max_frozen", "thaw_timeout", "force_thaw_first", "wait_lock", "precreate")


@click.command()
@domain_argument
@click_options(SnapshotOptions, *SNAPSHOT_OPTIONS)
@click.option("--commit-back", is_flag=True, help="Undo instead: commit the active overlay(s) "
              "(--disk, default: virt-qga overlays) back into their base and delete them.")
def snapshot(domain: str, commit_back: bool, **params: Any) -> None:
    """Freeze DOMAIN's filesystems, snapshot, thaw: a consistent snapshot.

    The guest is never left frozen: a thaw guard process thaws it after --max-frozen
    seconds even if virt-qga is killed; `virt-qga recover DOMAIN` cleans up after a
    run that died. Exit 0 ok, 7 crash-consistent only, 8 thaw unconfirmed, 10 locked.
    """
    from virt_qga.workflows import snapshot as wf

    c = get_ctx()
    target = resolve(domain)
    if commit_back:
        if target.via_socket:
            raise click.UsageError("--commit-back needs libvirt, not an agent socket")
        done = wf.commit_back(target.label, target.uri, disks=tuple(params["disks"]),
                              wait_lock=params["wait_lock"])

        def human_commit(d: dict[str, Any]) -> None:
            for r in d["committed"]:
                click.echo(clean(f"{target.label}: {r['target']}: committed {r['overlay']} into "
                                 f"{r['base']} in {r['seconds']:.2f} s"
                                 + ("" if r["overlay_removed"] else " (overlay file kept)")))

        emit({"domain": target.label, "committed": done}, human_commit)
        return
    opts = build(SnapshotOptions, params, timeout=c.timeout, socket=target.socket)
    result = wf.snapshot(target.label, target.uri, options=opts)
    emit(result.to_dict(), _human_result)
    _exit(result.exit_code)


@click.command()
@click.argument("domain", metavar="[DOMAIN]", required=False)
@click.option("--all", "all_", is_flag=True, help="Every domain with a journal in the state directory.")
@click_options(RecoverOptions, "wait_lock")
def recover(domain: str | None, all_: bool, wait_lock: float) -> None:
    """Thaw DOMAIN if frozen and report (and clean) what a dead snapshot or backup run left.

    Removes half-made overlays; reports completed ones with the command to undo them.
    After a dead backup: aborts its job, deletes the checkpoint of a backup that never
    completed, removes its partial directory, merges the snapshot method's overlays back.
    """
    from virt_qga.workflows import recover as rc

    c = get_ctx()
    if bool(domain) == all_:
        raise click.UsageError("give a DOMAIN or --all")
    if all_:
        reports = rc.recover_all(c.connect, timeout=min(c.timeout, 10.0), wait_lock=wait_lock)
    else:
        assert domain is not None
        target = resolve(domain)
        reports = [rc.recover(target.label, target.uri, socket=target.socket,
                              timeout=min(c.timeout, 10.0), wait_lock=wait_lock)]
    data = {"domains": [r.to_dict() for r in reports]}

    def human(d: dict[str, Any]) -> None:
        if not d["domains"]:
            click.echo("nothing to recover")
        for r in d["domains"]:
            j = r["journal"]
            head = f"{r['domain']}: " + (f"dead {j['operation']} (pid {j['pid']}, phase {j['phase']})"
                                         if j else "no journal")
            click.echo(clean(head))
            bj = r.get("backup_journal")
            if bj:
                click.echo(clean(f"  dead backup (pid {bj['pid']}, {bj['method']}, step {bj['step']})"))
            for a in r["actions"]:
                click.echo(f"  done: {clean(a)}")
            for ev in r["guard_events"]:
                click.echo(f"  guard: {clean(ev.get('event'))} {clean(ev.get('reason', ''))}")
            for lo in r["leftovers"]:
                click.echo(f"  left: {clean(lo['note'])}")
            for p in r["problems"]:
                click.echo(f"  problem: {clean(p)}")

    emit(data, human)
    _exit(max((r.exit_code for r in reports), default=0))
