"""The lab's host stacks: which libvirt + QEMU runs the libvirt guests.

* ``host`` (the default): the machine's own libvirt and QEMU packages, in **session
  mode** as the unprivileged lab user (:mod:`virt_qga.lab.session`).
* ``debian13``: Debian 13's libvirt 11.3 and QEMU 10.0, installed into a root made
  with debootstrap and cached in the lab (:mod:`virt_qga.lab.rootfs`), run as a
  **system-mode** libvirtd as root inside a private mount namespace, QEMU as
  ``libvirt-qemu`` with DAC relabelling on, as on a real ``qemu:///system`` host
  (:mod:`virt_qga.lab.sysdaemon`).

Adding a stack built the same way is one :class:`RootStackSpec` in :data:`STACKS`
(and its release in :data:`virt_qga.lab.apt.LAB_SUITES`); see docs/lab.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from virt_qga.lab.errors import LabError

HOST = "host"

#: qemu.conf of a root stack: a real host's defaults (QEMU as libvirt-qemu, DAC
#: relabelling with remembered owners), minus what a mount-namespaced daemon without
#: systemd cannot have: per-domain mount namespaces ("Kernel does not provide mount
#: namespace" on hotplug), cgroups, and a MAC driver (no AppArmor profile in the root).
QEMU_CONF = """\
# written by virt-qga's lab (virt_qga/lab/stacks.py)
user = "libvirt-qemu"
group = "libvirt-qemu"
dynamic_ownership = 1
remember_owner = 1
security_driver = "none"
namespaces = [ ]
cgroup_controllers = [ ]
"""

#: libvirtd.conf: root-only socket without polkit (no polkitd in the root).
LIBVIRTD_CONF = """\
# written by virt-qga's lab (virt_qga/lab/stacks.py)
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""


@dataclass(frozen=True)
class RootStackSpec:
    """A stack whose libvirt and QEMU come from a Debian root built with debootstrap."""

    name: str
    release: str  # Debian codename: the debootstrap suite
    title: str
    packages: tuple[str, ...]
    qemu_conf: str = QEMU_CONF
    libvirtd_conf: str = LIBVIRTD_CONF
    #: files the daemons need at the same path as on the host, besides the lab's own
    #: images and guests: where operators and tests hand libvirt paths (backups,
    #: snapshot overlays in a --dir).
    shared_dirs: tuple[str, ...] = field(default=("/tmp", "/var/tmp"))


STACKS: dict[str, RootStackSpec | None] = {
    HOST: None,
    "debian13": RootStackSpec(
        name="debian13",
        release="trixie",
        title="Debian 13 (trixie): libvirt 11.3, QEMU 10.0, system mode",
        packages=(
            "libvirt-daemon",
            "libvirt-daemon-driver-qemu",
            "libvirt-clients",
            "qemu-system-x86",
            "qemu-utils",
        ),
    ),
}

STACK_NAMES: tuple[str, ...] = tuple(STACKS)


def check_stack(name: str) -> RootStackSpec | None:
    """The spec of stack ``name`` (None for the host stack); LabError when unknown."""
    if name not in STACKS:
        raise LabError(f"unknown lab stack {name!r}; choose one of {', '.join(STACKS)}")
    return STACKS[name]


class StackDaemon(Protocol):
    """What :class:`virt_qga.lab.Lab` needs of a stack's libvirt daemon."""

    name: str
    mode: str  # "session" | "system"

    @property
    def uri(self) -> str: ...

    @property
    def emulator(self) -> str: ...

    @property
    def daemon_log(self) -> Path: ...

    def daemon_alive(self) -> bool: ...

    def ensure_daemon(self, timeout: float = 30.0) -> bool: ...

    def restart_daemon(self, timeout: float = 30.0) -> None: ...

    def daemon_pids(self) -> list[int]: ...

    def lab_pids(self) -> list[int]: ...

    def stop_all(self, grace: float = 5.0) -> None: ...

    def prepare_dirs(self) -> None: ...

    def chown(self, path: Path, uid: int | None = None, gid: int | None = None) -> None: ...

    def qemu_pidfile(self, name: str) -> Path: ...

    def defined_xml_files(self) -> list[Path]: ...
