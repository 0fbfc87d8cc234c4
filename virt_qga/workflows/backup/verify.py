"""Verify what a backup store holds: every file against its manifest, every image with
``qemu-img check``, every chain link; one :class:`Problem` per thing found wrong.

PATH may be a store, a domain's directory, a chain or one backup (:func:`locate`); a
backup is verified together with the backups before it in its chain, because it cannot
be restored without them. The rules:

* **files**: each disk image the manifest lists exists, has the recorded size and
  SHA-256 (read in bounded chunks), is a qcow2 of the recorded virtual size, and passes
  ``qemu-img check`` (the image alone, without its backing chain);
* **links**: an incremental's image has as backing file exactly what its manifest says,
  which is the same disk's image in its parent (``../PARENT/vda.qcow2``), and that file
  exists; a full backup's image has no backing file;
* **chain order**: the chain starts with a full backup named like the chain directory;
  each incremental's parent is in the chain and older than it; no two backups claim the
  same parent; every directory with a backup's name holds a readable manifest of this
  chain and domain. A backup outside that order is reported with the reason;
* **partial directories** (``.NAME.partial``) are reported: a backup being written right
  now, or one a dead run left (the next ``backup`` of the domain into the store, or
  ``virt-qga recover`` when that run's journal names it, removes it).

A backup *passes* when neither it nor any backup before it in its chain has a problem.
For each backup checked, the result is recorded in ``verify.json`` in its directory
(written atomically; see :func:`read_record`): ``backup-list`` shows it as "verified".
Memory stays bounded whatever the image sizes (checksums stream, qemu-img does the rest).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from virt_qga.errors import BadInputError, HostError
from virt_qga.exitcodes import ExitCode
from virt_qga.workflows.backup.store import (
    LEVELS,
    MANIFEST,
    PARTIAL_SUFFIX,
    Chain,
    DiskRecord,
    Manifest,
    Store,
    StoredBackup,
    is_backup_name,
    sha256_file,
    write_atomic,
)

__all__ = [
    "RECORD",
    "SCOPES",
    "Problem",
    "VerifyReport",
    "chain_problems",
    "check_points",
    "disk_problems",
    "locate",
    "read_record",
    "verify_backups",
]

#: The file in a backup directory that records the last verification of that backup.
RECORD = "verify.json"
RECORD_FORMAT = "virt-qga-verify/1"
#: What a PATH given to verify (or list) names.
SCOPES = ("store", "domain", "chain", "backup")
#: Deadline of one ``qemu-img check`` / ``info`` (the metadata of a large image takes a while).
CHECK_TIMEOUT = 600.0
#: Problem messages kept in a backup's verify record.
RECORD_PROBLEMS = 20


@dataclass
class Problem:
    """One thing found wrong. ``kind``: manifest, chain, partial, missing-file, size,
    checksum, image, link."""

    path: str
    kind: str
    message: str
    domain: str | None = None
    chain: str | None = None
    backup: str | None = None

    def line(self) -> str:
        return f"{self.path}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VerifyReport:
    """What :func:`verify_backups` checked and found; ``to_dict`` is the CLI's JSON."""

    path: str
    scope: str
    problems: list[Problem] = field(default_factory=list)
    chains: int = 0
    backups: int = 0
    files: int = 0
    bytes_checked: int = 0
    #: Directories of the backups that passed (with every backup before them).
    passed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def exit_code(self) -> int:
        return int(ExitCode.OK if self.ok else ExitCode.FAILED)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "scope": self.scope, "ok": self.ok,
                "problems": [p.to_dict() for p in self.problems],
                "checked": {"chains": self.chains, "backups": self.backups, "files": self.files,
                            "bytes": self.bytes_checked},
                "passed": self.passed, "warnings": self.warnings, "exit_code": self.exit_code}


# -- what PATH names ----------------------------------------------------------------------


