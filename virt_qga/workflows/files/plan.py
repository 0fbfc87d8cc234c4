"""What an idempotent copy would do, decided before anything is written.

The Ansible module ``virt_qga_copy`` (and anything else that wants "copy only when it
differs") asks :func:`plan_push` or :func:`plan_pull` for a :class:`CopyPlan`: the real
target path (a directory target gets the source's name), both checksums compared, the
current mode, and whether a copy is needed. Without guest-exec the guest side is read
through the agent's file calls instead (slower, no mode).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

from virt_qga.errors import BadInputError, GuestError
from virt_qga.workflows import exec as gexec
from virt_qga.workflows.files.chunks import CHUNK_CAP, chunk_size, guest_target
from virt_qga.workflows.files.guest import (
    guest_file,
    guest_mode,
    guest_path_kind,
    guest_sha256,
    read_back_sha256,
)

if TYPE_CHECKING:
    from virt_qga.agent import GuestAgent

__all__ = ["CopyPlan", "any_guest_kind", "any_guest_sha256", "fix_mode", "local_sha256",
           "plan_pull", "plan_push"]

#: Bytes read per call when hashing a local file.
LOCAL_READ_CHUNK = CHUNK_CAP


@dataclass(frozen=True)
class CopyPlan:
    """The decision for one copy. ``reason`` is ``missing``, ``identical`` or ``differs``."""

    direction: str              # push | pull
    source: str
    target: str
    checksum: str               # of the source
    needed: bool
    reason: str
    current_mode: int | None    # of an existing target, when known
    size: int | None = None     # of the source, when local


def local_sha256(path: str) -> str:
    """SHA-256 of a host file, read in bounded chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for buf in iter(lambda: fh.read(LOCAL_READ_CHUNK), b""):
            h.update(buf)
    return h.hexdigest()


def any_guest_sha256(agent: GuestAgent, path: str, has_exec: bool) -> str:
    """SHA-256 of a guest file: ``sha256sum`` in the guest, else read through the agent."""
    if has_exec:
        digest = guest_sha256(agent, path)
        if digest is not None:
            return digest
    return read_back_sha256(agent, path, chunk_size(agent.transport.max_reply_bytes))


def any_guest_kind(agent: GuestAgent, path: str, has_exec: bool) -> str:
    """``dir``, ``file``, ``other`` or ``missing``; without guest-exec, by trying to open it."""
    if has_exec:
        return guest_path_kind(agent, path)
    if path.endswith("/"):
        return "dir"
    try:
        with guest_file(agent, path, "rb"):
            return "file"
    except GuestError:
        return "missing"


def plan_push(agent: GuestAgent, src: str, dest: str, *, force: bool, has_exec: bool) -> CopyPlan:
    """Plan copying host file ``src`` to guest path ``dest`` (a file or a directory)."""
    if not os.path.isfile(src):
        raise BadInputError(f"{src} is not a file on the hypervisor", field="src")
    checksum, size = local_sha256(src), os.path.getsize(src)
    kind = any_guest_kind(agent, dest, has_exec)
    target = guest_target(dest, os.path.basename(src), kind == "dir")
    if target != dest:
        kind = any_guest_kind(agent, target, has_exec)
    if kind == "dir":
        raise BadInputError(f"{target} is a directory in the guest", field="dest")

    def plan(needed: bool, reason: str, mode: int | None) -> CopyPlan:
        return CopyPlan("push", src, target, checksum, needed, reason, mode, size)

    if kind == "missing":
        return plan(True, "missing", None)
    same = any_guest_sha256(agent, target, has_exec) == checksum
    current = guest_mode(agent, target) if has_exec else None
    return plan(False, "identical", current) if same else plan(force, "differs", current)


def plan_pull(agent: GuestAgent, src: str, dest: str, *, force: bool, has_exec: bool) -> CopyPlan:
    """Plan copying guest file ``src`` to host path ``dest`` (a file or a directory)."""
    kind = any_guest_kind(agent, src, has_exec)
    if kind == "missing":
        raise BadInputError(f"{src} does not exist in the guest", field="src")
    if kind == "dir":
        raise BadInputError(f"{src} is a directory in the guest", field="src")
    checksum = any_guest_sha256(agent, src, has_exec)
    target = dest
    if dest.endswith("/") or os.path.isdir(dest):
        target = os.path.join(dest, posixpath.basename(src.rstrip("/")))
    if os.path.isdir(target):
        raise BadInputError(f"{target} is a directory on the hypervisor", field="dest")
    if not os.path.lexists(target):
        return CopyPlan("pull", src, target, checksum, True, "missing", None)
    current = stat.S_IMODE(os.stat(target).st_mode)
    if local_sha256(target) == checksum:
        return CopyPlan("pull", src, target, checksum, False, "identical", current)
    return CopyPlan("pull", src, target, checksum, force, "differs", current)


def fix_mode(agent: GuestAgent, plan: CopyPlan, mode: int) -> None:
    """Set the mode of the plan's existing target (guest: chmod through guest-exec)."""
    if plan.direction == "push":
        gexec.run_checked(agent, ["chmod", f"{mode:o}", plan.target], timeout=60.0)
    else:
        os.chmod(plan.target, mode)
