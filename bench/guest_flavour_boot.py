"""Boot time of the lab's guest flavours: busybox vs python, side by side.

Run: ``flock /tmp/vqga-integration.lock python -m bench guest_flavour_boot``

One libvirt guest of each flavour is set up with ``lab up``; then, round after round
(the order rotating), each variant is cold-booted: the domain is powered off, its
``<initrd>`` set to the variant's image, started, and timed until its agent answers
guest-ping. Variants: ``busybox`` and ``python`` (the two flavours' images, gzip level 6)
and ``python-raw`` (the python archive uncompressed, to see whether the kernel's inflate
of ~48 MB under TCG costs boot time). Also reported: image
sizes and a first ``python3 -c pass`` after each python boot.
``BENCH_BOOT_ROUNDS`` (default 5) sets the number of rounds.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import Report, pct

VARIANTS = ("busybox", "python", "python-raw")


def cold_boot(lab: Any, conn: Any, guest: Any, initrd: Path, timeout: float = 180.0) -> float:
    """Power off, point <initrd> at ``initrd``, start; seconds until guest-ping answers."""
    dom = conn.lookupByName(guest.name)
    if dom.isActive():
        dom.destroy()
    xml = re.sub(r"<initrd>[^<]*</initrd>", f"<initrd>{initrd}</initrd>", dom.XMLDesc(0))
    dom = conn.defineXML(xml)
    start = time.perf_counter()
    dom.create()
    deadline = start + timeout
    while True:
        try:
            lab.ping(guest, timeout=2.0)
            return time.perf_counter() - start
        except Exception:
            if time.perf_counter() > deadline:
                raise
            time.sleep(0.05)


def main() -> None:
    import libvirt

    from virt_qga.agent import GuestAgent
    from virt_qga.lab import Lab
    from virt_qga.workflows import exec as gexec

    rounds = int(os.environ.get("BENCH_BOOT_ROUNDS", "5"))
    report = Report("guest_flavour_boot")
    lab = Lab()
    images = {f: Path(lab.build(agent="7.2", flavour=f).initrd) for f in ("busybox", "python")}
    raw = images["python"].with_name("bench-python-raw.img")
    with gzip.open(images["python"], "rb") as src, raw.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1024 * 1024)
    raw.chmod(0o644)
    images["python-raw"] = raw
    sizes = {v: images[v].stat().st_size for v in VARIANTS}
    guests = {f: lab.up(count=1, name=f"bench-boot-{f}", flavour=f, timeout=180)[0]
              for f in ("busybox", "python")}
    conn = libvirt.open(lab.uri)
    boots: dict[str, list[float]] = {v: [] for v in VARIANTS}
    first_python: list[float] = []
    try:
        for r in range(rounds):
            order = VARIANTS[r % 3:] + VARIANTS[:r % 3]
            for variant in order:
                guest = guests["busybox" if variant == "busybox" else "python"]
                boots[variant].append(cold_boot(lab, conn, guest, images[variant]))
                if variant != "busybox":
                    agent = GuestAgent.for_domain(guest.name, lab.uri, timeout=30)
                    t0 = time.perf_counter()
                    res = gexec.run(agent, ["/usr/bin/python3", "-c", "pass"], timeout=120)
                    first_python.append(time.perf_counter() - t0)
                    assert res.status == 0, res.stderr
                    agent.close()
    finally:
        conn.close()
        for g in guests.values():
            lab.destroy(g.name)
        raw.unlink(missing_ok=True)
    for variant in VARIANTS:
        b = boots[variant]
        report(f"{variant:12} image {sizes[variant] / 1e6:5.1f} MB  start -> agent answers: median "
               f"{statistics.median(b):5.2f} s  p95 {pct(b, 95):5.2f} s  "
               f"(runs: {', '.join(f'{x:.2f}' for x in b)})")
    base = statistics.median(boots["busybox"])
    report(f"python / busybox: {statistics.median(boots['python']) / base:.2f}x; python-raw / busybox: "
           f"{statistics.median(boots['python-raw']) / base:.2f}x; first `python3 -c pass` after a boot: "
           f"median {statistics.median(first_python):.2f} s")
    report(f"({rounds} rounds, order rotating, libvirt session daemon, TCG, qemu-ga 7.2)")
    print(f"saved {report.save()}")


if __name__ == "__main__":
    main()
