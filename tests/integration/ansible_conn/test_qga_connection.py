"""The virt_qga.guest_agent.qga connection plugin through real ansible-playbook runs.

Tasks run inside lab guests through their qemu-ga: ordinary modules in the python-flavour
guest over libvirt, ``raw`` in a busybox guest over the agent's channel socket. Nothing is
mocked: real libvirt, QEMU, qemu-ga and Python in the guest.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from tests.integration.ansible_conn.conftest import (
    explain,
    libvirt_host,
    needs_ansible,
    play,
    socket_host,
)
from virt_qga.lab import LabGuest

#: On the host stack only. The plugins reach the agent through the library's libvirt
#: transport, whose behaviour on each stack (error codes, timeouts) test_agent.py and
#: test_stacks.py check on both; and the python guest these tests need takes ~100 s to
#: boot under TCG on the debian13 stack (these tests took 330 of its 1140 s in one run).
pytestmark = [needs_ansible, pytest.mark.stacks("host")]

#: Printed by the guest ($((6 * 7)) is evaluated there), so it is never in a command line.
MARKER = "qga-no-log-marker-42"


def test_modules_run_in_the_python_guest(tmp_path: Path, python_guest: LabGuest) -> None:
    host = python_guest.name
    fetched = tmp_path / "fetched"
    tasks: list[dict[str, Any]] = [
        {"name": "raw needs no python", "ansible.builtin.raw": "uname -n", "register": "raw"},
        {"name": "ping, pipelined", "ansible.builtin.ping": {}, "register": "ping"},
        {"name": "ping, module file put into the guest", "ansible.builtin.ping": {},
         "vars": {"ansible_pipelining": False}, "register": "ping_put"},
        {"name": "command", "ansible.builtin.command": "cat /etc/os-release", "register": "cmd"},
        {"name": "copy", "ansible.builtin.copy": {"content": "hello qga\n", "dest": "/tmp/hello.txt",
                                                  "mode": "0640"}, "register": "copy1"},
        {"name": "copy again: nothing to do", "ansible.builtin.copy": {
            "content": "hello qga\n", "dest": "/tmp/hello.txt", "mode": "0640"}, "register": "copy2"},
        {"name": "stat", "ansible.builtin.stat": {"path": "/tmp/hello.txt", "checksum_algorithm": "sha256"},
         "register": "stat"},
        {"name": "fetch", "ansible.builtin.fetch": {"src": "/tmp/hello.txt", "dest": f"{fetched}/",
                                                    "flat": True}, "register": "fetch"},
        {"name": "setup, minimal", "ansible.builtin.setup": {"gather_subset": "min"}, "register": "facts"},
        {"name": "raw killed by a signal", "ansible.builtin.raw": "kill -TERM $$", "register": "sig",
         "ignore_errors": True},
        {"name": "the module process itself killed", "ansible.builtin.shell": "kill -KILL $PPID",
         "register": "modkill", "ignore_errors": True},
        {"name": "output that must not be logged", "no_log": True, "register": "secret",
         "ansible.builtin.shell": "echo qga-no-log-marker-$((6 * 7))"},
        {"name": "raw output that must not be logged", "no_log": True, "register": "raw_secret",
         "ansible.builtin.raw": "echo qga-no-log-marker-$((6 * 7))"},
    ]
    proc, res = play(tmp_path, {host: libvirt_host(python_guest)}, tasks, extra=["-vvvv"])
    assert proc.returncode == 0, explain(proc)
    r = res[host]
    assert r["raw"]["rc"] == 0 and r["raw"]["stdout"].strip() == host
    assert r["ping"]["ping"] == "pong" and r["ping_put"]["ping"] == "pong"
    assert "QGA stdin" in proc.stdout, "the ping payload (> ~140 KiB) went through a guest file"
    assert "PUT " in proc.stdout and "AnsiballZ_ping.py" in proc.stdout, "non-pipelined module was put"
    assert r["cmd"]["rc"] == 0 and "ID=debian" in r["cmd"]["stdout_lines"]
    assert r["copy1"]["changed"] is True and r["copy2"]["changed"] is False
    assert r["stat"]["stat"]["exists"] and r["stat"]["stat"]["mode"] == "0640"
    assert r["stat"]["stat"]["checksum"] == hashlib.sha256(b"hello qga\n").hexdigest()
    assert (fetched / "hello.txt").read_bytes() == b"hello qga\n"
    facts = r["facts"]["ansible_facts"]
    assert facts["ansible_distribution"] == "Debian" and facts["ansible_hostname"] == host
    assert facts["ansible_python"]["version"]["major"] == 3
    assert r["sig"]["failed"] is True and r["sig"]["rc"] == 128 + 15
    # python died of SIGKILL under the module: Ansible reports a module failure with 128+9
    assert r["modkill"]["failed"] is True and r["modkill"]["rc"] == 128 + 9, r["modkill"]
    assert r["secret"]["changed"] is True and r["raw_secret"]["changed"] is True
    assert MARKER not in proc.stdout + proc.stderr, "guest output reached the log at -vvvv"


def test_32_mib_binary_file_both_ways(tmp_path: Path, python_guest: LabGuest) -> None:
    host = python_guest.name
    src = tmp_path / "big.bin"
    data = os.urandom(32 * 1024 * 1024)
    src.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    back = tmp_path / "back"
    tasks: list[dict[str, Any]] = [
        {"name": "push", "ansible.builtin.copy": {"src": str(src), "dest": "/tmp/big.bin", "mode": "0600"},
         "register": "push"},
        {"name": "checksum in the guest", "ansible.builtin.stat": {
            "path": "/tmp/big.bin", "checksum_algorithm": "sha256"}, "register": "st"},
        {"name": "pull", "ansible.builtin.fetch": {"src": "/tmp/big.bin", "dest": f"{back}/", "flat": True},
         "register": "pull"},
        {"name": "clean up", "ansible.builtin.raw": "rm -f /tmp/big.bin", "register": "rm"},
    ]
    proc, res = play(tmp_path, {host: libvirt_host(python_guest)}, tasks, extra=["-vvv"])
    assert proc.returncode == 0, explain(proc)
    r = res[host]
    assert r["push"]["changed"] is True
    assert r["st"]["stat"]["size"] == len(data) and r["st"]["stat"]["checksum"] == digest
    assert hashlib.sha256((back / "big.bin").read_bytes()).hexdigest() == digest
    assert "QGA put: 33554432 bytes" in proc.stdout and "sha256 verified" in proc.stdout
    assert "QGA fetch: 33554432 bytes" in proc.stdout


def test_timeouts_kill_the_command_in_the_guest(tmp_path: Path, python_guest: LabGuest) -> None:
    host = python_guest.name
    tasks: list[dict[str, Any]] = [
        {"name": "task timeout", "ansible.builtin.raw": "sleep 371", "timeout": 6,
         "register": "task_to", "ignore_errors": True},
        {"name": "command_timeout", "ansible.builtin.command": "sleep 372",
         "vars": {"ansible_virt_qga_command_timeout": 30}, "register": "cmd_to", "ignore_errors": True},
        {"name": "nothing left running", "ansible.builtin.raw": "ps -o pid,args | grep '[s]leep 37' || true",
         "register": "left"},
    ]
    proc, res = play(tmp_path, {host: libvirt_host(python_guest)}, tasks)
    assert proc.returncode == 0, explain(proc)
    r = res[host]
    assert r["task_to"]["failed"] is True
    assert "the task's timeout" in r["task_to"]["msg"] and "killed in the guest" in r["task_to"]["msg"]
    assert r["cmd_to"]["failed"] is True
    assert "(command_timeout)" in r["cmd_to"]["msg"] and "killed in the guest" in r["cmd_to"]["msg"]
    assert r["left"]["stdout"].strip() == "", r["left"]["stdout"]


def test_missing_agent_is_unreachable(tmp_path: Path, python_guest: LabGuest, stopped_domain: str) -> None:
    hosts = {
        "stopped": libvirt_host(python_guest, ansible_virt_qga_domain=stopped_domain),
        "ghost": libvirt_host(python_guest, ansible_virt_qga_domain="no-such-domain-qga"),
    }
    tasks = [{"name": "raw", "ansible.builtin.raw": "true", "register": "r", "ignore_unreachable": True}]
    proc, res = play(tmp_path, hosts, tasks)
    assert set(res) == {"stopped", "ghost"}, explain(proc)
    assert res["stopped"]["r"]["unreachable"] is True
    assert "not running" in res["stopped"]["r"]["msg"]
    assert res["ghost"]["r"]["unreachable"] is True and "no-such-domain-qga" in res["ghost"]["r"]["msg"]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_raw_in_a_busybox_guest_over_the_socket(tmp_path: Path, busybox_plain_guest: LabGuest) -> None:
    assert busybox_plain_guest.socket
    tasks: list[dict[str, Any]] = [
        {"name": "raw", "ansible.builtin.raw": "cat /etc/os-release; echo $((6 * 7))", "register": "raw"},
        {"name": "status", "ansible.builtin.raw": "exit 3", "register": "rc3", "ignore_errors": True},
        {"name": "signal", "ansible.builtin.raw": "kill -TERM $$", "register": "sig", "ignore_errors": True},
        {"name": "1 MiB of output", "register": "mib",
         "ansible.builtin.raw": "dd if=/dev/zero bs=65536 count=16 2>/dev/null | tr '\\0' a"},
        {"name": "17 MiB: qemu-ga keeps 16", "register": "trunc", "ignore_errors": True,
         "ansible.builtin.raw": "dd if=/dev/zero bs=1048576 count=17 2>/dev/null"},
        {"name": "no python here", "ansible.builtin.ping": {}, "register": "nopy", "ignore_errors": True},
    ]
    proc, res = play(tmp_path, {"bb": socket_host(busybox_plain_guest)}, tasks)
    assert proc.returncode == 0, explain(proc)
    r = res["bb"]
    assert r["raw"]["rc"] == 0 and r["raw"]["stdout_lines"][-1] == "42"
    assert r["rc3"]["rc"] == 3 and r["sig"]["rc"] == 143
    assert len(r["mib"]["stdout"]) == 1024 * 1024 and set(r["mib"]["stdout"]) == {"a"}
    assert r["trunc"]["failed"] is True and "truncated" in r["trunc"]["msg"], r["trunc"]
    assert r["nopy"]["failed"] is True and not r["nopy"].get("unreachable")


def test_reboot_and_reconnect(tmp_path: Path, python_guest: LabGuest) -> None:
    """Last in this file: the guest reboots (same domain, new agent process)."""
    host = python_guest.name
    boot_id = "cat /proc/sys/kernel/random/boot_id"
    tasks: list[dict[str, Any]] = [
        {"name": "boot id before", "ansible.builtin.raw": boot_id, "register": "before"},
        {"name": "reboot", "ansible.builtin.reboot": {"reboot_timeout": 240}, "register": "rb"},
        {"name": "boot id after", "ansible.builtin.raw": boot_id, "register": "after"},
        {"name": "reset_connection", "ansible.builtin.meta": "reset_connection"},
        {"name": "modules still work", "ansible.builtin.ping": {}, "register": "ping"},
    ]
    proc, res = play(tmp_path, {host: libvirt_host(python_guest)}, tasks)
    assert proc.returncode == 0, explain(proc)
    r = res[host]
    assert r["rb"]["rebooted"] is True and r["rb"]["failed"] is False
    assert r["before"]["stdout"].strip() and r["before"]["stdout"] != r["after"]["stdout"]
    assert r["ping"]["ping"] == "pong"

