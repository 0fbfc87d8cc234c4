"""One workflow over many domains: bounded concurrency, a result per domain, one exit code.

:func:`run_each` calls ``fn(domain)`` for every domain with at most ``jobs`` calls in
flight, and returns one :class:`DomainResult` per domain, in the order given. A
domain's failure is captured in its result and never stops another domain: a
:class:`~virt_qga.errors.VirtQgaError` keeps its class, message and exit code; any
other exception becomes an internal error (exit 1). Only an interrupt (Ctrl-C,
SIGTERM) ends the run early; it propagates to the caller once the calls in flight
have been left to finish on their own (worker threads are daemons, each call is
bounded by its own deadline).

:func:`aggregate_exit` folds the per-domain exit codes into the one a script sees;
the read-only CLI commands over ``DOMAIN...``/``--all`` and ``backup`` use it.

Threads, not processes or asyncio: the work is waiting on libvirt or a socket, and
libvirt-python releases the GIL while it waits. ``concurrent.futures`` is not used
because it imports ``logging`` (~5 ms), which the read-only commands otherwise never
load (see docs/benchmarks.md, "Start-up").
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from virt_qga.errors import VirtQgaError
from virt_qga.exitcodes import ExitCode

__all__ = ["DEFAULT_JOBS", "MAX_JOBS", "DomainResult", "aggregate_exit", "run_each"]

#: Default number of domains worked on at once. libvirtd serves at most 5 calls at a
#: time from one client connection (``max_client_requests`` in libvirtd.conf), and
#: every domain shares the process's one connection per URI, so more would only queue.
DEFAULT_JOBS = 5

#: Upper bound for ``jobs`` (threads are cheap, but not free).
MAX_JOBS = 64

T = TypeVar("T")


@dataclass
class DomainResult(Generic[T]):
    """What one domain gave: ``result`` if ``ok``, else ``error`` (``to_dict`` of the
    exception) and its ``exit_code``."""

    domain: str
    ok: bool
    result: T | None = None
    error: dict[str, Any] | None = None
    exit_code: int = int(ExitCode.OK)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"domain": self.domain, "ok": self.ok}
        if self.ok:
            out["result"] = self.result
        else:
            out["error"] = self.error
        out["exit_code"] = self.exit_code
        return out


def _one(domain: str, fn: Callable[[str], T]) -> DomainResult[T]:
    try:
        return DomainResult(domain, True, result=fn(domain))
    except VirtQgaError as exc:
        if exc.domain is None:
            exc.domain = domain
        return DomainResult(domain, False, error=exc.to_dict(), exit_code=int(exc.exit_code))
    except Exception as exc:  # one domain's bug must not cost the others their answers
        msg = f"internal error: {type(exc).__name__}: {exc}".replace("\n", " ")
        return DomainResult(domain, False, error={"error": "InternalError", "message": msg,
                                                  "exit_code": int(ExitCode.FAILED), "domain": domain},
                            exit_code=int(ExitCode.FAILED))


def run_each(domains: Sequence[str], fn: Callable[[str], T], *,
             jobs: int = DEFAULT_JOBS) -> list[DomainResult[T]]:
    """``fn(domain)`` for each domain, at most ``jobs`` at a time; results in input order.

    ``fn`` must bound its own waits (every agent call has a deadline). With one domain
    or ``jobs == 1`` everything runs in the calling thread.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= MAX_JOBS:
        from virt_qga.errors import BadInputError

        raise BadInputError(f"jobs must be an integer in [1, {MAX_JOBS}], not {jobs!r}", field="jobs")
    names = list(domains)
    if jobs == 1 or len(names) <= 1:
        return [_one(d, fn) for d in names]
    results: list[DomainResult[T] | None] = [None] * len(names)
    todo = iter(enumerate(names))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                item = next(todo, None)
            if item is None:
                return
            i, name = item
            results[i] = _one(name, fn)

    threads = [threading.Thread(target=worker, name=f"fleet-{k}", daemon=True)
               for k in range(min(jobs, len(names)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r for r in results if r is not None]


def aggregate_exit(codes: Iterable[int]) -> int:
    """One exit code for a run over many domains, in the meanings of the exit-code table.

    Anything that needs a human wins: 8 (a guest may be frozen), then 9 (overlay left,
    views disagree). Otherwise all good -> 0, or 7 if any result is crash-consistent
    only; all failed alike -> that code (e.g. 6: no such domain, 3: no agent); all
    failed differently -> 1; a mix of success and failure -> 5 (partial).
    """
    codes = list(codes)
    if not codes:
        return int(ExitCode.OK)
    for urgent in (ExitCode.MAYBE_FROZEN, ExitCode.INCONSISTENT):
        if urgent in codes:
            return int(urgent)
    good = {int(ExitCode.OK), int(ExitCode.CRASH_CONSISTENT)}
    if all(c in good for c in codes):
        return max(codes)
    if any(c in good for c in codes):
        return int(ExitCode.PARTIAL)
    return codes[0] if len(set(codes)) == 1 else int(ExitCode.FAILED)
