"""``virt-qga backup-schedule install|show``: the systemd units (or the crontab line) of
a nightly ``virt-qga backup`` (:mod:`virt_qga.workflows.backup.schedule`).

Everything after the schedule's own options is the backup's command line (``--all``,
``--keep-daily 7``, ``--metrics FILE``...); it is parsed by ``backup`` itself now, so a
typo fails here and not at 02:30.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from virt_qga.cli.context import emit, get_ctx
from virt_qga.workflows.backup.schedule import (
    CARRIED_ENV,
    DEFAULT_CALENDAR,
    DEFAULT_CRON,
    DEFAULT_NAME,
    DEFAULT_UNIT_DIR,
    Schedule,
)

F = TypeVar("F", bound=Callable[..., Any])
_PASS_THROUGH = {"ignore_unknown_options": True}


def _schedule_options(fn: F) -> F:
    f: Any = click.argument("backup_args", nargs=-1, type=click.UNPROCESSED,
                            metavar="[BACKUP OPTIONS]...")(fn)
    f = click.option("--randomized-delay", type=click.IntRange(0, 86400), default=0, metavar="SECONDS",
                     help="Spread the start over up to SECONDS (RandomizedDelaySec=).")(f)
    f = click.option("--name", default=DEFAULT_NAME, show_default=True,
                     help="Unit name (NAME.service, NAME.timer).")(f)
    f = click.option("--on-calendar", default=DEFAULT_CALENDAR, show_default=True, metavar="SPEC",
                     help="When to run, as systemd.time(7) OnCalendar= (daily, 'Mon..Fri 01:00').")(f)
    f = click.option("--to", "dest", required=True, metavar="DIR", help="The backup store.")(f)
    return f  # type: ignore[no-any-return]


def _schedule(dest: str, on_calendar: str, name: str, randomized_delay: int,
              backup_args: tuple[str, ...]) -> Schedule:
    from virt_qga.cli.backup import backup
    from virt_qga.workflows.backup.schedule import check_calendar

    c = get_ctx()
    store = str(Path(dest).expanduser().absolute())
    args = ["--to", store, *backup_args]
    with backup.make_context("backup", list(args)) as ctx:  # bad options: a usage error now
        if not ctx.params["domains"] and not ctx.params["all_running"]:
            raise click.UsageError("the backup needs DOMAIN names or --all")
    check_calendar(on_calendar)
    if Path(sys.argv[0]).name == "virt-qga" and Path(sys.argv[0]).is_file():
        exe = [str(Path(sys.argv[0]).absolute())]
    else:
        exe = [sys.executable, "-m", "virt_qga.cli.main"]
    connect = ["--connect", c.connect] if c.connect else []
    env = tuple((k, os.environ[k]) for k in CARRIED_ENV if os.environ.get(k) and not (
        k == "VIRT_QGA_CONNECT" and c.connect))
    return Schedule(command=(*exe, *connect, "backup", *args), on_calendar=on_calendar, name=name,
                    randomized_delay=randomized_delay, environment=env)


@click.group("backup-schedule")
def backup_schedule() -> None:
    """Run `virt-qga backup` every night: a systemd service and timer, or a crontab line.

    The timer has Persistent=true (a night missed while the host was off runs at the
    next boot). Nothing is enabled or started unless --enable asks.
    """


@backup_schedule.command(context_settings=_PASS_THROUGH)
@_schedule_options
@click.option("--unit-dir", default=DEFAULT_UNIT_DIR, show_default=True, metavar="DIR",
              help="Where to write NAME.service and NAME.timer.")
@click.option("--enable", is_flag=True,
              help="Then run systemctl daemon-reload and enable --now NAME.timer (needs systemd as init).")
def install(unit_dir: str, enable: bool, **kw: Any) -> None:
    """Write NAME.service and NAME.timer that run `virt-qga backup --to DIR [BACKUP OPTIONS]`."""
    from virt_qga.workflows.backup import schedule as ws

    sched = _schedule(**kw)
    if enable and not ws.systemd_booted():
        ws.enable(sched.name)  # raises the clear error before anything is written
    service, timer = sched.write(Path(unit_dir).expanduser().absolute())
    ran = ws.enable(sched.name) if enable else []

    def human(d: dict[str, Any]) -> None:
        click.echo(f"wrote {d['service']}\nwrote {d['timer']}")
        if not d["enabled"]:
            click.echo(f"enable with: systemctl daemon-reload && systemctl enable --now {sched.name}.timer")

    emit({"service": str(service), "timer": str(timer), "enabled": bool(ran), "ran": ran,
          "exec_start": list(sched.command), "on_calendar": sched.on_calendar}, human)


@backup_schedule.command(context_settings=_PASS_THROUGH)
@_schedule_options
@click.option("--cron", "cron", default=DEFAULT_CRON, show_default=True, metavar="SCHEDULE",
              help="The crontab schedule of the printed crontab line (five fields).")
def show(cron: str, **kw: Any) -> None:
    """Print the units `install` would write, and the same job as an /etc/cron.d line."""
    sched = _schedule(**kw)
    doc = {"service": sched.service(), "timer": sched.timer(), "crontab": sched.crontab(cron)}

    def human(d: dict[str, Any]) -> None:
        click.echo(f"# {sched.name}.service\n{d['service']}\n# {sched.name}.timer\n{d['timer']}")
        click.echo(f"# or /etc/cron.d/{sched.name} (cron runs no missed night later)\n{d['crontab']}")

    emit(doc, human)
