"""How ``virt-qga backup`` reports a run: the human output (a line per domain, then a
summary table) and, with ``--syslog``, one log record per domain for the journal.

``--syslog`` logs through Python's ``SysLogHandler`` to ``/dev/log`` (datagrams, facility
``daemon``, tag ``virt-qga``): on a systemd host that socket is journald's, elsewhere
rsyslog's or syslog-ng's, so one handler serves both. Each record names its domain
(``domain=web1: ...``, and the ``domain`` attribute of the record). With ``-q`` only
warnings and failures are logged. ``VIRT_QGA_SYSLOG_SOCKET`` points the handler at
another socket (the tests bind their own).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import click

from virt_qga.cli.common import clean, print_table

__all__ = ["SYSLOG_ENV", "human", "log_results", "prune_human", "syslog_logger"]

SYSLOG_ENV = "VIRT_QGA_SYSLOG_SOCKET"
_LOGGER = "virt_qga.backup.syslog"


def human(d: dict[str, Any], *, quiet: bool = False) -> None:
    """A line per domain (failures on stderr), then the summary table. ``quiet`` (-q):
    nothing when every domain succeeded."""
    if quiet and d["exit_code"] == 0:
        return
    for b in d["backups"]:
        name = b["domain"]
        if b["ok"]:
            click.echo(clean(f"{name}: {b['level']} backup {b['name']} ({b['method']}, "
                             f"{b['consistency']}-consistent): {b['bytes_written'] / 2**20:.1f} MiB "
                             f"written in {b['timings_s'].get('total', 0):.1f} s -> {b['directory']}"))
            click.echo(clean(f"  level: {b['level_reason']}; method: {b['method_reason']}"))
            if b.get("retention"):
                click.echo(clean(f"  retention: {_kept_by(b['retention'])}"))
            for p in b["pruned"]:
                click.echo(clean(f"  pruned {p}"))
        else:
            click.echo(clean(f"{name}: {b['state']}: {b['error']}"), err=True)
            if b.get("undo"):
                click.echo(clean(f"  to finish: {b['undo']}"), err=True)
        for w in b["warnings"]:
            click.echo(clean(f"  warning: {w}"), err=True)
    hook = d.get("on_failure")
    if hook is not None and not hook["ok"]:
        click.echo(clean(f"on-failure command failed: {hook['error']}"), err=True)
    for problem in d.get("problems", []):
        click.echo(clean(f"warning: {problem}"), err=True)
    if len(d["backups"]) > 1:
        rows = [(b["domain"], b["state"], b["level"] or "-", _mib(b), f"{b['timings_s'].get('total', 0):.1f}",
                 b["consistency"] or "-", b["exit_code"]) for b in d["backups"]]
        print_table(("domain", "state", "level", "MiB", "seconds", "consistency", "exit"), rows,
                    title=f"backup: exit {d['exit_code']}")


def _kept_by(plan: dict[str, Any]) -> str:
    """``kept 9 (last 1, daily 6, chain 2), removed 3``."""
    rules: dict[str, int] = {}
    for rule in plan["kept"].values():
        rules[rule] = rules.get(rule, 0) + 1
    detail = ", ".join(f"{r} {n}" for r, n in rules.items())
    return f"kept {len(plan['kept'])} ({detail}), removed {len(plan['removed'])}"


def _mib(b: dict[str, Any]) -> str:
    return f"{b['bytes_written'] / 2**20:.1f}" if b["ok"] else "-"


class _DomainFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.domain = getattr(record, "domain", "-")
        return True


def syslog_logger(*, quiet: bool) -> logging.Logger:
    """The logger ``--syslog`` writes to, with one handler on the syslog socket."""
    from logging.handlers import SysLogHandler

    logger = logging.getLogger(_LOGGER)
    logger.propagate = False  # stderr already has the human output
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    for old in list(logger.handlers):  # a second run in one process (tests): a fresh socket
        logger.removeHandler(old)
        old.close()
    address = os.environ.get(SYSLOG_ENV) or "/dev/log"
    handler = SysLogHandler(address=address, facility=SysLogHandler.LOG_DAEMON)
    handler.ident = "virt-qga: "
    handler.addFilter(_DomainFilter())
    handler.setFormatter(logging.Formatter("domain=%(domain)s: %(message)s"))
    logger.addHandler(handler)
    return logger


def log_results(logger: logging.Logger, d: dict[str, Any]) -> None:
    """One record per domain, then one for the run."""
    for b in d["backups"]:
        extra = {"domain": b["domain"]}
        if b["ok"]:
            level = logging.WARNING if b["consistency"] == "crash" else logging.INFO
            logger.log(level, "%s backup %s done (%s, %s-consistent, %d bytes, %.1f s)", b["level"],
                       b["name"], b["method"], b["consistency"], b["bytes_written"],
                       b["timings_s"].get("total", 0), extra=extra)
            if b["pruned"]:
                logger.info("retention removed %s", ", ".join(b["pruned"]), extra=extra)
        else:
            logger.error("backup failed (%s, exit %d): %s%s", b["state"], b["exit_code"], b["error"],
                         f"; to finish: {b['undo']}" if b.get("undo") else "", extra=extra)
        for w in b["warnings"]:
            logger.warning("%s", w, extra=extra)
    code = d["exit_code"]
    why = f" (interrupted by {d['interrupted']})" if d.get("interrupted") else ""
    logger.log(logging.INFO if code == 0 else logging.ERROR, "run over %d domain(s) ended with exit %d%s",
               len(d["backups"]), code, why, extra={"domain": "*"})


def prune_human(d: dict[str, Any]) -> None:
    """``backup-prune``: a row per backup (kept by which rule, or removed), per domain."""
    rows = []
    for p in d["domains"]:
        if p["error"]:
            click.echo(clean(f"{p['domain']}: not pruned: {p['error']}"), err=True)
            continue
        rows += [(p["domain"], name, rule) for name, rule in sorted(p["kept"].items())]
        rows += [(p["domain"], name, "would remove" if d["dry_run"] else "removed") for name in p["removed"]]
    if not rows and not any(p["error"] for p in d["domains"]):
        click.echo(f"{d['store']}: no backups, nothing to prune")
        return
    rows.sort(key=lambda r: (r[0], r[1]))
    title = f"{d['store']}{' (dry run: nothing changed)' if d['dry_run'] else ''}"
    print_table(("domain", "backup", "kept by / fate"), rows, title=title)
