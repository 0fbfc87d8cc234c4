"""Retention rule by rule, over backups spread across months, against expectations
worked out by hand (the comments show the reasoning).

The backups are written through the store's own code (``Store.writing``,
``Manifest.write``) with their names and times taken from an injected clock, the way
:func:`virt_qga.workflows.backup.backup` names them; no manifest JSON is written by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from virt_qga.errors import BadInputError
from virt_qga.workflows.backup.retention import CHAIN, Policy, plan, prune_domain
from virt_qga.workflows.backup.store import DiskRecord, Manifest, Store, backup_name, iso_time


def stored(store: Store, at: datetime, chain: str | None = None, parent: str | None = None) -> str:
    """One backup of domain ``vm`` taken at ``at`` (the injected clock), as the engine
    writes it; returns its name."""
    name = backup_name(at)
    chain = chain or name
    with store.writing("vm", chain, name) as partial:
        (partial / "vda.qcow2").write_bytes(b"x")
        Manifest(domain="vm", name=name, chain=chain, level="inc" if parent else "full",
                 method="backup-api", consistency="filesystem", started=iso_time(at),
                 finished=iso_time(at + timedelta(seconds=30)), parent=parent,
                 checkpoint=f"virt-qga-{name}",
                 disks=[DiskRecord(target="vda", source="/i/vm.qcow2", file="vda.qcow2",
                                   virtual_size=1)]).write(partial)
    return name


def t(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC)


#: Full backups (a chain each), oldest first. Weekdays and ISO weeks (2026):
#: 03-01 Sun W09, 03-02 Mon W10, 03-08 Sun W10, 03-09 Mon W11, 03-10 Tue W11,
#: 02-20 Fri W08, 02-01 Sun W05, 01-15 Thu W03.
TIMES = ["2025-06-15 02:00", "2025-12-31 23:30", "2026-01-15 02:00", "2026-02-01 02:00",
         "2026-02-20 02:00", "2026-03-01 02:00", "2026-03-02 02:00", "2026-03-08 02:00",
         "2026-03-09 02:00", "2026-03-09 14:00", "2026-03-10 02:00"]


@pytest.fixture
def fulls(tmp_path: Path) -> tuple[Store, dict[str, str]]:
    """The store and backup name by its time (``"03-09 14:00"``, ``"2025-06-15"``...)."""
    store = Store(tmp_path)
    names = {}
    for stamp in TIMES:
        names[stamp] = stored(store, t(stamp))
    return store, names


def kept(store: Store, policy: Policy, names: dict[str, str], tz: timezone = UTC) -> dict[str, str]:
    """time -> rule for the kept backups (the removed ones are simply absent)."""
    by_name = {v: k for k, v in names.items()}
    decided = plan(store.chains("vm"), policy, tz=tz)
    assert not set(decided.kept) & set(decided.removed)  # never both
    assert len(decided.kept) + len(decided.removed) == len(names)
    return {by_name[n]: rule for n, rule in decided.kept.items()}


def test_keep_last_keeps_the_newest_n(fulls: tuple[Store, dict[str, str]]) -> None:
    store, names = fulls
    assert kept(store, Policy(last=3), names) == {
        "2026-03-10 02:00": "last", "2026-03-09 14:00": "last", "2026-03-09 02:00": "last"}


def test_keep_daily_keeps_the_newest_of_each_day(fulls: tuple[Store, dict[str, str]]) -> None:
    store, names = fulls
    # 03-09 has two backups: the 14:00 one counts, the 02:00 one goes
    assert kept(store, Policy(daily=3), names) == {
        "2026-03-10 02:00": "daily", "2026-03-09 14:00": "daily", "2026-03-08 02:00": "daily"}


def test_keep_weekly_uses_iso_weeks(fulls: tuple[Store, dict[str, str]]) -> None:
    store, names = fulls
    # W11: 03-10 (Tue) is newer than 03-09 (Mon); W10 ends on Sunday 03-08, so 03-08 and
    # not 03-02 is W10's newest; a Sunday-first week would have put 03-08 with 03-09
    assert kept(store, Policy(weekly=2), names) == {
        "2026-03-10 02:00": "weekly", "2026-03-08 02:00": "weekly"}


def test_keep_monthly(fulls: tuple[Store, dict[str, str]]) -> None:
    store, names = fulls
    assert kept(store, Policy(monthly=3), names) == {
        "2026-03-10 02:00": "monthly", "2026-02-20 02:00": "monthly", "2026-01-15 02:00": "monthly"}


def test_keep_yearly(fulls: tuple[Store, dict[str, str]]) -> None:
    store, names = fulls
    assert kept(store, Policy(yearly=2), names) == {
        "2026-03-10 02:00": "yearly", "2025-12-31 23:30": "yearly"}


def test_periods_are_read_in_the_time_zone_given(fulls: tuple[Store, dict[str, str]]) -> None:
    store, names = fulls
    # at UTC+1, 2025-12-31 23:30 UTC is 2026-01-01 00:30: a 2026 backup, so 2025's
    # newest is the June one
    berlin_winter = timezone(timedelta(hours=1))
    assert kept(store, Policy(yearly=2), names, tz=berlin_winter) == {
        "2026-03-10 02:00": "yearly", "2025-06-15 02:00": "yearly"}


def test_rules_apply_in_order_and_skip_periods_already_kept(fulls: tuple[Store, dict[str, str]]) -> None:
    store, names = fulls
    # last=1: 03-10. daily=2: day 03-10 is covered; 03-09 14:00 (its 02:00 sibling is out
    # of every later rule's reach), 03-08. weekly=2: W11 and W10 are covered (03-10,
    # 03-08); 03-01 (W09), 02-20 (W08). monthly=2: March and February are covered; 01-15,
    # 2025-12-31. yearly=2: 2026 and 2025 are covered; nothing more. Removed: 03-09 02:00,
    # 03-02, 02-01, 2025-06-15.
    assert kept(store, Policy(last=1, daily=2, weekly=2, monthly=2, yearly=2), names) == {
        "2026-03-10 02:00": "last", "2026-03-09 14:00": "daily", "2026-03-08 02:00": "daily",
        "2026-03-01 02:00": "weekly", "2026-02-20 02:00": "weekly",
        "2026-01-15 02:00": "monthly", "2025-12-31 23:30": "monthly"}


def test_no_rule_removes_nothing(fulls: tuple[Store, dict[str, str]]) -> None:
    store, _ = fulls
    decided = prune_domain(store, "vm", Policy())
    assert decided.removed == [] and len(decided.kept) == len(TIMES)
    assert len(store.chains("vm")) == len(TIMES)


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_a_rule_needs_a_whole_number_of_at_least_one(bad: object) -> None:
    with pytest.raises(BadInputError) as ei:
        Policy(daily=bad)  # type: ignore[arg-type]
    assert ei.value.field == "keep_daily"


@pytest.fixture
def chains(tmp_path: Path) -> tuple[Store, dict[str, str]]:
    """Three chains: January (full 01-05, incs 01-06, 01-07), February (02-02, 02-03),
    March (03-02, 03-03)."""
    store = Store(tmp_path)
    names: dict[str, str] = {}
    for days in (["01-05", "01-06", "01-07"], ["02-02", "02-03"], ["03-02", "03-03"]):
        chain = parent = None
        for day in days:
            name = stored(store, t(f"2026-{day} 02:00"), chain=chain, parent=parent)
            chain, parent = chain or name, name
            names[day] = name
    return store, names


def test_a_kept_incremental_keeps_its_whole_chain(chains: tuple[Store, dict[str, str]]) -> None:
    store, names = chains
    # monthly=3 keeps each month's newest: 03-03, 02-03 and the January incremental
    # 01-07, which needs 01-06 and 01-05: kept as "chain"
    assert kept(store, Policy(monthly=3), names) == {
        "03-03": "monthly", "03-02": CHAIN, "02-03": "monthly", "02-02": CHAIN,
        "01-07": "monthly", "01-06": CHAIN, "01-05": CHAIN}


def test_whole_chains_go_and_dry_run_changes_nothing(chains: tuple[Store, dict[str, str]]) -> None:
    store, names = chains
    root = store.domain_dir("vm")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    # last=1 keeps 03-03, which needs 03-02: the March chain stays, the other two go
    dry = prune_domain(store, "vm", Policy(last=1), dry_run=True)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    assert dry.kept == {names["03-03"]: "last", names["03-02"]: CHAIN}
    assert [Path(p).name for p in dry.removed_chains] == [names["01-05"], names["02-02"]]
    assert dry.removed == [names[d] for d in ("01-05", "01-06", "01-07", "02-02", "02-03")]
    done = prune_domain(store, "vm", Policy(last=1))
    assert done.to_dict() == dry.to_dict()
    assert [c.name for c in store.chains("vm")] == [names["03-02"]]
    assert [b.name for b in store.chains("vm")[0].backups] == [names["03-02"], names["03-03"]]


def test_a_chain_being_written_is_never_removed(chains: tuple[Store, dict[str, str]]) -> None:
    store, _ = chains
    # a full backup in progress: its chain directory holds only the partial directory
    first = backup_name(t("2026-04-01 02:00"))
    (store.domain_dir("vm") / first / f".{first}.partial").mkdir(parents=True)
    prune_domain(store, "vm", Policy(last=1))
    assert (store.domain_dir("vm") / first / f".{first}.partial").is_dir()