def locate(path: Path) -> tuple[str, Path]:
    """``(scope, absolute path)``: whether PATH is a store, a domain directory, a chain
    or a backup, told from the layout (``DIR/DOMAIN/CHAIN/BACKUP``)."""
    p = path.expanduser().absolute()
    if not p.exists():
        raise BadInputError(f"{p}: no such directory", field="path")
    if not p.is_dir():
        raise BadInputError(f"{p} is not a directory (give a store, a domain's directory, a chain "
                            "or a backup)", field="path")
    if (p / MANIFEST).is_file() or (is_backup_name(p.name) and is_backup_name(p.parent.name)):
        return "backup", p
    if is_backup_name(p.name):
        return "chain", p
    if any(c.is_dir() and is_backup_name(c.name) for c in _entries(p)):
        return "domain", p
    return "store", p


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as exc:
        raise HostError(f"{folder}: cannot list: {exc.strerror}") from exc


# -- the pure rules -------------------------------------------------------------------------


def _time_key(name: str) -> tuple[str, int]:
    """Sort key of a backup name: a name with milliseconds (``...T020000123Z``) was taken
    after the plain one of that second (``...T020000Z``), which plain string order gets wrong."""
    return name[:15], -1 if len(name) == 16 else int(name[15:18])


def chain_problems(chain: Chain, found: dict[str, StoredBackup],
                   unreadable: dict[str, str]) -> list[Problem]:
    """The chain-order and manifest rules (module docstring) for one chain: ``found``
    holds every readable backup of the chain directory by name (in order or not),
    ``unreadable`` the directories with a backup's name whose manifest cannot be read."""
    out: list[Problem] = []

    def add(name: str | None, kind: str, message: str) -> None:
        where = chain.path / name if name else chain.path
        out.append(Problem(str(where), kind, message, chain.domain, chain.name, name))

    for name, why in sorted(unreadable.items()):
        add(name, "manifest", why)
    if not found and not unreadable:
        add(None, "chain", "the chain directory holds no backup")
    elif not chain.backups:
        add(None, "chain", f"no full backup named {chain.name}: nothing in this chain can be restored")
    for name, b in sorted(found.items()):
        m = b.manifest
        if b.path.name != m.name:
            add(name, "manifest", f"the manifest names backup {m.name}, not {b.path.name}")
        if m.chain != chain.name:
            add(name, "manifest", f"the manifest puts it in chain {m.chain}, not {chain.name}")
        if m.domain != chain.domain:
            add(name, "manifest", f"the manifest is of domain {m.domain}, not {chain.domain}")
        if m.level not in LEVELS:
            add(name, "manifest", f"unknown level {m.level!r}")
    order = [b.name for b in chain.backups]
    for prev, cur in itertools.pairwise(order):
        if _time_key(cur) <= _time_key(prev):
            add(cur, "chain", f"is not newer than its parent {prev}")
    for name in chain.broken:
        stray = found.get(name)
        if stray is not None:
            add(name, "chain", "outside the chain order: " + _why_outside(stray, chain, found, unreadable))
    return out


def _why_outside(b: StoredBackup, chain: Chain, found: dict[str, StoredBackup],
                 unreadable: dict[str, str]) -> str:
    m = b.manifest
    if m.level == "full":
        return (f"a full backup inside chain {chain.name} (a full backup starts its own chain "
                "directory)")
    parent = m.parent
    if not parent:
        return "an incremental without a parent"
    if parent in unreadable:
        return f"its parent {parent} is not a complete backup"
    if parent not in found:
        return (f"its parent {parent} is missing (a missing link: this backup and those after it "
                "cannot be restored)")
    if parent in chain.broken:
        return f"its parent {parent} is outside the chain order too"
    order = [x.name for x in chain.backups]
    if parent in order and order.index(parent) + 1 < len(order):
        return f"its parent {parent} is continued in the chain by {order[order.index(parent) + 1]}"
    return "it cannot be reached from the chain's full backup"


