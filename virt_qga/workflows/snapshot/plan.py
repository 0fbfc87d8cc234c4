"""The disk plan, made before the freeze: which disks, which overlay files, the
snapshot XML and flags, and the directory and free-space checks."""

from __future__ import annotations

import os
from pathlib import Path

from virt_qga.errors import BadInputError
from virt_qga.errors import option_ref as ref
from virt_qga.workflows.snapshot.job import Job

__all__ = ["plan_disks", "precreate_overlays"]


def plan_disks(job: Job) -> None:
    """Fill ``job.plan``, ``job.xml``, ``job.flags`` and ``job.precreate``."""
    from virt_qga.host import snapshots as hs

    if job.host is None:
        return
    opts = job.opts
    job.all_disks = hs.list_disks(job.host.xml())
    if opts.mode == "command":
        chosen = hs.select_disks(job.all_disks, opts.disks) if job.all_disks else []
        job.plan = [(d, d.source or "") for d in chosen]
        return
    if opts.mode == "internal":
        _plan_internal(job)
        return
    chosen = hs.select_disks(job.all_disks, opts.disks)
    local = hs.is_local_uri(job.host.uri)
    for d in chosen:
        if d.source_type not in ("file", "block", "network", "volume"):
            raise BadInputError(f"disk {d.target} has source type {d.source_type}; cannot "
                                "place an external overlay for it", field="disks")
        if not opts.directory and d.source_type != "file":
            raise BadInputError(f"disk {d.target} is not a file ({d.source_type}); pass "
                                f"{ref('directory')} for its overlay", field="directory")
        job.plan.append((d, hs.overlay_path(d.source or d.target, job.name, opts.directory)))
    targets = [o for _, o in job.plan]
    if len(set(targets)) != len(targets):
        raise BadInputError(f"two disks would get the same overlay name; use {ref('directory')} "
                            "or rename the images", field="directory")
    if local:
        for _, overlay in job.plan:
            if os.path.lexists(overlay):
                raise BadInputError(f"overlay {overlay} already exists; pick another {ref('name')}",
                                    field="name")
        for folder in sorted({str(Path(o).parent) for o in targets}):
            check_dir(Path(folder), need=opts.min_free_bytes, what="overlay")
    else:
        job.warn("libvirt host is remote: overlay directory and free space not checked")
    job.precreate = opts.precreate if opts.precreate is not None else \
        (local and all(d.source_type == "file" and d.driver_type in ("qcow2", "raw")
                       for d, _ in job.plan))
    if job.precreate and not local:
        raise BadInputError(f"{ref('precreate')} needs a local libvirt URI", field="precreate")
    job.xml = hs.external_snapshot_xml(job.name, job.plan, job.all_disks, description(job))
    job.flags = hs.snapshot_flags("external", metadata=opts.metadata, reuse=job.precreate)


def _plan_internal(job: Job) -> None:
    from virt_qga.host import snapshots as hs

    assert job.host is not None
    if job.opts.disks:
        raise BadInputError(f"{ref('disks')} is not used by internal snapshots (all disks are "
                            "included)", field="disks")
    not_qcow2 = [d.target for d in hs.default_disks(job.all_disks) if d.driver_type != "qcow2"]
    if not_qcow2:
        raise BadInputError(f"internal snapshots need qcow2 disks; not qcow2: {', '.join(not_qcow2)}",
                            field="mode")
    job.xml = hs.internal_snapshot_xml(job.name, description(job))
    job.flags = hs.snapshot_flags("internal", metadata=True)
    if hs.is_local_uri(job.host.uri):
        mem_bytes = int(job.host.call("info")[2]) * 1024
        for d in hs.default_disks(job.all_disks):
            if d.source and d.source_type == "file":
                check_dir(Path(d.source).parent, need=mem_bytes + job.opts.min_free_bytes,
                          what="internal snapshot (RAM state + disk data)")


def precreate_overlays(job: Job) -> None:
    """Create the planned overlay files (qemu-img) so libvirt only attaches them."""
    from virt_qga.host.snapshots import precreate_overlay

    assert job.host is not None
    for d, overlay in job.plan:
        precreate_overlay(job.host, d, overlay)


def description(job: Job) -> str:
    return job.opts.description or f"virt-qga snapshot ({job.opts.mode}, quiesce {job.opts.quiesce})"


def check_dir(folder: Path, *, need: int, what: str) -> None:
    """The directory exists, is writable and has ``need`` bytes free."""
    if not folder.is_dir():
        raise BadInputError(f"{what} directory {folder} does not exist", field="directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BadInputError(f"{what} directory {folder} is not writable", field="directory")
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    if free < need:
        raise BadInputError(f"{what} directory {folder} has {free // (1024 * 1024)} MiB free; "
                            f"need at least {need // (1024 * 1024)} MiB", field="directory")
