"""What a nightly run leaves for its watchers, without a guest: the metrics textfile
(parsed back with prometheus_client's own parser), the syslog records (read from a
unix datagram socket the test binds), the --on-failure command, the systemd units
(judged by systemd-analyze) and the one-line errors of the new options."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from virt_qga.exitcodes import ExitCode
from virt_qga.workflows.backup import RunInterrupted
from virt_qga.workflows.backup.metrics import write_metrics
from virt_qga.workflows.backup.notify import run_on_failure
from virt_qga.workflows.backup.result import BackupResult
from virt_qga.workflows.backup.store import DiskRecord, Manifest, Store, backup_name, iso_time

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]


def _stored(store: Store, domain: str, at: datetime) -> None:
    name = backup_name(at)
    with store.writing(domain, name, name) as partial:
        (partial / "vda.qcow2").write_bytes(b"x")
        Manifest(domain=domain, name=name, chain=name, level="full", method="backup-api",
                 consistency="filesystem", started=iso_time(at),
                 finished=iso_time(at + timedelta(seconds=42)),
                 disks=[DiskRecord(target="vda", source="/i.qcow2", file="vda.qcow2",
                                   virtual_size=1)]).write(partial)


def _results() -> list[BackupResult]:
    good = BackupResult(domain="web1", state="done", method="backup-api", level="inc", chain_length=3,
                        consistency="filesystem", bytes_written=5 * 2**20, finished_at=1_700_000_000.5,
                        timings_s={"total": 12.5}, exit_code=int(ExitCode.OK))
    crash = BackupResult(domain="db1", state="done", method="snapshot", level="full", chain_length=1,
                         consistency="crash", bytes_written=2**30, finished_at=1_700_000_100.0,
                         timings_s={"total": 80.0}, exit_code=int(ExitCode.CRASH_CONSISTENT))
    failed = BackupResult(domain="mail", error="domain not found", timings_s={"total": 0.1},
                          exit_code=int(ExitCode.DOMAIN))
    lost = BackupResult(domain="old", error="agent not answering", timings_s={"total": 30.0},
                        exit_code=int(ExitCode.AGENT_UNAVAILABLE))
    return [good, crash, failed, lost]


def _samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(path.read_text()) for s in fam.samples}


def test_metrics_parse_back_and_a_failure_keeps_the_last_success(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    _stored(store, "old", datetime(2026, 11, 30, 2, 0, tzinfo=UTC))   # finished 02:00:42
    prom = tmp_path / "textfile" / "virt_qga_backup.prom"
    prom.parent.mkdir()
    # the night before: mail succeeded (the file remembers it)
    earlier = BackupResult(domain="mail", state="done", level="full", consistency="filesystem",
                           finished_at=1_690_000_000.0, chain_length=1, exit_code=0)
    write_metrics(prom, [earlier], 0, store, now=1_690_000_001.0)
    write_metrics(prom, _results(), int(ExitCode.PARTIAL), store, now=1_700_000_200.0)
    got = _samples(prom)
    p = "virt_qga_backup_"

    def one(name: str, domain: str, **labels: str) -> float:
        return got[(p + name, tuple(sorted({"domain": domain, **labels}.items())))]

    assert one("last_success_timestamp_seconds", "web1") == 1_700_000_000.5
    assert one("last_success_timestamp_seconds", "db1") == 1_700_000_100.0
    # failed tonight: the previous file's value, else the store's newest manifest
    assert one("last_success_timestamp_seconds", "mail") == 1_690_000_000.0
    assert one("last_success_timestamp_seconds", "old") == datetime(
        2026, 11, 30, 2, 0, 42, tzinfo=UTC).timestamp()
    assert [one("success", d) for d in ("web1", "db1", "mail", "old")] == [1, 1, 0, 0]
    assert [one("exit_code", d) for d in ("web1", "db1", "mail", "old")] == [0, 7, 6, 3]
    assert one("duration_seconds", "db1") == 80.0
    assert one("bytes", "web1") == 5 * 2**20 and one("bytes", "mail") == 0
    assert one("chain_length", "web1") == 3 and one("chain_length", "mail") == 0
    assert one("consistency", "db1", consistency="crash") == 1
    assert one("consistency", "web1", consistency="filesystem") == 1
    assert one("level", "web1", level="inc") == 1 and one("level", "db1", level="full") == 1
    assert not any(k[0] == p + "consistency" and ("domain", "mail") in k[1] for k in got)
    assert got[(p + "run_exit_code", ())] == 5
    assert got[(p + "run_timestamp_seconds", ())] == 1_700_000_200.0
    assert sorted(x.name for x in prom.parent.iterdir()) == [prom.name]  # the temp file was renamed


@pytest.fixture
def syslog_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "log.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setenv("VIRT_QGA_SYSLOG_SOCKET", str(path))
    yield sock
    sock.close()


def _records(sock: socket.socket) -> list[str]:
    out = []
    sock.settimeout(0.5)
    while True:
        try:
            out.append(sock.recv(65536).decode())
        except TimeoutError:
            return out


@pytest.mark.parametrize("quiet", [False, True])
def test_syslog_records_name_their_domain(syslog_socket: socket.socket, quiet: bool) -> None:
    from virt_qga.cli.backup_report import log_results, syslog_logger

    results = _results()
    doc: dict[str, Any] = {"backups": [r.to_dict() for r in results], "exit_code": 5}
    log_results(syslog_logger(quiet=quiet), doc)
    got = _records(syslog_socket)
    # <PRI> = facility daemon (3) * 8 + severity: info 6, warning 4, error 3
    web1 = [r for r in got if "domain=web1:" in r]
    db1 = [r for r in got if "domain=db1:" in r]
    mail = [r for r in got if "domain=mail:" in r]
    assert mail and mail[0].startswith("<27>virt-qga: domain=mail: backup failed")
    assert "exit 6" in mail[0] and "domain not found" in mail[0]
    assert db1 and db1[0].startswith("<28>virt-qga: domain=db1: full backup")  # crash: a warning
    assert got[-1].startswith("<27>virt-qga: domain=*: run over 4 domain(s) ended with exit 5")
    if quiet:
        assert web1 == []      # -q: a success is not worth a line
    else:
        assert web1 and web1[0].startswith("<30>virt-qga: domain=web1: inc backup")


def test_on_failure_gets_the_json_and_is_bounded(tmp_path: Path) -> None:
    out = tmp_path / "got.json"
    doc = {"backups": [{"domain": "mail", "ok": False}], "exit_code": 6}
    ok = run_on_failure(f'cat > {out}; echo "code $VIRT_QGA_EXIT_CODE"', doc)
    assert ok.ok and ok.exit_code == 0 and ok.stdout == "code 6\n"
    assert json.loads(out.read_text()) == doc
    bad = run_on_failure("echo nope >&2; exit 3", doc)
    assert not bad.ok and bad.exit_code == 3 and bad.stderr == "nope\n"
    t0 = time.monotonic()
    slow = run_on_failure("sleep 30 & sleep 30", doc, timeout=0.5)
    assert time.monotonic() - t0 < 10     # the whole group is killed, not only the shell
    assert not slow.ok and "timeout" in str(slow.error)


def test_on_failure_output_is_read_back_capped(tmp_path: Path) -> None:
    """A hook that prints 64 MiB: the report keeps OUTPUT_CAP bytes, and virt-qga's own
    memory never held the rest (it went to a temporary file)."""
    import resource

    from virt_qga.workflows.backup.notify import OUTPUT_CAP

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    loud = run_on_failure("head -c 67108864 /dev/zero | tr '\\0' x", {"exit_code": 1})
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert loud.ok and loud.stdout == "x" * OUTPUT_CAP
    assert grown_kib < 16 * 1024, grown_kib


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "virt_qga.cli.main", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL,
                          env=dict(os.environ, **(env or {})))


def test_schedule_units_pass_systemd_analyze(tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir()
    p = _cli("--json", "backup-schedule", "install", "--to", str(tmp_path / "store"),
             "--unit-dir", str(units), "--on-calendar", "Mon..Sat 02:30", "--name", "vqga-nightly",
             "--all", "--keep-daily", "7",
             "--on-failure", 'echo "100% $USER" | logger')
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["enabled"] is False and doc["ran"] == []
    timer = (units / "vqga-nightly.timer").read_text()
    service = (units / "vqga-nightly.service").read_text()
    assert "Persistent=true" in timer and "OnCalendar=Mon..Sat 02:30" in timer
    assert "Unit=vqga-nightly.service" in timer
    # % and $ reach the command as written (systemd's specifier and variable escapes)
    assert '"echo \\"100%% $$USER\\" | logger"' in service
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing (package systemd, scripts/system-packages.txt)")
        pytest.skip("systemd-analyze is not installed: the units were not verified")
    v = subprocess.run([tool, "verify", "--man=no", str(units / "vqga-nightly.timer"),
                        str(units / "vqga-nightly.service")], capture_output=True, text=True, timeout=60)
    assert v.returncode == 0, v.stderr
    assert v.stderr.strip() == "", v.stderr   # not even a warning
    # and it does judge: the same service with a command that is not there fails
    exe = doc["exec_start"][0]
    broken = service.replace(f"ExecStart={exe}", "ExecStart=/nonexistent/virt-qga")
    (units / "broken.service").write_text(broken)
    bad = subprocess.run([tool, "verify", "--man=no", str(units / "broken.service")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "/nonexistent/virt-qga" in bad.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["backup", "--to", "/tmp", "vm", "--include-inactive"], "--include-inactive goes with --all"),
    (["backup", "--to", "/tmp", "vm", "--metrics", "/nonexistent/dir/x.prom"], "not a writable directory"),
    (["backup", "--to", "/tmp", "vm", "--keep", "3", "--keep-last", "4"], "--keep is --keep-last"),
    (["backup", "--to", "/tmp", "vm", "--keep-weekly", "0"], "--keep-weekly"),
    (["backup-prune", "/tmp"], "give at least one retention rule"),
    (["backup-prune", "/nonexistent-store", "--keep-last", "1"], "is not a backup store"),
    (["backup-schedule", "install", "--to", "/tmp", "--unit-dir", "/nonexistent", "vm"], "does not exist"),
    (["backup-schedule", "show", "--to", "/tmp", "--all", "--cron", "daily"], "--cron needs five fields"),
    (["backup-schedule", "show", "--to", "/tmp"], "needs DOMAIN names or --all"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    p = _cli(*args, env={"VIRT_QGA_CONNECT": "test:///default"})
    assert p.returncode == ExitCode.USAGE, (p.returncode, p.stderr)
    assert message in p.stderr and "Traceback" not in p.stderr


def test_backup_prune_dry_run_then_real(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for day in (1, 2, 3):
        _stored(store, "vm", datetime(2026, 11, day, 2, 0, tzinfo=UTC))
    before = sorted(p.name for p in (tmp_path / "vm").iterdir())
    env = {"VIRT_QGA_STATE_DIR": str(tmp_path / "state"), "TZ": "UTC"}
    dry = _cli("--json", "backup-prune", str(tmp_path), "--keep-daily", "2", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)["domains"][0]
    assert plan["kept"] == {"20261103T020000Z": "daily", "20261102T020000Z": "daily"}
    assert plan["removed"] == ["20261101T020000Z"]
    assert sorted(p.name for p in (tmp_path / "vm").iterdir()) == before
    real = _cli("backup-prune", str(tmp_path), "--domain", "vm", "--keep-daily", "2", env=env)
    assert real.returncode == 0, real.stderr
    assert "removed" in real.stdout and "daily" in real.stdout
    assert sorted(p.name for p in (tmp_path / "vm").iterdir()) == before[1:]


def test_a_signal_reaches_every_running_backup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--jobs 2 over three domains, SIGTERM while two run: both running backups get
    Interrupted (their cleanup path runs), the third never starts, the run ends with
    Interrupted (exit 130) and the previous SIGTERM handler is back."""
    import signal
    import threading

    import virt_qga.workflows.backup.run as run_mod
    from virt_qga.errors import Interrupted
    from virt_qga.workflows.backup import backup_many

    started: list[str] = []
    cleaned: list[str] = []
    both = threading.Barrier(2, timeout=10)

    def fake(domain: str, uri: str | None, dest: Path, **kw: Any) -> BackupResult:
        started.append(domain)
        both.wait()
        try:
            while True:
                time.sleep(0.01)   # a backup's poll loop (the job, the agent)
        except BaseException:
            cleaned.append(domain)
            raise

    monkeypatch.setattr(run_mod, "backup", fake)
    before = signal.getsignal(signal.SIGTERM)

    def kill_when_both_run() -> None:
        while len(started) < 2:
            time.sleep(0.01)
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=kill_when_both_run, daemon=True).start()
    t0 = time.monotonic()
    with pytest.raises(Interrupted) as ei:
        backup_many(["a", "b", "c"], None, tmp_path, jobs=2)
    assert time.monotonic() - t0 < 10
    assert ei.value.signum == signal.SIGTERM
    assert sorted(started) == ["a", "b"] and sorted(cleaned) == ["a", "b"]
    assert signal.getsignal(signal.SIGTERM) is before
    assert isinstance(ei.value, RunInterrupted)
    got = [(r.domain, r.exit_code, r.state) for r in ei.value.results]
    assert got == [("a", 130, "failed"), ("b", 130, "failed"), ("c", 130, "nothing-done")]
    assert "interrupted by SIGTERM; cleanup ran" in (ei.value.results[0].error or "")


