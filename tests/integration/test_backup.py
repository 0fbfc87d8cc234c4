"""``virt-qga backup --method snapshot`` against real lab guests: snapshot, copy, merge back.

(The backup-api method, chains and recovery are in test_backup_chains.py.)

Every check reads the truth without virt-qga: the backup image through ``qemu-img``
(standalone, and the bytes written in the guest before the backup are in it), the
domain's live XML (the disk runs on its base again), the guest directory (no overlay
file left) and the agent's own freeze status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from virt_qga.lab import LabGuest

ROOT = Path(__file__).resolve().parents[2]


def cli(g: LabGuest, state: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    p = subprocess.run([sys.executable, "-m", "virt_qga.cli.main", "-c", str(g.uri), "--json", *args],
                       capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env=dict(os.environ, VIRT_QGA_STATE_DIR=str(state)))
    try:
        doc = json.loads(p.stdout)
    except ValueError as exc:
        raise AssertionError(f"no JSON (rc {p.returncode}): {p.stdout!r} {p.stderr!r}") from exc
    return p.returncode, doc, p.stderr


def agent(g: LabGuest, cmd: str, args: dict[str, Any] | None = None) -> Any:
    import libvirt
    import libvirt_qemu

    dom = libvirt.open(g.uri).lookupByName(g.name)
    payload: dict[str, Any] = {"execute": cmd, **({"arguments": args} if args else {})}
    return json.loads(libvirt_qemu.qemuAgentCommand(dom, json.dumps(payload), 30, 0))["return"]


def write_marker(g: LabGuest) -> bytes:
    """Write 64 KiB of random bytes to /data in the guest and sync; return them."""
    import base64

    data = os.urandom(64 * 1024)
    h = agent(g, "guest-file-open", {"path": "/data/marker.bin", "mode": "wb"})
    agent(g, "guest-file-write", {"handle": h, "buf-b64": base64.b64encode(data).decode()})
    agent(g, "guest-file-close", {"handle": h})
    pid = agent(g, "guest-exec", {"path": "/bin/sync"})["pid"]
    for _ in range(100):
        if agent(g, "guest-exec-status", {"pid": pid})["exited"]:
            break
    return data


def active_source(g: LabGuest) -> str:
    import libvirt

    root = ET.fromstring(libvirt.open(g.uri).lookupByName(g.name).XMLDesc(0))
    for disk in root.findall("./devices/disk"):
        target, src = disk.find("target"), disk.find("source")
        if target is not None and target.get("dev") == "vda" and src is not None:
            return str(src.get("file"))
    raise AssertionError("no vda in the live XML")


def assert_merged_back(g: LabGuest) -> None:
    assert active_source(g) == str(g.data_disk)
    leftovers = [p.name for p in g.data_disk.parent.glob("*.vqga-*.qcow2")]
    assert leftovers == [], leftovers
    assert agent(g, "guest-fsfreeze-status") == "thawed"


def raw_bytes(image: Path, tmp: Path) -> bytes:
    raw = tmp / "image.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)], check=True, timeout=120)
    out = raw.read_bytes()
    raw.unlink()
    return out


def test_backup_is_consistent_complete_and_merged_back(fresh_guest: Callable[..., LabGuest],
                                                       tmp_path: Path) -> None:
    g = fresh_guest()
    marker = write_marker(g)
    rc, doc, err = cli(g, tmp_path / "state", "backup", g.name, "--method", "snapshot",
                       "--to", str(tmp_path / "bk"))
    assert rc == 0, err
    [b] = doc["backups"]
    assert b["state"] == "done" and b["consistency"] == "filesystem" and b["exit_code"] == 0
    assert b["method"] == "snapshot" and b["level"] == "full"
    folder = Path(b["directory"])
    assert folder.parent.parent == tmp_path / "bk" / g.name          # DIR/DOMAIN/CHAIN/BACKUP
    assert sorted(p.name for p in folder.iterdir()) == ["domain.xml", "manifest.json", "vda.qcow2"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["domain"] == g.name and manifest["consistency"] == "filesystem"
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(folder / "vda.qcow2")],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2" and "backing-filename" not in info  # standalone
    assert marker in raw_bytes(folder / "vda.qcow2", tmp_path)           # the data is in it
    assert [c["target"] for c in b["committed"]] == ["vda"]
    assert_merged_back(g)


def test_many_domains_partial_failure_and_keep(fresh_guest: Callable[..., LabGuest], tmp_path: Path) -> None:
    g1, g2 = fresh_guest(), fresh_guest()
    state, dest = tmp_path / "state", tmp_path / "bk"
    rc, doc, err = cli(g1, state, "backup", g1.name, "no-such-domain", g2.name, "--method", "snapshot",
                       "--to", str(dest))
    assert rc == 5, err                                     # partial: two done, one failed
    states = {b["domain"]: (b["state"], b["exit_code"]) for b in doc["backups"]}
    assert states == {g1.name: ("done", 0), "no-such-domain": ("failed", 6), g2.name: ("done", 0)}
    assert doc["exit_code"] == 5
    rc, doc, err = cli(g1, state, "backup", g1.name, g2.name, "--method", "snapshot", "--to", str(dest),
                       "--keep", "1")
    assert rc == 0, err
    for g in (g1, g2):
        kept = sorted(p.name for p in (dest / g.name).iterdir())     # chains: full backups each
        assert len(kept) == 1 and Path(next(b["directory"] for b in doc["backups"]
                                            if b["domain"] == g.name)).parent.name == kept[0]
        assert_merged_back(g)


def test_copy_failure_still_merges_back(fresh_guest: Callable[..., LabGuest], tmp_path: Path) -> None:
    """A destination that fills up mid-copy (a 256 KiB tmpfs): exit 1, the error names
    the cause, no partial backup is left, and the guest runs on its base again."""
    g = fresh_guest()
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(tiny)], check=True)
    try:
        rc, doc, err = cli(g, tmp_path / "state", "backup", g.name, "--method", "snapshot",
                           "--to", str(tiny))
        assert rc == 1, err
        [b] = doc["backups"]
        assert b["state"] == "failed" and "No space left on device" in b["error"]
        assert [c["target"] for c in b["committed"]] == ["vda"]
        assert list((tiny / g.name).rglob("*")) == []         # no partial directory
    finally:
        subprocess.run(["umount", str(tiny)], check=False)
    assert_merged_back(g)


def test_leftover_overlay_is_refused_until_committed(fresh_guest: Callable[..., LabGuest],
                                                     tmp_path: Path, store: Path) -> None:
    g = fresh_guest()
    state = tmp_path / "state"
    rc, _doc, err = cli(g, state, "snapshot", g.name)             # leaves the guest on an overlay
    assert rc == 0, err
    rc, doc, err = cli(g, state, "backup", g.name, "--to", str(store))
    assert rc == 9, err
    [b] = doc["backups"]
    assert b["state"] == "inconsistent" and "--commit-back" in b["undo"]
    assert not any(store.rglob("*.qcow2"))
    rc, _doc, err = cli(g, state, "snapshot", g.name, "--commit-back")
    assert rc == 0, err
    rc, doc, err = cli(g, state, "backup", g.name, "--to", str(store))
    assert rc == 0, (err, doc["backups"][0]["error"])
    assert_merged_back(g)


@pytest.mark.parametrize("args", [
    ("--to", "/etc/passwd/below-a-file"),          # cannot create the directory
])
def test_bad_destination_is_refused_before_any_snapshot(fresh_guest: Callable[..., LabGuest],
                                                        tmp_path: Path, args: tuple[str, ...]) -> None:
    g = fresh_guest()
    rc, doc, err = cli(g, tmp_path / "state", "backup", g.name, *args)
    assert rc == 2, err
    [b] = doc["backups"]
    assert "cannot create backup directory" in b["error"] and b["snapshot"] is None
    assert_merged_back(g)


def test_sigterm_mid_copy_merges_back_and_leaves_no_partial(fresh_guest: Callable[..., LabGuest],
                                                            tmp_path: Path) -> None:
    """cron's or systemd's timeout sends SIGTERM. A ``qemu-img`` shim on PATH holds the
    real ``qemu-img convert`` for 30 s so the signal lands mid-copy, deterministically."""
    import shutil
    import time

    g = fresh_guest()
    shim_dir = tmp_path / "bin"
    shim_dir.mkdir()
    real = shutil.which("qemu-img")
    assert real
    (shim_dir / "qemu-img").write_text(f'#!/bin/sh\n[ "$1" = convert ] && sleep 30\nexec {real} "$@"\n')
    (shim_dir / "qemu-img").chmod(0o755)
    dest = tmp_path / "bk"
    env = dict(os.environ, VIRT_QGA_STATE_DIR=str(tmp_path / "state"),
               PATH=f"{shim_dir}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.Popen([sys.executable, "-m", "virt_qga.cli.main", "-c", str(g.uri), "--json",
                             "backup", g.name, "--method", "snapshot", "--to", str(dest)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(dest.glob(f"{g.name}/*/.*.partial")) or active_source(g) == str(g.data_disk):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    # on the overlay, mid-copy (the shim holds qemu-img convert)
    proc.terminate()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert json.loads(out) == {"ok": False, "error": "Interrupted", "message": "interrupted by SIGTERM",
                               "exit_code": 130}
    assert list((dest / g.name).iterdir()) == []                  # no partial backup
    assert_merged_back(g)
