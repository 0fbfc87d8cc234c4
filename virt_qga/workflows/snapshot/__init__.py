"""Consistent snapshots: pre-check, (hooks,) freeze, snapshot, thaw, verify.

:func:`snapshot` is the library entry point; ``virt-qga snapshot`` and the Ansible
module ``virt_qga_snapshot`` are thin callers.

The promise is that the guest is never left frozen:

* the thaw runs in ``finally`` on every path, and SIGINT/SIGTERM are turned into an
  exception for the duration of the job so that path is taken
  (:mod:`virt_qga.workflows.signals`);
* a separate **thaw guard** process (:mod:`virt_qga.workflows.thaw_guard`), started and
  confirmed ready before the freeze, thaws at ``max_frozen`` seconds or as soon as this
  process dies;
* a **journal** (:mod:`virt_qga.workflows.journal`) says what was in progress, so
  ``virt-qga recover`` can thaw and clean up after a run that died; a **lock**
  (:mod:`virt_qga.workflows.lock`) keeps two jobs on one domain apart.

Everything that can be decided or built before the freeze is (disk plan, overlay
names, snapshot XML and flags, free-space checks, journal write, guard start-up), so
the frozen window holds three calls: freeze, ``snapshotCreateXML`` (or the host
command) and thaw.

The package, one concern per module: :mod:`.options` (what can be asked),
:mod:`.result` (what was achieved), :mod:`.job` (one job's state), :mod:`.checks`
(pre-checks), :mod:`.plan` (the disk plan), :mod:`.hooks` (guest hooks, host command),
:mod:`.frozen` (freeze, snapshot, thaw), :mod:`.rollback`, :mod:`.run` (the
orchestration and the failure report) and :mod:`.commit` (commit-back).
"""

from __future__ import annotations

from virt_qga.workflows.snapshot.commit import commit_back, overlays_to_commit
from virt_qga.workflows.snapshot.job import Job
from virt_qga.workflows.snapshot.options import (
    FREEZE_COMMANDS,
    MIN_FREE_BYTES,
    MODES,
    QUIESCE_POLICIES,
    SnapshotOptions,
)
from virt_qga.workflows.snapshot.result import SnapshotResult, achieved_consistency, decide_consistency
from virt_qga.workflows.snapshot.run import execute

__all__ = [
    "FREEZE_COMMANDS",
    "MIN_FREE_BYTES",
    "MODES",
    "QUIESCE_POLICIES",
    "SnapshotOptions",
    "SnapshotResult",
    "achieved_consistency",
    "commit_back",
    "decide_consistency",
    "overlays_to_commit",
    "snapshot",
]


def snapshot(domain: str, uri: str | None = None, *,
             options: SnapshotOptions | None = None) -> SnapshotResult:
    """Take a consistent snapshot of ``domain`` (see the module docstring).

    Returns a :class:`SnapshotResult` whose ``exit_code`` is 0, 7 (crash-consistent
    only) or 5 (post-thaw hook failed). Every failure raises a ``VirtQgaError``; an
    :class:`~virt_qga.errors.OperationError` says what state was left
    (``rolled-back``, ``maybe-frozen``, ``inconsistent``) and how to undo it.
    """
    return execute(Job(domain, uri, options or SnapshotOptions()))