def _one_done_then_interrupted(domain: str, uri: str | None, dest: Path, **kw: Any) -> BackupResult:
    """A backup() stand-in: ``a`` succeeds; ``b`` is interrupted (after its cleanup, as
    the real one raises it); nothing else may be started."""
    import signal

    from virt_qga.errors import Interrupted

    if domain == "b":
        raise Interrupted(signal.SIGTERM)
    assert domain == "a", f"{domain} started after the interrupt"
    return BackupResult(domain="a", state="done", level="full", consistency="filesystem",
                        bytes_written=4096, finished_at=1_700_000_000.0, exit_code=int(ExitCode.OK))


def test_one_at_a_time_an_interrupt_keeps_the_results_so_far(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    """--jobs 1: the interrupt ends the run in the calling thread; the results of the
    domains done before it are not lost, the rest are 'not started'."""
    import virt_qga.workflows.backup.run as run_mod
    from virt_qga.workflows.backup import backup_many

    monkeypatch.setattr(run_mod, "backup", _one_done_then_interrupted)
    with pytest.raises(RunInterrupted) as ei:
        backup_many(["a", "b", "c"], None, tmp_path, jobs=1)
    got = [(r.domain, r.exit_code, r.state) for r in ei.value.results]
    assert got == [("a", 0, "done"), ("b", 130, "failed"), ("c", 130, "nothing-done")]


def test_an_interrupted_run_still_reaches_its_watchers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """SIGTERM from systemd or cron's timeout: the CLI exits 130 with the usual
    'Interrupted' document, and the metrics file, syslog and the failure hook still get
    every domain's result (the hook's document says which signal)."""
    import virt_qga.workflows.backup.run as run_mod
    from virt_qga.cli.main import _run

    monkeypatch.setattr(run_mod, "backup", _one_done_then_interrupted)
    monkeypatch.setenv("VIRT_QGA_STATE_DIR", str(tmp_path / "state"))
    prom, hooked = tmp_path / "backup.prom", tmp_path / "hook.json"
    code = _run(["-c", "test:///default", "--json", "backup", "a", "b", "c", "--to", str(tmp_path / "bk"),
                 "--metrics", str(prom), "--on-failure", f"cat > {hooked}"])
    assert code == 130
    out, err = capsys.readouterr()
    assert json.loads(out) == {"ok": False, "error": "Interrupted", "message": "interrupted by SIGTERM",
                               "exit_code": 130}
    assert err == "virt-qga: error: interrupted by SIGTERM\n"   # one line: no blank one before it
    m = _samples(prom)
    assert m[("virt_qga_backup_run_exit_code", ())] == 130
    assert m[("virt_qga_backup_success", (("domain", "a"),))] == 1
    assert m[("virt_qga_backup_last_success_timestamp_seconds", (("domain", "a"),))] == 1_700_000_000.0
    for dom in ("b", "c"):
        assert m[("virt_qga_backup_success", (("domain", dom),))] == 0
        assert m[("virt_qga_backup_exit_code", (("domain", dom),))] == 130
    doc = json.loads(hooked.read_text())
    assert doc["interrupted"] == "SIGTERM" and doc["exit_code"] == 130
    assert [(b["domain"], b["exit_code"]) for b in doc["backups"]] == [("a", 0), ("b", 130), ("c", 130)]


def test_exclude_globs() -> None:
    from virt_qga.workflows.backup import select_domains

    names = ["web1", "web2", "db1", "test-a", "web1"]
    assert select_domains(names, ("test-*",)) == ["web1", "web2", "db1"]
    assert select_domains(names, ("web?", "db*")) == ["test-a"]


def test_all_include_inactive_and_exclude_pick_the_domains(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """libvirt's test driver (in this process: it keeps what is defined in it) has one
    running domain, ``test``; two shut-off ones are defined here. ``--all`` takes the
    running one, ``--include-inactive`` the others too, ``--exclude`` leaves names out;
    every selected domain has a result (here failures: the test driver has no disks to
    copy), and no other domain has one."""
    from click.testing import CliRunner

    from virt_qga.cli.main import cli
    from virt_qga.connection import list_running_domains, open_connection

    uri = "test:///default"
    conn = open_connection(uri)
    for name in ("idle-a", "idle-b"):
        if name not in conn.listDefinedDomains():
            conn.defineXML(f"<domain type='test'><name>{name}</name><memory>65536</memory>"
                           "<os><type>hvm</type></os></domain>")
    assert list_running_domains(uri) == ["test"]
    assert list_running_domains(uri, inactive=True) == ["idle-a", "idle-b", "test"]
    monkeypatch.setenv("VIRT_QGA_STATE_DIR", str(tmp_path / "state"))

    def picked(*args: str) -> list[str]:
        r = CliRunner().invoke(cli, ["-c", uri, "--json", "backup", "--to", str(tmp_path / "bk"), *args])
        assert "Traceback" not in r.output, r.output
        return [b["domain"] for b in json.loads(r.stdout)["backups"]]

    try:
        assert picked("--all") == ["test"]
        assert picked("--all", "--include-inactive", "--exclude", "idle-b") == ["idle-a", "test"]
        assert picked("--all", "--include-inactive", "--exclude", "idle-*", "--jobs", "3") == ["test"]
    finally:  # libvirt objects left to interpreter shutdown complain from their __del__
        import gc

        from virt_qga import connection

        for key in [k for k in connection._connections if k.endswith(uri)]:
            connection._connections.pop(key).close()
        gc.collect()


@pytest.mark.parametrize("hold", [True, False])
def test_forward_defers_while_a_worker_holds(hold: bool) -> None:
    """A worker's guard installs no handler; a signal forwarded to it waits while it
    holds (its thaw, its cleanup) and is raised at release(), else lands at once."""
    import signal
    import threading

    from virt_qga.errors import Interrupted
    from virt_qga.workflows.signals import Interrupts, forward

    got: dict[str, Any] = {}
    ready, sent = threading.Event(), threading.Event()

    def worker() -> None:
        try:
            with Interrupts() as guard:
                if hold:
                    guard.hold()
                ready.set()
                sent.wait(5)
                for _ in range(50):       # "the thaw": 0.5 s of Python work and waits
                    time.sleep(0.01)
                got["section done"] = True
                guard.release()
                got["after release"] = True
        except Interrupted as exc:
            got["signum"] = exc.signum

    t = threading.Thread(target=worker)
    t.start()
    assert ready.wait(5)
    assert t.ident is not None
    forward(t.ident, signal.SIGTERM)
    sent.set()
    t.join(10)
    if hold:
        assert got == {"section done": True, "signum": signal.SIGTERM}
    else:
        assert got == {"signum": signal.SIGTERM}


def test_a_failing_hook_is_reported_and_leaves_the_exit_code(tmp_path: Path) -> None:
    p = _cli("--json", "backup", "no-such-domain", "--to", str(tmp_path / "bk"),
             "--on-failure", "cat > /dev/null; echo broken >&2; exit 3",
             env={"VIRT_QGA_CONNECT": "test:///default", "VIRT_QGA_STATE_DIR": str(tmp_path / "s")})
    assert p.returncode == ExitCode.DOMAIN, p.stderr          # the run's code, not the hook's
    hook = json.loads(p.stdout)["on_failure"]
    assert hook["ok"] is False and hook["exit_code"] == 3 and hook["stderr"] == "broken\n"
    human = _cli("backup", "no-such-domain", "--to", str(tmp_path / "bk"), "--on-failure", "exit 3",
                 env={"VIRT_QGA_CONNECT": "test:///default", "VIRT_QGA_STATE_DIR": str(tmp_path / "s")})
    assert human.returncode == ExitCode.DOMAIN
    assert "on-failure command failed: exited with status 3" in human.stderr


def test_backup_prune_skips_a_domain_being_backed_up(tmp_path: Path) -> None:
    """The prune takes the lock a backup of the domain holds (found from the manifests);
    held by someone else: that domain is left alone, exit 10, the others are pruned."""
    from virt_qga.workflows.journal import domain_key
    from virt_qga.workflows.lock import DomainLock, lock_path

    store = Store(tmp_path / "store")
    for domain in ("vm", "other"):
        for day in (1, 2):
            at = datetime(2026, 11, day, 2, 0, tzinfo=UTC)
            name = backup_name(at)
            with store.writing(domain, name, name) as partial:
                Manifest(domain=domain, name=name, chain=name, level="full", method="backup-api",
                         consistency="filesystem", started=iso_time(at), uuid=f"uuid-{domain}",
                         uri="qemu:///system").write(partial)
    state = tmp_path / "state"
    with DomainLock(lock_path(state, domain_key("qemu:///system", "vm", "uuid-vm")), domain="vm",
                    operation="backup"):
        p = _cli("--json", "backup-prune", str(tmp_path / "store"), "--keep-last", "1",
                 env={"VIRT_QGA_STATE_DIR": str(state)})
    assert p.returncode == 5, p.stderr                       # one domain pruned, one not
    plans = {d["domain"]: d for d in json.loads(p.stdout)["domains"]}
    assert plans["vm"]["exit_code"] == ExitCode.LOCKED and plans["vm"]["removed"] == []
    assert "lock" in plans["vm"]["error"]
    assert plans["other"]["removed"] == ["20261101T020000Z"]
    assert len(store.chains("vm")) == 2 and len(store.chains("other")) == 1


def test_prune_of_an_empty_store_says_so(tmp_path: Path) -> None:
    p = _cli("backup-prune", str(tmp_path), "--keep-last", "2")
    assert p.returncode == 0 and p.stdout == f"{tmp_path}: no backups, nothing to prune\n", p.stderr


def test_a_forwarded_interrupt_between_tasks_prints_no_thread_traceback() -> None:
    """A signal forwarded to a worker just after its backup returned surfaces in the pool's
    thread, outside any workflow: the run's excepthook drops it, and only it."""
    import threading

    from virt_qga.errors import Interrupted
    from virt_qga.workflows.backup.many import _quiet_interrupts

    seen: list[type[BaseException] | None] = []
    hook = _quiet_interrupts(lambda args: seen.append(args.exc_type))
    saved = threading.excepthook
    threading.excepthook = hook
    try:
        for exc in (Interrupted(15), ValueError("a bug")):
            def boom(e: BaseException = exc) -> None:
                raise e
            t = threading.Thread(target=boom)
            t.start()
            t.join()
    finally:
        threading.excepthook = saved
    assert seen == [ValueError]
