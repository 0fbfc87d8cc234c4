"""Backup decisions that need no guest: the aggregated exit code, retention, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from virt_qga.errors import BadInputError
from virt_qga.exitcodes import ExitCode as X
from virt_qga.workflows import backup as wb
from virt_qga.workflows.snapshot import SnapshotOptions


@pytest.mark.parametrize(("codes", "expected"), [
    ([], X.OK),
    ([0, 0], X.OK),
    ([0, 7], X.CRASH_CONSISTENT),             # all usable, one only crash-consistent
    ([0, 6], X.PARTIAL),                       # one done, one failed
    ([7, 1], X.PARTIAL),
    ([6, 6], X.DOMAIN),                        # all failed the same way
    ([6, 3], X.FAILED),                        # all failed, differently
    ([0, 9, 6], X.INCONSISTENT),               # an overlay left behind needs a human
    ([9, 8, 0], X.MAYBE_FROZEN),               # a guest that may be frozen beats everything
    ([2], X.USAGE),
])
def test_aggregate_exit(codes: list[int], expected: int) -> None:
    assert wb.aggregate_exit([int(c) for c in codes]) == int(expected)


def _fake_backup(store: wb.Store, domain: str, chain: str, name: str, parent: str | None) -> Path:
    """A backup directory with a manifest, as the engine writes it (no image data)."""
    from virt_qga.workflows.backup.store import DiskRecord, Manifest

    with store.writing(domain, chain, name) as partial:
        (partial / "vda.qcow2").write_bytes(b"x")
        Manifest(domain=domain, name=name, chain=chain, level="inc" if parent else "full",
                 method="backup-api", consistency="filesystem", started=name, parent=parent,
                 checkpoint=f"vqga-{name}",
                 disks=[DiskRecord(target="vda", source="/i/vm.qcow2", file="vda.qcow2",
                                   virtual_size=1)]).write(partial)
    return store.domain_dir(domain) / chain / name


def test_store_links_chains_and_ignores_partials(tmp_path: Path) -> None:
    store = wb.Store(tmp_path)
    a, b, c = "20261101T010000Z", "20261102T010000Z", "20261103T010000Z"
    _fake_backup(store, "vm", a, a, None)
    _fake_backup(store, "vm", a, b, a)
    _fake_backup(store, "vm", c, c, None)
    (tmp_path / "vm" / c / ".20261104T010000Z.partial").mkdir()   # a run that died
    chains = store.chains("vm")
    assert [(ch.name, [x.name for x in ch.backups]) for ch in chains] == [(a, [a, b]), (c, [c])]
    assert store.latest_chain("vm") is not None and store.latest_chain("vm").name == c  # type: ignore[union-attr]
    assert [p.name for p in store.stale_partials("vm")] == [".20261104T010000Z.partial"]
    chain, point = store.find(tmp_path / "vm" / a / b)
    assert chain.name == a and point is not None and point.name == b
    assert [x.name for x in chain.upto(a)] == [a]


def test_a_failed_write_leaves_no_final_name(tmp_path: Path) -> None:
    store = wb.Store(tmp_path)
    with pytest.raises(RuntimeError), store.writing("vm", "20261101T010000Z", "20261101T010000Z") as p:
        (p / "vda.qcow2").write_bytes(b"half")
        raise RuntimeError("disk full")
    assert list(tmp_path.rglob("*")) == [tmp_path / "vm"]


def test_retention_removes_whole_chains_only(tmp_path: Path) -> None:
    from virt_qga.workflows.backup.retention import Policy, prune_domain

    store = wb.Store(tmp_path)
    a, b, c, d = "20261101T010000Z", "20261102T010000Z", "20261103T010000Z", "20261104T010000Z"
    _fake_backup(store, "vm", a, a, None)
    _fake_backup(store, "vm", a, b, a)
    _fake_backup(store, "vm", c, c, None)
    _fake_backup(store, "vm", c, d, c)
    # keep 1 = the newest (d); it needs c: chain c stays whole, chain a goes whole
    assert [Path(p).name for p in prune_domain(store, "vm", Policy(last=1)).removed_chains] == [a]
    assert [ch.name for ch in store.chains("vm")] == [c]
    with pytest.raises(BadInputError):
        prune_domain(store, "vm", Policy(last=0))


@pytest.mark.parametrize(("opts", "keep", "field", "flag"), [
    (SnapshotOptions(mode="internal"), None, "mode", "--mode"),
    (SnapshotOptions(socket="/run/qga.sock"), None, "socket", None),
    (SnapshotOptions(), 0, "keep", "--keep"),
    (SnapshotOptions(max_frozen=0), None, "max_frozen", "--max-frozen"),
])
def test_bad_input_is_refused_before_touching_anything(tmp_path: Path, opts: SnapshotOptions,
                                                       keep: int | None, field: str,
                                                       flag: str | None) -> None:
    from virt_qga.errors import render_options
    from virt_qga.options import cli_flag

    with pytest.raises(BadInputError) as ei:
        wb.backup("vm1", "qemu:///nowhere", tmp_path, options=opts,
                  backup_options=wb.BackupOptions(keep=keep))
    # the error names the neutral field; the CLI spells it as its flag
    assert ei.value.field == field
    if flag:
        assert flag in render_options(ei.value.message, cli_flag)
    assert list(tmp_path.iterdir()) == []


def test_find_refuses_a_backup_outside_the_chain_order(tmp_path: Path) -> None:
    """A backup whose parent is gone is not silently swapped for the chain's newest."""
    import shutil

    from virt_qga.errors import HostError

    store = wb.Store(tmp_path)
    a, b, c = "20261101T010000Z", "20261102T010000Z", "20261103T010000Z"
    _fake_backup(store, "vm", a, a, None)
    _fake_backup(store, "vm", a, b, a)
    inc2 = _fake_backup(store, "vm", a, c, b)
    shutil.rmtree(tmp_path / "vm" / a / b)                 # the missing link
    with pytest.raises(HostError, match="not in its chain's order"):
        store.find(inc2)
    chain, point = store.find(tmp_path / "vm" / a)
    assert point is None and [x.name for x in chain.backups] == [a]


def test_blocking_dir_names_the_directory_qemu_cannot_enter(tmp_path: Path) -> None:
    from virt_qga.workflows.backup.api import blocking_dir

    inner = tmp_path / "closed" / "store"
    inner.mkdir(parents=True)
    (tmp_path / "closed").chmod(0o700)
    tmp_path.chmod(0o755)
    st = (tmp_path / "closed").stat()
    other = (st.st_uid + 4242, st.st_gid + 4242)
    assert blocking_dir(inner, other) == tmp_path / "closed"
    assert blocking_dir(inner, (0, 0)) is None                     # root enters everything
    assert blocking_dir(inner, (st.st_uid, st.st_gid)) is None     # the owner may enter
