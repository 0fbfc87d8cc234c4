"""Pull a guest file to the host (or stdout): temp file, verify, mode, rename."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import posixpath
import tempfile
import time
from typing import IO, TYPE_CHECKING

from virt_qga.errors import (
    BadInputError,
    GuestError,
    OperationError,
)
from virt_qga.outcome import State
from virt_qga.workflows import exec as gexec

if TYPE_CHECKING:
    from virt_qga.agent import GuestAgent
from virt_qga.workflows.files.chunks import Progress, read_chunk_size
from virt_qga.workflows.files.guest import copy_failed, guest_file, guest_mode, guest_path_kind
from virt_qga.workflows.files.push import verify_copy
from virt_qga.workflows.files.result import CopyResult


def pull(agent: GuestAgent, guest_path: str, dest: str | IO[bytes], *, force: bool = False,
         mode: int | None = None, verify: bool = True, progress: Progress | None = None,
         chunk: int | None = None) -> CopyResult:
    """Copy a guest file to a local path (written atomically) or a binary stream."""
    t0 = time.monotonic()
    has_exec = gexec.exec_available(agent)
    chunk = chunk or read_chunk_size(agent.transport.max_reply_bytes, agent.transport.kind)
    local_target: str | None = None
    if isinstance(dest, str):
        local_target = dest
        if dest.endswith("/") or os.path.isdir(dest):
            local_target = os.path.join(dest, posixpath.basename(guest_path.rstrip("/")) or "file")
        if os.path.isdir(local_target):
            raise BadInputError(f"{local_target} is a directory", field="DEST")
        if os.path.lexists(local_target) and not force:
            raise OperationError(f"{local_target} exists; pass --force to overwrite it",
                                 state=State.UNCHANGED)
        parent = os.path.dirname(os.path.abspath(local_target))
        if not os.path.isdir(parent):
            raise BadInputError(f"local directory {parent} does not exist", field="DEST")
    if has_exec:
        kind = guest_path_kind(agent, guest_path)
        if kind == "missing":
            raise copy_failed(f"{guest_path} does not exist in the guest", agent, state=State.UNCHANGED)
        if kind == "dir":
            raise copy_failed(f"{guest_path} is a directory in the guest (cp copies one file)", agent,
                        state=State.UNCHANGED)
    result = CopyResult("pull", guest_path=guest_path, local_path=local_target or "-", chunk_size=chunk,
                        transport=agent.transport.kind, atomic=local_target is not None)
    tmp_path: str | None = None
    try:
        with contextlib.ExitStack() as stack:
            out: IO[bytes]
            if local_target is not None:
                fd, tmp_path = tempfile.mkstemp(prefix=f".{os.path.basename(local_target)}.vqga-",
                                                suffix=".tmp", dir=os.path.dirname(
                                                    os.path.abspath(local_target)))
                out = stack.enter_context(os.fdopen(fd, "wb"))
            else:
                assert not isinstance(dest, str)
                out = dest
            try:
                handle = stack.enter_context(guest_file(agent, guest_path, "rb"))
            except GuestError as exc:
                raise copy_failed(f"cannot open {guest_path} in the guest: {exc.message}", agent,
                            state=State.UNCHANGED) from exc
            h = hashlib.sha256()
            while True:
                reply = agent.file_read(handle, count=chunk)
                data = base64.b64decode(reply.get("buf-b64", ""), validate=True)
                if len(data) != int(reply.get("count", len(data))):
                    raise copy_failed("guest-file-read: count does not match the data", agent)
                if data:
                    h.update(data)
                    out.write(data)
                    result.bytes += len(data)
                    result.chunks += 1
                    if progress:
                        progress(result.bytes)
                if reply.get("eof") or not data:
                    break
                del data
            out.flush()
            if local_target is not None:
                os.fsync(out.fileno())
        result.sha256 = h.hexdigest()
        if verify:
            verify_copy(agent, result, guest_path, has_exec, chunk)
        want = mode if mode is not None else (guest_mode(agent, guest_path) if has_exec else None)
        if want is not None:
            result.mode = f"{want:04o}"
        if tmp_path is not None and local_target is not None:
            os.chmod(tmp_path, want if want is not None else 0o666 & ~_umask())
            os.replace(tmp_path, local_target)
            tmp_path = None
    finally:
        if tmp_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_path)
    result.duration = time.monotonic() - t0
    return result


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
