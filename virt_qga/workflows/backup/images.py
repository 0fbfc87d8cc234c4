"""qemu-img on the host: create backup targets, copy, inspect and check images.

Every call has a deadline and reports qemu-img's last error line; no image data passes
through this process (qemu-img streams it), so memory stays bounded whatever the size.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from virt_qga.errors import HostError

__all__ = ["bitmaps", "check", "convert", "create", "data_bytes", "info", "qemu_img", "rebase_unsafe",
           "remove_bitmap"]

#: Deadline of the quick calls (create, info, map, check of a small image).
QUICK = 120.0


def qemu_img() -> str:
    path = shutil.which("qemu-img")
    if path is None:
        raise HostError("qemu-img not found (Debian package qemu-utils)")
    return path


#: How often a wait for qemu-img returns to Python: a backup in a worker thread
#: (``backup --jobs``) is interrupted by an exception raised into it (see
#: :mod:`.many`), which lands only when the thread runs Python code.
POLL = 0.25


def _run(args: list[str], timeout: float, what: str) -> str:
    deadline = time.monotonic() + timeout
    with subprocess.Popen([qemu_img(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        try:
            while True:
                try:
                    out, err = proc.communicate(timeout=max(0.0, min(POLL, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired as exc:
                    if time.monotonic() >= deadline:
                        raise HostError(f"{what} took longer than {timeout:g} s") from exc
        except BaseException:  # a deadline, or an interrupt: qemu-img must not outlive us
            proc.kill()
            raise
    if proc.returncode != 0:
        msg = (err.strip().splitlines() or ["no message"])[-1]
        raise HostError(f"{what} failed: {msg}")
    return out


def create(path: Path, size: int, *, backing: str | None = None,
           owner: tuple[int, int] | None = None) -> None:
    """A new qcow2 of ``size`` bytes, optionally backed by ``backing`` (relative to
    ``path``'s directory), owned by ``owner`` (uid, gid): the user QEMU runs as must
    be able to write it."""
    args = ["create", "-q", "-f", "qcow2"]
    if backing:
        args += ["-b", backing, "-F", "qcow2"]
    _run([*args, str(path), str(size)], QUICK, f"qemu-img create {path}")
    if owner is not None:
        os.chown(path, *owner)


def convert(source: str, target: Path, timeout: float, *, source_format: str | None = None) -> float:
    """``qemu-img convert -O qcow2`` (following the source's backing chain); seconds taken.
    A failed copy leaves no target behind."""
    start = time.monotonic()
    args = ["convert", "-O", "qcow2"]
    if source_format:
        args += ["-f", source_format]
    try:
        _run([*args, source, str(target)], timeout, f"qemu-img convert {source}")
    except HostError:
        target.unlink(missing_ok=True)
        raise
    return time.monotonic() - start


def info(path: Path | str, *, chain: bool = False) -> Any:
    args = ["info", "--output=json", "-U"]
    if chain:
        args.append("--backing-chain")
    return json.loads(_run([*args, str(path)], QUICK, f"qemu-img info {path}"))


def data_bytes(path: Path) -> int:
    """Bytes of data held by this image's own layer (not its backing files)."""
    extents = json.loads(_run(["map", "--output=json", "-U", str(path)], QUICK, f"qemu-img map {path}"))
    return sum(int(e["length"]) for e in extents if e.get("data") and e.get("depth", 0) == 0)


def check(path: Path, timeout: float = QUICK, *, alone: bool = False) -> None:
    """``qemu-img check``: raises HostError with its verdict when the image is damaged.

    ``alone`` checks the qcow2 file without opening its backing chain (a missing backing
    file is then not this image's damage, and nothing below it is read)."""
    target = str(path)
    if alone:
        target = "json:" + json.dumps({"driver": "qcow2", "backing": None,
                                       "file": {"driver": "file", "filename": str(path)}})
    _run(["check", "-q", target], timeout, f"qemu-img check {path}")


def rebase_unsafe(path: Path, backing: str | None) -> None:
    """Rewrite the backing file name in the header only (no data is read)."""
    args = ["rebase", "-u", "-f", "qcow2", "-b", backing or ""]
    if backing:
        args += ["-F", "qcow2"]
    _run([*args, str(path)], QUICK, f"qemu-img rebase {path}")


def bitmaps(path: Path) -> list[str]:
    """Names of the persistent dirty bitmaps stored in a qcow2 image."""
    data = info(path).get("format-specific", {}).get("data", {})
    return [str(b.get("name")) for b in data.get("bitmaps") or []]


def remove_bitmap(path: Path, name: str) -> None:
    """Delete a persistent bitmap from an image no QEMU has open (a shut-off domain's)."""
    _run(["bitmap", "--remove", "-f", "qcow2", str(path), name], QUICK, f"qemu-img bitmap --remove {path}")
