"""Read-only commands over several real guests, and every wait within the user's deadline.

* several DOMAINs, ``--all``, an unknown domain among good ones, a stopped agent
  (qemu-ga SIGSTOPped in the guest) among good ones: aggregated exit code, and the
  others still answered;
* over a real channel socket, ``--timeout`` bounds connect + sync + command;
* over libvirt, a stopped agent is reported in one line, libvirt's detail once.

The CLI runs as a subprocess, as a user runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.agent_stop import stop_agent
from tests.integration.conftest import BOOT_TIMEOUT, SESSION_TAG
from virt_qga.agent import GuestAgent
from virt_qga.exitcodes import ExitCode
from virt_qga.lab import Lab, LabError, LabGuest

#: Process start-up and exit on a loaded 2-core machine, on top of a deadline.
MARGIN = 2.0

#: Over libvirt, a --timeout 2 call to a stopped agent: libvirt's own guest-sync waits up
#: to the command's timeout, but after an earlier timeout on that domain it waited its
#: default 5 s (seen on libvirt 9.0; qemuAgentCommand gives us no way to shorten it),
#: then the command: at most 5 + 2 s.
LIBVIRT_WORST = 5 + 2


def cli(*args: str, uri: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRT_QGA_")}
    argv = [sys.executable, "-m", "virt_qga.cli.main", *(["-c", uri] if uri else []), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def two(guests: dict[str, LabGuest]) -> tuple[str, str, str]:
    a, b = guests["libvirt-7.2"], guests["libvirt-10.0"]
    return a.name, b.name, str(a.uri)


@pytest.fixture(scope="module")
def stopped(lab: Lab) -> Iterator[LabGuest]:
    """A libvirt guest whose agent is stopped, for this module only."""
    name = f"{SESSION_TAG}-fleet-stopped-{os.urandom(2).hex()}"
    try:
        [g] = lab.up(name=name, timeout=BOOT_TIMEOUT)
    except LabError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the lab cannot start and CI is set: {exc}", pytrace=False)
        pytest.skip(f"the lab cannot start: {exc}")
    try:
        agent = GuestAgent.for_domain(g.name, g.uri, timeout=15)
        stop_agent(agent)
        yield g
    finally:
        try:
            lab.destroy(name)
        except LabError:
            pass


def by_domain(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["domain"]: d for d in doc["domains"]}


def test_several_domains_answer_in_one_document(two: tuple[str, str, str]) -> None:
    a, b, uri = two
    p = cli("--json", "osinfo", a, b, uri=uri)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["command"] == "osinfo" and doc["exit_code"] == 0
    assert [d["domain"] for d in doc["domains"]] == [a, b]
    for d in doc["domains"]:
        assert d["ok"] and d["exit_code"] == 0
        assert d["result"]["domain"] == d["domain"] and d["result"]["osinfo"]["id"] == "debian"
    # each result is exactly what the one-domain command prints
    single = json.loads(cli("--json", "osinfo", a, uri=uri).stdout)
    assert doc["domains"][0]["result"] == single


def test_all_lists_the_running_domains(two: tuple[str, str, str]) -> None:
    a, b, uri = two
    p = cli("--json", "ping", "--all", "--jobs", "3", uri=uri)
    doc = json.loads(p.stdout)
    found = by_domain(doc)
    assert a in found and b in found, list(found)
    assert found[a]["ok"] and found[b]["ok"]
    assert [d["domain"] for d in doc["domains"]] == sorted(found)
    expected = 0 if all(d["ok"] for d in doc["domains"]) else None
    if expected is not None:
        assert p.returncode == doc["exit_code"] == 0
    else:  # another running lab domain did not answer: the run says partial (or worse)
        assert p.returncode == doc["exit_code"] != 0


def test_unknown_domain_among_good_ones(two: tuple[str, str, str]) -> None:
    a, b, uri = two
    p = cli("--json", "hostname", a, "no-such-domain-xyz", b, uri=uri)
    assert p.returncode == ExitCode.PARTIAL, p.stderr
    doc = json.loads(p.stdout)
    assert doc["exit_code"] == ExitCode.PARTIAL
    found = by_domain(doc)
    assert found[a]["ok"] and found[a]["result"]["hostname"]
    assert found[b]["ok"] and found[b]["result"]["hostname"]
    bad = found["no-such-domain-xyz"]
    assert not bad["ok"] and bad["exit_code"] == ExitCode.DOMAIN
    assert bad["error"]["error"] == "DomainNotFoundError"
    # the human form: grouped by domain, the error on stderr in one line
    h = cli("hostname", a, "no-such-domain-xyz", b, uri=uri)
    assert h.returncode == ExitCode.PARTIAL
    headers = [line for line in h.stdout.splitlines() if line.startswith("==> ")]
    assert headers == [f"==> {a} <==", "==> no-such-domain-xyz <==", f"==> {b} <=="]
    assert h.stderr.strip().splitlines() == [
        f"virt-qga: error: no-such-domain-xyz: no domain named 'no-such-domain-xyz' on {uri}"]


def test_only_unknown_domains_exit_6(two: tuple[str, str, str]) -> None:
    _, _, uri = two
    p = cli("--json", "fsinfo", "no-such-1", "no-such-2", uri=uri)
    assert p.returncode == ExitCode.DOMAIN


def test_stopped_agent_over_libvirt_is_one_line_with_libvirt_detail_once(stopped: LabGuest) -> None:
    start = time.monotonic()
    p = cli("--timeout", "2", "ping", stopped.name, uri=str(stopped.uri))
    elapsed = time.monotonic() - start
    assert p.returncode in (ExitCode.TIMEOUT, ExitCode.AGENT_UNAVAILABLE), p.stderr
    [line] = p.stderr.strip().splitlines()
    assert line.startswith(f"virt-qga: error: {stopped.name}: guest-ping: ")
    assert line.count("(libvirt: ") == 1 and line.count("(") == 1 and line.endswith(")"), line
    assert line.lower().count("not responding") <= 1, line
    if p.returncode == ExitCode.TIMEOUT:
        assert "no reply from the guest agent within 2 s (libvirt: " in line, line
    assert elapsed < LIBVIRT_WORST + MARGIN, f"took {elapsed:.1f} s"


def test_stopped_agent_among_good_ones(two: tuple[str, str, str], stopped: LabGuest) -> None:
    a, b, uri = two
    start = time.monotonic()
    p = cli("--json", "--timeout", "2", "ping", a, stopped.name, b, uri=uri)
    elapsed = time.monotonic() - start
    assert p.returncode == ExitCode.PARTIAL, p.stderr
    found = by_domain(json.loads(p.stdout))
    assert found[a]["ok"] and found[b]["ok"]
    bad = found[stopped.name]
    assert not bad["ok"]
    assert bad["exit_code"] in (ExitCode.TIMEOUT, ExitCode.AGENT_UNAVAILABLE)
    assert bad["error"]["error"] in ("AgentTimeoutError", "AgentNotConnectedError")
    assert elapsed < LIBVIRT_WORST + MARGIN, f"took {elapsed:.1f} s"  # waited for in parallel, once


@pytest.mark.stacks("host")  # a plain QEMU guest: no libvirt stack involved
def test_socket_timeout_bounds_connect_sync_and_command(fresh_guest: Any) -> None:
    """The defect as a user met it: against a stopped agent, --timeout 1 took 5 s."""
    guest = fresh_guest(agent="7.2", plain=True)
    agent = GuestAgent.for_socket(guest.socket, timeout=15)
    try:
        stop_agent(agent)
    finally:
        agent.close()  # QEMU serves one client: let the CLI have the channel
    start = time.monotonic()
    p = cli("--socket", str(guest.socket), "--timeout", "1", "ping", "x")
    elapsed = time.monotonic() - start
    assert p.returncode == ExitCode.AGENT_UNAVAILABLE, p.stderr
    assert p.stderr.strip() == (f"virt-qga: error: x: agent not responding on {guest.socket}: "
                                "no reply to guest-sync-delimited within 1.0 s")
    assert 1.0 <= elapsed < 1.0 + MARGIN, f"took {elapsed:.2f} s"
