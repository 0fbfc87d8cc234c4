"""Agent round-trip latency: virt-qga against raw libvirt-python and virsh, in one run.

* GuestAgent.ping() over libvirt vs a bare ``qemuAgentCommand`` loop (target <= 1.10x).
* Socket transport vs libvirt transport, ping latency (the socket should not be slower).
* ``virt-qga ping`` as a process vs ``virsh qemu-agent-command ... guest-ping`` (target <= 4x),
  interleaved run by run; also over the socket.
* Start-up of every command: ``virt-qga CMD --help`` for each command (imports the
  command's module and parses, as a real run does before it talks to the agent); the
  slowest one against the same virsh run (target <= 4x), and ``virt-qga --help``
  (target < 150 ms).

The CLI runs as the virtualenv's ``virt-qga`` script, as a user runs it.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench.common import Report, lab_guest, summary, timed

N = 500
PROCS = 20


def main() -> None:
    import libvirt
    import libvirt_qemu

    from virt_qga.agent import GuestAgent

    rep = Report("agent_latency")
    g = lab_guest("bench-lat", agent="7.2")
    p = lab_guest("bench-lat-plain", agent="7.2", plain=True)
    conn = libvirt.open(g.uri)
    dom = conn.lookupByName(g.name)
    agent = GuestAgent.for_domain(g.name, g.uri, timeout=5)  # same timeout as the bare loop
    sock = GuestAgent.for_socket(p.socket, timeout=5)
    ping_json = '{"execute":"guest-ping"}'

    def bare() -> None:
        libvirt_qemu.qemuAgentCommand(dom, ping_json, 5, 0)

    for fn in (bare, agent.ping, sock.ping):  # warm up
        for _ in range(20):
            fn()
    raw: list[float] = []
    ours: list[float] = []
    sk: list[float] = []
    for _ in range(N):  # alternate call by call, so load and drift hit all three alike
        raw += timed(bare, 1)
        ours += timed(agent.ping, 1)
        sk += timed(sock.ping, 1)
    ping_ratio = statistics.median(ours) / statistics.median(raw)
    rep(f"guest-ping x{N}, one process, qemu-ga 7.2 (TCG guest)")
    rep(f"  bare qemuAgentCommand       {summary(raw)}")
    rep(f"  GuestAgent.ping (libvirt)   {summary(ours)}   ratio {ping_ratio:.3f}x (target <= 1.10x)")
    rep(f"  GuestAgent.ping (socket)    {summary(sk)}   socket/libvirt "
        f"{statistics.median(sk) / statistics.median(ours):.3f}x")

    script = Path(sys.executable).with_name("virt-qga")
    exe = [str(script)] if script.exists() else [sys.executable, "-m", "virt_qga.cli.main"]
    env = {**os.environ, "VIRT_QGA_CONNECT": g.uri}
    virsh = ["virsh", "-c", g.uri, "qemu-agent-command", g.name, ping_json]
    sock.close()  # a plain QEMU channel serves one client: free it for the process
    runs: dict[str, list[str]] = {
        "virsh": virsh,
        "ping": [*exe, "ping", g.name],
        "ping-socket": [*exe, "--socket", p.socket, "ping", p.name],
        "help": [*exe, "--help"],
    }
    from virt_qga.cli.main import COMMANDS

    for name in COMMANDS:
        runs[f"{name} --help"] = [*exe, name, "--help"]

    def run(cmd: list[str]) -> None:
        # No timeout= here: with one, subprocess polls for the exit with sleeps of up to
        # 50 ms, which lands in the measurement (it inflated earlier runs by ~30-60 ms).
        # Every command has its own deadline (--timeout) instead.
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)

    for cmd in runs.values():
        run(cmd)
    wall: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(PROCS):  # interleaved, so load and drift hit every variant alike
        for key, cmd in runs.items():
            wall[key] += timed(lambda c=cmd: run(c), 1)  # type: ignore[misc]
    v = wall["virsh"]

    def ratio(key: str) -> float:
        return statistics.median(wall[key]) / statistics.median(v)

    rep(f"process wall time x{PROCS}, interleaved ({script if script.exists() else 'python -m'})")
    rep(f"  virsh qemu-agent-command    {summary(v)}")
    rep(f"  virt-qga ping               {summary(wall['ping'])}   ratio {ratio('ping'):.2f}x "
        "(target <= 4x)")
    rep(f"  virt-qga --socket S ping    {summary(wall['ping-socket'])}   ratio {ratio('ping-socket'):.2f}x")
    rep(f"  virt-qga --help             {summary(wall['help'])}   (target < 150 ms)")
    starts = sorted((k for k in wall if k.endswith(" --help")), key=ratio)
    slowest = starts[-1]
    rep(f"  virt-qga CMD --help, {len(starts)} commands: fastest {starts[0].split()[0]} "
        f"{ratio(starts[0]):.2f}x, median {ratio(starts[len(starts) // 2]):.2f}x, slowest "
        f"{slowest.split()[0]} {statistics.median(wall[slowest]) * 1e3:.1f} ms = {ratio(slowest):.2f}x "
        "(target <= 4x)")
    print(f"saved {rep.save()}")


if __name__ == "__main__":
    main()
