"""Nested signal guards in the main thread: where a deferred signal goes when a guard ends.

Real signals (SIGTERM sent to this process) through the real handlers; the worker-thread
side is in test_backup_cron_unit.py.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from virt_qga.errors import Interrupted
from virt_qga.workflows.signals import Interrupts


def _sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)  # the handler runs at the next bytecode; give it the chance


def test_deferred_by_the_inner_guard_it_stops_the_outer_workflow() -> None:
    reached_inner_end = False
    with pytest.raises(Interrupted) as caught, Interrupts():
        with Interrupts() as inner:
            inner.hold()
            _sigterm_self()                 # deferred: the inner cleanup runs on
            reached_inner_end = True
        pytest.fail("the outer workflow must stop where the inner guard ends")
    assert reached_inner_end and caught.value.signal_name == "SIGTERM"


def test_an_outer_guard_that_holds_gets_it_at_its_release() -> None:
    with Interrupts() as outer:
        outer.hold()
        with Interrupts() as inner:
            inner.hold()
            _sigterm_self()
        with pytest.raises(Interrupted):   # handed over, deferred, raised at release
            outer.release()


def test_dropped_when_the_block_already_fails_or_no_guard_is_left() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(ValueError), Interrupts() as g:  # the ValueError is not replaced
        g.hold()
        _sigterm_self()
        raise ValueError("cleanup failed")
    with Interrupts() as only:             # the last guard: nothing raised after its cleanup
        only.hold()
        _sigterm_self()
    assert signal.getsignal(signal.SIGTERM) == before   # and the old handler is back
