"""The backup store: plain files a person can read, and the rules that keep them honest.

Layout under the destination directory (``--to DIR``)::

    DIR/DOMAIN/CHAIN/BACKUP/        one backup: a directory under its final name is complete
        TARGET.qcow2                one image per disk (an incremental's backing file is the
                                    same disk's image in the previous backup: ../PARENT/...)
        domain.xml                  the domain's XML when the backup was taken
        checkpoint.xml              the libvirt checkpoint it created (backup-api method)
        manifest.json               what is here (:class:`Manifest`)
    DIR/DOMAIN/CHAIN/.BACKUP.partial/   a backup being written (never a final name)

``CHAIN`` is the name of the chain's full backup; ``BACKUP`` names are UTC times
(``20261201T020000Z``, sortable). A chain is its full backup followed by incrementals,
each the child of the one before (``parent`` in the manifest). Nothing in the store
needs virt-qga to read: ``qemu-img convert DIR/web1/C/B/vda.qcow2 out.raw`` restores
point B, following the backing files.

The manifest carries ``format`` (:data:`FORMAT`); a reader refuses a format it does not
know instead of guessing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from virt_qga.errors import BadInputError, HostError

__all__ = [
    "FORMAT",
    "LEVELS",
    "MANIFEST",
    "PARTIAL_SUFFIX",
    "Chain",
    "DiskRecord",
    "Manifest",
    "Store",
    "StoredBackup",
    "backup_name",
    "iso_time",
    "parse_iso_time",
    "sha256_file",
]

#: The manifest format this code writes and reads.
FORMAT = "virt-qga-backup/1"
MANIFEST = "manifest.json"
DOMAIN_XML = "domain.xml"
CHECKPOINT_XML = "checkpoint.xml"
PARTIAL_SUFFIX = ".partial"
LEVELS = ("full", "inc")
#: Backup names: UTC time to the second (two backups of one second: the next one free).
_NAME = re.compile(r"\d{8}T\d{6}Z")
#: Bytes read at a time when checksumming (bounded memory whatever the image size).
HASH_CHUNK = 1024 * 1024


def backup_name(now: datetime | None = None) -> str:
    """The name of a backup taken at ``now`` (UTC): ``20261201T020000Z``."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def iso_time(t: datetime) -> str:
    """A manifest's time stamp: ISO 8601 in UTC, to the microsecond."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso_time(text: str) -> datetime:
    """The inverse of :func:`iso_time` (ValueError for anything else)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def is_backup_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def name_time(name: str) -> datetime:
    """The UTC time a backup name encodes."""
    if not is_backup_name(name):
        raise BadInputError(f"{name!r} is not a backup name (like 20261201T020000Z)", field="at")
    return datetime.strptime(name[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in bounded chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for buf in iter(lambda: fh.read(HASH_CHUNK), b""):
            h.update(buf)
    return h.hexdigest()


@dataclass
class DiskRecord:
    """One disk of a backup."""

    target: str                    # vda
    source: str | None             # the live image it came from
    file: str                      # vda.qcow2, relative to the backup directory
    virtual_size: int              # bytes, the guest-visible size
    bytes_written: int = 0         # data the job wrote for this disk (an incremental's delta)
    file_size: int = 0             # bytes of the stored file
    sha256: str = ""               # of the stored file
    backing: str | None = None     # ../PARENT/vda.qcow2 for an incremental
    checkpoint: bool = True        # covered by the checkpoint (raw disks are not: full only)


@dataclass
class Manifest:
    """What one backup directory holds (``manifest.json``)."""

    domain: str
    name: str
    chain: str
    level: str                     # full | inc
    method: str                    # backup-api | snapshot
    consistency: str               # application | filesystem | crash | offline
    started: str                   # ISO 8601, UTC
    finished: str = ""
    uuid: str | None = None
    uri: str | None = None
    parent: str | None = None
    checkpoint: str | None = None  # libvirt checkpoint created by this backup
    consistency_reason: str | None = None
    level_reason: str | None = None
    frozen_window_ms: float | None = None
    duration_s: float | None = None
    disks: list[DiskRecord] = field(default_factory=list)
    domain_xml: str | None = DOMAIN_XML
    checkpoint_xml: str | None = None
    format: str = FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "manifest") -> Manifest:
        if data.get("format") != FORMAT:
            raise HostError(f"{where}: unknown backup format {data.get('format')!r} (this virt-qga "
                            f"reads {FORMAT})")
        try:
            disks = [DiskRecord(**d) for d in data.get("disks", [])]
            fields = {k: v for k, v in data.items() if k != "disks" and k in cls.__dataclass_fields__}
            return cls(disks=disks, **fields)
        except TypeError as exc:
            raise HostError(f"{where}: malformed manifest: {exc}") from exc

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise HostError(f"{directory}: no {MANIFEST} (not a backup, or an incomplete one)") from exc
        except (OSError, ValueError) as exc:
            raise HostError(f"{path}: cannot read: {exc}") from exc
        if not isinstance(data, dict):
            raise HostError(f"{path}: not a JSON object")
        return cls.from_dict(data, str(path))

    def write(self, directory: Path) -> None:
        """Write ``manifest.json`` atomically (temp file, fsync, rename)."""
        write_atomic(directory / MANIFEST, json.dumps(self.to_dict(), indent=2) + "\n")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass
class StoredBackup:
    """A complete backup in the store."""

    path: Path
    manifest: Manifest

    @property
    def name(self) -> str:
        return self.manifest.name

    def image(self, target: str) -> Path:
        for d in self.manifest.disks:
            if d.target == target:
                return self.path / d.file
        raise BadInputError(f"backup {self.name} has no disk {target}", field="disks")


@dataclass
class Chain:
    """A full backup and its incrementals, oldest first."""

    domain: str
    name: str
    path: Path
    backups: list[StoredBackup]
    #: Backups whose parent is missing or not the one before (verify reports them).
    broken: list[str] = field(default_factory=list)

    @property
    def last(self) -> StoredBackup | None:
        return self.backups[-1] if self.backups else None

    def upto(self, name: str | None) -> list[StoredBackup]:
        """The backups from the full one to ``name`` (default: the newest)."""
        if name is None:
            return list(self.backups)
        for i, b in enumerate(self.backups):
            if b.name == name:
                return self.backups[: i + 1]
        raise BadInputError(f"chain {self.name} of {self.domain} has no backup {name}", field="at")


class Store:
    """The backups under one destination directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def domain_dir(self, domain: str) -> Path:
        if not domain or "/" in domain or domain in (".", ".."):
            raise BadInputError(f"cannot store backups of a domain named {domain!r}", field="domains")
        return self.root / domain

    def domains(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def chains(self, domain: str) -> list[Chain]:
        """The domain's chains, oldest first. Unreadable backups are skipped here (a
        partial directory never counts); :mod:`.verify` reports them."""
        folder = self.domain_dir(domain)
        if not folder.is_dir():
            return []
        out = []
        for cdir in sorted(p for p in folder.iterdir() if p.is_dir() and is_backup_name(p.name)):
            found = []
            for bdir in sorted(p for p in cdir.iterdir() if p.is_dir() and is_backup_name(p.name)):
                with contextlib.suppress(HostError):
                    found.append(StoredBackup(bdir, Manifest.read(bdir)))
            out.append(_link(domain, cdir, found))
        return out

    def latest_chain(self, domain: str) -> Chain | None:
        chains = [c for c in self.chains(domain) if c.backups]
        return chains[-1] if chains else None

    def find(self, path: Path) -> tuple[Chain, StoredBackup | None]:
        """The chain a path names (a chain directory, or a backup directory in it)."""
        path = path.absolute()
        if (path / MANIFEST).is_file():
            cdir, name = path.parent, path.name
        else:
            cdir, name = path, None
        domain = cdir.parent.name
        chain = next((c for c in Store(cdir.parent.parent).chains(domain) if c.path == cdir), None)
        if chain is None or not chain.backups:
            raise BadInputError(f"{path} is not a backup chain or a backup in one", field="path")
        backup = next((b for b in chain.backups if b.name == name), None) if name else None
        if name and backup is None:
            raise HostError(f"{path} is not in its chain's order (its parent is missing, or "
                            f"another backup continues the chain): `virt-qga backup-verify {cdir}` "
                            "says why")
        return chain, backup

    # -- writing ----------------------------------------------------------------------

    def partial_dir(self, domain: str, chain: str, name: str) -> Path:
        return self.domain_dir(domain) / chain / f".{name}{PARTIAL_SUFFIX}"

    @contextlib.contextmanager
    def writing(self, domain: str, chain: str, name: str) -> Iterator[Path]:
        """A fresh partial directory for backup ``name``; renamed to its final name when
        the block ends normally, removed when it raises (also on Ctrl-C)."""
        partial = self.partial_dir(domain, chain, name)
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.mkdir()
        try:
            yield partial
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            _remove_if_empty(partial.parent)
            raise
        final = partial.parent / name
        _fsync_dir(partial)
        os.rename(partial, final)
        _fsync_dir(final.parent)

    def stale_partials(self, domain: str) -> list[Path]:
        """Partial directories left by runs that died."""
        folder = self.domain_dir(domain)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.glob(f"*/.*{PARTIAL_SUFFIX}") if p.is_dir())


def _link(domain: str, cdir: Path, found: list[StoredBackup]) -> Chain:
    """Order a chain's backups by their parent links; what does not link is broken."""
    chain = Chain(domain=domain, name=cdir.name, path=cdir, backups=[])
    by_parent = {b.manifest.parent: b for b in found}
    head = next((b for b in found if b.manifest.level == "full" and b.name == cdir.name), None)
    seen: set[str] = set()
    cur = head
    while cur is not None and cur.name not in seen:
        chain.backups.append(cur)
        seen.add(cur.name)
        cur = by_parent.get(cur.name)
    chain.broken = [b.name for b in found if b.name not in seen]
    return chain


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()
