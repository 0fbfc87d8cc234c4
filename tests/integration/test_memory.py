"""``virt-qga memory`` against real lab guests (DIMMs and virtio-mem, QEMU 7.2 TCG).

The CLI runs as a process; outcomes are checked without virt-qga: raw
``guest-get-memory-blocks``, QMP ``query-memory-devices``, the live XML, and sysfs
inside the guest. Refusals are real, not simulated:

* EBUSY: the DIMM's blocks are re-onlined as kernel memory (``online_kernel``) and
  filled with slab objects, so the guest kernel finds unmovable pages and answers
  EBUSY, every pass;
* guest rejection of the ACPI eject: a bind mount hides a block's real ``state`` from
  qemu-ga, so the agent "offlines" a file while the block stays online, and the guest
  kernel then rejects the unplug (libvirt: "unplug of device was rejected by the guest").
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from tests.integration.test_vcpus import _dom, agent, cli, guest_sh, qmp
from virt_qga.lab import LabGuest

MIB = 1 << 20


def blocks(g: LabGuest) -> dict[int, bool]:
    return {int(b["phys-index"]): bool(b["online"]) for b in agent(g, "guest-get-memory-blocks")}


def dimms_in_xml(g: LabGuest) -> list[dict[str, Any]]:
    root = ET.fromstring(_dom(g).XMLDesc(0))
    out = []
    for m in root.findall("devices/memory"):
        alias = m.find("alias")
        addr = m.find("address")
        base = addr.get("base") if addr is not None else None
        out.append({"model": m.get("model"), "alias": alias.get("name") if alias is not None else None,
                    "base": int(base, 16) if base else None})
    return [d for d in out if d["model"] == "dimm"]


def qemu_ids(g: LabGuest) -> set[str]:
    return {str(d["data"].get("id")) for d in qmp(g, "query-memory-devices")}


def plug_256(g: LabGuest) -> dict[str, Any]:
    rc, doc, err = cli(g, "memory", "plug", g.name, "256M")
    assert rc == 0, err
    [dev] = doc["devices"]
    return dict(dev)


def test_plug_then_unplug_256m(fresh_guest: Callable[..., LabGuest]) -> None:
    g = fresh_guest()
    before = blocks(g)
    dev = plug_256(g)
    assert dev["base"] == "0x100000000" and dev["blocks"] == [32, 33]   # 4 GiB / 128 MiB blocks
    now = blocks(g)
    assert now[32] and now[33]
    assert dev["alias"] in qemu_ids(g)
    assert [d["alias"] for d in dimms_in_xml(g)] == [dev["alias"]]

    rc, doc, err = cli(g, "memory", g.name)
    assert rc == 0, err
    [d] = doc["dimms"]
    assert [(b["id"], b["online"]) for b in d["blocks"]] == [(32, True), (33, True)]
    assert {b["id"]: b["dimm"] for b in doc["blocks"]}[32] == dev["alias"]

    rc, doc, err = cli(g, "memory", "unplug", g.name, "256M")
    assert rc == 0, err
    assert doc["state"] == "done"
    assert [s["step"] for s in doc["steps"]] == ["guest-offline", "host-detach", "verify"]
    assert blocks(g) == before                      # guest-get-memory-blocks agrees: 32, 33 gone
    assert dimms_in_xml(g) == [] and dev["alias"] not in qemu_ids(g)
    rc, out = guest_sh(g, "ls -d /sys/devices/system/memory/memory32 2>&1; true")
    assert "No such file" in out


def test_ebusy_retried_then_rolled_back(fresh_guest: Callable[..., LabGuest]) -> None:
    g = fresh_guest()
    dev = plug_256(g)
    # make the DIMM kernel memory full of slab: really busy for the kernel
    r = agent(g, "guest-set-memory-blocks", {"mem-blks": [{"phys-index": 32, "online": False},
                                                          {"phys-index": 33, "online": False}]})
    assert [x["response"] for x in r] == ["success", "success"]
    rc, out = guest_sh(g, "for b in 32 33; do "
                          "echo online_kernel > /sys/devices/system/memory/memory$b/state; done; "
                          "mkdir -p /tmp/fill; i=0; while [ $i -lt 4000 ]; do : > /tmp/fill/f$i; "
                          "i=$((i+1)); done; cat /sys/devices/system/memory/memory3[23]/valid_zones")
    assert rc == 0 and out.split() == ["Normal", "Normal"], out
    rc, doc, err = cli(g, "memory", "unplug", g.name, "--dimm", dev["alias"], "--busy-attempts", "3")
    assert rc == 1, err
    assert doc["state"] == "rolled-back"
    [info] = doc["result"]["devices"]
    offline = info["offline"]
    assert offline["passes"] == 3 and offline["busy_seen"] >= 3
    assert any("EBUSY" in v for v in offline["failed"].values())
    assert blocks(g)[32] and blocks(g)[33]           # every block back online
    assert dev["alias"] in qemu_ids(g) and len(dimms_in_xml(g)) == 1
    assert not any(s["step"] == "host-detach" for s in doc["result"]["steps"])


def test_unplug_rejected_by_guest_blocks_back_online(fresh_guest: Callable[..., LabGuest]) -> None:
    g = fresh_guest()
    dev = plug_256(g)
    agent(g, "guest-set-memory-blocks", {"mem-blks": [{"phys-index": 32, "online": False}]})
    rc, out = guest_sh(g, "echo online_kernel > /sys/devices/system/memory/memory32/state; mkdir -p /tmp/f; "
                          "i=0; while [ $i -lt 4000 ]; do : > /tmp/f/$i; i=$((i+1)); done; "
                          "echo online > /run/fake-state; "
                          "mount --bind /run/fake-state /sys/devices/system/memory/memory32/state")
    assert rc == 0, out
    rc, doc, err = cli(g, "memory", "unplug", g.name, "256M", "--timeout", "30")
    assert rc == 1, err
    assert doc["state"] == "rolled-back"
    assert "rejected by the guest" in err
    steps = {s["step"]: s for s in doc["result"]["steps"]}
    assert steps["host-detach"]["removed"] is False
    assert "rollback" in steps
    guest_sh(g, "umount /sys/devices/system/memory/memory32/state")
    now = blocks(g)
    assert now[32] and now[33]
    assert dev["alias"] in qemu_ids(g) and len(dimms_in_xml(g)) == 1


def test_bad_input_touches_nothing(fresh_guest: Callable[..., LabGuest]) -> None:
    g = fresh_guest()
    dev = plug_256(g)
    before = (blocks(g), dimms_in_xml(g))
    for args, text in [(("unplug", g.name, "100M"), "multiple"),
                       (("unplug", g.name, "--dimm", "nosuch"), "no DIMM with alias"),
                       (("unplug", g.name, "lots"), "not a size"),
                       (("plug", g.name, "2G"), "exceed maxMemory"),
                       (("plug", g.name, "200M"), "multiple")]:
        rc, _, err = cli(g, "memory", *args)
        assert rc == 2 and text in err and err.count("\n") == 1, (args, err)
    assert (blocks(g), dimms_in_xml(g)) == before
    assert dev["alias"] in qemu_ids(g)


def test_virtio_mem_grow_and_shrink(fresh_guest: Callable[..., LabGuest]) -> None:
    """The lab domain has no virtio-mem device; the test hot-plugs one with plain libvirt."""
    import libvirt

    g = fresh_guest()
    _dom(g).attachDeviceFlags("<memory model='virtio-mem'><target><size unit='MiB'>512</size><node>0</node>"
                              "<block unit='MiB'>2</block><requested unit='MiB'>0</requested></target>"
                              "</memory>", libvirt.VIR_DOMAIN_AFFECT_LIVE)

    def qemu_vmem() -> dict[str, Any]:
        [d] = [d["data"] for d in qmp(g, "query-memory-devices") if d["type"] == "virtio-mem"]
        return dict(d)

    def mem_total() -> int:
        _rc, out = guest_sh(g, "grep MemTotal /proc/meminfo")
        return int(out.split()[1]) * 1024

    before = mem_total()
    rc, doc, err = cli(g, "memory", "plug", g.name, "256M", "--virtio-mem")
    assert rc == 0, err
    assert qemu_vmem()["size"] == 256 * MIB
    assert mem_total() - before == 256 * MIB                    # the guest really has it
    rc, doc, err = cli(g, "memory", "unplug", g.name, "128M", "--virtio-mem")
    assert rc == 0, err
    assert json.dumps(doc).count("134217728") >= 1
    assert qemu_vmem()["size"] == 128 * MIB and qemu_vmem()["requested-size"] == 128 * MIB
    assert mem_total() - before == 128 * MIB
    rc, _, err = cli(g, "memory", "unplug", g.name, "3M", "--virtio-mem")
    assert rc == 2 and "block size" in err
