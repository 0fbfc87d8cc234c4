"""``virt-qga backup``: a thin caller of :mod:`virt_qga.workflows.backup`."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from virt_qga.cli import backup_report as report
from virt_qga.cli.context import emit, get_ctx, info, is_tty_stderr
from virt_qga.cli.options import build, click_options
from virt_qga.exitcodes import ExitCode
from virt_qga.workflows.backup import SNAPSHOT_FIELDS, BackupOptions
from virt_qga.workflows.backup.job import Progress
from virt_qga.workflows.backup.notify import DEFAULT_TIMEOUT
from virt_qga.workflows.backup.options import RETENTION_FIELDS
from virt_qga.workflows.fleet import MAX_JOBS
from virt_qga.workflows.snapshot.options import SnapshotOptions


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
@click.option("--include-inactive", is_flag=True,
              help="With --all: the defined, shut-off domains too (their disks are copied as they are).")
@click.option("--exclude", multiple=True, metavar="GLOB",
              help="Leave out the domains whose name matches GLOB (a shell pattern: web*, db-?); "
                   "repeatable.")
@click.option("--jobs", type=click.IntRange(1, MAX_JOBS), default=1, show_default=True, metavar="N",
              help="Back up N domains at once (each under its own lock; one failing never stops "
                   "another).")
@click.option("--to", "dest", required=True, metavar="DIR",
              help="The backup store: DIR/DOMAIN/CHAIN/BACKUP/ holds each backup's images, domain "
                   "XML, checkpoint XML and manifest.json.")
@click_options(BackupOptions, "level", "method", "full_every", *RETENTION_FIELDS, "copy_timeout")
@click_options(SnapshotOptions, *SNAPSHOT_FIELDS)
@click.option("--metrics", "metrics", metavar="FILE",
              help="Write the run's metrics to FILE for node_exporter's textfile collector "
                   "(atomically; name it *.prom in the collector's directory).")
@click.option("--syslog", is_flag=True,
              help="Also log each domain's outcome to syslog/the journal (with -q: failures and "
                   "warnings only).")
@click.option("--on-failure", metavar="CMD",
              help="When the run does not exit 0, run CMD (/bin/sh -c, on this machine) with the "
                   "run's JSON document on its stdin; its failure is reported, never changes the "
                   "exit code.")
@click.option("--on-failure-timeout", type=click.FloatRange(0, min_open=True), default=DEFAULT_TIMEOUT,
              show_default=True, metavar="SECONDS", help="Deadline of the --on-failure command.")
def backup(domains: tuple[str, ...], all_running: bool, include_inactive: bool, exclude: tuple[str, ...],
           jobs: int, dest: str, metrics: str | None, syslog: bool, on_failure: str | None,
           on_failure_timeout: float, **params: Any) -> None:
    """Back up DOMAIN(s): full and incremental chains, consistent where the agent allows.

    With libvirt's backup API the guest is frozen only while the job starts, and an
    incremental copies only what changed since the chain's last backup; otherwise an
    external snapshot is copied and merged back (full only). --jobs domains at a time,
    each under its own lock; a backup under its final name is complete. After a
    successful backup the --keep-* rules prune whole chains (see backup-prune). Exit 0
    all done, 7 some only crash-consistent, 5 some failed, 8 a guest may be frozen, 9
    something was left that needs a human (the message says what to run); with several
    domains all failing alike, their code (6 no such domain, 10 locked...); 130 a signal
    stopped the run (after each started backup cleaned up, and after --metrics, --syslog
    and --on-failure got the domains' results).
    """
    from virt_qga.workflows import backup as wb

    c = get_ctx()
    if c.socket:
        raise click.UsageError("backup needs libvirt (--connect), not an agent socket")
    if bool(domains) == all_running:
        raise click.UsageError("give DOMAIN names or --all")
    if include_inactive and not all_running:
        raise click.UsageError("--include-inactive goes with --all")
    snap = build(SnapshotOptions, params, timeout=c.timeout)
    own = build(BackupOptions, params)
    snap.validate()
    own.validate()
    store = Path(dest).expanduser().absolute()
    metrics_path = _metrics_path(metrics)
    logger = _syslog(c.verbosity < 0) if syslog else None
    from virt_qga.connection import list_running_domains

    names = list(domains) if domains else list_running_domains(c.connect, inactive=include_inactive)
    names = wb.select_domains(names, exclude)
    if not names:
        info("virt-qga: no domain to back up")
    interrupted: wb.RunInterrupted | None = None
    try:
        with _progress() as progress:
            results, code = wb.backup_many(names, c.connect, store, jobs=jobs, options=snap,
                                           backup_options=own, progress=progress)
    except wb.RunInterrupted as exc:  # cleanup has run: still report to the run's watchers
        interrupted, results, code = exc, exc.results, int(ExitCode.INTERRUPTED)
    doc: dict[str, Any] = {"backups": [r.to_dict() for r in results], "exit_code": code, "problems": []}
    if interrupted is not None:
        doc["interrupted"] = interrupted.signal_name
    if metrics_path is not None:
        try:
            from virt_qga.workflows.backup.metrics import write_metrics

            write_metrics(metrics_path, results, code, wb.Store(store))
            doc["metrics"] = str(metrics_path)
        except OSError as exc:
            doc["problems"].append(f"cannot write the metrics file {metrics_path}: {exc.strerror or exc}")
    if logger is not None:
        from virt_qga.cli.backup_report import log_results

        log_results(logger, doc)
    if on_failure and code != 0:
        from virt_qga.workflows.backup.notify import run_on_failure

        doc["on_failure"] = run_on_failure(on_failure, doc, timeout=on_failure_timeout).to_dict()
    if interrupted is not None:
        raise interrupted  # stdout gets the one "Interrupted" document, as for any command
    emit(doc, lambda d: report.human(d, quiet=c.verbosity < 0))
    if code:
        click.get_current_context().exit(code)


def _metrics_path(metrics: str | None) -> Path | None:
    """The metrics file, its directory checked before any backup starts."""
    if metrics is None:
        return None
    path = Path(metrics).expanduser().absolute()
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK | os.X_OK):
        raise click.BadParameter(f"{path.parent} is not a writable directory", param_hint="--metrics")
    if path.is_dir():
        raise click.BadParameter(f"{path} is a directory", param_hint="--metrics")
    return path


def _syslog(quiet: bool) -> logging.Logger:
    """The --syslog logger, its socket opened before any backup starts."""
    try:
        return report.syslog_logger(quiet=quiet)
    except OSError as exc:
        where = os.environ.get(report.SYSLOG_ENV) or "/dev/log"
        raise click.BadParameter(f"cannot log to syslog at {where}: {exc.strerror or exc}",
                                 param_hint="--syslog") from exc


@click.command("backup-prune")
@click.argument("store", metavar="DIR")
@click.option("--domain", metavar="DOMAIN", help="Only this domain's backups (default: every domain in DIR).")
@click.option("--dry-run", is_flag=True, help="Say what would be kept (and by which rule) and removed; "
                                              "change nothing.")
@click_options(BackupOptions, *RETENTION_FIELDS)
@click_options(SnapshotOptions, "wait_lock")
def backup_prune(store: str, domain: str | None, dry_run: bool, **params: Any) -> None:
    """Apply retention rules to the backups in the store DIR, whole chains at a time.

    The --keep-* rules apply in the order last, daily, weekly (ISO weeks), monthly,
    yearly; each keeps the newest backup of each of its next N periods, skipping periods
    an earlier rule already kept a backup in. A chain is removed only when no rule keeps
    any of its backups, so nothing a kept backup depends on goes. Each domain is pruned
    under its lock (a backup of it running: exit 10 for that domain). Days are local
    days (TZ). Exit 0 done, 2 no rule given, 10 a domain was locked, 5 some domains done.
    """
    from virt_qga.workflows.backup.retention import policy_of, prune_store
    from virt_qga.workflows.fleet import aggregate_exit

    own = build(BackupOptions, params)
    own.validate()
    snap = build(SnapshotOptions, params)
    root = Path(store).expanduser().absolute()
    plans = prune_store(root, policy_of(own), domain=domain, dry_run=dry_run, wait_lock=snap.wait_lock)
    code = aggregate_exit(p.exit_code for p in plans)
    emit({"store": str(root), "dry_run": dry_run,
          "domains": [p.to_dict() for p in plans], "exit_code": code},
         lambda d: report.prune_human(d))
    if code:
        click.get_current_context().exit(code)
