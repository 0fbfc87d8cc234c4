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

Signal handlers can only be installed from the main thread. A guard in another thread
(a workflow run by a pool of worker threads over many domains) installs nothing, but
still records its thread and whether it holds: the caller's handler in the main thread
passes a signal on with :func:`forward`, which defers it while that thread's workflow
holds (the thaw, the cleanup), exactly as a handler would, and otherwise raises
:class:`~virt_qga.errors.Interrupted` inside that thread (CPython's
``PyThreadState_SetAsyncExc``: it lands at the thread's next Python instruction).
"""

from __future__ import annotations

import ctypes
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

from virt_qga.errors import Interrupted

__all__ = ["Interrupts", "forward"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: The guards active in this process, outermost first.
_active: list[Interrupts] = []
#: The guards of other threads (installing nothing), by thread, outermost first; and the
#: lock that orders :func:`forward` against :meth:`Interrupts.hold`.
_threads: dict[int, list[Interrupts]] = {}
_lock = threading.Lock()


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
        with _lock:
            self.holding = True

    def release(self) -> None:
        """Stop deferring; a signal that arrived meanwhile is raised now."""
        with _lock:
            self.holding = False
            signum, self.pending = self.pending, None
        if signum is not None:
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
        elif not self.active:
            with _lock:
                _threads.setdefault(threading.get_ident(), []).append(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self.active:
            self._exit_in_worker(exc_type)
            return
        if self in _active:
            _active.remove(self)
        self.restore()
        signum = self._hand_over(exc_type, _active)
        if signum is not None:
            raise Interrupted(signum)

    def _exit_in_worker(self, exc_type: type[BaseException] | None) -> None:
        """A worker thread's guard ends: a signal it deferred goes to the thread's outer
        guard (or is raised), as :meth:`__exit__` does for handlers."""
        ident = threading.get_ident()
        with _lock:
            guards = _threads.get(ident, [])
            if self in guards:
                guards.remove(self)
            if not guards:
                _threads.pop(ident, None)
            signum = self._hand_over(exc_type, guards)
        if signum is not None:
            raise Interrupted(signum)

    def _hand_over(self, exc_type: type[BaseException] | None, outers: list[Interrupts]) -> int | None:
        """This guard ends: the signal it deferred goes to the innermost of ``outers``
        (deferred there if that one holds) or is returned, to be raised now. Dropped when
        the block ended with an exception (it is already unwinding) or no guard is left."""
        pending, self.pending = self.pending, None
        self.holding = False
        if pending is None or exc_type is not None or not outers:
            return None
        outer = outers[-1]
        if outer.holding:
            outer.pending = outer.pending or pending
            return None
        return pending


def forward(ident: int, signum: int) -> None:
    """Pass signal ``signum``, received by the main thread, to the workflow running in
    thread ``ident``: deferred while one of its guards holds, else raised in it."""
    with _lock:
        holding = [g for g in _threads.get(ident, []) if g.holding]
        if holding:
            holding[-1].pending = holding[-1].pending or signum
            return
        exc = type("Interrupted", (Interrupted,), {"__init__": _init_with(signum)})
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc))


def _init_with(signum: int) -> Any:
    def init(self: Interrupted) -> None:
        Interrupted.__init__(self, signum)
    return init
