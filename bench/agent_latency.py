"""Agent round-trip latency: virt-qga against raw libvirt-python and virsh, in one run.

* GuestAgent.ping() over libvirt vs a bare ``qemuAgentCommand`` loop (target <= 1.10x).
* Socket transport vs libvirt transport, ping latency (the socket should not be slower).
* ``virt-qga ping`` as a process vs ``virsh qemu-agent-command ... guest-ping`` (target <= 6x).
* ``virt-qga --help`` wall time (target < 150 ms).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys

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
    ratio = statistics.median(ours) / statistics.median(raw)
    rep(f"guest-ping x{N}, one process, qemu-ga 7.2 (TCG guest)")
    rep(f"  bare qemuAgentCommand       {summary(raw)}")
    rep(f"  GuestAgent.ping (libvirt)   {summary(ours)}   ratio {ratio:.3f}x (target <= 1.10x)")
    rep(f"  GuestAgent.ping (socket)    {summary(sk)}   socket/libvirt "
        f"{statistics.median(sk) / statistics.median(ours):.3f}x")

    exe = shutil.which("virt-qga") or f"{sys.executable} -m virt_qga.cli.main"
    env = {**os.environ, "VIRT_QGA_CONNECT": g.uri}
    virsh = ["virsh", "-c", g.uri, "qemu-agent-command", g.name, ping_json]
    ours_cmd = [*exe.split(), "ping", g.name]

    def run(cmd: list[str]) -> None:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env, timeout=60)

    run(virsh)
    run(ours_cmd)
    v = timed(lambda: run(virsh), PROCS)
    q = timed(lambda: run(ours_cmd), PROCS)
    h = timed(lambda: run([*exe.split(), "--help"]), PROCS)
    rep(f"process wall time x{PROCS}")
    rep(f"  virsh qemu-agent-command    {summary(v)}")
    q_ratio = statistics.median(q) / statistics.median(v)
    rep(f"  virt-qga ping               {summary(q)}   ratio {q_ratio:.2f}x (target <= 6x)")
    rep(f"  virt-qga --help             {summary(h)}   (target < 150 ms)")
    sock.close()
    print(f"saved {rep.save()}")


if __name__ == "__main__":
    main()
