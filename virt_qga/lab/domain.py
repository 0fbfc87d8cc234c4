"""Domain XML for a libvirt lab guest (exactly the layout LAB-NOTES found to work).

TCG by default (``<domain type='qemu'>``); KVM only when asked. 2 of 4 vCPUs online,
vCPU 0 fixed and 1-3 hot-pluggable; 512 MiB in NUMA cell 0 with 4 DIMM slots up to
2048 MiB; ACPI (without it the guest sees one CPU and CPU unplug is refused).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

LAB_NS = "https://virt-qga.example/lab"
KERNEL_CMDLINE = "console=ttyS0 panic=-1 memhp_default_state=online_movable"
MEMORY_MIB = 512
MAX_MEMORY_MIB = 2048
MEMORY_SLOTS = 4
VCPUS_MAX = 4
VCPUS_CURRENT = 2


@dataclass(frozen=True)
class DomainSpec:
    name: str
    agent: str
    kernel: Path
    initrd: Path
    data_disk: Path
    console_log: Path
    agent_socket: Path | None  # None: no agent channel at all
    emulator: str = "/usr/bin/qemu-system-x86_64"
    kvm: bool = False


def domain_xml(spec: DomainSpec) -> str:
    vcpus = "\n".join(
        f"    <vcpu id='{i}' enabled='{'yes' if i < VCPUS_CURRENT else 'no'}' "
        f"hotpluggable='{'no' if i == 0 else 'yes'}'/>"
        for i in range(VCPUS_MAX)
    )
    channel = ""
    if spec.agent_socket is not None:
        channel = f"""
    <channel type='unix'>
      <source mode='bind' path={quoteattr(str(spec.agent_socket))}/>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>"""
    cmdline = f"{KERNEL_CMDLINE} lab.hostname={spec.name}"
    return f"""<domain type='{"kvm" if spec.kvm else "qemu"}'>
  <name>{escape(spec.name)}</name>
  <metadata>
    <lab:guest xmlns:lab='{LAB_NS}' agent={quoteattr(spec.agent)}/>
  </metadata>
  <maxMemory slots='{MEMORY_SLOTS}' unit='MiB'>{MAX_MEMORY_MIB}</maxMemory>
  <memory unit='MiB'>{MEMORY_MIB}</memory>
  <currentMemory unit='MiB'>{MEMORY_MIB}</currentMemory>
  <vcpu placement='static' current='{VCPUS_CURRENT}'>{VCPUS_MAX}</vcpu>
  <vcpus>
{vcpus}
  </vcpus>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(str(spec.kernel))}</kernel>
    <initrd>{escape(str(spec.initrd))}</initrd>
    <cmdline>{escape(cmdline)}</cmdline>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <cpu>
    <numa>
      <cell id='0' cpus='0-{VCPUS_MAX - 1}' memory='{MEMORY_MIB}' unit='MiB'/>
    </numa>
  </cpu>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{escape(spec.emulator)}</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file={quoteattr(str(spec.data_disk))}/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <controller type='usb' model='none'/>{channel}
    <serial type='file'>
      <source path={quoteattr(str(spec.console_log))}/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def agent_from_xml(xml: str) -> str | None:
    """The agent version recorded in a lab domain's metadata, if any."""
    import xml.etree.ElementTree as ET

    try:
        node = ET.fromstring(xml).find(f"metadata/{{{LAB_NS}}}guest")
    except ET.ParseError:
        return None
    return node.get("agent") if node is not None else None
