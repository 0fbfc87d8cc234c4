"""Restore one point of a backup chain into standalone images, and optionally define a
new domain on them.

1. **Resolve** the point: PATH names a chain (the newest backup) or a backup in one;
   ``at`` names another backup of that chain.
2. **Verify** what the restore reads, before reading it: the images of the point and of
   every backup before it in the chain, against their manifests (size, SHA-256, chain
   links, ``qemu-img check``; :func:`.verify.check_points`).
3. **Flatten** each disk with ``qemu-img convert -O qcow2`` (which follows the backing
   files ``../PARENT/vda.qcow2`` down to the full backup) into ``DIR/.vda.qcow2.partial``,
   check the result (``qemu-img check``, virtual size, no backing file), give it to the
   user QEMU runs as, and only then rename it ``DIR/vda.qcow2``. qemu-img streams the
   data under a deadline; a failure, SIGTERM or Ctrl-C removes what this run made: a
   restored image under its final name is complete. Existing images are never overwritten.
4. **Define** (with ``define``): a new domain from the backup's ``domain.xml`` on the
   restored images, rewritten so it can run beside the original (:mod:`virt_qga.host.clone`:
   new name, UUID and MACs, its own socket and log paths, ...). It is not started. A
   name that exists is refused before anything is made; the original domain and its
   disks are only read (its XML is not even looked up), never changed.

Ownership: QEMU must be able to open the restored images. ``owner`` names the user; by
default, with ``define``, it is the user libvirt's DAC security model names (system
mode: ``libvirt-qemu``, which libvirt relabels to anyway), else the owner of the
original's disk image if it still exists (session mode: the session's user), else the
files stay the caller's and the result says so.
"""

from __future__ import annotations

import os
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from virt_qga.errors import BadInputError, HostError, option_ref
from virt_qga.exitcodes import ExitCode
from virt_qga.options import declare, option, validate
from virt_qga.workflows.backup.store import DOMAIN_XML, DiskRecord, Store, StoredBackup

__all__ = ["RestoreOptions", "RestoreResult", "RestoredDisk", "restore"]

#: Problems quoted in the error when the backups to restore fail verification.
QUOTED_PROBLEMS = 5


@declare
@dataclass
class RestoreOptions:
    """What to restore, where, and whether to define a domain on it."""

    at: str | None = option(None, kind="str", metavar="NAME", help=(
        "The backup of the chain to restore, by name (default: the backup PATH names, else the "
        "chain's newest)."))
    to: str | None = option(None, kind="host_path", metavar="DIR", help=(
        "Where the restored images go: one standalone qcow2 per disk, DIR/TARGET.qcow2 (created if "
        "missing; an existing image is never overwritten). With a new domain to define the default "
        "is a directory named after it beside the original's first disk image."))
    define: str | None = option(None, kind="str", metavar="NEWNAME", help=(
        "Also define (not start) a new domain NEWNAME from the backup's domain XML on the restored "
        "images: new UUID and MAC addresses, its own agent socket and console files, nothing shared "
        "with the original, which is never touched. A name that exists is refused."))
    owner: str | None = option(None, kind="str", metavar="USER[:GROUP]", help=(
        "Give the restored files to this user (the one QEMU runs as). Default with a domain to "
        "define: the user of libvirt's DAC security model, else the owner of the original's disk "
        "image; otherwise the files stay yours."))
    convert_timeout: float = option(3600.0, min=1, unit="seconds", help=(
        "Deadline for flattening each disk (qemu-img convert), seconds."))

    def validate(self) -> None:
        validate(self)
        if self.define is not None:
            name = self.define
            if not name or "/" in name or name.startswith(".") or len(name) > 200 \
                    or not name.isprintable():
                raise BadInputError(f"{option_ref('define')} {name!r} is not a usable domain name",
                                    field="define")
        if not self.to and not self.define:
            raise BadInputError(f"say where to restore: {option_ref('to')} DIR and/or "
                                f"{option_ref('define')} NEWNAME", field="to")


@dataclass
class RestoredDisk:
    target: str
    path: str              # the standalone image written
    source: str            # the stored image it was flattened from
    virtual_size: int
    file_size: int
    seconds: float


@dataclass
class RestoreResult:
    """What a restore made; ``to_dict`` is the CLI's JSON."""

    domain: str                        # the backed-up domain
    chain: str
    point: str                         # the backup restored
    level: str
    backups: list[str]                 # the chain from its full backup to the point
    directory: str
    disks: list[RestoredDisk] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    owner: tuple[int, int] | None = None
    defined: dict[str, Any] | None = None
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    exit_code: int = int(ExitCode.OK)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["owner"] = list(self.owner) if self.owner else None
        out["ok"] = True
        return out


