"""Guest flavours: what a lab initramfs holds besides busybox and qemu-ga.

* ``busybox`` (the default): busybox-static, qemu-ga and its libraries, nothing else.
  Enough for every virt-qga command and for ``ansible.builtin.raw``.
* ``python``: the same plus Debian 12's Python 3.11 (``python3-minimal``, its
  ``libpython3.11-minimal`` core and the ``libpython3.11-stdlib`` standard library), so
  that ordinary Ansible modules (``ping``, ``command``, ``copy``, ``stat``, ``setup``)
  run in the guest through the ``virt_qga.guest_agent.qga`` connection plugin.

The Python packages are ``apt-get download``-ed with the lab's private apt (see
:mod:`virt_qga.lab.apt`) and unpacked with ``dpkg-deb -x``; nothing is installed on the
host. Only what a module needs is kept: the interpreter, the standard library minus its
test suites and GUI/REPL parts, the extension modules, and the shared libraries those
extension modules link against (:data:`LIBRARY_PACKAGES`). Extension modules whose
libraries would pull in much more (``readline``, ``curses``, ``dbm``, ``nis``,
``sqlite3``) are left out; :func:`stage` refuses an image where a kept extension module
cannot find a library.

The standard library is byte-compiled at build time with ``--invalidation-mode
unchecked-hash``: the initramfs stores every file with mtime 0, so timestamp-checked
``.pyc`` files would all look stale, and every module run under TCG would recompile the
modules it imports (seconds per task).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from virt_qga.lab.apt import PrivateApt
from virt_qga.lab.errors import LabError
from virt_qga.lab.proc import run

#: Flavour names, the default first.
FLAVOURS = ("busybox", "python")
DEFAULT_FLAVOUR = "busybox"

#: The Debian release the Python packages come from (any of its suites but backports).
PYTHON_RELEASE = "bookworm"
PYTHON_VERSION = "3.11"

#: The interpreter, its core and the standard library.
PYTHON_PACKAGES = ("python3-minimal", "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib")

#: Shared libraries of the kept extension modules (``_ssl``/``_hashlib``: libssl3;
#: ``_ctypes``: libffi8; ``_bz2``, ``_lzma``, ``_uuid``, ``_crypt``, ``pyexpat``; zlib and
#: the C library for the interpreter itself; ``_decimal`` bundles its libmpdec).
LIBRARY_PACKAGES = (
    "libc6",
    "libgcc-s1",
    "zlib1g",
    "libexpat1",
    "libssl3",
    "libffi8",
    "libbz2-1.0",
    "liblzma5",
    "libuuid1",
    "libcrypt1",
)

#: Standard library directories no Ansible module needs (tests, GUI, REPL helpers,
#: the static library for embedding).
DROP_DIRS = (
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "lib2to3",
    "ensurepip",
    "pydoc_data",
    "venv",
    f"config-{PYTHON_VERSION}-x86_64-linux-gnu",
)

#: Extension modules left out, with the reason (their libraries, or test-only).
DROP_EXTENSIONS = {
    "readline": "libreadline8/libtinfo6",
    "_curses": "libncursesw6",
    "_curses_panel": "libncursesw6",
    "_dbm": "libdb5.3",
    "_gdbm": "libgdbm6",
    "nis": "libnsl2 and the Kerberos libraries",
    "_sqlite3": "libsqlite3-0",
    "_ctypes_test": "test only",
    "_testbuffer": "test only",
    "_testcapi": "test only",
    "_testclinic": "test only",
    "_testimportmultiple": "test only",
    "_testinternalcapi": "test only",
    "_testmultiphase": "test only",
    "_xxtestfuzz": "test only",
    "xxlimited": "test only",
    "xxlimited_35": "test only",
}

#: Imported by the smoke test in the staged root: what Ansible's modules and the
#: ``setup`` module's minimal facts use.
SMOKE_IMPORTS = (
    "json", "zipfile", "zlib", "base64", "hashlib", "ssl", "ctypes", "subprocess", "tempfile",
    "shutil", "platform", "locale", "datetime", "selectors", "pwd", "grp", "syslog", "uuid",
    "decimal", "lzma", "bz2", "crypt", "pyexpat", "multiprocessing", "shlex", "glob",
)

#: Where shared libraries go in the (usrmerged) guest.
GUEST_LIBDIR = "usr/lib/x86_64-linux-gnu"
_LIB_SOURCES = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu")


def check_flavour(flavour: str) -> None:
    if flavour not in FLAVOURS:
        raise LabError(f"unknown guest flavour {flavour!r}; choose one of {', '.join(FLAVOURS)}")


def image_tag(agent: str, flavour: str) -> str:
    """The name part of a flavour's initramfs and manifest: ``7.2`` or ``7.2-python``."""
    return agent if flavour == DEFAULT_FLAVOUR else f"{agent}-{flavour}"


