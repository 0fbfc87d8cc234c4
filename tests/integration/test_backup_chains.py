"""Backups with libvirt's backup API against real lab guests: chains, incrementals,
checkpoints, and what a killed or interrupted run leaves (and how it is cleaned up).

The truth is read without virt-qga wherever possible: the images through ``qemu-img``
and ``debugfs`` (the file the guest wrote is in the restored point), libvirt's
checkpoint list and job state, the store's directories.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_backup import ROOT, active_source, agent, cli
from virt_qga.agent import GuestAgent
from virt_qga.lab import LabGuest


def _dom(g: LabGuest) -> Any:
    import libvirt

    return libvirt.open(g.uri).lookupByName(g.name)


def guest_write(g: LabGuest, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` in the guest and sync it to the disk."""
    import base64

    h = agent(g, "guest-file-open", {"path": path, "mode": "wb"})
    agent(g, "guest-file-write", {"handle": h, "buf-b64": base64.b64encode(data).decode()})
    agent(g, "guest-file-close", {"handle": h})
    pid = agent(g, "guest-exec", {"path": "/bin/sync"})["pid"]
    for _ in range(200):
        if agent(g, "guest-exec-status", {"pid": pid})["exited"]:
            return
        time.sleep(0.01)


def guest_sh(g: LabGuest, script: str) -> None:
    """Run ``script`` in the guest and wait for it (exit 0)."""
    pid = agent(g, "guest-exec", {"path": "/bin/sh", "arg": ["-c", script]})["pid"]
    deadline = time.monotonic() + 120
    while True:
        st = agent(g, "guest-exec-status", {"pid": pid})
        if st["exited"]:
            assert st.get("exitcode") == 0, st
            return
        assert time.monotonic() < deadline, f"guest command still running: {script}"
        time.sleep(0.05)


def file_in_image(image: Path, path: str, tmp: Path) -> bytes:
    """``path`` from the ext4 filesystem of a (possibly backed) qcow2, via debugfs."""
    raw = tmp / "restore.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)], check=True, timeout=120)
    try:
        out = subprocess.run(["debugfs", "-R", f"cat {path}", str(raw)], capture_output=True,
                             timeout=60, check=True).stdout
    finally:
        raw.unlink()
    return out


def checkpoints(g: LabGuest) -> list[str]:
    return sorted(str(c.getName()) for c in _dom(g).listAllCheckpoints(0))


def backup(g: LabGuest, state: Path, store: Path, *args: str) -> dict[str, Any]:
    rc, doc, err = cli(g, state, "backup", g.name, "--to", str(store), *args)
    [b] = doc["backups"]
    assert rc == 0, (err, b["error"])
    return dict(b)


@pytest.mark.parametrize("agent_version", ["7.2", "10.0"])
def test_full_inc_inc_each_point_holds_its_own_content(fresh_guest: Callable[..., LabGuest],
                                                       tmp_path: Path, store: Path,
                                                       agent_version: str) -> None:
    g = fresh_guest(agent=agent_version)
    state = tmp_path / "state"
    made = []
    for content in (b"one\n", b"two\n", b"three\n"):
        guest_write(g, "/data/marker.txt", content)
        made.append((content, backup(g, state, store)))
    (_, full), (_, inc1), (_, inc2) = made
    assert [b["level"] for _, b in made] == ["full", "inc", "inc"]
    assert {b["method"] for _, b in made} == {"backup-api"}
    assert full["level_reason"] == "no chain yet" and "changes since" in inc1["level_reason"]
    assert full["chain"] == inc1["chain"] == inc2["chain"] == full["name"]
    assert [b["chain_length"] for _, b in made] == [1, 2, 3]
    for content, b in made:
        folder = Path(b["directory"])
        assert folder.parent == store / g.name / full["chain"]
        assert file_in_image(folder / "vda.qcow2", "/marker.txt", tmp_path) == content
        manifest = json.loads((folder / "manifest.json").read_text())
        [disk] = manifest["disks"]
        digest = subprocess.run(["sha256sum", str(folder / "vda.qcow2")], capture_output=True,
                                text=True, check=True).stdout.split()[0]
        assert disk["sha256"] == digest and disk["virtual_size"] == 64 * 1024 * 1024
        assert b["consistency"] == "filesystem" and b["frozen_window_ms"] > 0
    assert json.loads((Path(inc2["directory"]) / "manifest.json").read_text())["parent"] == inc1["name"]
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", "-U",
                                      str(Path(inc2["directory"]) / "vda.qcow2")],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["backing-filename"] == f"../{inc1['name']}/vda.qcow2"     # the chain, not the live disk
    assert checkpoints(g) == [f"vqga-{inc2['name']}"]                     # one bitmap per disk, not three
    assert active_source(g) == str(g.data_disk)                           # no overlay, ever
    assert agent(g, "guest-fsfreeze-status") == "thawed"