def restore(path: Path | str, options: RestoreOptions | None = None, *,
            uri: str | None = None) -> RestoreResult:
    """Restore the point of the chain ``path`` names (see the module docstring). Raises
    BadInputError (nothing made), HostError (what failed; this run's files removed) or
    Interrupted (likewise)."""
    from virt_qga.workflows.backup.verify import CHECK_TIMEOUT, check_points
    from virt_qga.workflows.signals import Interrupts

    t0 = time.monotonic()
    opts = options or RestoreOptions()
    opts.validate()
    p = Path(path).expanduser().absolute()
    chain, named = Store(p).find(p)
    points = chain.upto(opts.at or (named.name if named else None))
    point = points[-1]
    saved: ET.Element | None = None
    conn = None
    if opts.define:
        saved = _saved_xml(point)
        conn = _connect(uri)
        from virt_qga.host import clone

        if clone.domain_exists(conn, opts.define):
            raise BadInputError(f"a domain named {opts.define} exists on {conn.getURI()}; choose "
                                f"another {option_ref('define')} name", field="define")
    targets = [d.target for d in point.manifest.disks]
    dest = _destination(opts, saved, targets)
    result = RestoreResult(domain=point.manifest.domain, chain=chain.name, point=point.name,
                           level=point.manifest.level, backups=[b.name for b in points],
                           directory=str(dest))
    finals = {d.target: dest / d.file for d in point.manifest.disks}
    taken = [str(f) for f in finals.values() if f.exists()]
    if taken:
        raise BadInputError(f"{', '.join(taken)} exist(s): a restore never overwrites an image; "
                            f"choose another {option_ref('to')}", field="to")
    result.owner = _owner(opts, conn, saved, targets, result)
    planned = None
    if saved is not None and opts.define:
        from virt_qga.host import clone

        planned = clone.clone_xml(ET.tostring(saved, encoding="unicode"), name=opts.define,
                                  disks=finals, files_dir=dest, origin={
                                      "domain": point.manifest.domain, "uuid": point.manifest.uuid or "",
                                      "chain": chain.name, "backup": point.name,
                                      "store": str(chain.path.parent.parent)})
        taken = [str(f) for f in planned.files + planned.sockets if f.exists()]
        if taken:
            raise BadInputError(f"{', '.join(taken)} exist(s); choose another {option_ref('to')}",
                                field="to")
        result.changes = planned.changes
        result.warnings += planned.warnings
        if planned.sockets and dest.is_dir() and result.owner is not None \
                and dest.stat().st_uid != result.owner[0]:
            result.warnings.append(f"the new domain's sockets go into {dest}, which uid "
                                   f"{result.owner[0]} (QEMU) does not own: if it cannot start, "
                                   f"give it that directory or restore into a new one")
    if result.owner is not None:
        _check_reachable(dest, result.owner)
    t = time.monotonic()
    problems = check_points(points, timeout=max(opts.convert_timeout, CHECK_TIMEOUT))
    result.timings_s["verify"] = round(time.monotonic() - t, 3)
    if problems:
        more = len(problems) - QUOTED_PROBLEMS
        raise HostError("the backups to restore fail verification: "
                        + "; ".join(q.line() for q in problems[:QUOTED_PROBLEMS])
                        + (f" (and {more} more)" if more > 0 else "")
                        + f"; `virt-qga backup-verify {chain.path}` lists them")
    n_files = sum(len(b.manifest.disks) for b in points)
    result.verified.append(f"size and SHA-256 of the {n_files} stored image(s) of {len(points)} "
                           "backup(s) match their manifests; chain links and qemu-img check pass")
    made: list[Path] = []
    created = _make_dirs(dest)
    with Interrupts() as signals:
        try:
            if dest in created and result.owner is not None:
                os.chown(dest, *result.owner)  # QEMU may make its sockets here
            t = time.monotonic()
            for rec in point.manifest.disks:
                result.disks.append(_flatten(point, rec, finals[rec.target], opts.convert_timeout,
                                             result.owner, made))
            result.timings_s["convert"] = round(time.monotonic() - t, 3)
            result.verified.append("the restored images pass qemu-img check, have the recorded virtual "
                                   "sizes and no backing file")
            if planned is not None and conn is not None:
                from virt_qga.host import clone

                for f in planned.files:
                    _make_file(f, result.owner, made)
                name, uuid = clone.define(conn, planned.xml)
                result.defined = {"name": name, "uuid": uuid, "uri": str(conn.getURI()),
                                  "started": False}
        except BaseException:
            signals.hold()  # a second Ctrl-C must not cut the cleanup short
            for f in reversed(made):
                f.unlink(missing_ok=True)
            for d in reversed(created):
                try:
                    d.rmdir()
                except OSError:
                    pass
            raise
    result.timings_s["total"] = round(time.monotonic() - t0, 3)
    return result


def _saved_xml(point: StoredBackup) -> ET.Element:
    path = point.path / (point.manifest.domain_xml or DOMAIN_XML)
    try:
        return ET.fromstring(path.read_text())
    except FileNotFoundError as exc:
        raise BadInputError(f"backup {point.name} kept no domain XML ({path}): restore with "
                            f"{option_ref('to')} only and define the domain yourself",
                            field="define") from exc
    except (OSError, ET.ParseError) as exc:
        raise HostError(f"{path}: cannot read the saved domain XML: {exc}") from exc


def _connect(uri: str | None) -> Any:
    from virt_qga.connection import open_connection

    return open_connection(uri)


