"""Restore, verify and list against real lab guests and real backup chains.

One guest writes a marker, then a full backup and two incrementals are taken, each
after changing the marker. The truth is read without virt-qga: the restored images
through ``qemu-img`` and ``debugfs``, the defined domain through libvirt and its own
guest agent, the original's XML and disk through libvirt and ``sha256sum``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import BOOT_TIMEOUT, SESSION_TAG
from tests.integration.test_backup import ROOT, agent, cli
from tests.integration.test_backup_chains import backup, file_in_image, guest_write
from virt_qga.lab import Lab, LabError, LabGuest

MARKERS = (b"one\n", b"two\n", b"three\n")


@dataclass
class Chain:
    guest: LabGuest
    store: Path
    state: Path
    dir: Path                          # the chain directory
    names: list[str]                   # full, inc1, inc2


@pytest.fixture(scope="module")
def chain(lab: Lab) -> Iterator[Chain]:
    """A guest and a chain of three backups, each after its own marker (shared by the
    module's tests; the ones that damage a store work on a copy)."""
    name = f"{SESSION_TAG}-restore-{os.urandom(2).hex()}"
    store = Path(tempfile.mkdtemp(prefix="vqga-store-", dir="/var/tmp"))
    store.chmod(0o755)
    state = Path(tempfile.mkdtemp(prefix="vqga-state-"))
    try:
        try:
            [g] = lab.up(agent="7.2", name=name, timeout=BOOT_TIMEOUT)
        except LabError as exc:
            if os.environ.get("CI"):
                pytest.fail(f"the lab cannot start and CI is set: {exc}", pytrace=False)
            pytest.skip(f"the lab cannot start: {exc}")
        made = []
        for content in MARKERS:
            guest_write(g, "/data/marker.txt", content)
            made.append(backup(g, state, store))
        assert [b["level"] for b in made] == ["full", "inc", "inc"]
        yield Chain(g, store, state, store / g.name / made[0]["chain"], [b["name"] for b in made])
    finally:
        try:
            lab.destroy(name)
        except LabError:
            pass
        _undefine_with_checkpoints(lab, name)
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)


def _undefine_with_checkpoints(lab: Lab, name: str) -> None:
    """A domain with checkpoints survives a plain undefine: drop their metadata with it."""
    import libvirt

    try:
        dom = libvirt.open(lab.uri).lookupByName(name)
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
    except libvirt.libvirtError:
        pass  # gone already


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """virt-qga as a user runs it (human output; no libvirt needed for these commands)."""
    return subprocess.run([sys.executable, "-m", "virt_qga.cli.main", *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def _info(image: Path) -> dict[str, Any]:
    out = subprocess.run(["qemu-img", "info", "--output=json", "-U", str(image)], capture_output=True,
                         text=True, check=True).stdout
    return dict(json.loads(out))


@pytest.fixture
def out_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vqga-restore-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_each_point_restores_exactly_its_own_content(chain: Chain, out_dir: Path, tmp_path: Path) -> None:
    g = chain.guest
    full, inc1, inc2 = chain.names
    ways = {                                           # the three ways to name a point
        full: ("restore", str(chain.dir), "--at", full),
        inc1: ("restore", str(chain.dir / inc1)),
        inc2: ("restore", str(chain.dir)),             # a chain: its newest
    }
    for (name, args), content in zip(ways.items(), MARKERS, strict=True):
        dest = out_dir / name
        rc, doc, err = cli(g, chain.state, *args, "--to", str(dest))
        assert rc == 0, err
        assert doc["point"] == name and doc["backups"] == chain.names[: chain.names.index(name) + 1]
        [disk] = doc["disks"]
        image = Path(disk["path"])
        assert image == dest / "vda.qcow2" and sorted(p.name for p in dest.iterdir()) == ["vda.qcow2"]
        info = _info(image)
        assert "backing-filename" not in info and info["virtual-size"] == 64 * 1024 * 1024
        assert not info["format-specific"]["data"].get("bitmaps")          # no checkpoint bitmaps
        subprocess.run(["qemu-img", "check", "-q", str(image)], check=True)
        assert file_in_image(image, "/marker.txt", tmp_path) == content
        assert any("SHA-256" in v for v in doc["verified"])


def test_backup_verify_and_list_on_a_good_store(chain: Chain) -> None:
    g = chain.guest
    rc, doc, err = cli(g, chain.state, "backup-verify", str(chain.store))
    assert rc == 0, (err, doc)
    assert doc["ok"] is True and doc["problems"] == []
    assert doc["checked"]["backups"] == 3 and doc["checked"]["files"] == 3
    assert sorted(Path(p).name for p in doc["passed"]) == sorted(chain.names)
    for name in chain.names:
        record = json.loads((chain.dir / name / "verify.json").read_text())
        assert record["ok"] is True and record["passed_at"]
    rc, doc, err = cli(g, chain.state, "backup-list", str(chain.store), "--domain", g.name)
    assert rc == 0, err
    rows = doc["backups"]
    assert [(b["name"], b["level"], b["chain"]) for b in rows] == [
        (n, lvl, chain.names[0]) for n, lvl in zip(chain.names, ("full", "inc", "inc"), strict=True)]
    assert all(b["verified"]["ok"] and not b["verified"]["stale"] for b in rows)
    assert all(b["method"] == "backup-api" and b["consistency"] == "filesystem" for b in rows)
    assert rows[0]["bytes_written"] > rows[1]["bytes_written"] > 0
    assert rows[1]["file_size"] == (chain.dir / chain.names[1] / "vda.qcow2").stat().st_size
    p = run("backup-list", str(chain.store))                  # the table a person reads
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stdout.splitlines() if g.name in ln]
    assert len(lines) == 3 and "full" in lines[0] and "inc" in lines[2] and "backup-api" in lines[1]
    rc, doc, err = cli(g, chain.state, "backup-list", str(chain.store), "--domain", "no-such-domain")
    assert rc == 0 and doc["backups"] == [], err


def flip_data_byte(image: Path) -> None:
    """Flip one bit of guest data inside the image (not qcow2 metadata, so that only the
    checksum can tell): the first byte of its first data cluster, found with qemu-img map."""
    out = subprocess.run(["qemu-img", "map", "--output=json", "-U", str(image)], capture_output=True,
                         text=True, check=True).stdout
    offset = next(int(e["offset"]) for e in json.loads(out) if e.get("data") and e.get("depth") == 0)
    with open(image, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x01]))


