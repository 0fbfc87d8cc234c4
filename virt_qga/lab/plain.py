"""Plain QEMU guests: no libvirt, the agent channel on a UNIX socket, QMP on another.

The same machine as the libvirt guests (TCG, 2 of 4 vCPUs, 512 MiB in NUMA node 0,
4 DIMM slots), started with ``-daemonize -pidfile`` as the lab user.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from virt_qga.lab.domain import (
    KERNEL_CMDLINE,
    MAX_MEMORY_MIB,
    MEMORY_MIB,
    MEMORY_SLOTS,
    VCPUS_CURRENT,
    VCPUS_MAX,
)


@dataclass(frozen=True)
class PlainSpec:
    name: str
    kernel: Path
    initrd: Path
    data_disk: Path
    console_log: Path
    agent_socket: Path | None
    qmp_socket: Path
    pidfile: Path
    emulator: str = "qemu-system-x86_64"
    kvm: bool = False


def qemu_argv(spec: PlainSpec) -> list[str]:
    argv = [
        spec.emulator,
        "-name",
        f"{spec.name},process=qemu-lab",
        "-machine",
        "pc",
        "-accel",
        "kvm" if spec.kvm else "tcg",
        "-m",
        f"{MEMORY_MIB}M,slots={MEMORY_SLOTS},maxmem={MAX_MEMORY_MIB}M",
        "-object",
        f"memory-backend-ram,id=ram0,size={MEMORY_MIB}M",
        "-smp",
        f"{VCPUS_CURRENT},maxcpus={VCPUS_MAX}",
        "-numa",
        f"node,nodeid=0,cpus=0-{VCPUS_MAX - 1},memdev=ram0",
        "-kernel",
        str(spec.kernel),
        "-initrd",
        str(spec.initrd),
        "-append",
        f"{KERNEL_CMDLINE} lab.hostname={spec.name}",
        "-drive",
        f"file={spec.data_disk},if=none,id=data0,format=qcow2",
        "-device",
        "virtio-blk-pci,drive=data0",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        f"file:{spec.console_log}",
        "-qmp",
        f"unix:{spec.qmp_socket},server=on,wait=off",
        "-nodefaults",
        "-daemonize",
        "-pidfile",
        str(spec.pidfile),
    ]
    if spec.agent_socket is not None:
        argv += [
            "-chardev",
            f"socket,path={spec.agent_socket},server=on,wait=off,id=qga0",
            "-device",
            "virtio-serial",
            "-device",
            "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
        ]
    return argv