def _restored_sources(saved: ET.Element | None, targets: list[str]) -> list[str]:
    """The original's image of each backed-up disk, from the saved XML."""
    if saved is None:
        return []
    from virt_qga.host.snapshots import list_disks

    by_target = {d.target: d.source for d in list_disks(saved)}
    return [s for t in targets if (s := by_target.get(t))]


def _destination(opts: RestoreOptions, saved: ET.Element | None, targets: list[str]) -> Path:
    if opts.to:
        return Path(opts.to).expanduser().absolute()
    assert opts.define
    for source in _restored_sources(saved, targets):
        parent = Path(source).parent
        if parent.is_dir():
            return parent / opts.define
    raise BadInputError(f"the original's disk directory is gone: give {option_ref('to')} DIR",
                        field="to")


def _owner(opts: RestoreOptions, conn: Any, saved: ET.Element | None, targets: list[str],
           result: RestoreResult) -> tuple[int, int] | None:
    if opts.owner:
        return parse_owner(opts.owner)
    if not opts.define:
        return None
    from virt_qga.host import clone
    from virt_qga.host.snapshots import is_local_uri

    if conn is not None and is_local_uri(str(conn.getURI())):
        dac = clone.qemu_owner_of(conn)
        if dac is not None:
            return dac
    for source in _restored_sources(saved, targets):
        try:
            st = os.stat(source)
        except OSError:
            continue
        return st.st_uid, st.st_gid
    result.warnings.append(f"cannot tell which user QEMU runs as: the restored files stay owned "
                           f"by uid {os.geteuid()} (if the domain cannot open them, chown them or use "
                           f"{option_ref('owner')})")
    return None


def parse_owner(text: str) -> tuple[int, int]:
    """``USER[:GROUP]`` (names or numbers) as (uid, gid); GROUP defaults to USER's."""
    import grp
    import pwd

    user, _, group = text.partition(":")
    try:
        pw = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        uid = pw.pw_uid
        gid = pw.pw_gid
    except (KeyError, ValueError):
        if not user.isdigit():
            raise BadInputError(f"{option_ref('owner')}: no user {user!r}", field="owner") from None
        uid, gid = int(user), int(user)
    if group:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise BadInputError(f"{option_ref('owner')}: no group {group!r}", field="owner") from None
    return uid, gid


def _check_reachable(dest: Path, owner: tuple[int, int]) -> None:
    """QEMU (running as ``owner``) opens the images by path: refuse a destination below a
    directory it cannot enter. Directories still to be made get mode 755."""
    import stat

    from virt_qga.workflows.backup.api import blocking_dir

    existing = dest
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    blocked = blocking_dir(existing, owner)
    if blocked is not None:
        raise BadInputError(f"QEMU runs as uid {owner[0]} and cannot reach {dest}: {blocked} is mode "
                            f"{stat.S_IMODE(blocked.stat().st_mode):03o}; restore elsewhere "
                            f"({option_ref('to')}) or give it access", field="to")


def _make_dirs(dest: Path) -> list[Path]:
    """Create ``dest`` and missing parents (mode 755); the ones made, outermost first."""
    missing = []
    d = dest
    while not d.exists():
        missing.append(d)
        d = d.parent
    missing.reverse()
    for m in missing:
        try:
            m.mkdir(mode=0o755)
        except OSError as exc:
            for done in reversed(missing[: missing.index(m)]):
                done.rmdir()
            raise BadInputError(f"cannot create {m}: {exc.strerror}", field="to") from exc
    if not dest.is_dir():
        raise BadInputError(f"{dest} is not a directory", field="to")
    return missing


def _flatten(point: StoredBackup, rec: DiskRecord, final: Path, timeout: float,
             owner: tuple[int, int] | None, made: list[Path]) -> RestoredDisk:
    """One disk of ``point`` as a standalone image at ``final`` (see the module docstring)."""
    from virt_qga.workflows.backup import images

    source = point.path / rec.file
    partial = final.with_name(f".{final.name}.partial")
    partial.unlink(missing_ok=True)  # a restore killed earlier (never a final name)
    made.append(partial)
    seconds = images.convert(str(source), partial, timeout, source_format="qcow2")
    images.check(partial, timeout)
    info = images.info(partial)
    if int(info.get("virtual-size", -1)) != rec.virtual_size:
        raise HostError(f"{final.name}: the restored image has a virtual size of "
                        f"{info.get('virtual-size')}, the manifest says {rec.virtual_size}")
    if info.get("backing-filename"):
        raise HostError(f"{final.name}: the restored image still has a backing file")
    if owner is not None:
        os.chown(partial, *owner)
    made.append(final)
    os.rename(partial, final)
    _fsync_dir(final.parent)
    return RestoredDisk(target=rec.target, path=str(final), source=str(source),
                        virtual_size=rec.virtual_size, file_size=final.stat().st_size,
                        seconds=round(seconds, 3))


def _make_file(path: Path, owner: tuple[int, int] | None, made: list[Path]) -> None:
    """An empty file the new domain's character device writes (a console log)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.close(fd)
    made.append(path)
    if owner is not None:
        os.chown(path, *owner)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
