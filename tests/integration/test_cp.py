"""``virt-qga cp`` both ways, both transports, both agent versions.

Guest files go to /tmp: the guest's root is the initramfs (RAM-backed, 512 MiB guest),
which holds the 64 MiB file plus its temp copy; the /data ext4 disk is only 64 MiB.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_exec import ALL, REPO, guest_sh, target
from virt_qga.agent import GuestAgent
from virt_qga.errors import OperationError, VirtQgaError

SIZES = {"0B": 0, "1B": 1, "1MiB+1": 1024 * 1024 + 1}
BIG = 64 * 1024 * 1024


def agent_for(g: Any) -> GuestAgent:
    if g.kind == "plain":
        return GuestAgent.for_socket(str(g.socket), timeout=30)
    return GuestAgent.for_domain(g.name, g.uri, timeout=30)


def round_trip(g: Any, tmp_path: Path, size: int, tag: str) -> None:
    src = tmp_path / f"src-{tag}"
    src.write_bytes(os.urandom(size))
    gpath = f"/tmp/vqga-cp-{tag}"
    back = tmp_path / f"back-{tag}"
    try:
        push = _cp(g, str(src), f":{gpath}")
        assert push.returncode == 0, push.stderr.decode()
        remote = guest_sh(g, f"sha256sum {gpath}; stat -c %s {gpath}").split()
        assert remote[0].decode() == hashlib.sha256(src.read_bytes()).hexdigest()
        assert int(remote[2]) == size
        pull = _cp(g, f":{gpath}", str(back))
        assert pull.returncode == 0, pull.stderr.decode()
        assert back.read_bytes() == src.read_bytes()
    finally:
        guest_sh(g, f"rm -f {gpath} /tmp/.vqga-cp-{tag}.vqga-*")


def _cp(g: Any, src: str, dst: str, *extra: str, stdin: bytes | None = None) -> Any:
    """cp with ':PATH' meaning the guest: becomes DOMAIN:PATH (a label with --socket)."""
    src = f"{g.name}{src}" if src.startswith(":") else src
    dst = f"{g.name}{dst}" if dst.startswith(":") else dst
    opts, _ = target(g)
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", "virt_qga.cli.main", *opts, "cp", src, dst, *extra],
                          input=stdin, capture_output=True, timeout=600, env=env, check=False)


@pytest.mark.parametrize("key", ALL)
@pytest.mark.parametrize("size", list(SIZES))
def test_round_trip_small(guests: dict[str, Any], tmp_path: Path, key: str, size: str) -> None:
    round_trip(guests[key], tmp_path, SIZES[size], f"{size}-{key}")


@pytest.mark.slow
@pytest.mark.stacks("host")  # 100 s on debian13 for the same agent path; the small copies run there
@pytest.mark.parametrize("key", ["libvirt-7.2", "plain-10.0"])
def test_round_trip_64mib(guests: dict[str, Any], tmp_path: Path, key: str) -> None:
    round_trip(guests[key], tmp_path, BIG, f"64m-{key}")


@pytest.mark.parametrize("key", ["libvirt-10.0", "plain-7.2"])
def test_missing_dir_overwrite_mode_and_stdio(guests: dict[str, Any], tmp_path: Path, key: str) -> None:
    g = guests[key]
    src = tmp_path / "f"
    src.write_bytes(b"hello\n")
    src.chmod(0o640)
    # a missing guest directory: clear error, nothing created
    p = _cp(g, str(src), ":/nonexistent-dir/sub/f")
    assert p.returncode == 1 and b"/nonexistent-dir/sub does not exist" in p.stderr
    assert guest_sh(g, "ls -a / | grep -c vqga || true").strip() == b"0"
    gpath = "/tmp/vqga-cp-modes"
    try:
        # new file keeps the local mode; JSON report
        rc, doc = vq_json_cp(g, str(src), f":{gpath}")
        assert rc == 0 and doc["bytes"] == 6 and doc["verified"] and doc["verify_method"] == "sha256sum"
        assert doc["atomic"] is True and doc["mode"] == "0640"
        assert guest_sh(g, f"stat -c %a {gpath}").strip() == b"640"
        # no overwrite without --force, target untouched
        src.write_bytes(b"changed\n")
        p = _cp(g, str(src), f":{gpath}")
        assert p.returncode == 1 and b"--force" in p.stderr
        assert guest_sh(g, f"cat {gpath}") == b"hello\n"
        # --force with --mode
        p = _cp(g, str(src), f":{gpath}", "--force", "--mode", "600")
        assert p.returncode == 0, p.stderr
        assert guest_sh(g, f"cat {gpath}; stat -c %a {gpath}") == b"changed\n600\n"
        # stdin -> guest, guest -> stdout
        p = _cp(g, "-", f":{gpath}", "--force", stdin=b"from stdin\x00\xff")
        assert p.returncode == 0, p.stderr
        assert guest_sh(g, f"stat -c %a {gpath}").strip() == b"600"  # kept the replaced file's mode
        p = _cp(g, "-", ":/tmp/vqga-cp-new", stdin=b"n")
        assert p.returncode == 0, p.stderr
        assert guest_sh(g, "stat -c %a /tmp/vqga-cp-new; rm /tmp/vqga-cp-new").strip() == b"644"
        p = _cp(g, f":{gpath}", "-")
        assert p.returncode == 0 and p.stdout == b"from stdin\x00\xff"
        # pull keeps the guest mode; refuses to overwrite a local file
        out = tmp_path / "out"
        assert _cp(g, f":{gpath}", str(out)).returncode == 0
        assert oct(out.stat().st_mode & 0o777) == "0o600"
        assert _cp(g, f":{gpath}", str(out)).returncode == 1
        # a directory target: the file lands inside it under the source's name
        p = _cp(g, str(src), ":/tmp/")
        assert p.returncode == 0, p.stderr
        assert guest_sh(g, "cat /tmp/f") == b"changed\n"
        # no temp files left anywhere we wrote
        assert guest_sh(g, "ls -a /tmp | grep -c 'vqga-.*tmp' || true").strip() == b"0"
    finally:
        guest_sh(g, f"rm -f {gpath} /tmp/f")


def vq_json_cp(g: Any, src: str, dst: str) -> tuple[int, dict[str, Any]]:
    src = f"{g.name}{src}" if src.startswith(":") else src
    dst = f"{g.name}{dst}" if dst.startswith(":") else dst
    opts, _ = target(g)
    p = subprocess.run([sys.executable, "-m", "virt_qga.cli.main", *opts, "--json", "cp", src, dst],
                       capture_output=True, timeout=300, env=dict(os.environ, PYTHONPATH=REPO), check=False)
    return p.returncode, json.loads(p.stdout)


class _FailingSource(io.RawIOBase):
    """A source that fails after ``ok`` bytes: a copy interrupted half-way."""

    def __init__(self, ok: int, exc: BaseException) -> None:
        self.left = ok
        self.exc = exc

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            raise self.exc
        chunk = min(n if n > 0 else self.left, self.left)
        self.left -= chunk
        return b"x" * chunk


def _open_fds(g: Any) -> int:
    out = guest_sh(g, "ls /proc/$(pidof qemu-ga)/fd | wc -l")
    return int(out.strip())


@pytest.mark.parametrize("key", ["libvirt-7.2", "plain-10.0"])
@pytest.mark.parametrize("exc", [OSError("disk on fire"), KeyboardInterrupt()])
def test_failure_mid_copy_closes_handle_and_removes_temp(guests: dict[str, Any], key: str,
                                                         exc: BaseException) -> None:
    """An error (or Ctrl-C) half-way: handle closed, temp file removed, target absent."""
    from virt_qga.workflows import files

    g = guests[key]
    before = _open_fds(g)
    agent = agent_for(g)
    try:
        with pytest.raises(type(exc)):
            files.push(agent, _FailingSource(3 * 65536, exc), "/tmp/vqga-cp-fail",  # type: ignore[arg-type]
                       chunk=65536, source_name="-")
    finally:
        agent.close()
    assert _open_fds(g) == before
    assert guest_sh(g, "ls -a /tmp | grep -c vqga-cp-fail || true").strip() == b"0"


@pytest.mark.parametrize("key", ["plain-7.2"])
def test_library_errors_are_operation_errors(guests: dict[str, Any], key: str) -> None:
    from virt_qga.workflows import files

    agent = agent_for(guests[key])
    try:
        with pytest.raises(OperationError, match="does not exist in the guest"):
            files.pull(agent, "/tmp/definitely-not-here", io.BytesIO())
        with pytest.raises(VirtQgaError):
            files.push(agent, io.BytesIO(b"x"), "/proc/version", force=True, source_name="-")
    finally:
        agent.close()
