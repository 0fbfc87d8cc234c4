"""Nightly backups without babysitting: the systemd service and timer, or the crontab line,
that run ``virt-qga backup`` (``virt-qga backup-schedule``).

The timer has ``Persistent=true``: a night missed because the host was off runs at the
next boot. The service is ``Type=oneshot`` at a low CPU and I/O priority; its exit code
is the backup's (docs/backup.md, "Running it every night", says what each asks of the
operator). Nothing here enables or starts a unit; :func:`enable` does, when asked.

The texts are pure functions of the command line, so ``show`` prints exactly what
``install`` writes.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from virt_qga.errors import BadInputError, HostError, option_ref

__all__ = ["DEFAULT_CALENDAR", "DEFAULT_CRON", "DEFAULT_NAME", "DEFAULT_UNIT_DIR", "Schedule",
           "check_calendar", "enable", "systemd_booted"]

DEFAULT_NAME = "virt-qga-backup"
DEFAULT_UNIT_DIR = "/etc/systemd/system"
DEFAULT_CALENDAR = "*-*-* 02:30:00"
#: The crontab schedule matching :data:`DEFAULT_CALENDAR`.
DEFAULT_CRON = "30 2 * * *"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,200}")
#: Environment a backup run reads, carried into the unit when set at install time.
CARRIED_ENV = ("VIRT_QGA_STATE_DIR", "VIRT_QGA_CONNECT")


def _systemd_word(arg: str) -> str:
    """One ExecStart= word: specifiers (%) and variables ($) escaped, quoted when needed."""
    text = arg.replace("%", "%%").replace("$", "$$")
    if text and not re.search(r"[\s\"'\\;]", text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Schedule:
    """What to run and when."""

    command: tuple[str, ...]            # the full virt-qga backup command line
    on_calendar: str = DEFAULT_CALENDAR
    name: str = DEFAULT_NAME
    randomized_delay: int = 0           # seconds
    environment: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name) or self.name.endswith((".service", ".timer")):
            raise BadInputError(f"unit name {self.name!r}: letters, digits and _.@- only, without "
                                ".service or .timer", field="name")
        if not self.on_calendar.strip() or "\n" in self.on_calendar:
            raise BadInputError(f"{option_ref('on_calendar')} needs a calendar expression (daily, "
                                "'*-*-* 02:30:00', ...)", field="on_calendar")

    def service(self) -> str:
        env = "".join(f"Environment={_systemd_word(f'{k}={v}')}\n" for k, v in self.environment)
        return (
            "# Written by `virt-qga backup-schedule install`; run it again to change it.\n"
            "[Unit]\n"
            f"Description=virt-qga backups ({self.name})\n"
            "After=libvirtd.service virtqemud.service\n"
            "\n[Service]\n"
            "Type=oneshot\n"
            f"{env}"
            f"ExecStart={' '.join(_systemd_word(a) for a in self.command)}\n"
            "Nice=10\n"
            "IOSchedulingClass=best-effort\n"
            "IOSchedulingPriority=7\n")

    def timer(self) -> str:
        delay = f"RandomizedDelaySec={self.randomized_delay}\n" if self.randomized_delay else ""
        return (
            "# Written by `virt-qga backup-schedule install`; Persistent=true runs a missed night at boot.\n"
            "[Unit]\n"
            f"Description=virt-qga backups on schedule ({self.name})\n"
            "\n[Timer]\n"
            f"OnCalendar={self.on_calendar}\n"
            "Persistent=true\n"
            f"{delay}"
            f"Unit={self.name}.service\n"
            "\n[Install]\n"
            "WantedBy=timers.target\n")

    def crontab(self, schedule: str = DEFAULT_CRON) -> str:
        """An /etc/cron.d line (user root); cron has no Persistent=: a missed night is lost."""
        if len(schedule.split()) != 5 or "\n" in schedule:
            raise BadInputError(f"{option_ref('cron')} needs five fields (minute hour day month "
                                f"weekday), not {schedule!r}", field="cron")
        env = " ".join(shlex.quote(f"{k}={v}") for k, v in self.environment)
        cmd = " ".join(shlex.quote(a) for a in self.command).replace("%", "\\%")
        return f"{schedule} root {env + ' ' if env else ''}{cmd}"

    def write(self, unit_dir: Path) -> tuple[Path, Path]:
        """Write the two units into ``unit_dir`` (atomically each); their paths."""
        from virt_qga.workflows.backup.store import write_atomic

        if not unit_dir.is_dir():
            raise BadInputError(f"unit directory {unit_dir} does not exist", field="unit_dir")
        paths = unit_dir / f"{self.name}.service", unit_dir / f"{self.name}.timer"
        try:
            write_atomic(paths[0], self.service())
            write_atomic(paths[1], self.timer())
        except OSError as exc:
            raise HostError(f"cannot write the units into {unit_dir}: {exc.strerror}") from exc
        for p in paths:
            p.chmod(0o644)
        return paths


def check_calendar(spec: str) -> None:
    """Let systemd-analyze judge a calendar expression, where it is installed."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return
    try:
        p = subprocess.run([tool, "calendar", spec], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return  # cannot ask: systemd itself will say when the timer is loaded
    if p.returncode != 0:
        why = (p.stderr.strip().splitlines() or ["invalid"])[-1]
        raise BadInputError(f"{option_ref('on_calendar')} {spec!r}: {why}", field="on_calendar")


def systemd_booted() -> bool:
    """Is systemd the init system here (sd_booted(3)'s test)?"""
    return Path("/run/systemd/system").is_dir()


def enable(name: str) -> list[str]:
    """``systemctl daemon-reload`` and ``enable --now NAME.timer``; the commands run."""
    if not systemd_booted():
        raise HostError("cannot enable the timer: systemd is not the init system here (no "
                        f"/run/systemd/system); the units were not written. Install without "
                        f"{option_ref('enable')}, or use the crontab line of `virt-qga backup-schedule show`")
    ran = []
    for cmd in (["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", f"{name}.timer"]):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise HostError(f"{' '.join(cmd)}: {exc}") from exc
        if p.returncode != 0:
            raise HostError(f"{' '.join(cmd)} failed: {p.stderr.strip() or p.returncode}")
        ran.append(" ".join(cmd))
    return ran
