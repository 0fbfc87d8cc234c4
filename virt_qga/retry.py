"""Retry policies, declared once per intent (tenacity). Only transient errors retry.

Every policy is bounded twice, in attempts and in seconds, so no retry loop outlives
the caller's deadline. Use them as decorators or via ``policy(...)(fn)()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from virt_qga.errors import is_transient

T = TypeVar("T")


def transient(attempts: int = 5, seconds: float = 30.0, first_wait: float = 0.2,
              max_wait: float = 3.0) -> Retrying:
    """Retry agent calls that failed for a transient reason (agent not connected yet,
    timeout). Used for waiting on an agent that is starting or briefly busy."""
    return Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(attempts) | stop_after_delay(seconds),
        wait=wait_exponential(multiplier=first_wait, max=max_wait),
        reraise=True,
    )


def when(predicate: Callable[[BaseException], bool], attempts: int, seconds: float,
         first_wait: float = 0.2, max_wait: float = 2.0) -> Retrying:
    """Retry while ``predicate(exc)`` holds (e.g. a memory block answering EBUSY)."""
    return Retrying(
        retry=retry_if_exception(predicate),
        stop=stop_after_attempt(attempts) | stop_after_delay(seconds),
        wait=wait_exponential(multiplier=first_wait, max=max_wait),
        reraise=True,
    )


def call_with(policy: Retrying, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` under ``policy``."""
    return policy(fn, *args, **kwargs)
