"""What a backup store holds, backup by backup, from the manifests alone (no image is
read): time, domain, level, chain, sizes, consistency, method, and when
``backup-verify`` last passed for it (its ``verify.json``, :func:`.verify.read_record`).

"Verified" means: at that time every stored image of the backup and of the backups
before it in its chain matched its manifest (size, SHA-256), passed ``qemu-img check``
and linked to its parent. It says nothing about what happened to the files since.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from virt_qga.errors import HostError
from virt_qga.workflows.backup.store import MANIFEST, Manifest, Store, StoredBackup

__all__ = ["BackupListing", "ListedBackup", "list_backups"]


@dataclass
class ListedBackup:
    domain: str
    chain: str
    name: str
    level: str
    parent: str | None
    started: str
    finished: str
    method: str
    consistency: str
    bytes_written: int     # data the backup job wrote (an incremental's delta)
    file_size: int         # bytes of the stored image files
    disks: list[str]
    path: str
    #: False for a backup outside its chain's order (``backup-verify`` says why).
    in_chain: bool = True
    #: The last verification (:func:`.verify.read_record`), or None.
    verified: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BackupListing:
    root: str
    backups: list[ListedBackup] = field(default_factory=list)
    #: Partial directories (a backup being written, or left by a run that died).
    partials: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "backups": [b.to_dict() for b in self.backups],
                "partials": self.partials}


def list_backups(path: Path | str, domain: str | None = None) -> BackupListing:
    """Every complete backup under ``path`` (a store, a domain's directory or a chain),
    by domain, then chain, then chain order; ``domain`` keeps only that domain's."""
    from virt_qga.workflows.backup.verify import locate

    scope, p = locate(Path(path))
    chain_name: str | None = None
    if scope == "store":
        root = p
    elif scope == "domain":
        root, domain = p.parent, _only(domain, p.name)
    elif scope == "chain":
        root, domain, chain_name = p.parent.parent, _only(domain, p.parent.name), p.name
    else:
        root, domain, chain_name = p.parent.parent.parent, _only(domain, p.parent.parent.name), p.parent.name
    store = Store(root)
    out = BackupListing(root=str(root))
    domains = [domain] if domain is not None else store.domains()
    for d in domains:
        if domain is not None and not store.domain_dir(d).is_dir():
            continue
        out.partials += [str(x) for x in store.stale_partials(d)
                         if chain_name is None or x.parent.name == chain_name]
        for chain in store.chains(d):
            if chain_name is not None and chain.name != chain_name:
                continue
            out.backups += [_entry(b, True) for b in chain.backups]
            for name in chain.broken:
                try:
                    out.backups.append(_entry(StoredBackup(chain.path / name,
                                                           Manifest.read(chain.path / name)), False))
                except HostError:
                    continue
    return out


def _only(asked: str | None, found: str) -> str:
    if asked is not None and asked != found:
        from virt_qga.errors import BadInputError

        raise BadInputError(f"the path holds backups of {found}, not {asked}", field="domain")
    return found


def _entry(b: StoredBackup, in_chain: bool) -> ListedBackup:
    from virt_qga.workflows.backup.verify import read_record

    m = b.manifest
    return ListedBackup(
        domain=m.domain, chain=m.chain, name=m.name, level=m.level, parent=m.parent,
        started=m.started, finished=m.finished, method=m.method, consistency=m.consistency,
        bytes_written=sum(d.bytes_written for d in m.disks),
        file_size=sum(d.file_size for d in m.disks), disks=[d.target for d in m.disks],
        path=str(b.path), in_chain=in_chain,
        verified=read_record(b.path) if (b.path / MANIFEST).is_file() else None)
