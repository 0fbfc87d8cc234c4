"""Backups of several domains: ``virt-qga backup --jobs 3`` against ``--jobs 1``.

Three lab guests (libvirt, qemu-ga 7.2, TCG), each with DATA_MIB of random data
written into its data disk once. Each round backs up the three (``--level full``,
backup-api, into a store under /var/tmp) once with ``--jobs 1`` and once with
``--jobs 3``, interleaved, in one run. Reported per mode: wall time, the sum of the
per-domain times (what the domains would take one after the other), the effective
parallelism (sum / wall), and where the time went: the CPU time of the virt-qga
process (its SHA-256 of every image, the JSON, libvirt calls) and of the three QEMU
processes (the backup job's copy, plus the guests' own idle TCG loop) against the
wall time times the machine's cores.

Saves bench/results/backup_jobs.txt. Run: ``python -m bench backup_jobs``
(``BENCH_JOBS_ROUNDS``, default 5; ``BENCH_JOBS_DATA_MIB``, default 32).
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

ROUNDS = int(os.environ.get("BENCH_JOBS_ROUNDS", "5"))
DATA_MIB = int(os.environ.get("BENCH_JOBS_DATA_MIB", "32"))
GUESTS = 3
HZ = os.sysconf("SC_CLK_TCK")
#: The backup's own timings (BackupResult.timings_s): freeze + backupBegin + thaw, the
#: copy by QEMU's backup job, the SHA-256 of the images.
PHASES = ("start", "job", "checksum")


def _fill(g: Any) -> None:
    """DATA_MIB of random data in the guest's /data (once per guest)."""
    from virt_qga.workflows import exec as gexec
    from virt_qga.workflows.target import Target

    agent = Target(g.name, g.uri).agent(60.0)
    script = f"dd if=/dev/urandom of=/data/bench-jobs.bin bs=1M count={DATA_MIB} 2>/dev/null && sync"
    res = gexec.run(agent, ["/bin/sh", "-c", script], timeout=300)
    if res.status != 0:
        raise RuntimeError(f"{g.name}: filling /data failed: {res.stderr!r}")


def _qemu_pids(names: list[str]) -> list[int]:
    """The QEMU processes of the guests (their command line names the domain)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and b"qemu-system" in cmd[0] and any(f"guest={n},".encode() in a for a in cmd for n in names):
            pids.append(int(proc.name))
    return pids


def _cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / HZ


def _forget(uri: str, names: list[str], store: Path) -> None:
    """Every round a full backup of the same data: drop the stored backups and their
    checkpoints (else each round would leave one more bitmap per disk in QEMU)."""
    import libvirt

    conn = libvirt.open(uri)
    try:
        for d in names:
            shutil.rmtree(store / d, ignore_errors=True)
            for cp in conn.lookupByName(d).listAllCheckpoints():
                cp.delete()
    finally:
        conn.close()


def _run(uri: str, names: list[str], jobs: int, store: Path) -> dict[str, float]:
    qemu = _qemu_pids(names)
    q0, c0 = _cpu_s(qemu), os.times()
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "virt_qga.cli.main", "-c", uri, "--json", "backup", *names,
                        "--to", str(store), "--level", "full", "--jobs", str(jobs)],
                       capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    c1 = os.times()
    if p.returncode != 0:
        raise RuntimeError(f"backup --jobs {jobs} exited {p.returncode}: {p.stderr[-2000:]}")
    doc = json.loads(p.stdout)
    per = [b["timings_s"]["total"] for b in doc["backups"]]
    phases = {k: max(b["timings_s"].get(k, 0.0) for b in doc["backups"]) for k in PHASES}
    copied = sum(b["bytes_written"] for b in doc["backups"])
    _forget(uri, names, store)
    return {"wall": wall, "sum": sum(per), "max": max(per), "mib": copied / 2**20,
            "virt_qga_cpu": (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system),
            "qemu_cpu": _cpu_s(qemu) - q0, **{f"phase_{k}": v for k, v in phases.items()}}


def main() -> None:
    report = Report("backup_jobs")
    names = [f"bench-jobs-{i}" for i in range(1, GUESTS + 1)]
    guests = [lab_guest(n) for n in names]
    for g in guests:
        _fill(g)
    uri = str(guests[0].uri)
    store = Path(tempfile.mkdtemp(prefix="vqga-bench-jobs-", dir="/var/tmp"))
    store.chmod(0o755)  # QEMU (the lab daemon's user) writes the backup targets
    _forget(uri, names, store)  # checkpoints an earlier run left
    cores = os.cpu_count() or 1
    results: dict[int, list[dict[str, float]]] = {1: [], GUESTS: []}
    load0 = os.getloadavg()[0]
    try:
        for _ in range(ROUNDS):
            for jobs in (1, GUESTS):
                results[jobs].append(_run(uri, names, jobs, store))
    finally:
        shutil.rmtree(store, ignore_errors=True)
    report(f"{GUESTS} lab guests (libvirt, qemu-ga 7.2, TCG), {DATA_MIB} MiB random data each in /data; "
           f"full backups (backup-api), {ROUNDS} rounds interleaved; {cores} cores, load average "
           f"{load0:.1f} -> {os.getloadavg()[0]:.1f} (the machine is shared)")
    med = {j: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for j, rs in results.items()}
    for jobs, m in med.items():
        busy = (m["virt_qga_cpu"] + m["qemu_cpu"]) / (m["wall"] * cores)
        report(f"--jobs {jobs}: wall median {m['wall']:6.2f} s  (per-domain sum {m['sum']:6.2f} s, "
               f"slowest {m['max']:5.2f} s, parallelism {m['sum'] / m['wall']:4.2f})  "
               f"{m['mib']:.0f} MiB written")
        phases = ", ".join(f"{k} {m[f'phase_{k}']:4.2f} s" for k in PHASES)
        report(f"          slowest domain's phases: {phases}")
        report(f"          CPU: virt-qga {m['virt_qga_cpu']:5.2f} s, QEMU x{GUESTS} {m['qemu_cpu']:5.2f} s "
               f"= {100 * busy:3.0f} % of {cores} cores over the wall time")
    speedup = med[1]["wall"] / med[GUESTS]["wall"]
    report(f"speedup --jobs {GUESTS} over --jobs 1: {speedup:.2f}x "
           f"(per-domain time grows {med[GUESTS]['max'] / (med[1]['sum'] / GUESTS):.2f}x under contention)")
    print(f"saved {report.save()}")


if __name__ == "__main__":
    main()
