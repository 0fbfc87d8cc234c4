"""``virt-qga backup``: a thin caller of :mod:`virt_qga.workflows.backup`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from virt_qga.cli.common import clean
from virt_qga.cli.context import emit, get_ctx
from virt_qga.cli.options import build, click_options
from virt_qga.workflows.backup import SNAPSHOT_FIELDS, BackupOptions
from virt_qga.workflows.snapshot.options import SnapshotOptions


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
@click_options(BackupOptions, "keep", "copy_timeout")
@click_options(SnapshotOptions, *SNAPSHOT_FIELDS)
def backup(domains: tuple[str, ...], all_running: bool, dest: str, **params: Any) -> None:
    """Back up DOMAIN(s): consistent snapshot, copy the base images, merge back.

    One domain after the other, each under its own lock. The overlays are always
    merged back, also when the copy fails or on SIGTERM/Ctrl-C; a backup directory
    under its final name is complete. Exit 0 all done, 7 some only crash-consistent,
    5 some failed, 8 a guest may be frozen, 9 an overlay could not be merged back.
    """
    from virt_qga.workflows import backup as wb

    c = get_ctx()
    if c.socket:
        raise click.UsageError("backup needs libvirt (--connect), not an agent socket")
    if bool(domains) == all_running:
        raise click.UsageError("give DOMAIN names or --all")
    from virt_qga.connection import list_running_domains

    names = list(domains) if domains else list_running_domains(c.connect)
    opts = build(SnapshotOptions, params, timeout=c.timeout)
    own = build(BackupOptions, params)
    results, code = wb.backup_many(names, c.connect, Path(dest).expanduser().absolute(), options=opts,
                                   keep=own.keep, copy_timeout=own.copy_timeout)
    emit({"backups": [r.to_dict() for r in results], "exit_code": code}, _human)
    if code:
        click.get_current_context().exit(code)
