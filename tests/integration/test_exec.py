"""``virt-qga exec`` against real qemu-ga 7.2 and 10.0, over libvirt and the socket.

The CLI runs as a subprocess (``python -m virt_qga.cli.main``) so exit codes and raw
stdout bytes are exactly what a user's shell sees.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from typing import Any

import pytest

ALL = ["libvirt-7.2", "libvirt-10.0", "plain-7.2", "plain-10.0"]
LIBVIRT = ["libvirt-7.2", "libvirt-10.0"]
PLAIN = ["plain-7.2", "plain-10.0"]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def target(guest: Any) -> tuple[list[str], str]:
    """(global options, DOMAIN) for a lab guest: --connect URI NAME, or --socket PATH label."""
    if guest.kind == "plain":
        return ["--socket", str(guest.socket)], guest.name
    return ["-c", guest.uri], guest.name


def vq(guest: Any, *args: str, stdin: bytes | None = None, json_out: bool = False,
       timeout: float = 300.0) -> subprocess.CompletedProcess[bytes]:
    """Run virt-qga GLOBALS SUBCOMMAND DOMAIN ARGS... against ``guest``."""
    opts, dom = target(guest)
    sub, rest = args[0], list(args[1:])
    argv = [sys.executable, "-m", "virt_qga.cli.main", *opts, *(["--json"] if json_out else []),
            sub, dom, *rest]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, env=env, check=False)


def vq_json(guest: Any, *args: str, stdin: bytes | None = None) -> tuple[int, dict[str, Any]]:
    p = vq(guest, *args, stdin=stdin, json_out=True)
    return p.returncode, json.loads(p.stdout)


def guest_sh(guest: Any, script: str, timeout: float = 120.0) -> bytes:
    """Run a shell script in the guest through the CLI; assert it succeeded; its stdout."""
    p = vq(guest, "exec", "--timeout", str(timeout), "--", "/bin/sh", "-c", script, timeout=timeout + 30)
    assert p.returncode == 0, (p.returncode, p.stderr.decode(errors="replace"))
    return p.stdout


@pytest.mark.parametrize("key", ALL)
def test_exit_codes_and_signals(guests: dict[str, Any], key: str) -> None:
    g = guests[key]
    assert vq(g, "exec", "--", "true").returncode == 0
    p = vq(g, "exec", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (p.returncode, p.stdout, p.stderr) == (3, b"out\n", b"err\n")
    p = vq(g, "exec", "--", "sh", "-c", "kill -9 $$")
    assert p.returncode == 128 + 9
    assert b"SIGKILL" in p.stderr and b"signal 9" in p.stderr
    p = vq(g, "exec", "--", "/no/such/program")
    assert p.returncode == 127 and b"No such file" in p.stderr


@pytest.mark.parametrize("key", ALL)
def test_stdin_env_cwd(guests: dict[str, Any], key: str) -> None:
    g = guests[key]
    data = bytes(range(256)) * 40  # binary, 10 KiB
    p = vq(g, "exec", "--stdin", "-", "--", "cat", stdin=data)
    assert p.returncode == 0 and p.stdout == data
    p = vq(g, "exec", "--env", "FOO=bar baz", "--env", "X=1", "--", "sh", "-c", 'echo "$FOO|$X"; env | sort')
    assert p.returncode == 0
    lines = p.stdout.decode().splitlines()
    assert lines[0] == "bar baz|1"
    assert "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in lines
    p = vq(g, "exec", "--cwd", "/data", "--", "pwd")
    assert (p.returncode, p.stdout) == (0, b"/data\n")


@pytest.mark.parametrize("key", ALL)
def test_capture_modes(guests: dict[str, Any], key: str) -> None:
    """--capture works on 7.2 (bool only) and 10.0 (where stdout/stderr modes hang)."""
    g = guests[key]
    script = ["sh", "-c", "echo a; echo b >&2"]
    cases = {"both": ("a\n", "b\n"), "stdout": ("a\n", ""), "stderr": ("", "b\n"),
             "merged": ("a\nb\n", ""), "none": ("", "")}
    for mode, (out, err) in cases.items():
        rc, doc = vq_json(g, "exec", "--timeout", "20", "--capture", mode, "--", *script)
        assert rc == 0, (mode, doc)
        assert (doc["stdout"], doc["stderr"]) == (out, err), mode


@pytest.mark.parametrize("key", ["libvirt-7.2", "plain-10.0"])
def test_json_document(guests: dict[str, Any], key: str) -> None:
    g = guests[key]
    rc, doc = vq_json(g, "exec", "--", "sh", "-c", r"printf 'ok\n'; printf '\377\000' >&2; exit 5")
    assert rc == 5
    assert doc["exitcode"] == 5 and doc["signal"] is None and doc["status"] == 5
    assert doc["stdout"] == "ok\n" and doc["stdout_encoding"] == "utf-8"
    assert doc["stderr_encoding"] == "base64" and base64.b64decode(doc["stderr"]) == b"\xff\x00"
    assert doc["pid"] > 0 and doc["duration"] > 0
    assert doc["out_truncated"] is False and doc["err_truncated"] is False
    rc, doc = vq_json(g, "exec", "--", "sh", "-c", "kill -15 $$")
    assert rc == 143 and doc["signal"] == 15 and doc["status"] == 143


@pytest.mark.parametrize("key", ["libvirt-7.2", "plain-10.0"])
def test_timeout_reports_pid_and_leaves_process_running(guests: dict[str, Any], key: str) -> None:
    g = guests[key]
    p = vq(g, "exec", "--timeout", "1", "--", "sleep", "60")
    assert p.returncode == 124
    msg = p.stderr.decode()
    assert "still running" in msg and "kill" in msg
    pid = int(msg.split("(pid ")[1].split(")")[0])
    # the process really is still there; then kill it the way the message says
    assert vq(g, "exec", "--", "kill", "-0", str(pid)).returncode == 0
    assert vq(g, "exec", "--", "kill", str(pid)).returncode == 0


@pytest.mark.parametrize("key", PLAIN)
def test_output_over_agent_cap_is_reported_truncated(guests: dict[str, Any], key: str) -> None:
    """Over the socket the 16 MiB qemu-ga cap is what limits output."""
    g = guests[key]
    p = vq(g, "exec", "--", "head", "-c", "20000000", "/dev/zero")
    assert p.returncode == 0
    assert len(p.stdout) == 16 * 1024 * 1024
    assert b"warning" in p.stderr and b"truncated" in p.stderr
    p = vq(g, "exec", "--", "head", "-c", "1000", "/dev/zero")
    assert len(p.stdout) == 1000 and b"truncated" not in p.stderr


@pytest.mark.parametrize("key", LIBVIRT)
def test_output_over_libvirt_cap_fails_clearly(guests: dict[str, Any], key: str) -> None:
    """Over libvirt ~3 MiB is the end: a clear error (125), and the agent keeps working."""
    g = guests[key]
    p = vq(g, "exec", "--", "head", "-c", "5000000", "/dev/zero")
    assert p.returncode == 125
    msg = p.stderr.decode()
    assert "libvirt" in msg and "cp" in msg and p.stdout == b""
    p = vq(g, "exec", "--", "head", "-c", "2000000", "/dev/zero")
    assert p.returncode == 0 and len(p.stdout) == 2000000
    assert vq(g, "exec", "--", "echo", "alive").stdout == b"alive\n"


@pytest.mark.parametrize("key", ["libvirt-10.0", "plain-7.2"])
def test_stdin_limit(guests: dict[str, Any], key: str) -> None:
    """Over libvirt stdin above ~140 KiB is refused before sending; the socket takes 1 MiB."""
    g = guests[key]
    big = os.urandom(1024 * 1024)
    p = vq(g, "exec", "--stdin", "-", "--", "sha256sum", stdin=big)
    if g.kind == "libvirt":
        assert p.returncode == 125
        assert b"carries at most" in p.stderr
        small = big[: 100 * 1024]
        p = vq(g, "exec", "--stdin", "-", "--", "wc", "-c", stdin=small)
        assert p.returncode == 0 and p.stdout.split()[0] == str(len(small)).encode()
    else:
        import hashlib

        assert p.returncode == 0
        assert p.stdout.split()[0].decode() == hashlib.sha256(big).hexdigest()
