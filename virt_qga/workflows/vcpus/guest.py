"""The guest side: ``guest-set-vcpus`` with its partial-success reply and retries."""

from __future__ import annotations

from typing import Any

from virt_qga.errors import (
    GuestError,
    VirtQgaError,
    is_transient,
)
from virt_qga.retry import when
from virt_qga.workflows.vcpus.views import TRANSIENT_GUEST_TEXTS, AgentLike


class GuestVcpuRefused(VirtQgaError):
    """The guest would not change one vCPU; ``done`` lists the ones changed before it."""

    def __init__(self, message: str, *, done: list[int], failed: int, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.done = done
        self.failed = failed


def guest_error_is_transient(exc: BaseException) -> bool:
    """Agent timeouts/disconnects, and guest errors whose text says EBUSY/EAGAIN."""
    if is_transient(exc):
        return True
    if isinstance(exc, GuestError):
        low = exc.message.lower()
        return any(t in low for t in TRANSIENT_GUEST_TEXTS)
    return False


def set_guest_online(agent: AgentLike, ids: list[int], online: bool, *, attempts: int = 4,
                     seconds: float = 20.0) -> list[int]:
    """Online/offline ``ids`` in the guest; returns the ids it processed (all of them).

    ``guest-set-vcpus`` stops at the first entry it cannot apply and answers with the
    count processed so far; it raises only when the *first* entry fails. So the rest
    is re-sent until everything is processed or the guest names the failing entry.
    Transient failures are retried (bounded); others raise :class:`GuestVcpuRefused`.
    """
    done: list[int] = []
    remaining = list(ids)
    policy = when(guest_error_is_transient, attempts=attempts, seconds=seconds)
    while remaining:
        payload = [{"logical-id": i, "online": online} for i in remaining]
        try:
            count = int(policy(agent.set_vcpus, payload))
        except VirtQgaError as exc:
            verb = "online" if online else "offline"
            raise GuestVcpuRefused(f"guest refused to {verb} vCPU {remaining[0]}: {exc}",
                                   done=done, failed=remaining[0]) from exc
        if count <= 0 or count > len(remaining):
            raise GuestVcpuRefused(f"guest-set-vcpus answered {count} for {len(remaining)} entries",
                                   done=done, failed=remaining[0])
        done.extend(remaining[:count])
        remaining = remaining[count:]
    return done
