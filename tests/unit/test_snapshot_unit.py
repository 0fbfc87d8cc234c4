"""Pure logic of the snapshot workflow: naming, disk choice, XML, journal, lock, policy."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from virt_qga.errors import BadInputError, LockBusyError
from virt_qga.host import snapshots as hs
from virt_qga.workflows import journal as jn
from virt_qga.workflows.lock import DomainLock
from virt_qga.workflows.snapshot import (
    SnapshotOptions,
    achieved_consistency,
    decide_consistency,
)

DOMAIN_XML = """
<domain type='qemu'><name>d1</name><devices>
  <disk type='file' device='disk'>
    <driver name='qemu' type='qcow2'/>
    <source file='/img/d1/data.vqga-20261125T060016100Z.qcow2'/>
    <backingStore type='file'><format type='qcow2'/><source file='/img/d1/data.qcow2'/></backingStore>
    <target dev='vda' bus='virtio'/>
  </disk>
  <disk type='block' device='disk'>
    <driver name='qemu' type='raw'/><source dev='/dev/vg/db'/><target dev='vdb' bus='virtio'/>
  </disk>
  <disk type='file' device='cdrom'>
    <source file='/iso/x.iso'/><target dev='sda' bus='sata'/><readonly/>
  </disk>
  <disk type='file' device='disk'>
    <source file='/img/ro.qcow2'/><target dev='vdc' bus='virtio'/><readonly/>
  </disk>
