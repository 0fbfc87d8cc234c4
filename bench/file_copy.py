"""64 MiB push and pull: virt-qga cp vs naive guest-file-read/write loops, and peak RSS.

Run: ``flock /tmp/vqga-integration.lock python -m bench file_copy``

Per transport (libvirt, channel socket; qemu-ga 7.2 guests):

* virt-qga: ``workflows.files.push/pull`` (chunks sized to the transport, temp file +
  rename, verification off here so that only the transfer is timed; a verified run is
  reported beside it);
* naive 4 KiB: guest-file-write/read with the agent's default count (4096), one call
  per chunk, raw transport calls. Measured over the first 16 MiB only (it is per-call
  bound, so the rate is the same; 64 MiB at this rate would take minutes);
* 64 KiB: the same loop with 64 KiB chunks (the Ansible libvirt_qemu connection's size).

A chunk sweep fits time per chunk against chunk size (``a + b*size``) to show where
the time goes, and so what any chunking can gain over the 64 KiB loop.

Then the peak RSS of a fresh process copying 1, 16 and 64 MiB both ways: it grows
with the chunk (a 1 MiB file is one small chunk), not with the file (16 = 64 MiB).
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Report, lab_guest

SIZE = 64 * 1024 * 1024
NAIVE_4K_BYTES = 16 * 1024 * 1024
SWEEP_BYTES = 8 * 1024 * 1024
GUEST_FILE = "/tmp/bench-copy"


def _agent(g: Any) -> Any:
    from virt_qga.agent import GuestAgent

    if g.kind == "plain":
        return GuestAgent.for_socket(str(g.socket), timeout=60)
    return GuestAgent.for_domain(g.name, g.uri, timeout=60)


def naive_push(agent: Any, data: bytes, chunk: int, limit: int) -> float:
    t = agent.transport
    start = time.perf_counter()
    handle = t.execute("guest-file-open", {"path": GUEST_FILE, "mode": "wb"})
    try:
        for off in range(0, min(len(data), limit), chunk):
            t.execute("guest-file-write", {"handle": handle,
                                           "buf-b64": base64.b64encode(data[off:off + chunk]).decode()})
    finally:
        t.execute("guest-file-close", {"handle": handle})
    return time.perf_counter() - start


def naive_pull(agent: Any, chunk: int | None, limit: int) -> tuple[float, int]:
    t = agent.transport
    start = time.perf_counter()
    got = 0
    handle = t.execute("guest-file-open", {"path": GUEST_FILE, "mode": "rb"})
    try:
        while got < limit:
            args: dict[str, Any] = {"handle": handle}
            if chunk is not None:
                args["count"] = chunk
            r = t.execute("guest-file-read", args)
            got += len(base64.b64decode(r["buf-b64"]))
            if r["eof"]:
                break
    finally:
        t.execute("guest-file-close", {"handle": handle})
    return time.perf_counter() - start, got


def fit_line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares ``y = a + b*x``; returns (a, b)."""
    n = len(points)
    sx = sum(x for x, _ in points)
    sy = sum(y for _, y in points)
    sxx = sum(x * x for x, _ in points)
    sxy = sum(x * y for x, y in points)
    b = (n * sxy - sx * sy) / (n * sxx - sx * sx)
    return (sy - b * sx) / n, b


def sweep(report: Any, agent: Any, data: bytes, kind: str) -> None:
    """Time per chunk against chunk size, fitted as ``t = a + b * size``.

    ``a`` is what one call costs whatever its size (round trip, dispatch), ``b`` what
    each byte costs (base64 both ends, the agent's JSON lexer, the file I/O). The best
    any chunking can do against 64 KiB chunks is ``(a + b*64Ki) / (b*64Ki)``: when ``b``
    dominates, no client-side chunking beats the 64 KiB loop by much.
    """
    size = SWEEP_BYTES
    wsizes = [16 << 10, 64 << 10, 128 << 10] + ([512 << 10, 1 << 20] if kind == "socket" else [])
    rsizes = [16 << 10, 64 << 10, 256 << 10, 512 << 10, 1 << 20]
    for op, sizes in (("push", wsizes), ("pull", rsizes)):
        pts = []
        cells = []
        for c in sizes:
            if op == "push":
                t = naive_push(agent, data, c, size)
                moved = size
            else:
                t, moved = naive_pull(agent, c, size)
            per_chunk = t / (moved / c)
            pts.append((c / 1024, per_chunk * 1e3))
            cells.append(f"{c >> 10}K {mbps(moved, t):.2f}")
        # fit the small chunks only: past ~256 KiB libvirt's reply path bends the line
        a, b = fit_line([p for p in pts if p[0] <= 256])
        rates = {kib: mbps(int(kib * 1024), ms / 1e3) for kib, ms in pts}  # MB/s per chunk size
        best = max(rates.values())
        report(f"  {op}: " + ", ".join(cells) + " MB/s")
        report(f"        fit (<= 256 KiB): {a:.2f} ms per call + {b * 1024:.0f} ms per MiB; "
               f"per-byte share at 64 KiB: {b * 64 / (a + b * 64):.0%}; "
               f"best chunk measured vs 64 KiB: {best / rates[64]:.2f}x")


def mbps(nbytes: int, seconds: float) -> float:
    return nbytes / 1e6 / seconds


