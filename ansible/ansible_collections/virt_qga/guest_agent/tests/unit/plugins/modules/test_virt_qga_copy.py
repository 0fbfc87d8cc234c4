# Copyright (c) virt-qga developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""virt_qga_copy decisions against a tiny in-memory guest filesystem: identical content is
no change, mode-only fixes, force=false, check mode writes nothing, pull into a directory.
Real transfers (chunking, atomic rename, verification) are covered by the integration test
in the repository and the files workflow's own tests."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.virt_qga.guest_agent.plugins.modules import virt_qga_copy as mod


class GuestFS:
    """Files, modes and directories of a fake guest, driven by the commands files.py runs."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, int] = {}
        self.dirs = {"/", "/etc", "/tmp"}
        self.handles: dict[int, list[Any]] = {}
        self.writes = 0

    def program(self, argv: list[str], env: Any, stdin: bytes) -> dict[str, Any]:
        if argv[0] == "/bin/sh" and '[ -d "$1" ]' in argv[2]:
            p = argv[4].rstrip("/") or "/"
            kind = "dir" if p in self.dirs else "file" if p in self.files else "missing"
            return {"exitcode": 0, "stdout": kind.encode() + b"\n"}
        if argv[0] == "sha256sum":
            data = self.files.get(argv[1])
            if data is None:
                return {"exitcode": 1, "stderr": b"no such file"}
            return {"exitcode": 0, "stdout": hashlib.sha256(data).hexdigest().encode() + b"  x\n"}
        if argv[0] == "stat":
            if argv[-1] not in self.files:
                return {"exitcode": 1}
            return {"exitcode": 0, "stdout": f"{self.modes.get(argv[-1], 0o644):o}\n".encode()}
        if argv[0] == "chmod":
            self.modes[argv[2]] = int(argv[1], 8)
            return {"exitcode": 0}
        if argv[0] == "mv":
            self.files[argv[3]] = self.files.pop(argv[2])
            self.modes[argv[3]] = self.modes.pop(argv[2], 0o644)
            return {"exitcode": 0}
        if argv[0] == "rm":
            self.files.pop(argv[-1], None)
            return {"exitcode": 0}
        return {"exitcode": 127, "stderr": b"not found"}


@pytest.fixture
def guest(fake_agent: Any) -> Any:
    fs = GuestFS()
    agent = fake_agent(mod, program=fs.program)

    def file_open(path: str, mode: str = "r") -> int:
        if "w" in mode:
            fs.files[path] = b""
        elif path not in fs.files:
            from virt_qga.errors import GuestError

            raise GuestError(f"failed to open file '{path}'")
        h = 1000 + len(fs.handles)
        fs.handles[h] = [path, 0]
        return h

    def file_write(handle: int, buf_b64: str, count: int | None = None) -> dict[str, Any]:
        data = base64.b64decode(buf_b64)
        fs.files[fs.handles[handle][0]] += data
        fs.writes += 1
        return {"count": len(data), "eof": False}

    def file_read(handle: int, count: int | None = None) -> dict[str, Any]:
        path, pos = fs.handles[handle]
        data = fs.files[path][pos:pos + (count or 4096)]
        fs.handles[handle][1] = pos + len(data)
        return {"count": len(data), "buf-b64": base64.b64encode(data).decode(),
                "eof": pos + len(data) >= len(fs.files[path])}

    agent.file_open = file_open
    agent.file_write = file_write
    agent.file_read = file_read
    agent.file_flush = lambda handle: None
    agent.file_close = lambda handle: None
    return fs


def local(tmp_path: Path, data: bytes, mode: int = 0o644) -> str:
    p = tmp_path / "src.conf"
    p.write_bytes(data)
    p.chmod(mode)
    return str(p)


def test_push_new_file(run_module: Any, guest: GuestFS, tmp_path: Path) -> None:
    res = run_module(mod, {"domain": "vm", "src": local(tmp_path, b"a=1\n"), "dest": "/etc/app.conf",
                           "mode": "0600"})
    assert not res.failed and res.result["changed"] is True and res.result["copied"] is True
    assert guest.files["/etc/app.conf"] == b"a=1\n" and guest.modes["/etc/app.conf"] == 0o600
    assert res.result["checksum"] == hashlib.sha256(b"a=1\n").hexdigest()


def test_push_identical_is_no_change(run_module: Any, guest: GuestFS, tmp_path: Path) -> None:
    guest.files["/etc/app.conf"], guest.modes["/etc/app.conf"] = b"a=1\n", 0o600
    res = run_module(mod, {"domain": "vm", "src": local(tmp_path, b"a=1\n"), "dest": "/etc/app.conf",
                           "mode": "0600"})
    assert res.result["changed"] is False and guest.writes == 0


def test_push_mode_only(run_module: Any, guest: GuestFS, tmp_path: Path) -> None:
    guest.files["/etc/app.conf"], guest.modes["/etc/app.conf"] = b"a=1\n", 0o644
    res = run_module(mod, {"domain": "vm", "src": local(tmp_path, b"a=1\n"), "dest": "/etc/app.conf",
                           "mode": 0o600})  # an unquoted YAML 0600 arrives as the int 384
    assert res.result["changed"] is True and res.result["copied"] is False
    assert guest.modes["/etc/app.conf"] == 0o600 and guest.writes == 0


def test_push_into_directory_keeps_the_name(run_module: Any, guest: GuestFS, tmp_path: Path) -> None:
    res = run_module(mod, {"domain": "vm", "src": local(tmp_path, b"x"), "dest": "/tmp"})
    assert res.result["dest"] == "/tmp/src.conf" and guest.files["/tmp/src.conf"] == b"x"


def test_push_force_false_leaves_different_target(run_module: Any, guest: GuestFS, tmp_path: Path) -> None:
    guest.files["/etc/app.conf"] = b"old\n"
    res = run_module(mod, {"domain": "vm", "src": local(tmp_path, b"new\n"), "dest": "/etc/app.conf",
                           "force": False})
    assert res.result["changed"] is False and guest.files["/etc/app.conf"] == b"old\n"


def test_push_check_mode_writes_nothing(run_module: Any, guest: GuestFS, tmp_path: Path) -> None:
    guest.files["/etc/app.conf"] = b"old\n"
    res = run_module(mod, {"domain": "vm", "src": local(tmp_path, b"new\n"), "dest": "/etc/app.conf"},
                     check_mode=True)
    assert res.result["changed"] is True and guest.files["/etc/app.conf"] == b"old\n"
    assert guest.writes == 0


def test_pull_then_identical(run_module: Any, guest: GuestFS, tmp_path: Path) -> None:
    guest.files["/etc/hostname"], guest.modes["/etc/hostname"] = b"vm1\n", 0o640
    args = {"domain": "vm", "src": "/etc/hostname", "dest": str(tmp_path) + "/", "direction": "pull"}
    res = run_module(mod, args)
    target = tmp_path / "hostname"
    assert res.result["changed"] is True and target.read_bytes() == b"vm1\n"
    assert target.stat().st_mode & 0o777 == 0o640
    res = run_module(mod, args)
    assert res.result["changed"] is False


def test_pull_missing_is_bad_input(run_module: Any, guest: GuestFS, tmp_path: Path) -> None:
    res = run_module(mod, {"domain": "vm", "src": "/nope", "dest": str(tmp_path / "x"),
                           "direction": "pull"})
    assert res.failed and res.result["exit_code"] == 2 and res.result["error"] == "BadInputError"


def test_missing_local_source(run_module: Any, guest: GuestFS, tmp_path: Path) -> None:
    res = run_module(mod, {"domain": "vm", "src": str(tmp_path / "nope"), "dest": "/tmp/x"})
    assert res.failed and res.result["exit_code"] == 2


@pytest.mark.parametrize("bad", ["rw-r--r--", "99999", True])
def test_bad_mode(run_module: Any, guest: GuestFS, tmp_path: Path, bad: Any) -> None:
    res = run_module(mod, {"domain": "vm", "src": local(tmp_path, b"x"), "dest": "/tmp/x", "mode": bad})
    assert res.failed and res.result["exit_code"] == 2


def test_only_the_hypervisor_side_is_expanded(run_module: Any, guest: GuestFS, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A pull reads the guest path as written and expands ~ in the hypervisor one."""
    monkeypatch.setenv("HOME", str(tmp_path))
    guest.files["~/notes"] = b"guest tilde\n"
    res = run_module(mod, {"domain": "vm", "src": "~/notes", "dest": "~/pulled", "direction": "pull"})
    assert not res.failed, res.result
    assert (tmp_path / "pulled").read_bytes() == b"guest tilde\n"
    assert res.result["src"] == "~/notes" and res.result["dest"] == str(tmp_path / "pulled")


def test_bad_mode_names_the_module_option(run_module: Any, guest: GuestFS, tmp_path: Path) -> None:
    res = run_module(mod, {"domain": "vm", "src": local(tmp_path, b"x"), "dest": "/tmp/x", "mode": "99999"})
    assert res.failed and "--mode" not in res.result["msg"] and res.result["msg"].startswith("mode ")
