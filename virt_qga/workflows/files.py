"""Copy files into and out of a guest with guest-file-open/read/write/close.

Design (details and measurements in docs/guest-ops.md):

* **Chunks sized to the transport.** Data travels base64-encoded inside one JSON
  message per chunk, so a chunk's raw size is ~3/4 of what the transport can carry
  (``max_request_bytes`` for writes, ``max_reply_bytes`` for reads), capped by
  :data:`CHUNK_CAP` and by qemu-ga's 48 MB ``guest-file-read`` cap. Over libvirt,
  reads use :data:`LIBVIRT_READ_CAP` (512 KiB) and writes 128 KiB (libvirt 9.0
  corrupts agent requests above ~200 KB). The rate is bound by the agent's per-byte
  work (base64 and its character-by-character JSON lexer), not by round trips, so
  bigger chunks buy little: ``bench/file_copy.py``'s chunk sweep measures it.
* **Bounded memory.** One chunk is in memory at a time (plus its base64 and JSON
  copies), whatever the file size.
* **Handles are always closed**, on error and on Ctrl-C (``try/finally``): qemu-ga
  keeps a small table of open handles, and a leaked one stays until the agent restarts.
* **Atomic on the target.** A push writes ``.NAME.vqga-XXXXXXXX.tmp`` in the target's
  directory, verifies it, sets its mode, then renames it over the target with
  ``guest-exec mv -f``; on failure the temp file is removed. A pull does the same on
  the host (``os.replace``). Without guest-exec there is no rename: the push is refused
  unless ``in_place=True`` (then the target itself is written, not atomic).
* **Verified.** SHA-256 computed while streaming is compared with ``sha256sum`` run in
  the guest, or, where guest-exec or sha256sum is missing, with a read-back of the file.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import posixpath
import secrets
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from virt_qga.errors import (
    BadInputError,
    GuestError,
    OperationError,
    VirtQgaError,
)
from virt_qga.exitcodes import ExitCode
from virt_qga.workflows import exec as gexec

if TYPE_CHECKING:
    from virt_qga.agent import GuestAgent

log = logging.getLogger(__name__)

#: qemu-ga refuses guest-file-read counts above 48 MB (GUEST_FILE_READ_COUNT_MAX).
AGENT_READ_MAX = 48 * 1024 * 1024
#: Largest chunk we use on any transport. Measured (bench/file_copy.py, chunk sweep):
#: past 256 KiB-1 MiB the rate is flat while memory keeps growing.
CHUNK_CAP = 1024 * 1024
#: Read chunk over libvirt: its reply path (JSON parse of the agent's reply, then the
#: remote RPC) gets slower per byte with multi-MiB strings; 256-768 KiB measured best
#: (11.6-11.9 MB/s against 9.5 MB/s at 3 MiB, qemu-ga 7.2 under TCG).
LIBVIRT_READ_CAP = 512 * 1024
#: JSON envelope around the base64 data in one file-read reply / file-write request.
MESSAGE_OVERHEAD = 1024
#: Mode of a file pushed from stdin (no source mode) that replaces nothing.
DEFAULT_NEW_MODE = 0o644
#: Chunks are a multiple of this.
CHUNK_ALIGN = 64 * 1024

Progress = Callable[[int], None]


# --------------------------------------------------------------------- sizing, parsing

def chunk_size(max_message_bytes: int, cap: int = CHUNK_CAP) -> int:
    """Raw bytes per chunk so that the base64 + envelope fits ``max_message_bytes``."""
    fit = gexec.raw_len_for_b64(max_message_bytes - MESSAGE_OVERHEAD)
    size = min(fit, cap, AGENT_READ_MAX)
    if size >= CHUNK_ALIGN:
        size -= size % CHUNK_ALIGN
    if size <= 0:
        raise BadInputError(f"a message of {max_message_bytes} bytes cannot carry file data")
    return size


def write_chunk_size(transport_kind: str, max_request_bytes: int) -> int:
    """Chunk for guest-file-write: the request cap we trust (128 KiB raw over libvirt 9.0,
    see :data:`virt_qga.workflows.exec.LIBVIRT_SAFE_REQUEST`; :data:`CHUNK_CAP` otherwise)."""
    return chunk_size(gexec.effective_request_cap(transport_kind, max_request_bytes))


def read_chunk_size(max_reply_bytes: int, transport_kind: str = "socket") -> int:
    """Chunk for guest-file-read: what the reply cap allows, at most
    :data:`LIBVIRT_READ_CAP` over libvirt and :data:`CHUNK_CAP` otherwise."""
    cap = LIBVIRT_READ_CAP if transport_kind == "libvirt" else CHUNK_CAP
    return chunk_size(max_reply_bytes, cap)


@dataclass(frozen=True)
class Location:
    """One side of a copy: local (``domain`` None) or in a guest."""

    path: str
    domain: str | None = None

    @property
    def remote(self) -> bool:
        return self.domain is not None

    @property
    def stdio(self) -> bool:
        return self.domain is None and self.path == "-"


def parse_location(arg: str) -> Location:
    """Parse a cp operand.

    * ``-``: stdin/stdout.
    * ``DOMAIN:PATH``: in a guest. DOMAIN ends at the first ``:``. With ``--socket``,
      DOMAIN is only a label (any word, e.g. ``vm:/tmp/x``).
    * ``unix:SOCKET:PATH``: in the guest behind the agent socket SOCKET (a socket path
      containing ``:`` needs ``--socket`` instead).
    * anything else is local. As with scp, a ``:`` after a ``/`` does not count, so
      ``./a:b`` and ``/x/a:b`` are local files.
    """
    if not arg:
        raise BadInputError("empty path", field="PATH")
    if arg == "-":
        return Location("-")
    colon = arg.find(":")
    slash = arg.find("/")
    if colon <= 0 or (0 <= slash < colon):
        return Location(arg)
    if arg.startswith("unix:"):
        rest = arg[len("unix:"):]
        sock, sep, path = rest.partition(":")
        if not sep or not sock:
            raise BadInputError(f"{arg!r}: expected unix:SOCKET:PATH", field="PATH")
        domain = f"unix:{sock}"
    else:
        domain, _, path = arg.partition(":")
    if not path:
        raise BadInputError(f"{arg!r}: missing the guest path after ':'", field="PATH")
    return Location(path, domain)


def guest_target(path: str, source_name: str, is_dir: bool) -> str:
    """The guest file a push writes: ``path``, or ``path/source_name`` for a directory."""
    if path.endswith("/") or is_dir:
        if not source_name or source_name == "-":
            raise BadInputError("copying stdin needs a guest file name, not a directory", field="PATH")
        return posixpath.join(path, source_name)
    return path


def temp_name(target: str, sep: str = "/") -> str:
    """A sibling of ``target`` used while writing: ``DIR/.NAME.vqga-XXXXXXXX.tmp``."""
    head, _, tail = target.rpartition(sep)
    return f"{head}{sep}.{tail}.vqga-{secrets.token_hex(4)}.tmp" if head or target.startswith(sep) \
        else f".{tail}.vqga-{secrets.token_hex(4)}.tmp"


def parse_mode(text: str | None) -> int | None:
    """``--mode`` as octal (``644``, ``0o600``)."""
    if text is None:
        return None
    try:
        mode = int(text.removeprefix("0o"), 8)
    except ValueError:
        raise BadInputError(f"--mode {text!r} is not an octal mode like 644", field="--mode") from None
    if not 0 <= mode <= 0o7777:
        raise BadInputError(f"--mode {text!r} is out of range", field="--mode")
    return mode


# --------------------------------------------------------------------- results

@dataclass
class CopyResult:
    direction: str            # "push" (into the guest) or "pull"
    guest_path: str
    local_path: str
    bytes: int = 0
    sha256: str = ""
    verified: bool = False
    verify_method: str = "none"   # "sha256sum", "read-back" or "none"
    mode: str | None = None
    atomic: bool = True
    duration: float = 0.0
    chunk_size: int = 0
    chunks: int = 0
    transport: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.duration if self.duration > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "direction": self.direction, "guest_path": self.guest_path, "local_path": self.local_path,
            "bytes": self.bytes, "sha256": self.sha256, "verified": self.verified,
            "verify_method": self.verify_method, "mode": self.mode, "atomic": self.atomic,
            "duration": round(self.duration, 6), "mb_per_s": round(self.mb_per_s, 2),
            "chunk_size": self.chunk_size, "chunks": self.chunks, "transport": self.transport,
            "warnings": list(self.warnings),
        }


# --------------------------------------------------------------------- guest helpers

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


def _guest_ok(agent: GuestAgent, argv: list[str]) -> None:
    gexec.run_checked(agent, argv, timeout=60.0)


def _read_back(agent: GuestAgent, path: str, chunk: int) -> str:
    h = hashlib.sha256()
    with guest_file(agent, path, "rb") as handle:
        while True:
            reply = agent.file_read(handle, count=chunk)
            data = base64.b64decode(reply.get("buf-b64", ""))
            h.update(data)
            if reply.get("eof") or not data:
                return h.hexdigest()


def _fail(msg: str, agent: GuestAgent, **kw: Any) -> OperationError:
    return OperationError(msg, exit_code=ExitCode.FAILED, domain=agent.name, **kw)


# --------------------------------------------------------------------- push

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
        raise _fail("guest-exec is not available in this agent, so the copy cannot be written "
                    "to a temp file and renamed atomically; pass --in-place to write the target "
                    "directly (not atomic, verified by read-back)", agent, state="unchanged")

    # Where exactly, and may we?
    target = guest_path
    if has_exec:
        kind = guest_path_kind(agent, guest_path)
        target = guest_target(guest_path, src_name, kind == "dir")
        if target != guest_path:
            kind = guest_path_kind(agent, target)
        parent = posixpath.dirname(target) or "/"
        if kind == "missing" and guest_path_kind(agent, parent) != "dir":
            raise _fail(f"guest directory {parent} does not exist", agent, state="unchanged")
        if kind == "dir":
            raise _fail(f"{target} is a directory in the guest", agent, state="unchanged")
        if kind in ("file", "other") and not force:
            raise _fail(f"{target} exists in the guest; pass --force to overwrite it", agent,
                        state="unchanged")
        if want_mode is None:
            # stdin has no mode: keep the one of the file we replace, else 0644. Never
            # qemu-ga's default for new files, which is 0666 (world-writable).
            existing = guest_mode(agent, target) if kind == "file" else None
            want_mode = existing if existing is not None else DEFAULT_NEW_MODE
    else:
        target = guest_target(guest_path, src_name, False)
        if not force and _guest_exists_no_exec(agent, target):
            raise _fail(f"{target} exists in the guest; pass --force to overwrite it", agent,
                        state="unchanged")

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
                raise _fail(f"cannot create {write_path} in the guest: {exc.message}", agent,
                            state="unchanged") from exc
            created = True
            while True:
                buf = fh.read(chunk)
                if not buf:
                    break
                h.update(buf)
                reply = agent.file_write(handle, base64.b64encode(buf).decode("ascii"))
                if int(reply.get("count", -1)) != len(buf):
                    raise _fail(f"short write to {write_path}: {reply.get('count')} of {len(buf)} bytes",
                                agent)
                result.bytes += len(buf)
                result.chunks += 1
                if progress:
                    progress(result.bytes)
                del buf
            agent.file_flush(handle)
        result.sha256 = h.hexdigest()

        if verify:
            _verify(agent, result, write_path, has_exec, chunk)
        if want_mode is not None and has_exec:
            _guest_ok(agent, ["chmod", f"{want_mode:o}", write_path])
        if want_mode is not None:
            result.mode = f"{want_mode:04o}"
        elif has_exec:
            gm = guest_mode(agent, write_path)
            result.mode = f"{gm:04o}" if gm is not None else None
        if write_path != target:
            _guest_ok(agent, ["mv", "-f", write_path, target])
            created = False
    except BaseException:
        if created and write_path != target and has_exec:
            _remove_quietly(agent, write_path)
        raise
    if not result.atomic:
        result.warnings.append("written in place (guest-exec unavailable): not atomic")
    result.duration = time.monotonic() - t0
    return result


def _verify(agent: GuestAgent, result: CopyResult, path: str, has_exec: bool, chunk: int) -> None:
    digest = guest_sha256(agent, path) if has_exec else None
    method = "sha256sum"
    if digest is None:
        digest = _read_back(agent, path, read_chunk_size(agent.transport.max_reply_bytes,
                                                            agent.transport.kind))
        method = "read-back"
    if digest != result.sha256:
        raise _fail(f"checksum mismatch for {path}: local {result.sha256}, guest {digest} ({method})",
                    agent, state="unchanged")
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


# --------------------------------------------------------------------- pull

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
                                 state="unchanged")
        parent = os.path.dirname(os.path.abspath(local_target))
        if not os.path.isdir(parent):
            raise BadInputError(f"local directory {parent} does not exist", field="DEST")
    if has_exec:
        kind = guest_path_kind(agent, guest_path)
        if kind == "missing":
            raise _fail(f"{guest_path} does not exist in the guest", agent, state="unchanged")
        if kind == "dir":
            raise _fail(f"{guest_path} is a directory in the guest (cp copies one file)", agent,
                        state="unchanged")
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
                raise _fail(f"cannot open {guest_path} in the guest: {exc.message}", agent,
                            state="unchanged") from exc
            h = hashlib.sha256()
            while True:
                reply = agent.file_read(handle, count=chunk)
                data = base64.b64decode(reply.get("buf-b64", ""), validate=True)
                if len(data) != int(reply.get("count", len(data))):
                    raise _fail("guest-file-read: count does not match the data", agent)
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
            _verify(agent, result, guest_path, has_exec, chunk)
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


__all__ = [
    "CHUNK_CAP",
    "LIBVIRT_READ_CAP",
    "CopyResult",
    "Location",
    "chunk_size",
    "guest_file",
    "guest_target",
    "parse_location",
    "parse_mode",
    "pull",
    "push",
    "read_chunk_size",
    "temp_name",
    "write_chunk_size",
]
