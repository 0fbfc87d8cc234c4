"""``virt-qga backup``: a thin caller of :mod:`virt_qga.workflows.backup`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from virt_qga.cli.common import clean
from virt_qga.cli.context import emit, get_ctx


def _all_running(uri: str | None) -> list[str]:
    from virt_qga.connection import import_libvirt, open_connection

    lv = import_libvirt()
    conn = open_connection(uri)
    return sorted(str(d.name()) for d in conn.listAllDomains(lv.VIR_CONNECT_LIST_DOMAINS_ACTIVE))


def _human(d: dict[str, Any]) -> None:
    for b in d["backups"]:
        name = b["domain"]
        if b["state"] == "done":
            size = sum(x["bytes"] for x in b["disks"])
            click.echo(clean(f"{name}: done, {b['consistency']}-consistent, {len(b['disks'])} disk(s), "
                             f"{size / 2**20:.1f} MiB in {b['timings_s'].get('total', 0):.1f} s "
                             f"-> {b['directory']}"))
            for p in b["pruned"]:
                click.echo(clean(f"  pruned {p}"))
        else:
            click.echo(clean(f"{name}: {b['state']}: {b['error']}"), err=True)
            if b.get("undo"):
                click.echo(clean(f"  to finish: {b['undo']}"), err=True)
        for w in b["warnings"]:
            click.echo(clean(f"  warning: {w}"), err=True)


@click.command()
@click.argument("domains", metavar="DOMAIN...", nargs=-1)
@click.option("--all", "all_running", is_flag=True, help="Every running domain on the connection.")
@click.option("--to", "dest", required=True, metavar="DIR",
              help="Backups go to DIR/DOMAIN/<snapshot name>/TARGET.qcow2 (+ manifest.json).")
@click.option("--keep", type=click.IntRange(min=1), metavar="N",
              help="After a successful backup keep only the newest N of that domain.")
@click.option("--disk", "disks", multiple=True, metavar="TARGET",
              help="Disk target to back up (repeatable; default: every writable disk).")
@click.option("--quiesce", type=click.Choice(["required", "preferred", "off"]), default="required",
              show_default=True, help="As for `snapshot`: preferred falls back to crash-consistent "
              "(exit 7).")
@click.option("--pre-freeze", metavar="CMD", help="Guest command run before freezing; failure aborts.")
@click.option("--post-thaw", metavar="CMD", help="Guest command run after the thaw.")
@click.option("--max-frozen", type=click.FloatRange(min=0.1, max=600), default=10.0, show_default=True,
              help="The thaw guard thaws the guest this many seconds after the freeze.")
@click.option("--wait-lock", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Wait this long for another job on the same domain.")
@click.option("--copy-timeout", type=click.FloatRange(min=1), default=3600.0, show_default=True,
              help="Deadline for copying one disk, seconds.")
def backup(domains: tuple[str, ...], all_running: bool, dest: str, keep: int | None,
           disks: tuple[str, ...], quiesce: str, pre_freeze: str | None, post_thaw: str | None,
           max_frozen: float, wait_lock: float, copy_timeout: float) -> None:
    """Back up DOMAIN(s): consistent snapshot, copy the base images, merge back.

    One domain after the other, each under its own lock. The overlays are always
    merged back, also when the copy fails or on SIGTERM/Ctrl-C; a backup directory
    under its final name is complete. Exit 0 all done, 7 some only crash-consistent,
    5 some failed, 8 a guest may be frozen, 9 an overlay could not be merged back.
    """
    from virt_qga.workflows import backup as wb
    from virt_qga.workflows.snapshot import SnapshotOptions

    c = get_ctx()
    if c.socket:
        raise click.UsageError("backup needs libvirt (--connect), not an agent socket")
    if bool(domains) == all_running:
        raise click.UsageError("give DOMAIN names or --all")
    names = list(domains) if domains else _all_running(c.connect)
    opts = SnapshotOptions(disks=disks, quiesce=quiesce, pre_freeze=pre_freeze, post_thaw=post_thaw,
                           max_frozen=max_frozen, wait_lock=wait_lock, timeout=c.timeout)
    results, code = wb.backup_many(names, c.connect, Path(dest).expanduser().absolute(), options=opts,
                                   keep=keep, copy_timeout=copy_timeout)
    emit({"backups": [r.to_dict() for r in results], "exit_code": code}, _human)
    if code:
        click.get_current_context().exit(code)
