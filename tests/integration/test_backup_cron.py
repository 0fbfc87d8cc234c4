"""A nightly run against real lab guests: two guests and a missing domain backed up
--jobs 2 at a time, with the metrics file, syslog records and --on-failure hook a
cron job leaves behind; then retention, dry-run first, and after a real backup.

The stack cannot change any of this (it is the CLI around the backup engine, which
test_backup*.py run on every stack), hence the host stack only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_backup import ROOT, active_source, assert_merged_back
from virt_qga.lab import LabGuest

MISSING = "no-such-domain"


def run(g: LabGuest, tmp: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    env = dict(os.environ, VIRT_QGA_STATE_DIR=str(tmp / "state"),
               VIRT_QGA_SYSLOG_SOCKET=str(tmp / "log.sock"))
    p = subprocess.run([sys.executable, "-m", "virt_qga.cli.main", "-c", str(g.uri), "--json", *args],
                       capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    try:
        return p.returncode, json.loads(p.stdout), p.stderr
    except ValueError as exc:
        raise AssertionError(f"no JSON (rc {p.returncode}): {p.stdout!r} {p.stderr!r}") from exc


def metrics(path: Path) -> dict[tuple[str, str], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, s.labels.get("domain", "")): s.value
            for fam in text_string_to_metric_families(path.read_text()) for s in fam.samples
            if "consistency" not in s.labels and "level" not in s.labels}


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.stacks("host")
def test_nightly_run_over_many_domains(fresh_guest: Callable[..., LabGuest], tmp_path: Path) -> None:
    g1, g2 = fresh_guest(), fresh_guest()
    dest, prom, hook = tmp_path / "bk", tmp_path / "textfile" / "virt_qga_backup.prom", tmp_path / "hook.json"
    prom.parent.mkdir()
    log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    log.bind(str(tmp_path / "log.sock"))
    log.settimeout(1)
    common = ["--method", "snapshot", "--to", str(dest), "--jobs", "2", "--metrics", str(prom)]

    # night 1: one domain does not exist -> partial (5), the hook gets the document
    rc, doc, err = run(g1, tmp_path, "backup", g1.name, MISSING, g2.name, *common, "--syslog",
                       "--on-failure", f"cat > {hook}")
    assert rc == 5, err
    assert [(b["domain"], b["state"], b["exit_code"]) for b in doc["backups"]] == [
        (g1.name, "done", 0), (MISSING, "failed", 6), (g2.name, "done", 0)]
    assert doc["on_failure"]["ok"] is True
    sent = json.loads(hook.read_text())
    assert sent["exit_code"] == 5 and sent["backups"] == doc["backups"]
    m = metrics(prom)
    assert m[("virt_qga_backup_run_exit_code", "")] == 5
    assert [m[("virt_qga_backup_success", d)] for d in (g1.name, MISSING, g2.name)] == [1, 0, 1]
    assert m[("virt_qga_backup_exit_code", MISSING)] == 6
    first = {b["domain"]: b for b in doc["backups"]}
    assert m[("virt_qga_backup_last_success_timestamp_seconds", g1.name)] == first[g1.name]["finished_at"]
    assert ("virt_qga_backup_last_success_timestamp_seconds", MISSING) not in m  # never had one
    records = []
    while True:
        try:
            records.append(log.recv(65536).decode())
        except TimeoutError:
            break
    log.close()
    assert any(f"domain={g1.name}: full backup" in r for r in records), records
    assert any(f"domain={MISSING}: backup failed (failed, exit 6)" in r for r in records), records
    for g in (g1, g2):
        assert_merged_back(g)

    # night 2: all good (exit 0, no hook); a second chain each
    rc, doc, err = run(g1, tmp_path, "backup", g1.name, g2.name, *common, "--on-failure", "exit 1")
    assert rc == 0 and "on_failure" not in doc, err
    assert len(list((dest / g1.name).iterdir())) == 2

    # retention, dry run: says what goes, changes nothing
    before = tree(dest)
    rc, plan, err = run(g1, tmp_path, "backup-prune", str(dest), "--keep-last", "1", "--dry-run")
    assert rc == 0, err
    by_domain = {p["domain"]: p for p in plan["domains"]}
    old = first[g1.name]["name"]
    assert by_domain[g1.name]["removed"] == [old] and list(by_domain[g1.name]["kept"].values()) == ["last"]
    assert tree(dest) == before

    # night 3, g1 only, with retention: the oldest chain goes after the backup
    rc, doc, err = run(g1, tmp_path, "backup", g1.name, *common, "--keep-last", "2")
    assert rc == 0, err
    [b] = doc["backups"]
    assert b["pruned"] == [str(dest / g1.name / old)]
    assert b["retention"]["removed"] == [old] and sorted(b["retention"]["kept"].values()) == ["last", "last"]
    assert sorted(p.name for p in (dest / g1.name).iterdir()) == sorted(b["retention"]["kept"])
    assert len(list((dest / g2.name).iterdir())) == 2        # another domain's backups untouched
    # (a failed domain keeping its last success is checked in tests/unit/test_backup_cron_unit.py)
    m = metrics(prom)
    assert m[("virt_qga_backup_last_success_timestamp_seconds", g1.name)] == b["finished_at"]


@pytest.mark.stacks("host")
def test_sigterm_with_jobs_cleans_up_every_running_domain(fresh_guest: Callable[..., LabGuest],
                                                          tmp_path: Path) -> None:
    """Workers cannot take signals; the main thread forwards SIGTERM into each running
    backup, which cleans up as a single one does: exit 130, both guests back on their
    base image, no partial directory, no journal; and the metrics file still says so."""
    g1, g2 = fresh_guest(), fresh_guest()
    state, dest, shim = tmp_path / "state", tmp_path / "bk", tmp_path / "bin"
    prom = tmp_path / "backup.prom"
    shim.mkdir()
    real = shutil.which("qemu-img")
    (shim / "qemu-img").write_text(f'#!/bin/sh\n[ "$1" = convert ] && exec sleep 60\nexec {real} "$@"\n')
    (shim / "qemu-img").chmod(0o755)
    proc = subprocess.Popen([sys.executable, "-m", "virt_qga.cli.main", "-c", str(g1.uri), "--json",
                             "backup", g1.name, g2.name, "--jobs", "2", "--method", "snapshot",
                             "--to", str(dest), "--metrics", str(prom)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, VIRT_QGA_STATE_DIR=str(state),
                                     PATH=f"{shim}{os.pathsep}{os.environ['PATH']}"))
    deadline = time.monotonic() + 60
    while any(active_source(g) == str(g.data_disk) for g in (g1, g2)):  # both copying
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert time.monotonic() - t0 < 30                      # not the shim's 60 s
    assert json.loads(out)["exit_code"] == 130
    m = metrics(prom)
    assert m[("virt_qga_backup_run_exit_code", "")] == 130
    assert [m[("virt_qga_backup_exit_code", g.name)] for g in (g1, g2)] == [130, 130]
    for g in (g1, g2):
        assert_merged_back(g)
    assert not list(dest.rglob(".*.partial"))
    assert not list((state / "journal").glob("*.json"))
