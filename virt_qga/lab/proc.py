"""Subprocess helpers: every call has a timeout and failures become :class:`LabError`."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from virt_qga.lab.errors import LabError


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    timeout: float = 60.0,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` to completion (bounded by ``timeout``), capturing output.

    On a non-zero exit (with ``check``) or a timeout, raise a one-line LabError that
    names the command and the last line of its stderr.
    """
    args = [str(a) for a in argv]
    try:
        proc = subprocess.run(
            args,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{_short(args)}` did not finish within {timeout:.0f} s") from exc
    except FileNotFoundError as exc:
        raise LabError(f"`{args[0]}` is not installed") from exc
    if check and proc.returncode != 0:
        raise LabError(
            f"`{_short(args)}` failed (exit {proc.returncode}): {last_line(proc.stderr or proc.stdout)}"
        )
    return proc


def last_line(data: bytes) -> str:
    lines = [ln.strip() for ln in data.decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def _short(args: Sequence[str], limit: int = 120) -> str:
    text = " ".join(args)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # state is the first field after the parenthesised command name
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def pid_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def pids_of_uid(uid: int) -> list[int]:
    """All live processes whose real uid is ``uid``."""
    out: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("Uid:"):
                    if int(line.split()[1]) == uid and pid_alive(int(entry.name)):
                        out.append(int(entry.name))
                    break
        except OSError:
            continue
    return out
