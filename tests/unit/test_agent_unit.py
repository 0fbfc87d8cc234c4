"""GuestAgent's own logic, with a recording transport standing in for the agent.

These pin decisions the real agent cannot be made to show on demand (an agent that
lacks a command, one with a command disabled by --block-rpcs); the same paths run
against real qemu-ga 7.2 and 10.0 in tests/integration/test_agent.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from virt_qga import errors as E
from virt_qga.agent import GuestAgent, parse_version


class Recorder:
    kind = "fake"
    target = "fake"
    max_request_bytes = 1 << 20
    max_reply_bytes = 1 << 20

    def __init__(self, version: str = "7.2.0", disabled: tuple[str, ...] = (), missing: tuple[str, ...] = (),
                 frozen: bool = False) -> None:
        from virt_qga.spec import get_spec

        self.version = version
        self.sent: list[tuple[str, dict[str, Any] | None]] = []
        self.no_reply: list[str] = []
        self.frozen = frozen
        self.commands = [{"name": n, "enabled": n not in disabled, "success-response": True}
                         for n in get_spec().commands if n not in missing]

    def execute(self, command: str, arguments: dict[str, Any] | None = None, *, timeout: Any = None) -> Any:
        self.sent.append((command, arguments))
        if command == "guest-info":
            return {"version": self.version, "supported_commands": self.commands}
        if command == "guest-fsfreeze-status":
            return "frozen" if self.frozen else "thawed"
        if command == "guest-exec":
            return {"pid": 42}
        if command == "guest-get-host-name":
            return {"host-name": "g1"}
        return {}

    def execute_no_reply(self, command: str, arguments: dict[str, Any] | None = None) -> None:
        self.no_reply.append(command)

    def close(self) -> None:
        pass


def sent_names(t: Recorder) -> list[str]:
    return [c for c, _ in t.sent]


def test_unknown_to_an_older_agent_is_refused_before_sending() -> None:
    t = Recorder(version="7.0.1", missing=("guest-get-cpustats",))
    agent = GuestAgent(t)
    with pytest.raises(E.CommandNotSupportedError) as info:
        agent.get_cpustats()
    # names the agent's version and the one the command needs ('since' 7.1 in the schema)
    assert "qemu-ga 7.0.1" in str(info.value) and "needs qemu-ga 7.1 or newer" in str(info.value)
    assert "guest-get-cpustats" not in sent_names(t)


def test_unknown_to_a_new_enough_agent_says_not_built_for_this_os() -> None:
    # qemu-ga 7.2 on Linux: guest-get-devices is Windows-only, so it is absent though 'since' 5.2
    t = Recorder(version="7.2.0", missing=("guest-get-devices",))
    with pytest.raises(E.CommandNotSupportedError) as info:
        GuestAgent(t).get_devices()
    assert "qemu-ga 7.2.0" in str(info.value) and "not built into this agent" in str(info.value)
    assert "needs qemu-ga" not in str(info.value)
    assert "guest-get-devices" not in sent_names(t)


def test_disabled_command_is_refused_and_says_disabled() -> None:
    t = Recorder(disabled=("guest-exec",))
    with pytest.raises(E.CommandNotSupportedError) as info:
        GuestAgent(t).exec("/bin/true")
    assert "disabled" in str(info.value)
    assert "guest-exec" not in sent_names(t)


def test_disabled_because_frozen_is_frozen_error() -> None:
    t = Recorder(disabled=("guest-get-osinfo",), frozen=True)
    with pytest.raises(E.GuestFrozenError):
        GuestAgent(t).get_osinfo()


def test_capabilities_are_cached_per_connection() -> None:
    t = Recorder()
    agent = GuestAgent(t)
    agent.get_host_name()
    agent.get_host_name()
    assert sent_names(t).count("guest-info") == 1


def test_bad_argument_never_reaches_the_transport() -> None:
    t = Recorder()
    with pytest.raises(E.BadInputError) as info:
        GuestAgent(t).call("guest-file-read", handle="x")
    assert info.value.field == "handle"
    assert t.sent == []


@pytest.mark.parametrize(("mode", "expected"), [("none", False), ("stdout", True), ("separated", True)])
def test_capture_mode_maps_to_bool_on_old_agents(mode: str, expected: bool) -> None:
    t = Recorder(version="7.2.15")
    GuestAgent(t).exec("/bin/echo", arg=["x"], capture_output=mode)
    args = t.sent[-1][1]
    assert args is not None and args["capture-output"] is expected


def test_merged_is_emulated_with_sh_on_old_agents() -> None:
    t = Recorder(version="7.2.15")
    GuestAgent(t).exec("/bin/echo", arg=["x"], capture_output="merged")
    args = t.sent[-1][1]
    assert args is not None
    assert args["path"] == "/bin/sh" and args["arg"][-2:] == ["/bin/echo", "x"]
    assert args["capture-output"] is True


def test_modes_pass_through_on_new_agents() -> None:
    t = Recorder(version="10.0.2")
    GuestAgent(t).exec("/bin/echo", capture_output="merged")
    args = t.sent[-1][1]
    assert args is not None and args["capture-output"] == "merged" and args["path"] == "/bin/echo"


def test_bad_capture_mode_is_rejected_on_every_version() -> None:
    for version in ("7.2.0", "10.0.2"):
        with pytest.raises(E.BadInputError):
            GuestAgent(Recorder(version=version)).exec("/bin/true", capture_output="sideways")


@pytest.mark.parametrize("method", ["shutdown", "suspend_ram", "suspend_disk", "suspend_hybrid"])
def test_commands_without_reply_do_not_wait(method: str) -> None:
    t = Recorder()
    assert getattr(GuestAgent(t), method)() is None
    assert t.no_reply == ["guest-" + method.replace("_", "-")]


def test_call_accepts_python_names() -> None:
    t = Recorder()
    GuestAgent(t).call("guest-exec", path="/bin/true", capture_output=True)
    assert t.sent[-1] == ("guest-exec", {"path": "/bin/true", "capture-output": True})


def test_invalid_reply_is_protocol_error() -> None:
    class Bad(Recorder):
        def execute(self, command: str, arguments: Any = None, *, timeout: Any = None) -> Any:
            if command == "guest-get-host-name":
                return {"host-name": 7}
            return super().execute(command, arguments, timeout=timeout)

    with pytest.raises(E.ProtocolError) as info:
        GuestAgent(Bad()).get_host_name()
    assert "host-name" in str(info.value)


@pytest.mark.parametrize(("text", "expected"),
                         [("7.2.15", (7, 2, 15)), ("10.0.2+ds", (10, 0, 2)), ("", (0,))])
def test_parse_version(text: str, expected: tuple[int, ...]) -> None:
    assert parse_version(text) == expected
