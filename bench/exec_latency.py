"""Round trip of `true` in the guest: virt-qga exec vs a hand-written 0.1 s poll loop.

Run: ``flock /tmp/vqga-integration.lock python -m bench exec_latency``

Both start the process with guest-exec and poll guest-exec-status until it exited.
The hand-written loop sleeps a fixed 0.1 s before each poll (the common recipe);
virt-qga backs off from 1 ms, doubling up to 100 ms. Same agent, same transport,
interleaved, N runs each; medians compared.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.common import Report, lab_guest, pct

N = 40


def naive(agent: Any) -> None:
    t = agent.transport
    pid = t.execute("guest-exec", {"path": "true", "capture-output": True})["pid"]
    while True:
        time.sleep(0.1)
        if t.execute("guest-exec-status", {"pid": pid})["exited"]:
            return


def main() -> None:
    from virt_qga.agent import GuestAgent
    from virt_qga.lab import Lab
    from virt_qga.workflows import exec as gexec

    report = Report("exec_latency")
    guests = [lab_guest("bench-exec-libvirt", agent="7.2"),
              lab_guest("bench-exec-plain", agent="10.0", plain=True)]
    try:
        for g in guests:
            agent = (GuestAgent.for_socket(str(g.socket), timeout=30) if g.kind == "plain"
                     else GuestAgent.for_domain(g.name, g.uri, timeout=30))
            agent.capabilities()
            ours: list[float] = []
            theirs: list[float] = []
            polls: list[int] = []
            for _ in range(3):  # warm-up
                gexec.run(agent, ["true"])
                naive(agent)
            for _ in range(N):
                start = time.perf_counter()
                res = gexec.run(agent, ["true"])
                ours.append(time.perf_counter() - start)
                polls.append(res.polls)
                assert res.status == 0
                start = time.perf_counter()
                naive(agent)
                theirs.append(time.perf_counter() - start)
            mo, mt = statistics.median(ours), statistics.median(theirs)
            npolls = statistics.median(polls)
            report(f"{agent.transport.kind:8} qemu-ga {agent.version:7}  virt-qga exec: median "
                   f"{mo * 1e3:7.1f} ms p95 {pct(ours, 95) * 1e3:7.1f} ms ({npolls:.0f} polls)"
                   f"  | 0.1 s loop: median {mt * 1e3:7.1f} ms p95 {pct(theirs, 95) * 1e3:7.1f} ms"
                   f"  | {mt / mo:5.2f}x faster")
            agent.close()
    finally:
        for g in guests:
            Lab().destroy(g.name)
    report(f"(N={N} each, interleaved; target >= 3x faster)")
    print(f"saved {report.save()}")


if __name__ == "__main__":
    main()
