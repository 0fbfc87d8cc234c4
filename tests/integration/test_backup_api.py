"""libvirt's backup API (``virDomainBackupBegin``, push mode) on each lab stack.

virt-qga's backup engine will use it where the stack offers it; this pins down that both
stacks do: a full backup with a checkpoint, then an incremental one from that
checkpoint. The images are checked with ``qemu-img`` and ``debugfs`` (no virt-qga code).

Where the stacks differ: in session mode the backup file belongs to the lab user, who
runs libvirtd and QEMU. In system mode libvirtd (root) creates it and its DAC driver
lends it to libvirt-qemu while QEMU writes it, then gives it back to root when the job
ends, as on a real ``qemu:///system`` host.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from virt_qga.lab import Lab, LabGuest

libvirt = pytest.importorskip("libvirt")
libvirt_qemu = pytest.importorskip("libvirt_qemu")

MIB = 1024 * 1024


def agent(dom: Any, cmd: str, args: dict[str, Any] | None = None) -> Any:
    payload: dict[str, Any] = {"execute": cmd, **({"arguments": args} if args else {})}
    return json.loads(libvirt_qemu.qemuAgentCommand(dom, json.dumps(payload), 30, 0))["return"]


def write_file(dom: Any, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` in the guest in 48 KiB pieces, then sync."""
    h = agent(dom, "guest-file-open", {"path": path, "mode": "wb"})
    for i in range(0, len(data), 48 * 1024):
        chunk = base64.b64encode(data[i:i + 48 * 1024]).decode()
        agent(dom, "guest-file-write", {"handle": h, "buf-b64": chunk})
    agent(dom, "guest-file-close", {"handle": h})
    pid = agent(dom, "guest-exec", {"path": "/bin/sync"})["pid"]
    for _ in range(100):
        if agent(dom, "guest-exec-status", {"pid": pid})["exited"]:
            return
        time.sleep(0.1)
    raise AssertionError("sync did not finish")


def run_backup(dom: Any, backup_xml: str, checkpoint_xml: str, timeout: float = 120) -> dict[str, Any]:
    """backupBegin, wait for the job to end, return its completed-job statistics."""
    dom.backupBegin(backup_xml, checkpoint_xml, 0)
    deadline = time.monotonic() + timeout
    while dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE:
        assert time.monotonic() < deadline, "backup job did not end"
        time.sleep(0.1)
    stats: dict[str, Any] = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    return stats


def image_info(path: Path) -> dict[str, Any]:
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    info: dict[str, Any] = json.loads(out)
    return info


def allocated_here(path: Path) -> int:
    """Bytes of data the image itself holds (not its backing chain)."""
    out = subprocess.run(["qemu-img", "map", "-U", "--output=json", str(path)], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return sum(e["length"] for e in json.loads(out) if e.get("data") and e.get("depth") == 0)


def file_in_image(image: Path, path: str, work: Path) -> bytes | None:
    raw = work / "img.raw"
    subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", str(image), str(raw)], check=True,
                   capture_output=True, timeout=120)
    try:
        out = subprocess.run(["debugfs", "-R", f"dump {path} {work / 'out'}", str(raw)], capture_output=True,
                             timeout=60)
        dumped = work / "out"
        if out.returncode != 0 or not dumped.exists():
            return None
        data = dumped.read_bytes()
        dumped.unlink()
        return data
    finally:
        raw.unlink()


def test_push_backup_full_then_incremental(lab: Lab, stack: str, fresh_guest: Callable[..., LabGuest],
                                           tmp_path: Path) -> None:
    g = fresh_guest(agent="10.0")
    conn = libvirt.open(g.uri)
    try:
        dom = conn.lookupByName(g.name)
        first = os.urandom(64 * 1024)
        write_file(dom, "/data/first.bin", first)

        target = g.data_disk.parent / "backup-full.qcow2"  # QEMU can reach it on both stacks
        stats = run_backup(
            dom,
            f"<domainbackup mode='push'><disks><disk name='vda' backup='yes' type='file'>"
            f"<driver type='qcow2'/><target file='{target}'/></disk></disks></domainbackup>",
            "<domaincheckpoint><name>c1</name><disks><disk name='vda' checkpoint='bitmap'/></disks>"
            "</domaincheckpoint>",
        )
        assert stats["type"] == libvirt.VIR_DOMAIN_JOB_COMPLETED, stats
        assert stats["operation"] == libvirt.VIR_DOMAIN_JOB_OPERATION_BACKUP, stats
        info = image_info(target)
        assert info["virtual-size"] == 64 * MIB and "backing-filename" not in info, info
        assert file_in_image(target, "/first.bin", tmp_path) == first
        if lab.session.mode == "system":
            # created by root, lent to libvirt-qemu for the job, given back afterwards
            assert (target.stat().st_uid, target.stat().st_gid) == (0, 0)
        else:
            ids = lab.host.user_ids()
            assert ids is not None and target.stat().st_uid == ids[0]

        second = os.urandom(MIB)
        write_file(dom, "/data/second.bin", second)
        inc = g.data_disk.parent / "backup-inc.qcow2"
        stats = run_backup(
            dom,
            f"<domainbackup mode='push'><incremental>c1</incremental><disks>"
            f"<disk name='vda' backup='yes' type='file'><driver type='qcow2'/><target file='{inc}'/>"
            f"</disk></disks></domainbackup>",
            "<domaincheckpoint><name>c2</name><disks><disk name='vda' checkpoint='bitmap'/></disks>"
            "</domaincheckpoint>",
        )
        assert stats["type"] == libvirt.VIR_DOMAIN_JOB_COMPLETED, stats
        # only what changed since c1: the 1 MiB file plus filesystem metadata
        assert MIB <= allocated_here(inc) < 8 * MIB, allocated_here(inc)
        # without REUSE_EXTERNAL the incremental image's backing file is the live disk
        assert image_info(inc).get("backing-filename") == str(g.data_disk)
        assert file_in_image(inc, "/second.bin", tmp_path) == second
        assert sorted(c.getName() for c in dom.listAllCheckpoints()) == ["c1", "c2"]
        for c in dom.listAllCheckpoints():
            c.delete()
    finally:
        conn.close()
