"""One play through two connection plugins: virt_qga.guest_agent.qga vs community.libvirt.libvirt_qemu.

Run: ``flock /tmp/vqga-integration.lock python -m bench ansible_connection``
(needs the bench extra: ``pip install -c constraints.txt -e '.[test,bench]'``, which brings
the ``ansible`` package and with it community.libvirt).

The play is the same for both: 20 small tasks (5 command, 5 stat, 5 file, 5 copy of a
short text) and one copy of a 16 MiB random file, against one python-flavour lab guest
reached through the lab's session-mode libvirt (``qemu+unix:///session?socket=...``;
libvirt_qemu takes it as ``ansible_libvirt_uri``). Every task has ``ignore_errors`` and
``ignore_unreachable``, so a failing task is counted and the play goes on. The runs
alternate plugin by plugin (the first one switching each round), so both see the same
load; between runs the guest's /tmp/bench is removed, and after each run the big file's
SHA-256 is checked in the guest. Wall time is ansible-playbook's, process start to exit.
``BENCH_ANSIBLE_ROUNDS`` (default 2) sets the number of rounds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Report

REPO = Path(__file__).resolve().parents[1]
COLLECTIONS = REPO / "ansible"
GUEST = "bench-ansible"
BIG = 16 * 1024 * 1024
PLUGINS = ("virt_qga.guest_agent.qga", "community.libvirt.libvirt_qemu")
BIG_TASK = "copy 16 MiB"


@dataclass
class Run:
    plugin: str
    wall: float
    rc: int
    failed_tasks: list[str]
    big_ok: bool
    errors: list[str] = field(default_factory=list)
    big_copy_s: float | None = None
    task_s: dict[str, float] = field(default_factory=dict)  # task name -> seconds

    @property
    def failures(self) -> int:
        """Failed or unreachable tasks, plus a 16 MiB copy that 'succeeded' with a wrong file."""
        return len(self.failed_tasks) + (0 if self.big_ok or BIG_TASK in self.failed_tasks else 1)


def play(big: Path) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = []
    for i in range(1, 6):  # first: they create /tmp/bench for the copies
        tasks.append({"name": f"file {i}", "ansible.builtin.file": {"path": f"/tmp/bench/d{i}",
                                                                     "state": "directory"}})
    for i, cmd in enumerate(["cat /etc/hostname", "uname -r", "id -u", "ls /", "true"], 1):
        tasks.append({"name": f"command {i}", "ansible.builtin.command": cmd})
    paths = ["/etc/passwd", "/etc/os-release", "/tmp", "/usr/bin/python3", "/etc/hostname"]
    for i, path in enumerate(paths, 1):
        tasks.append({"name": f"stat {i}", "ansible.builtin.stat": {"path": path}})
    for i in range(1, 6):
        tasks.append({"name": f"copy {i}", "ansible.builtin.copy": {"content": f"small file {i}\n",
                                                                     "dest": f"/tmp/bench/f{i}.txt"}})
    tasks.append({"name": BIG_TASK, "ansible.builtin.copy": {"src": str(big), "dest": "/tmp/bench/big.bin"}})
    for t in tasks:
        t.update({"ignore_errors": True, "ignore_unreachable": True})
    return [{"name": "bench", "hosts": "guest", "gather_facts": False, "tasks": tasks}]


def inventory(plugin: str, uri: str, *names: str) -> dict[str, Any]:
    """The guest (and ``names``, other domains) as hosts named like their domains (libvirt_qemu
    takes the domain from inventory_hostname)."""
    host: dict[str, Any] = {"ansible_connection": plugin, "ansible_python_interpreter": "/usr/bin/python3"}
    if plugin.startswith("community.libvirt"):
        host["ansible_libvirt_uri"] = uri
    else:
        host["ansible_virt_qga_uri"] = uri
    return {"all": {"children": {"guest": {"hosts": {n: dict(host) for n in (GUEST, *names)}}}}}


#: What the probes check, in the report's order.
PROBES = {
    "signal": "raw `sh -c 'kill -TERM $$'` reports rc 143",
    "shell": "raw runs in a shell (`echo a | tr a b` prints b)",
    "timeout": "a task `timeout` leaves no process behind in the guest",
    "no_log": "guest output of a no_log task never shows, even at -vvv",
    "stopped": "a defined but stopped domain is unreachable, not a task failure",
}
#: Printed by the guest (``$((6 * 7))`` evaluated there), never part of a command line: a
#: command may be displayed at -vvv (as ssh does), its output must not.
PROBE_MARK = "qga-bench-no-log-42"


def probe(tmp: Path, plugin: str, uri: str, agent: Any, stopped: str) -> dict[str, bool]:
    """The defect checks of the docs, as pass/fail per plugin (raw tasks only: quick)."""
    from virt_qga.workflows import exec as gexec

    opts = {"ignore_errors": True, "ignore_unreachable": True}
    tasks = [
        {"name": "signal", "ansible.builtin.raw": "sh -c 'kill -TERM $$'", **opts},
        {"name": "shell", "ansible.builtin.raw": "echo a | tr a b", **opts},
        {"name": "timeout", "ansible.builtin.raw": "sleep 47", "timeout": 4, **opts},
    ]
    plays = [{"hosts": GUEST, "gather_facts": False, "tasks": tasks},
             {"hosts": stopped, "gather_facts": False,
              "tasks": [{"name": "stopped", "ansible.builtin.raw": "true", **opts}]}]
    proc = ansible_playbook(tmp, inventory(plugin, uri, stopped), plays, f"probe-{plugin}")
    results: dict[str, Any] = {}
    try:
        for p in json.loads(proc.stdout)["plays"]:
            for t in p["tasks"]:
                for r in t["hosts"].values():
                    results[t["task"]["name"]] = r
    except (ValueError, KeyError):
        pass
    time.sleep(1)
    left = gexec.run(agent, ["sh", "-c", "ps -o args | grep -c '^sleep 47'; pkill -f 'sleep 47'; true"],
                     timeout=60).stdout.split()
    secret = [{"hosts": GUEST, "gather_facts": False, "tasks": [
        {"name": "secret", "no_log": True, **opts,
         "ansible.builtin.raw": "/bin/sh -c 'echo qga-bench-no-log-$((6 * 7))'"}]}]
    shown = ansible_playbook(tmp, inventory(plugin, uri), secret, f"nolog-{plugin}", False, "-vvv")
    return {
        "signal": results.get("signal", {}).get("rc") == 143,
        "shell": str(results.get("shell", {}).get("stdout", "")).strip() == "b",
        "timeout": bool(results.get("timeout", {}).get("failed")) and left[:1] == [b"0"],
        "no_log": shown.returncode == 0 and PROBE_MARK not in shown.stdout + shown.stderr,
        "stopped": bool(results.get("stopped", {}).get("unreachable")),
    }


def define_stopped(uri: str, like: str) -> str:
    """Define (never start) a copy of domain ``like``: a domain without a running agent."""
    import re as _re

    import libvirt

    conn = libvirt.open(uri)
    try:
        xml = conn.lookupByName(like).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        name = f"{like}-off"
        xml = _re.sub(r"<uuid>[^<]*</uuid>", "", xml.replace(f"<name>{like}</name>", f"<name>{name}</name>"))
        conn.defineXML(xml)
        return name
    finally:
        conn.close()


def _seconds(duration: dict[str, str]) -> float:
    from datetime import datetime

    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    end, begin = datetime.strptime(duration["end"], fmt), datetime.strptime(duration["start"], fmt)
    return (end - begin).total_seconds()


def ansible_playbook(tmp: Path, inv: dict[str, Any], play_doc: list[dict[str, Any]], tag: str,
                     json_output: bool = True, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp / f"inv-{tag}.json").write_text(json.dumps(inv))
    (tmp / f"play-{tag}.json").write_text(json.dumps(play_doc))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_NOCOLOR="1",
               ANSIBLE_RETRY_FILES_ENABLED="False", ANSIBLE_LOCAL_TEMP=str(tmp / "local-tmp"))
    if json_output:
        env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    for var in ("ANSIBLE_PIPELINING", "VIRT_QGA_CONNECT"):
        env.pop(var, None)
    return subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i",
                           str(tmp / f"inv-{tag}.json"), str(tmp / f"play-{tag}.json"), *args],
                          env=env, capture_output=True, text=True, timeout=3600)


def run_once(tmp: Path, plugin: str, uri: str, agent: Any, digest: str,
             play_doc: list[dict[str, Any]]) -> Run:
    from virt_qga.workflows import exec as gexec

    gexec.run(agent, ["rm", "-rf", "/tmp/bench"], timeout=60)
    start = time.monotonic()
    proc = ansible_playbook(tmp, inventory(plugin, uri), play_doc, plugin)
    wall = time.monotonic() - start
    failed: list[str] = []
    errors: list[str] = []
    big_s = None
    try:
        doc = json.loads(proc.stdout)
        tasks = doc["plays"][0]["tasks"]
    except (ValueError, KeyError, IndexError):
        tasks = []
        failed.append("the whole play")
        errors.append(" ".join((proc.stderr or proc.stdout).split())[-200:])
    task_s: dict[str, float] = {}
    for t in tasks:
        name = t["task"]["name"]
        res = t["hosts"].get(GUEST, {})
        task_s[name] = _seconds(t["task"]["duration"])
        if name == BIG_TASK:
            big_s = task_s[name]
        if res.get("failed") or res.get("unreachable"):
            failed.append(name)
            errors.append(f"{name}: " + " ".join(str(res.get("msg", "")).split())[:150])
    res = gexec.run(agent, ["sha256sum", "/tmp/bench/big.bin"], timeout=120)
    big_ok = res.status == 0 and res.stdout.split(b" ", 1)[0].decode() == digest
    return Run(plugin, wall, proc.returncode, failed, big_ok, errors, big_s, task_s)


def main() -> None:
    from virt_qga.agent import GuestAgent
    from virt_qga.lab import Lab

    if importlib.util.find_spec("ansible_collections.community.libvirt") is None:
        raise SystemExit("bench.ansible_connection needs community.libvirt: "
                         "pip install -c constraints.txt -e '.[test,bench]'")
    rounds = int(os.environ.get("BENCH_ANSIBLE_ROUNDS", "2"))
    report = Report("ansible_connection")
    lab = Lab()
    [guest] = lab.up(count=1, name=GUEST, flavour="python", timeout=180)
    assert guest.uri
    runs: list[Run] = []
    try:
        agent = GuestAgent.for_domain(guest.name, guest.uri, timeout=30)
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            data = os.urandom(BIG)
            (tmp / "big.bin").write_bytes(data)
            digest = hashlib.sha256(data).hexdigest()
            play_doc = play(tmp / "big.bin")
            stopped = define_stopped(guest.uri, GUEST)
            probes = {plugin: probe(tmp, plugin, guest.uri, agent, stopped) for plugin in PLUGINS}
            lab.destroy(stopped)
            for r in range(rounds):
                order = PLUGINS if r % 2 == 0 else PLUGINS[::-1]
                for plugin in order:
                    run = run_once(tmp, plugin, guest.uri, agent, digest, play_doc)
                    runs.append(run)
                    print(f"  round {r + 1} {plugin}: {run.wall:.1f} s, {run.failures} failed, big file "
                          f"{'ok' if run.big_ok else 'WRONG'}", flush=True)
        agent.close()
    finally:
        lab.destroy(GUEST)
    report(f"guest: python flavour, qemu-ga {guest.agent}, libvirt session daemon over "
           f"qemu+unix:///session?socket=...; {rounds} rounds, alternating; 20 small tasks + 16 MiB copy")
    walls: dict[str, float] = {}
    for plugin in PLUGINS:
        mine = [r for r in runs if r.plugin == plugin]
        walls[plugin] = statistics.median(r.wall for r in mine)
        copies = [r.big_copy_s for r in mine if r.big_copy_s is not None]
        copy = f"{statistics.median(copies):.1f} s" if copies else "n/a"
        report(f"{plugin:34} wall median {walls[plugin]:7.1f} s (runs: "
               f"{', '.join(f'{r.wall:.1f}' for r in mine)})  failures per run (of 21 tasks): "
               f"{', '.join(str(r.failures) for r in mine)}  16 MiB copy task: {copy}")
        medians = []
        for kind in ("file", "command", "stat", "copy"):
            secs = [x for r in mine for n, x in r.task_s.items() if n.split()[0] == kind and n != BIG_TASK]
            if secs:
                medians.append(f"{kind} {statistics.median(secs):.2f}")
        report("    median seconds per small task: " + ", ".join(medians))
        for err in sorted({e for r in mine for e in r.errors}):
            report(f"    error: {err}")
        if not all(r.big_ok for r in mine):
            report("    the 16 MiB file in the guest did not match (missing or corrupt)")
    ours, theirs = walls[PLUGINS[0]], walls[PLUGINS[1]]
    report(f"qga / libvirt_qemu wall time: {ours / theirs:.2f} ({theirs / ours:.2f}x faster)")
    report("probes (raw tasks; pass/FAIL):")
    for key, text in PROBES.items():
        report(f"  {text:66} " + "  ".join(f"{p.rsplit('.', 1)[1]}: {'pass' if probes[p][key] else 'FAIL'}"
                                           for p in PLUGINS))
    for plugin in PLUGINS:
        report(f"  {plugin}: {sum(not ok for ok in probes[plugin].values())} of {len(PROBES)} probes failed")
    print(f"saved {report.save()}")


if __name__ == "__main__":
    main()
