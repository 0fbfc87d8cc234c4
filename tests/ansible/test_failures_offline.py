"""Failures as a playbook sees them, through the real ansible-playbook (no lab needed):
the one-line msg, exit_code and error survive Ansible's result handling, and a hypervisor
without the virt_qga library gets Ansible's missing-library message, not a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.collection_build import installed_collections
from tests.conftest import tool_missing

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(tool_missing("ansible-playbook"),
                                reason="ansible-core is not installed (pip install ansible-core)")


#: A Python on the managed node without virt_qga: the distribution's own interpreter.
BARE_PYTHON = "/usr/bin/python3"


def play(tmp: Path, task: dict[str, Any], *, with_library: bool,
         python: str = sys.executable) -> dict[str, Any]:
    out = tmp / "result.json"
    playbook = [{
        "hosts": "localhost", "gather_facts": False,
        "tasks": [
            {**task, "register": "res", "ignore_errors": True},
            {"ansible.builtin.copy": {"content": "{{ res | to_nice_json }}", "dest": str(out)}},
        ],
    }]
    (tmp / "play.yml").write_text(json.dumps(playbook))
    env = dict(os.environ)
    env.update(ANSIBLE_COLLECTIONS_PATH=str(installed_collections()), ANSIBLE_LOCAL_TEMP=str(tmp / "t"),
               ANSIBLE_NOCOLOR="1")
    env.pop("PYTHONPATH", None)
    if with_library:
        env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", "-c", "local", "-e",
         f"ansible_python_interpreter={python}", str(tmp / "play.yml")],
        env=env, cwd=tmp, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def test_missing_socket_maps_to_exit_3(tmp_path: Path) -> None:
    res = play(tmp_path, {"virt_qga.guest_agent.virt_qga_info": {"socket": "/nonexistent/qga.sock"}},
               with_library=True)
    assert res["failed"] is True
    assert res["exit_code"] == 3 and res["error"] == "AgentNotConfiguredError"
    assert "\n" not in res["msg"] and "Traceback" not in res["msg"]


def test_bad_option_is_ansibles_own_error(tmp_path: Path) -> None:
    res = play(tmp_path, {"virt_qga.guest_agent.virt_qga_exec": {"socket": "/x", "argv": ["true"],
                                                                 "cmd": "true"}},
               with_library=True)
    assert res["failed"] is True and "mutually exclusive" in res["msg"]


def test_without_the_library(tmp_path: Path) -> None:
    # The test's own interpreter has virt_qga installed; the distribution's python3 (a
    # hypervisor where nobody pip-installed virt-qga) does not.
    probe = subprocess.run([BARE_PYTHON, "-c", "import virt_qga"], cwd=tmp_path,
                           env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
                           capture_output=True)
    assert probe.returncode != 0, f"{BARE_PYTHON} unexpectedly has virt_qga"
    res = play(tmp_path, {"virt_qga.guest_agent.virt_qga_info": {"domain": "web01"}},
               with_library=False, python=BARE_PYTHON)
    assert res["failed"] is True
    assert "virt-qga" in res["msg"] and "import" in res["msg"].lower()
    assert res["error"] == "ImportError" and "Traceback" not in res["msg"]
