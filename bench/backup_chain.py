"""Backups: virt-qga's backup-api chains against a bare qemu-img copy and virtnbdbackup.

Two lab guests with the same layout: the 64 MiB data disk (vda) and a 512 MiB disk
(vdb) into which the guest writes 256 MiB of random data (dd from /dev/urandom). One
guest is backed up by virt-qga, the other by virtnbdbackup (Debian's package; the
backup API in pull mode over NBD, its own stream format), interleaved round by round:

* **full**: ``virt-qga backup DOM --level full`` against ``qemu-img convert -U -O qcow2``
  of the same two images (the floor: a plain copy of the data, no freeze, no
  checksum) and against ``virtnbdbackup -l full``;
* **incremental** after the guest rewrites 1 % of the data (2.56 MiB of vdb):
  ``virt-qga backup DOM`` (auto: inc) against its own full (bytes and time) and
  against ``virtnbdbackup -l inc``;
* **frozen window** seen by the guest (``/bin/fsprobe`` on /data, as in
  bench/snapshot_window.py): a backup-api backup against a ``--method snapshot`` one.

Targets (issue 10): full >= 0.9x the speed of qemu-img convert; the incremental >= 10x
fewer bytes and >= 5x less time than the full. Saves bench/results/backup_chain.txt.
Run: ``python -m bench backup_chain`` (``BENCH_BACKUP_ROUNDS``, default 3;
``BENCH_BACKUP_DATA_MIB``, default 256, to see how the fixed costs weigh at other sizes).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Report, lab_guest
from bench.snapshot_window import _probe_gap_ms, _probe_start

ROUNDS = int(os.environ.get("BENCH_BACKUP_ROUNDS", "3"))
WINDOW_ROUNDS = int(os.environ.get("BENCH_BACKUP_WINDOW_ROUNDS", "5"))
DATA_MIB = int(os.environ.get("BENCH_BACKUP_DATA_MIB", "256"))
CHANGE_KIB = DATA_MIB * 1024 // 100          # 1 % of the data


def _sh(agent: Any, script: str, timeout: float = 600) -> None:
    from virt_qga.workflows import exec as gexec

    res = gexec.run(agent, ["/bin/sh", "-c", script], timeout=timeout)
    if res.status != 0:
        raise RuntimeError(f"guest command failed ({res.status}): {script}: {res.stderr!r}")


def _add_disk(g: Any) -> Path:
    return attach_disk(g, "bench-vdb", max(512, 2 * DATA_MIB))


def attach_disk(g: Any, name: str, mib: int) -> Path:
    """A new qcow2 of ``mib`` MiB beside the guest's data disk, owned like it, attached
    live as ``vdb``; its path."""
    import libvirt

    image = Path(g.data_disk).parent / f"{name}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), f"{mib}M"], check=True)
    st = Path(g.data_disk).stat()
    os.chown(image, st.st_uid, st.st_gid)
    dom = libvirt.open(g.uri).lookupByName(g.name)
    dom.attachDevice(VDB_XML.format(image=image))
    return image


#: The extra disk's device XML (attach and detach).
VDB_XML = ("<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
           "<source file='{image}'/><target dev='vdb' bus='virtio'/></disk>")


def _fill(agent: Any) -> float:
    t0 = time.perf_counter()
    for _ in range(100):  # the new disk shows up in the guest shortly after the attach
        try:
            _sh(agent, "test -b /dev/vdb", timeout=10)
            break
        except RuntimeError:
            time.sleep(0.2)
    _sh(agent, f"dd if=/dev/urandom of=/dev/vdb bs=1M count={DATA_MIB} conv=fsync 2>/dev/null")
    return time.perf_counter() - t0


def _change(agent: Any, i: int) -> None:
    """Rewrite 1 % of the data, at a different place each round."""
    seek = (i * 7 + 3) * CHANGE_KIB // 64
    _sh(agent, f"dd if=/dev/urandom of=/dev/vdb bs=64k count={CHANGE_KIB // 64} seek={seek} "
               "conv=fsync,notrunc 2>/dev/null")


def _virt_qga(uri: str, domain: str, store: Path, state: str, *args: str) -> tuple[float, dict[str, Any]]:
    env = dict(os.environ, VIRT_QGA_STATE_DIR=state, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "virt_qga.cli.main", "-c", uri, "--json", "backup", domain,
                          "--to", str(store), *args], env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    doc = json.loads(out.stdout)
    [b] = doc["backups"]
    if out.returncode != 0:
        raise RuntimeError(f"virt-qga backup failed: {b.get('error')}")
    return wall, b


def _vnb(lab_root: Path, domain: str, out: Path, level: str) -> tuple[float, int]:
    """virtnbdbackup as the lab's daemon user (it takes every qemu+... URI for remote)."""
    from virt_qga.lab.paths import LabPaths

    paths = LabPaths(lab_root)
    before = _tree_bytes(out)
    t0 = time.perf_counter()
    proc = subprocess.run(["runuser", "-u", "qgalab", "--", "env", f"XDG_RUNTIME_DIR={paths.run}",
                           f"HOME={paths.home}", "virtnbdbackup", "-U", "qemu:///session", "-d", domain,
                           "-l", level, "-o", str(out)], capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"virtnbdbackup -l {level} failed: {proc.stderr.strip()[-400:]}")
    return wall, _tree_bytes(out) - before


