"""Guests and an ansible-playbook runner for the qga connection and guests inventory plugins.

* ``python_guest`` (session): one libvirt guest of the lab's ``python`` flavour (Debian
  12's Python 3 in the initramfs), so ordinary modules run in it. Tests may reboot it.
* ``busybox_plain_guest`` (session): one plain-QEMU guest of the default busybox flavour
  (no Python), reached over the agent's channel socket: ``raw`` only.
* ``play(tmp_path, hosts, tasks, ...)``: writes an inventory and a one-play playbook,
  runs ``ansible-playbook`` and returns the process and every registered result.

The shared fixtures (``lab``, its CI rule) come from tests/integration/conftest.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.collection_build import installed_collections
from tests.conftest import tool_missing
from tests.integration.conftest import BOOT_TIMEOUT, SESSION_TAG, lab_unavailable
from virt_qga.lab import Lab, LabError, LabGuest

REPO = Path(__file__).resolve().parents[3]
CONNECTION = "virt_qga.guest_agent.qga"

needs_ansible = pytest.mark.skipif(tool_missing("ansible-playbook"),
                                   reason="ansible-core is not installed (pip install ansible-core)")


def _boot(lab: Lab, **kwargs: Any) -> LabGuest:
    try:
        [guest] = lab.up(timeout=BOOT_TIMEOUT, **kwargs)
    except LabError as exc:
        lab_unavailable(str(exc))
    return guest


@pytest.fixture(scope="session")
def python_guest(lab: Lab) -> Iterator[LabGuest]:
    name = f"{SESSION_TAG}-py"
    guest = _boot(lab, name=name, flavour="python")
    yield guest
    _destroy(lab, name)


@pytest.fixture(scope="session")
def busybox_plain_guest(lab: Lab) -> Iterator[LabGuest]:
    name = f"{SESSION_TAG}-bb"
    guest = _boot(lab, name=name, plain=True)
    yield guest
    _destroy(lab, name)


@pytest.fixture(scope="session")
def stopped_domain(lab: Lab, python_guest: LabGuest) -> Iterator[str]:
    """A domain that is defined but never started (so it has no agent): the python
    guest's definition under another name. Undefined at the end."""
    import xml.etree.ElementTree as ET

    import libvirt

    conn = libvirt.open(lab.uri)
    root = ET.fromstring(conn.lookupByName(python_guest.name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    name = f"{python_guest.name}-off"
    name_node = root.find("name")
    assert name_node is not None
    name_node.text = name
    uuid = root.find("uuid")
    if uuid is not None:
        root.remove(uuid)
    conn.defineXML(ET.tostring(root, encoding="unicode"))
    conn.close()
    yield name
    conn = libvirt.open(lab.uri)  # not the first one: other tests restart the lab's libvirtd
    try:
        conn.lookupByName(name).undefine()
    finally:
        conn.close()


def _destroy(lab: Lab, name: str) -> None:
    try:
        lab.destroy(name)
    except LabError:
        pass


def ansible_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": str(installed_collections()),
        "ANSIBLE_LOCAL_TEMP": str(tmp / "local-tmp"),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORKS": "2",
        "ANSIBLE_INVENTORY_ENABLED": "virt_qga.guest_agent.guests,yaml",
        **extra,
    })
    for var in ("VIRT_QGA_CONNECT", "VIRT_QGA_SOCKET", "VIRT_QGA_TIMEOUT", "ANSIBLE_PIPELINING"):
        env.pop(var, None)
    return env


def libvirt_host(guest: LabGuest, **extra: Any) -> dict[str, Any]:
    return {"ansible_connection": CONNECTION, "ansible_virt_qga_uri": guest.uri,
            "ansible_python_interpreter": "/usr/bin/python3", **extra}


def socket_host(guest: LabGuest, **extra: Any) -> dict[str, Any]:
    return {"ansible_connection": CONNECTION, "ansible_virt_qga_socket": guest.socket, **extra}


def play(tmp: Path, hosts: dict[str, dict[str, Any]], tasks: list[dict[str, Any]],
         extra: Sequence[str] = (), env: dict[str, str] | None = None,
         timeout: float = 900) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, Any]]]:
    """One play (no fact gathering) over ``hosts``; {host: {registered name: result}}.

    The results are dumped by a last task delegated to the control node, so a guest
    without Python still gets its results back.
    """
    out_dir = tmp / "out"
    out_dir.mkdir(exist_ok=True)
    registered = sorted({t["register"] for t in tasks if "register" in t})
    pairs = ", ".join(f"'{name}': {name} | default(None)" for name in registered)
    dump = {"name": "dump the registered results", "delegate_to": "localhost",
            "ansible.builtin.copy": {"content": "{{ {" + pairs + "} | to_nice_json }}",
                                     "dest": str(out_dir) + "/{{ inventory_hostname }}.json"}}
    playbook = [{"name": "qga connection", "hosts": "guests", "gather_facts": False,
                 "tasks": [*tasks, dump]}]
    inventory = {"all": {"children": {"guests": {"hosts": hosts}},
                         "hosts": {"localhost": {"ansible_connection": "local",
                                                 "ansible_python_interpreter": sys.executable}}}}
    (tmp / "play.yml").write_text(json.dumps(playbook, indent=1))
    (tmp / "inventory.yml").write_text(json.dumps(inventory, indent=1))
    argv = ["ansible-playbook", "-i", str(tmp / "inventory.yml"), str(tmp / "play.yml"), *extra]
    proc = subprocess.run(argv, env=env or ansible_env(tmp), capture_output=True, text=True, timeout=timeout,
                          cwd=tmp)
    results = {p.stem: json.loads(p.read_text()) for p in out_dir.glob("*.json")}
    return proc, results


def explain(proc: subprocess.CompletedProcess[str]) -> str:
    return f"ansible-playbook rc={proc.returncode}\n{proc.stdout[-8000:]}\n{proc.stderr[-3000:]}"
