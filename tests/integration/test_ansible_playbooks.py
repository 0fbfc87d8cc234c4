"""The Ansible collection against real lab guests, through ansible-playbook.

Two inventory hosts (both ``ansible_connection=local``, standing in for two hypervisors)
each drive their own lab guest, the way a fleet playbook runs one play over many
hypervisors. The playbook registers every result and dumps them to JSON; the assertions
here read that dump. Nothing is mocked: the modules import virt_qga from this checkout
and talk to qemu-ga 7.2 and 10.0 through the lab's libvirt, or the channel socket.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.collection_build import installed_collections
from tests.conftest import tool_missing
from virt_qga.lab import LabGuest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(tool_missing("ansible-playbook"),
                                reason="ansible-core is not installed (pip install ansible-core)")

GROUP = "group/virt_qga.guest_agent.guest_agent"
M = "virt_qga.guest_agent."


def ansible_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": str(installed_collections()),
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
        "ANSIBLE_LOCAL_TEMP": str(tmp / "local-tmp"),
        "ANSIBLE_REMOTE_TEMP": str(tmp / "remote-tmp"),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORKS": "2",
    })
    env.pop("VIRT_QGA_CONNECT", None)
    return env


def run_playbook(tmp: Path, inventory: dict[str, Any], tasks: list[dict[str, Any]],
                 extra: Sequence[str] = ()) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run one play over the inventory; return the process and {host: dumped vars}."""
    out_dir = tmp / "out"
    out_dir.mkdir(exist_ok=True)
    registered = sorted({t["register"] for t in tasks if "register" in t})
    pairs = ", ".join(f"'{name}': {name} | default(None)" for name in registered)
    dump = {
        "name": "dump the registered results",
        "ansible.builtin.copy": {
            "content": "{{ {" + pairs + "} | to_nice_json }}",
            "dest": str(out_dir) + "/{{ inventory_hostname }}.json",
        },
        "check_mode": False,
    }
    play = [{
        "name": "virt-qga collection integration",
        "hosts": "hypervisors",
        "gather_facts": False,
        "module_defaults": {GROUP: {"uri": "{{ vqga_uri | default(omit) }}",
                                    "domain": "{{ vm | default(omit) }}",
                                    "socket": "{{ vqga_socket | default(omit) }}",
                                    "timeout": 20}},
        "tasks": [*tasks, dump],
    }]
    # JSON is YAML: no YAML writer needed, and what ran is easy to read back.
    (tmp / "play.yml").write_text(json.dumps(play, indent=1))
    (tmp / "inventory.yml").write_text(json.dumps(inventory, indent=1))
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(tmp / "inventory.yml"), str(tmp / "play.yml"), *extra],
        env=ansible_env(tmp), capture_output=True, text=True, timeout=600, cwd=tmp)
    results = {p.stem: json.loads(p.read_text()) for p in out_dir.glob("*.json")}
    return proc, results


