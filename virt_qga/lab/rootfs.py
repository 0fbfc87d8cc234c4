"""Build the root of a root stack (e.g. ``debian13``) once, into the lab cache.

The root is ``debootstrap --variant=minbase <release>`` plus the stack's packages
(libvirt, QEMU) at the exact versions the lab's private apt lists name, and the stack's
``qemu.conf``/``libvirtd.conf``. It lives in ``<lab>/roots/<stack>-<key>/`` where the
key hashes every input: the spec (release, packages, configuration), the resolved
package versions, debootstrap's version and this module's source. So it is rebuilt
exactly when one of them changes (a new libvirt after ``lab build --refresh``, a
changed package list), and never otherwise; a cheap stamp (apt list mtimes, sources)
avoids even resolving the versions on the warm path.

The build runs in a private mount namespace (:mod:`virt_qga.lab.mountns`): proc, sys,
dev and the apt archive cache are mounted for ``apt-get install`` and vanish with the
namespace. The inner apt uses a copy of the lab's own lists (no second ``apt-get
update``, and the versions cannot drift from the key), and downloads go to
``<lab>/roots/cache-<release>/``, kept across rebuilds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from virt_qga.lab.apt import DEBIAN_KEYRING, PrivateApt, lab_sources, require_tools
from virt_qga.lab.errors import LabError
from virt_qga.lab.mountns import MountNamespace, host_mounts_under
from virt_qga.lab.paths import LabPaths
from virt_qga.lab.proc import run
from virt_qga.lab.stacks import RootStackSpec

HERE = Path(__file__).resolve().parent

ROOT_TOOLS = {"debootstrap": "debootstrap", "chroot": "coreutils", "unshare": "util-linux",
              "nsenter": "util-linux", "mount": "mount"}

#: Marks a finished root; a directory without it is a failed build and is replaced.
COMPLETE = ".virt-qga-root"

#: During the build, services are never started inside the root.
POLICY_RC_D = "#!/bin/sh\n# virt-qga lab: no service starts while building the root\nexit 101\n"

#: Packages whose versions a root reports (``lab status``, the manifest).
VERSION_PACKAGES = {"libvirt": "libvirt-daemon", "qemu": "qemu-system-x86"}


@dataclass(frozen=True)
class RootManifest:
    """A built root: where it is and what it holds."""

    stack: str
    release: str
    key: str
    path: str
    packages: dict[str, str]  # requested package -> installed version
    versions: dict[str, str]  # "libvirt", "qemu" -> Debian version
    stamp: str = ""
    built_seconds: float = 0.0
    built_at: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)

    def complete(self) -> bool:
        return (Path(self.path) / COMPLETE).is_file()

    @classmethod
    def load(cls, path: Path) -> RootManifest:
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)


def manifest_path(paths: LabPaths, spec: RootStackSpec) -> Path:
    return paths.roots / f"{spec.name}.json"


def load_manifest(paths: LabPaths, spec: RootStackSpec) -> RootManifest | None:
    try:
        m = RootManifest.load(manifest_path(paths, spec))
    except (OSError, ValueError, TypeError):
        return None
    return m if m.complete() else None


def preflight(spec: RootStackSpec) -> None:
    """One line naming what this host lacks to build or run a root stack."""
    if os.geteuid() != 0:
        raise LabError(f"the {spec.name} stack runs a system-mode libvirtd and needs root")
    require_tools(ROOT_TOOLS)
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError:
        filesystems = ""
    if "overlay" not in filesystems.split():
        raise LabError(f"the {spec.name} stack needs overlayfs, which this kernel does not offer")


def build_root(
    paths: LabPaths, spec: RootStackSpec, refresh: bool = False, log: bool = False
) -> RootManifest:
    """The stack's root, built if missing or if an input changed; returns its manifest."""
    preflight(spec)
    apt = PrivateApt(paths)
    apt.ensure_lists(refresh=refresh)
    stamp = _stamp(paths, spec)
    cached = load_manifest(paths, spec)
    if not refresh and cached is not None and cached.stamp == stamp:
        return cached

    wanted = apt.newest_in_release(list(spec.packages), spec.release)
    key = root_key(spec, wanted, _tool_version())
    target = paths.roots / f"{spec.name}-{key}"
    if cached is not None and cached.key == key and cached.complete():
        manifest = RootManifest(**{**asdict(cached), "stamp": stamp})
        manifest.save(manifest_path(paths, spec))
        return manifest
    if not (target / COMPLETE).is_file():
        if log:
            print(f"virt-qga lab: building the {spec.name} root ({spec.title}), once",
                  file=sys.stderr, flush=True)
        seconds = _build(paths, spec, apt, wanted, target)
    else:
        seconds = 0.0
    installed = _installed(target, list(wanted))
    manifest = RootManifest(
        stack=spec.name,
        release=spec.release,
        key=key,
        path=str(target),
        packages=installed,
        versions={k: installed.get(p, "?") for k, p in VERSION_PACKAGES.items()},
        stamp=stamp,
        built_seconds=round(seconds, 1),
        built_at=time.time(),
    )
    manifest.save(manifest_path(paths, spec))
    prune(paths, spec, keep=target)
    return manifest