def _copy_store(chain: Chain) -> Path:
    copy = Path(tempfile.mkdtemp(prefix="vqga-store-", dir="/var/tmp"))
    copy.chmod(0o755)
    shutil.copytree(chain.store / chain.guest.name, copy / chain.guest.name, symlinks=True)
    return copy


def test_verify_finds_a_flipped_byte_and_restore_refuses(chain: Chain, out_dir: Path) -> None:
    g = chain.guest
    copy = _copy_store(chain)
    try:
        cdir = copy / g.name / chain.dir.name
        damaged = cdir / chain.names[1] / "vda.qcow2"
        flip_data_byte(damaged)
        p = run("backup-verify", str(copy))
        assert p.returncode == 1, (p.stdout, p.stderr)
        lines = p.stdout.splitlines()
        assert lines[0].startswith(f"{damaged}: SHA-256 ") and "does not match" in lines[0], p.stdout
        assert lines[1].startswith("1 problem(s): 3 backup(s) in 1 chain(s)") and len(lines) == 2
        rc, doc, _err = cli(g, chain.state, "backup-verify", str(copy))
        assert rc == 1 and doc["ok"] is False
        assert [(q["backup"], q["kind"]) for q in doc["problems"]] == [(chain.names[1], "checksum")]
        assert sorted(Path(x).name for x in doc["passed"]) == [chain.names[0]]   # inc2 needs inc1
        rc, doc, _err = cli(g, chain.state, "backup-list", str(copy))
        verified = {b["name"]: b["verified"] for b in doc["backups"]}
        assert verified[chain.names[0]]["ok"] is True
        assert verified[chain.names[1]]["ok"] is False and verified[chain.names[2]]["ok"] is False
        # restoring a point that needs the damaged file is refused, and leaves nothing
        rc, doc, err = cli(g, chain.state, "restore", str(cdir), "--to", str(out_dir / "r"))
        assert rc == 1 and "fail verification" in doc["message"] and "SHA-256" in doc["message"], err
        assert not (out_dir / "r").exists()
        # the full backup does not need it
        rc, doc, err = cli(g, chain.state, "restore", str(cdir / chain.names[0]), "--to", str(out_dir / "f"))
        assert rc == 0, err
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def test_verify_finds_a_missing_link_and_a_partial(chain: Chain) -> None:
    g = chain.guest
    copy = _copy_store(chain)
    try:
        cdir = copy / g.name / chain.dir.name
        full, inc1, inc2 = chain.names
        shutil.rmtree(cdir / inc1)
        (cdir / ".20991231T000000Z.partial").mkdir()
        rc, doc, err = cli(g, chain.state, "backup-verify", str(cdir))
        assert rc == 1, err
        found = {(q["backup"], q["kind"]): q["message"] for q in doc["problems"]}
        assert f"its parent {inc1} is missing" in found[(inc2, "chain")]
        assert "missing link" in found[(inc2, "link")] and f"../{inc1}/vda.qcow2" in found[(inc2, "link")]
        assert (None, "partial") in found
        assert sorted(Path(x).name for x in doc["passed"]) == [full]
        rc, doc, err = cli(g, chain.state, "restore", str(cdir / inc2), "--to", str(copy / "r"))
        assert rc == 1 and "not in its chain's order" in doc["message"], err
        p = run("backup-verify", str(cdir / full))             # one backup: what it needs is fine
        assert p.returncode == 0 and p.stdout.startswith("ok: 1 backup(s)"), (p.stdout, p.stderr)
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def test_a_failed_restore_leaves_no_image(chain: Chain, tmp_path: Path) -> None:
    """A destination that fills up (a 256 KiB tmpfs), then SIGTERM mid-convert (a
    qemu-img shim holds the real convert): no image under its final name, no partial."""
    g = chain.guest
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(tiny)], check=True)
    try:
        rc, doc, err = cli(g, chain.state, "restore", str(chain.dir), "--to", str(tiny / "r"))
        assert rc == 1 and "No space left on device" in doc["message"], err
        assert list(tiny.rglob("*")) == []
    finally:
        subprocess.run(["umount", str(tiny)], check=False)
    shim = tmp_path / "bin"
    shim.mkdir()
    real = shutil.which("qemu-img")
    (shim / "qemu-img").write_text(f'#!/bin/sh\n[ "$1" = convert ] && sleep 60\nexec {real} "$@"\n')
    (shim / "qemu-img").chmod(0o755)
    dest = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "virt_qga.cli.main", "--json", "restore",
                             str(chain.dir), "--to", str(dest)], cwd=ROOT,
                            env=dict(os.environ, PATH=f"{shim}{os.pathsep}{os.environ['PATH']}"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not dest.exists():                        # made just before the first convert
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert json.loads(out)["exit_code"] == 130
    assert not dest.exists()                        # the directory it made goes too


def _sha(path: Path) -> str:
    out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def _wait_agent(g: LabGuest, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            agent(g, "guest-ping")
            return
        except Exception:
            assert time.monotonic() < deadline, f"the agent of {g.name} did not answer"
            time.sleep(0.5)


def _guest_read(g: LabGuest, path: str) -> bytes:
    import base64

    h = agent(g, "guest-file-open", {"path": path, "mode": "r"})
    try:
        return base64.b64decode(agent(g, "guest-file-read", {"handle": h, "count": 4096})["buf-b64"])
    finally:
        agent(g, "guest-file-close", {"handle": h})


def test_define_boots_a_new_domain_beside_the_untouched_original(chain: Chain, lab: Lab) -> None:
    import libvirt

    g = chain.guest
    conn = libvirt.open(g.uri)
    orig = conn.lookupByName(g.name)
    # QEMU's user: who owns the disk while QEMU has it open. Taken before the destroy, since
    # a system-mode libvirt (DAC relabelling) gives the file back to its owner at stop.
    qemu_owner = (g.data_disk.stat().st_uid, g.data_disk.stat().st_gid)
    orig.destroy()                                   # so that its disk holds still to be compared
    xml_before = orig.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    disk_before = _sha(g.data_disk)
    new = f"{g.name}-r"
    try:
        rc, doc, err = cli(g, chain.state, "restore", str(chain.dir / chain.names[1]), "--define", g.name)
        assert rc == 2 and "exists" in doc["message"], err         # the original's name is refused
        rc, doc, err = cli(g, chain.state, "restore", str(chain.dir / chain.names[1]), "--define", new)
        assert rc == 0, err
        dest = g.data_disk.parent / new                          # default: beside the original's disk
        assert doc["directory"] == str(dest) and doc["defined"]["name"] == new
        clone = conn.lookupByName(new)
        assert not clone.isActive()                              # defined, not started
        assert clone.UUIDString() != orig.UUIDString() and clone.listAllCheckpoints(0) == []
        import xml.etree.ElementTree as ET

        root = ET.fromstring(clone.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        [src] = [d.find("source").get("file") for d in root.findall("./devices/disk")]  # type: ignore[union-attr]
        assert src == str(dest / "vda.qcow2") and not list(root.iter("backingStore"))
        assert root.find("./devices/serial/source").get("path") == str(dest / "console.log")  # type: ignore[union-attr]
        channel = root.find("./devices/channel/source")             # its own agent socket
        assert channel is not None and channel.get("path") == str(dest / "qga.sock")
        # QEMU's user can open the images
        assert {(p.stat().st_uid, p.stat().st_gid) for p in dest.iterdir()} == {qemu_owner}
        clone.create()
        cg = replace(g, name=new, console_log=dest / "console.log", data_disk=dest / "vda.qcow2")
        _wait_agent(cg)
        assert _guest_read(cg, "/data/marker.txt") == MARKERS[1]   # inc1's content, read by its agent
        assert b"/dev/vda mounted on /data" in (dest / "console.log").read_bytes()
        assert orig.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == xml_before
        assert _sha(g.data_disk) == disk_before
        orig.create()                                            # both run at once: nothing clashes
        _wait_agent(g)
        assert agent(cg, "guest-ping") == {} and agent(g, "guest-ping") == {}
        assert _guest_read(g, "/data/marker.txt") == MARKERS[2]
    finally:
        try:
            lab.destroy(new)
        except LabError:
            pass
        if not orig.isActive():
            orig.create()