def _tree_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.exists() else 0


def _convert(images: list[Path], into: Path) -> float:
    t0 = time.perf_counter()
    for img in images:
        subprocess.run(["qemu-img", "convert", "-U", "-O", "qcow2", str(img), str(into / img.name)],
                       check=True, timeout=900)
    return time.perf_counter() - t0


def _med(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    from virt_qga.agent import GuestAgent
    from virt_qga.lab import Lab

    rep = Report("backup_chain")
    lab = Lab()
    tag = os.getpid()
    ga = lab_guest(f"bkq{tag}")
    gb = lab_guest(f"bkv{tag}")
    uri = str(ga.uri)
    base = Path(tempfile.mkdtemp(prefix="vqga-bench-bk-", dir="/var/tmp"))
    base.chmod(0o755)
    state = tempfile.mkdtemp(prefix="vqga-bench-state-")
    try:
        images = {}
        agents = {}
        for g in (ga, gb):
            images[g.name] = [Path(g.data_disk), _add_disk(g)]
            agents[g.name] = GuestAgent.for_domain(g.name, uri, timeout=60)
        fill = [_fill(agents[g.name]) for g in (ga, gb)]
        full_q: list[float] = []
        full_q_bytes: list[int] = []
        full_conv: list[float] = []
        full_v: list[float] = []
        full_v_bytes: list[int] = []
        inc_q: list[float] = []
        inc_q_bytes: list[int] = []
        inc_v: list[float] = []
        inc_v_bytes: list[int] = []
        phases: dict[str, list[float]] = {}
        for i in range(ROUNDS):
            store = base / f"q{i}"
            store.mkdir()
            vnb = base / f"v{i}"
            vnb.mkdir()
            os.chown(vnb, *_uid_gid(ga.data_disk))
            conv = base / f"c{i}"
            conv.mkdir()
            wall, b = _virt_qga(uri, ga.name, store, state, "--level", "full")
            full_q.append(wall)
            full_q_bytes.append(b["bytes_written"])
            for k, v in b["timings_s"].items():
                phases.setdefault(k, []).append(float(v))
            full_conv.append(_convert(images[ga.name], conv))
            w, n = _vnb(lab.paths.root, gb.name, vnb, "full")
            full_v.append(w)
            full_v_bytes.append(n)
            for g in (ga, gb):
                _change(agents[g.name], i)
            wall, b = _virt_qga(uri, ga.name, store, state)
            if b["level"] != "inc":
                raise RuntimeError(f"expected an incremental: {b['level_reason']}")
            inc_q.append(wall)
            inc_q_bytes.append(b["bytes_written"])
            w, n = _vnb(lab.paths.root, gb.name, vnb, "inc")
            inc_v.append(w)
            inc_v_bytes.append(n)
            shutil.rmtree(conv)
            print(f"round {i + 1}/{ROUNDS}: full {full_q[-1]:.2f} s (convert {full_conv[-1]:.2f}, "
                  f"virtnbdbackup {full_v[-1]:.2f}); inc {inc_q[-1]:.2f} s {inc_q_bytes[-1] >> 10} KiB "
                  f"(virtnbdbackup {inc_v[-1]:.2f} s)", file=sys.stderr, flush=True)

        # frozen window: backup-api vs the snapshot method, guest-measured
        win_api: list[float] = []
        win_snap: list[float] = []
        host_api: list[float] = []
        host_snap: list[float] = []
        agent = agents[ga.name]
        for i in range(WINDOW_ROUNDS):
            for method, gaps, host in (("backup-api", win_api, host_api),
                                       ("snapshot", win_snap, host_snap)):
                store = base / f"w{method}{i}"
                store.mkdir()
                pid = _probe_start(agent)
                time.sleep(1.0)
                _w, b = _virt_qga(uri, ga.name, store, state, "--method", method, "--level", "full",
                                  "--disk", "vda")
                gaps.append(_probe_gap_ms(agent, pid))
                host.append(float(b["frozen_window_ms"] or 0))
                shutil.rmtree(store)

        total_mib = sum(full_q_bytes) / len(full_q_bytes) / 2**20
        rep(f"two lab guests (qemu-ga {ga.agent}, TCG, 2 host cores shared with other work): "
            "vda 64 MiB "
            f"+ vdb {max(512, 2 * DATA_MIB)} MiB with {DATA_MIB} MiB written by the guest "
            "(dd from /dev/urandom, "
            f"{_med(fill):.0f} s); {ROUNDS} rounds, interleaved")
        rep("virt-qga: python -m virt_qga.cli.main backup DOM --to STORE [--level full] (backup-api, "
            "frozen only around backupBegin, SHA-256 of every image)")
        rep("qemu-img: qemu-img convert -U -O qcow2 IMAGE OUT, both images one after the other")
        rep("virtnbdbackup 1.9.15: runuser -u qgalab -- virtnbdbackup -U qemu:///session -d DOM "
            "-l full|inc -o DIR")
        rep()
        rep("full backup, wall time (median):")
        rep(f"  virt-qga        {_med(full_q):7.2f} s   {total_mib:7.1f} MiB written")
        rep(f"  qemu-img copy   {_med(full_conv):7.2f} s")
        vnb_mib = _med([float(x) for x in full_v_bytes]) / 2**20
        rep(f"  virtnbdbackup   {_med(full_v):7.2f} s   {vnb_mib:7.1f} MiB stored")
        speed = _med(full_conv) / _med(full_q)
        rep(f"  virt-qga speed / qemu-img copy speed: {speed:.2f}x (target >= 0.90: "
            f"{'met' if speed >= 0.9 else 'NOT met'}); / virtnbdbackup: {_med(full_v) / _med(full_q):.2f}x")
        rep("  virt-qga phases (median s): " + ", ".join(f"{k} {_med(v):.2f}" for k, v in phases.items()))
        rep()
        rep(f"incremental after rewriting 1 % ({CHANGE_KIB} KiB), median:")
        rep(f"  virt-qga        {_med(inc_q):7.2f} s   {_med([float(x) for x in inc_q_bytes]) / 2**20:7.2f} "
            "MiB written")
        rep(f"  virtnbdbackup   {_med(inc_v):7.2f} s   {_med([float(x) for x in inc_v_bytes]) / 2**20:7.2f} "
            "MiB stored")
        fewer = _med([float(x) for x in full_q_bytes]) / max(1.0, _med([float(x) for x in inc_q_bytes]))
        faster = _med(full_q) / _med(inc_q)
        rep(f"  virt-qga inc vs its full: {fewer:.1f}x fewer bytes (target >= 10: "
            f"{'met' if fewer >= 10 else 'NOT met'}), {faster:.1f}x less time (target >= 5: "
            f"{'met' if faster >= 5 else 'NOT met'}); vs virtnbdbackup inc: {_med(inc_v) / _med(inc_q):.2f}x")
        rep()
        rep(f"frozen window seen by the guest (fsprobe on /data, {WINDOW_ROUNDS} each, vda only):")
        rep(f"  backup-api      median {_med(win_api):7.1f} ms   (host-measured {_med(host_api):.1f} ms)")
        rep(f"  snapshot method median {_med(win_snap):7.1f} ms   (host-measured {_med(host_snap):.1f} ms)")
        path = rep.save()
        print(f"saved {path}", file=sys.stderr)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
        for g in (ga, gb):
            lab.destroy(g.name)


def _uid_gid(p: Any) -> tuple[int, int]:
    st = Path(p).stat()
    return st.st_uid, st.st_gid


if __name__ == "__main__":
    main()
