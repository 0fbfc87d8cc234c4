"""Read-only commands over several domains, CLI side, with scripted agents on sockets.

Each ``unix:PATH`` DOMAIN is its own scripted agent, so several domains, a missing
one and a silent one can be mixed in one run without a lab. The lab versions of these
tests (real guests, libvirt, ``--all``) are in tests/integration/test_fleet.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.unit.scripted_peer import Context, Hold, ScriptedPeer, Step, _read_request, answer
from virt_qga.exitcodes import ExitCode

pytestmark = pytest.mark.timeout(120)

OSINFO = {"id": "debian", "name": "Debian GNU/Linux", "version-id": "12", "machine": "x86_64"}


@dataclass
class Agent(Step):
    """A well-behaved agent that also knows guest-info, guest-get-osinfo and -time."""

    def run(self, ctx: Context) -> bool:
        while True:
            req = _read_request(ctx, 3600)
            if req is None:
                return False
            cmd = req.get("execute")
            if cmd == "guest-info":
                cmds = [{"name": n, "enabled": True, "success-response": True}
                        for n in ("guest-ping", "guest-info", "guest-get-osinfo", "guest-get-time")]
                out = json.dumps({"return": {"version": "7.2.0", "supported_commands": cmds}}).encode()
            elif cmd == "guest-get-osinfo":
                out = json.dumps({"return": OSINFO}).encode()
            elif cmd == "guest-get-time":
                out = b'{"return": 1700000000000000000}'
            else:
                out = answer(ctx, req).rstrip(b"\n")
            if not ctx.sendall(out + b"\n"):
                return False


@pytest.fixture
def tmp() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="qga-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRT_QGA_")}
    return subprocess.run([sys.executable, "-m", "virt_qga.cli.main", *args], capture_output=True,
                          text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


def peers(tmp: str, n: int, steps: list[Step] | None = None) -> list[ScriptedPeer]:
    return [ScriptedPeer(os.path.join(tmp, f"a{i}.sock"), default=steps or [Agent()]).start()
            for i in range(n)]


def test_several_domains_give_one_document_in_the_order_given(tmp: str) -> None:
    ps = peers(tmp, 3)
    try:
        doms = [f"unix:{p.path}" for p in ps]
        p = cli("--json", "osinfo", *doms)
    finally:
        for peer in ps:
            peer.stop()
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert list(doc) == ["command", "domains", "exit_code"]
    assert doc["command"] == "osinfo" and doc["exit_code"] == 0
    assert [d["domain"] for d in doc["domains"]] == doms
    for d, name in zip(doc["domains"], doms, strict=True):
        # each result is exactly the one-domain document
        assert d == {"domain": name, "ok": True, "result": {"domain": name, "osinfo": OSINFO}, "exit_code": 0}


def test_one_domain_prints_what_it_always_did(tmp: str) -> None:
    [peer] = peers(tmp, 1)
    try:
        p = cli("--json", "ping", f"unix:{peer.path}")
        h = cli("osinfo", f"unix:{peer.path}")
    finally:
        peer.stop()
    doc = json.loads(p.stdout)
    assert list(doc) == ["domain", "ok", "latency_ms"] and doc["domain"] == f"unix:{peer.path}"
    assert "==>" not in h.stdout and h.stdout.splitlines()[0] == "id:         debian"


def test_a_missing_and_a_silent_agent_among_good_ones(tmp: str) -> None:
    good = peers(tmp, 2)
    silent = ScriptedPeer(os.path.join(tmp, "silent.sock"), default=[Hold()]).start()
    missing = os.path.join(tmp, "missing.sock")
    try:
        doms = [f"unix:{good[0].path}", f"unix:{missing}", f"unix:{silent.path}", f"unix:{good[1].path}"]
        start = time.monotonic()
        p = cli("--json", "--timeout", "1", "ping", *doms)
        elapsed = time.monotonic() - start
    finally:
        for peer in (*good, silent):
            peer.stop()
    assert p.returncode == ExitCode.PARTIAL, p.stderr
    by = {d["domain"]: d for d in json.loads(p.stdout)["domains"]}
    assert by[doms[0]]["ok"] and by[doms[3]]["ok"]
    assert by[doms[1]]["exit_code"] == ExitCode.AGENT_UNAVAILABLE  # no socket: not configured
    assert by[doms[1]]["error"]["error"] == "AgentNotConfiguredError"
    assert by[doms[2]]["exit_code"] == ExitCode.AGENT_UNAVAILABLE  # silent: no sync within 1 s
    assert "within 1.0 s" in by[doms[2]]["error"]["message"]
    assert elapsed < 1.0 + 2.0  # the silent one is waited for in parallel, once


def test_human_output_groups_by_domain_and_errors_go_to_stderr(tmp: str) -> None:
    [peer] = peers(tmp, 1)
    missing = os.path.join(tmp, "missing.sock")
    try:
        p = cli("ping", f"unix:{peer.path}", f"unix:{missing}")
    finally:
        peer.stop()
    assert p.returncode == ExitCode.PARTIAL
    lines = p.stdout.splitlines()
    assert lines[0] == f"==> unix:{peer.path} <=="
    assert lines[1].startswith(f"unix:{peer.path}: agent answered in ")
    assert lines[2:] == ["", f"==> unix:{missing} <=="]
    assert p.stderr.strip() == f"virt-qga: error: unix:{missing}: no agent socket at {missing}"


def test_all_failed_alike_gives_their_code(tmp: str) -> None:
    p = cli("--json", "hostname", f"unix:{tmp}/x.sock", f"unix:{tmp}/y.sock")
    assert p.returncode == ExitCode.AGENT_UNAVAILABLE
    assert json.loads(p.stdout)["exit_code"] == ExitCode.AGENT_UNAVAILABLE


@pytest.mark.parametrize(("args", "message"), [
    (["ping"], "missing DOMAIN (or --all)"),
    (["ping", "--all", "vm1"], "give DOMAIN names or --all, not both"),
    (["--socket", "/tmp/x.sock", "ping", "a", "b"], "--socket names one agent"),
    (["--socket", "/tmp/x.sock", "ping", "--all"], "--socket names one agent"),
    (["time", "a", "b", "--set", "5"], "--set and --sync-from-host take exactly one DOMAIN"),
    (["ping", "a", "b", "--jobs", "0"], "Invalid value for '--jobs'"),
])
def test_usage_errors(args: list[str], message: str) -> None:
    p = cli(*args)
    assert p.returncode == ExitCode.USAGE
    assert message in p.stderr


def test_help_documents_several_domains_and_the_exit_codes() -> None:
    out = cli("fsinfo", "--help").stdout
    assert "DOMAIN..." in out and "--all" in out and "--jobs" in out
    assert "5 some did, some not" in out and "no --include-inactive" in out


def test_duplicates_are_asked_once(tmp: str) -> None:
    [peer] = peers(tmp, 1)
    try:
        d = f"unix:{peer.path}"
        p = cli("--json", "ping", d, d)
    finally:
        peer.stop()
    doc: dict[str, Any] = json.loads(p.stdout)
    assert [x["domain"] for x in doc["domains"]] == [d]
