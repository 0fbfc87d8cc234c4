"""libvirt and agent error replies land in the right class of the hierarchy.

The libvirt exceptions here are stand-ins carrying (code, message) pairs as libvirt
reports them: newer codes (AGENT_COMMAND_TIMEOUT/FAILED, libvirt >= 11.2) cannot be
produced by the lab's libvirt 9.0, so the mapping is pinned with recorded messages.
"""

from __future__ import annotations

import pytest

from virt_qga import errors as E
from virt_qga.exitcodes import ExitCode
from virt_qga.libvirt_errors import map_libvirt_error
from virt_qga.outcome import State
from virt_qga.transport.replies import error_from_reply, sanitize


class FakeLibvirtError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self._code, self._msg = code, message

    def get_error_code(self) -> int:
        return self._code

    def get_error_message(self) -> str:
        return self._msg


CASES = [
    (42, "Domain not found: no domain with matching name 'x'", E.DomainNotFoundError),
    (55, "Requested operation is not valid: domain is not running", E.DomainNotRunningError),
    (74, "argument unsupported: QEMU guest agent is not configured", E.AgentNotConfiguredError),
    (86, "Guest agent is not responding: QEMU guest agent is not connected", E.AgentNotConnectedError),
    (86, "Guest agent is not responding: Guest agent not available for now", E.AgentNotConnectedError),
    (97, "Guest agent replied with wrong id to guest-sync command", E.AgentNotConnectedError),
    (112, "Guest agent didn't respond to command within timeout", E.AgentTimeoutError),
    (1, "internal error: unable to execute QEMU agent command 'guest-file-open': "
        "failed to open file '/nope' (mode: 'r'): No such file or directory", E.GuestError),
    (113, "unable to execute QEMU agent command 'guest-file-open': failed to open file", E.GuestError),
    (1, "internal error: unable to execute QEMU agent command 'guest-foo': "
        "The command guest-foo has not been found", E.CommandNotSupportedError),
    (1, "internal error: unable to execute QEMU agent command 'guest-exec': "
        "Command guest-exec has been disabled: the agent is in frozen state", E.GuestFrozenError),
    (1, "internal error: unable to execute QEMU agent command 'guest-exec': "
        "Command guest-exec has been disabled", E.CommandNotSupportedError),
    (38, "Cannot recv data: Connection reset by peer", E.HostError),
    (9, "operation failed: something else", E.HostError),
]


@pytest.mark.parametrize(("code", "message", "cls"), CASES)
def test_libvirt_errors_map_to_semantic_classes(code: int, message: str, cls: type) -> None:
    err = map_libvirt_error(FakeLibvirtError(code, message), domain="d1", command="guest-x")
    assert type(err) is cls
    assert "\n" not in str(err)
    assert str(err).startswith("d1: ")


def test_transient_classification() -> None:
    assert E.is_transient(E.AgentNotConnectedError("x"))
    assert E.is_transient(E.AgentTimeoutError("x"))
    assert not E.is_transient(E.AgentNotConfiguredError("x"))
    assert not E.is_transient(E.GuestError("x"))
    assert not E.is_transient(ValueError("x"))


def test_exit_codes_are_distinct_per_family() -> None:
    assert E.BadInputError("x").exit_code == ExitCode.USAGE
    assert E.CommandNotSupportedError("x").exit_code == ExitCode.AGENT_UNAVAILABLE
    assert E.AgentTimeoutError("x").exit_code == ExitCode.TIMEOUT
    assert E.DomainNotFoundError("x").exit_code == ExitCode.DOMAIN
    assert E.LockBusyError("x").exit_code == ExitCode.LOCKED
    assert E.OperationError("x", state=State.PARTIAL).exit_code == ExitCode.PARTIAL


def test_operation_error_code_follows_state_and_cause() -> None:
    # states that need a human keep their code whatever stopped the workflow
    timeout = E.AgentTimeoutError("slow")
    assert E.OperationError("x", state=State.MAYBE_FROZEN, cause=timeout).exit_code == ExitCode.MAYBE_FROZEN
    assert E.OperationError("x", state=State.INCONSISTENT, cause=KeyboardInterrupt()).exit_code \
        == ExitCode.INCONSISTENT
    # clean states take the cause's code, else their own
    assert E.OperationError("x", state=State.ROLLED_BACK, cause=timeout).exit_code == ExitCode.TIMEOUT
    assert E.OperationError("x", state=State.ROLLED_BACK, cause=E.Interrupted(15)).exit_code \
        == ExitCode.INTERRUPTED
    assert E.OperationError("x", state=State.ROLLED_BACK).exit_code == ExitCode.FAILED
    assert E.OperationError("x", state=State.PENDING).exit_code == ExitCode.PARTIAL
    assert E.OperationError("x", state=State.PENDING, cause=timeout).exit_code == ExitCode.TIMEOUT
    assert E.OperationError("x", state=State.STALE_JOURNAL, cause=State.MAYBE_FROZEN).exit_code \
        == ExitCode.MAYBE_FROZEN
    assert E.OperationError("x", state=State.UNCHANGED, cause=E.AgentNotConnectedError("gone")).exit_code \
        == ExitCode.AGENT_UNAVAILABLE
    assert E.OperationError("x", state=State.ROLLED_BACK).to_dict()["state"] == "rolled-back"


def test_every_state_has_an_exit_code() -> None:
    from virt_qga.exitcodes import EXIT_BY_STATE

    assert set(EXIT_BY_STATE) == set(State)


def test_option_refs_are_spelled_by_the_front_end() -> None:
    exc = E.BadInputError(f"{E.option_ref('max_frozen')} must be in (0, 600] seconds", field="max_frozen")
    assert str(exc) == "max_frozen must be in (0, 600] seconds"
    assert E.render_options(exc.message, lambda n: "--" + n.replace("_", "-")) \
        == "--max-frozen must be in (0, 600] seconds"
    # user text with braces or percent signs is never taken for a reference
    assert str(E.BadInputError("no such dir {x} 100%")) == "no such dir {x} 100%"


def test_guest_error_reply_keeps_class_and_desc() -> None:
    err = error_from_reply({"class": "GenericError", "desc": "No such file"}, "guest-file-open")
    assert isinstance(err, E.GuestError) and err.error_class == "GenericError"
    assert "No such file" in str(err)
    assert err.to_dict()["error_class"] == "GenericError"


def test_command_not_found_reply() -> None:
    err = error_from_reply({"class": "CommandNotFound", "desc": "The command guest-x has not been found"},
                           "guest-x")
    assert isinstance(err, E.CommandNotSupportedError)


def test_malformed_error_reply_is_protocol_error() -> None:
    with pytest.raises(E.ProtocolError):
        raise error_from_reply(["not", "a", "dict"], "guest-ping")


def test_guest_text_is_sanitized_and_bounded() -> None:
    out = sanitize("evil\x1b[31m\nline" + "x" * 2000)
    assert "\x1b" not in out and "\n" not in out and len(out) <= 500
