"""Which method and which level a backup uses, and why: decided before anything is made.

The decision is a pure function of what the store holds and what libvirt and QEMU say
(:class:`Facts`), so it is the same for every front end and can be tested on its own.
Every choice carries a reason in words; ``auto`` never falls back silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from virt_qga.errors import BadInputError, option_ref
from virt_qga.workflows.backup.store import Chain

__all__ = ["Decision", "Facts", "choose_level", "choose_method"]


@dataclass
class Facts:
    """What the decision needs to know about the domain and its last backup."""

    running: bool
    backup_api: bool                 # libvirt supports the backup API for this domain
    local: bool                      # the libvirt host is this machine
    targets: list[str]               # disks to back up
    sources: dict[str, str | None]   # target -> active image
    formats: dict[str, str | None]   # target -> qcow2 | raw | ...
    file_disks: bool                 # every disk to back up is a file
    chain: Chain | None = None
    checkpoint_known: bool = False   # libvirt knows the last backup's checkpoint
    checkpoint_redefined: bool = False
    checkpoint_problem: str | None = None
    bitmap_problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Decision:
    value: str
    reason: str


def choose_method(asked: str, facts: Facts) -> Decision:
    """``backup-api``, ``snapshot`` or ``offline`` (a shut-off domain's disks copied)."""
    if not facts.running:
        if asked == "backup-api":
            raise BadInputError(f"the domain is not running: {option_ref('method')} backup-api needs "
                                f"a running domain (shut-off domains are copied with "
                                f"{option_ref('method')} auto or snapshot)", field="method")
        return Decision("offline", "the domain is shut off: its disks are copied as they are")
    why_not = _api_unusable(facts)
    if asked == "backup-api":
        if why_not:
            raise BadInputError(f"{option_ref('method')} backup-api is not possible here: {why_not}",
                                field="method")
        return Decision("backup-api", "asked for")
    if asked == "snapshot":
        return Decision("snapshot", "asked for")
    if why_not:
        return Decision("snapshot", f"backup API unusable: {why_not}")
    return Decision("backup-api", "libvirt supports the backup API for this domain")


def _api_unusable(facts: Facts) -> str | None:
    if not facts.backup_api:
        return "libvirt's domain capabilities do not offer backup"
    if not facts.local:
        return "the libvirt host is remote (push-mode targets are files on that host)"
    if not facts.file_disks:
        return "a disk is not a file"
    odd = [t for t in facts.targets if facts.formats.get(t) not in ("qcow2", "raw")]
    if odd:
        return f"disk(s) {', '.join(odd)} are neither qcow2 nor raw"
    return None


def choose_level(asked: str, method: str, facts: Facts, full_every: int | None) -> Decision:
    """``full`` or ``inc``. ``asked`` inc that cannot be honoured raises BadInputError
    with the reason (``auto`` takes a full backup instead and says why)."""
    if asked == "full":
        return Decision("full", "asked for")
    why_full = _why_full(method, facts, full_every)
    if why_full is None:
        assert facts.chain is not None and facts.chain.last is not None
        n = len(facts.chain.backups)
        note = "; its checkpoint was redefined from the backup" if facts.checkpoint_redefined else ""
        return Decision("inc", f"chain {facts.chain.name} holds {n} backup(s); changes since "
                               f"{facts.chain.last.manifest.checkpoint}{note}")
    if asked == "inc":
        raise BadInputError(f"cannot take an incremental backup: {why_full}; use "
                            f"{option_ref('level')} full (or auto)", field="level")
    return Decision("full", why_full)


def _why_full(method: str, facts: Facts, full_every: int | None) -> str | None:
    if method != "backup-api":
        return f"the {method} method makes full backups only"
    chain = facts.chain
    if chain is None or chain.last is None:
        return "no chain yet"
    last = chain.last.manifest
    if last.method != "backup-api" or not last.checkpoint:
        return f"the last backup ({last.name}, method {last.method}) left no checkpoint"
    if sorted(d.target for d in last.disks) != sorted(facts.targets):
        return "the disks to back up differ from the chain's"
    if any(d.source != facts.sources.get(d.target) for d in last.disks):
        return "a disk's image changed since the chain's last backup"
    if not any(d.checkpoint for d in last.disks):
        return "no disk of the chain has a checkpoint (raw disks are backed up in full)"
    if full_every is not None and len(chain.backups) >= full_every:
        return f"the chain holds {len(chain.backups)} backup(s) ({option_ref('full_every')} {full_every})"
    if not facts.checkpoint_known:
        return facts.checkpoint_problem or f"libvirt does not know checkpoint {last.checkpoint}"
    if facts.bitmap_problems:
        return "; ".join(facts.bitmap_problems)
    return None