def disk_problems(backup: StoredBackup, parent: StoredBackup | None, rec: DiskRecord,
                  info: dict[str, Any], exists: Callable[[Path], bool] = Path.exists,
                  ) -> list[tuple[str, str]]:
    """``(kind, message)`` for one disk image, from ``qemu-img info`` of it (``info``)
    and the manifests of its backup and of that backup's parent."""
    out: list[tuple[str, str]] = []
    what = f"disk {rec.target} ({rec.file})"
    fmt = info.get("format")
    if fmt != "qcow2":
        out.append(("image", f"{what} is {fmt}, not qcow2"))
    size = info.get("virtual-size")
    if size != rec.virtual_size:
        out.append(("image", f"{what} has a virtual size of {size}, the manifest says {rec.virtual_size}"))
    actual = info.get("backing-filename")
    if actual != rec.backing:
        out.append(("link", f"{what} has backing file {actual or 'none'}, the manifest says "
                            f"{rec.backing or 'none'}"))
    if rec.backing is None:
        return out
    if backup.manifest.level == "full" or not backup.manifest.parent:
        out.append(("link", f"{what} has a backing file, but backup {backup.name} has no parent"))
        return out
    if parent is not None:  # (a missing parent: the chain rules and the file test say so)
        mine = next((d for d in parent.manifest.disks if d.target == rec.target), None)
        if mine is None:
            out.append(("link", f"{what} is backed by the parent {parent.name}, which has no disk "
                                f"{rec.target}"))
        elif rec.backing != f"../{parent.name}/{mine.file}":
            out.append(("link", f"{what} has backing file {rec.backing}, not its parent's image "
                                f"../{parent.name}/{mine.file}"))
    if not exists(backup.path / rec.backing):
        out.append(("link", f"{what}: missing link: its backing file {rec.backing} does not exist"))
    return out


def _plain_name(name: str) -> bool:
    return bool(name) and "/" not in name and name not in (".", "..") and not name.startswith(".")


# -- checking files -------------------------------------------------------------------------


def check_points(points: list[StoredBackup], *, timeout: float = CHECK_TIMEOUT,
                 report: VerifyReport | None = None) -> list[Problem]:
    """The file and link rules for backups that follow each other in one chain (each
    the parent of the next, as :meth:`Chain.upto` gives them): what a restore of the
    last one reads."""
    rep = report or VerifyReport(path="", scope="backup")
    out: list[Problem] = []
    parent: StoredBackup | None = None
    for b in points:
        out += _check_backup(b, parent, timeout, rep)
        parent = b
    return out


def _check_backup(b: StoredBackup, parent: StoredBackup | None, timeout: float,
                  report: VerifyReport) -> list[Problem]:
    from virt_qga.workflows.backup import images

    m = b.manifest
    out: list[Problem] = []
    report.backups += 1

    def add(kind: str, message: str, path: Path | None = None) -> None:
        out.append(Problem(str(path or b.path), kind, message, m.domain, m.chain, b.name))

    if not m.disks:
        add("manifest", "the manifest lists no disk")
    for rec in m.disks:
        if not _plain_name(rec.file):
            add("manifest", f"disk {rec.target}: {rec.file!r} is not a file of the backup directory")
            continue
        path = b.path / rec.file
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            add("missing-file", f"disk {rec.target}: {rec.file} is missing", path)
            continue
        except OSError as exc:
            add("missing-file", f"disk {rec.target}: {rec.file}: {exc.strerror}", path)
            continue
        report.files += 1
        report.bytes_checked += size
        if rec.file_size and size != rec.file_size:
            add("size", f"{size} bytes, the manifest says {rec.file_size}", path)
        else:
            try:
                digest = sha256_file(path)
            except OSError as exc:
                add("checksum", f"cannot read: {exc.strerror}", path)
                continue
            if digest != rec.sha256:
                add("checksum", f"SHA-256 {digest} does not match the manifest's {rec.sha256 or '(none)'}",
                    path)
        try:
            info = images.info(path)
        except HostError as exc:
            add("image", str(exc), path)
            continue
        found = disk_problems(b, parent, rec, info)
        for kind, message in found:
            add(kind, message, path)
        try:
            images.check(path, timeout, alone=True)
        except HostError as exc:
            add("image", str(exc), path)
    return out


# -- the whole walk -------------------------------------------------------------------------


def verify_backups(path: Path, *, timeout: float = CHECK_TIMEOUT, record: bool = True) -> VerifyReport:
    """Verify everything under ``path`` (a store, domain, chain or backup; see the
    module docstring) and, with ``record``, write each checked backup's ``verify.json``."""
    scope, p = locate(path)
    report = VerifyReport(path=str(p), scope=scope)
    if scope == "store":
        for d in _entries(p):
            if d.is_dir() and not d.name.startswith("."):
                for c in _entries(d):
                    if c.is_dir() and is_backup_name(c.name):
                        _verify_chain(report, c, None, timeout, record)
    elif scope == "domain":
        for c in _entries(p):
            if c.is_dir() and is_backup_name(c.name):
                _verify_chain(report, c, None, timeout, record)
    elif scope == "chain":
        _verify_chain(report, p, None, timeout, record)
    else:
        _verify_chain(report, p.parent, p.name, timeout, record)
    return report


