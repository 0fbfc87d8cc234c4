"""The one-command-each guest commands: JSON validated against the spec, human output,
and the account commands (password, ssh-keys) verified from inside the guest."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.integration.test_exec import ALL, guest_sh, vq, vq_json
from virt_qga.spec import get_spec

#: CLI command -> (JSON key holding the agent's reply, wire command)
READ_ONLY = {
    "osinfo": ("osinfo", "guest-get-osinfo"),
    "users": ("users", "guest-get-users"),
    "timezone": ("timezone", "guest-get-timezone"),
    "net": ("interfaces", "guest-network-get-interfaces"),
    "fsinfo": ("filesystems", "guest-get-fsinfo"),
    "disks": ("disks", "guest-get-disks"),
    "diskstats": ("diskstats", "guest-get-diskstats"),
    "cpustats": ("cpustats", "guest-get-cpustats"),
    "fstrim": ("fstrim", "guest-fstrim"),
}


@pytest.mark.parametrize("key", ALL)
def test_read_only_commands_json_matches_spec(guests: dict[str, Any], key: str) -> None:
    g = guests[key]
    spec = get_spec()
    for cmd, (field, wire) in READ_ONLY.items():
        rc, doc = vq_json(g, cmd)
        assert rc == 0, (cmd, doc)
        spec.validate_reply(wire, doc[field])
        p = vq(g, cmd)  # the human table renders too
        assert p.returncode == 0 and p.stdout.strip(), cmd
    rc, doc = vq_json(g, "hostname")
    assert rc == 0
    spec.validate_reply("guest-get-host-name", {"host-name": doc["hostname"]})
    assert doc["hostname"]
    rc, doc = vq_json(g, "time")
    spec.validate_reply("guest-get-time", doc["guest_ns"])
    assert abs(doc["offset_ns"]) < 600 * 10**9
    # what the lab guest really has: ext4 /data on a virtio disk, a loopback interface
    _, fs = vq_json(g, "fsinfo")
    assert any(f["mountpoint"] == "/data" and f["type"] == "ext4" for f in fs["filesystems"])
    _, net = vq_json(g, "net")
    assert any(i["name"] == "lo" for i in net["interfaces"])


@pytest.mark.parametrize("key", ["libvirt-7.2", "plain-10.0"])
def test_unsupported_command_is_one_clear_line(guests: dict[str, Any], key: str) -> None:
    """guest-get-devices is Windows-only: exit 3, one line naming the agent version."""
    g = guests[key]
    p = vq(g, "devices")
    assert p.returncode == 3
    lines = p.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "guest-get-devices" in lines[0] and f"qemu-ga {g.agent}" in lines[0]
    assert "or newer" not in lines[0]  # 7.2 / 10.0 are newer than 5.2: no misleading hint
    assert "Traceback" not in p.stderr.decode()


def _shadow_hash(g: Any, user: str) -> str:
    line = guest_sh(g, f"grep '^{user}:' /etc/shadow").decode().strip()
    return line.split(":")[1]


KEY1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH6kq0YvSqz0q3Zt7pQx1y1Yb9Jd8QfNn5xN0Lw6H2sT one@test"
KEY2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKc8l0rX8tJb6Fv1Yq8Q2fCz3m5G4o7pL9uHn0dA1bYe two@test"


@pytest.mark.parametrize("agent, plain", [("7.2", False), ("10.0", True)])
def test_password_ssh_keys_and_clock(fresh_guest: Any, tmp_path: Any, agent: str, plain: bool) -> None:
    g = fresh_guest(agent=agent, plain=plain)
    # password from stdin: the shadow hash changes; the secret is in no output
    before = _shadow_hash(g, "tester")
    p = vq(g, "password", "tester", stdin=b"n3w-Secret!\n")
    assert p.returncode == 0, p.stderr
    after = _shadow_hash(g, "tester")
    assert after != before and after.startswith("$")
    assert b"n3w-Secret" not in p.stdout + p.stderr
    # --crypted from a file: exactly that hash lands in /etc/shadow
    known = "$6$saltsalt$" + "a" * 86
    pw = tmp_path / "pw"
    pw.write_text(known + "\n")
    rc, doc = vq_json(g, "password", "tester", "--crypted", "--password-file", str(pw))
    assert rc == 0 and doc["changed"] and known not in str(doc)
    assert _shadow_hash(g, "tester") == known
    # the same hash again, and on_create for an account that has a password: no change
    rc, doc = vq_json(g, "password", "tester", "--crypted", "--password-file", str(pw))
    assert rc == 0 and doc["changed"] is False
    rc, doc = vq_json(g, "password", "tester", "--update-password", "on_create", stdin=b"other\n")
    assert rc == 0 and doc["changed"] is False and "already has a password" in doc["msg"]
    assert _shadow_hash(g, "tester") == known
    # ssh keys: set, add (from stdin), remove, list; checked in authorized_keys itself
    rc, doc = vq_json(g, "ssh-keys", "tester", "set", KEY1)
    assert rc == 0 and doc["keys"] == [KEY1]
    p = vq(g, "ssh-keys", "tester", "add", stdin=(KEY2 + "\n").encode())
    assert p.returncode == 0, p.stderr
    ak = guest_sh(g, "cat ~tester/.ssh/authorized_keys").decode().splitlines()
    assert ak == [KEY1, KEY2]
    rc, doc = vq_json(g, "ssh-keys", "tester", "remove", KEY1)
    assert rc == 0 and doc["keys"] == [KEY2]
    assert guest_sh(g, "cat ~tester/.ssh/authorized_keys").decode().splitlines() == [KEY2]
    rc, doc = vq_json(g, "ssh-keys", "tester")
    assert doc["keys"] == [KEY2]
    # clock: set an hour off, then sync from the host
    now = time.time_ns()
    rc, _ = vq_json(g, "time", "--set", str(now - 3600 * 10**9))
    assert rc == 0
    rc, doc = vq_json(g, "time")
    assert doc["offset_ns"] < -3500 * 10**9
    rc, doc = vq_json(g, "time", "--sync-from-host")
    assert rc == 0 and doc["offset_before_ns"] < -3500 * 10**9
    rc, doc = vq_json(g, "time")
    assert abs(doc["offset_ns"]) < 5 * 10**9
