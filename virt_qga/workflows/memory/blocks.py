"""Guest memory blocks: ``guest-set-memory-blocks`` with its per-block outcomes and retries."""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Any

from virt_qga.errors import VirtQgaError, is_transient
from virt_qga.retry import when
from virt_qga.workflows.memory.view import RETRYABLE_ERRNOS, AgentLike


def classify_block_response(resp: dict[str, Any]) -> str:
    """One per-block reply -> ``ok`` | ``busy`` (retry) | ``gone`` (verify) | ``fatal``."""
    kind = resp.get("response")
    if kind == "success":
        return "ok"
    if kind == "not-found":
        return "gone"
    if kind == "operation-failed" and resp.get("error-code") in RETRYABLE_ERRNOS:
        return "busy"
    return "fatal"


def describe_response(resp: dict[str, Any]) -> str:
    code = resp.get("error-code")
    if code is None:
        return str(resp.get("response"))
    name = errno.errorcode.get(int(code), str(code))
    return f"{resp.get('response')} ({name})"


class BlocksBusy(VirtQgaError):
    """Some blocks answered EBUSY/EAGAIN this pass (retryable)."""


class BlocksRefused(VirtQgaError):
    """A block answered with a non-retryable failure."""


@dataclass
class BlockOutcome:
    done: list[int] = field(default_factory=list)        # changed by us, confirmed
    gone: list[int] = field(default_factory=list)        # not-found, verified absent
    failed: dict[int, str] = field(default_factory=dict)  # id -> reason
    passes: int = 0
    busy_seen: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"done": self.done, "gone": self.gone, "failed": {str(k): v for k, v in self.failed.items()},
                "passes": self.passes, "busy_seen": self.busy_seen}


def set_blocks(agent: AgentLike, ids: list[int], online: bool, *, attempts: int = 6,
               seconds: float = 30.0, first_wait: float = 0.5) -> BlockOutcome:
    """Set ``ids`` online/offline in passes; see the module docstring for the policy."""
    out = BlockOutcome()
    pending = list(ids)

    def one_pass() -> None:
        nonlocal pending
        out.passes += 1
        replies = agent.set_memory_blocks([{"phys-index": i, "online": online} for i in pending])
        by_id = {int(r["phys-index"]): dict(r) for r in replies}
        busy: list[int] = []
        for i in pending:
            r = by_id.get(i, {"response": "operation-failed"})
            kind = classify_block_response(r)
            if kind == "ok":
                out.done.append(i)
            elif kind == "gone":
                out.gone.append(i)
            elif kind == "busy":
                busy.append(i)
                out.busy_seen += 1
            else:
                out.failed[i] = describe_response(r)
        pending = busy
        if out.failed:
            raise BlocksRefused("; ".join(f"block {k}: {v}" for k, v in out.failed.items()))
        if busy:
            raise BlocksBusy(f"block(s) {busy} busy")

    def retryable(exc: BaseException) -> bool:
        return isinstance(exc, BlocksBusy) or is_transient(exc)

    try:
        when(retryable, attempts=attempts, seconds=seconds, first_wait=first_wait)(one_pass)
    except BlocksBusy:
        for i in pending:
            out.failed[i] = "operation-failed (EBUSY) after retries"
    except BlocksRefused:
        pass
    except VirtQgaError as exc:
        for i in pending:
            out.failed.setdefault(i, str(exc))
    if out.gone:  # "not-found" must really mean gone: check the guest's list
        present = {int(b["phys-index"]): bool(b.get("online")) for b in agent.get_memory_blocks()}
        for i in list(out.gone):
            if i in present and present[i] != online:
                out.gone.remove(i)
                out.failed[i] = "not-found, but the guest still lists it"
    return out