def _verify_chain(report: VerifyReport, cdir: Path, upto: str | None, timeout: float,
                  record: bool) -> None:
    domain = cdir.parent.name
    report.chains += 1
    found: dict[str, StoredBackup] = {}
    unreadable: dict[str, str] = {}
    for d in _entries(cdir):
        if not d.is_dir():
            continue
        if is_backup_name(d.name):
            if not (d / MANIFEST).is_file():
                unreadable[d.name] = f"no {MANIFEST}: not a complete backup"
                continue
            try:
                found[d.name] = StoredBackup(d, Manifest.read(d))
            except HostError as exc:
                unreadable[d.name] = str(exc)
        elif d.name.startswith(".") and d.name.endswith(PARTIAL_SUFFIX) and upto is None:
            report.problems.append(Problem(
                str(d), "partial", "a partial backup: one being written now, or one a run that died "
                f"left (the next backup of {domain} into this store removes it)",
                domain, cdir.name, None))
    chain = next((c for c in Store(cdir.parent.parent).chains(domain) if c.path == cdir), None)
    if chain is None:
        chain = Chain(domain=domain, name=cdir.name, path=cdir, backups=[], broken=sorted(found))
    problems = chain_problems(chain, found, unreadable)
    order = list(chain.backups)
    extra = [found[n] for n in chain.broken if n in found]
    if upto is not None:
        names = [b.name for b in order]
        order = order[: names.index(upto) + 1] if upto in names else []
        extra = [b for b in extra if b.name == upto]
        keep = {b.name for b in order} | {upto}
        problems = [q for q in problems if q.backup in keep or (q.backup is None and q.kind == "chain")]
    report.problems += problems
    parent: StoredBackup | None = None
    for b in order:
        report.problems += _check_backup(b, parent, timeout, report)
        parent = b
    for b in extra:
        report.problems += _check_backup(b, found.get(b.manifest.parent or ""), timeout, report)
    _passed(report, chain, order, extra, record)


def _passed(report: VerifyReport, chain: Chain, order: list[StoredBackup], extra: list[StoredBackup],
            record: bool) -> None:
    """Which checked backups passed (with all before them); their records."""
    mine = [p for p in report.problems if p.chain == chain.name and p.domain == chain.domain]
    inherited: list[Problem] = []
    for b in order:
        inherited += [p for p in mine if p.backup == b.name]
        if not inherited:
            report.passed.append(str(b.path))
        if record:
            _write_record(report, b, inherited)
    for b in extra:
        if record:
            _write_record(report, b, [p for p in mine if p.backup == b.name] or [
                Problem(str(b.path), "chain", "outside the chain order")])


# -- the record -----------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _manifest_digest(folder: Path) -> str:
    return hashlib.sha256((folder / MANIFEST).read_bytes()).hexdigest()


def _write_record(report: VerifyReport, b: StoredBackup, problems: list[Problem]) -> None:
    previous = read_record(b.path)
    now = _now()
    ok = not problems
    data = {
        "format": RECORD_FORMAT, "ok": ok, "at": now,
        "passed_at": now if ok else (previous or {}).get("passed_at"),
        "manifest_sha256": _manifest_digest(b.path),
        "problems": [p.message for p in problems[:RECORD_PROBLEMS]],
        "problem_count": len(problems),
    }
    try:
        write_atomic(b.path / RECORD, json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        report.warnings.append(f"{b.path}: cannot record the result in {RECORD}: {exc.strerror}")


def read_record(folder: Path) -> dict[str, Any] | None:
    """The last verification of the backup in ``folder``: ``ok``, ``at`` (when it ran),
    ``passed_at`` (when it last passed), ``problem_count``, and ``stale`` (the manifest
    changed since: the record is about another backup). None when never verified or
    the record is unreadable."""
    path = folder / RECORD
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
        return None
    try:
        stale = data.get("manifest_sha256") != _manifest_digest(folder)
    except OSError:
        stale = True
    return {"ok": bool(data.get("ok")), "at": data.get("at"), "passed_at": data.get("passed_at"),
            "problem_count": int(data.get("problem_count") or 0), "stale": stale}
