"""``virt-qga snapshot`` / ``recover`` against real lab guests.

Every test runs the real CLI as a process (exit codes, signals, SIGKILL are real) with
a private state directory, and checks the outcome with tools that do not go through
virt-qga: libvirt-python for the freeze state and the live XML, ``qemu-img`` and
``debugfs`` for the content of images.

Most tests share one module guest (``victim``) and must leave it thawed, running and
on its base image (an autouse fixture checks that after each test); tests that break
the agent or need a guest without an agent channel use ``fresh_guest``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from virt_qga.lab import Lab, LabError, LabGuest

ROOT = Path(__file__).resolve().parents[2]
SESSION_TAG = f"t{os.getpid()}"


# -- helpers that do not use virt-qga ---------------------------------------------------


def _dom(g: LabGuest) -> Any:
    import libvirt

    return libvirt.open(g.uri).lookupByName(g.name)


def freeze_status(g: LabGuest, timeout: int = 5) -> str:
    import libvirt_qemu

    raw = libvirt_qemu.qemuAgentCommand(_dom(g), '{"execute":"guest-fsfreeze-status"}', timeout, 0)
    return str(json.loads(raw)["return"])


def wait_status(g: LabGuest, want: str, timeout: float) -> float:
    """Seconds until the guest reports ``want`` (AssertionError after ``timeout``)."""
    t0 = time.monotonic()
    last = "?"
    while time.monotonic() - t0 < timeout:
        try:
            last = freeze_status(g)
        except Exception as exc:  # agent busy: keep polling
            last = repr(exc)
        if last == want:
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"guest not {want} after {timeout} s (last: {last})")


def active_image(g: LabGuest, target: str = "vda") -> str:
    import xml.etree.ElementTree as ET

    root = ET.fromstring(_dom(g).XMLDesc(0))
    for d in root.findall("./devices/disk"):
        t = d.find("target")
        s = d.find("source")
        if t is not None and t.get("dev") == target and s is not None:
            return str(s.get("file"))
    raise AssertionError(f"no disk {target}")


def guest_sh(g: LabGuest, script: str, timeout: float = 30) -> str:
    from virt_qga.agent import GuestAgent
    from virt_qga.workflows import exec as gexec

    res = gexec.run(GuestAgent.for_domain(g.name, g.uri, timeout=10), ["/bin/sh", "-c", script],
                    timeout=timeout)
    assert res.status == 0, res.stderr
    return res.stdout.decode()


def file_in_image(image: str, path: str, workdir: Path, snapshot: str | None = None) -> str | None:
    """Content of ``path`` inside the ext4 image (qcow2 -> raw copy -> debugfs)."""
    raw = workdir / "img.raw"
    cmd = ["qemu-img", "convert", "-U", "-O", "raw"]
    if snapshot:
        cmd += ["-l", f"snapshot.name={snapshot}"]
    subprocess.run([*cmd, image, str(raw)], check=True, capture_output=True)
    out = subprocess.run(["debugfs", "-R", f"cat {path}", str(raw)], capture_output=True, text=True)
    raw.unlink()
    if out.returncode != 0 or "File not found" in out.stderr:
        return None
    return out.stdout


def run(g: LabGuest, state: Path, *args: str, timeout: float = 120,
        **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_argv(g, *args), env=cli_env(state), capture_output=True, text=True,
                          timeout=timeout, **kw)


def cli_argv(g: LabGuest, *args: str) -> list[str]:
    return [sys.executable, "-m", "virt_qga.cli.main", "-c", str(g.uri), "--json", *args]


def cli_env(state: Path) -> dict[str, str]:
    return dict(os.environ, VIRT_QGA_STATE_DIR=str(state), PYTHONPATH=str(ROOT))


def doc(p: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        out: dict[str, Any] = json.loads(p.stdout)
    except ValueError as exc:
        raise AssertionError(f"no JSON (rc {p.returncode}): {p.stdout!r} {p.stderr!r}") from exc
    return out


def overlays_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.qcow2") if p.name != "data.qcow2")


def host_command_pids(cli_pid: int) -> list[int]:
    """The CLI's children (its `--command` shell, its thaw guard): read before killing it."""
    try:
        return [int(k) for k in Path(f"/proc/{cli_pid}/task/{cli_pid}/children").read_text().split()]
    except OSError:
        return []


