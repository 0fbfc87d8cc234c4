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


def test_prune_keeps_the_newest_complete_backups_and_drops_partials(tmp_path: Path) -> None:
    names = ["vqga-20261101T010000Z", "vqga-20261102T010000Z", "vqga-20261103T010000123Z"]
    for n in names:
        (tmp_path / n).mkdir()
        (tmp_path / n / "vda.qcow2").write_bytes(b"x")
    (tmp_path / ".vqga-20261104T010000Z.partial").mkdir()      # a run that died
    (tmp_path / "not-ours").mkdir()                             # never touched
    removed = wb.prune(tmp_path, keep=2)
    assert sorted(Path(p).name for p in removed) == [".vqga-20261104T010000Z.partial", names[0]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-ours", *names[1:]]
    assert wb.prune(tmp_path / "missing", keep=1) == []
    with pytest.raises(BadInputError):
        wb.prune(tmp_path, keep=0)


@pytest.mark.parametrize(("opts", "keep", "field", "flag"), [
    (SnapshotOptions(mode="internal"), None, "mode", "--mode"),
    (SnapshotOptions(socket="/run/qga.sock"), None, "socket", None),
    (SnapshotOptions(), 0, "keep", "--keep"),
])
def test_bad_input_is_refused_before_touching_anything(tmp_path: Path, opts: SnapshotOptions,
                                                       keep: int | None, field: str,
                                                       flag: str | None) -> None:
    from virt_qga.errors import render_options
    from virt_qga.options import cli_flag

    with pytest.raises(BadInputError) as ei:
        wb.backup("vm1", "qemu:///nowhere", tmp_path, options=opts, keep=keep)
    # the error names the neutral field; the CLI spells it as its flag
    assert ei.value.field == field
    if flag:
        assert flag in render_options(ei.value.message, cli_flag)
    assert list(tmp_path.iterdir()) == []
