"""Agent failures over libvirt read as one clear line, with libvirt's own detail once.

The messages are libvirt 9.0's, as recorded in the lab (qemu-ga SIGSTOPped in the guest,
channel disconnected); code 112 is libvirt >= 11.2's AGENT_COMMAND_TIMEOUT. Before,
a stopped agent read "no reply within 2 s (guest agent is not responding (Guest agent
is not responding: Guest agent not available for now))".
"""

from __future__ import annotations

import pytest

from virt_qga import errors as E
from virt_qga.libvirt_errors import map_libvirt_error

NOT_AVAILABLE = "Guest agent is not responding: Guest agent not available for now"
NOT_CONNECTED = "Guest agent is not responding: QEMU guest agent is not connected"


class LibvirtErrorStandIn(Exception):
    """Carries (code, message) as libvirt.libvirtError does."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self._code, self._msg = code, message

    def get_error_code(self) -> int:
        return self._code

    def get_error_message(self) -> str:
        return self._msg


def mapped(code: int, message: str, **kw: float) -> E.VirtQgaError:
    return map_libvirt_error(LibvirtErrorStandIn(code, message), domain="vm1", command="guest-ping", **kw)


def test_full_wait_on_an_unresponsive_agent_is_a_timeout_said_once() -> None:
    err = mapped(86, NOT_AVAILABLE, timeout=2, elapsed=2.02)
    assert type(err) is E.AgentTimeoutError
    assert str(err) == ("vm1: guest-ping: no reply from the guest agent within 2 s "
                        "(libvirt: Guest agent not available for now)")


def test_early_failure_is_not_connected_with_the_detail_once() -> None:
    err = mapped(86, NOT_AVAILABLE, timeout=5, elapsed=0.01)
    assert type(err) is E.AgentNotConnectedError
    assert str(err) == ("vm1: guest-ping: guest agent is not responding "
                        "(libvirt: Guest agent not available for now)")


def test_disconnected_channel() -> None:
    err = mapped(86, NOT_CONNECTED)
    assert type(err) is E.AgentNotConnectedError
    assert str(err) == ("vm1: guest-ping: guest agent is not responding "
                        "(libvirt: QEMU guest agent is not connected)")


def test_libvirt_11_command_timeout() -> None:
    err = mapped(112, "Guest agent didn't respond to command within timeout", timeout=5)
    assert type(err) is E.AgentTimeoutError
    assert str(err) == ("vm1: guest-ping: no reply from the guest agent within 5 s "
                        "(libvirt: Guest agent didn't respond to command within timeout)")


@pytest.mark.parametrize(("code", "message", "kw"), [
    (86, NOT_AVAILABLE, {"timeout": 2, "elapsed": 2.0}),
    (86, NOT_AVAILABLE, {}),
    (86, NOT_CONNECTED, {}),
    (97, "Guest agent replied with wrong id to guest-sync command", {}),
    (112, "Guest agent didn't respond to command within timeout", {"timeout": 3}),
])
def test_no_message_repeats_itself(code: int, message: str, kw: dict[str, float]) -> None:
    text = str(mapped(code, message, **kw)).lower()
    assert text.count("not responding") <= 1
    assert text.count("(") <= 1, text  # no nested parentheses
    detail = message.split(": ", 1)[-1].lower()
    assert text.count(detail) == 1
