"""Build the lab guest: Debian cloud kernel, an initramfs per agent version, a data disk.

Everything is cached under ``<lab>/images``. An initramfs is named after a key hashing
all of its inputs (package versions, the guest scripts and this module's source), so it
is rebuilt exactly when one of them changes.

The guest artefacts are pinned to Debian releases, not to the host's: the kernel is
Debian 12's cloud kernel (the 6.1 LTS series), and each agent version brings the
userland of its own release (see :data:`AGENTS`): its ``qemu-ga``, busybox-static,
``base-files`` (``/etc/os-release``) and the libraries ``qemu-ga`` needs, all
downloaded with the lab's private apt (:mod:`virt_qga.lab.apt`) and resolved inside
the unpacked packages (:mod:`virt_qga.lab.userland`). Nothing is installed on the host
and nothing of the host's userland ends up in a guest.

Why ~490 lines: the kernel, the initramfs and the data disk share one cache-key scheme
and one publish step (build under a temporary name, then rename); the package work is
in :mod:`.apt` and :mod:`.userland` already, and a root stack's root in :mod:`.rootfs`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from virt_qga.lab import flavours
from virt_qga.lab.apt import PrivateApt, require_tools
from virt_qga.lab.errors import LabError
from virt_qga.lab.paths import LabPaths
from virt_qga.lab.proc import run
from virt_qga.lab.userland import closure, stage_binary

HERE = Path(__file__).resolve().parent

# ---------------------------------------------------------------- pins (one place)

#: agent version -> the Debian release its guest userland (qemu-ga, busybox, libraries,
#: /etc/os-release) comes from: a "Debian 12 guest" and a "Debian 13 guest".
AGENTS: dict[str, str] = {"7.2": "bookworm", "10.0": "trixie"}

#: The guest kernel: this release's ``linux-image-cloud-amd64`` within this upstream
#: series, whatever the host runs. The exact package (``linux-image-6.1.0-N-cloud-amd64``)
#: is resolved from the lab's apt lists and recorded in the manifest; it only moves with
#: ``virt-qga lab build --refresh`` (an exact version pin would break every cold build
#: once Debian's mirror rotates that kernel out, every few weeks).
KERNEL_RELEASE = "bookworm"
KERNEL_SERIES = "6.1"

#: Packages every guest userland starts from (qemu-guest-agent is added per agent).
USERLAND_ROOTS = ("busybox-static", "base-files", "libc6")

#: insmod order; each needs the ones before it (see LAB-NOTES).
MODULES = [
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "virtio_console",
    "virtio_blk",
    "virtio_mem",
    "virtio_balloon",
]

DATA_DISK_MIB = 64

BUILD_TOOLS = {
    "dpkg-deb": "dpkg",
    "qemu-img": "qemu-utils",
    "mkfs.ext4": "e2fsprogs",
}

PASSWD = "root:x:0:0:root:/root:/bin/sh\ntester:x:1000:1000:tester:/home/tester:/bin/sh\n"
SHADOW = "root:*:19000:0:99999:7:::\ntester:!:19000:0:99999:7:::\n"
GROUP = "root:x:0:\ntester:x:1000:\n"


@dataclass(frozen=True)
class Manifest:
    """What ``up`` needs to boot a guest with one agent version."""

    agent: str
    agent_version: str
    kernel_version: str
    key: str
    kernel: str
    initrd: str
    data_base: str
    fsprobe: str  # "static" (the C probe) or "busybox-fallback"
    stamp: str = ""  # see _stamp(): unchanged stamp + existing files = nothing to check
    flavour: str = flavours.DEFAULT_FLAVOUR  # see virt_qga.lab.flavours

    def complete(self) -> bool:
        return all(Path(p).exists() for p in (self.kernel, self.initrd, self.data_base))

    @classmethod
    def load(cls, path: Path) -> Manifest:
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)


def check_agent(agent: str) -> None:
    if agent not in AGENTS:
        raise LabError(f"unknown agent version {agent!r}; choose one of {', '.join(AGENTS)}")


def build(paths: LabPaths, agent: str = "7.2", refresh: bool = False, log: bool = False,
          flavour: str = flavours.DEFAULT_FLAVOUR) -> Manifest:
    """Make sure kernel, initramfs for ``agent`` (and ``flavour``) and the base data disk
    exist; return the manifest."""
    check_agent(agent)
    flavours.check_flavour(flavour)
    tag = flavours.image_tag(agent, flavour)
    manifest_path = paths.manifest(tag)
    require_tools(BUILD_TOOLS)
    paths.images.mkdir(parents=True, exist_ok=True)
    _make_world_readable(paths.root)
    apt = PrivateApt(paths)
    apt.ensure_lists(refresh=refresh)
    stamp = _stamp(paths, tag)
    if not refresh and manifest_path.exists():
        try:
            cached = Manifest.load(manifest_path)
        except (OSError, ValueError, TypeError):
            cached = None
        if cached is not None and cached.stamp == stamp and cached.complete():
            return cached

    kernel_pkg, kernel_ver = _kernel_package(apt)
    release = AGENTS[agent]
    agent_ver = apt.newest_in_release(["qemu-guest-agent"], release)["qemu-guest-agent"]
    upstream = agent_ver.split(":", 1)[-1]
    if not upstream.startswith(agent + ".") and not upstream.startswith(agent + "+"):
        raise LabError(f"Debian {release} has qemu-guest-agent {agent_ver}, not {agent}")

    kdir = _kernel(paths, apt, kernel_pkg, kernel_ver)
    roots = {"qemu-guest-agent": agent_ver, **apt.newest_in_release(list(USERLAND_ROOTS), release)}
    userland = closure(apt, release, roots)
    debs = apt.download_many(userland)
    fsprobe_bin, fsprobe_kind = _fsprobe(paths)
    data_base = _data_disk(paths)

    inputs: dict[str, Any] = {
        "kernel": f"{kernel_pkg}={kernel_ver}",
        "agent": agent_ver,
        "userland": sorted(f"{p}={v}" for p, v in userland.items()),
        "fsprobe": fsprobe_kind + ":" + _sha(fsprobe_bin),
        "code": [
            _sha(HERE / f)
            for f in (
                "build.py",
                "guest-init.sh",
                "guest-run-qga.sh",
                "guest-shutdown.sh",
                "guest-chpasswd.sh",
                "guest-inittab.tmpl",
            )
        ],
    }
    extra = flavours.inputs(apt, flavour)
    if extra:  # the busybox flavour keeps its historical key
        inputs["flavour"] = extra
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    initrd = paths.images / f"initramfs-{tag}-{key}.img"
    if not initrd.exists():
        if log:
            print(f"virt-qga lab: building initramfs for qemu-ga {agent_ver} ({flavour})", file=sys.stderr,
                  flush=True)
        _initramfs(paths, initrd, kdir, list(debs.values()), fsprobe_bin,
                   stage=lambda root: flavours.stage(apt, flavour, root))
        for old in paths.images.glob(f"initramfs-{tag}-*.img"):
            if old != initrd and re.fullmatch(rf"initramfs-{re.escape(tag)}-[0-9a-f]{{16}}\.img", old.name):
                old.unlink(missing_ok=True)
    manifest = Manifest(
        agent=agent,
        agent_version=agent_ver,
        kernel_version=kernel_ver,
        key=key,
        kernel=str(kdir / "vmlinuz"),
        initrd=str(initrd),
        data_base=str(data_base),
        fsprobe=fsprobe_kind,
        stamp=stamp,
        flavour=flavour,
    )
    manifest.save(manifest_path)
    return manifest


def _stamp(paths: LabPaths, agent: str) -> str:
    """A cheap fingerprint of everything the package versions can depend on.

    Package versions only change when the lab's apt lists or the host's dpkg status
    change, so their mtimes (plus this code and the guest scripts) stand in for the
    full resolution, which costs a few apt-cache calls (about 2 s).
    """
    h = hashlib.sha256(agent.encode())
    lists = paths.apt / "state" / "lists"
    watched = [Path("/var/lib/dpkg/status"), *sorted(lists.glob("*_Packages*"))]
    for p in watched:
        try:
            h.update(f"{p.name}:{p.stat().st_mtime_ns}".encode())
        except OSError:
            h.update(p.name.encode())
    for f in sorted(HERE.iterdir()):
        if f.suffix in (".py", ".sh", ".c", ".tmpl"):
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _make_world_readable(root: Path) -> None:
    """The daemon user must reach images under root; make the parents traversable."""
    root.mkdir(parents=True, exist_ok=True)
    for d in [root, *root.parents]:
        if d == Path("/"):
            break
        try:
            mode = d.stat().st_mode
            if d.stat().st_uid == os.geteuid() and not mode & stat.S_IXOTH:
                d.chmod(mode | stat.S_IXOTH | stat.S_IROTH)
        except OSError:
            pass


def _kernel_package(apt: PrivateApt) -> tuple[str, str]:
    """The versioned cloud kernel of the pinned release and series, e.g.
    ``("linux-image-6.1.0-57-cloud-amd64", "6.1.192-3")``."""
    meta_ver = apt.newest_in_release(["linux-image-cloud-amd64"], KERNEL_RELEASE)["linux-image-cloud-amd64"]
    m = re.search(
        r"(linux-image-[0-9][^ ,]*-cloud-amd64)\s*\(=\s*([^)]+)\)",
        apt.depends("linux-image-cloud-amd64", meta_ver),
    )
    if not m:
        raise LabError(f"cannot tell which kernel linux-image-cloud-amd64 {meta_ver} depends on")
    package, version = m.group(1), m.group(2).strip()
    if not package.startswith(f"linux-image-{KERNEL_SERIES}."):
        raise LabError(
            f"Debian {KERNEL_RELEASE}'s cloud kernel is now {package}, outside the pinned "
            f"{KERNEL_SERIES} series (KERNEL_SERIES in virt_qga/lab/build.py)"
        )
    return package, version


def _kernel(paths: LabPaths, apt: PrivateApt, package: str, version: str) -> Path:
    """images/kernel-<version>/ with vmlinuz and modules/<name>.ko; unpacked once."""
    kdir = paths.images / f"kernel-{version}"
    if (kdir / "vmlinuz").exists() and (kdir / "modules" / "virtio_console.ko").exists():
        return kdir
    deb = apt.download(package, version)
    with tempfile.TemporaryDirectory(dir=paths.images) as tmp:
        run(["dpkg-deb", "-x", deb, tmp], timeout=300)
        found = sorted(Path(tmp, "boot").glob("vmlinuz-*"))
        if not found:
            raise LabError(f"{deb.name} has no /boot/vmlinuz-*")
        stage = Path(tmp) / "out"
        (stage / "modules").mkdir(parents=True)
        shutil.copy(found[0], stage / "vmlinuz")
        for name in MODULES:
            hits = list(Path(tmp).glob(f"**/lib/modules/*/kernel/**/{name}.ko*"))
            if not hits:
                raise LabError(f"{deb.name} has no {name}.ko")
            ko = hits[0]
            if ko.suffix == ".xz":
                data = run(["xz", "-dc", ko], timeout=60).stdout
            elif ko.suffix == ".zst":
                data = run(["zstd", "-dc", ko], timeout=60).stdout
            else:
                data = ko.read_bytes()
            (stage / "modules" / f"{name}.ko").write_bytes(data)
        shutil.rmtree(kdir, ignore_errors=True)
        stage.rename(kdir)
    _chmod_tree(kdir)
    return kdir


def _chmod_tree(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


def _fsprobe(paths: LabPaths) -> tuple[Path, str]:
    """Compile fsprobe.c statically (once per source hash); busybox script fallback."""
    src = HERE / "fsprobe.c"
    out = paths.images / f"fsprobe-{_sha(src)[:12]}"
    if out.exists():
        return out, "static"
    fallback = paths.images / "fsprobe.sh"
    if shutil.which("gcc") and Path("/usr/lib/x86_64-linux-gnu/libc.a").exists():
        tmp = out.with_suffix(".tmp")
        res = run(["gcc", "-static", "-O2", "-o", tmp, src], timeout=120, check=False)
        if res.returncode == 0:
            tmp.chmod(0o755)
            tmp.rename(out)
            return out, "static"
    # Fallback: same output format, CLOCK_REALTIME via date(1), far coarser.
    fallback.write_text(
        "#!/bin/sh\n# fsprobe fallback (no static glibc on the build host)\n"
        "end=$(( $(date +%s) + ${2%.*} ))\n"
        'while [ "$(date +%s)" -lt "$end" ]; do date +%s%N >> "$1"; usleep 1000; done\n'
    )
    fallback.chmod(0o755)
    return fallback, "busybox-fallback"


def _data_disk(paths: LabPaths) -> Path:
    """A 64 MiB ext4 filesystem as qcow2: the base every guest's data disk copies."""
    out = paths.images / "data-base.qcow2"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(dir=paths.images) as tmp:
        raw = Path(tmp) / "data.raw"
        with raw.open("wb") as f:
            f.truncate(DATA_DISK_MIB * 1024 * 1024)
        run(["mkfs.ext4", "-q", "-F", "-L", "labdata", raw], timeout=60)
        run(["qemu-img", "convert", "-O", "qcow2", raw, Path(tmp) / "data.qcow2"], timeout=60)
        (Path(tmp) / "data.qcow2").chmod(0o644)
        (Path(tmp) / "data.qcow2").rename(out)
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- initramfs


