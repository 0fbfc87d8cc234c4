"""The collection's connection and inventory plugins document themselves the Ansible way."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.ansible.test_sanity import env, needs_ansible

PLUGINS = [("connection", "virt_qga.guest_agent.qga"), ("inventory", "virt_qga.guest_agent.guests")]


@needs_ansible
@pytest.mark.parametrize(("kind", "fqcn"), PLUGINS)
def test_plugin_doc_renders(kind: str, fqcn: str) -> None:
    proc = subprocess.run(["ansible-doc", "-t", kind, "--json", fqcn], env=env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "[WARNING]" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)[fqcn]
    assert doc["doc"]["name"] == fqcn.rsplit(".", 1)[1] and doc["examples"]
    options = doc["doc"]["options"]
    if kind == "connection":
        assert {"remote_addr", "uri", "socket", "timeout", "reply_timeout", "command_timeout",
                "pipelining"} <= set(options)
        assert {"name": "inventory_hostname"} in options["remote_addr"]["vars"]
        assert options["pipelining"]["default"] is True
    else:
        assert {"plugin", "uris", "agent_facts", "running_only", "keyed_groups", "compose"} <= set(options)


@needs_ansible
def test_plugins_listed() -> None:
    for kind, fqcn in PLUGINS:
        proc = subprocess.run(["ansible-doc", "-t", kind, "-l", "virt_qga.guest_agent"], env=env(),
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert fqcn in proc.stdout
