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
    |   +-- GuestExecStartError       guest-exec could not start the program  (exec: 126/127)
    +-- DomainError                   the domain itself                          exit 6
    |   +-- DomainNotFoundError
    |   +-- DomainNotRunningError
    +-- ProtocolError                 malformed or unexpected reply             exit 1
    +-- HostError                     libvirt / host-side failure               exit 1
    +-- LockBusyError                 another job holds the domain's lock      exit 10
    +-- OperationError                a workflow ended in a non-clean state     by its state

    Interrupted (a KeyboardInterrupt) SIGINT/SIGTERM turned into an exception  exit 130

Transient errors (worth retrying) are exactly those with ``transient = True``:
``AgentNotConnectedError`` and ``AgentTimeoutError``. Retry policies (see
``virt_qga.retry``) use :func:`is_transient` and never retry anything else.

Every error carries ``exit_code``; the CLI maps an error to an exit status by that
attribute alone, so the tables in :mod:`virt_qga.exitcodes` are the single source. An
:class:`OperationError` derives its code from its :class:`~virt_qga.outcome.State`
(and, for clean states, from its cause).

**Option names in messages.** A message that names a workflow option writes it with
:func:`option_ref` (``f"{option_ref('max_frozen')} must be ..."``). ``str(err)`` spells it
the way the current front end does (``--max-frozen`` on the CLI, ``max_frozen`` in
Ansible; see :func:`set_option_spelling`), and ``err.field`` holds the neutral name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from virt_qga.exitcodes import EXIT_BY_STATE, ExitCode
from virt_qga.outcome import State

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
    "GuestExecStartError",
    "GuestFrozenError",
    "HostError",
    "Interrupted",
    "LockBusyError",
    "OperationError",
    "ProtocolError",
    "VirtQgaError",
    "is_transient",
    "option_ref",
    "render_options",
    "set_option_spelling",
]

#: Option references inside messages: NUL-delimited names, which no argv word, path or
#: guest text can contain, so user input inside a message is never mistaken for one.
_REF = re.compile("\0([A-Za-z0-9_]+)\0")
_spelling: Callable[[str], str] = str


def option_ref(name: str) -> str:
    """A reference to workflow option ``name`` for use inside an error message."""
    return f"\0{name}\0"


def set_option_spelling(spell: Callable[[str], str]) -> None:
    """Set how messages spell option names in this process (a front end calls it once)."""
    global _spelling
    _spelling = spell


def render_options(text: str, spell: Callable[[str], str] | None = None) -> str:
    """``text`` with every :func:`option_ref` spelled by ``spell`` (default: the front end's)."""
    how = spell or _spelling
    return _REF.sub(lambda m: how(m.group(1)), text)


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
        return render_options(prefix + self.message).replace("\n", " ").strip()

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


class GuestExecStartError(GuestError):
    """guest-exec could not start the program: ``not_found`` (the shell's 127) or not
    executable (126). ``virt-qga exec`` exits with those codes; elsewhere it is a guest
    error like any other (exit 1)."""

    def __init__(self, message: str, *, not_found: bool, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.not_found = not_found


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


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised into the main flow so that cleanup runs (exit 130).

    A ``KeyboardInterrupt`` so that ``except Exception`` never swallows it.
    """

    def __init__(self, signum: int | None = None) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def signal_name(self) -> str:
        import signal

        if self.signum is None:
            return "SIGINT"
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"


def exit_code_for(state: State, cause: BaseException | State | None = None) -> ExitCode:
    """The exit code of a workflow that ended in ``state`` because of ``cause``
    (see :data:`virt_qga.exitcodes.EXIT_BY_STATE`)."""
    code, fixed = EXIT_BY_STATE[state]
    if fixed or cause is None:
        return code
    if isinstance(cause, State):
        return exit_code_for(cause)
    if isinstance(cause, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(cause, VirtQgaError):
        return cause.exit_code
    return code


class OperationError(VirtQgaError):
    """A workflow could not finish cleanly.

    ``state`` says what was left (:class:`~virt_qga.outcome.State`: ``rolled-back``,
    ``pending``, ``inconsistent``, ``maybe-frozen``, ...), ``cause`` what stopped the
    workflow (an exception, or for a stale journal the state the dead run may have
    left); the exit code follows from both (:func:`exit_code_for`). ``undo`` is a shell
    command that would repair what was left when one is known, and ``result`` carries
    the workflow's partial report.
    """

    def __init__(
        self,
        message: str,
        *,
        state: State,
        cause: BaseException | State | None = None,
        undo: str | None = None,
        result: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.state = State(state)
        self.exit_code = exit_code_for(self.state, cause)
        self.undo = undo
        self.result = result

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["state"] = str(self.state)
        if self.undo:
            out["undo"] = self.undo
        if self.result is not None:
            out["result"] = self.result
        return out


def is_transient(exc: BaseException) -> bool:
    """True when retrying the same call may succeed."""
    return isinstance(exc, VirtQgaError) and exc.transient
