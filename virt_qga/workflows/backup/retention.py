"""Retention: which backups to keep, by rule, chain by chain.

The rules are those of Proxmox's prune and borg's: ``last``, ``daily``, ``weekly``
(ISO weeks), ``monthly``, ``yearly``, applied in that order over the domain's backups,
newest first. A rule keeps the newest backup of each of its next N periods; a period
that already holds a backup kept by an earlier rule is skipped and does not count, and
the older backups of a period a rule has taken are out of every later rule's reach.
Periods are read in the time zone given (the local one by default), from the time in
each backup's manifest.

A chain is kept or removed whole: an incremental needs every backup before it in its
chain, and a chain that is cut short would leave the next incremental without the
checkpoint it continues from. So a chain goes only when none of its backups is kept
by a rule; every other backup of a kept chain is kept as ``chain`` (:func:`plan`
says which rule kept which backup). With no rule at all nothing is removed.

:func:`plan` is pure (the store's chains in, a :class:`Plan` out); :func:`prune_domain`
applies a plan to the files (and deletes the libvirt checkpoints of removed chains
when it has the domain).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from virt_qga.errors import BadInputError, VirtQgaError, option_ref
from virt_qga.workflows.backup.store import Chain, Store, StoredBackup, name_time, parse_iso_time

if TYPE_CHECKING:
    from virt_qga.host import Domain
    from virt_qga.workflows.backup.options import BackupOptions

__all__ = ["RULES", "Plan", "Policy", "plan", "policy_of", "prune_domain", "prune_store"]

#: Rule names in the order they apply; the option of rule ``r`` is ``keep_r``.
RULES = ("last", "daily", "weekly", "monthly", "yearly")
#: Why a backup that no rule selected stays: its chain holds a kept backup.
CHAIN = "chain"

_PERIOD: dict[str, Callable[[datetime], Any]] = {
    "daily": lambda t: t.date(),
    "weekly": lambda t: t.isocalendar()[:2],  # (ISO year, ISO week)
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: t.year,
}


@dataclass(frozen=True)
class Policy:
    """How many periods each rule keeps (None: the rule is off)."""

    last: int | None = None
    daily: int | None = None
    weekly: int | None = None
    monthly: int | None = None
    yearly: int | None = None

    def __post_init__(self) -> None:
        for rule in RULES:
            n = getattr(self, rule)
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
                raise BadInputError(f"{option_ref(f'keep_{rule}')} must be a whole number of at "
                                    f"least 1, not {n!r}", field=f"keep_{rule}")

    @property
    def active(self) -> bool:
        return any(getattr(self, r) for r in RULES)

    def to_dict(self) -> dict[str, int | None]:
        return {r: getattr(self, r) for r in RULES}


def policy_of(opts: BackupOptions) -> Policy:
    """The retention policy of a backup's options (``keep`` is ``keep_last``)."""
    return Policy(last=opts.keep_last if opts.keep_last is not None else opts.keep,
                  daily=opts.keep_daily, weekly=opts.keep_weekly, monthly=opts.keep_monthly,
                  yearly=opts.keep_yearly)


@dataclass
class Plan:
    """What retention keeps and removes for one domain."""

    domain: str
    policy: Policy
    #: backup name -> the rule that kept it (a rule name, or ``chain``).
    kept: dict[str, str] = field(default_factory=dict)
    #: Backups removed with their chain, oldest first.
    removed: list[str] = field(default_factory=list)
    #: Chain directories removed whole.
    removed_chains: list[str] = field(default_factory=list)
    #: Why nothing was done for this domain (``prune_store``: its lock was busy, ...).
    error: str | None = None
    exit_code: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"domain": self.domain, "policy": self.policy.to_dict(), "kept": self.kept,
                "removed": self.removed, "removed_chains": self.removed_chains,
                "error": self.error, "exit_code": self.exit_code}


def backup_time(b: StoredBackup) -> datetime:
    """When a backup was taken: its manifest's start, else the time its name encodes."""
    try:
        return parse_iso_time(b.manifest.started)
    except ValueError:
        return name_time(b.name)


def _period(rule: str, name: str, local: datetime) -> Any:
    """The period of rule ``rule`` a backup falls in (``last``: each backup its own)."""
    return name if rule == "last" else _PERIOD[rule](local)


