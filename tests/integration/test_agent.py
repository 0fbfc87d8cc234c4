"""GuestAgent against real qemu-ga 7.2 and 10.0, over libvirt and over the channel socket."""

from __future__ import annotations

import base64
import socket
import time
from typing import Any

import pytest

from tests.integration.agent_stop import stop_agent
from virt_qga import errors as E
from virt_qga.agent import GuestAgent
from virt_qga.spec import get_spec

GUEST_KEYS = ["libvirt-7.2", "libvirt-10.0", "plain-7.2", "plain-10.0"]

#: Commands that only read state and take no required argument.
READ_ONLY_PREFIXES = ("guest-get-", "guest-network-get-")
READ_ONLY_EXTRA = {"guest-info", "guest-ping", "guest-fsfreeze-status"}


_open: list[GuestAgent] = []


def agent_for(guest: Any, timeout: float = 15.0) -> GuestAgent:
    """An agent for a lab guest; closed after the test (a plain QEMU channel serves one
    client at a time, so a leaked connection would starve the next test)."""
    if guest.kind == "plain":
        agent = GuestAgent.for_socket(guest.socket, timeout=timeout)
    else:
        agent = GuestAgent.for_domain(guest.name, guest.uri, timeout=timeout)
    _open.append(agent)
    return agent


@pytest.fixture(autouse=True)
def _close_agents() -> Any:
    yield
    while _open:
        _open.pop().close()


def read_only_commands() -> list[str]:
    spec = get_spec()
    out = []
    for name, cmd in sorted(spec.commands.items()):
        if not (name.startswith(READ_ONLY_PREFIXES) or name in READ_ONLY_EXTRA):
            continue
        if any(not m.optional for m in cmd.arg_members):
            continue
        out.append(name)
    return out


