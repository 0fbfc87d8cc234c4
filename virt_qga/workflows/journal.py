"""Per-domain journal: what a snapshot job is doing, so a dead run can be recovered.

One job at a time per domain (the lock sees to that), so one journal per domain:

* ``<state dir>/journal/<key>.json``: the job's state, rewritten atomically (temp file,
  fsync, rename) by the job itself at each phase change *outside* the frozen window;
* ``<key>.events``: an append-only JSON-lines log that both the job and its thaw
  guard write to (each line is one ``O_APPEND`` write, so the two never tear each
  other's lines).

A clean run removes both. A journal whose owner process is gone is *stale*: the next
``snapshot`` refuses to run and ``virt-qga recover`` reads it to undo or finish what was
left (see :mod:`virt_qga.workflows.recover`).

The state directory is ``$VIRT_QGA_STATE_DIR``, else ``/var/lib/virt-qga`` for root,
else ``$XDG_STATE_HOME/virt-qga`` (``~/.local/state/virt-qga``).

Phases (the state machine, :data:`TRANSITIONS`)::

    started -> hooks -> freezing -> snapshotting -> thawing -> thawed -> post-hooks -> done
       \\________\\__________\\____________\\___________\\_________\\-> rolling-back -> failed

``freezing`` is written *before* the freeze request (the journal is never touched
while the guest is frozen), so "freezing" means "may be frozen".
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from virt_qga.errors import HostError
from virt_qga.state import state_dir

__all__ = [
    "PHASES",
    "TRANSITIONS",
    "Journal",
    "JournalState",
    "can_advance",
    "domain_key",
    "maybe_frozen",
    "maybe_snapshot",
    "process_alive",
    "process_start_time",
    "state_dir",
]

PHASES = ("started", "hooks", "freezing", "snapshotting", "thawing", "thawed", "post-hooks",
          "done", "rolling-back", "failed")

TRANSITIONS: dict[str, frozenset[str]] = {
    "started": frozenset({"hooks", "freezing", "snapshotting", "rolling-back", "failed"}),
    "hooks": frozenset({"freezing", "snapshotting", "rolling-back", "failed"}),
    "freezing": frozenset({"snapshotting", "thawing", "thawed", "rolling-back", "failed"}),
    "snapshotting": frozenset({"thawing", "thawed", "rolling-back", "failed"}),
    "thawing": frozenset({"thawed", "rolling-back", "failed"}),
    "thawed": frozenset({"post-hooks", "done", "rolling-back", "failed"}),
    "post-hooks": frozenset({"done", "failed"}),
    "rolling-back": frozenset({"failed"}),
    "done": frozenset(),
    "failed": frozenset(),
}

#: Phases in which the guest may be frozen if the job died there.
_MAYBE_FROZEN = frozenset({"freezing", "snapshotting", "thawing", "rolling-back"})
#: Phases in which a snapshot (overlay, internal snapshot) may exist.
_MAYBE_SNAPSHOT = frozenset({"snapshotting", "thawing", "thawed", "post-hooks", "rolling-back"})


def can_advance(current: str, new: str) -> bool:
    return new in TRANSITIONS.get(current, frozenset())


def maybe_frozen(phase: str) -> bool:
    return phase in _MAYBE_FROZEN


def maybe_snapshot(phase: str) -> bool:
    return phase in _MAYBE_SNAPSHOT


def domain_key(uri: str, domain: str, uuid: str | None = None) -> str:
    """A file-name-safe key per (URI, domain): readable name + hash of URI and UUID
    (or name when there is no UUID, e.g. a bare agent socket)."""
    ident = uuid or domain
    digest = hashlib.sha256(f"{uri}\0{ident}".encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", domain)[:48].lstrip(".") or "domain"
    return f"{safe}-{digest}"


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat), to
    tell a live owner from a recycled pid."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(raw.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def process_alive(pid: int, start_time: int | None) -> bool:
    now = process_start_time(pid)
    if now is None:
        return False
    if start_time is not None and now != start_time:
        return False
    # A zombie has exited; its stat still exists until reaped.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@dataclass
class JournalState:
    """What a journal file says (plus the events log)."""

    domain: str
    uri: str
    uuid: str | None
    operation: str
    phase: str
    pid: int
    pid_start: int | None
    started_at: float
    updated_at: float
    data: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def owner_alive(self) -> bool:
        return process_alive(self.pid, self.pid_start)

    def to_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain, "uri": self.uri, "uuid": self.uuid, "operation": self.operation,
            "phase": self.phase, "pid": self.pid, "pid_start": self.pid_start,
            "started_at": self.started_at, "updated_at": self.updated_at, "data": self.data,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JournalState:
        return cls(domain=str(d["domain"]), uri=str(d.get("uri", "")), uuid=d.get("uuid"),
                   operation=str(d.get("operation", "snapshot")), phase=str(d["phase"]),
                   pid=int(d["pid"]), pid_start=d.get("pid_start"),
                   started_at=float(d.get("started_at", 0)), updated_at=float(d.get("updated_at", 0)),
                   data=dict(d.get("data") or {}))


class Journal:
    """The journal files of one domain."""

    def __init__(self, directory: Path, key: str) -> None:
        self.dir = directory
        self.key = key
        self.path = directory / f"{key}.json"
        self.events_path = directory / f"{key}.events"
        self.state: JournalState | None = None

    @classmethod
    def for_domain(cls, uri: str, domain: str, uuid: str | None = None,
                   base: Path | None = None, kind: str | None = None) -> Journal:
        """The domain's journal; ``kind`` names a second one beside the snapshot's (a
        backup keeps its own while the snapshot inside it keeps the usual one)."""
        key = domain_key(uri, domain, uuid) + (f".{kind}" if kind else "")
        return cls((base or state_dir()) / "journal", key)

    # -- reading -------------------------------------------------------------------

    def load(self) -> JournalState | None:
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise HostError(f"cannot read journal {self.path}: {exc.strerror}") from exc
        try:
            st = JournalState.from_dict(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            raise HostError(f"journal {self.path} is corrupt ({exc}); inspect and remove it") from exc
        st.events = self.read_events()
        return st

    def read_events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        try:
            lines = self.events_path.read_text().splitlines()
        except OSError:
            return out
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict):
                out.append(ev)
        return out

    # -- writing -------------------------------------------------------------------

    def begin(self, *, domain: str, uri: str, uuid: str | None, operation: str,
              data: dict[str, Any] | None = None) -> JournalState:
        """Start a new journal (the caller has checked there is no stale one)."""
        now = time.time()
        self.state = JournalState(domain=domain, uri=uri, uuid=uuid, operation=operation,
                                  phase="started", pid=os.getpid(),
                                  pid_start=process_start_time(os.getpid()),
                                  started_at=now, updated_at=now, data=dict(data or {}))
        try:
            self.events_path.unlink()
        except FileNotFoundError:
            pass
        self._write()
        self.event("started", operation=operation)
        return self.state

    def advance(self, phase: str, **data: Any) -> None:
        """Move to ``phase`` (must be a legal transition) and merge ``data``."""
        assert self.state is not None, "journal not begun"
        if not can_advance(self.state.phase, phase):
            raise ValueError(f"journal: illegal transition {self.state.phase} -> {phase}")
        self.state.phase = phase
        self.update(**data)

    def update(self, **data: Any) -> None:
        assert self.state is not None, "journal not begun"
        self.state.data.update(data)
        self.state.updated_at = time.time()
        self._write()

    def _write(self) -> None:
        assert self.state is not None
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        payload = json.dumps(self.state.to_dict(), indent=1, sort_keys=True).encode()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            raise HostError(f"cannot write journal {self.path}: {exc.strerror}") from exc

    def event(self, what: str, **data: Any) -> None:
        """Append one event line (never raises: the log is an aid, not a gate)."""
        line = json.dumps({"t": round(time.time(), 3), "pid": os.getpid(), "event": what, **data},
                          sort_keys=True, default=str)
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.events_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError:
            pass

    def remove(self) -> None:
        for p in (self.path, self.events_path):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        self.state = None
