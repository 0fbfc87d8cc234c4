"""``virt-qga snapshot`` and ``virt-qga recover``: thin callers of the workflows."""

from __future__ import annotations

from typing import Any

import click

from virt_qga.cli.common import SOCKET_PREFIX, clean, domain_argument, print_kv
from virt_qga.cli.context import emit, get_ctx


def _split_domain(domain: str) -> tuple[str, str | None]:
    """(label, socket path or None) honouring ``unix:PATH`` and ``--socket``."""
    c = get_ctx()
    if domain.startswith(SOCKET_PREFIX):
        return domain, domain[len(SOCKET_PREFIX):]
    return domain, c.socket


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


@click.command()
@domain_argument
@click.option("--mode", type=click.Choice(["external", "internal", "command"]), default="external",
              show_default=True, help="external: disk-only overlay per disk (libvirt); internal: "
              "libvirt internal checkpoint (RAM too); command: run --command while frozen.")
@click.option("--disk", "disks", multiple=True, metavar="TARGET",
              help="Disk target to snapshot (repeatable; default: every writable disk).")
@click.option("--dir", "directory", metavar="DIR",
              help="Put overlays here instead of next to each base image.")
@click.option("--name", metavar="NAME", help="Snapshot name (default vqga-<UTC time>).")
@click.option("--metadata/--no-metadata", default=False, show_default=True,
              help="Let libvirt keep snapshot metadata (snapshot-list, revert). Default off: the "
              "overlay is the record, and commit-back leaves nothing stale.")
@click.option("--mountpoint", "mountpoints", multiple=True, metavar="PATH",
              help="Freeze only this guest mountpoint (repeatable; default: all).")
@click.option("--quiesce", type=click.Choice(["required", "preferred", "off"]), default="required",
              show_default=True, help="required: fail without a freeze; preferred: fall back to "
              "crash-consistent (exit 7); off: never freeze.")
@click.option("--pre-freeze", metavar="CMD", help="Guest command (/bin/sh -c) run before freezing; "
              "failure aborts.")
@click.option("--post-thaw", metavar="CMD", help="Guest command run after the thaw.")
@click.option("--hook-timeout", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
              help="Seconds per hook.")
@click.option("--command", "command", metavar="CMD", help="--mode command: host command run while "
              "frozen; env VIRT_QGA_DOMAIN, VIRT_QGA_URI, VIRT_QGA_DISKS, VIRT_QGA_DISK_<TARGET>, "
              "VIRT_QGA_SNAPSHOT_NAME.")
@click.option("--command-timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds the host command may take.")
@click.option("--max-frozen", type=click.FloatRange(min=0.1, max=600), default=10.0, show_default=True,
              help="The thaw guard thaws the guest this many seconds after the freeze, whatever "
              "happens to virt-qga.")
@click.option("--thaw-timeout", type=click.FloatRange(min=1), default=5.0, show_default=True,
              help="Deadline of each thaw request, seconds.")
@click.option("--force-thaw-first", is_flag=True, help="If the guest is already frozen, thaw it and "
              "go on (default: refuse).")
@click.option("--wait-lock", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Wait this long for another job on the domain (default: fail at once, exit 10).")
@click.option("--precreate/--no-precreate", default=None,
              help="Create external overlays with qemu-img before freezing (libvirt REUSE_EXT), "
              "keeping file creation out of the frozen window. Default: on for local URIs and "
              "file disks.")
@click.option("--commit-back", is_flag=True, help="Undo instead: commit the active overlay(s) "
              "(--disk, default: virt-qga overlays) back into their base and delete them.")
def snapshot(domain: str, mode: str, disks: tuple[str, ...], directory: str | None, name: str | None,
             metadata: bool, mountpoints: tuple[str, ...], quiesce: str, pre_freeze: str | None,
             post_thaw: str | None, hook_timeout: float, command: str | None, command_timeout: float,
             max_frozen: float, thaw_timeout: float, force_thaw_first: bool, wait_lock: float,
             precreate: bool | None, commit_back: bool) -> None:
    """Freeze DOMAIN's filesystems, snapshot, thaw: a consistent snapshot.

    The guest is never left frozen: a thaw guard process thaws it after --max-frozen
    seconds even if virt-qga is killed; `virt-qga recover DOMAIN` cleans up after a
    run that died. Exit 0 ok, 7 crash-consistent only, 8 thaw unconfirmed, 10 locked.
    """
    from virt_qga.workflows import snapshot as wf

    c = get_ctx()
    label, socket = _split_domain(domain)
    if commit_back:
        if socket:
            raise click.UsageError("--commit-back needs libvirt, not an agent socket")
        done = wf.commit_back(label, c.connect, disks=disks, wait_lock=wait_lock)

        def human_commit(d: dict[str, Any]) -> None:
            for r in d["committed"]:
                click.echo(clean(f"{label}: {r['target']}: committed {r['overlay']} into {r['base']} "
                                 f"in {r['seconds']:.2f} s"
                                 + ("" if r["overlay_removed"] else " (overlay file kept)")))

        emit({"domain": label, "committed": done}, human_commit)
        return
    opts = wf.SnapshotOptions(
        mode=mode, disks=disks, directory=directory, name=name, metadata=metadata,
        mountpoints=mountpoints, quiesce=quiesce, pre_freeze=pre_freeze, post_thaw=post_thaw,
        hook_timeout=hook_timeout, command=command, command_timeout=command_timeout,
        max_frozen=max_frozen, force_thaw_first=force_thaw_first, wait_lock=wait_lock,
        timeout=c.timeout, thaw_timeout=thaw_timeout, socket=socket, precreate=precreate)
    result = wf.snapshot(label, None if socket else c.connect, options=opts)
    emit(result.to_dict(), _human_result)
    _exit(result.exit_code)


@click.command()
@click.argument("domain", metavar="[DOMAIN]", required=False)
@click.option("--all", "all_", is_flag=True, help="Every domain with a journal in the state directory.")
@click.option("--wait-lock", type=click.FloatRange(min=0), default=70.0, show_default=True,
              help="Wait this long for a thaw guard or job still holding the domain's lock.")
def recover(domain: str | None, all_: bool, wait_lock: float) -> None:
    """Thaw DOMAIN if frozen and report (and clean) what a dead snapshot run left.

    Removes half-made overlays; reports completed ones with the command to undo them.
    """
    from virt_qga.workflows import recover as rc

    c = get_ctx()
    if bool(domain) == all_:
        raise click.UsageError("give a DOMAIN or --all")
    if all_:
        reports = rc.recover_all(c.connect, timeout=min(c.timeout, 10.0), wait_lock=wait_lock)
    else:
        assert domain is not None
        label, socket = _split_domain(domain)
        reports = [rc.recover(label, None if socket else c.connect, socket=socket,
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
