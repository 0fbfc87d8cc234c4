"""A saved domain XML turned into a new domain that can run beside the original.

``virt-qga restore --define`` defines a domain from the XML a backup saved, with the
restored disks. Everything in that XML that names the original's identity or host
resources would clash with the original (or quietly share its files) and is changed:

* **identity**: the new name; no ``<uuid>`` (libvirt makes a new one), and none in
  ``<sysinfo>`` either (libvirt refuses a mismatch); a new ``<genid>``; no ``id``;
* **disks**: each backed-up disk becomes a plain ``file`` qcow2 on its restored image,
  without ``<backingStore>``, slices, data store or encryption. A writable disk that was
  not in the backup is left out (it would write to the original's image); read-only
  ones (CD-ROMs) stay;
* **network**: no ``<mac>`` (libvirt makes a new one), no fixed tap name; host devices
  (PCI/USB passthrough, SR-IOV interfaces) are left out: one domain at a time owns them;
* **character devices**: file and socket paths (serial and console logs, ``<log>``, the
  agent channel's socket) move into the restore directory; an agent socket path that
  would not fit there (107 bytes) is dropped instead, and libvirt picks one; host ttys,
  pipes and listening TCP ports become ``null``;
* **graphics and vsock**: fixed ports and CIDs become automatic;
* **UEFI variables**: the backup holds no NVRAM, so the nvram path is dropped and libvirt
  makes a fresh one from the template (the original's boot entries are not restored);
* static security labels are dropped (they would give both domains the same label).

What is kept but shared, or lost, is said in ``warnings`` (filesystem passthrough,
shared memory files, TPM state, ...). Nothing here talks to libvirt except
:func:`define` and :func:`domain_exists`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from virt_qga.connection import import_libvirt
from virt_qga.errors import BadInputError, HostError
from virt_qga.libvirt_errors import map_libvirt_error

__all__ = ["RESTORE_NS", "Clone", "clone_xml", "define", "domain_exists", "qemu_owner_of"]

#: Namespace of the metadata element that records where a restored domain came from.
RESTORE_NS = "https://virt-qga.example/restore"
#: Longest UNIX socket path (sun_path holds 108 bytes with the NUL).
SOCKET_PATH_MAX = 107
CHARDEVS = ("serial", "parallel", "console", "channel")


@dataclass
class Clone:
    """The rewritten XML and what the rewrite did."""

    xml: str
    changes: list[str] = field(default_factory=list)   # what was changed, in words
    warnings: list[str] = field(default_factory=list)  # what is still shared, or lost
    #: Files the new domain's character devices write (pre-created by the caller, so
    #: that they can be given to the user QEMU runs as).
    files: list[Path] = field(default_factory=list)
    #: UNIX sockets the new domain listens on or connects to (in the restore directory).
    sockets: list[Path] = field(default_factory=list)


def clone_xml(saved: str, *, name: str, disks: dict[str, Path], files_dir: Path,
              origin: dict[str, str] | None = None) -> Clone:
    """``saved`` (a domain XML) as a new domain ``name`` whose disks ``disks`` (target ->
    restored image) replace the saved ones; see the module docstring for every rule.
    ``origin`` goes into ``<metadata>`` (where the restore came from)."""
    try:
        root = ET.fromstring(saved)
    except ET.ParseError as exc:
        raise BadInputError(f"the saved domain XML cannot be parsed: {exc}", field="path") from exc
    if root.tag != "domain":
        raise BadInputError(f"the saved XML is a <{root.tag}>, not a <domain>", field="path")
    out = Clone(xml="")
    _identity(root, name, out, origin or {})
    devices = root.find("devices")
    if devices is None:
        devices = ET.SubElement(root, "devices")
    _disks(devices, disks, out)
    _interfaces(devices, out)
    _hostdevs(devices, out)
    _chardevs(devices, files_dir, out)
    _graphics(devices, out)
    _vsock(devices, out)
    _nvram(root, out)
    _seclabels(root, out)
    _shared(devices, out)
    out.xml = ET.tostring(root, encoding="unicode")
    return out


def _identity(root: ET.Element, name: str, out: Clone, origin: dict[str, str]) -> None:
    root.attrib.pop("id", None)
    name_el = root.find("name")
    if name_el is None:
        name_el = ET.SubElement(root, "name")
    old = name_el.text
    name_el.text = name
    out.changes.append(f"name {old} -> {name}")
    for uuid in root.findall("uuid"):
        root.remove(uuid)
    out.changes.append("a new UUID (libvirt assigns it)")
    for system in root.findall("./sysinfo/system"):
        for entry in system.findall("entry"):
            if entry.get("name") == "uuid":
                system.remove(entry)
                out.changes.append("the SMBIOS system UUID dropped (it must match the domain's)")
    genid = root.find("genid")
    if genid is not None and genid.text:
        genid.text = None
        out.changes.append("a new VM generation ID")
    if origin:
        meta = root.find("metadata")
        if meta is None:
            meta = ET.Element("metadata")
            root.insert(list(root).index(name_el) + 1, meta)
        ET.SubElement(meta, f"{{{RESTORE_NS}}}restored", dict(sorted(origin.items())))


def _disks(devices: ET.Element, disks: dict[str, Path], out: Clone) -> None:
    seen: set[str] = set()
    for disk in devices.findall("disk"):
        target_el = disk.find("target")
        target = target_el.get("dev") if target_el is not None else None
        if target is not None and target in disks:
            _restored_disk(disk, disks[target], out)
            seen.add(target)
            continue
        readonly = disk.find("readonly") is not None or disk.get("device") in ("cdrom", "floppy")
        if readonly:
            continue
        devices.remove(disk)
        out.warnings.append(f"disk {target or '?'} was not in the backup: left out of the new domain "
                            "(it would write to the original's image)")
    for target in sorted(set(disks) - seen):
        out.warnings.append(f"disk {target} is in the backup but not in the saved domain XML (attached "
                            f"live only?): restored to {disks[target]}, not attached to the new domain")


def _restored_disk(disk: ET.Element, image: Path, out: Clone) -> None:
    target = disk.find("target")
    dev = target.get("dev") if target is not None else "?"
    disk.set("type", "file")
    for tag in ("source", "backingStore", "encryption", "mirror"):
        for el in disk.findall(tag):
            if tag == "encryption":
                out.warnings.append(f"disk {dev}: the restored image is not encrypted (the "
                                    "original was)")
            disk.remove(el)
    driver = disk.find("driver")
    if driver is None:
        driver = ET.Element("driver", name="qemu")
        disk.insert(0, driver)
    driver.set("type", "qcow2")
    driver.attrib.pop("data_file", None)
    source = ET.Element("source", file=str(image))
    disk.insert(list(disk).index(driver) + 1, source)
    out.changes.append(f"disk {dev} -> {image}")


def _interfaces(devices: ET.Element, out: Clone) -> None:
    for i, nic in enumerate(devices.findall("interface")):
        kind = nic.get("type", "")
        if kind == "hostdev":
            devices.remove(nic)
            out.warnings.append(f"interface {i} (a passed-through host device) left out: one "
                                "domain at a time can own it")
            continue
        for mac in nic.findall("mac"):
            nic.remove(mac)
            out.changes.append(f"interface {i}: a new MAC address (was {mac.get('address')})")
        for tgt in nic.findall("target"):
            if tgt.get("managed") == "no":
                out.warnings.append(f"interface {i} used the existing tap {tgt.get('dev')}; the new "
                                    "domain gets its own")
            nic.remove(tgt)
        if kind == "vhostuser":
            out.warnings.append(f"interface {i} is vhost-user: its socket is shared with the original")


def _hostdevs(devices: ET.Element, out: Clone) -> None:
    for hd in devices.findall("hostdev"):
        devices.remove(hd)
        out.warnings.append(f"a {hd.get('type', 'host')} host device left out: one domain at a time "
                            "can own it")


def _chardevs(devices: ET.Element, files_dir: Path, out: Clone) -> None:
    moved: dict[str, Path] = {}
    used: set[str] = set()

    def new_path(old: str, what: str, socket: bool = False) -> str:
        if old in moved:
            return str(moved[old])
        base = Path(old).name or what
        candidate, n = base, 1
        while candidate in used:
            n += 1
            candidate = f"{n}-{base}"
        used.add(candidate)
        path = files_dir / candidate
        if socket and len(str(path).encode()) > SOCKET_PATH_MAX:
            raise BadInputError(f"{what}: the socket path {path} is longer than {SOCKET_PATH_MAX} "
                                "bytes; restore into a shorter directory", field="to")
        moved[old] = path
        (out.sockets if socket else out.files).append(path)
        out.changes.append(f"{what}: {old} -> {path}")
        return str(path)

    counters: dict[str, int] = {}
    for dev in [d for d in devices if d.tag in CHARDEVS]:
        idx = counters.get(dev.tag, 0)
        counters[dev.tag] = idx + 1
        what = f"{dev.tag} {idx}"
        kind = dev.get("type", "pty")
        target = dev.find("target")
        source = dev.find("source")
        virtio_channel = dev.tag == "channel" and target is not None and target.get("type") == "virtio"
        if kind == "unix" and source is not None and source.get("path"):
            old = str(source.get("path"))
            fits = len(str(files_dir / (Path(old).name or what)).encode()) <= SOCKET_PATH_MAX
            if virtio_channel and source.get("mode") == "bind" and not fits:
                del source.attrib["path"]
                out.changes.append(f"{what} ({target.get('name') if target is not None else ''}): "
                                   f"socket {old} dropped, libvirt picks a new one")
            else:
                source.set("path", new_path(old, what, socket=True))
        elif kind == "file" and source is not None and source.get("path"):
            source.set("path", new_path(str(source.get("path")), what))
        elif kind in ("dev", "pipe") or (kind in ("tcp", "udp") and source is not None
                                         and source.get("mode") == "bind"):
            was = (source.get("path") or source.get("service")) if source is not None else None
            _to_null(dev)
            out.warnings.append(f"{what} was a {kind} device ({was}): it is a null device in the "
                                "new domain (the original keeps it)")
        for log in dev.findall("log"):
            if log.get("file"):
                log.set("file", new_path(str(log.get("file")), f"{what} log"))


def _to_null(dev: ET.Element) -> None:
    dev.set("type", "null")
    for el in dev.findall("source") + dev.findall("protocol"):
        dev.remove(el)


def _graphics(devices: ET.Element, out: Clone) -> None:
    for g in devices.findall("graphics"):
        kind = g.get("type", "?")
        fixed = [a for a in ("port", "tlsPort") if g.get(a) not in (None, "-1")]
        if g.get("autoport") != "yes" and fixed:
            for a in ("port", "tlsPort"):
                g.attrib.pop(a, None)
            g.set("autoport", "yes")
            out.changes.append(f"{kind} graphics: port chosen automatically (was fixed)")
        if g.get("websocket") not in (None, "-1"):
            g.set("websocket", "-1")
            out.changes.append(f"{kind} graphics: websocket port chosen automatically")
        for listen in g.findall("listen"):
            if listen.get("type") == "socket" and listen.get("socket"):
                listen.attrib.pop("socket")
                out.changes.append(f"{kind} graphics: libvirt picks a new listen socket")
        if g.get("socket"):
            g.attrib.pop("socket")


def _vsock(devices: ET.Element, out: Clone) -> None:
    for v in devices.findall("vsock"):
        for cid in v.findall("cid"):
            if cid.get("auto") != "yes":
                old = cid.get("address")
                cid.attrib.pop("address", None)
                cid.set("auto", "yes")
                out.changes.append(f"vsock: CID chosen automatically (was {old})")


def _nvram(root: ET.Element, out: Clone) -> None:
    nvram = root.find("./os/nvram")
    if nvram is None:
        return
    old = nvram.text or next((s.get("file") for s in nvram.findall("source")), None)
    if not old:
        return
    nvram.text = None
    for s in nvram.findall("source"):
        nvram.remove(s)
    nvram.attrib.pop("type", None)
    out.warnings.append(f"UEFI variables ({old}) are not in the backup: libvirt makes fresh ones from "
                        "the template at the first start (the original's boot entries are not restored)")


def _seclabels(root: ET.Element, out: Clone) -> None:
    for sl in root.findall("seclabel"):
        if sl.get("type") == "static":
            root.remove(sl)
            out.changes.append(f"the static {sl.get('model', '')} security label dropped (both domains "
                               "would share it)")
            continue
        for tag in ("label", "imagelabel"):
            for el in sl.findall(tag):
                sl.remove(el)


def _shared(devices: ET.Element, out: Clone) -> None:
    for fs in devices.findall("filesystem"):
        src = fs.find("source")
        where = src.get("dir") or src.get("file") or src.get("name") if src is not None else None
        out.warnings.append(f"filesystem {where}: passed through to the new domain too (shared with "
                            "the original)")
    for mem in devices.findall("memory"):
        path = mem.findtext("./source/path")
        if path:
            out.warnings.append(f"{mem.get('model', 'memory')} device backed by {path}: shared with "
                                "the original")
    for sh in devices.findall("shmem"):
        out.warnings.append(f"shared memory {sh.get('name')}: shared with the original")
    for tpm in devices.findall("tpm"):
        backend = tpm.find("backend")
        if backend is not None and backend.get("type") == "emulator":
            out.warnings.append("the TPM's state is not in the backup: the new domain starts with an "
                                "empty TPM")


# -- libvirt --------------------------------------------------------------------------------


def domain_exists(conn: Any, name: str) -> bool:
    lv = import_libvirt()
    try:
        conn.lookupByName(name)
    except lv.libvirtError as exc:
        if exc.get_error_code() == lv.VIR_ERR_NO_DOMAIN:
            return False
        raise map_libvirt_error(exc, domain=name) from exc
    return True


def define(conn: Any, xml: str) -> tuple[str, str]:
    """Define (not start) a persistent domain, validated against libvirt's schema;
    returns its name and UUID."""
    lv = import_libvirt()
    flags = getattr(lv, "VIR_DOMAIN_DEFINE_VALIDATE", 0)
    try:
        dom = conn.defineXMLFlags(xml, flags)
    except lv.libvirtError as exc:
        raise HostError(f"libvirt refused the restored domain: {map_libvirt_error(exc).message}") from exc
    return str(dom.name()), str(dom.UUIDString())


def qemu_owner_of(conn: Any) -> tuple[int, int] | None:
    """(uid, gid) QEMU runs as, when the host's DAC security model says so (system-mode
    libvirt: ``<baselabel>+64055:+64055</baselabel>``); None otherwise (session mode)."""
    import grp
    import pwd

    lv = import_libvirt()
    try:
        caps = ET.fromstring(conn.getCapabilities())
    except (lv.libvirtError, ET.ParseError):
        return None
    for model in caps.findall("./host/secmodel"):
        if model.findtext("model") != "dac":
            continue
        for label in model.findall("baselabel"):
            text = (label.text or "").strip()
            if ":" not in text:
                continue
            user, group = text.split(":", 1)
            try:
                uid = int(user[1:]) if user.startswith("+") else pwd.getpwnam(user).pw_uid
                gid = int(group[1:]) if group.startswith("+") else grp.getgrnam(group).gr_gid
            except (KeyError, ValueError):
                continue
            return uid, gid
    return None
