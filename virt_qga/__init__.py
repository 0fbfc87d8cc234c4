"""virt-qga: the QEMU guest agent, put to work for libvirt/KVM operators.

The public Python API is what this package exports (``__all__``); everything else is
internal and may change. Names are imported on first use, so ``import virt_qga`` (and
the CLI's start-up) stays cheap::

    from virt_qga import GuestAgent, SnapshotOptions, snapshot

    agent = GuestAgent.for_domain("web1", "qemu:///system")
    print(agent.get_osinfo()["pretty-name"])
    result = snapshot("web1", "qemu:///system", options=SnapshotOptions(max_frozen=5))
    print(result.consistency, result.frozen_window_ms)

Failures raise :class:`VirtQgaError` subclasses (see :mod:`virt_qga.errors`); a workflow
that could not finish cleanly raises :class:`OperationError`, whose ``state`` says what
it left and whose ``undo`` says how to repair it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: The release version, written only here: setup.cfg reads it (attr:, without importing)
#: and tools/sync_version.py keeps the collection's galaxy.yml and CHANGELOG.md equal.
__version__ = "0.1.0"

#: Public name -> "module:attribute" it comes from.
_EXPORTS: dict[str, str] = {
    # the typed agent and how targets are named
    "GuestAgent": "virt_qga.agent:GuestAgent",
    "Target": "virt_qga.workflows.target:Target",
    "State": "virt_qga.outcome:State",
    "ExitCode": "virt_qga.exitcodes:ExitCode",
    # consistent snapshots
    "snapshot": "virt_qga.workflows.snapshot:snapshot",
    "commit_back": "virt_qga.workflows.snapshot:commit_back",
    "SnapshotOptions": "virt_qga.workflows.snapshot:SnapshotOptions",
    "SnapshotResult": "virt_qga.workflows.snapshot:SnapshotResult",
    "recover": "virt_qga.workflows.recover:recover",
    # backups
    "backup": "virt_qga.workflows.backup:backup",
    "backup_many": "virt_qga.workflows.backup:backup_many",
    "BackupOptions": "virt_qga.workflows.backup:BackupOptions",
    "BackupResult": "virt_qga.workflows.backup:BackupResult",
    "RunInterrupted": "virt_qga.workflows.backup:RunInterrupted",
    "restore": "virt_qga.workflows.backup.restore:restore",
    "RestoreOptions": "virt_qga.workflows.backup.restore:RestoreOptions",
    "RestoreResult": "virt_qga.workflows.backup.restore:RestoreResult",
    "verify_backups": "virt_qga.workflows.backup.verify:verify_backups",
    "VerifyReport": "virt_qga.workflows.backup.verify:VerifyReport",
    "list_backups": "virt_qga.workflows.backup.listing:list_backups",
    "BackupListing": "virt_qga.workflows.backup.listing:BackupListing",
    # guest commands and files
    "run_command": "virt_qga.workflows.exec:run",
    "ExecResult": "virt_qga.workflows.exec:ExecResult",
    "push_file": "virt_qga.workflows.files:push",
    "pull_file": "virt_qga.workflows.files:pull",
    "CopyResult": "virt_qga.workflows.files:CopyResult",
    # vCPU and memory hotplug
    "read_vcpus": "virt_qga.workflows.vcpus:read_views",
    "set_vcpu_count": "virt_qga.workflows.vcpus:set_vcpu_count",
    "VcpuResult": "virt_qga.workflows.vcpus:VcpuResult",
    "read_memory": "virt_qga.workflows.memory:read_view",
    "plug_memory": "virt_qga.workflows.memory:plug",
    "unplug_memory": "virt_qga.workflows.memory:unplug",
    "resize_virtio_mem": "virt_qga.workflows.memory:resize_virtio_mem",
    "MemoryResult": "virt_qga.workflows.memory:MemoryResult",
    # the errors
    **{name: f"virt_qga.errors:{name}" for name in (
        "VirtQgaError", "BadInputError", "AgentUnavailableError", "AgentNotConfiguredError",
        "AgentNotConnectedError", "CommandNotSupportedError", "AgentTimeoutError", "GuestError",
        "GuestFrozenError", "GuestExecStartError", "DomainError", "DomainNotFoundError",
        "DomainNotRunningError", "ProtocolError", "HostError", "LockBusyError", "OperationError",
        "Interrupted")},
}

#: The public API (each name is in _EXPORTS; a unit test keeps the two equal).
__all__ = [
    "AgentNotConfiguredError",
    "AgentNotConnectedError",
    "AgentTimeoutError",
    "AgentUnavailableError",
    "BackupListing",
    "BackupOptions",
    "BackupResult",
    "BadInputError",
    "CommandNotSupportedError",
    "CopyResult",
    "DomainError",
    "DomainNotFoundError",
    "DomainNotRunningError",
    "ExecResult",
    "ExitCode",
    "GuestAgent",
    "GuestError",
    "GuestExecStartError",
    "GuestFrozenError",
    "HostError",
    "Interrupted",
    "LockBusyError",
    "MemoryResult",
    "OperationError",
    "ProtocolError",
    "RestoreOptions",
    "RestoreResult",
    "RunInterrupted",
    "SnapshotOptions",
    "SnapshotResult",
    "State",
    "Target",
    "VcpuResult",
    "VerifyReport",
    "VirtQgaError",
    "backup",
    "backup_many",
    "commit_back",
    "list_backups",
    "plug_memory",
    "pull_file",
    "push_file",
    "read_memory",
    "read_vcpus",
    "recover",
    "resize_virtio_mem",
    "restore",
    "run_command",
    "set_vcpu_count",
    "snapshot",
    "unplug_memory",
    "verify_backups",
]


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'virt_qga' has no attribute {name!r}")
    module, attr = target.split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # for type checkers and API documentation; at run time __getattr__ loads them
    from virt_qga.agent import GuestAgent
    from virt_qga.errors import (
        AgentNotConfiguredError,
        AgentNotConnectedError,
        AgentTimeoutError,
        AgentUnavailableError,
        BadInputError,
        CommandNotSupportedError,
        DomainError,
        DomainNotFoundError,
        DomainNotRunningError,
        GuestError,
        GuestExecStartError,
        GuestFrozenError,
        HostError,
        Interrupted,
        LockBusyError,
        OperationError,
        ProtocolError,
        VirtQgaError,
    )
    from virt_qga.exitcodes import ExitCode
    from virt_qga.outcome import State
    from virt_qga.workflows.backup import BackupOptions, BackupResult, RunInterrupted, backup, backup_many
    from virt_qga.workflows.backup.listing import BackupListing, list_backups
    from virt_qga.workflows.backup.restore import RestoreOptions, RestoreResult, restore
    from virt_qga.workflows.backup.verify import VerifyReport, verify_backups
    from virt_qga.workflows.exec import ExecResult
    from virt_qga.workflows.exec import run as run_command
    from virt_qga.workflows.files import CopyResult
    from virt_qga.workflows.files import pull as pull_file
    from virt_qga.workflows.files import push as push_file
    from virt_qga.workflows.memory import MemoryResult, resize_virtio_mem
    from virt_qga.workflows.memory import plug as plug_memory
    from virt_qga.workflows.memory import read_view as read_memory
    from virt_qga.workflows.memory import unplug as unplug_memory
    from virt_qga.workflows.recover import recover
    from virt_qga.workflows.snapshot import SnapshotOptions, SnapshotResult, commit_back, snapshot
    from virt_qga.workflows.target import Target
    from virt_qga.workflows.vcpus import VcpuResult, set_vcpu_count
    from virt_qga.workflows.vcpus import read_views as read_vcpus
