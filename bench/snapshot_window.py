"""Frozen window of a consistent snapshot, measured inside the guest: virt-qga vs libvirt.

For each of N rounds (interleaved, so drift hits both alike):

* ``/bin/fsprobe /data/probe.log 3`` is started in the guest (guest-exec); it appends a
  monotonic timestamp about every millisecond, and its writes block while /data is
  frozen, so the largest gap between lines is the frozen window the guest's
  applications saw;
* after 1 s, one snapshot is taken: ``virt-qga snapshot DOM`` (external, as a process,
  ``--json`` for its own phase timings) or ``virsh snapshot-create-as DOM --disk-only
  --atomic --quiesce --no-metadata --diskspec vda,file=...``;
* the probe log is read back and its largest gap computed; the overlay is committed
  back (blockcommit --active --pivot --shallow) so the chain stays one image long.

Prints median/p95 of the guest-measured window for both, the ratio (target: virt-qga
median <= 1.2x libvirt's), and where virt-qga's freeze->thaw path spends its time.
Saves to bench/results/snapshot_window.txt. Run: ``python -m bench snapshot_window``.
"""

from __future__ import annotations

import itertools
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

from bench.common import Report, lab_guest, pct

N = int(os.environ.get("BENCH_SNAPSHOT_ROUNDS", "20"))
PROBE_SECONDS = 3


def _probe_start(agent: Any) -> int:
    reply = agent.exec("/bin/sh", arg=["-c", "rm -f /data/probe.log; exec /bin/fsprobe "
                                       f"/data/probe.log {PROBE_SECONDS}"], capture_output=True)
    return int(reply["pid"])


def _probe_gap_ms(agent: Any, pid: int) -> float:
    from virt_qga.workflows import exec as gexec

    gexec.wait(agent, pid, timeout=PROBE_SECONDS + 30)
    res = gexec.run(agent, ["/bin/cat", "/data/probe.log"], timeout=30)
    stamps = [int(x) for x in res.stdout.split() if x.strip()]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return max(gaps) / 1e6 if gaps else float("nan")


def _stats(xs: list[float]) -> str:
    return f"median {statistics.median(xs):8.2f} ms   p95 {pct(xs, 95):8.2f} ms   " \
           f"min {min(xs):7.2f}   max {max(xs):7.2f}"


