"""The result shape shared by workflows that change a running domain step by step.

:class:`ChangeResult` (vCPU and memory hot-plug extend it) records each step with its
duration and ends in a :class:`~virt_qga.outcome.State`; :func:`finish` returns a
``done`` result and raises :class:`~virt_qga.errors.OperationError` carrying the
result for every other state, whose exit code then follows from the one table in
:mod:`virt_qga.exitcodes`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from virt_qga.errors import OperationError
from virt_qga.outcome import State

__all__ = ["ChangeResult", "finish"]


@dataclass(kw_only=True)
class ChangeResult:
    """One change of a running domain: what was asked, each step, where it ended."""

    #: How messages name the change ("vCPU change", "memory change").
    what: ClassVar[str] = "change"

    domain: str
    action: str
    state: State = State.DONE
    steps: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    #: A command that repairs or finishes what a non-``done`` state left.
    hint: str | None = None

    def step(self, name: str, started: float, **info: Any) -> None:
        """Record step ``name`` that began at ``started`` (``time.monotonic()``)."""
        self.steps.append({"step": name, "seconds": round(time.monotonic() - started, 3), **info})

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


R = TypeVar("R", bound=ChangeResult)


def finish(result: R) -> R:
    """Return a ``done`` result, or raise OperationError carrying it."""
    if result.state == State.DONE:
        return result
    raise OperationError(result.message or f"{result.what} ended {result.state}", state=result.state,
                         undo=result.hint, result=result.to_dict(), domain=result.domain)
