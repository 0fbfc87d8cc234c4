"""Memory hot-plug and hot-unplug (DIMMs, virtio-mem) with the guest's consent.

Unplug of a DIMM, per DIMM (highest base address first):

1. map the DIMM to guest memory blocks (``base // block_size`` ...);
2. offline those blocks with ``guest-set-memory-blocks``, in passes: a block that
   answers ``operation-failed`` with EBUSY/EAGAIN is retried with backoff (bounded in
   passes and seconds); EINVAL, other errnos and ``operation-not-supported`` stop at
   once; ``not-found`` means already gone and is verified against the block list;
3. detach the DIMM exactly as the live XML shows it and wait (deadline) for libvirt's
   DEVICE_REMOVED event or for the device to leave the live XML;
4. on refusal or rejection, online the blocks again (rollback) and report.

Plug attaches a DIMM, waits for its blocks to appear in the guest and onlines any the
guest left offline. virtio-mem devices are resized through ``<requested>``.

The package: :mod:`.view` (what guest, QEMU and libvirt say), :mod:`.blocks` (the
guest's memory blocks), :mod:`.plan` (which DIMMs), :mod:`.dimm` (plug and unplug),
:mod:`.virtio_mem` (resize) and :mod:`.result`.
"""

from __future__ import annotations

from virt_qga.workflows.memory.blocks import (
    BlockOutcome,
    BlocksBusy,
    BlocksRefused,
    classify_block_response,
    describe_response,
    set_blocks,
)
from virt_qga.workflows.memory.config import (
    ConfigDimmChanges,
    config_dimm_changes,
    sync_config_dimms,
)
from virt_qga.workflows.memory.dimm import (
    plug,
    unplug,
)
from virt_qga.workflows.memory.options import WAIT_FIELDS, MemoryOptions
from virt_qga.workflows.memory.plan import (
    MIB,
    DimmPlan,
    check_block_multiple,
    choose_dimms,
    plan_dimm_total,
)
from virt_qga.workflows.memory.result import (
    MemoryResult,
    online_hint,
)
from virt_qga.workflows.memory.view import (
    GUEST_POLL,
    RETRYABLE_ERRNOS,
    AgentLike,
    MemoryView,
    read_view,
)
from virt_qga.workflows.memory.virtio_mem import (
    resize_virtio_mem,
    virtio_mem_qemu_size,
    virtio_mem_state,
)

__all__ = [
    "GUEST_POLL",
    "MIB",
    "RETRYABLE_ERRNOS",
    "WAIT_FIELDS",
    "AgentLike",
    "BlockOutcome",
    "BlocksBusy",
    "BlocksRefused",
    "ConfigDimmChanges",
    "DimmPlan",
    "MemoryOptions",
    "MemoryResult",
    "MemoryView",
    "check_block_multiple",
    "choose_dimms",
    "classify_block_response",
    "config_dimm_changes",
    "describe_response",
    "online_hint",
    "plan_dimm_total",
    "plug",
    "read_view",
    "resize_virtio_mem",
    "set_blocks",
    "sync_config_dimms",
    "unplug",
    "virtio_mem_qemu_size",
    "virtio_mem_state",
]
