"""libvirt snapshots and block jobs: every libvirt snapshot/blockcommit call lives here.

* :func:`list_disks` / :func:`select_disks`: which disks a snapshot covers (default:
  every writable ``device='disk'`` with a source; read-only disks and CD-ROMs skipped).
* :func:`overlay_path`: the predictable overlay name, ``<base-stem>.<snapname>.qcow2``
  next to the base image (or in ``--dir``).
* :func:`external_snapshot_xml` / :func:`internal_snapshot_xml`, built *before* the
  freeze, and :func:`create_snapshot` (``snapshotCreateXML``);
  :func:`precreate_overlay` makes the overlay file before the freeze (``REUSE_EXT``).
* :func:`commit_external`: undo an external snapshot: active ``blockcommit --shallow``
  of the overlay into its backing image, pivot, remove the overlay file (when local)
  and the libvirt metadata (when there is some).

Flags: external snapshots are ``DISK_ONLY | ATOMIC`` and never ``QUIESCE`` (the
workflow froze the guest itself); ``NO_METADATA`` by default (see docs/snapshot.md).
"""

from __future__ import annotations

import os
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from virt_qga.errors import AgentTimeoutError, BadInputError, HostError, OperationError
from virt_qga.outcome import State

if TYPE_CHECKING:
    from virt_qga.host import Domain

__all__ = [
    "CommitResult",
    "DiskInfo",
    "active_sources",
    "backing_sources",
    "commit_external",
    "create_snapshot",
    "default_disks",
    "default_snapshot_name",
    "delete_internal",
    "delete_metadata",
    "external_snapshot_xml",
    "internal_snapshot_xml",
    "is_default_name",
    "is_local_uri",
    "is_vqga_overlay",
    "list_disks",
    "overlay_path",
    "precreate_overlay",
    "select_disks",
    "snapshot_flags",
]

#: Names virt-qga gives snapshots: ``vqga-20261125T055501Z`` (UTC, sortable).
NAME_PREFIX = "vqga-"
_DEFAULT_NAME_RE = re.compile(r"vqga-\d{8}T\d{6}(?:\d{3})?Z")
#: Overlay files virt-qga names (see :func:`overlay_path`): ``<stem>.vqga-<UTC time>Z.qcow2``.
_OVERLAY_RE = re.compile(r".*\." + _DEFAULT_NAME_RE.pattern + r"\.qcow2")
_NAME_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")


@dataclass(frozen=True)
class DiskInfo:
    """One ``<disk>`` of the live domain XML."""

    target: str
    device: str                 # disk, cdrom, floppy, lun
    source: str | None          # file or dev path, or a network name
    source_type: str            # file, block, network, volume...
    driver_type: str | None     # qcow2, raw...
    readonly: bool
    backing: str | None = None  # the first backingStore's path, if any

    @property
    def snapshottable(self) -> bool:
        return self.device == "disk" and not self.readonly and bool(self.source)


def _source_of(el: ET.Element | None) -> tuple[str | None, str]:
    if el is None:
        return None, ""
    src = el.find("source")
    kind = el.get("type", "file")
    if src is None:
        return None, kind
    path = src.get("file") or src.get("dev") or src.get("name") or src.get("volume")
    return path, kind


def list_disks(root: ET.Element) -> list[DiskInfo]:
    """The disks of a domain XML tree, in document order."""
    out: list[DiskInfo] = []
    for d in root.findall("./devices/disk"):
        tgt = d.find("target")
        if tgt is None or not tgt.get("dev"):
            continue
        source, kind = _source_of(d)
        drv = d.find("driver")
        backing, _ = _source_of(d.find("backingStore"))
        out.append(DiskInfo(target=str(tgt.get("dev")), device=d.get("device", "disk"),
                            source=source, source_type=kind,
                            driver_type=drv.get("type") if drv is not None else None,
                            readonly=d.find("readonly") is not None, backing=backing))
    return out