# ---------------------------------------------------------------- packages


def _newer(a: str, b: str) -> bool:
    return run(["dpkg", "--compare-versions", a, "gt", b], timeout=30, check=False).returncode == 0


def pinned_versions(apt: PrivateApt, packages: tuple[str, ...] = PYTHON_PACKAGES + LIBRARY_PACKAGES,
                    release: str = PYTHON_RELEASE) -> dict[str, str]:
    """package -> the newest version in ``release``, ``release-updates`` or
    ``release-security`` (never backports), from the lab's apt lists."""
    out: dict[str, str] = {}
    for package in packages:
        best = ""
        for version, suite in apt.versions(package):
            backports = suite.endswith("-backports")
            if suite != release and not (suite.startswith(release + "-") and not backports):
                continue
            if not best or _newer(version, best):
                best = version
        if not best:
            raise LabError(f"package {package} not found in Debian {release} (lab apt lists in {apt.dir}); "
                           "try `virt-qga lab build --refresh`")
        out[package] = best
    return out


def inputs(apt: PrivateApt, flavour: str) -> dict[str, Any]:
    """What the flavour adds to an initramfs's cache key (empty for busybox)."""
    check_flavour(flavour)
    if flavour == DEFAULT_FLAVOUR:
        return {}
    versions = pinned_versions(apt)
    code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    return {"flavour": flavour, "packages": sorted(f"{p}={v}" for p, v in versions.items()), "code": code}


# ---------------------------------------------------------------- staging


def stage(apt: PrivateApt, flavour: str, root: Path) -> None:
    """Add the flavour's files to the staged guest ``root`` (nothing for busybox).

    Files already in ``root`` are kept: the qemu-ga staging put the C library there, and
    a second copy of it from another package version must not replace the one qemu-ga
    was checked against.
    """
    check_flavour(flavour)
    if flavour == DEFAULT_FLAVOUR:
        return
    versions = pinned_versions(apt)
    debs = [apt.download(p, v) for p, v in versions.items()]
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        unpack = Path(tmp)
        for deb in debs:
            run(["dpkg-deb", "-x", deb, unpack], timeout=300)
        _stage_python(unpack, root)
        _stage_libraries(unpack, root)
    _check_extensions(root)
    _compile(root)
    _smoke_test(root)


def _stage_python(unpack: Path, root: Path) -> None:
    interp = unpack / "usr/bin" / f"python{PYTHON_VERSION}"
    if not interp.is_file():
        raise LabError(f"the Python packages have no usr/bin/python{PYTHON_VERSION}")
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy(interp, root / "usr/bin" / interp.name)
    (root / "usr/bin" / interp.name).chmod(0o755)
    link = root / "usr/bin/python3"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(interp.name)
    src = unpack / "usr/lib" / f"python{PYTHON_VERSION}"
    dest = root / "usr/lib" / f"python{PYTHON_VERSION}"
    shutil.copytree(src, dest, symlinks=True, ignore=_ignore_in_stdlib)
    etc = unpack / "etc" / f"python{PYTHON_VERSION}"
    if etc.is_dir():  # sitecustomize.py is a symlink into it
        shutil.copytree(etc, root / "etc" / etc.name, symlinks=True, dirs_exist_ok=True)


