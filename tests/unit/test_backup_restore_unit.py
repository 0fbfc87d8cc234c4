"""The pure parts of restore, verify and list: the domain XML rewrite for a restored
domain, the chain-order and link rules, what a PATH names, options and records."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from virt_qga.errors import BadInputError
from virt_qga.host.clone import RESTORE_NS, clone_xml
from virt_qga.workflows.backup.restore import RestoreOptions, parse_owner
from virt_qga.workflows.backup.store import Chain, DiskRecord, Manifest, Store, StoredBackup
from virt_qga.workflows.backup.verify import (
    _time_key,
    chain_problems,
    disk_problems,
    locate,
    read_record,
)

SAVED = """<domain type='qemu' id='7'>
  <name>web1</name>
  <uuid>b274c03e-eda1-4006-95e7-04d0aaa405b8</uuid>
  <genid>43dc0cf8-809b-4adb-9bea-a9abb5f3d90d</genid>
  <metadata><lab:guest xmlns:lab="https://virt-qga.example/lab" agent="7.2"/></metadata>
  <sysinfo type='smbios'><system><entry name='uuid'>b274c03e-eda1-4006-95e7-04d0aaa405b8</entry>
    <entry name='serial'>S1</entry></system></sysinfo>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>
    <nvram template='/usr/share/OVMF/OVMF_VARS.fd'>/var/lib/libvirt/qemu/nvram/web1_VARS.fd</nvram>
  </os>
  <devices>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source dev='/dev/vg/web1'/>
      <backingStore type='file'><format type='qcow2'/><source file='/x/base.qcow2'/></backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/web1-scratch.qcow2'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/iso/install.iso'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:12:34:56'/>
      <source network='default'/>
      <target dev='vnet3'/>
      <model type='virtio'/>
    </interface>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x0000' bus='0x03' slot='0x00' function='0x0'/></source>
    </hostdev>
    <serial type='file'>
      <source path='/var/log/web1/console.log'/>
      <target port='0'/>
      <log file='/var/log/web1/serial0.log' append='on'/>
    </serial>
    <console type='file'>
      <source path='/var/log/web1/console.log'/>
      <target type='serial' port='0'/>
    </console>
    <serial type='tcp'>
      <source mode='bind' host='0.0.0.0' service='4555'/>
      <protocol type='telnet'/>
      <target port='1'/>
    </serial>
    <channel type='unix'>
      <source mode='bind' path='/var/lib/libvirt/qemu/web1.agent'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <graphics type='vnc' port='5901' autoport='no' websocket='5701' listen='127.0.0.1'/>
    <vsock model='virtio'><cid auto='no' address='12'/></vsock>
    <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>
  </devices>
  <seclabel type='static' model='selinux' relabel='yes'>
    <label>system_u:system_r:svirt_t:s0:c10,c20</label>
  </seclabel>
