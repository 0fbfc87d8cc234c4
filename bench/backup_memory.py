"""Peak memory of backup, backup-verify and restore against the size of the data.

virt-qga never holds a disk image in memory: the backup job (QEMU) or ``qemu-img`` moves
the data, and virt-qga reads the stored files only to hash them, in fixed chunks. This
benchmark checks that claim the way a user would meet it: one lab guest with an extra
disk into which the guest writes N MiB of random data, then a full backup, a
``backup-verify`` and a ``restore`` of it, each as its own ``virt-qga`` process, for
several N. Each process reports its own peak RSS (``VmHWM`` of /proc/self/status, read
at exit), so the child processes it starts (qemu-img, the thaw guard) are not counted:
those are not virt-qga's memory, and their own use does not depend on virt-qga either.

Target: the peak does not grow with N. Saves bench/results/backup_memory.txt.
Run: ``python -m bench backup_memory`` (``BENCH_BACKUP_MEMORY_MIB``, default
``64,256,1024``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.backup_chain import VDB_XML, _sh, attach_disk
from bench.common import Report, lab_guest

SIZES = [int(x) for x in os.environ.get("BENCH_BACKUP_MEMORY_MIB", "64,256,1024").split(",")]

#: Runs the CLI's main() and writes this process's peak RSS (KiB) to argv[1] at exit.
RSS_CHILD = r"""
import atexit, sys

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise SystemExit("no VmHWM")

out = sys.argv[1]
atexit.register(lambda: open(out, "w").write(str(hwm())))
sys.argv = ["virt-qga", *sys.argv[2:]]
from virt_qga.cli.main import main
main()
"""


def _run(state: str, *args: str) -> tuple[int, dict[str, Any]]:
    """One virt-qga process; its peak RSS in KiB and its JSON document."""
    with tempfile.NamedTemporaryFile(suffix=".hwm") as f:
        env = dict(os.environ, VIRT_QGA_STATE_DIR=state,
                   PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        p = subprocess.run([sys.executable, "-c", RSS_CHILD, f.name, "--json", *args], env=env,
                           capture_output=True, text=True, timeout=1800)
        if p.returncode != 0:
            raise RuntimeError(f"virt-qga {args[2] if len(args) > 2 else args}: exit "
                               f"{p.returncode}: {p.stdout[-500:]} {p.stderr[-500:]}")
        return int(Path(f.name).read_text()), json.loads(p.stdout)


def _detach(g: Any, image: Path) -> None:
    import libvirt

    dom = libvirt.open(g.uri).lookupByName(g.name)
    for cp in dom.listAllCheckpoints(0):
        cp.delete(0)
    dom.detachDevice(VDB_XML.format(image=image))


def main() -> None:
    from virt_qga.agent import GuestAgent

    rep = Report("backup_memory")
    g = lab_guest("bench-mem")
    agent = GuestAgent.for_domain(g.name, g.uri, timeout=60)
    rep(f"one lab guest (libvirt, qemu-ga {g.agent}, TCG); a disk of N MiB random data (dd in the "
        "guest) beside the 64 MiB data disk; each command a fresh process, its own peak RSS "
        "(VmHWM at exit, children not counted)")
    rep(f"{'N MiB':>6} {'stored MiB':>10}  {'backup':>10} {'verify':>10} {'restore':>10}")
    peaks: dict[str, list[int]] = {"backup": [], "verify": [], "restore": []}
    for mib in SIZES:
        image = attach_disk(g, f"bench-mem-{mib}", mib + 64)
        work = Path(tempfile.mkdtemp(prefix="bench-mem-", dir="/var/tmp"))
        work.chmod(0o755)  # QEMU (the lab daemon's user) writes the backup job's targets here
        try:
            for _ in range(100):
                try:
                    _sh(agent, "test -b /dev/vdb", timeout=10)
                    break
                except RuntimeError:
                    time.sleep(0.2)
            _sh(agent, f"dd if=/dev/urandom of=/dev/vdb bs=1M count={mib} conv=fsync 2>/dev/null",
                timeout=1800)
            store, state = work / "store", str(work / "state")
            store.mkdir(mode=0o755)
            kib_b, doc = _run(state, "-c", g.uri, "backup", g.name, "--to", str(store), "--level", "full")
            [b] = doc["backups"]
            kib_v, _ = _run(state, "backup-verify", b["directory"])
            kib_r, _ = _run(state, "restore", b["directory"], "--to", str(work / "restored"))
            stored = sum(f.stat().st_size for f in Path(b["directory"]).glob("*.qcow2")) / 2**20
            for k, v in (("backup", kib_b), ("verify", kib_v), ("restore", kib_r)):
                peaks[k].append(v)
            rep(f"{mib:>6} {stored:>10.1f}  {kib_b / 1024:>7.1f} MiB {kib_v / 1024:>6.1f} MiB "
                f"{kib_r / 1024:>6.1f} MiB")
        finally:
            _detach(g, image)
            shutil.rmtree(work, ignore_errors=True)
            image.unlink(missing_ok=True)
    for k, vs in peaks.items():
        rep(f"{k}: peak RSS from {min(vs) / 1024:.1f} to {max(vs) / 1024:.1f} MiB over "
            f"{SIZES[0]}-{SIZES[-1]} MiB of data (spread {(max(vs) - min(vs)) / 1024:.1f} MiB)")
    rep.save()