def test_incremental_writes_about_what_changed(fresh_guest: Callable[..., LabGuest], tmp_path: Path,
                                               store: Path) -> None:
    g = fresh_guest()
    state = tmp_path / "state"
    guest_sh(g, "dd if=/dev/urandom of=/data/bulk.bin bs=64k count=256 2>/dev/null; sync")   # 16 MiB
    full = backup(g, state, store)
    changed = 640 * 1024                                   # 1 % of the 64 MiB disk
    guest_sh(g, "dd if=/dev/urandom of=/data/delta.bin bs=64k count=10 2>/dev/null; sync")
    inc = backup(g, state, store)
    assert inc["level"] == "inc"
    assert full["bytes_written"] >= 16 * 1024 * 1024
    assert changed <= inc["bytes_written"] <= changed + 1024 * 1024     # the data + ext4's metadata
    assert full["bytes_written"] >= 10 * inc["bytes_written"]


def test_lost_checkpoint_metadata_is_redefined_from_the_backup(fresh_guest: Callable[..., LabGuest],
                                                                tmp_path: Path, store: Path) -> None:
    import libvirt

    g = fresh_guest()
    state = tmp_path / "state"
    first = backup(g, state, store)
    cp = _dom(g).checkpointLookupByName(f"vqga-{first['name']}", 0)
    cp.delete(libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY)   # libvirt forgets, the bitmap stays
    assert checkpoints(g) == []
    guest_write(g, "/data/marker.txt", b"after\n")
    second = backup(g, state, store)
    assert second["level"] == "inc" and "redefined" in second["level_reason"]
    assert any("redefined it from" in w for w in second["warnings"])
    assert file_in_image(Path(second["directory"]) / "vda.qcow2", "/marker.txt", tmp_path) == b"after\n"
    # Without the saved copy, auto starts a new chain and says why; inc refuses.
    _dom(g).checkpointLookupByName(f"vqga-{second['name']}", 0).delete(
        libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY)
    (Path(second["directory"]) / "checkpoint.xml").unlink()
    rc, doc, err = cli(g, state, "backup", g.name, "--to", str(store), "--level", "inc")
    assert rc == 2 and "cannot take an incremental backup" in doc["backups"][0]["error"], err
    third = backup(g, state, store)
    assert third["level"] == "full" and "does not know checkpoint" in third["level_reason"]
    assert third["chain"] == third["name"] != first["chain"]


def test_inconsistent_bitmap_after_a_crash_starts_a_new_chain(fresh_guest: Callable[..., LabGuest],
                                                              tmp_path: Path, store: Path) -> None:
    """QEMU killed while a persistent bitmap is in use marks it in-use in the image; the
    next QEMU loads it as inconsistent. auto then takes a full backup; inc refuses."""
    g = fresh_guest()
    state = tmp_path / "state"
    backup(g, state, store)
    dom = _dom(g)
    os.kill(_qemu_pid(g), signal.SIGKILL)
    for _ in range(100):
        if dom.state()[0] != 1:
            break
        time.sleep(0.1)
    dom.create()
    _wait_agent(g)
    rc, doc, err = cli(g, state, "backup", g.name, "--to", str(store), "--level", "inc")
    assert rc == 2, err
    error = doc["backups"][0]["error"]
    assert "cannot take an incremental backup" in error and "bitmap" in error, error
    b = backup(g, state, store)
    # QEMU 7.2/10.0 drop a bitmap that was in use when QEMU died (older ones kept it marked
    # inconsistent): either way the chain cannot continue, and the reason names the bitmap
    assert b["level"] == "full" and "bitmap" in b["level_reason"]


def test_shut_off_domain_gets_an_offline_full_backup(fresh_guest: Callable[..., LabGuest],
                                                     tmp_path: Path, store: Path) -> None:
    g = fresh_guest()
    guest_write(g, "/data/marker.txt", b"offline\n")
    dom = _dom(g)
    dom.destroy()
    b = backup(g, tmp_path / "state", store)
    assert (b["method"], b["level"], b["consistency"]) == ("offline", "full", "offline")
    assert file_in_image(Path(b["directory"]) / "vda.qcow2", "/marker.txt", tmp_path) == b"offline\n"
    rc, doc, _err = cli(g, tmp_path / "state", "backup", g.name, "--to", str(store), "--method", "backup-api")
    assert rc == 2 and "not running" in doc["backups"][0]["error"]


# -- killed and interrupted -----------------------------------------------------------------