def kill_host_command(kids: list[int]) -> None:
    """Stop the `--command` shell a killed CLI left behind (it has its own session)."""
    for k in kids:
        if _is_guard(k):
            continue
        try:
            os.killpg(k, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _is_guard(pid: int) -> bool:
    try:
        return b"thaw_guard" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def start_frozen(g: LabGuest, state: Path, *args: str) -> subprocess.Popen[str]:
    """Start the CLI and return once the guest reports frozen."""
    proc = subprocess.Popen(cli_argv(g, "snapshot", g.name, *args), env=cli_env(state),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_status(g, "frozen", 30)
    except AssertionError:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"never froze: {out} {err}") from None
    return proc


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def victim(lab: Lab) -> Iterator[LabGuest]:
    name = f"{SESSION_TAG}-snap"
    try:
        [g] = lab.up(agent="7.2", name=name, timeout=120)
    except LabError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"lab guest cannot start: {exc}", pytrace=False)
        pytest.skip(f"lab guest cannot start: {exc}")
    yield g
    try:
        lab.destroy(name)
    except LabError:
        pass


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture(autouse=True)
def victim_left_clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test using ``victim``: thawed, running, on its base image."""
    yield
    if "victim" not in request.fixturenames:
        return
    g: LabGuest = request.getfixturevalue("victim")
    wait_status(g, "thawed", 15)
    if active_image(g) != str(g.data_disk):  # repair for the next test, then fail
        from virt_qga.host import Domain
        from virt_qga.host.snapshots import commit_external

        commit_external(Domain.lookup(g.name, g.uri), ["vda"], timeout=60)
        pytest.fail("test left the guest on an overlay")
    assert overlays_in(Path(g.data_disk).parent) == []


def commit_back(g: LabGuest, state: Path) -> dict[str, Any]:
    p = run(g, state, "snapshot", g.name, "--commit-back")
    assert p.returncode == 0, p.stderr
    return doc(p)


# -- happy paths -----------------------------------------------------------------------


def test_external_snapshot_is_consistent_and_active(victim: LabGuest, state: Path, tmp_path: Path) -> None:
    g = victim
    guest_sh(g, "echo before-$$ > /data/before.txt")  # no sync: the freeze must flush it
    marker = guest_sh(g, "cat /data/before.txt").strip()
    p = run(g, state, "snapshot", g.name, "--pre-freeze", "echo hook > /data/hook.txt",
            "--post-thaw", "echo thawed > /data/post.txt")
    assert p.returncode == 0, p.stderr
    d = doc(p)
    assert d["consistency"] == "application"
    assert d["frozen"] == d["thawed"] >= 1
    assert 0 < d["frozen_window_ms"] < 10_000
    assert {"freeze", "snapshot", "thaw"} <= set(d["timings_ms"])
    base = str(g.data_disk)
    [ov] = d["overlays"]
    assert ov["base"] == base and ov["overlay"].startswith(base[:-len(".qcow2")] + ".vqga-")
    assert freeze_status(g) == "thawed"
    assert active_image(g) == ov["overlay"] and Path(ov["overlay"]).exists()
    # The base now holds the frozen content: the file written before, the pre hook's file.
    assert file_in_image(base, "/before.txt", tmp_path) == marker + "\n"
    assert file_in_image(base, "/hook.txt", tmp_path) == "hook\n"
    # Writes after the snapshot go to the overlay, not the base.
    guest_sh(g, "echo after > /data/after.txt; sync")
    assert file_in_image(base, "/after.txt", tmp_path) is None
    # Undo: commit back, the base has everything, the overlay is gone.
    c = commit_back(g, state)
    assert c["committed"][0]["overlay_removed"] is True
    assert active_image(g) == base and not Path(ov["overlay"]).exists()
    assert file_in_image(base, "/after.txt", tmp_path) == "after\n"
    assert not list((state / "journal").glob("*")) if (state / "journal").exists() else True


def test_internal_snapshot(victim: LabGuest, state: Path, tmp_path: Path) -> None:
    g = victim
    guest_sh(g, "echo internal > /data/int.txt")
    p = run(g, state, "snapshot", g.name, "--mode", "internal", "--name", "int1")
    try:
        assert p.returncode == 0, p.stderr
        d = doc(p)
        assert d["mode"] == "internal" and d["consistency"] == "filesystem" and d["metadata"] is True
        assert any("resumes frozen" in w for w in d["warnings"])
        assert freeze_status(g) == "thawed"
        assert "int1" in _dom(g).snapshotListNames(0)
        assert file_in_image(str(g.data_disk), "/int.txt", tmp_path, snapshot="int1") == "internal\n"
    finally:
        for snap in _dom(g).listAllSnapshots(0):
            snap.delete(0)


def test_command_mode_runs_while_frozen_with_env(victim: LabGuest, state: Path, tmp_path: Path) -> None:
    g = victim
    out = tmp_path / "cmd.out"
    script = (f'echo "$VIRT_QGA_DOMAIN $VIRT_QGA_DISKS $VIRT_QGA_SNAPSHOT_NAME" > {out}; '
              f"virsh -c \"$VIRT_QGA_URI\" qemu-agent-command \"$VIRT_QGA_DOMAIN\" "
              f"'{{\"execute\":\"guest-fsfreeze-status\"}}' >> {out}")
    p = run(g, state, "snapshot", g.name, "--mode", "command", "--command", script, "--name", "c1")
    assert p.returncode == 0, p.stderr
    d = doc(p)
    assert d["command"]["status"] == 0 and d["consistency"] == "filesystem"
    text = out.read_text()
    assert text.startswith(f"{g.name} vda={g.data_disk} c1")
    assert '"frozen"' in text  # the command really ran inside the frozen window
    assert freeze_status(g) == "thawed"


# -- failures leave nothing behind -----------------------------------------------------


def test_failing_pre_freeze_hook_aborts_before_freezing(victim: LabGuest, state: Path) -> None:
    g = victim
    p = run(g, state, "snapshot", g.name, "--pre-freeze", "echo nope >&2; exit 3")
    assert p.returncode == 1
    assert "pre_freeze hook failed with status 3" in p.stderr and "nope" in p.stderr
    assert freeze_status(g) == "thawed" and active_image(g) == str(g.data_disk)


def test_missing_target_dir_is_refused_before_freezing(victim: LabGuest, state: Path) -> None:
    p = run(victim, state, "snapshot", victim.name, "--dir", "/nonexistent/dir")
    assert p.returncode == 2 and "does not exist" in p.stderr


def test_snapshot_failure_while_frozen_thaws_and_leaves_no_overlay(victim: LabGuest, state: Path) -> None:
    # Root can write here, QEMU cannot: the pre-check passes and, with libvirt creating the
    # overlay (--no-precreate), snapshotCreateXML fails inside the frozen window. Session
    # mode (host stack): the unprivileged libvirtd cannot even create it. System mode
    # (debian13): libvirtd is root and creates it, its DAC driver hands the *file* to
    # libvirt-qemu, but QEMU cannot enter a root-only folder (with 0755 it could, and the
    # snapshot succeeds there).
    folder = Path(tempfile.mkdtemp(prefix="vqga-ro-", dir="/var/tmp"))
    try:
        os.chmod(folder, 0o700)
        p = run(victim, state, "snapshot", victim.name, "--dir", str(folder), "--no-precreate")
        assert p.returncode == 1, p.stderr
        err = doc(p)
        assert "guest thawed" in err["message"] and "snapshot rolled-back" in err["message"]
        assert "libvirt" in err["message"]
        assert err["result"]["frozen"] == err["result"]["thawed"] == 1
        assert freeze_status(victim) == "thawed" and active_image(victim) == str(victim.data_disk)
        assert list(folder.iterdir()) == []
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_failing_and_slow_command_mode(victim: LabGuest, state: Path) -> None:
    p = run(victim, state, "snapshot", victim.name, "--mode", "command", "--command",
            "echo array offline >&2; exit 4")
    assert p.returncode == 1 and "snapshot command failed with status 4" in p.stderr
    assert "array offline" in p.stderr
    assert freeze_status(victim) == "thawed"
    t0 = time.monotonic()
    p = run(victim, state, "snapshot", victim.name, "--mode", "command", "--command", "sleep 30",
            "--command-timeout", "1")
    assert p.returncode == 4 and "did not finish within 1 s" in p.stderr
    assert time.monotonic() - t0 < 10
    assert freeze_status(victim) == "thawed"


def test_paused_domain(victim: LabGuest, state: Path) -> None:
    dom = _dom(victim)
    dom.suspend()
    try:
        p = run(victim, state, "snapshot", victim.name)
        assert p.returncode == 6 and "paused" in p.stderr
        assert active_image(victim) == str(victim.data_disk)
        p = run(victim, state, "snapshot", victim.name, "--quiesce", "preferred")
        assert p.returncode == 7, p.stderr
        d = doc(p)
        assert d["consistency"] == "crash" and "paused" in d["consistency_reason"]
        assert d["frozen"] is None
    finally:
        dom.resume()
    commit_back(victim, state)


# -- signals and the thaw guard ----------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_freeze_thaws_and_rolls_back(victim: LabGuest, state: Path, sig: int) -> None:
    proc = start_frozen(victim, state, "--mode", "command", "--command", "sleep 5", "--max-frozen", "30")
    t0 = time.monotonic()
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert f"interrupted by {signal.Signals(sig).name}" in err and "guest thawed" in err
    assert time.monotonic() - t0 < 5  # did not wait for the 5 s command
    assert freeze_status(victim) == "thawed"
    assert not list((state / "journal").glob("*.json"))


def test_sigkill_guard_thaws_repeatedly_and_recover_reports(victim: LabGuest, state: Path) -> None:
    max_frozen = 4.0
    times = []
    for _ in range(3):
        proc = start_frozen(victim, state, "--mode", "command", "--command", "sleep 60",
                            "--max-frozen", str(max_frozen))
        kids = host_command_pids(proc.pid)
        kill_at = time.monotonic()
        proc.kill()  # SIGKILL: no handler, no finally; only the guard can thaw now
        wait_status(victim, "thawed", max_frozen + 2)
        times.append(time.monotonic() - kill_at)
        kill_host_command(kids)
        proc.communicate()
        # the next run sees the dead run's journal and says what to do
        p = run(victim, state, "snapshot", victim.name, "--wait-lock", "10")
        assert p.returncode == 8 and "virt-qga recover" in p.stderr, p.stderr
        r = run(victim, state, "recover", victim.name)
        assert r.returncode == 0, r.stderr
        rep = doc(r)["domains"][0]
        assert rep["journal"]["phase"] == "freezing"
        assert any(e["event"] == "guard-thawed" and e["reason"] == "parent-gone"
                   for e in rep["guard_events"])
    assert all(t <= max_frozen + 2 for t in times), times
    print(f"\nguard thaw after SIGKILL: {', '.join(f'{t * 1000:.0f} ms' for t in times)}")


def test_guard_deadline_when_virt_qga_hangs(victim: LabGuest, state: Path) -> None:
    """SIGSTOP (not kill) the job: its pipe stays open, so only the deadline can thaw."""
    proc = start_frozen(victim, state, "--mode", "command", "--command", "sleep 6", "--max-frozen", "3")
    frozen_at = time.monotonic()
    proc.send_signal(signal.SIGSTOP)
    try:
        waited = wait_status(victim, "thawed", 3 + 2)
        assert 1.5 <= time.monotonic() - frozen_at <= 5 + 0.5, waited
    finally:
        proc.send_signal(signal.SIGCONT)
    _out, err = proc.communicate(timeout=60)
    # The command finished after the guard had thawed: not consistent, so rolled back.
    assert proc.returncode == 4, err
    assert "longer than --max-frozen" in err
    assert freeze_status(victim) == "thawed"


def test_lock_keeps_two_jobs_apart(victim: LabGuest, state: Path) -> None:
    first = start_frozen(victim, state, "--mode", "command", "--command", "sleep 3", "--max-frozen", "20")
    try:
        p = run(victim, state, "snapshot", victim.name)
        assert p.returncode == 10 and "lock" in p.stderr
        t0 = time.monotonic()
        p = run(victim, state, "snapshot", victim.name, "--mode", "command", "--command", "true",
                "--wait-lock", "30")
        assert p.returncode == 0, p.stderr
        assert time.monotonic() - t0 > 0.5  # it did wait for the first one
    finally:
        first.communicate(timeout=30)
    assert first.returncode == 0


def test_stale_journal_with_completed_overlay(victim: LabGuest, state: Path) -> None:
    """Killed during the post-thaw hook: the overlay is live; recover says how to undo it."""
    proc = subprocess.Popen(cli_argv(victim, "snapshot", victim.name, "--post-thaw", "sleep 20"),
                            env=cli_env(state), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = str(victim.data_disk)
    t0 = time.monotonic()
    while active_image(victim) == base and time.monotonic() - t0 < 30:
        time.sleep(0.1)
    time.sleep(0.5)
    proc.kill()
    proc.communicate()
    overlay = active_image(victim)
    assert overlay != base
    r = run(victim, state, "recover", victim.name)
    assert r.returncode == 0, r.stderr
    rep = doc(r)["domains"][0]
    assert rep["journal"]["phase"] == "post-hooks"
    [left] = rep["leftovers"]
    assert left["kind"] == "overlay-active" and left["overlay"] == overlay
    assert "--commit-back --disk vda" in left["note"]
    commit_back(victim, state)


# -- no agent, broken agent ------------------------------------------------------------


def test_no_agent_channel_preferred_is_crash_consistent(fresh_guest: Callable[..., LabGuest],
                                                        tmp_path: Path) -> None:
    g = fresh_guest(agent_channel=False)
    state = tmp_path / "state"
    p = run(g, state, "snapshot", g.name)
    assert p.returncode == 3 and "agent" in p.stderr
    assert active_image(g) == str(g.data_disk)
    p = run(g, state, "snapshot", g.name, "--quiesce", "preferred")
    assert p.returncode == 7, p.stderr
    d = doc(p)
    assert d["consistency"] == "crash" and "agent" in d["consistency_reason"]
    assert active_image(g) == d["overlays"][0]["overlay"]


def test_agent_stopped_while_frozen_deadline_holds(fresh_guest: Callable[..., LabGuest],
                                                   tmp_path: Path) -> None:
    g = fresh_guest()
    state = tmp_path / "state"
    # The hook arms a delayed SIGSTOP of qemu-ga: it fires while the guest is frozen.
    hook = "(sleep 1; kill -STOP $(pidof qemu-ga)) >/dev/null 2>&1 </dev/null &"
    t0 = time.monotonic()
    p = run(g, state, "--timeout", "5", "snapshot", g.name, "--mode", "command", "--command", "sleep 3",
            "--pre-freeze", hook, "--max-frozen", "5", "--thaw-timeout", "2", timeout=90)
    took = time.monotonic() - t0
    print(f"\nagent stopped while frozen: exit {p.returncode} after {took:.1f} s: {p.stderr.strip()}")
    assert p.returncode == 8, p.stderr
    assert "thaw could not be confirmed" in p.stderr and "virt-qga recover" in p.stderr
    assert took < 30, took
    r = run(g, state, "--timeout", "3", "recover", g.name, "--wait-lock", "0", timeout=60)
    # the guard still holds the lock while it retries, or recover cannot reach the agent
    assert r.returncode in (8, 10), r.stderr


# -- plain QEMU over the agent socket ------------------------------------------------------


@pytest.mark.stacks("host")  # a plain QEMU guest: no libvirt stack involved
def test_socket_command_mode_and_guard(fresh_guest: Callable[..., LabGuest], tmp_path: Path) -> None:
    """No libvirt: the agent channel socket, --mode command; SIGKILL still gets thawed."""
    from virt_qga.transport.socket import SocketTransport

    g = fresh_guest(plain=True)
    assert g.socket
    state = tmp_path / "state"
    sock = f"unix:{g.socket}"

    def status() -> str:
        with SocketTransport(str(g.socket), timeout=5) as t:
            return str(t.execute("guest-fsfreeze-status"))

    argv = [sys.executable, "-m", "virt_qga.cli.main", "--json", "snapshot", sock]
    p = subprocess.run([*argv, "--mode", "command", "--command", 'test -z "$VIRT_QGA_DISKS"'],
                       env=cli_env(state), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert doc(p)["consistency"] == "filesystem" and status() == "thawed"
    p = subprocess.run([*argv], env=cli_env(state), capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "only --mode command" in p.stderr
    proc = subprocess.Popen([*argv, "--mode", "command", "--command", "sleep 60", "--max-frozen", "5"],
                            env=cli_env(state), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)  # the channel serves one client: we cannot poll while the job holds it
    kids = host_command_pids(proc.pid)
    assert kids, proc.stderr
    proc.kill()
    kill_host_command(kids)
    proc.communicate()
    t0 = time.monotonic()
    last = "?"
    while time.monotonic() - t0 < 7:
        try:
            last = status()
        except Exception as exc:  # the guard may hold the channel for a moment
            last = repr(exc)
        if last == "thawed":
            break
        time.sleep(0.1)
    assert last == "thawed"
    journal = next((state / "journal").glob("*.events")).read_text()
    assert '"guard-thawed"' in journal