def _by_rule(backups: list[StoredBackup], policy: Policy, tz: tzinfo | None) -> dict[str, str]:
    """backup name -> rule, for the backups the rules select (newest first)."""
    local = {b.name: backup_time(b).astimezone(tz) for b in backups}
    newest_first = sorted(backups, key=lambda b: local[b.name], reverse=True)
    kept: dict[str, str] = {}
    passed_over: set[str] = set()  # older backups of a period some rule took
    for rule in RULES:
        count = getattr(policy, rule)
        if not count:
            continue
        periods = {b.name: _period(rule, b.name, local[b.name]) for b in newest_first}
        covered = {periods[n] for n in kept}
        taken: set[Any] = set()
        for b in newest_first:
            period = periods[b.name]
            if b.name in kept or b.name in passed_over or period in covered:
                continue
            if period in taken:
                passed_over.add(b.name)
                continue
            if len(taken) >= count:
                break
            taken.add(period)
            kept[b.name] = rule
    return kept


def plan(chains: list[Chain], policy: Policy, *, tz: tzinfo | None = None) -> Plan:
    """Which backups of one domain's chains the policy keeps, and which chains go.

    Pure: reads nothing but the chains' manifests. ``tz`` is the time zone the periods
    are read in (None: this machine's local zone).
    """
    domain = chains[0].domain if chains else ""
    out = Plan(domain=domain, policy=policy)
    everything = [b for c in chains for b in c.backups]
    if not policy.active or not everything:
        out.kept = {b.name: "no rule" for b in everything}
        return out
    by_rule = _by_rule(everything, policy, tz)
    for chain in chains:
        if not chain.backups:
            continue  # a chain whose first backup is still being written, or unreadable
        if any(b.name in by_rule for b in chain.backups):
            out.kept.update({b.name: by_rule.get(b.name, CHAIN) for b in chain.backups})
        else:
            out.removed += [b.name for b in chain.backups]
            out.removed_chains.append(str(chain.path))
    return out


def prune_domain(store: Store, domain: str, policy: Policy, *, host: Domain | None = None,
                 dry_run: bool = False, tz: tzinfo | None = None) -> Plan:
    """Apply the policy to the domain's chains in ``store`` (nothing changes with
    ``dry_run``); with ``host``, also delete the libvirt checkpoints of removed chains."""
    from virt_qga.host import backup as hb

    chains = store.chains(domain)
    decided = plan(chains, policy, tz=tz)
    if dry_run:
        return decided
    gone = set(decided.removed_chains)
    for chain in chains:
        if str(chain.path) not in gone:
            continue
        checkpoints = {b.manifest.checkpoint for b in chain.backups if b.manifest.checkpoint}
        shutil.rmtree(chain.path, ignore_errors=True)
        if host is not None:
            for cp in checkpoints:
                try:
                    hb.delete_checkpoint(host, cp)
                except VirtQgaError:
                    pass  # a backup run drops checkpoints no chain needs anyway
    return decided


def prune_store(root: Path, policy: Policy, *, domain: str | None = None, dry_run: bool = False,
                state_dir: Path | None = None, wait_lock: float = 0.0,
                tz: tzinfo | None = None) -> list[Plan]:
    """``virt-qga backup-prune``: apply ``policy`` to every domain of the store at
    ``root`` (or to ``domain``), each under the domain's lock, the one its backups take
    (found from the URI and UUID in its newest manifest), so a prune never races a
    backup of that domain. libvirt is not needed: the checkpoints of removed chains are
    left to the next backup run, which drops those no chain needs."""
    from virt_qga.state import state_dir as default_state_dir
    from virt_qga.workflows.journal import domain_key
    from virt_qga.workflows.lock import DomainLock, lock_path

    if not policy.active:
        rules = ", ".join(option_ref(f"keep_{r}") for r in RULES)
        raise BadInputError(f"give at least one retention rule ({rules})", field="keep_last")
    if not root.is_dir():
        raise BadInputError(f"{root} is not a backup store (no such directory)", field="dest")
    store = Store(root)
    domains = [domain] if domain is not None else store.domains()
    if domain is not None and not store.domain_dir(domain).is_dir():
        raise BadInputError(f"{root} holds no backups of {domain}", field="domain")
    base = state_dir or default_state_dir()
    plans = []
    for name in domains:
        newest = [c.last for c in store.chains(name) if c.last is not None]
        if not newest:
            plans.append(Plan(domain=name, policy=policy))
            continue
        m = max(newest, key=lambda b: b.name).manifest
        lock = DomainLock(lock_path(base, domain_key(m.uri or "", name, m.uuid)), domain=name,
                          operation="backup-prune", wait=wait_lock)
        try:
            with lock:
                plans.append(prune_domain(store, name, policy, dry_run=dry_run, tz=tz))
        except VirtQgaError as exc:  # one domain's busy lock does not stop the others
            plans.append(Plan(domain=name, policy=policy, error=exc.message, exit_code=int(exc.exit_code)))
    return plans