@pytest.fixture
def big_disk(fresh_guest: Callable[..., LabGuest]) -> Iterator[LabGuest]:
    """A guest with a second 2 GiB disk holding 1.5 GiB of data: its full backup takes
    seconds, long enough to kill the run while the job copies."""
    g = fresh_guest()
    image = g.data_disk.parent / "big.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "2G"], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 1536M", str(image)],
                   check=True, capture_output=True, timeout=120)
    st = g.data_disk.stat()
    os.chown(image, st.st_uid, st.st_gid)
    _dom(g).attachDevice(f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                         f"<source file='{image}'/><target dev='vdb' bus='virtio'/></disk>")
    yield g


def _start_backup(g: LabGuest, state: Path, store: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "virt_qga.cli.main", "-c", str(g.uri), "--json",
                             "backup", g.name, "--to", str(store)], cwd=ROOT,
                            env=dict(os.environ, VIRT_QGA_STATE_DIR=str(state)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_job_running(g: LabGuest, proc: subprocess.Popen[str]) -> None:
    import libvirt

    dom = _dom(g)
    deadline = time.monotonic() + 60
    while dom.jobStats(0).get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.02)


def _wait_thawed(g: LabGuest, proc: subprocess.Popen[str]) -> None:
    """After the job started: wait until the backup has thawed the guest (the job starts
    inside the frozen window). A test that disturbs "the job" must land after the thaw:
    before it, exit 8 (thaw not confirmed) is the right answer, not the one under test."""
    deadline = time.monotonic() + 60
    while agent(g, "guest-fsfreeze-status") != "thawed":
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.02)


def _kill_mid_job(g: LabGuest, state: Path, store: Path) -> None:
    """Start a backup of ``g`` and SIGKILL it while its job copies."""
    proc = _start_backup(g, state, store)
    _wait_job_running(g, proc)
    proc.kill()
    proc.communicate(timeout=30)


def _job_running(g: LabGuest) -> bool:
    import libvirt

    return bool(_dom(g).jobStats(0).get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE)


def test_sigterm_mid_job_aborts_it_and_leaves_nothing(big_disk: LabGuest, tmp_path: Path,
                                                      store: Path) -> None:
    g = big_disk
    proc = _start_backup(g, tmp_path / "state", store)
    _wait_job_running(g, proc)
    proc.terminate()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert json.loads(out)["exit_code"] == 130
    assert not _job_running(g)
    assert checkpoints(g) == []                               # the new checkpoint is gone
    assert list(store.rglob("*")) == [store / g.name]         # no partial, no chain directory
    assert not list((tmp_path / "state" / "journal").glob("*.json"))
    assert agent(g, "guest-fsfreeze-status") == "thawed"
    b = backup(g, tmp_path / "state", store)                  # the next run just works
    assert b["level"] == "full"


def test_sigkill_mid_job_then_recover_and_the_next_backup(big_disk: LabGuest, tmp_path: Path,
                                                          store: Path) -> None:
    g = big_disk
    state = tmp_path / "state"
    _kill_mid_job(g, state, store)
    assert list(store.glob(f"{g.name}/*/.*.partial"))          # what the dead run left
    rc, doc, err = cli(g, state, "recover", g.name)
    assert rc == 0, err
    [r] = doc["domains"]
    assert r["backup_journal"] is not None and r["backup_journal"]["owner_alive"] is False
    done = " | ".join(r["actions"])
    assert "deleted checkpoint" in done and "removed the partial backup" in done, done
    assert not _job_running(g) and checkpoints(g) == []
    assert not list(store.rglob(".*.partial"))
    rc, doc, err = cli(g, state, "recover", g.name)          # a second recover: nothing left
    assert rc == 0 and "no run left anything behind" in " ".join(doc["domains"][0]["actions"]), err
    b = backup(g, state, store)
    assert b["level"] == "full" and not any("dead backup run" in w for w in b["warnings"])


def test_sigkill_then_the_next_backup_cleans_up_by_itself(big_disk: LabGuest, tmp_path: Path,
                                                          store: Path) -> None:
    g = big_disk
    state = tmp_path / "state"
    _kill_mid_job(g, state, store)
    b = backup(g, state, store, "--wait-lock", "30")    # the dead run's thaw guard may still hold it
    assert b["level"] == "full"
    assert any("dead backup run" in w and "deleted checkpoint" in w for w in b["warnings"]), b["warnings"]
    assert checkpoints(g) == [f"vqga-{b['name']}"]
    assert len(list(store.glob(f"{g.name}/*/*/manifest.json"))) == 1