def main() -> None:
    from virt_qga.agent import GuestAgent
    from virt_qga.host import Domain
    from virt_qga.host.snapshots import commit_external

    rep = Report("snapshot_window")
    g = lab_guest(f"snapwin{os.getpid()}", agent="7.2")
    uri = str(g.uri)
    host = Domain.lookup(g.name, uri)
    agent = GuestAgent.for_domain(g.name, uri, timeout=30)
    base = str(g.data_disk)
    folder = Path(base).parent
    state = tempfile.mkdtemp(prefix="vqga-bench-state-")
    env = dict(os.environ, VIRT_QGA_STATE_DIR=state,
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    virsh = shutil.which("virsh") or "virsh"

    ours_gap: list[float] = []
    nopre_gap: list[float] = []
    lv_gap: list[float] = []
    lv_wall: list[float] = []
    windows: dict[str, list[float]] = {"ours": [], "nopre": []}
    walls: dict[str, list[float]] = {"ours": [], "nopre": []}
    phases: dict[str, dict[str, list[float]]] = {"ours": {}, "nopre": {}}

    def ours(i: int, variant: str = "ours") -> None:
        cmd = [sys.executable, "-m", "virt_qga.cli.main", "-c", uri, "--json", "snapshot", g.name,
               "--name", f"bench-{variant}{i}"]
        if variant == "nopre":
            cmd.append("--no-precreate")
        t0 = time.perf_counter()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        walls[variant].append((time.perf_counter() - t0) * 1e3)
        if out.returncode != 0:
            raise RuntimeError(f"virt-qga snapshot failed: {out.stderr.strip()}")
        data = json.loads(out.stdout)
        windows[variant].append(float(data["frozen_window_ms"]))
        for k, v in data["timings_ms"].items():
            phases[variant].setdefault(k, []).append(float(v))

    def run_ours(i: int) -> None:
        ours(i, "ours")

    def run_nopre(i: int) -> None:
        ours(i, "nopre")

    def run_libvirt(i: int) -> None:
        overlay = str(folder / f"data.bench-l{i}.qcow2")
        cmd = [virsh, "-c", uri, "snapshot-create-as", g.name, f"bench-l{i}", "--disk-only",
               "--atomic", "--quiesce", "--no-metadata", "--diskspec", f"vda,file={overlay}"]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        lv_wall.append((time.perf_counter() - t0) * 1e3)
        if out.returncode != 0:
            raise RuntimeError(f"virsh snapshot-create-as failed: {out.stderr.strip()}")

    # Warm-up: one of each, not counted.
    for i, fn in enumerate((run_ours, run_nopre, run_libvirt)):
        fn(1000 + i)
        commit_external(host, ["vda"], timeout=120)
    for d in (windows, walls, phases):
        for v in d.values():
            v.clear()
    lv_wall.clear()

    for i in range(N):
        trio = [(run_ours, ours_gap), (run_nopre, nopre_gap), (run_libvirt, lv_gap)]
        trio = trio[i % 3:] + trio[:i % 3]  # rotate who goes first
        for fn, gaps in trio:
            pid = _probe_start(agent)
            time.sleep(1.0)
            fn(i)
            gaps.append(_probe_gap_ms(agent, pid))
            commit_external(host, ["vda"], timeout=120)
        print(f"round {i + 1}/{N}: virt-qga {ours_gap[-1]:.1f} ms, --no-precreate "
              f"{nopre_gap[-1]:.1f} ms, libvirt {lv_gap[-1]:.1f} ms", file=sys.stderr, flush=True)
    shutil.rmtree(state, ignore_errors=True)

    rep(f"guest {g.name} (qemu-ga {g.agent}, TCG, 2 host cores shared with other work), {N} "
        "snapshots per variant, interleaved (order rotated each round); external disk-only "
        "overlay of vda, committed back after each")
    rep("virt-qga:               python -m virt_qga.cli.main -c URI --json snapshot DOM --name N "
        "(default: overlay pre-created, REUSE_EXT)")
    rep("virt-qga --no-precreate: same, libvirt creates the overlay inside the window")
    rep("libvirt:                virsh -c URI snapshot-create-as DOM N --disk-only --atomic --quiesce "
        "--no-metadata --diskspec vda,file=DIR/data.N.qcow2")
    rep()
    rep("frozen window seen by the guest (largest gap in /bin/fsprobe's 1 ms write loop on /data):")
    rep(f"  virt-qga                {_stats(ours_gap)}")
    rep(f"  virt-qga --no-precreate {_stats(nopre_gap)}")
    rep(f"  libvirt --quiesce       {_stats(lv_gap)}")
    for label, xs in (("virt-qga", ours_gap), ("virt-qga --no-precreate", nopre_gap)):
        ratio = statistics.median(xs) / statistics.median(lv_gap)
        ratio95 = pct(xs, 95) / pct(lv_gap, 95)
        rep(f"  ratio {label}/libvirt: median {ratio:.2f}x, p95 {ratio95:.2f}x  (target median "
            f"<= 1.20x: {'met' if ratio <= 1.2 else 'NOT met'})")
    rep()
    for variant, label in (("ours", "virt-qga"), ("nopre", "virt-qga --no-precreate")):
        rep(f"{label}: host-measured window (freeze reply -> thaw reply):")
        rep(f"  {'window':<17} {_stats(windows[variant])}")
        rep(f"{label}: phases (host clock, per run):")
        for k in ("connect", "agent_check", "plan", "precreate", "guard_ready_wait", "freeze",
                  "snapshot", "thaw", "verify", "total"):
            if k in phases[variant]:
                rep(f"  {k:<17} {_stats(phases[variant][k])}")
        rep()
    rep("whole command, wall time (process start to exit):")
    rep(f"  virt-qga                {_stats(walls['ours'])}")
    rep(f"  virt-qga --no-precreate {_stats(walls['nopre'])}")
    rep(f"  virsh                   {_stats(lv_wall)}")
    # Agent round trips on this connection, for the breakdown.
    rtt: list[float] = []
    st: list[float] = []
    for _ in range(50):
        t0 = time.perf_counter()
        agent.ping()
        rtt.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        agent.fsfreeze_status()
        st.append((time.perf_counter() - t0) * 1e3)
    rep()
    rep("agent round trips through libvirt (same connection, 50 each):")
    rep(f"  guest-ping             {_stats(rtt)}")
    rep(f"  guest-fsfreeze-status  {_stats(st)}")
    path = rep.save()
    print(f"saved {path}", file=sys.stderr)
    from virt_qga.lab import Lab

    Lab().destroy(g.name)


if __name__ == "__main__":
    main()