RSS_CHILD = r"""
import sys
from virt_qga.agent import GuestAgent
from virt_qga.workflows import files

def hwm():  # VmHWM: peak RSS of this process image (ru_maxrss survives exec from a big parent)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise SystemExit("no VmHWM")

kind, target, name, path, direction = sys.argv[1:6]
if kind == "plain":
    agent = GuestAgent.for_socket(target, timeout=60)
else:
    agent = GuestAgent.for_domain(name, target, timeout=60)
agent.ping()
base = hwm()
if direction == "push":
    files.push(agent, path, "/tmp/bench-rss", force=True)
else:
    files.pull(agent, "/tmp/bench-rss", path, force=True)
print(base, hwm())
"""


def peak_rss(g: Any, path: str, direction: str) -> tuple[int, int]:
    target = str(g.socket) if g.kind == "plain" else g.uri
    out = subprocess.run([sys.executable, "-c", RSS_CHILD, g.kind, target, g.name, path, direction],
                         capture_output=True, text=True, check=True, timeout=600,
                         env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent)))
    base, peak = (int(x) for x in out.stdout.split())
    return base, peak


def run_transport(report: Report, g: Any, src: Path, data: bytes, workdir: Path) -> None:
    from virt_qga.workflows import exec as gexec
    from virt_qga.workflows import files

    agent = _agent(g)
    kind = agent.transport.kind
    report(f"## {kind} (qemu-ga {agent.version}, guest {g.name})")
    wchunk = files.write_chunk_size(kind, agent.transport.max_request_bytes)
    rchunk = files.read_chunk_size(agent.transport.max_reply_bytes, kind)
    report(f"virt-qga chunks: write {wchunk // 1024} KiB, read {rchunk // 1024} KiB")

    res = files.push(agent, str(src), GUEST_FILE, force=True, verify=False)
    vq_push = res.duration
    dst = workdir / "pulled"
    res = files.pull(agent, GUEST_FILE, str(dst), force=True, verify=False)
    vq_pull = res.duration
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(data).digest()
    ver_push = files.push(agent, str(src), GUEST_FILE, force=True, verify=True).duration
    ver_pull = files.pull(agent, GUEST_FILE, str(dst), force=True, verify=True).duration

    p64 = naive_push(agent, data, 64 * 1024, SIZE)
    l64, got = naive_pull(agent, 64 * 1024, SIZE)
    assert got == SIZE
    p4 = naive_push(agent, data, 4096, NAIVE_4K_BYTES)
    l4, got4 = naive_pull(agent, None, NAIVE_4K_BYTES)

    rows = [
        ("push", mbps(SIZE, vq_push), mbps(SIZE, ver_push), mbps(SIZE, p64), mbps(NAIVE_4K_BYTES, p4)),
        ("pull", mbps(SIZE, vq_pull), mbps(SIZE, ver_pull), mbps(SIZE, l64), mbps(got4, l4)),
    ]
    report(f"{'':5} {'virt-qga':>10} {'+verify':>10} {'naive64K':>10} {'naive4K':>10}   "
           f"{'x vs 64K':>8} {'x vs 4K':>8}   (MB/s)")
    for name, vq, ver, n64, n4 in rows:
        report(f"{name:5} {vq:10.2f} {ver:10.2f} {n64:10.2f} {n4:10.2f}   {vq / n64:8.2f} {vq / n4:8.2f}")
    report(f"(64 MiB each; naive 4K over the first {NAIVE_4K_BYTES >> 20} MiB; "
           f"virt-qga 64 MiB push {vq_push:.1f} s, pull {vq_pull:.1f} s)")
    report(f"chunk sweep ({SWEEP_BYTES >> 20} MiB per point, raw guest-file-write/read loops):")
    sweep(report, agent, data, kind)
    gexec.run(agent, ["rm", "-f", GUEST_FILE, "/tmp/bench-rss"])
    agent.close()


def run_rss(report: Report, g: Any, workdir: Path) -> None:
    sizes = {"1 MiB": 1 << 20, "16 MiB": 16 << 20, "64 MiB": SIZE}
    paths = {}
    for label, size in sizes.items():
        paths[label] = workdir / f"rss-{size}"
        paths[label].write_bytes(os.urandom(size))
    kind = "socket" if g.kind == "plain" else "libvirt"
    for direction in ("push", "pull"):
        line = []
        for label, path in paths.items():
            if direction == "pull":  # put the right-sized file in the guest first
                peak_rss(g, str(path), "push")
                path = workdir / f"pulled-{label.replace(' ', '')}"
            base, peak = peak_rss(g, str(path), direction)
            line.append(f"{label}: peak {peak / 1024:.1f} MiB (+{(peak - base) / 1024:.1f} over start)")
        report(f"peak RSS {kind:7} {direction}: " + "; ".join(line))


def main() -> None:
    report = Report("file_copy")
    data = os.urandom(SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        src = workdir / "src"
        src.write_bytes(data)
        guests = [lab_guest("bench-copy-libvirt", agent="7.2"),
                  lab_guest("bench-copy-plain", agent="7.2", plain=True)]
        try:
            for g in guests:
                run_transport(report, g, src, data, workdir)
            report("## memory (fresh process, VmHWM in KiB -> MiB; verification on)")
            for g in guests:
                run_rss(report, g, workdir)
        finally:
            from virt_qga.lab import Lab

            for g in guests:
                Lab().destroy(g.name)
    report("target: >= 5x the 64 KiB baseline")
    path = report.save()
    print(f"saved {path}")


if __name__ == "__main__":
    main()