def root_key(spec: RootStackSpec, versions: dict[str, str], debootstrap: str) -> str:
    """The cache key of a root: every input that can change what gets built."""
    inputs = {
        "spec": asdict(spec),
        "packages": versions,
        "debootstrap": debootstrap,
        "code": _sha(HERE / "rootfs.py"),  # the spec above carries what stacks.py defines
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def prune(paths: LabPaths, spec: RootStackSpec, keep: Path) -> list[Path]:
    """Remove older roots of ``spec`` that no running stack uses; returns what was removed."""
    from virt_qga.lab.sysdaemon import roots_in_use

    busy = roots_in_use(paths, spec)
    removed = []
    for old in paths.roots.glob(f"{spec.name}-*"):
        if old == keep or not old.is_dir() or old.resolve() in busy or host_mounts_under(old):
            continue
        shutil.rmtree(old, ignore_errors=True)
        removed.append(old)
    return removed


def _stamp(paths: LabPaths, spec: RootStackSpec) -> str:
    """Cheap fingerprint: the release's apt lists (mtimes) and this code."""
    h = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode())
    lists = paths.apt / "state" / "lists"
    for p in sorted(lists.glob(f"*_dists_{spec.release}*_Packages*")):
        h.update(f"{p.name}:{p.stat().st_mtime_ns}".encode())
    for f in ("rootfs.py", "stacks.py"):
        h.update((HERE / f).read_bytes())
    h.update(_tool_version().encode())
    return h.hexdigest()[:16]


def _tool_version() -> str:
    res = run(["dpkg-query", "-W", "-f=${Version}", "debootstrap"], timeout=30, check=False)
    return res.stdout.decode().strip()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _build(paths: LabPaths, spec: RootStackSpec, apt: PrivateApt, wanted: dict[str, str],
           target: Path) -> float:
    start = time.monotonic()
    cache = paths.roots / f"cache-{spec.release}"
    (cache / "debootstrap").mkdir(parents=True, exist_ok=True)
    (cache / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    if host_mounts_under(partial):
        raise LabError(f"{partial} has mounts in the host's namespace; unmount them first")
    shutil.rmtree(partial, ignore_errors=True)
    sources = [s for s in lab_sources() if s.suite.split("-", 1)[0] == spec.release]
    archive = sources[0].uri
    keyring = ["--keyring", DEBIAN_KEYRING] if Path(DEBIAN_KEYRING).exists() else []
    run(["debootstrap", "--variant=minbase", f"--cache-dir={cache / 'debootstrap'}", *keyring,
         spec.release, partial, archive], timeout=900)

    # the inner apt reads the lab's own lists: same sources.list lines, same file names
    (partial / "etc/apt/sources.list").write_text("".join(s.line() + "\n" for s in sources))
    inner_lists = partial / "var/lib/apt/lists"
    inner_lists.mkdir(parents=True, exist_ok=True)
    for f in (paths.apt / "state" / "lists").iterdir():
        if f.is_file() and any(f"_dists_{s.suite}_" in f.name for s in sources):
            shutil.copy2(f, inner_lists / f.name)
    policy = partial / "usr/sbin/policy-rc.d"
    policy.write_text(POLICY_RC_D)
    policy.chmod(0o755)

    ns = MountNamespace.start(paths.roots / f".build-{spec.name}.pid", tag=str(partial))
    try:
        ns.mount("-t", "proc", "proc", partial / "proc")
        ns.mount("--rbind", "/sys", partial / "sys")
        ns.mount("--rbind", "/dev", partial / "dev")
        ns.mount("--bind", cache / "archives", partial / "var/cache/apt/archives")
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
               "DEBIAN_FRONTEND": "noninteractive"}
        ns.run(["chroot", partial, "apt-get", "-q", "-y", "--no-install-recommends", "install",
                *(f"{p}={v}" for p, v in wanted.items())], timeout=1200, env=env)
    finally:
        ns.stop()
        (paths.roots / f".build-{spec.name}.pid").unlink(missing_ok=True)
    policy.unlink()
    (partial / "etc/libvirt/qemu.conf").write_text(spec.qemu_conf)
    (partial / "etc/libvirt/libvirtd.conf").write_text(spec.libvirtd_conf)
    for leftover in (partial / "var/lib/apt/lists").glob("*"):  # the lab keeps its own lists
        if leftover.is_file():
            leftover.unlink()
    seconds = time.monotonic() - start
    (partial / COMPLETE).write_text(json.dumps({"stack": spec.name, "packages": wanted,
                                                "seconds": round(seconds, 1)}) + "\n")
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)
    return seconds


def _installed(root: Path, packages: list[str]) -> dict[str, str]:
    res = run(["chroot", root, "dpkg-query", "-W", "-f=${Package} ${Version}\\n", *packages],
              timeout=60, check=False)
    out = {}
    for line in res.stdout.decode().splitlines():
        name, _, version = line.partition(" ")
        if version:
            out[name] = version
    return out
