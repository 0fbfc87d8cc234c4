"""Backups of many domains: which domains, how many at once, and what a signal does.

:func:`backup_many` runs :func:`~virt_qga.workflows.backup.backup` for each domain
through :func:`~virt_qga.workflows.fleet.run_each`, at most ``jobs`` at a time. Each
domain takes its own lock; one domain's failure is its own result.

SIGINT and SIGTERM (systemd stopping the service, cron's timeout, Ctrl-C) must clean up
as they do for one domain: abort the job, delete the new checkpoint, remove the partial
directory. A backup in a worker thread cannot install signal handlers (only the main
thread can), so while workers run, the main thread's handler passes the signal to each
running backup with :func:`virt_qga.workflows.signals.forward`: deferred while that
backup holds signals (the thaw, its cleanup), as in the main thread, else raised in it
as :class:`~virt_qga.errors.Interrupted` at its next Python instruction (every wait in a
backup is a short poll, so that comes soon). Each backup then cleans up through its
usual failure path; domains not started yet are not started; once the workers are done,
:func:`backup_many` raises :class:`RunInterrupted` (an ``Interrupted``: exit 130), one
domain at a time or many. It carries a result for every domain of the run (done,
interrupted after its cleanup, or not started), so that the caller can still write its
metrics, log and run its failure hook. Only the first signal is forwarded: a second one
must not cut the cleanup short.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from fnmatch import fnmatchcase
from pathlib import Path
from types import FrameType
from typing import Any

from virt_qga.errors import Interrupted
from virt_qga.exitcodes import ExitCode
from virt_qga.workflows.backup.result import BackupResult
from virt_qga.workflows.fleet import aggregate_exit, run_each
from virt_qga.workflows.signals import forward

__all__ = ["RunInterrupted", "backup_many", "select_domains"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def select_domains(names: list[str], exclude: tuple[str, ...] = ()) -> list[str]:
    """``names`` without those matching any ``exclude`` glob (``web*``, ``test-?``), each
    once, in the order given."""
    return [n for n in dict.fromkeys(names) if not any(fnmatchcase(n, g) for g in exclude)]


class RunInterrupted(Interrupted):
    """The run was interrupted by a signal; ``results`` has one entry per domain, in the
    order given: what each domain's backup gave (done before the signal, or interrupted
    after its cleanup ran: exit 130), or ``nothing-done`` (exit 130) for those not started."""

    def __init__(self, signum: int | None, results: list[BackupResult]) -> None:
        super().__init__(signum)
        self.results = results


def _not_started(domain: str) -> BackupResult:
    return BackupResult(domain=domain, state="nothing-done", exit_code=int(ExitCode.INTERRUPTED),
                        error="not started: the run was interrupted")


class _Forward:
    """The running workers' thread ids, and the first signal that arrived."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: set[int] = set()
        self.signum: int | None = None

    def handler(self, signum: int, frame: FrameType | None) -> None:
        with self.lock:
            if self.signum is not None:
                return  # cleanup is running: a second signal must not cut it short
            self.signum = signum
            for ident in self.running:
                forward(ident, signum)

    def stop(self, signum: int | None) -> None:
        """An interrupt ended a backup in its own thread (one domain at a time, where
        the backup's own handler raised it): start no further domain."""
        with self.lock:
            if self.signum is None:
                self.signum = signal.SIGINT if signum is None else signum

    @contextmanager
    def worker(self) -> Iterator[bool]:
        """Inside a worker: yields False when the run is already interrupted."""
        ident = threading.get_ident()
        with self.lock:
            if self.signum is not None:
                yield False
                return
            self.running.add(ident)
        try:
            yield True
        finally:
            with self.lock:
                self.running.discard(ident)


def _quiet_interrupts(hook: Any) -> Any:
    """``threading.excepthook`` that drops a forwarded :class:`Interrupted`: one that
    reaches a worker just after its backup returned (between tasks of the pool) has
    nothing left to clean up, and must not print a thread traceback on the user's
    terminal. Anything else goes to ``hook``."""
    def quiet(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is not None and issubclass(args.exc_type, Interrupted):
            return
        hook(args)
    return quiet


def backup_many(domains: list[str], uri: str | None, dest: Path, *, jobs: int = 1,
                **kw: Any) -> tuple[list[BackupResult], int]:
    """:func:`backup` for each domain, at most ``jobs`` at a time; the results in the
    order given and the aggregated exit code (see the module docstring for signals)."""
    from virt_qga.workflows.backup.run import backup

    forward = _Forward()

    threaded = jobs > 1 and len(domains) > 1 and threading.current_thread() is threading.main_thread()

    def one(domain: str) -> BackupResult:
        try:
            with forward.worker() as go:
                if not go:
                    return _not_started(domain)
                return backup(domain, uri, dest, **kw)
        except Interrupted as exc:  # backup() cleaned up before it let this through
            forward.stop(exc.signum)
            return BackupResult(domain=domain, exit_code=int(ExitCode.INTERRUPTED),
                                error=f"interrupted by {exc.signal_name}; cleanup ran")

    saved = {sig: signal.signal(sig, forward.handler) for sig in SIGNALS} if threaded else {}
    hook = threading.excepthook
    if threaded:
        threading.excepthook = _quiet_interrupts(hook)
    try:
        done = run_each(domains, one, jobs=jobs)
    finally:
        threading.excepthook = hook
        for sig, old in saved.items():
            signal.signal(sig, old)
    results = []
    for r in done:
        if r.result is not None:
            results.append(r.result)
        else:  # an exception backup() does not turn into a result (a bug): still one result
            error = r.error or {}
            results.append(BackupResult(domain=r.domain, error=str(error.get("message", "failed")),
                                        exit_code=r.exit_code))
    if forward.signum is not None:
        raise RunInterrupted(forward.signum, results)
    return results, aggregate_exit([r.exit_code for r in results])
