"""``backup --metrics FILE``: the run as a node_exporter textfile.

node_exporter's textfile collector reads ``*.prom`` files from one directory; this
module writes one with ``prometheus_client`` (its ``write_to_textfile`` writes a
temporary file and renames it, so the collector never reads half a file), from a
registry of its own (never the process's global one).

Per domain (label ``domain``):

* ``virt_qga_backup_last_success_timestamp_seconds``: when the domain's last good
  backup finished. A domain that failed this run keeps the value it had: from the
  previous file, else from the newest backup in the store; a failure never erases it.
* ``virt_qga_backup_success``: 1 if this run made a backup of the domain, else 0;
  ``virt_qga_backup_exit_code``: the domain's own exit code (the exit-code table).
* ``virt_qga_backup_duration_seconds``, ``virt_qga_backup_bytes`` (written by this
  run), ``virt_qga_backup_chain_length``: of this run's backup (0 when it failed).
* ``virt_qga_backup_consistency{consistency}`` and ``virt_qga_backup_level{level}``:
  1 for this run's value (application, filesystem, crash, offline; full, inc).

And for the run: ``virt_qga_backup_run_exit_code`` (the aggregated code the command
exits with) and ``virt_qga_backup_run_timestamp_seconds``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from virt_qga.errors import BadInputError
from virt_qga.workflows.backup.store import parse_iso_time

if TYPE_CHECKING:
    from virt_qga.workflows.backup.result import BackupResult
    from virt_qga.workflows.backup.store import Store

__all__ = ["LAST_SUCCESS", "previous_successes", "write_metrics"]

PREFIX = "virt_qga_backup"
LAST_SUCCESS = f"{PREFIX}_last_success_timestamp_seconds"


def previous_successes(path: Path) -> dict[str, float]:
    """domain -> last-success time from an earlier metrics file (empty if none or unreadable)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = path.read_text()
    except OSError:
        return {}
    out: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS and "domain" in sample.labels:
                    out[sample.labels["domain"]] = float(sample.value)
    except ValueError:
        return {}  # a file someone else broke: the store still knows
    return out


def _store_success(store: Store, domain: str) -> float | None:
    """When the domain's newest stored backup finished (its manifest), or None."""
    try:
        chain = store.latest_chain(domain)
    except BadInputError:
        return None
    if chain is None or chain.last is None:
        return None
    m = chain.last.manifest
    try:
        return parse_iso_time(m.finished or m.started).timestamp()
    except ValueError:
        return None


def write_metrics(path: Path, results: list[BackupResult], exit_code: int, store: Store, *,
                  now: float | None = None) -> None:
    """Write the textfile for this run at ``path`` (atomically; see the module docstring)."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    before = previous_successes(path)
    reg = CollectorRegistry(auto_describe=True)

    def gauge(name: str, doc: str, *labels: str) -> Gauge:
        return Gauge(f"{PREFIX}_{name}", doc, ["domain", *labels], registry=reg)

    last = gauge("last_success_timestamp_seconds", "UNIX time the last good backup finished")
    ok = gauge("success", "1 if this run backed the domain up, else 0")
    code = gauge("exit_code", "The domain's exit code in this run (virt-qga's exit-code table)")
    duration = gauge("duration_seconds", "Duration of this run's backup of the domain")
    size = gauge("bytes", "Bytes this run's backup wrote (an incremental's delta)")
    chain = gauge("chain_length", "Backups in the chain, this run's included (0: none made)")
    consistency = gauge("consistency", "1 for the consistency of this run's backup", "consistency")
    level = gauge("level", "1 for the level of this run's backup", "level")
    for r in results:
        ok.labels(r.domain).set(1 if r.ok else 0)
        code.labels(r.domain).set(r.exit_code)
        duration.labels(r.domain).set(r.timings_s.get("total", 0.0))
        size.labels(r.domain).set(r.bytes_written if r.ok else 0)
        chain.labels(r.domain).set(r.chain_length if r.ok else 0)
        if r.ok and r.consistency:
            consistency.labels(r.domain, r.consistency).set(1)
        if r.ok and r.level:
            level.labels(r.domain, r.level).set(1)
        success = r.finished_at if r.ok else before.get(r.domain) or _store_success(store, r.domain)
        if success is not None:
            last.labels(r.domain).set(success)
    run_code = Gauge(f"{PREFIX}_run_exit_code", "Exit code of the whole run", registry=reg)
    run_code.set(exit_code)
    run_time = Gauge(f"{PREFIX}_run_timestamp_seconds", "UNIX time the run ended", registry=reg)
    run_time.set(time.time() if now is None else now)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), reg)