def _initramfs(paths: LabPaths, out: Path, kdir: Path, debs: list[Path], fsprobe: Path,
               stage: Callable[[Path], None] | None = None) -> None:
    """Stage the guest's root from the unpacked ``debs`` (its release's userland), add the
    flavour's files (``stage``), and pack it."""
    with tempfile.TemporaryDirectory(dir=paths.images) as tmp:
        unpack = Path(tmp) / "unpack"
        root = Path(tmp) / "root"
        unpack.mkdir()
        for deb in debs:
            run(["dpkg-deb", "-x", deb, unpack], timeout=120)
        for d in (
            "bin",
            "sbin",
            "usr/bin",
            "usr/sbin",
            "lib/modules/lab",
            "lib64",
            "etc",
            "proc",
            "sys",
            "dev",
            "run",
            "tmp",
            "data",
            "root",
            "home/tester",
            "var/lib",
            "var/log",
            "mnt",
        ):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "var/run").symlink_to("../run")

        _busybox(unpack, root)
        for ko in (kdir / "modules").iterdir():
            shutil.copy(ko, root / "lib/modules/lab" / ko.name)

        qga = unpack / "usr/sbin/qemu-ga"
        if not qga.exists():
            raise LabError("the qemu-guest-agent package has no usr/sbin/qemu-ga")
        shutil.copy(qga, root / "usr/sbin/qemu-ga")
        stage_binary(qga, unpack, root)
        # usrmerge layout inside the guest: /lib -> usr/lib (so both spellings resolve)
        if not (root / "lib/x86_64-linux-gnu").exists():
            (root / "lib/x86_64-linux-gnu").symlink_to("../usr/lib/x86_64-linux-gnu")

        _write(root / "init", (HERE / "guest-init.sh").read_text(), 0o755)
        _write(root / "sbin/run-qga", (HERE / "guest-run-qga.sh").read_text(), 0o755)
        _write(root / "sbin/shutdown", (HERE / "guest-shutdown.sh").read_text(), 0o755)
        _write(root / "usr/sbin/chpasswd", (HERE / "guest-chpasswd.sh").read_text(), 0o755)
        _write(root / "etc/inittab", (HERE / "guest-inittab.tmpl").read_text(), 0o644)
        shutil.copy(fsprobe, root / "bin/fsprobe")
        (root / "bin/fsprobe").chmod(0o755)
        _write(root / "etc/os-release", _os_release(unpack), 0o644)
        _write(root / "etc/passwd", PASSWD, 0o644)
        _write(root / "etc/shadow", SHADOW, 0o640)
        _write(root / "etc/group", GROUP, 0o644)
        _write(root / "etc/hostname", "lab\n", 0o644)
        _write(root / "etc/fstab", "", 0o644)
        (root / "root").chmod(0o700)
        (root / "tmp").chmod(0o1777)
        if stage is not None:  # the guest flavour's own files (virt_qga.lab.flavours)
            stage(root)

        _smoke_test(root)
        data = gzip.compress(newc_archive(root), compresslevel=6, mtime=0)
        tmp_out = out.with_suffix(".tmp")
        tmp_out.write_bytes(data)
        tmp_out.chmod(0o644)
        tmp_out.rename(out)


