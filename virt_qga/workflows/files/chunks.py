"""Chunk sizes of a file copy, temp names and file modes."""

from __future__ import annotations

import posixpath
import secrets
from collections.abc import Callable

from virt_qga.errors import BadInputError, option_ref
from virt_qga.workflows import exec as gexec

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
        raise BadInputError(f"{option_ref('mode')} {text!r} is not an octal mode like 644",
                            field="mode") from None
    if not 0 <= mode <= 0o7777:
        raise BadInputError(f"{option_ref('mode')} {text!r} is out of range", field="mode")
    return mode