def default_disks(disks: list[DiskInfo]) -> list[DiskInfo]:
    return [d for d in disks if d.snapshottable]


def select_disks(disks: list[DiskInfo], requested: list[str] | tuple[str, ...]) -> list[DiskInfo]:
    """The disks named by ``--disk`` (target names like ``vda``), or the default set."""
    if not requested:
        chosen = default_disks(disks)
        if not chosen:
            raise BadInputError("the domain has no writable disk to snapshot", field="--disk")
        return chosen
    by_target = {d.target: d for d in disks}
    out: list[DiskInfo] = []
    for name in requested:
        disk = by_target.get(name)
        if disk is None:
            known = ", ".join(sorted(by_target)) or "none"
            raise BadInputError(f"no disk with target '{name}' (disks: {known})", field="--disk")
        if not disk.snapshottable:
            why = "read-only" if disk.readonly else f"a {disk.device}" if disk.device != "disk" \
                else "without a source"
            raise BadInputError(f"disk {name} is {why}; it cannot be snapshotted", field="--disk")
        if disk not in out:
            out.append(disk)
    return out


def default_snapshot_name(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return NAME_PREFIX + now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z"


def is_default_name(name: str) -> bool:
    """True for a name :func:`default_snapshot_name` makes (``vqga-<UTC time>Z``)."""
    return _DEFAULT_NAME_RE.fullmatch(name) is not None


def is_vqga_overlay(path: str | None) -> bool:
    """True for an overlay file virt-qga created (``*.vqga-<UTC time>Z.qcow2``)."""
    return bool(path) and _OVERLAY_RE.fullmatch(str(path)) is not None


def check_snapshot_name(name: str) -> str:
    if not _NAME_OK.fullmatch(name):
        raise BadInputError(f"snapshot name '{name}' must be 1-100 characters of letters, digits, "
                            "'_', '.', '+', '-', starting with a letter or digit", field="--name")
    return name


def overlay_path(base: str, snapname: str, directory: str | None = None) -> str:
    """``/img/data.qcow2`` + ``s1`` -> ``/img/data.s1.qcow2`` (or ``DIR/data.s1.qcow2``).

    When the base is itself one of our overlays (``data.vqga-...Z.qcow2``), that
    suffix is dropped first, so chains stay ``data.<latest>.qcow2``, not ever longer.
    """
    p = Path(base)
    stem = p.name
    for ext in (".qcow2", ".qcow", ".img", ".raw"):
        if stem.endswith(ext) and len(stem) > len(ext):
            stem = stem[: -len(ext)]
            break
    m = re.fullmatch(r"(.+)\.(" + _DEFAULT_NAME_RE.pattern + r")", stem)
    if m:
        stem = m.group(1)
    folder = Path(directory) if directory else p.parent
    return str(folder / f"{stem}.{snapname}.qcow2")


def external_snapshot_xml(name: str, plan: list[tuple[DiskInfo, str]], all_disks: list[DiskInfo],
                          description: str = "") -> str:
    """Disk-only snapshot XML: ``external`` for the planned disks, ``no`` for the rest."""
    root = ET.Element("domainsnapshot")
    ET.SubElement(root, "name").text = name
    if description:
        ET.SubElement(root, "description").text = description
    disks_el = ET.SubElement(root, "disks")
    planned = {d.target: overlay for d, overlay in plan}
    for disk in all_disks:
        el = ET.SubElement(disks_el, "disk", name=disk.target)
        if disk.target in planned:
            el.set("snapshot", "external")
            el.set("type", "file")
            ET.SubElement(el, "driver", type="qcow2")
            ET.SubElement(el, "source", file=planned[disk.target])
        else:
            el.set("snapshot", "no")
    return ET.tostring(root, encoding="unicode")


def internal_snapshot_xml(name: str, description: str = "") -> str:
    root = ET.Element("domainsnapshot")
    ET.SubElement(root, "name").text = name
    if description:
        ET.SubElement(root, "description").text = description
    return ET.tostring(root, encoding="unicode")


def snapshot_flags(mode: str, *, metadata: bool, reuse: bool = False) -> int:
    """``snapshotCreateXML`` flags for ``mode`` ("external" or "internal")."""
    from virt_qga.connection import import_libvirt

    lv = import_libvirt()
    flags = 0
    if mode == "external":
        flags |= lv.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY | lv.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
        if reuse:
            flags |= lv.VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT
    elif mode == "internal":
        flags |= lv.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
    else:
        raise BadInputError(f"snapshot mode {mode} is not a libvirt snapshot mode", field="--mode")
    if not metadata:
        flags |= lv.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA
    return int(flags)


def precreate_overlay(domain: Domain, disk: DiskInfo, overlay: str, timeout: float = 30.0) -> None:
    """Create ``overlay`` (qcow2 on top of the disk's active image) before the freeze, for
    ``REUSE_EXT``: libvirt then only attaches it, and the file creation and qcow2
    formatting (a block job in QEMU) leave the frozen window. Local URIs only. The file
    gets the owner of the image it sits on (the QEMU process's user), mode 0600.
    """
    import subprocess

    if not disk.source:
        raise BadInputError(f"disk {disk.target} has no source", field="--disk")
    capacity = int(domain.call("blockInfo", disk.target, 0)[0])
    fmt = disk.driver_type or "raw"
    cmd = ["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", disk.source, "-F", fmt,
           overlay, str(capacity)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HostError(f"qemu-img create {overlay}: {exc}", domain=domain.name) from exc
    if out.returncode != 0:
        raise HostError(f"qemu-img create {overlay} failed: {out.stderr.strip()[:300]}",
                        domain=domain.name)
    try:
        os.chmod(overlay, 0o600)
        if os.geteuid() == 0 and disk.source_type == "file":
            st = os.stat(disk.source)
            os.chown(overlay, st.st_uid, st.st_gid)
    except OSError as exc:
        raise HostError(f"cannot set owner/mode of {overlay}: {exc.strerror}", domain=domain.name) from exc


def create_snapshot(domain: Domain, xml: str, flags: int) -> None:
    """``snapshotCreateXML``; libvirt errors become HostError (with libvirt's reason)."""
    domain.call("snapshotCreateXML", xml, flags)


def active_sources(domain: Domain) -> dict[str, str | None]:
    """target -> active image path, from the live XML (libvirt's current view)."""
    return {d.target: d.source for d in list_disks(domain.xml())}


def backing_sources(domain: Domain) -> dict[str, str | None]:
    return {d.target: d.backing for d in list_disks(domain.xml())}


def is_local_uri(uri: str | None) -> bool:
    """True when the libvirt host is this machine (files can be checked and removed)."""
    if not uri:
        return True
    m = re.match(r"^[a-z0-9]+(?:\+([a-z0-9]+))?://([^/?]*)", uri)
    if not m:
        return True
    transport, host = m.group(1), m.group(2)
    return host in ("", "localhost", "127.0.0.1", "::1") and transport in (None, "unix")


@dataclass
class CommitResult:
    target: str
    overlay: str | None
    base: str | None
    overlay_removed: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "overlay": self.overlay, "base": self.base,
                "overlay_removed": self.overlay_removed, "seconds": round(self.seconds, 3)}


def _commit_one(domain: Domain, target: str, deadline: float) -> None:
    lv = _lv()
    flags = lv.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE | lv.VIR_DOMAIN_BLOCK_COMMIT_SHALLOW
    domain.call("blockCommit", target, None, None, 0, flags)
    last_err = ""
    while True:
        info = domain.call("blockJobInfo", target, 0)
        if info and int(info.get("end", 0)) > 0 and info.get("cur") == info.get("end"):
            try:
                domain.dom.blockJobAbort(target, lv.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
                return
            except lv.libvirtError as exc:  # "not ready for pivot yet": poll on
                last_err = str(exc)
        elif not info and last_err == "":
            # No job any more and we never pivoted: the job ended on its own (error).
            last_err = "block job vanished before it was ready"
        if time.monotonic() >= deadline:
            try:
                domain.dom.blockJobAbort(target, 0)
            except lv.libvirtError:
                pass
            raise AgentTimeoutError(f"blockcommit of {target} not ready to pivot before the "
                                    f"deadline ({last_err or 'still copying'}); job cancelled, "
                                    "the overlay is still active", domain=domain.name)
        time.sleep(0.05)


def _lv() -> Any:
    from virt_qga.connection import import_libvirt

    return import_libvirt()


def commit_external(domain: Domain, disks: list[str] | tuple[str, ...], timeout: float = 120.0, *,
                    remove_overlay: bool = True, snapshot_name: str | None = None,
                    expect_overlays: dict[str, str] | None = None) -> list[CommitResult]:
    """Undo an external snapshot of ``disks`` (targets): commit each active overlay into
    its backing image, pivot back to it, then delete the overlay file (local URIs only)
    and the snapshot's libvirt metadata (when ``snapshot_name`` has some).

    ``expect_overlays`` (target -> overlay path) guards against committing the wrong
    layer: a disk whose active image is not the expected overlay is refused.
    """
    deadline = time.monotonic() + timeout
    before = {d.target: d for d in list_disks(domain.xml())}
    results: list[CommitResult] = []
    for target in disks:
        disk = before.get(target)
        if disk is None:
            raise BadInputError(f"no disk with target '{target}'", field="--disk", domain=domain.name)
        if expect_overlays and target in expect_overlays and disk.source != expect_overlays[target]:
            raise OperationError(
                f"disk {target} runs on {disk.source}, not on the overlay "
                f"{expect_overlays[target]}; not committing", state=State.INCONSISTENT,
                domain=domain.name)
        if not disk.backing:
            raise BadInputError(f"disk {target} has no backing image: nothing to commit into",
                                field="--disk", domain=domain.name)
        start = time.monotonic()
        _commit_one(domain, target, deadline)
        now_src = active_sources(domain).get(target)
        if now_src != disk.backing:
            raise OperationError(f"after pivot, disk {target} runs on {now_src}, expected {disk.backing}",
                                 state=State.INCONSISTENT, domain=domain.name)
        removed = False
        if remove_overlay and disk.source and disk.source_type == "file" and is_local_uri(domain.uri):
            try:
                os.unlink(disk.source)
                removed = True
            except FileNotFoundError:
                removed = True
            except OSError:
                removed = False
        results.append(CommitResult(target=target, overlay=disk.source, base=disk.backing,
                                    overlay_removed=removed, seconds=time.monotonic() - start))
    if snapshot_name:
        delete_metadata(domain, snapshot_name)
    return results


def delete_metadata(domain: Domain, name: str) -> bool:
    """Drop libvirt's record of snapshot ``name`` (not its data). False if there is none."""
    lv = _lv()
    try:
        snap = domain.dom.snapshotLookupByName(name, 0)
    except lv.libvirtError:
        return False
    try:
        snap.delete(lv.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
    except lv.libvirtError as exc:
        raise HostError(f"cannot delete snapshot metadata {name}: {exc}", domain=domain.name) from exc
    return True


def delete_internal(domain: Domain, name: str) -> bool:
    """Delete internal snapshot ``name`` (data and metadata). False if it does not exist."""
    lv = _lv()
    try:
        snap = domain.dom.snapshotLookupByName(name, 0)
    except lv.libvirtError:
        return False
    try:
        snap.delete(0)
    except lv.libvirtError as exc:
        raise HostError(f"cannot delete internal snapshot {name}: {exc}", domain=domain.name) from exc
    return True
