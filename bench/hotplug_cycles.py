"""vCPU and DIMM hot-plug cycles in the lab: virt-qga's workflows vs one trusted libvirt call.

For each of N cycles (default 10):

* **vCPUs, virt-qga**: a fresh guest (2 vCPUs) is grown to 4 and shrunk back to 2 with
  :func:`virt_qga.workflows.vcpus.set_vcpu_count`; records each operation's time, its
  final state, whether reconciliation was needed (libvirt's answer was not the truth,
  or the views needed more than one read to agree) and what QEMU and the guest showed.
  A fresh guest per cycle because, on QEMU 7.2, a vCPU unplug leaves libvirt's XML
  stale and the next hot-plug crashed QEMU (virt-qga refuses it).
* **vCPUs, naive**: another fresh guest, ``setVcpusFlags(4, LIVE)`` then
  ``setVcpusFlags(2, LIVE)``, trusting the return value; the truth is read afterwards.
* **DIMM, both**: on one guest each, ``memory plug 256M`` / ``memory unplug 256M``
  cycles through the workflows, and raw ``attachDeviceFlags`` / ``detachDeviceFlags``
  without asking the guest first.

Run: ``flock /tmp/vqga-integration.lock python -m bench hotplug_cycles``
(``BENCH_HOTPLUG_CYCLES=N`` to change N). Saves bench/results/hotplug_cycles.txt.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import xml.etree.ElementTree as ET
from typing import Any

from bench.common import Report

N = int(os.environ.get("BENCH_HOTPLUG_CYCLES", "10"))


def _fresh(lab: Any, tag: str) -> Any:
    [g] = lab.up(agent="7.2", name=f"bench-hp-{tag}-{os.getpid()}")
    return g


def _truth(g: Any) -> tuple[list[int], list[int], list[int]]:
    """(QEMU present, guest online, libvirt enabled), read raw."""
    import libvirt
    import libvirt_qemu

    dom = libvirt.open(g.uri).lookupByName(g.name)
    qemu = sorted(int(c["cpu-index"]) for c in json.loads(libvirt_qemu.qemuMonitorCommand(
        dom, '{"execute":"query-cpus-fast"}', 0))["return"])
    guest = sorted(int(v["logical-id"]) for v in json.loads(libvirt_qemu.qemuAgentCommand(
        dom, '{"execute":"guest-get-vcpus"}', 10, 0))["return"] if v["online"])
    root = ET.fromstring(dom.XMLDesc(0))
    lv = sorted(int(v.get("id", "-1")) for v in root.findall("vcpus/vcpu") if v.get("enabled") == "yes")
    return qemu, guest, lv


def _ours(g: Any, n: int) -> tuple[float, dict[str, Any]]:
    from virt_qga.agent import GuestAgent
    from virt_qga.errors import OperationError
    from virt_qga.host import Domain
    from virt_qga.workflows.vcpus import set_vcpu_count

    dom = Domain.lookup(g.name, g.uri)
    agent = GuestAgent.for_domain(g.name, g.uri)
    t = time.perf_counter()
    try:
        res = set_vcpu_count(dom, agent, n, timeout=60).to_dict()
    except OperationError as exc:
        res = dict(exc.result or {"state": exc.state})
    return time.perf_counter() - t, res


def _naive(g: Any, n: int) -> tuple[float, str]:
    import libvirt

    dom = libvirt.open(g.uri).lookupByName(g.name)
    t = time.perf_counter()
    try:
        dom.setVcpusFlags(n, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        said = "ok"
    except libvirt.libvirtError as exc:
        said = f"error: {str(exc)[:60]}"
    return time.perf_counter() - t, said


def _med(xs: list[float]) -> str:
    return f"median {statistics.median(xs):7.3f} s  min {min(xs):7.3f}  max {max(xs):7.3f}" if xs else "n/a"


def vcpu_cycles(out: Report, lab: Any) -> None:
    grow: list[float] = []
    shrink: list[float] = []
    n_grow: list[float] = []
    n_shrink: list[float] = []
    rec_needed = 0
    libvirt_wrong = 0
    states: dict[str, int] = {}
    naive_lied = 0
    out("## vCPUs: grow 2->4, shrink 4->2 (fresh guest per cycle)")
    out(f"{'cycle':>5}  {'ours grow':>9}  {'ours shrink':>11}  {'state':<13} {'recon':<5} "
        f"{'QEMU/guest/libvirt after':<28} | {'naive grow':>10} {'naive shrink':>12}  naive said / truth")
    for i in range(1, N + 1):
        g = _fresh(lab, f"o{i}")
        try:
            tg, rg = _ours(g, 4)
            ts, rs = _ours(g, 2)
            q, gu, lv = _truth(g)
        finally:
            lab.destroy(g.name)
        grow.append(tg)
        shrink.append(ts)
        rec = rs.get("reconciliation") or {}
        needed = bool(rec.get("needed"))
        rec_needed += needed
        libvirt_wrong += bool(rec.get("libvirt_unknown"))
        states[str(rs.get("state"))] = states.get(str(rs.get("state")), 0) + 1
        h = _fresh(lab, f"n{i}")
        try:
            tng, said_g = _naive(h, 4)
            time.sleep(0.5)
            _tq, tgu, _ = _truth(h)
            tns, said_s = _naive(h, 2)
            sq, _sgu, slv = _truth(h)
        finally:
            lab.destroy(h.name)
        n_grow.append(tng)
        n_shrink.append(tns)
        lied = (said_g == "ok" and len(tgu) != 4) or (said_s != "ok" and sq == [0, 1]) or (
            said_s == "ok" and sq != [0, 1])
        naive_lied += lied
        out(f"{i:>5}  {tg:8.3f}s  {ts:10.3f}s  {rg.get('state')}/{rs.get('state'):<10} "
            f"{'yes' if needed else 'no':<5} {str(q) + '/' + str(gu) + '/' + str(lv):<28} | "
            f"{tng:9.3f}s {tns:11.3f}s  grow {said_g}, guest online {tgu}; shrink {said_s[:40]}, "
            f"QEMU {sq} libvirt {slv}")
    out()
    out(f"ours  grow 2->4:   {_med(grow)}")
    out(f"ours  shrink 4->2: {_med(shrink)}")
    out(f"naive grow 2->4:   {_med(n_grow)}   (one libvirt call; new vCPUs stay offline in the guest)")
    out(f"naive shrink 4->2: {_med(n_shrink)}")
    out(f"ratio ours/naive (median): grow {statistics.median(grow) / statistics.median(n_grow):.1f}x, "
        f"shrink {statistics.median(shrink) / statistics.median(n_shrink):.1f}x")
    out(f"reconciliation needed on shrink: {rec_needed}/{N}; libvirt's own answer was not the truth: "
        f"{libvirt_wrong}/{N}; final states: {states}")
    out(f"naive runs whose libvirt answer disagreed with QEMU/guest: {naive_lied}/{N}")


def dimm_cycles(out: Report, lab: Any) -> None:
    import libvirt

    from virt_qga.agent import GuestAgent
    from virt_qga.connection import start_event_loop
    from virt_qga.host import Domain
    from virt_qga.host.memory import dimm_xml, parse_memory_layout
    from virt_qga.workflows.memory import plug, unplug

    start_event_loop()
    out()
    out("## DIMM 256 MiB: plug + unplug, N cycles on one guest each")
    g = _fresh(lab, "mem")
    h = _fresh(lab, "memnaive")
    p: list[float] = []
    u: list[float] = []
    np_: list[float] = []
    nu: list[float] = []
    notes: list[str] = []
    try:
        dom = Domain.lookup(g.name, g.uri)
        agent = GuestAgent.for_domain(g.name, g.uri)
        for _ in range(N):
            t = time.perf_counter()
            plug(dom, agent, 256 << 20)
            p.append(time.perf_counter() - t)
            t = time.perf_counter()
            r = unplug(dom, agent, size=256 << 20)
            u.append(time.perf_counter() - t)
            via = next((s.get("via") for s in r.steps if s["step"] == "host-detach"), "?")
            notes.append(str(via))
        ndom = libvirt.open(h.uri).lookupByName(h.name)
        for _ in range(N):
            t = time.perf_counter()
            ndom.attachDeviceFlags(dimm_xml(256 << 20), libvirt.VIR_DOMAIN_AFFECT_LIVE)
            np_.append(time.perf_counter() - t)
            time.sleep(0.5)
            [d] = parse_memory_layout(ET.fromstring(ndom.XMLDesc(0))).dimms
            t = time.perf_counter()
            ndom.detachDeviceFlags(d.xml, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            while parse_memory_layout(ET.fromstring(ndom.XMLDesc(0))).dimms:
                time.sleep(0.05)
            nu.append(time.perf_counter() - t)
    finally:
        lab.destroy(g.name)
        lab.destroy(h.name)
    out(f"ours  plug (attach + blocks online verified): {_med(p)}")
    out(f"ours  unplug (offline + detach + verified):   {_med(u)}   removal seen via {set(notes)}")
    out(f"naive attach (libvirt call only):             {_med(np_)}")
    out(f"naive detach (call + poll XML until gone):    {_med(nu)}")
    out(f"ratio ours/naive (median): plug {statistics.median(p) / statistics.median(np_):.1f}x, "
        f"unplug {statistics.median(u) / statistics.median(nu):.1f}x")


def main() -> None:
    from virt_qga.lab import Lab

    out = Report("hotplug_cycles")
    out(f"# lab: libvirt 9.0, QEMU 7.2 TCG, qemu-ga 7.2; N={N}")
    lab = Lab()
    vcpu_cycles(out, lab)
    dimm_cycles(out, lab)
    out(f"saved to {out.save()}")


if __name__ == "__main__":
    main()