def _write(path: Path, text: str, mode: int) -> None:
    path.write_text(text)
    path.chmod(mode)


def _busybox(unpack: Path, root: Path) -> None:
    """The release's static busybox at /bin/busybox and every applet linked in bin, sbin,
    usr/bin, usr/sbin.

    ``busybox --list`` also names ``busybox`` itself: linking that would replace the
    binary with a link to itself (ELOOP, "error -40" at boot), so it is skipped.
    """
    bb = next((p for p in (unpack / "bin/busybox", unpack / "usr/bin/busybox") if p.is_file()), None)
    if bb is None:
        raise LabError("the busybox-static package has no bin/busybox")
    out = run([bb, "--list"], timeout=30).stdout.decode().split()  # static: runs on any host
    shutil.copy(bb, root / "bin/busybox")
    (root / "bin/busybox").chmod(0o755)
    for applet in out:
        if applet == "busybox" or "/" in applet:
            continue
        for d in ("bin", "sbin", "usr/bin", "usr/sbin"):
            link = root / d / applet
            if not link.exists() and not link.is_symlink():
                link.symlink_to("/bin/busybox")


def _os_release(unpack: Path) -> str:
    """The guest release's own os-release (from its base-files), not the host's."""
    for rel in ("usr/lib/os-release", "etc/os-release"):
        p = unpack / rel
        if p.is_file() and not p.is_symlink():
            return p.read_text()
    raise LabError("the base-files package has no os-release")


