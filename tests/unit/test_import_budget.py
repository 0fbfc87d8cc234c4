"""The start-up budget, guarded by what a command imports (not by a wall clock).

``virt-qga ping`` as a process must stay within 4x ``virsh qemu-agent-command``
(bench/agent_latency.py, docs/benchmarks.md "Start-up"). Wall time on a shared
machine is too noisy for a test, but where the time goes is not: each module below
was measured in the import graph of a read-only command and removed from it. A change
that brings one back (a top-level ``import rich`` in a CLI module, ``logging``
through ``concurrent.futures``, the whole spec through ``importlib.resources``, an
eager ``virt_qga/__init__.py``) fails here, with the module's name.
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
from tests.unit.test_cli_many import Agent
from virt_qga.cli.main import COMMANDS

pytestmark = pytest.mark.timeout(120)

#: Never imported by a read-only command (over the socket; with --json where noted).
HEAVY = {
    "rich": "tables: only human output that draws one imports it",
    "tenacity": "retry policies: workflows only",
    "jsonschema": "a test dependency",
    "logging": "read-only commands never log (SILENT_COMMANDS); ~5 ms with traceback",
    "concurrent.futures": "imports logging; workflows/fleet.py uses threads directly",
    "libvirt": "over the socket, libvirt-python (~20 ms) is not needed",
    "importlib.resources": "the spec is read with open(); resources pulled in tempfile, zipfile",
    "difflib": "only for a typo's suggestion",
    "virt_qga.types": "TypedDicts for annotations only",
    "virt_qga.workflows.snapshot": "no workflow module but fleet",
    "virt_qga.host": "libvirt-side operations",
    "asyncio": "never used",
}

#: Not even imported by ``virt-qga --help``.
HELP_HEAVY = {**HEAVY, "virt_qga.spec": "loaded on first use",
              "virt_qga.agent": "the agent is opened by a command"}

DUMP = ("import json, os, sys\n"
        "from virt_qga.cli.main import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
        "with open(os.environ['MODULES_OUT'], 'w') as fh:\n"
        "    json.dump({'code': code, 'modules': sorted(sys.modules)}, fh)\n")


@pytest.fixture
def tmp() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="qga-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def imported_by(tmp: str, *args: str) -> tuple[int, set[str]]:
    """Run the CLI in a fresh interpreter; the modules loaded by the time it exits.

    (``json`` is imported by this dump itself after the command ran, so it says
    nothing; it is checked with ``-X importtime`` in test_help_imports_no_json.)
    """
    out = os.path.join(tmp, "modules.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRT_QGA_")}
    env["MODULES_OUT"] = out
    subprocess.run([sys.executable, "-c", DUMP, *args], env=env, capture_output=True, timeout=60,
                   stdin=subprocess.DEVNULL, check=False)
    with open(out) as fh:
        data = json.load(fh)
    return int(data["code"] or 0), set(data["modules"])


def loaded(modules: set[str], name: str) -> bool:
    return name in modules or any(m.startswith(name + ".") for m in modules)


@pytest.mark.parametrize("args", [
    ["ping"], ["--json", "ping"], ["--json", "osinfo"], ["--json", "info"], ["osinfo"], ["--json", "time"],
], ids=" ".join)
def test_read_only_commands_import_nothing_heavy(tmp: str, args: list[str]) -> None:
    with ScriptedPeer(os.path.join(tmp, "qga.sock"), default=[Agent()]) as peer:
        code, modules = imported_by(tmp, *args, f"unix:{peer.path}")
    assert code == 0
    assert "virt_qga.agent" in modules  # it really ran
    heavy = {m: why for m, why in HEAVY.items() if loaded(modules, m)}
    assert not heavy, heavy


def test_several_domains_import_nothing_heavy(tmp: str) -> None:
    a = ScriptedPeer(os.path.join(tmp, "a.sock"), default=[Agent()]).start()
    b = ScriptedPeer(os.path.join(tmp, "b.sock"), default=[Agent()]).start()
    try:
        code, modules = imported_by(tmp, "--json", "osinfo", f"unix:{a.path}", f"unix:{b.path}")
    finally:
        a.stop()
        b.stop()
    assert code == 0 and "virt_qga.workflows.fleet" in modules
    heavy = {m: why for m, why in HEAVY.items() if loaded(modules, m)}
    assert not heavy, heavy


def test_help_imports_only_the_root(tmp: str) -> None:
    code, modules = imported_by(tmp, "--help")
    assert code == 0
    # the root group only: no command module, no agent, spec, transport, host or workflow
    ours = sorted(m for m in modules if m.startswith("virt_qga"))
    assert {"virt_qga.cli.main", "virt_qga.cli.context"} <= set(ours)
    cmd_modules = {target.split(":")[0] for target in COMMANDS.values()}
    off_limits = ("virt_qga.agent", "virt_qga.spec", "virt_qga.transport", "virt_qga.workflows",
                  "virt_qga.host", "virt_qga.connection", "virt_qga.lab", *cmd_modules)
    assert not [m for m in ours if m.startswith(off_limits)], ours
    heavy = {m: why for m, why in HELP_HEAVY.items() if loaded(modules, m)}
    assert not heavy, heavy


def test_help_imports_no_json() -> None:
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "virt_qga.cli.main", "--help"],
                       capture_output=True, text=True, timeout=60)
    names = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines() if "|" in line}
    assert "click" in names
    assert not names & {"json", "logging", "virt_qga.spec", "libvirt", "rich"}, names


def test_libvirt_ping_imports_libvirt_but_nothing_else_heavy(tmp: str) -> None:
    # libvirt's test driver has no agent: the command fails, after the whole path ran.
    code, modules = imported_by(tmp, "-c", "test:///default", "ping", "test")
    assert code != 0
    assert "libvirt" in modules and "virt_qga.transport.libvirt" in modules
    heavy = {m: why for m, why in HEAVY.items() if m not in ("libvirt", "difflib") and loaded(modules, m)}
    assert not heavy, heavy


ENTRY = ("import atexit, gc, sys\n"
         "atexit.register(lambda: print('at exit: gc enabled =', gc.isenabled(), flush=True))\n"
         "sys.argv = ['virt-qga', *sys.argv[1:]]\n"
         "from virt_qga.cli.entry import run\n"
         "run()\n")


def test_the_script_turns_gc_back_on_for_commands_that_may_run_long(tmp: str) -> None:
    # exec is not a read-only command: the collector is on by the time it runs
    p = subprocess.run([sys.executable, "-c", ENTRY, "--socket", f"{tmp}/none.sock", "exec", "x",
                        "--env", "BAD", "--", "true"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stdout.strip() == "at exit: gc enabled = True", p


def test_read_only_commands_end_without_interpreter_teardown(tmp: str) -> None:
    # ping is read-only: flushed output, then os._exit (no atexit handlers, no teardown)
    p = subprocess.run([sys.executable, "-c", ENTRY, "--socket", f"{tmp}/none.sock", "ping", "x"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 3
    assert p.stderr.strip() == f"virt-qga: error: x: no agent socket at {tmp}/none.sock"
    assert "at exit" not in p.stdout