def test_snapshot_method_leftover_overlay_of_a_killed_run(fresh_guest: Callable[..., LabGuest],
                                                          tmp_path: Path, store: Path) -> None:
    """A backup killed during the snapshot method's copy leaves the domain on an overlay:
    recover says so truthfully and merges it back."""
    import shutil

    g = fresh_guest()
    state = tmp_path / "state"
    shim = tmp_path / "bin"
    shim.mkdir()
    real = shutil.which("qemu-img")
    (shim / "qemu-img").write_text(f'#!/bin/sh\n[ "$1" = convert ] && sleep 60\nexec {real} "$@"\n')
    (shim / "qemu-img").chmod(0o755)
    proc = subprocess.Popen([sys.executable, "-m", "virt_qga.cli.main", "-c", str(g.uri), "--json",
                             "backup", g.name, "--method", "snapshot", "--to", str(store)], cwd=ROOT,
                            env=dict(os.environ, VIRT_QGA_STATE_DIR=str(state),
                                     PATH=f"{shim}{os.pathsep}{os.environ['PATH']}"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while active_source(g) == str(g.data_disk):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.5)
    proc.kill()
    proc.communicate(timeout=30)
    rc, doc, err = cli(g, state, "recover", g.name)
    assert rc == 0, err
    done = " | ".join(doc["domains"][0]["actions"])
    assert "merged the snapshot method's overlay(s) back" in done, done
    assert active_source(g) == str(g.data_disk)


def _qemu_pid(g: LabGuest) -> int:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"qemu-system" in cmd and f"guest={g.name},".encode() in cmd:
            return int(proc.name)
    raise AssertionError(f"no QEMU process for {g.name}")


def _wait_agent(g: LabGuest, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            agent(g, "guest-ping")
            return
        except Exception:
            assert time.monotonic() < deadline, "the agent did not come back"
            time.sleep(0.5)


def _bitmaps(image: Path) -> list[str]:
    out = subprocess.run(["qemu-img", "info", "--output=json", "-U", str(image)], capture_output=True,
                         text=True, check=True).stdout
    return [b["name"] for b in json.loads(out)["format-specific"]["data"].get("bitmaps") or []]


def test_guest_destroyed_mid_job_then_the_next_runs_work(big_disk: LabGuest, tmp_path: Path,
                                                         store: Path) -> None:
    """The domain stops during the job: exit 6 with what happened, and nothing left: no
    partial, no journal, no checkpoint (libvirt deletes those of running domains only:
    its metadata goes, its bitmaps are removed from the images, also from the disk that
    was attached live)."""
    g = big_disk
    state = tmp_path / "state"
    big = g.data_disk.parent / "big.qcow2"
    proc = _start_backup(g, state, store)
    _wait_job_running(g, proc)
    _wait_thawed(g, proc)
    time.sleep(0.3)
    _dom(g).destroy()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 6, err
    [b] = json.loads(out)["backups"]
    assert "the domain stopped during the backup job" in b["error"] and b["warnings"] == [], b
    assert checkpoints(g) == [] and _bitmaps(g.data_disk) == [] and _bitmaps(big) == []
    assert list(store.rglob("*")) == [store / g.name]
    assert not list((state / "journal").glob("*.json"))
    off = backup(g, state, store)                            # shut off: an offline full backup
    assert (off["method"], off["level"]) == ("offline", "full")
    _dom(g).create()
    _wait_agent(g)
    again = backup(g, state, store)
    assert (again["method"], again["level"]) == ("backup-api", "full")
    assert checkpoints(g) == [f"vqga-{again['name']}"]


def test_libvirtd_restart_mid_job_is_waited_out(big_disk: LabGuest, lab: Any, tmp_path: Path,
                                                store: Path) -> None:
    """``systemctl restart libvirtd`` while the job copies: the job goes on in QEMU, the
    restarted daemon re-attaches to it, and the backup reconnects and completes."""
    g = big_disk
    state = tmp_path / "state"
    proc = _start_backup(g, state, store)
    _wait_job_running(g, proc)
    _wait_thawed(g, proc)
    time.sleep(0.3)
    assert _job_running(g) and proc.poll() is None           # the restart lands mid-job
    GuestAgent.for_domain(g.name, g.uri, timeout=10).ping()   # caches this process's connection
    lab.session.restart_daemon()
    GuestAgent.for_domain(g.name, g.uri, timeout=10).ping()   # ... which is found dead and reopened
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    [b] = json.loads(out)["backups"]
    assert b["level"] == "full" and b["bytes_written"] >= 1536 * 1024 * 1024
    assert checkpoints(g) == [f"vqga-{b['name']}"]
    rc, doc, err = cli(g, state, "backup-verify", b["directory"])
    assert rc == 0 and doc["checked"]["files"] == 2, err
