"""Push a host file (or stdin) into the guest: temp file, verify, mode, rename."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import posixpath
import stat
import time
from typing import IO, TYPE_CHECKING

from virt_qga.errors import (
    BadInputError,
    GuestError,
    VirtQgaError,
)
from virt_qga.outcome import State
from virt_qga.workflows import exec as gexec

if TYPE_CHECKING:
    from virt_qga.agent import GuestAgent
from virt_qga.workflows.files.chunks import (
    DEFAULT_NEW_MODE,
    Progress,
    guest_target,
    read_chunk_size,
    temp_name,
    write_chunk_size,
)
from virt_qga.workflows.files.guest import (
    copy_failed,
    guest_file,
    guest_mode,
    guest_ok,
    guest_path_kind,
    guest_sha256,
    read_back_sha256,
)
from virt_qga.workflows.files.result import CopyResult

log = logging.getLogger(__name__)


def push(agent: GuestAgent, source: str | IO[bytes], guest_path: str, *, force: bool = False,
         mode: int | None = None, verify: bool = True, in_place: bool = False,
         progress: Progress | None = None, chunk: int | None = None,
         source_name: str | None = None) -> CopyResult:
    """Copy a local file (path, or an open binary stream such as stdin) into the guest."""
    t0 = time.monotonic()
    has_exec = gexec.exec_available(agent)
    chunk = chunk or write_chunk_size(agent.transport.kind, agent.transport.max_request_bytes)
    src_name = source_name or (os.path.basename(source) if isinstance(source, str) else "-")
    local_mode: int | None = None
    if isinstance(source, str):
        try:
            st = os.stat(source)
        except OSError as exc:
            raise BadInputError(f"cannot read {source}: {exc.strerror}", field="SOURCE") from exc
        if stat.S_ISDIR(st.st_mode):
            raise BadInputError(f"{source} is a directory (cp copies one file)", field="SOURCE")
        local_mode = stat.S_IMODE(st.st_mode)
    want_mode = mode if mode is not None else local_mode

    if not has_exec and not in_place:
        raise copy_failed("guest-exec is not available in this agent, so the copy cannot be written "
                    "to a temp file and renamed atomically; pass --in-place to write the target "
                    "directly (not atomic, verified by read-back)", agent, state=State.UNCHANGED)

    # Where exactly, and may we?
    target = guest_path
    if has_exec:
        kind = guest_path_kind(agent, guest_path)
        target = guest_target(guest_path, src_name, kind == "dir")
        if target != guest_path:
            kind = guest_path_kind(agent, target)
        parent = posixpath.dirname(target) or "/"
        if kind == "missing" and guest_path_kind(agent, parent) != "dir":
            raise copy_failed(f"guest directory {parent} does not exist", agent, state=State.UNCHANGED)
        if kind == "dir":
            raise copy_failed(f"{target} is a directory in the guest", agent, state=State.UNCHANGED)
        if kind in ("file", "other") and not force:
            raise copy_failed(f"{target} exists in the guest; pass --force to overwrite it", agent,
                        state=State.UNCHANGED)
        if want_mode is None:
            # stdin has no mode: keep the one of the file we replace, else 0644. Never
            # qemu-ga's default for new files, which is 0666 (world-writable).
            existing = guest_mode(agent, target) if kind == "file" else None
            want_mode = existing if existing is not None else DEFAULT_NEW_MODE
    else:
        target = guest_target(guest_path, src_name, False)
        if not force and _guest_exists_no_exec(agent, target):
            raise copy_failed(f"{target} exists in the guest; pass --force to overwrite it", agent,
                        state=State.UNCHANGED)

    write_path = target if in_place and not has_exec else temp_name(target)
    result = CopyResult("push", guest_path=target, local_path=src_name if not isinstance(source, str)
                        else source, chunk_size=chunk, transport=agent.transport.kind,
                        atomic=write_path != target)
    created = False
    try:
        fh: IO[bytes]
        with contextlib.ExitStack() as stack:
            if isinstance(source, str):
                fh = stack.enter_context(open(source, "rb"))
            else:
                fh = source
            h = hashlib.sha256()
            try:
                handle_cm = guest_file(agent, write_path, "wb")
                handle = stack.enter_context(handle_cm)
            except GuestError as exc:
                raise copy_failed(f"cannot create {write_path} in the guest: {exc.message}", agent,
                            state=State.UNCHANGED) from exc
            created = True
            while True:
                buf = fh.read(chunk)
                if not buf:
                    break
                h.update(buf)
                reply = agent.file_write(handle, base64.b64encode(buf).decode("ascii"))
                if int(reply.get("count", -1)) != len(buf):
                    raise copy_failed(f"short write to {write_path}: {reply.get('count')} of "
                                      f"{len(buf)} bytes", agent)
                result.bytes += len(buf)
                result.chunks += 1
                if progress:
                    progress(result.bytes)
                del buf
            agent.file_flush(handle)
        result.sha256 = h.hexdigest()

        if verify:
            verify_copy(agent, result, write_path, has_exec, chunk)
        if want_mode is not None and has_exec:
            guest_ok(agent, ["chmod", f"{want_mode:o}", write_path])
        if want_mode is not None:
            result.mode = f"{want_mode:04o}"
        elif has_exec:
            gm = guest_mode(agent, write_path)
            result.mode = f"{gm:04o}" if gm is not None else None
        if write_path != target:
            guest_ok(agent, ["mv", "-f", write_path, target])
            created = False
    except BaseException:
        if created and write_path != target and has_exec:
            _remove_quietly(agent, write_path)
        raise
    if not result.atomic:
        result.warnings.append("written in place (guest-exec unavailable): not atomic")
    result.duration = time.monotonic() - t0
    return result


def verify_copy(agent: GuestAgent, result: CopyResult, path: str, has_exec: bool, chunk: int) -> None:
    digest = guest_sha256(agent, path) if has_exec else None
    method = "sha256sum"
    if digest is None:
        digest = read_back_sha256(agent, path, read_chunk_size(agent.transport.max_reply_bytes,
                                                            agent.transport.kind))
        method = "read-back"
    if digest != result.sha256:
        raise copy_failed(f"checksum mismatch for {path}: local {result.sha256}, guest {digest} ({method})",
                    agent, state=State.UNCHANGED)
    result.verified, result.verify_method = True, method


def _guest_exists_no_exec(agent: GuestAgent, path: str) -> bool:
    try:
        with guest_file(agent, path, "rb"):
            return True
    except GuestError:
        return False


def _remove_quietly(agent: GuestAgent, path: str) -> None:
    try:
        gexec.run(agent, ["rm", "-f", path], timeout=30.0)
    except (VirtQgaError, KeyboardInterrupt) as exc:
        log.warning("could not remove the temp file %s in the guest: %s", path, exc)
