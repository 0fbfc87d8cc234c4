"""SIGINT and SIGTERM during a workflow: an exception in the main flow, so cleanup runs.

A backup started by cron is stopped with SIGTERM (systemd's or cron's timeout), a
snapshot in a terminal with Ctrl-C. Either way the ``finally`` that thaws the guest or
merges the overlays back must run, which a process killed by the default SIGTERM
action never does. :class:`Interrupts` turns both signals into
:class:`~virt_qga.errors.Interrupted` (a ``KeyboardInterrupt``) while a workflow runs;
:meth:`Interrupts.hold` defers them while cleanup itself runs (a second Ctrl-C must
not abort the thaw), and the deferred signal is re-raised by :meth:`Interrupts.release`.

Guards nest (a backup runs a snapshot): a signal the inner guard deferred while its
cleanup ran is handed to the outer one when the inner block ends, so the outer
workflow still stops (and cleans up in its turn); with no outer guard it is dropped,
because the inner workflow has finished what it was doing.

Signal handlers can only be installed from the main thread; elsewhere (a workflow run
by a thread pool over many domains) the guard does nothing and the caller's own
handling applies.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

from virt_qga.errors import Interrupted

__all__ = ["Interrupts"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: The guards active in this process, outermost first.
_active: list[Interrupts] = []


class Interrupts:
    """Context manager (re-entrant in nesting order) for SIGINT/SIGTERM as exceptions."""

    def __init__(self) -> None:
        self.saved: dict[int, Any] = {}
        self.pending: int | None = None
        self.holding = False
        self.active = threading.current_thread() is threading.main_thread()

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.holding:
            self.pending = self.pending or signum
            return
        raise Interrupted(signum)

    def install(self) -> None:
        if not self.active or self.saved:
            return
        for sig in SIGNALS:
            self.saved[sig] = signal.signal(sig, self._handler)

    def hold(self) -> None:
        """Defer signals from now on (cleanup is running)."""
        self.holding = True

    def release(self) -> None:
        """Stop deferring; a signal that arrived meanwhile is raised now."""
        self.holding = False
        if self.pending is not None:
            signum, self.pending = self.pending, None
            raise Interrupted(signum)

    def restore(self) -> None:
        """Put the previous handlers back (a deferred signal is dropped: cleanup ran)."""
        for sig, old in self.saved.items():
            signal.signal(sig, old)
        self.saved.clear()

    def __enter__(self) -> Interrupts:
        self.install()
        if self.saved:
            _active.append(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self in _active:
            _active.remove(self)
        pending, self.pending = self.pending, None
        self.holding = False
        self.restore()
        if pending is None or exc_type is not None or not _active:
            return
        outer = _active[-1]
        if outer.holding:
            outer.pending = outer.pending or pending
            return
        raise Interrupted(pending)
