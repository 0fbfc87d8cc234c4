"""Guest-side helpers of a copy: handles, file kind, SHA-256, mode."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from virt_qga.errors import (
    GuestError,
    OperationError,
    VirtQgaError,
)
from virt_qga.outcome import State
from virt_qga.workflows import exec as gexec

if TYPE_CHECKING:
    from virt_qga.agent import GuestAgent


log = logging.getLogger(__name__)


@contextlib.contextmanager
def guest_file(agent: GuestAgent, path: str, mode: str) -> Iterator[int]:
    """An open guest file handle, closed on every exit path (errors, Ctrl-C)."""
    handle = agent.file_open(path, mode=mode)
    try:
        yield handle
    except BaseException:
        try:
            agent.file_close(handle)
        except (VirtQgaError, KeyboardInterrupt) as exc:  # the first error matters more
            log.warning("could not close guest file handle %s of %s: %s", handle, path, exc)
        raise
    else:
        agent.file_close(handle)


def _sh(agent: GuestAgent, script: str, *args: str, timeout: float = 60.0) -> gexec.ExecResult:
    return gexec.run(agent, ["/bin/sh", "-c", script, "sh", *args], timeout=timeout)


def guest_path_kind(agent: GuestAgent, path: str) -> str:
    """"dir", "file", "other" or "missing" (needs guest-exec)."""
    res = _sh(agent, 'if [ -d "$1" ]; then echo dir; elif [ -f "$1" ]; then echo file; '
              'elif [ -e "$1" ] || [ -L "$1" ]; then echo other; else echo missing; fi', path)
    kind = res.stdout.decode("ascii", "replace").strip()
    if res.status != 0 or kind not in ("dir", "file", "other", "missing"):
        raise GuestError(f"cannot inspect {path} in the guest (status {res.status})",
                         command="guest-exec", domain=agent.name)
    return kind


def guest_sha256(agent: GuestAgent, path: str, timeout: float = 300.0) -> str | None:
    """sha256 of a guest file by ``sha256sum``; None when the guest has no sha256sum."""
    res = gexec.run(agent, ["sha256sum", path], timeout=timeout)
    if res.status == 127 or (res.status != 0 and b"not found" in res.stderr):
        return None
    if res.status != 0:
        raise GuestError(f"sha256sum {path} failed in the guest: "
                         f"{res.stderr.decode('utf-8', 'replace').strip()[:200]}",
                         command="guest-exec", domain=agent.name)
    digest = res.stdout.split(b" ", 1)[0].decode("ascii", "replace").lower()
    return digest if len(digest) == 64 else None


def guest_mode(agent: GuestAgent, path: str) -> int | None:
    res = gexec.run(agent, ["stat", "-c", "%a", path], timeout=30.0)
    if res.status != 0:
        return None
    try:
        return int(res.stdout.strip(), 8)
    except ValueError:
        return None


def guest_ok(agent: GuestAgent, argv: list[str]) -> None:
    gexec.run_checked(agent, argv, timeout=60.0)


def read_back_sha256(agent: GuestAgent, path: str, chunk: int) -> str:
    h = hashlib.sha256()
    with guest_file(agent, path, "rb") as handle:
        while True:
            reply = agent.file_read(handle, count=chunk)
            data = base64.b64decode(reply.get("buf-b64", ""))
            h.update(data)
            if reply.get("eof") or not data:
                return h.hexdigest()


def copy_failed(msg: str, agent: GuestAgent, **kw: Any) -> OperationError:
    kw.setdefault("state", State.FAILED)
    return OperationError(msg, domain=agent.name, **kw)