</domain>
"""


def _clone(**kw: object) -> tuple[ET.Element, list[str], list[str], list[Path]]:
    c = clone_xml(SAVED, name="web1-restored", disks={"vda": Path("/r/vda.qcow2")},
                  files_dir=Path("/r"), origin={"domain": "web1", "backup": "20261201T020000Z"})
    return ET.fromstring(c.xml), c.changes, c.warnings, c.files


def test_clone_has_a_new_identity() -> None:
    root, _changes, _warnings, _files = _clone()
    assert root.findtext("name") == "web1-restored"
    assert root.find("uuid") is None and "id" not in root.attrib
    assert not (root.findtext("genid") or "")                       # libvirt makes a new one
    assert [e.get("name") for e in root.findall("./sysinfo/system/entry")] == ["serial"]
    mark = root.find(f"./metadata/{{{RESTORE_NS}}}restored")
    assert mark is not None and mark.get("domain") == "web1"
    assert root.find("./metadata/{https://virt-qga.example/lab}guest") is not None   # kept


def test_clone_disks_use_the_restored_images_only() -> None:
    root, _changes, warnings, _files = _clone()
    disks = {str(d.find("target").get("dev")): d for d in root.findall("./devices/disk")}  # type: ignore[union-attr]
    assert sorted(disks) == ["sda", "vda"]                 # vdb (writable, not backed up) left out
    vda = disks["vda"]
    assert vda.get("type") == "file" and vda.find("backingStore") is None
    assert [s.attrib for s in vda.findall("source")] == [{"file": "/r/vda.qcow2"}]
    driver = vda.find("driver")
    assert driver is not None and driver.get("type") == "qcow2" and driver.get("cache") == "none"
    assert disks["sda"].find("source").get("file") == "/iso/install.iso"  # type: ignore[union-attr]
    assert any("vdb" in w and "left out" in w for w in warnings)
    assert not list(root.iter("backingStore"))


def test_clone_shares_nothing_that_would_clash() -> None:
    root, _changes, warnings, files = _clone()
    nic = root.find("./devices/interface")
    assert nic is not None and nic.find("mac") is None and nic.find("target") is None
    assert root.find("./devices/hostdev") is None
    serial, tcp = root.findall("./devices/serial")
    assert serial.find("source").get("path") == "/r/console.log"  # type: ignore[union-attr]
    assert serial.find("log").get("file") == "/r/serial0.log"  # type: ignore[union-attr]
    console = root.find("./devices/console/source")
    assert console is not None and console.get("path") == "/r/console.log"   # the same file as serial 0
    assert tcp.get("type") == "null" and tcp.find("source") is None
    channel = root.find("./devices/channel/source")
    assert channel is not None and channel.get("path") == "/r/web1.agent" and channel.get("mode") == "bind"
    vnc = root.find("./devices/graphics")
    assert vnc is not None and vnc.get("autoport") == "yes" and "port" not in vnc.attrib
    assert vnc.get("websocket") == "-1"
    cid = root.find("./devices/vsock/cid")
    assert cid is not None and cid.get("auto") == "yes" and "address" not in cid.attrib
    nvram = root.find("./os/nvram")
    assert nvram is not None and not nvram.text and nvram.get("template")
    assert root.find("seclabel") is None
    assert sorted(files) == [Path("/r/console.log"), Path("/r/serial0.log")]
    for what in ("UEFI", "TPM", "host device", "null device"):
        assert any(what in w for w in warnings), (what, warnings)


def test_clone_socket_paths_must_fit() -> None:
    deep = Path("/" + "d" * 100)
    c = clone_xml(SAVED, name="n", disks={"vda": Path("/r/vda.qcow2")}, files_dir=deep)
    channel = ET.fromstring(c.xml).find("./devices/channel/source")
    assert channel is not None and "path" not in channel.attrib     # libvirt picks the agent's
    assert any("libvirt picks a new one" in x for x in c.changes) and c.sockets == []
    saved = SAVED.replace("<channel type='unix'>", "<serial type='unix'><source mode='bind' "
                          "path='/run/web1.serial'/><target port='3'/></serial><channel type='unix'>")
    with pytest.raises(BadInputError, match="longer than 107"):
        clone_xml(saved, name="n", disks={"vda": Path("/r/vda.qcow2")}, files_dir=deep)


def test_clone_of_a_disk_missing_from_the_saved_xml_is_a_warning() -> None:
    c = clone_xml(SAVED, name="n", disks={"vda": Path("/r/vda.qcow2"), "vdc": Path("/r/vdc.qcow2")},
                  files_dir=Path("/r"))
    assert any("vdc" in w and "not attached" in w for w in c.warnings)


def test_clone_refuses_what_is_not_a_domain() -> None:
    with pytest.raises(BadInputError):
        clone_xml("<network/>", name="n", disks={}, files_dir=Path("/r"))
    with pytest.raises(BadInputError):
        clone_xml("<domain", name="n", disks={}, files_dir=Path("/r"))


# -- verify's rules -------------------------------------------------------------------------

A, B, C, D = "20261101T010000Z", "20261102T010000Z", "20261103T010000Z", "20261104T010000Z"


def _sb(root: Path, name: str, parent: str | None, chain: str = A, domain: str = "vm",
        level: str | None = None, backing: str | None = None) -> StoredBackup:
    m = Manifest(domain=domain, name=name, chain=chain, level=level or ("inc" if parent else "full"),
                 method="backup-api", consistency="filesystem", started=name, parent=parent,
                 disks=[DiskRecord(target="vda", source="/i/vm.qcow2", file="vda.qcow2",
                                   virtual_size=1024, backing=backing)])
    return StoredBackup(root / "vm" / chain / name, m)


def _chain(root: Path, order: list[StoredBackup], broken: list[str]) -> Chain:
    return Chain(domain="vm", name=A, path=root / "vm" / A, backups=order, broken=broken)


def test_a_missing_link_is_named(tmp_path: Path) -> None:
    full, inc2 = _sb(tmp_path, A, None), _sb(tmp_path, C, B)
    problems = chain_problems(_chain(tmp_path, [full], [C]), {A: full, C: inc2}, {})
    [p] = problems
    assert p.backup == C and p.kind == "chain" and f"parent {B} is missing" in p.message


def test_two_backups_claiming_one_parent(tmp_path: Path) -> None:
    full, inc1, fork = _sb(tmp_path, A, None), _sb(tmp_path, B, A), _sb(tmp_path, C, A)
    [p] = chain_problems(_chain(tmp_path, [full, fork], [B]), {A: full, B: inc1, C: fork}, {})
    assert p.backup == B and f"continued in the chain by {C}" in p.message


def test_manifest_mismatches_and_unreadable_ones(tmp_path: Path) -> None:
    full = _sb(tmp_path, A, None)
    other = _sb(tmp_path, B, A, domain="db1")
    stray_full = _sb(tmp_path, C, None)
    problems = chain_problems(_chain(tmp_path, [full, other], [C]), {A: full, B: other, C: stray_full},
                              {D: "no manifest.json: not a complete backup"})
    text = [(p.backup, p.message) for p in problems]
    assert (D, "no manifest.json: not a complete backup") in text
    assert any(b == B and "of domain db1" in m for b, m in text)
    assert any(b == C and "a full backup inside chain" in m for b, m in text)


def test_a_chain_without_its_full_backup(tmp_path: Path) -> None:
    inc = _sb(tmp_path, B, A)
    [p, q] = chain_problems(_chain(tmp_path, [], [B]), {B: inc}, {})
    assert p.backup is None and "no full backup" in p.message
    assert q.backup == B and "is missing" in q.message
    [e] = chain_problems(_chain(tmp_path, [], []), {}, {})
    assert "holds no backup" in e.message


def test_time_order_knows_millisecond_names() -> None:
    plain, later = "20261101T010000Z", "20261101T010000123Z"
    assert plain > later                                  # string order is wrong here
    assert _time_key(plain) < _time_key(later)


def test_disk_links(tmp_path: Path) -> None:
    full = _sb(tmp_path, A, None)
    inc = _sb(tmp_path, B, A, backing=f"../{A}/vda.qcow2")
    good = {"format": "qcow2", "virtual-size": 1024, "backing-filename": f"../{A}/vda.qcow2"}
    assert disk_problems(inc, full, inc.manifest.disks[0], good, exists=lambda _p: True) == []
    missing = disk_problems(inc, full, inc.manifest.disks[0], good, exists=lambda _p: False)
    assert [k for k, _ in missing] == ["link"] and "missing link" in missing[0][1]
    live = dict(good, **{"backing-filename": "/var/lib/libvirt/images/vm.qcow2"})
    [(kind, msg)] = disk_problems(inc, full, inc.manifest.disks[0], live, exists=lambda _p: True)
    assert kind == "link" and "/var/lib/libvirt/images/vm.qcow2" in msg
    wrong = _sb(tmp_path, C, B, backing=f"../{A}/vda.qcow2")
    found = disk_problems(wrong, inc, wrong.manifest.disks[0], good, exists=lambda _p: True)
    assert any("not its parent's image" in m for _, m in found)
    raw = {"format": "raw", "virtual-size": 2048}
    kinds = [k for k, _ in disk_problems(full, None, full.manifest.disks[0], raw)]
    assert kinds == ["image", "image"]


def test_locate_tells_the_scope(tmp_path: Path) -> None:
    bdir = tmp_path / "vm" / A / B
    bdir.mkdir(parents=True)
    (tmp_path / "vm" / A / C).mkdir()
    (bdir / "manifest.json").write_text("{}")
    assert locate(tmp_path) == ("store", tmp_path)
    assert locate(tmp_path / "vm")[0] == "domain"
    assert locate(tmp_path / "vm" / A)[0] == "chain"
    assert locate(bdir)[0] == "backup"
    assert locate(tmp_path / "vm" / A / C)[0] == "backup"       # a backup's name without a manifest
    with pytest.raises(BadInputError):
        locate(tmp_path / "nope")
    with pytest.raises(BadInputError):
        locate(bdir / "manifest.json")


def test_record_is_stale_when_the_manifest_changes(tmp_path: Path) -> None:
    import hashlib

    (tmp_path / "manifest.json").write_text('{"a": 1}')
    digest = hashlib.sha256(b'{"a": 1}').hexdigest()
    (tmp_path / "verify.json").write_text(json.dumps({
        "format": "virt-qga-verify/1", "ok": True, "at": "t1", "passed_at": "t1",
        "manifest_sha256": digest, "problem_count": 0}))
    assert read_record(tmp_path) == {"ok": True, "at": "t1", "passed_at": "t1", "problem_count": 0,
                                     "stale": False}
    (tmp_path / "manifest.json").write_text('{"a": 2}')
    rec = read_record(tmp_path)
    assert rec is not None and rec["stale"] is True
    (tmp_path / "verify.json").write_text("not json")
    assert read_record(tmp_path) is None


# -- restore's options ----------------------------------------------------------------------


@pytest.mark.parametrize(("opts", "match"), [
    (RestoreOptions(), "say where to restore"),
    (RestoreOptions(define="a/b"), "not a usable domain name"),
    (RestoreOptions(define=""), "not a usable domain name"),
    (RestoreOptions(to="/x", convert_timeout=0), "convert_timeout"),
])
def test_restore_options_refuse(opts: RestoreOptions, match: str) -> None:
    with pytest.raises(BadInputError, match=match):
        opts.validate()


def test_parse_owner() -> None:
    assert parse_owner("root") == (0, 0)
    assert parse_owner("0:0") == (0, 0)
    assert parse_owner("4242:4343") == (4242, 4343)         # numbers need no passwd entry
    with pytest.raises(BadInputError, match="no user"):
        parse_owner("no-such-user-here")
    with pytest.raises(BadInputError, match="no group"):
        parse_owner("root:no-such-group-here")


def test_restore_refuses_before_reading_anything(tmp_path: Path) -> None:
    from virt_qga.workflows.backup.restore import restore

    with pytest.raises(BadInputError, match="not a backup chain"):
        restore(tmp_path, RestoreOptions(to=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()
    store = Store(tmp_path)
    with store.writing("vm", A, A) as partial:
        (partial / "vda.qcow2").write_bytes(b"x")
        Manifest(domain="vm", name=A, chain=A, level="full", method="offline", consistency="offline",
                 started=A, disks=[DiskRecord(target="vda", source=None, file="vda.qcow2",
                                              virtual_size=1)]).write(partial)
    with pytest.raises(BadInputError, match="has no backup"):
        restore(tmp_path / "vm" / A, RestoreOptions(to=str(tmp_path / "out"), at=B))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "vda.qcow2").write_bytes(b"mine")
    with pytest.raises(BadInputError, match="never overwrites"):
        restore(tmp_path / "vm" / A, RestoreOptions(to=str(tmp_path / "out")))
    assert (tmp_path / "out" / "vda.qcow2").read_bytes() == b"mine"
