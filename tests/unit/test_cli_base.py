"""The CLI's contract: one-line errors, documented exit codes, fast help, JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from virt_qga.cli.common import parse_call_args
from virt_qga.cli.main import COMMANDS, cli
from virt_qga.errors import BadInputError
from virt_qga.exitcodes import MEANINGS, ExitCode


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "virt_qga.cli.main", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def test_help_lists_commands_and_exit_codes() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "ping" in result.output and "Exit codes" in result.output
    for code in MEANINGS:
        assert f"{int(code)} " in result.output or f"{int(code)}\n" in result.output


def test_help_does_not_import_heavy_modules() -> None:
    code = ("import sys; from virt_qga.cli.main import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('libvirt', 'rich', 'virt_qga.spec', 'tenacity') if m in sys.modules]\n"
            "print('HEAVY=' + ','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY=\n" in out.stdout, out.stdout[-300:]


def test_help_is_fast() -> None:
    best = min(_time_help() for _ in range(3))
    assert best < 0.5, f"virt-qga --help took {best:.3f}s"


def _time_help() -> float:
    start = time.perf_counter()
    run("--help")
    return time.perf_counter() - start


def test_unknown_command_is_usage_error() -> None:
    out = run("no-such-command")
    assert out.returncode == ExitCode.USAGE
    assert "Traceback" not in out.stderr


def test_bad_call_args_are_one_line_usage_errors() -> None:
    out = run("--socket", "/nonexistent.sock", "call", "dom", "guest-ping", "--args", "{not json")
    assert out.returncode == ExitCode.USAGE, out.stderr
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("virt-qga: error:")


def test_unknown_agent_command_is_refused_before_connecting() -> None:
    out = run("--socket", "/nonexistent.sock", "call", "dom", "guest-frobnicate")
    assert out.returncode == ExitCode.USAGE, out.stderr
    assert "unknown guest agent command" in out.stderr
    assert "Traceback" not in out.stderr


def test_invalid_argument_names_field() -> None:
    out = run("--socket", "/nonexistent.sock", "call", "dom", "guest-file-read", "handle:=\"x\"")
    assert out.returncode == ExitCode.USAGE, out.stderr
    assert "handle" in out.stderr


def test_missing_socket_is_agent_unavailable_with_json_document() -> None:
    out = run("--json", "--socket", "/nonexistent.sock", "ping", "dom")
    assert out.returncode == ExitCode.AGENT_UNAVAILABLE, out.stderr
    doc = json.loads(out.stdout)
    assert doc["ok"] is False and doc["exit_code"] == ExitCode.AGENT_UNAVAILABLE
    assert out.stderr.count("\n") == 1


def test_unreachable_libvirt_is_one_line() -> None:
    out = run("--connect", "qemu+unix:///session?socket=/nonexistent/sock", "ping", "dom")
    assert out.returncode == ExitCode.FAILED, out.stderr
    assert out.stderr.count("\n") == 1 and "cannot connect to libvirt" in out.stderr


def test_registered_commands_resolve() -> None:
    ctx = cli.make_context("virt-qga", ["--help"], resilient_parsing=True)
    for name in cli.list_commands(ctx):
        assert cli.get_command(ctx, name) is not None, name
    assert set(cli.list_commands(ctx)) <= set(COMMANDS)


@pytest.mark.parametrize(("pairs", "expected"), [
    (["path=/etc/hostname"], {"path": "/etc/hostname"}),
    (["count:=4096", "mode=r"], {"count": 4096, "mode": "r"}),
    (["arg:=[\"-l\", \"x=y\"]"], {"arg": ["-l", "x=y"]}),
    (["path=a:=b"], {"path": "a:=b"}),
])
def test_parse_call_args(pairs: list[str], expected: dict[str, object]) -> None:
    assert parse_call_args(None, pairs) == expected


@pytest.mark.parametrize("bad", [["novalue"], ["=x"], ["n:=notjson"]])
def test_parse_call_args_rejects(bad: list[str]) -> None:
    with pytest.raises(BadInputError):
        parse_call_args(None, bad)
