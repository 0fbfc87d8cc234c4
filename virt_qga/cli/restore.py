"""``virt-qga restore``, ``backup-verify`` and ``backup-list``: thin callers of
:mod:`virt_qga.workflows.backup.restore`, ``.verify`` and ``.listing``."""

from __future__ import annotations

from typing import Any

import click

from virt_qga.cli.common import clean, print_table
from virt_qga.cli.context import emit, get_ctx
from virt_qga.cli.options import build, click_options
from virt_qga.workflows.backup.restore import RestoreOptions


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _human_restore(d: dict[str, Any]) -> None:
    n = len(d["backups"])
    click.echo(clean(f"restored {d['domain']} at {d['point']} ({d['level']}, chain {d['chain']}, "
                     f"{n} backup(s) flattened) into {d['directory']}"))
    for disk in d["disks"]:
        click.echo(clean(f"  {disk['target']}: {disk['path']} ({_mib(disk['virtual_size'])} virtual, "
                         f"{_mib(disk['file_size'])} file, {disk['seconds']:.1f} s)"))
    for v in d["verified"]:
        click.echo(clean(f"  verified: {v}"))
    if d["defined"]:
        df = d["defined"]
        click.echo(clean(f"defined {df['name']} (UUID {df['uuid']}), not started: "
                         f"virsh start {df['name']}"))
        for c in d["changes"]:
            click.echo(clean(f"  changed: {c}"))
    for w in d["warnings"]:
        click.echo(clean(f"  warning: {w}"), err=True)


@click.command()
@click.argument("path", metavar="PATH")
@click_options(RestoreOptions, "at", "to", "define", "owner", "convert_timeout")
def restore(path: str, **params: Any) -> None:
    """Restore a backup: flatten its chain into standalone qcow2 images and verify them.

    PATH is a chain directory (its newest backup is restored) or a backup in one.
    Before anything is read, the stored images of that backup and of every backup
    before it are checked against their manifests; each restored image is checked
    with qemu-img before it gets its final name. With --define, a new domain is
    defined (not started) on the restored images. Exit 0 done, 1 failed (nothing
    of this run left), 2 bad input (nothing made).
    """
    from virt_qga.workflows.backup.restore import restore as run

    opts = build(RestoreOptions, params)
    result = run(path, opts, uri=get_ctx().connect)
    emit(result.to_dict(), _human_restore)


def _human_verify(d: dict[str, Any]) -> None:
    for p in d["problems"]:
        click.echo(clean(f"{p['path']}: {p['message']}"))
    c = d["checked"]
    summary = (f"{c['backups']} backup(s) in {c['chains']} chain(s), {c['files']} image(s), "
               f"{_mib(c['bytes'])} checked")
    if d["ok"]:
        click.echo(clean(f"ok: {summary}"))
    else:
        click.echo(clean(f"{len(d['problems'])} problem(s): {summary}"))
    for w in d["warnings"]:
        click.echo(clean(f"warning: {w}"), err=True)


@click.command("backup-verify")
@click.argument("path", metavar="PATH")
def backup_verify(path: str) -> None:
    """Verify a backup store, a domain's backups, a chain or one backup.

    Checks every stored image against its manifest (size, SHA-256), with qemu-img
    check, and every chain link (each incremental's backing file is its parent's
    image and exists; parents as the manifests say; no backup outside the chain
    order; partial directories). One line per problem; exit 1 on any, 0 when all
    pass, 2 when PATH is not a backup directory. Each backup checked records the
    result in its verify.json (backup-list shows it).
    """
    from pathlib import Path

    from virt_qga.workflows.backup.verify import verify_backups

    report = verify_backups(Path(path))
    emit(report.to_dict(), _human_verify)
    if report.exit_code:
        click.get_current_context().exit(report.exit_code)


def _verified(v: dict[str, Any] | None) -> str:
    if v is None:
        return "never"
    if v["stale"]:
        return "stale"
    if v["ok"]:
        return str(v["passed_at"])
    return f"FAILED {v['at']}"


def _human_list(d: dict[str, Any]) -> None:
    rows = []
    for b in d["backups"]:
        level = b["level"] if b["in_chain"] else f"{b['level']} (outside chain)"
        rows.append((b["started"][:19].replace("T", " "), b["domain"], level, b["chain"],
                     f"{_mib(b['bytes_written'])} / {_mib(b['file_size'])}", b["consistency"],
                     b["method"], _verified(b["verified"])))
    if not rows:
        click.echo(clean(f"no backups under {d['root']}"))
    else:
        print_table(("time (UTC)", "domain", "level", "chain", "written / file", "consistency",
                     "method", "verified"), rows, wide=True)
    for p in d["partials"]:
        click.echo(clean(f"partial: {p}"), err=True)


@click.command("backup-list")
@click.argument("dir_", metavar="[DIR]", required=False, default=".")
@click.option("--domain", metavar="D", help="Only the backups of domain D.")
def backup_list(dir_: str, domain: str | None) -> None:
    """List the backups under DIR (a store, default: the current directory; or a
    domain's directory, or a chain).

    One row per backup: its time, domain, level, chain, the bytes the backup wrote
    and the size of its files, consistency, method, and when backup-verify last
    passed for it and everything before it in its chain ("never", "stale" when the
    backup changed since, "FAILED" when the last run found a problem).
    """
    from pathlib import Path

    from virt_qga.workflows.backup.listing import list_backups

    emit(list_backups(Path(dir_), domain=domain).to_dict(), _human_list)