def _smoke_test(root: Path) -> None:
    """As root, run the staged qemu-ga in a chroot: catches a missing library before boot."""
    if os.geteuid() != 0 or not shutil.which("chroot"):
        return
    res = run(["chroot", root, "/usr/sbin/qemu-ga", "--version"], timeout=30, check=False)
    if res.returncode != 0:
        raise LabError(
            f"the staged qemu-ga does not run: {res.stderr.decode(errors='replace').strip()[:200]}"
        )


# ---------------------------------------------------------------- cpio newc


def newc_archive(root: Path) -> bytes:
    """A newc cpio archive of ``root`` with every file owned by root:root, mtime 0.

    Written here rather than with cpio(1) (not installed) or busybox cpio (which keeps
    the builder's uid), so the guest sees root-owned files whoever builds the image.
    """
    chunks: list[bytes] = []
    ino = 1

    def entry(name: str, mode: int, data: bytes, nlink: int = 1) -> None:
        nonlocal ino
        fields = [ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        blob = header + name.encode() + b"\0"
        blob += b"\0" * (-len(blob) % 4)
        blob += data
        blob += b"\0" * (-len(blob) % 4)
        chunks.append(blob)
        ino += 1

    for path in sorted([root, *root.rglob("*")]):
        rel = path.relative_to(root).as_posix() or "."
        st = path.lstat()
        perm = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            entry(rel, stat.S_IFLNK | 0o777, os.readlink(path).encode())
        elif stat.S_ISDIR(st.st_mode):
            entry(rel, stat.S_IFDIR | perm, b"", nlink=2)
        elif stat.S_ISREG(st.st_mode):
            entry(rel, stat.S_IFREG | perm, path.read_bytes())
    entry("TRAILER!!!", 0, b"")
    return b"".join(chunks)