def guest_exec(agent: GuestAgent, *argv: str, timeout: float = 20.0) -> dict[str, Any]:
    pid = agent.exec(argv[0], arg=list(argv[1:]), capture_output=True)["pid"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = agent.exec_status(pid=pid)
        if st["exited"]:
            return dict(st)
        time.sleep(0.05)
    raise AssertionError(f"{argv} did not finish in {timeout}s")


@pytest.fixture(params=GUEST_KEYS)
def guest(request: pytest.FixtureRequest, guests: dict[str, Any]) -> Any:
    return guests[request.param]


def test_read_only_commands_return_spec_valid_data(guest: Any) -> None:
    agent = agent_for(guest)
    caps = agent.capabilities()
    assert caps.version.startswith(guest.agent.split(".")[0] + ".")
    spec = get_spec()
    called = refused = 0
    for name in read_only_commands():
        if not caps.knows(name) or not caps.enabled(name):
            # unknown to this version, or disabled (qemu-ga disables what this OS lacks)
            with pytest.raises(E.CommandNotSupportedError) as info:
                agent.call(name)
            assert caps.version in str(info.value)
            refused += 1
            continue
        try:
            value = agent.call(name)
        except E.GuestError as exc:
            # Some commands exist but cannot work in this minimal guest (e.g. no utmp);
            # they must fail as a guest error with a text, never as a protocol error.
            assert exc.error_class and str(exc)
            continue
        # The agent validated the reply already; validate again explicitly as a check.
        spec.validate_reply(name, value)
        called += 1
    assert called >= 10, f"only {called} read-only commands answered"
    assert refused >= 1  # guest-get-devices is Windows-only: a Linux agent refuses it


def test_guest_error_arrives_with_its_class(guest: Any) -> None:
    agent = agent_for(guest)
    with pytest.raises(E.GuestError) as info:
        agent.file_open(path="/definitely/not/here", mode="r")
    assert not isinstance(info.value, E.CommandNotSupportedError)
    assert "/definitely/not/here" in str(info.value) or "No such file" in str(info.value)


def test_unknown_command_is_refused_before_sending(guest: Any) -> None:
    agent = agent_for(guest)
    with pytest.raises(E.BadInputError):
        agent.call("guest-frobnicate")
    # guest-get-devices exists in the schema but is Windows-only: a Linux agent lacks it.
    with pytest.raises(E.CommandNotSupportedError):
        agent.call("guest-get-devices")


def test_unknown_command_sent_raw_maps_to_not_supported(guest: Any) -> None:
    agent = agent_for(guest)
    with pytest.raises(E.CommandNotSupportedError):
        agent.transport.execute("guest-frobnicate", None, timeout=10)


def test_capture_output_modes_work_on_both_versions(guest: Any) -> None:
    agent = agent_for(guest)
    pid = agent.exec("/bin/sh", arg=["-c", "echo out; echo err >&2"], capture_output="merged")["pid"]
    for _ in range(200):
        st = agent.exec_status(pid=pid)
        if st["exited"]:
            break
        time.sleep(0.05)
    out = base64.b64decode(st.get("out-data", ""))
    assert b"out" in out and b"err" in out


def test_frozen_guest_refuses_with_frozen_error(guests: dict[str, Any]) -> None:
    agent = agent_for(guests["libvirt-7.2"])
    agent.capabilities()
    n = agent.fsfreeze_freeze()
    try:
        assert n >= 1
        assert agent.fsfreeze_status() == "frozen"
        with pytest.raises(E.GuestFrozenError):
            agent.get_osinfo()
    finally:
        agent.fsfreeze_thaw()
    assert agent.fsfreeze_status() == "thawed"


@pytest.mark.parametrize("plain", [False, True], ids=["libvirt", "socket"])
def test_stopped_agent_times_out_within_deadline(fresh_guest: Any, plain: bool) -> None:
    guest = fresh_guest(agent="7.2", plain=plain)
    agent = agent_for(guest, timeout=3.0)
    stop_agent(agent)
    start = time.monotonic()
    with pytest.raises((E.AgentTimeoutError, E.AgentNotConnectedError)):
        agent.ping()
    elapsed = time.monotonic() - start
    assert elapsed < 3.0 + 6.0, f"took {elapsed:.1f}s for a 3 s deadline"


def test_unknown_domain(lab: Any) -> None:
    with pytest.raises(E.DomainNotFoundError) as info:
        GuestAgent.for_domain("no-such-domain-xyz", lab.uri)
    assert info.value.exit_code == 6


def test_shut_off_domain(lab: Any, guests: dict[str, Any]) -> None:
    import libvirt

    conn = libvirt.open(lab.uri)
    xml = conn.lookupByName(guests["libvirt-7.2"].name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    import re

    xml = re.sub(r"<name>[^<]+</name>", "<name>vqga-shutoff-test</name>", xml)
    xml = re.sub(r"<uuid>[^<]+</uuid>", "", xml)
    dom = conn.defineXML(xml)
    try:
        agent = GuestAgent.for_domain("vqga-shutoff-test", lab.uri, timeout=5)
        with pytest.raises(E.DomainNotRunningError):
            agent.ping()
    finally:
        dom.undefine()


@pytest.mark.stacks("host")  # a plain QEMU guest: no libvirt stack involved
def test_half_command_from_dead_client_does_not_break_next(guests: dict[str, Any]) -> None:
    guest = guests["plain-10.0"]
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(5)
    raw.connect(guest.socket)
    raw.sendall(b'{"execute": "guest-get-osinfo", "argu')
    raw.close()
    agent = GuestAgent.for_socket(guest.socket, timeout=10)
    try:
        agent.ping()
        assert agent.get_osinfo()["id"]
    finally:
        agent.close()


@pytest.mark.stacks("host")  # a plain QEMU guest: no libvirt stack involved
def test_socket_transport_survives_peer_reconnect(guests: dict[str, Any]) -> None:
    guest = guests["plain-7.2"]
    a = GuestAgent.for_socket(guest.socket, timeout=10)
    a.ping()
    a.close()
    b = GuestAgent.for_socket(guest.socket, timeout=10)
    try:
        b.ping()
        assert b.get_host_name()["host-name"]
    finally:
        b.close()
