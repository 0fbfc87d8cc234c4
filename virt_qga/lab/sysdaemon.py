"""A root stack's system-mode libvirtd, in a private mount namespace.

Layout under ``<lab>/stacks/<stack>/``::

    ns.pid      holder of the stack's mount namespace (virt_qga.lab.mountns)
    state.json  which built root this running stack uses
    upper/ work/ root/   overlayfs: the cached root (read-only lower layer) + this
                run's changes; root/ is the merged tree the daemons chroot into
    run/        bound at root/run: sockets (run/libvirt/libvirt-sock), pidfiles
    log/        bound at root/var/log/libvirt: libvirtd.log, qemu/<domain>.log

Inside the namespace, the lab's ``images/`` and ``guests/`` (and ``/tmp``, ``/var/tmp``)
are bind-mounted at their own paths, so a path means the same file to virt-qga on the
host and to libvirt and QEMU in the root. virtlogd and libvirtd run as root with
``chroot root/``: a **system-mode** daemon (``qemu:///system``), QEMU as
``libvirt-qemu``, DAC relabelling on. The cached root itself is never written: the
overlay's upper layer takes the run's state (domain definitions, checkpoints, caches)
and ``down`` throws it away, after the namespace (and with it every mount) is gone.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

from virt_qga.lab.errors import LabError
from virt_qga.lab.mountns import MountNamespace, host_mounts_under, mnt_ns
from virt_qga.lab.paths import LabPaths
from virt_qga.lab.proc import pid_alive, pid_cmdline
from virt_qga.lab.reconnect import wait_reconnected
from virt_qga.lab.rootfs import RootManifest, load_manifest
from virt_qga.lab.session import SYSTEM_PATH, terminate
from virt_qga.lab.stacks import RootStackSpec

DAEMONS = ("virtlogd", "libvirtd")


class SystemStack:
    """The running side of a :class:`~virt_qga.lab.stacks.RootStackSpec`."""

    mode = "system"

    def __init__(self, paths: LabPaths, spec: RootStackSpec) -> None:
        self.paths = paths
        self.spec = spec
        self.name = spec.name
        self.dir = paths.stack_dir(spec.name)

    # ------------------------------------------------------------ where

    @property
    def merged(self) -> Path:
        return self.dir / "root"

    @property
    def run_dir(self) -> Path:
        return self.dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.dir / "log"

    @property
    def socket_path(self) -> Path:
        return self.run_dir / "libvirt" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket_path}"

    @property
    def emulator(self) -> str:
        return "/usr/bin/qemu-system-x86_64"  # inside the root

    @property
    def daemon_log(self) -> Path:
        return self.log_dir / "libvirtd.log"

    @property
    def tag(self) -> str:
        return str(self.dir)

    def qemu_pidfile(self, name: str) -> Path:
        return self.run_dir / "libvirt" / "qemu" / f"{name}.pid"

    def domain_log(self, name: str) -> Path:
        return self.log_dir / "qemu" / f"{name}.log"

    def defined_xml_files(self) -> list[Path]:
        return sorted((self.dir / "upper" / "etc" / "libvirt" / "qemu").glob("*.xml"))

    def manifest(self) -> RootManifest | None:
        """The root this stack runs on (while running), else the latest built one."""
        try:
            state = json.loads((self.dir / "state.json").read_text())
            running = RootManifest(**state["manifest"])
            if self.namespace() is not None:
                return running
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return load_manifest(self.paths, self.spec)

    # ------------------------------------------------------------ ownership

    def prepare_dirs(self) -> None:
        """The lab folders the root sees; root-owned (the daemon runs as root and
        relabels the files QEMU needs)."""
        self.paths.guests.mkdir(parents=True, exist_ok=True)

    def chown(self, path: Path, uid: int | None = None, gid: int | None = None) -> None:
        """Nothing: in system mode libvirt's DAC driver hands QEMU its files."""

    # ------------------------------------------------------------ namespace

    def namespace(self) -> MountNamespace | None:
        return MountNamespace.attach(self.dir / "ns.pid", self.tag)

    def _start_namespace(self, manifest: RootManifest) -> MountNamespace:
        if host_mounts_under(self.dir):
            raise LabError(f"{self.dir} has mounts in the host's namespace; run `virt-qga lab down`")
        for sub in ("upper", "work", "root", "run"):
            shutil.rmtree(self.dir / sub, ignore_errors=True)
            (self.dir / sub).mkdir(parents=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._seed_upper(Path(manifest.path))
        ns = MountNamespace.start(self.dir / "ns.pid", self.tag)
        try:
            lower = Path(manifest.path).resolve()
            ns.mount("-t", "overlay", "overlay", "-o",
                     f"lowerdir={lower},upperdir={self.dir / 'upper'},workdir={self.dir / 'work'}",
                     self.merged)
            ns.mount("-t", "proc", "proc", self.merged / "proc")
            ns.mount("--rbind", "/sys", self.merged / "sys")
            ns.mount("--rbind", "/dev", self.merged / "dev")
            ns.mount("--bind", self.run_dir, self.merged / "run")
            ns.mount("--bind", self.log_dir, self.merged / "var/log/libvirt")
            for shared in self.spec.shared_dirs:
                if Path(shared).is_dir():
                    ns.mount("--bind", shared, self.merged / shared.lstrip("/"))
            for own in (self.paths.images, self.paths.guests):
                real = own.resolve()
                if any(real.is_relative_to(s) for s in self.spec.shared_dirs):
                    continue  # already visible through a shared dir
                real.mkdir(parents=True, exist_ok=True)
                ns.run(["mkdir", "-p", self.merged / str(real).lstrip("/")], timeout=10)
                ns.mount("--bind", real, self.merged / str(real).lstrip("/"))
        except LabError:
            ns.stop()
            raise
        (self.dir / "state.json").write_text(json.dumps({"manifest": manifest.__dict__}) + "\n")
        return ns

    def _seed_upper(self, lower: Path) -> None:
        """Per-run files placed in the overlay's upper layer before it is mounted.

        Name resolution: libvirtd looks up the host name on every domain start; the
        root has no /etc/hosts and its resolver points at the host's DNS, which a lab
        may not reach (measured here: 56 s per start). So the root resolves from files
        only, with the host's own /etc/hosts.

        /dev/kvm: see :func:`kvm_group`.
        """
        etc = self.dir / "upper" / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        try:
            hosts = Path("/etc/hosts").read_text()
        except OSError:
            hosts = ""
        name = socket.gethostname()
        if name and name not in hosts.split():
            hosts += f"127.0.1.1 {name}\n"
        (etc / "hosts").write_text("127.0.0.1 localhost\n" + hosts)
        nsswitch = (lower / "etc/nsswitch.conf").read_text() if (lower / "etc/nsswitch.conf").exists() else ""
        lines = [ln for ln in nsswitch.splitlines() if not ln.startswith("hosts:")]
        (etc / "nsswitch.conf").write_text("\n".join([*lines, "hosts: files"]) + "\n")
        (etc / "group").write_text(kvm_group(lower / "etc/group", Path("/dev/kvm")))

    # ------------------------------------------------------------ daemons

    def daemon_alive(self) -> bool:
        path = str(self.socket_path)
        if not os.path.exists(path):
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2.0)
            try:
                s.connect(path)
            except OSError:
                return False
        return True

    def ensure_daemon(self, timeout: float = 30.0) -> bool:
        """Start virtlogd and libvirtd in the stack's namespace unless libvirtd answers;
        True if it was started. The namespace is reused while it lives (QEMU processes
        keep running in it when the daemon died) and made afresh otherwise."""
        if self.daemon_alive():
            return False
        ns = self.namespace()
        if ns is None:
            manifest = load_manifest(self.paths, self.spec)
            if manifest is None:
                raise LabError(
                    f"the {self.name} root is not built; run `virt-qga lab build --stack {self.name}`"
                )
            ns = self._start_namespace(manifest)
        env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "HOME": "/root"}
        if not self._pid_of("virtlogd"):
            ns.run(["chroot", self.merged, "/usr/sbin/virtlogd", "-d"], timeout=30, env=env)
        self.socket_path.unlink(missing_ok=True)
        ns.run(["chroot", self.merged, "/usr/sbin/libvirtd", "-d"], timeout=30, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.daemon_alive():
                return True
            time.sleep(0.1)
        raise LabError(
            f"the {self.name} libvirtd did not come up within {timeout:.0f} s; see {self.daemon_log}"
        )

    def restart_daemon(self, timeout: float = 30.0) -> None:
        """Stop libvirtd and start it again in the same namespace; domains keep running."""
        pid = self._pid_of("libvirtd")
        if pid:
            terminate([pid], grace=10.0)
        self.ensure_daemon(timeout)
        wait_reconnected(self.uri, timeout)

    def _pid_of(self, daemon: str) -> int | None:
        ns = self.namespace()
        try:
            pid = int((self.run_dir / f"{daemon}.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        if ns is None or not pid_alive(pid) or mnt_ns(pid) != ns.ns:
            return None
        if Path((pid_cmdline(pid) or [""])[0]).name != daemon:
            return None
        return pid

    def daemon_pids(self) -> list[int]:
        return sorted(p for p in (self._pid_of(d) for d in DAEMONS) if p)

    def lab_pids(self) -> list[int]:
        """Every process of this stack: the members of its mount namespace, and anything
        whose root directory is the stack's merged root (should the holder be gone)."""
        ns = self.namespace()
        found = set(ns.members()) if ns is not None else set()
        merged = str(self.merged)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                root = os.readlink(entry / "root")
            except OSError:
                continue
            if (root == merged or root.startswith(merged + "/")) and pid_alive(int(entry.name)):
                found.add(int(entry.name))
        return sorted(found)

    def mountpoints(self) -> list[str]:
        ns = self.namespace()
        return ns.mountpoints(self.merged) if ns is not None else []

    def stop_all(self, grace: float = 5.0) -> None:
        """Stop daemons and QEMU, end the namespace (its mounts go with it), and throw
        the run's state away. The built root and the logs stay."""
        ns = self.namespace()
        if ns is not None:
            terminate([p for p in self.daemon_pids()], grace)
            ns.stop(grace)
        leftovers = [p for p in self.lab_pids()]
        terminate(leftovers, grace)
        if host_mounts_under(self.dir):
            raise LabError(f"mounts left under {self.dir} in the host's namespace: "
                           f"{', '.join(host_mounts_under(self.dir))}")
        for sub in ("upper", "work", "root", "run"):
            shutil.rmtree(self.dir / sub, ignore_errors=True)
        for f in ("ns.pid", "state.json"):
            (self.dir / f).unlink(missing_ok=True)


def kvm_group(group_file: Path, kvm: Path) -> str:
    """The root's /etc/group with ``libvirt-qemu`` in the group that owns the host's
    ``/dev/kvm``.

    The root's ``kvm`` group has the root's gid, not the host's, so QEMU (as
    libvirt-qemu) could not open ``/dev/kvm`` the way it can on a real host. libvirt
    then finds "KVM was enabled when probing, but it is not available now", throws
    its capability cache away and probes QEMU again on every lookup: 14 probes, about
    56 s, per domain start (measured). With the host's gid the views agree. Guests
    still use TCG unless asked for KVM.
    """
    text = group_file.read_text() if group_file.exists() else ""
    try:
        gid = kvm.stat().st_gid
    except OSError:
        return text  # no /dev/kvm: nothing to agree on
    out = []
    found = False
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) == 4 and fields[2] == str(gid):
            members = [m for m in fields[3].split(",") if m]
            if "libvirt-qemu" not in members:
                members.append("libvirt-qemu")
            line = ":".join([*fields[:3], ",".join(members)])
            found = True
        out.append(line)
    if not found:
        out.append(f"host-kvm:x:{gid}:libvirt-qemu")
    return "\n".join(out) + "\n"


def roots_in_use(paths: LabPaths, spec: RootStackSpec) -> set[Path]:
    """The built roots a running stack of ``spec`` uses (never pruned)."""
    stack = SystemStack(paths, spec)
    if stack.namespace() is None:
        return set()
    m = stack.manifest()
    return {Path(m.path).resolve()} if m is not None else set()
