"""The guest's userland from one Debian release, whatever the host runs.

A guest image holds a few binaries (``qemu-ga``, busybox) and the shared libraries they
need. Both come from the Debian release pinned for that agent version, never from the
host: the package closure is resolved in the lab's private apt lists, the ``.deb`` files
are unpacked into a tree, and each binary's ``DT_NEEDED`` entries are resolved *inside
that tree* by reading the ELF files here (``ldd`` would run the host's loader and mix in
the host's libraries).
"""

from __future__ import annotations

import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

from virt_qga.lab.apt import PrivateApt
from virt_qga.lab.errors import LabError

#: Only packages of these archive sections are followed when resolving the closure:
#: shared libraries live there; following ``adduser`` or ``init-system-helpers`` would
#: pull half a distribution into a 4 MB initramfs.
LIBRARY_SECTIONS = ("libs", "oldlibs")

#: Where the dynamic loader looks on Debian x86_64 (multiarch first).
LIB_DIRS = ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/lib64", "lib64", "usr/lib", "lib")

_DEP_NAME = re.compile(r"^\s*([a-z0-9][a-z0-9+.-]*)")


@dataclass(frozen=True)
class ElfInfo:
    interpreter: str | None
    needed: tuple[str, ...]


def parse_depends(field: str) -> list[str]:
    """Package names of a ``Depends`` field, the first alternative of each entry."""
    names = []
    for item in field.split(","):
        m = _DEP_NAME.match(item.split("|")[0])
        if m:
            names.append(m.group(1))
    return names


def closure(apt: PrivateApt, release: str, roots: dict[str, str]) -> dict[str, str]:
    """``roots`` (package -> version) plus every library package they depend on, recursively,
    with the newest version of each in ``release``."""
    chosen = dict(roots)
    frontier = dict(roots)
    while frontier:
        fields = apt.show(frontier)
        deps: set[str] = set()
        for name, version in frontier.items():
            f = fields.get(name)
            if f is None:
                raise LabError(f"apt has no control data for {name}={version}")
            for key in ("Pre-Depends", "Depends"):
                deps.update(parse_depends(f.get(key, "")))
        new = sorted(d for d in deps if d not in chosen)
        if not new:
            break
        versions = apt.newest_in_release(new, release, strict=False)  # virtual ones drop out
        sections = apt.show(versions)
        frontier = {}
        for name in versions:
            if sections.get(name, {}).get("Section", "").split("/")[-1] in LIBRARY_SECTIONS:
                chosen[name] = versions[name]
                frontier[name] = versions[name]
    return chosen


# ------------------------------------------------------------------ ELF


def read_elf(path: Path) -> ElfInfo:
    """Interpreter (``PT_INTERP``) and ``DT_NEEDED`` entries of a 64-bit little-endian ELF file."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise LabError(f"{path.name}: not a 64-bit little-endian ELF file")
    (e_phoff, e_shoff) = struct.unpack_from("<QQ", data, 0x20)
    (e_phentsize, e_phnum, e_shentsize, e_shnum) = struct.unpack_from("<HHHH", data, 0x36)
    interpreter = None
    for i in range(e_phnum):
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, e_phoff + i * e_phentsize
        )
        if p_type == 3:  # PT_INTERP
            interpreter = data[p_offset : p_offset + p_filesz].rstrip(b"\0").decode()
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * e_shentsize) for i in range(e_shnum)
    ]
    needed: list[str] = []
    for _name, sh_type, _flags, _addr, sh_offset, sh_size, sh_link, _info, _align, _entsize in sections:
        if sh_type != 6:  # SHT_DYNAMIC
            continue
        strtab_offset = sections[sh_link][4]
        for off in range(sh_offset, sh_offset + sh_size, 16):
            tag, val = struct.unpack_from("<qQ", data, off)
            if tag == 0:  # DT_NULL
                break
            if tag == 1:  # DT_NEEDED
                start = strtab_offset + val
                needed.append(data[start : data.index(b"\0", start)].decode())
    return ElfInfo(interpreter, tuple(needed))


def resolve_in_tree(tree: Path, path: str, depth: int = 0) -> Path | None:
    """``path`` (absolute, as the guest would see it) inside ``tree``, following symlinks
    inside the tree; None when it does not exist there."""
    if depth > 20:
        return None
    parts = [p for p in path.split("/") if p]
    current = tree
    for i, part in enumerate(parts):
        nxt = current / part
        if nxt.is_symlink():
            target = str(nxt.readlink())
            base = "/" + "/".join(parts[:i]) if not target.startswith("/") else ""
            rest = "/".join(parts[i + 1 :])
            joined = (target if target.startswith("/") else f"{base}/{target}") + (f"/{rest}" if rest else "")
            return resolve_in_tree(tree, _normalise(joined), depth + 1)
        if not nxt.exists():
            return None
        current = nxt
    return current


def _normalise(path: str) -> str:
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out:
                out.pop()
        else:
            out.append(part)
    return "/" + "/".join(out)


def find_library(tree: Path, soname: str) -> Path | None:
    for d in LIB_DIRS:
        hit = resolve_in_tree(tree, f"/{d}/{soname}")
        if hit is not None and hit.is_file():
            return hit
    return None


def stage_binary(binary: Path, tree: Path, root: Path) -> list[str]:
    """Copy the loader and every library ``binary`` needs (transitively) from ``tree`` into
    ``root``: libraries to ``usr/lib/x86_64-linux-gnu``, the loader to its own path.
    Returns the sonames copied; raises LabError naming any library the tree lacks."""
    libdir = root / "usr/lib/x86_64-linux-gnu"
    libdir.mkdir(parents=True, exist_ok=True)
    info = read_elf(binary)
    if info.interpreter:
        src = resolve_in_tree(tree, info.interpreter)
        if src is None:
            raise LabError(f"{binary.name} needs the loader {info.interpreter}, not in the unpacked packages")
        dest = root / info.interpreter.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            shutil.copy(src, dest)
            dest.chmod(0o755)
    copied: list[str] = []
    todo = list(info.needed)
    missing: list[str] = []
    while todo:
        soname = todo.pop(0)
        if soname in copied or soname in missing:
            continue
        src = find_library(tree, soname)
        if src is None:
            missing.append(soname)
            continue
        shutil.copy(src, libdir / soname)
        (libdir / soname).chmod(0o755)
        copied.append(soname)
        todo.extend(read_elf(src).needed)
    if missing:
        raise LabError(
            f"{binary.name} needs libraries none of the unpacked packages has: {', '.join(missing)}"
        )
    return copied
