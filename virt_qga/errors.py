"""The one exception hierarchy of virt-qga.

Errors are grouped by what a caller can *do* about them, not by where they came from::

    VirtQgaError                      anything virt-qga raises on purpose       exit 1
    +-- BadInputError                 caller's arguments are wrong; nothing sent exit 2
    +-- AgentUnavailableError         no agent to talk to                       exit 3
    |   +-- AgentNotConfiguredError   permanent: domain has no agent channel
    |   +-- AgentNotConnectedError    transient: channel exists, agent silent
    |   +-- CommandNotSupportedError  agent does not know / has disabled it
    +-- AgentTimeoutError             the command (or a wait) hit its deadline  exit 4
    +-- GuestError                    the agent answered with an error          exit 1
    |   +-- GuestFrozenError          refused because filesystems are frozen
    +-- DomainError                   the domain itself                          exit 6
    |   +-- DomainNotFoundError
    |   +-- DomainNotRunningError
    +-- ProtocolError                 malformed or unexpected reply             exit 1
    +-- HostError                     libvirt / host-side failure               exit 1
    +-- LockBusyError                 another job holds the domain's lock      exit 10
    +-- OperationError                a workflow ended in a non-clean state     (per case)

Transient errors (worth retrying) are exactly those with ``transient = True``:
``AgentNotConnectedError`` and ``AgentTimeoutError``. Retry policies (see
``virt_qga.retry``) use :func:`is_transient` and never retry anything else.

Every error carries ``exit_code``; the CLI maps an error to an exit status by that
attribute alone, so the table in :mod:`virt_qga.exitcodes` is the single source.
"""

from __future__ import annotations

from typing import Any

from virt_qga.exitcodes import ExitCode

__all__ = [
    "AgentNotConfiguredError",
    "AgentNotConnectedError",
    "AgentTimeoutError",
    "AgentUnavailableError",
    "BadInputError",
    "CommandNotSupportedError",
    "DomainError",
    "DomainNotFoundError",
    "DomainNotRunningError",
    "GuestError",
    "GuestFrozenError",
    "HostError",
    "LockBusyError",
    "OperationError",
    "ProtocolError",
    "VirtQgaError",
    "is_transient",
]


class VirtQgaError(Exception):
    """Base class. ``str(err)`` is always one line, fit for a user's terminal."""

    exit_code: ExitCode = ExitCode.FAILED
    transient: bool = False

    def __init__(self, message: str, *, domain: str | None = None, command: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.domain = domain
        self.command = command

    def __str__(self) -> str:
        prefix = ""
        if self.domain:
            prefix += f"{self.domain}: "
        if self.command and self.command not in self.message:
            prefix += f"{self.command}: "
        return (prefix + self.message).replace("\n", " ").strip()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description, used for ``--json`` error output."""
        out: dict[str, Any] = {
            "error": type(self).__name__,
            "message": str(self),
            "exit_code": int(self.exit_code),
        }
        if self.domain:
            out["domain"] = self.domain
        if self.command:
            out["command"] = self.command
        return out


class BadInputError(VirtQgaError):
    """The caller's input is invalid. Nothing was sent or changed."""

    exit_code = ExitCode.USAGE

    def __init__(self, message: str, *, field: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.field = field


class AgentUnavailableError(VirtQgaError):
    """There is no usable agent on the other side."""

    exit_code = ExitCode.AGENT_UNAVAILABLE


class AgentNotConfiguredError(AgentUnavailableError):
    """Permanent: the domain has no guest agent channel. Retrying will not help."""


class AgentNotConnectedError(AgentUnavailableError):
    """Transient: the channel exists but the agent is not (yet) answering."""

    transient = True


class CommandNotSupportedError(AgentUnavailableError):
    """The agent does not know this command, or has it disabled."""

    def __init__(self, message: str, *, agent_version: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.agent_version = agent_version


class AgentTimeoutError(VirtQgaError):
    """A command or a wait hit its deadline. The agent may still act on it."""

    exit_code = ExitCode.TIMEOUT
    transient = True


class GuestError(VirtQgaError):
    """The agent answered with an error object: ``{"error": {"class", "desc"}}``."""

    def __init__(self, message: str, *, error_class: str = "GenericError", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.error_class = error_class

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["error_class"] = self.error_class
        return out


class GuestFrozenError(GuestError):
    """The agent refused because the guest's filesystems are frozen."""


class DomainError(VirtQgaError):
    exit_code = ExitCode.DOMAIN


class DomainNotFoundError(DomainError):
    """No domain of that name (or UUID) on this connection."""


class DomainNotRunningError(DomainError):
    """The domain exists but is not running (shut off, paused, crashed...)."""

    def __init__(self, message: str, *, state: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.state = state


class ProtocolError(VirtQgaError):
    """The reply was malformed, oversized or did not match the spec."""


class HostError(VirtQgaError):
    """A host-side (libvirt, QEMU, filesystem) operation failed."""


class LockBusyError(VirtQgaError):
    """Another virt-qga job holds this domain's lock."""

    exit_code = ExitCode.LOCKED


class OperationError(VirtQgaError):
    """A workflow could not finish cleanly.

    ``state`` says what was left (e.g. ``"rolled-back"``, ``"pending"``,
    ``"inconsistent"``, ``"maybe-frozen"``), ``undo`` is a shell command that would
    repair it when one is known, and ``result`` carries the workflow's partial report.
    """

    def __init__(
        self,
        message: str,
        *,
        exit_code: ExitCode = ExitCode.FAILED,
        state: str | None = None,
        undo: str | None = None,
        result: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.exit_code = exit_code
        self.state = state
        self.undo = undo
        self.result = result

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.state:
            out["state"] = self.state
        if self.undo:
            out["undo"] = self.undo
        if self.result is not None:
            out["result"] = self.result
        return out


def is_transient(exc: BaseException) -> bool:
    """True when retrying the same call may succeed."""
    return isinstance(exc, VirtQgaError) and exc.transient