def inventory_for(hosts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    common = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    return {"all": {"children": {"hypervisors": {
        "hosts": {name: {**common, **hv} for name, hv in hosts.items()}}}}}


def libvirt_host(guest: LabGuest) -> dict[str, Any]:
    return {"vm": guest.name, "vqga_uri": guest.uri}


def explain(proc: subprocess.CompletedProcess[str]) -> str:
    return f"ansible-playbook rc={proc.returncode}\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def fleet(guests: dict[str, LabGuest]) -> dict[str, dict[str, Any]]:
    """Two 'hypervisors', one per agent version, each with its libvirt guest."""
    return {"hv-qga72": libvirt_host(guests["libvirt-7.2"]),
            "hv-qga100": libvirt_host(guests["libvirt-10.0"])}


def test_info_and_exec_over_a_fleet(tmp_path: Path, fleet: dict[str, dict[str, Any]]) -> None:
    marker = f"/tmp/vqga-ansible-{os.getpid()}"
    tasks: list[dict[str, Any]] = [
        {"name": "info", M + "virt_qga_info": {"gather": ["osinfo", "hostname", "fsinfo", "vcpus",
                                                         "timezone"]}, "register": "info"},
        {"name": "info in check mode", M + "virt_qga_info": {"gather": ["hostname"]},
         "check_mode": True, "register": "info_check"},
        {"name": "uname", M + "virt_qga_exec": {"argv": ["uname", "-r"]}, "register": "uname"},
        {"name": "status 3 expected", M + "virt_qga_exec": {
            "cmd": "echo out; echo err >&2; exit 3", "expected_rc": [3]}, "register": "rc3"},
        {"name": "status 4 not expected", M + "virt_qga_exec": {"cmd": "exit 4"},
         "register": "rc4", "ignore_errors": True},
        {"name": "stdin and env", M + "virt_qga_exec": {
            "cmd": 'cat; echo "$GREETING"', "stdin": "from stdin", "env": {"GREETING": "hi"}},
         "register": "stdin"},
        {"name": "chdir and merged output", M + "virt_qga_exec": {
            "cmd": "pwd; echo oops >&2", "chdir": "/data", "capture": "merged"}, "register": "merged"},
        {"name": "binary output", M + "virt_qga_exec": {"cmd": "printf '\\377\\376'"},
         "register": "binary"},
        {"name": "check mode does not run", M + "virt_qga_exec": {"argv": ["touch", marker]},
         "check_mode": True, "register": "touch_check"},
        {"name": "marker absent after check mode", M + "virt_qga_exec": {
            "argv": ["test", "-e", marker], "expected_rc": [0, 1]}, "register": "after_check"},
        {"name": "creates: runs once", M + "virt_qga_exec": {"argv": ["touch", marker],
                                                            "creates": marker},
         "register": "creates1"},
        {"name": "creates: skipped the second time", M + "virt_qga_exec": {
            "argv": ["touch", marker], "creates": marker}, "register": "creates2"},
        {"name": "removes: cleans up", M + "virt_qga_exec": {"argv": ["rm", marker],
                                                            "removes": marker},
         "register": "removes1"},
        {"name": "timeout", M + "virt_qga_exec": {"argv": ["sleep", "30"], "wait_timeout": 1},
         "register": "slow", "ignore_errors": True},
        {"name": "stop the timed-out process", M + "virt_qga_exec": {
            "argv": ["kill", "-9", "{{ slow.result.pid }}"]}, "register": "killed",
         "when": "slow.result is defined"},
        {"name": "unknown domain", M + "virt_qga_info": {"domain": "no-such-domain-vqga"},
         "register": "ghost", "ignore_errors": True},
    ]
    proc, res = run_playbook(tmp_path, inventory_for(fleet), tasks)
    assert proc.returncode == 0, explain(proc)
    assert set(res) == set(fleet), explain(proc)
    for host, r in res.items():
        want_version = "7.2" if host == "hv-qga72" else "10.0"
        info = r["info"]
        assert info["ping"] is True and info["changed"] is False
        assert info["version"].startswith(want_version)
        assert "guest-exec" in info["supported_commands"]
        assert info["facts"]["osinfo"]["kernel_release"]
        assert info["facts"]["hostname"]
        assert any(fs["mountpoint"] == "/data" for fs in info["facts"]["fsinfo"])
        assert sum(1 for v in info["facts"]["vcpus"] if v["online"]) >= 1
        assert r["info_check"]["facts"]["hostname"] == info["facts"]["hostname"]
        assert r["info_check"]["changed"] is False

        assert r["uname"]["rc"] == 0 and r["uname"]["changed"] is True
        assert r["uname"]["stdout_lines"] == [info["facts"]["osinfo"]["kernel_release"]]
        assert (r["rc3"]["rc"], r["rc3"]["stdout"], r["rc3"]["stderr"]) == (3, "out\n", "err\n")
        assert r["rc3"].get("failed") is not True
        assert r["rc4"]["failed"] is True and r["rc4"]["rc"] == 4 and r["rc4"]["exit_code"] == 4
        assert r["stdin"]["stdout_lines"] == ["from stdin", "hi"]
        assert r["merged"]["stdout_lines"] == ["/data", "oops"] and r["merged"]["stderr"] == ""
        assert r["binary"]["stdout_encoding"] == "base64" and r["binary"]["stdout"] == "//4="

        assert r["touch_check"]["changed"] is True and "rc" not in r["touch_check"]
        assert r["after_check"]["rc"] == 1, "check mode must not have run the command"
        assert r["creates1"]["changed"] is True and r["creates1"]["rc"] == 0
        assert r["creates2"]["changed"] is False and "exists" in r["creates2"]["msg"]
        assert r["removes1"]["changed"] is True

        assert r["slow"]["failed"] is True and r["slow"]["exit_code"] == 124
        assert r["slow"]["error"] == "OperationError" and r["slow"]["result"]["pid"] > 0
        assert r["killed"]["rc"] == 0

        assert r["ghost"]["failed"] is True
        assert r["ghost"]["exit_code"] == 6 and r["ghost"]["error"] == "DomainNotFoundError"
        assert "Traceback" not in r["ghost"]["msg"]


@pytest.mark.stacks("host")  # a plain QEMU guest: no libvirt stack involved
def test_info_over_the_channel_socket(tmp_path: Path, guests: dict[str, LabGuest]) -> None:
    plain = guests["plain-10.0"]
    assert plain.socket
    inv = inventory_for({"hv-plain": {"vqga_socket": plain.socket}})
    tasks = [{"name": "info", M + "virt_qga_info": {"gather": ["all"]}, "register": "info"},
             {"name": "exec", M + "virt_qga_exec": {"argv": ["cat", "/etc/os-release"]},
              "register": "osrel"}]
    proc, res = run_playbook(tmp_path, inv, tasks)
    assert proc.returncode == 0, explain(proc)
    r = res["hv-plain"]
    assert r["info"]["transport"] == "socket" and r["info"]["version"].startswith("10.0")
    every = {"osinfo", "hostname", "fsinfo", "vcpus", "interfaces", "timezone", "users", "disks",
             "time", "memory", "vcpu_views"}
    assert set(r["info"]["facts"]) | set(r["info"]["unavailable"]) == every
    assert "vcpu_views" in r["info"]["unavailable"] and r["info"]["freeze_status"] == "thawed"
    assert {"osinfo", "hostname", "vcpus", "memory", "time"} <= set(r["info"]["facts"])
    assert r["info"]["facts"]["memory"]["block_size"] > 0
    assert r["osrel"]["rc"] == 0 and r["osrel"]["stdout"]


def test_copy_push_pull_idempotent(tmp_path: Path, guests: dict[str, LabGuest]) -> None:
    guest = guests["libvirt-10.0"]
    src = tmp_path / "payload.bin"
    payload = os.urandom(300_000) + b"end\n"
    src.write_bytes(payload)
    src.chmod(0o600)
    changed_src = tmp_path / "payload2.bin"
    changed_src.write_bytes(payload + b"more\n")
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    gpath = f"/tmp/vqga-ansible-copy-{os.getpid()}"
    tasks: list[dict[str, Any]] = [
        {"name": "push", M + "virt_qga_copy": {"src": str(src), "dest": gpath, "mode": "0640"},
         "register": "push1"},
        {"name": "push again: identical", M + "virt_qga_copy": {"src": str(src), "dest": gpath,
                                                                "mode": "0640"},
         "register": "push2"},
        {"name": "mode only", M + "virt_qga_copy": {"src": str(src), "dest": gpath, "mode": "0600"},
         "register": "push_mode"},
        {"name": "different content, check mode", M + "virt_qga_copy": {
            "src": str(changed_src), "dest": gpath}, "check_mode": True, "register": "push_check"},
        {"name": "different content, force=false", M + "virt_qga_copy": {
            "src": str(changed_src), "dest": gpath, "force": False}, "register": "push_noforce"},
        {"name": "guest checksum", M + "virt_qga_exec": {"argv": ["sha256sum", gpath]},
         "register": "guest_sum"},
        {"name": "pull into a directory", M + "virt_qga_copy": {
            "src": gpath, "dest": str(pulled) + "/", "direction": "pull"}, "register": "pull1"},
        {"name": "pull again", M + "virt_qga_copy": {
            "src": gpath, "dest": str(pulled) + "/", "direction": "pull"}, "register": "pull2"},
        {"name": "missing guest file", M + "virt_qga_copy": {
            "src": gpath + ".nope", "dest": str(pulled) + "/", "direction": "pull"},
         "register": "pull_missing", "ignore_errors": True},
        {"name": "clean up", M + "virt_qga_exec": {"argv": ["rm", "-f", gpath]}},
    ]
    proc, res = run_playbook(tmp_path, inventory_for({"hv": libvirt_host(guest)}), tasks)
    assert proc.returncode == 0, explain(proc)
    r = res["hv"]
    digest = hashlib.sha256(payload).hexdigest()
    assert r["push1"]["changed"] is True and r["push1"]["checksum"] == digest
    assert r["push1"]["transfer"]["verified"] is True and r["push1"]["mode"] == "0640"
    assert r["push2"]["changed"] is False and r["push2"]["copied"] is False
    assert r["push_mode"]["changed"] is True and r["push_mode"]["copied"] is False
    assert r["push_mode"]["mode"] == "0600"
    assert r["push_check"]["changed"] is True and r["push_check"]["copied"] is True
    assert r["push_noforce"]["changed"] is False
    assert r["guest_sum"]["stdout"].split()[0] == digest, "check mode / force=false changed the guest"
    assert r["pull1"]["changed"] is True
    local = pulled / Path(gpath).name
    assert local.read_bytes() == payload
    assert oct(local.stat().st_mode & 0o777) == "0o600"
    assert r["pull2"]["changed"] is False
    assert r["pull_missing"]["failed"] is True and r["pull_missing"]["exit_code"] == 2


def test_snapshot_backup_vcpus_memory_on_a_fresh_guest(tmp_path: Path, store: Path, fresh_guest: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The changing modules on a throw-away guest: check mode changes nothing, a second
    run at the same target reports no change, and the real changes happen."""
    from virt_qga.agent import GuestAgent

    g = fresh_guest()
    monkeypatch.setenv("VIRT_QGA_STATE_DIR", str(tmp_path / "state"))  # journal + locks
    tasks: list[dict[str, Any]] = [
        {"name": "snapshot, check mode", M + "virt_qga_snapshot": {}, "check_mode": True,
         "register": "snap_check"},
        {"name": "snapshot", M + "virt_qga_snapshot": {"pre_freeze": "echo hook > /data/hook.txt",
                                                       "max_frozen": 10},
         "register": "snap"},
        {"name": "commit back", M + "virt_qga_snapshot": {"commit_back": True}, "register": "cb"},
        {"name": "commit back again: nothing to do", M + "virt_qga_snapshot": {"commit_back": True},
         "register": "cb2"},
        {"name": "backup, check mode", M + "virt_qga_backup": {"dest": str(store)},
         "check_mode": True, "register": "bk_check"},
        {"name": "backup", M + "virt_qga_backup": {"dest": str(store), "keep": 1,
                                                       "level": "full"},
         "register": "bk1"},
        {"name": "backup again, keep the newest of each day", M + "virt_qga_backup": {
            "dest": str(store), "keep_daily": 7, "level": "full"},
         "register": "bk2"},
        {"name": "backup below a file fails cleanly",
         M + "virt_qga_backup": {"dest": "/etc/passwd/below-a-file"}, "ignore_errors": True,
         "register": "bk_bad"},
        {"name": "vcpus already 2", M + "virt_qga_vcpus": {"count": 2}, "register": "v2"},
        {"name": "vcpus 3, check mode", M + "virt_qga_vcpus": {"count": 3}, "check_mode": True,
         "register": "v3_check"},
        {"name": "vcpus 3", M + "virt_qga_vcpus": {"count": 3, "wait_timeout": 90}, "diff": True,
         "register": "v3"},
        {"name": "vcpus 3 again", M + "virt_qga_vcpus": {"count": 3}, "register": "v3_again"},
        # live already 3, the persistent definition still 2: config=true fixes only that
        {"name": "vcpus 3 in the definition too", M + "virt_qga_vcpus": {"count": 3, "config": True},
         "diff": True, "register": "v3_config"},
        {"name": "vcpus 3 config again", M + "virt_qga_vcpus": {"count": 3, "config": True},
         "register": "v3_config_again"},
        {"name": "no DIMMs yet", M + "virt_qga_memory": {"dimm_mb": 0}, "register": "m0"},
        {"name": "256 MiB DIMM, check mode", M + "virt_qga_memory": {"dimm_mb": 256},
         "check_mode": True, "register": "m_check"},
        {"name": "256 MiB DIMM", M + "virt_qga_memory": {"dimm_mb": 256}, "register": "m256"},
        {"name": "256 MiB DIMM again", M + "virt_qga_memory": {"dimm_mb": 256}, "register": "m256_again"},
        {"name": "256 MiB DIMM in the definition too",
         M + "virt_qga_memory": {"dimm_mb": 256, "config": True},
         "diff": True, "register": "m256_config"},
        {"name": "256 MiB DIMM config again", M + "virt_qga_memory": {"dimm_mb": 256, "config": True},
         "register": "m256_config_again"},
        {"name": "remove the DIMM", M + "virt_qga_memory": {"dimm_mb": 0}, "register": "m_back"},
    ]
    proc, res = run_playbook(tmp_path, inventory_for({"hv": libvirt_host(g)}), tasks)
    assert proc.returncode == 0, explain(proc)
    r = res["hv"]
    assert r["snap_check"]["changed"] is True and "snapshot" not in r["snap_check"]
    snap = r["snap"]
    assert snap["changed"] is True and snap["consistency"] == "application"
    assert len(snap["overlays"]) == 1 and 0 < snap["frozen_window_ms"] < 10_000
    assert r["cb"]["changed"] is True and r["cb"]["committed"][0]["target"] == "vda"
    assert r["cb2"]["changed"] is False
    assert r["bk_check"]["changed"] is True and "directory" not in r["bk_check"]
    assert r["bk1"]["changed"] is True and r["bk1"]["consistency"] == "filesystem"
    assert [d["target"] for d in r["bk1"]["disks"]] == ["vda"]
    assert r["bk1"]["method"] == "backup-api" and r["bk1"]["level"] == "full"
    assert r["bk2"]["pruned"] == [str(Path(r["bk1"]["directory"]).parent)]      # the whole old chain
    # both on one day: keep_daily keeps that day's newest, and says so
    assert r["bk2"]["result"]["retention"]["kept"] == {Path(r["bk2"]["directory"]).name: "daily"}
    assert sorted((store / g.name).iterdir()) == [Path(r["bk2"]["directory"]).parent]
    assert (Path(r["bk2"]["directory"]) / "vda.qcow2").stat().st_size > 0
    bad = r["bk_bad"]
    assert bad["failed"] is True and bad["exit_code"] == 2 and "cannot create backup directory" in bad["msg"]

    assert r["v2"]["changed"] is False
    assert r["v3_check"]["changed"] is True and "after" not in r["v3_check"]
    assert r["v3"]["changed"] is True and r["v3"]["after"]["guest"]["online"] == [0, 1, 2]
    assert r["v3_again"]["changed"] is False
    assert r["v3"]["diff"] == {"before": {"vcpus": 2}, "after": {"vcpus": 3}}
    assert r["v3_config"]["changed"] is True and "result" not in r["v3_config"]
    assert r["v3_config"]["diff"]["before"]["config_vcpus"] != 3
    assert r["v3_config"]["diff"]["after"] == {"vcpus": 3, "config_vcpus": 3}
    assert r["v3_config_again"]["changed"] is False

    assert r["m0"]["changed"] is False
    assert r["m_check"]["changed"] is True and r["m_check"]["plan"] == {"plug": [256]}
    assert r["m256"]["changed"] is True and r["m256"]["after_mb"] == 256
    assert r["m256_again"]["changed"] is False
    assert r["m256_config"]["changed"] is True and r["m256_config"]["results"][0]["add"] == [256 * 2**20]
    assert r["m256_config"]["diff"] == {"before": {"dimm_mb": 256, "config_dimm_mb": 0},
                                        "after": {"dimm_mb": 256, "config_dimm_mb": 256}}
    assert r["m256_config_again"]["changed"] is False
    assert r["m_back"]["changed"] is True and r["m_back"]["after_mb"] == 0

    # Read back outside the modules: 3 vCPUs online, no DIMM blocks left online, thawed.
    with GuestAgent.for_domain(g.name, g.uri, timeout=15) as agent:
        assert sorted(v["logical-id"] for v in agent.get_vcpus() if v["online"]) == [0, 1, 2]
        assert agent.fsfreeze_status() == "thawed"


KEY1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGs2dmFxZ2Ffa2V5X29uZV9mb3JfdGVzdHM one@vqga"
KEY2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGs2dmFxZ2Ffa2V5X3R3b19mb3JfdGVzdHM two@vqga"
#: openssl passwd -6 -salt vqgasalt pw-for-tester
HASH = ("$6$vqgasalt$K8fqTonTCB7.ROUJdAJ4bKUvSaQ/kmLhHzb2xGbOv.nL3NatM8SeinWyuTgCw"
        ".FsXCAGP1JvEwdLyTFi4w5S20")


def _new_module_tasks(marker: str) -> list[dict[str, Any]]:
    """call, recover, authorized_key, user_password, info's new fields, then power."""
    def task(name: str, module: str, args: dict[str, Any], register: str, **kw: Any) -> dict[str, Any]:
        return {"name": name, M + module: args, "register": register, **kw}

    shadow = {"argv": ["grep", "^tester:", "/etc/shadow"]}
    return [
        task("info: freeze status and vCPU views", "virt_qga_info", {"gather": ["vcpu_views"]}, "info"),
        task("call read-only, check mode", "virt_qga_call", {"command": "get-osinfo"}, "call_ro",
             check_mode=True),
        task("call a write, check mode", "virt_qga_call", {"command": "guest-exec", "args": {
            "path": "/bin/touch", "arg": [marker]}}, "call_w_check", check_mode=True),
        task("marker absent after check mode", "virt_qga_exec", {"argv": ["test", "-e", marker],
                                                                 "expected_rc": [0, 1]}, "marker0"),
        task("call bad args", "virt_qga_call", {"command": "guest-fstrim", "args": {"minimum": "x"}},
             "call_bad", ignore_errors=True),
        task("recover a clean guest, check mode", "virt_qga_recover", {}, "rec_clean_check",
             check_mode=True),
        task("recover a clean guest", "virt_qga_recover", {}, "rec_clean"),
        task("call a write: freeze", "virt_qga_call", {"command": "guest-fsfreeze-freeze"}, "freeze"),
        task("info while frozen", "virt_qga_info", {}, "info_frozen"),
        task("recover a frozen guest, check mode", "virt_qga_recover", {}, "rec_frozen_check",
             check_mode=True),
        task("recover a frozen guest", "virt_qga_recover", {}, "rec_frozen"),
        task("info after recover", "virt_qga_info", {}, "info_thawed"),
        task("keys present, check mode", "virt_qga_authorized_key", {"user": "tester", "keys": [KEY1, KEY2]},
             "key_check", check_mode=True, diff=True),
        task("keys present", "virt_qga_authorized_key", {"user": "tester", "keys": [KEY1, KEY2]}, "key1",
             diff=True),
        task("keys present again", "virt_qga_authorized_key", {"user": "tester", "keys": [KEY1, KEY2]},
             "key1_again"),
        task("keys exclusive", "virt_qga_authorized_key", {"user": "tester", "keys": [KEY2],
                                                          "state": "exclusive"}, "key_excl"),
        task("keys exclusive again", "virt_qga_authorized_key", {"user": "tester", "keys": [KEY2],
                                                                "state": "exclusive"}, "key_excl_again"),
        task("keys absent", "virt_qga_authorized_key", {"user": "tester", "keys": [KEY2],
                                                       "state": "absent"}, "key_absent"),
        task("keys absent again", "virt_qga_authorized_key", {"user": "tester", "keys": [KEY2],
                                                             "state": "absent"}, "key_absent_again"),
        task("password on_create, check mode", "virt_qga_user_password", {
            "user": "tester", "password": "first-pw", "update_password": "on_create"}, "pw_check",
             check_mode=True),
        task("shadow after check mode", "virt_qga_exec", shadow, "shadow0"),
        task("password on_create", "virt_qga_user_password", {
            "user": "tester", "password": "first-pw", "update_password": "on_create"}, "pw_create"),
        task("password on_create again", "virt_qga_user_password", {
            "user": "tester", "password": "other-pw", "update_password": "on_create"}, "pw_create_again"),
        task("shadow after on_create", "virt_qga_exec", shadow, "shadow1"),
        task("password crypted", "virt_qga_user_password", {"user": "tester", "password": HASH,
                                                           "crypted": True}, "pw_hash"),
        task("password crypted again", "virt_qga_user_password", {"user": "tester", "password": HASH,
                                                                 "crypted": True}, "pw_hash_again"),
        task("shadow after crypted", "virt_qga_exec", shadow, "shadow2"),
        task("password of a missing user", "virt_qga_user_password", {
            "user": "nobody-vqga", "password": "x", "update_password": "on_create"}, "pw_nouser",
             ignore_errors=True),
        task("reboot, check mode", "virt_qga_power", {"mode": "reboot"}, "reboot_check", check_mode=True),
        task("reboot", "virt_qga_power", {"mode": "reboot", "wait_timeout": 150}, "reboot"),
        task("agent answers after the reboot", "virt_qga_call", {"command": "ping"}, "ping_after"),
        task("powerdown", "virt_qga_power", {"mode": "powerdown", "wait_timeout": 90}, "off"),
        task("powerdown again", "virt_qga_power", {"mode": "powerdown"}, "off_again"),
    ]


def test_new_modules_on_a_fresh_guest(tmp_path: Path, fresh_guest: Any,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """call, recover, authorized_key, user_password, power and info's new fields in one play:
    check mode changes nothing, a second run reports no change, the guest shows the effect."""
    g = fresh_guest()
    monkeypatch.setenv("VIRT_QGA_STATE_DIR", str(tmp_path / "state"))
    marker = f"/tmp/vqga-call-{os.getpid()}"
    proc, res = run_playbook(tmp_path, inventory_for({"hv": libvirt_host(g)}), _new_module_tasks(marker))
    assert proc.returncode == 0, explain(proc)
    r = res["hv"]
    assert "first-pw" not in proc.stdout + proc.stderr and "other-pw" not in proc.stdout

    views = r["info"]["facts"]["vcpu_views"]
    assert r["info"]["freeze_status"] == "thawed"
    assert views["libvirt"]["current"] == 2 and views["qemu"]["present"] == [0, 1]
    assert views["guest"]["online"] == [0, 1] and views["disagreements"] == []

    assert r["call_ro"]["changed"] is False and r["call_ro"]["read_only"] is True
    assert r["call_ro"]["reply"]["kernel-release"]
    assert r["call_w_check"]["changed"] is True and "reply" not in r["call_w_check"]
    assert r["marker0"]["rc"] == 1, "check mode sent guest-exec"
    bad = r["call_bad"]
    assert bad["failed"] is True and bad["exit_code"] == 2 and "minimum" in bad["msg"]

    for key in ("rec_clean_check", "rec_clean"):
        assert r[key]["changed"] is False and r[key]["frozen_before"] is False, r[key]
    assert r["freeze"]["changed"] is True and r["freeze"]["reply"] >= 1
    assert r["info_frozen"]["freeze_status"] == "frozen"
    assert r["rec_frozen_check"]["changed"] is True
    assert "would thaw the guest" in r["rec_frozen_check"]["actions"]
    assert r["rec_frozen"]["changed"] is True and r["rec_frozen"]["thawed"] >= 1
    assert r["info_thawed"]["freeze_status"] == "thawed"

    assert r["key_check"]["changed"] is True and r["key_check"]["added"] == [KEY1, KEY2]
    assert r["key_check"]["diff"]["before"] == "" and KEY1 in r["key_check"]["diff"]["after"]
    assert r["key1"]["changed"] is True and sorted(r["key1"]["keys"]) == [KEY1, KEY2]
    assert r["key1_again"]["changed"] is False
    assert r["key_excl"]["changed"] is True and r["key_excl"]["keys"] == [KEY2]
    assert r["key_excl"]["removed"] == [KEY1]
    assert r["key_excl_again"]["changed"] is False
    assert r["key_absent"]["changed"] is True and r["key_absent"]["keys"] == []
    assert r["key_absent_again"]["changed"] is False

    assert r["pw_check"]["changed"] is True
    assert r["shadow0"]["stdout"].split(":")[1] == "!", "check mode set the password"
    assert r["pw_create"]["changed"] is True and r["pw_create_again"]["changed"] is False
    assert r["shadow1"]["stdout"].split(":")[1].startswith("$")
    assert r["pw_hash"]["changed"] is True and r["pw_hash_again"]["changed"] is False
    assert r["shadow2"]["stdout"].split(":")[1] == HASH
    assert r["pw_nouser"]["failed"] is True and r["pw_nouser"]["exit_code"] == 2

    assert r["reboot_check"]["changed"] is True and "confirmed" not in r["reboot_check"]
    reboot = r["reboot"]
    assert reboot["changed"] is True and reboot["confirmed"] is True and reboot["agent_gone"] is True
    assert reboot["final_state"] == "running" and 0 < reboot["elapsed"] < 150
    assert r["ping_after"]["changed"] is False
    assert r["off"]["changed"] is True and r["off"]["final_state"] == "shut off"
    assert r["off_again"]["changed"] is False and "shut off" in r["off_again"]["msg"]