def _ignore_in_stdlib(directory: str, names: list[str]) -> set[str]:
    top = Path(directory).name == f"python{PYTHON_VERSION}"
    dropped = {n for n in names if top and n in DROP_DIRS}
    dropped |= {n for n in names if n in ("__pycache__", "test", "tests")}  # ctypes/test, unittest/test...
    if Path(directory).name == "lib-dynload":
        dropped |= {n for n in names if n.split(".", 1)[0] in DROP_EXTENSIONS}
    return dropped


def _stage_libraries(unpack: Path, root: Path) -> None:
    """Every shared library (and its soname links) of the library packages, into the
    guest's multiarch directory, without replacing what is already there."""
    libdir = root / GUEST_LIBDIR
    libdir.mkdir(parents=True, exist_ok=True)
    for rel in _LIB_SOURCES:
        src_dir = unpack / rel
        if not src_dir.is_dir():
            continue
        for src in sorted(src_dir.iterdir()):
            if ".so" not in src.name or src.is_dir():
                continue
            dest = libdir / src.name
            if dest.exists() or dest.is_symlink():
                continue
            if src.is_symlink():
                dest.symlink_to(os.readlink(src))
            else:
                shutil.copy(src, dest)
                dest.chmod(0o755)
    loader = root / "lib64/ld-linux-x86-64.so.2"
    if not loader.exists():
        found = next(iter(_lib_candidates(unpack, "ld-linux-x86-64.so.2")), None)
        if found is None:
            raise LabError("libc6 has no ld-linux-x86-64.so.2")
        loader.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(found.resolve(), loader)
        loader.chmod(0o755)


def _lib_candidates(unpack: Path, name: str) -> Iterator[Path]:
    for rel in _LIB_SOURCES:
        p = unpack / rel / name
        if p.exists():
            yield p


def _check_extensions(root: Path) -> None:
    """Every kept extension module finds its libraries in the guest: the guest's own
    loader lists them (``ld.so --list``) inside a chroot (root only)."""
    if os.geteuid() != 0 or not shutil.which("chroot"):
        return
    dynload = f"/usr/lib/python{PYTHON_VERSION}/lib-dynload"
    script = (f'for f in {dynload}/*.so /usr/bin/python{PYTHON_VERSION}; do '
              '/lib64/ld-linux-x86-64.so.2 --list "$f" 2>&1 | grep "not found" | sed "s|^|$f: |"; done')
    res = run(["chroot", root, "/bin/sh", "-c", script], timeout=120, check=False)
    missing = res.stdout.decode(errors="replace").strip()
    if missing:
        first = " | ".join(missing.splitlines()[:5])
        raise LabError(f"python flavour: extension modules miss libraries: {first}")


def _compile(root: Path) -> None:
    """Byte-compile the standard library for the guest (unchecked-hash pycs, see the
    module docstring). Needs the guest's own interpreter, so a chroot (root only);
    without one the guest compiles what it imports on first use, in RAM."""
    if os.geteuid() != 0 or not shutil.which("chroot"):
        return
    res = run(["chroot", root, f"/usr/bin/python{PYTHON_VERSION}", "-m", "compileall", "-q",
               "--invalidation-mode", "unchecked-hash", f"/usr/lib/python{PYTHON_VERSION}"],
              timeout=900, check=False)
    if res.returncode != 0:
        out = (res.stdout + res.stderr).decode(errors="replace").strip().splitlines()
        raise LabError(f"python flavour: compileall failed: {' | '.join(out[-3:])[:300]}")


def _smoke_test(root: Path) -> None:
    """As root, import what Ansible needs with the staged interpreter in a chroot."""
    if os.geteuid() != 0 or not shutil.which("chroot"):
        return
    code = f"import {', '.join(SMOKE_IMPORTS)}; print('ok')"
    res = run(["chroot", root, "/usr/bin/python3", "-c", code], timeout=120, check=False)
    if res.returncode != 0 or res.stdout.strip() != b"ok":
        err = res.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise LabError(f"python flavour: the staged python3 does not work: {err[0][:200]}")


__all__ = [
    "DEFAULT_FLAVOUR",
    "FLAVOURS",
    "check_flavour",
    "image_tag",
    "inputs",
    "pinned_versions",
    "stage",
]