</devices></domain>"""


def disks() -> list[hs.DiskInfo]:
    return hs.list_disks(ET.fromstring(DOMAIN_XML))


# -- naming ----------------------------------------------------------------------------


def test_overlay_next_to_base() -> None:
    assert hs.overlay_path("/img/d1/data.qcow2", "s1") == "/img/d1/data.s1.qcow2"


def test_overlay_in_dir_and_other_extensions() -> None:
    assert hs.overlay_path("/img/disk.raw", "s1", "/snaps") == "/snaps/disk.s1.qcow2"
    assert hs.overlay_path("/dev/vg/db", "s1", "/snaps") == "/snaps/db.s1.qcow2"


def test_overlay_of_an_overlay_does_not_grow_the_name() -> None:
    assert hs.overlay_path("/img/data.vqga-20261125T060016100Z.qcow2", "vqga-20261126T000000000Z") \
        == "/img/data.vqga-20261126T000000000Z.qcow2"
    # a user-chosen name is not ours: kept
    assert hs.overlay_path("/img/data.before-upgrade.qcow2", "s2") == "/img/data.before-upgrade.s2.qcow2"


def test_default_snapshot_name_is_sortable_utc() -> None:
    name = hs.default_snapshot_name(datetime(2026, 11, 25, 6, 0, 16, 100000, tzinfo=UTC))
    assert name == "vqga-20261125T060016100Z"
    assert hs.check_snapshot_name(name) == name


@pytest.mark.parametrize("bad", ["", "-x", "a/b", "a b", "x" * 101, "../x"])
def test_bad_snapshot_names(bad: str) -> None:
    with pytest.raises(BadInputError):
        hs.check_snapshot_name(bad)


# -- disks -----------------------------------------------------------------------------


def test_list_disks_reads_sources_backing_and_readonly() -> None:
    d = {x.target: x for x in disks()}
    assert d["vda"].backing == "/img/d1/data.qcow2"
    assert d["vdb"].source == "/dev/vg/db" and d["vdb"].source_type == "block"
    assert d["sda"].device == "cdrom" and d["sda"].readonly
    assert d["vdc"].readonly


def test_default_disks_skip_readonly_and_cdrom() -> None:
    assert [x.target for x in hs.select_disks(disks(), ())] == ["vda", "vdb"]


def test_select_disks_errors_name_the_problem() -> None:
    with pytest.raises(BadInputError, match="no disk with target 'vdz'"):
        hs.select_disks(disks(), ["vdz"])
    with pytest.raises(BadInputError, match="read-only"):
        hs.select_disks(disks(), ["vdc"])
    assert [x.target for x in hs.select_disks(disks(), ["vdb", "vdb"])] == ["vdb"]


def test_external_xml_lists_every_disk() -> None:
    all_d = disks()
    vda = all_d[0]
    root = ET.fromstring(hs.external_snapshot_xml("s1", [(vda, "/o/vda.qcow2")], all_d, "why"))
    assert root.findtext("name") == "s1"
    by = {d.get("name"): d for d in root.findall("./disks/disk")}
    assert by["vda"].get("snapshot") == "external"
    src = by["vda"].find("source")
    assert src is not None and src.get("file") == "/o/vda.qcow2"
    assert {by[t].get("snapshot") for t in ("vdb", "sda", "vdc")} == {"no"}


@pytest.mark.parametrize("uri,local", [
    (None, True), ("qemu:///system", True), ("qemu+unix:///session?socket=/x", True),
    ("qemu+ssh://host/system", False), ("qemu+tcp://10.0.0.1/system", False),
])
def test_is_local_uri(uri: str | None, local: bool) -> None:
    assert hs.is_local_uri(uri) is local


# -- policy ----------------------------------------------------------------------------


def test_policy_decisions() -> None:
    assert decide_consistency("required", can_freeze=True, reason=None) == (True, None)
    assert decide_consistency("preferred", can_freeze=False, reason="no agent") == (False, "no agent")
    assert decide_consistency("off", can_freeze=True, reason=None)[0] is False
    with pytest.raises(AssertionError):
        decide_consistency("required", can_freeze=False, reason="x")


def test_achieved_consistency() -> None:
    assert achieved_consistency(True, True, False) == "application"
    assert achieved_consistency(True, False, False) == "filesystem"
    assert achieved_consistency(False, False, False) == "crash"
    assert achieved_consistency(True, True, True) == "crash"  # guard thawed before the snapshot


@pytest.mark.parametrize("kw,field,flag", [
    ({"mode": "lvm"}, "mode", "--mode"),
    ({"mode": "command"}, "command", "--command"),
    ({"command": "true"}, "command", "--command"),
    ({"socket": "/x.sock"}, "mode", "--mode"),
    ({"max_frozen": 0}, "max_frozen", "--max-frozen"),
    ({"max_frozen": 601}, "max_frozen", "--max-frozen"),
    ({"quiesce": "off", "pre_freeze": "sync"}, "quiesce", "--quiesce"),
    ({"quiesce": "maybe"}, "quiesce", "--quiesce"),
    ({"directory": "/x", "mode": "internal"}, "directory", "--dir"),
])
def test_options_validation(kw: dict[str, object], field: str, flag: str) -> None:
    from virt_qga.errors import render_options
    from virt_qga.options import ansible_name, cli_flag

    with pytest.raises(BadInputError) as ei:
        SnapshotOptions(**kw).validate()  # type: ignore[arg-type]
    # the neutral field; each front end spells it its own way in the message
    assert ei.value.field == field
    assert flag in render_options(ei.value.message, cli_flag)
    assert ansible_name(field) in render_options(ei.value.message, ansible_name)
    assert "--" not in render_options(ei.value.message, ansible_name)


# -- journal ---------------------------------------------------------------------------


def test_journal_state_machine() -> None:
    assert jn.can_advance("started", "hooks")
    assert jn.can_advance("freezing", "thawed")
    assert not jn.can_advance("done", "freezing")
    assert not jn.can_advance("started", "done")
    assert jn.maybe_frozen("freezing") and not jn.maybe_frozen("thawed")
    assert jn.maybe_snapshot("snapshotting") and not jn.maybe_snapshot("hooks")
    for phase, nexts in jn.TRANSITIONS.items():
        assert phase in jn.PHASES and nexts <= set(jn.PHASES)


def test_journal_roundtrip_and_events(tmp_path: Path) -> None:
    j = jn.Journal.for_domain("qemu:///system", "web1", "uuid-1", base=tmp_path)
    j.begin(domain="web1", uri="qemu:///system", uuid="uuid-1", operation="snapshot",
            data={"mode": "external"})
    j.advance("freezing", guard_pid=123)
    j.event("guard-thawed", reason="deadline")
    st = jn.Journal(j.dir, j.key).load()
    assert st is not None and st.phase == "freezing" and st.data["guard_pid"] == 123
    assert st.owner_alive  # it is us
    assert [e["event"] for e in st.events] == ["started", "guard-thawed"]
    with pytest.raises(ValueError):
        j.advance("done")
    j.remove()
    assert j.load() is None and not j.events_path.exists()


def test_journal_keys_differ_by_uri_and_are_file_safe() -> None:
    a = jn.domain_key("qemu:///system", "a/b c", None)
    b = jn.domain_key("qemu:///session", "a/b c", None)
    assert a != b and "/" not in a and " " not in a


def test_stale_journal_owner_is_dead(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    j = jn.Journal(tmp_path, "k")
    j.begin(domain="d", uri="u", uuid=None, operation="snapshot")
    assert j.state is not None
    j.state.pid, j.state.pid_start = child.pid, 1
    j.update()
    st = j.load()
    assert st is not None and not st.owner_alive


def test_pid_reuse_is_not_mistaken_for_the_owner() -> None:
    start = jn.process_start_time(os.getpid())
    assert jn.process_alive(os.getpid(), start)
    assert not jn.process_alive(os.getpid(), (start or 0) + 1)


def test_state_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VIRT_QGA_STATE_DIR", str(tmp_path / "st"))
    assert jn.state_dir() == tmp_path / "st"


# -- lock ------------------------------------------------------------------------------


def test_lock_busy_then_waits(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "d.lock"
    first = DomainLock(path, domain="d")
    first.acquire()
    with pytest.raises(LockBusyError, match="pid="):
        DomainLock(path, domain="d").acquire()
    threading.Timer(0.3, first.release).start()
    t0 = time.monotonic()
    with DomainLock(path, domain="d", wait=5.0):
        assert time.monotonic() - t0 >= 0.2


def test_lock_dies_with_its_holder(tmp_path: Path) -> None:
    path = tmp_path / "d.lock"
    root = str(Path(__file__).resolve().parents[2])
    code = (f"import sys,time; sys.path.insert(0, {root!r}); from pathlib import Path;"
            "from virt_qga.workflows.lock import DomainLock;"
            f"l=DomainLock(Path({str(path)!r}), domain='d'); l.acquire(); print('held', flush=True);"
            "time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(LockBusyError):
        DomainLock(path, domain="d").acquire()
    holder.kill()
    holder.wait()
    with DomainLock(path, domain="d", wait=2.0):
        pass


# -- CLI surface -----------------------------------------------------------------------


def test_cli_help_and_usage_errors() -> None:
    from click.testing import CliRunner

    from virt_qga.cli.main import cli

    r = CliRunner().invoke(cli, ["snapshot", "--help"])
    assert r.exit_code == 0 and "--max-frozen" in r.output and "--commit-back" in r.output
    r = CliRunner().invoke(cli, ["recover"])
    assert r.exit_code == 2


def test_thaw_of_a_domain_that_stopped_is_not_maybe_frozen() -> None:
    """The guest's QEMU went away while frozen (destroyed, powered off): the thaw cannot
    be confirmed by the agent, but nothing can be frozen any more. A running domain
    whose agent does not answer stays unconfirmed."""
    from types import SimpleNamespace

    from virt_qga.errors import AgentNotConnectedError
    from virt_qga.workflows.snapshot.frozen import do_thaw

    class GoneAgent:
        def call(self, command: str, timeout: float) -> object:
            raise AgentNotConnectedError("guest agent is not connected")

    def job(state: str) -> SimpleNamespace:
        warned: list[str] = []
        return SimpleNamespace(
            open_agent=GoneAgent, opts=SimpleNamespace(thaw_timeout=1.0), frozen_at=None,
            result=SimpleNamespace(timings_ms={}, frozen_window_ms=None, thawed=None),
            host=SimpleNamespace(state=lambda: state), warn=warned.append, warned=warned,
            thaw_confirmed=False, thaw_error="")

    stopped = job("shut off")
    do_thaw(stopped)  # type: ignore[arg-type]
    assert stopped.thaw_confirmed and "stopped while its filesystems were frozen" in stopped.warned[0]
    running = job("running")
    do_thaw(running)  # type: ignore[arg-type]
    assert not running.thaw_confirmed and "not connected" in running.thaw_error
