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

The package: :mod:`.chunks` (chunk sizes, temp names, modes), :mod:`.result`,
:mod:`.guest` (guest-side helpers), :mod:`.push`, :mod:`.pull` and :mod:`.plan` (what an
idempotent copy would do, for the Ansible module).
"""

from __future__ import annotations

from virt_qga.workflows.files.chunks import (
    AGENT_READ_MAX,
    CHUNK_ALIGN,
    CHUNK_CAP,
    DEFAULT_NEW_MODE,
    LIBVIRT_READ_CAP,
    MESSAGE_OVERHEAD,
    Progress,
    chunk_size,
    guest_target,
    parse_mode,
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
from virt_qga.workflows.files.plan import (
    LOCAL_READ_CHUNK,
    CopyPlan,
    any_guest_kind,
    any_guest_sha256,
    fix_mode,
    local_sha256,
    plan_pull,
    plan_push,
)
from virt_qga.workflows.files.pull import pull
from virt_qga.workflows.files.push import (
    push,
    verify_copy,
)
from virt_qga.workflows.files.result import CopyResult

__all__ = [
    "AGENT_READ_MAX",
    "CHUNK_ALIGN",
    "CHUNK_CAP",
    "DEFAULT_NEW_MODE",
    "LIBVIRT_READ_CAP",
    "LOCAL_READ_CHUNK",
    "MESSAGE_OVERHEAD",
    "CopyPlan",
    "CopyResult",
    "Progress",
    "any_guest_kind",
    "any_guest_sha256",
    "chunk_size",
    "copy_failed",
    "fix_mode",
    "guest_file",
    "guest_mode",
    "guest_ok",
    "guest_path_kind",
    "guest_sha256",
    "guest_target",
    "local_sha256",
    "parse_mode",
    "plan_pull",
    "plan_push",
    "pull",
    "push",
    "read_back_sha256",
    "read_chunk_size",
    "temp_name",
    "verify_copy",
    "write_chunk_size",
]
