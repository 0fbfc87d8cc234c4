"""Malformed input to ``exec`` and ``cp``: exit 2, one line on stderr, nothing sent.

The agent is a scripted peer on a socket, so "nothing sent" is checked where it
matters: the peer saw no connection at all. ``exec --env NOEQUALS`` used to exit 125
("virt-qga itself failed") after opening the agent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

from tests.unit.scripted_peer import ScriptedPeer
from virt_qga.exitcodes import ExitCode

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def peer() -> Iterator[ScriptedPeer]:
    d = tempfile.mkdtemp(prefix="qga-", dir="/tmp")
    with ScriptedPeer(os.path.join(d, "qga.sock")) as p:
        yield p
    shutil.rmtree(d, ignore_errors=True)


def run(peer: ScriptedPeer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "virt_qga.cli.main", "--socket", peer.path, *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("args", "message"), [
    (["exec", "vm", "--env", "NOEQUALS", "--", "true"], "--env 'NOEQUALS' is not KEY=VALUE"),
    (["exec", "vm", "--env", "=x", "--", "true"], "--env '=x' is not KEY=VALUE"),
    (["exec", "vm", "--env", "A=1", "--env", "B", "--", "true"], "--env 'B' is not KEY=VALUE"),
    (["exec", "vm", "--stdin", "/nonexistent/in", "--", "cat"],
     "cannot read --stdin /nonexistent/in: No such file or directory"),
    (["cp", "/nonexistent/src", "vm:/tmp/x"], "cannot read /nonexistent/src: No such file or directory"),
    (["cp", "vm:/a", "vm:/b"], "exactly one of SOURCE and DEST must be DOMAIN:PATH"),
    (["cp", "vm:", "/tmp/x"], "'vm:': missing the guest path after ':'"),
    (["cp", "vm:/etc/hostname", "/nonexistent/dir/x"], "local directory /nonexistent/dir does not exist"),
])
def test_bad_input_exits_2_with_one_line_and_sends_nothing(peer: ScriptedPeer, args: list[str],
                                                           message: str) -> None:
    p = run(peer, *args)
    assert p.returncode == ExitCode.USAGE, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("virt-qga: error: ") and message in lines[0], p.stderr
    assert p.stdout == ""
    if args[0] == "exec":
        assert peer.connections == 0 and peer.requests == []
    else:
        # cp checks its local side once the agent is open (virt_qga/cli/files.py): it
        # may have synced and asked guest-info, but no file was opened in the guest.
        assert set(peer.commands()) <= {"guest-sync-delimited", "guest-info"}, peer.commands()
    assert not peer.errors


def test_bad_env_with_json_reports_exit_2_in_the_document(peer: ScriptedPeer) -> None:
    p = run(peer, "--json", "exec", "vm", "--env", "NOEQUALS", "--", "true")
    assert p.returncode == ExitCode.USAGE
    doc = json.loads(p.stdout)
    assert doc["ok"] is False and doc["exit_code"] == 2 and doc["error"] == "BadInputError"
    assert peer.connections == 0


@pytest.mark.parametrize("args", [
    ["exec", "vm", "--timeout", "0", "--", "true"],
    ["exec", "vm", "--capture", "bogus", "--", "true"],
    ["exec", "vm"],
])
def test_click_level_usage_errors_exit_2(peer: ScriptedPeer, args: list[str]) -> None:
    p = run(peer, *args)
    assert p.returncode == ExitCode.USAGE
    assert "Error:" in p.stderr
    assert peer.connections == 0
