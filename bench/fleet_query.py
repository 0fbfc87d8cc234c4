"""Read-only commands over 10 guests: one ``virt-qga`` process against a virsh loop.

Run: ``./dev bench fleet_query`` (boots 10 lab guests, ``bench-fleet-1`` .. ``-10``,
and destroys them at the end).

For each command, interleaved round by round (so load and drift hit both alike):

* ``virt-qga --json CMD D1 .. D10`` (bounded concurrency, default ``--jobs``), and
  ``virt-qga --json CMD --all`` (every running domain of the lab);
* the obvious alternative: a shell loop running ``virsh qemu-agent-command D JSON``
  for each domain, one after the other, output to /dev/null.

Target: virt-qga at least 3x faster than the loop. ``osinfo`` does more work than its
virsh counterpart (guest-info first, to refuse a command this agent lacks, and a
spec-validated reply), which the ratio includes.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

from bench.common import Report, summary, timed

GUESTS = 10
ROUNDS = 10
COMMANDS = {"ping": "guest-ping", "osinfo": "guest-get-osinfo", "fsinfo": "guest-get-fsinfo"}


def main() -> None:
    from virt_qga.lab import Lab

    rep = Report("fleet_query")
    lab = Lab()
    guests = lab.up(count=GUESTS, agent="7.2", name="bench-fleet", timeout=300)
    try:
        names = [g.name for g in guests]
        uri = str(guests[0].uri)
        script = Path(sys.executable).with_name("virt-qga")
        exe = [str(script)] if script.exists() else [sys.executable, "-m", "virt_qga.cli.main"]
        env = {**os.environ, "VIRT_QGA_CONNECT": uri}
        n_all = len(json.loads(subprocess.run([*exe, "--json", "ping", "--all"], env=env,
                                              capture_output=True, text=True, timeout=120).stdout)["domains"])
        rep(f"{GUESTS} lab guests (libvirt, qemu-ga 7.2, TCG), {ROUNDS} rounds interleaved; "
            f"--all finds {n_all} running domains")

        def run(cmd: list[str]) -> None:
            # No timeout= (subprocess would poll the exit with sleeps of up to 50 ms, which
            # land in the measurement); every command has its own --timeout.
            p = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if p.returncode != 0:
                raise RuntimeError(f"{cmd[:4]}... exited {p.returncode}: {p.stderr[-300:]!r}")

        for cmd, agent_cmd in COMMANDS.items():
            payload = json.dumps({"execute": agent_cmd})
            loop = " ".join(f"virsh -c {shlex.quote(uri)} qemu-agent-command {shlex.quote(n)} "
                            f"{shlex.quote(payload)} >/dev/null &&" for n in names) + " true"
            variants = {
                "virsh loop": ["bash", "-c", loop],
                "virt-qga D1..D10": [*exe, "--json", cmd, *names],
                "virt-qga --all": [*exe, "--json", cmd, "--all"],
            }
            for argv in variants.values():  # warm-up, and a check that each works
                run(argv)
            wall: dict[str, list[float]] = {k: [] for k in variants}
            for _ in range(ROUNDS):
                for key, argv in variants.items():
                    wall[key] += timed(lambda a=argv: run(a), 1)  # type: ignore[misc]
            base = statistics.median(wall["virsh loop"])
            rep(f"{cmd} ({agent_cmd}) over {GUESTS} domains")
            for key, samples in wall.items():
                speed = base / statistics.median(samples)
                note = "" if key == "virsh loop" else f"   {speed:.2f}x faster (target >= 3x)"
                rep(f"  {key:18} {summary(samples)}{note}")
    finally:
        for g in guests:
            lab.destroy(g.name)
    print(f"saved {rep.save()}")


if __name__ == "__main__":
    main()
