"""``virt-qga backup``: a thin caller of :mod:`virt_qga.workflows.backup`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from virt_qga.cli.common import clean
from virt_qga.cli.context import emit, get_ctx, is_tty_stderr
from virt_qga.cli.options import build, click_options
from virt_qga.workflows.backup import SNAPSHOT_FIELDS, BackupOptions
from virt_qga.workflows.backup.job import Progress
from virt_qga.workflows.snapshot.options import SnapshotOptions


def _human(d: dict[str, Any]) -> None:
    for b in d["backups"]:
        name = b["domain"]
        if b["state"] == "done":
            click.echo(clean(f"{name}: {b['level']} backup {b['name']} ({b['method']}, "
                             f"{b['consistency']}-consistent): {b['bytes_written'] / 2**20:.1f} MiB "
                             f"written in {b['timings_s'].get('total', 0):.1f} s -> {b['directory']}"))
            click.echo(clean(f"  level: {b['level_reason']}; method: {b['method_reason']}"))
            for p in b["pruned"]:
                click.echo(clean(f"  pruned {p}"))
        else:
            click.echo(clean(f"{name}: {b['state']}: {b['error']}"), err=True)
            if b.get("undo"):
                click.echo(clean(f"  to finish: {b['undo']}"), err=True)
        for w in b["warnings"]:
            click.echo(clean(f"  warning: {w}"), err=True)


@contextlib.contextmanager
def _progress() -> Iterator[Progress | None]:
    """A progress bar per domain on a terminal (stderr, not with -q or --json)."""
    c = get_ctx()
    if not is_tty_stderr() or c.verbosity < 0 or c.json:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, TextColumn, TransferSpeedColumn
    from rich.progress import Progress as Bar

    with Bar(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(domain: str, done: int, total: int) -> None:
            if domain not in tasks:
                tasks[domain] = bar.add_task(domain, total=total or None)
            bar.update(tasks[domain], completed=done, total=total or None)

        yield update


@click.command()
@click.argument("domains", metavar="DOMAIN...", nargs=-1)
@click.option("--all", "all_running", is_flag=True, help="Every running domain on the connection.")
@click.option("--to", "dest", required=True, metavar="DIR",
              help="The backup store: DIR/DOMAIN/CHAIN/BACKUP/ holds each backup's images, domain "
                   "XML, checkpoint XML and manifest.json.")
@click_options(BackupOptions, "level", "method", "full_every", "keep", "copy_timeout")
@click_options(SnapshotOptions, *SNAPSHOT_FIELDS)
def backup(domains: tuple[str, ...], all_running: bool, dest: str, **params: Any) -> None:
    """Back up DOMAIN(s): full and incremental chains, consistent where the agent allows.

    With libvirt's backup API the guest is frozen only while the job starts, and an
    incremental copies only what changed since the chain's last backup; otherwise an
    external snapshot is copied and merged back (full only). One domain after the
    other, each under its own lock; a backup under its final name is complete. Exit 0
    all done, 7 some only crash-consistent, 5 some failed, 8 a guest may be frozen, 9
    something was left that needs a human (the message says what to run).
    """
    from virt_qga.workflows import backup as wb

    c = get_ctx()
    if c.socket:
        raise click.UsageError("backup needs libvirt (--connect), not an agent socket")
    if bool(domains) == all_running:
        raise click.UsageError("give DOMAIN names or --all")
    from virt_qga.connection import list_running_domains

    snap = build(SnapshotOptions, params, timeout=c.timeout)
    own = build(BackupOptions, params)
    snap.validate()
    own.validate()
    store = Path(dest).expanduser().absolute()
    names = list(domains) if domains else list_running_domains(c.connect)
    with _progress() as progress:
        results, code = wb.backup_many(names, c.connect, store, options=snap, backup_options=own,
                                       progress=progress)
    emit({"backups": [r.to_dict() for r in results], "exit_code": code}, _human)
    if code:
        click.get_current_context().exit(code)
