"""Shutdown and suspend, confirmed.

``guest-shutdown`` and ``guest-suspend-*`` send no reply on success: the agent goes
away with the guest. So the command alone proves nothing; the outcome is confirmed
from outside with a deadline:

* over libvirt, by the domain state (``shut off`` after halt/powerdown/suspend-disk,
  ``pmsuspended`` after suspend-ram/hybrid; for reboot, the agent going away and
  answering again while the domain stays running);
* over the channel socket there is no domain to ask: we confirm what we can (the
  agent stops answering) and say what was *not* confirmed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from virt_qga.connection import STATE_NAMES
from virt_qga.errors import (
    AgentTimeoutError,
    BadInputError,
    CommandNotSupportedError,
    GuestError,
    OperationError,
    VirtQgaError,
)
from virt_qga.options import declare, option
from virt_qga.outcome import State

if TYPE_CHECKING:
    from virt_qga.agent import GuestAgent
    from virt_qga.host import Domain

SHUTDOWN_MODES = ("powerdown", "halt", "reboot")
SUSPEND_MODES = ("disk", "ram", "hybrid")



@declare
@dataclass(frozen=True)
class PowerOptions:
    """The options the ``shutdown`` command and the ``virt_qga_power`` module share."""

    mode: str = option("powerdown", choices=SHUTDOWN_MODES, help=(
        "powerdown: an orderly shutdown that powers the domain off; halt: stop the guest "
        "without powering off; reboot: restart the guest."))
    wait: float = option(120.0, min=1, unit="seconds", ansible="wait_timeout", help=(
        "Overall seconds to wait for the effect to be seen (domain shut off; for reboot, the "
        "agent going away and answering again)."))


#: libvirt's state word for VIR_DOMAIN_PMSUSPENDED (see virt_qga.connection.STATE_NAMES).
PMSUSPENDED = STATE_NAMES[7]

#: Domain states that confirm each action (libvirt's state names).
EXPECTED_STATE: dict[str, set[str]] = {
    "powerdown": {"shut off"},
    "disk": {"shut off"},
    "ram": {PMSUSPENDED},
    "hybrid": {PMSUSPENDED},
}

#: Seconds libvirt waits for the (never coming) reply of a no-reply command. Through
#: ``qemuAgentCommand`` a timeout of 0 ("don't wait") also gives libvirt's own
#: guest-sync no time at all: it fails at once with "Guest agent not available for
#: now", and whether the command went out is a race (seen both ways in the lab).
LIBVIRT_NO_REPLY_WAIT = 2.0


@dataclass
class PowerResult:
    action: str                    # "shutdown" or "suspend"
    mode: str
    transport: str
    confirmed: bool = False
    final_state: str | None = None
    agent_gone: bool | None = None
    duration: float = 0.0
    not_confirmed: list[str] = field(default_factory=list)
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "mode": self.mode, "transport": self.transport,
                "confirmed": self.confirmed, "final_state": self.final_state,
                "agent_gone": self.agent_gone, "duration": round(self.duration, 3),
                "not_confirmed": list(self.not_confirmed), "hint": self.hint}


def already_done(agent: GuestAgent, mode: str) -> str | None:
    """Why ``shutdown MODE`` has nothing to do (the domain is already shut off), or None.
    Only libvirt can tell; a reboot always has something to do."""
    dom = domain_of(agent)
    if dom is None or mode == "reboot":
        return None
    state = dom.state()
    return f"the domain is already {state}" if state == "shut off" else None


def domain_of(agent: GuestAgent) -> Domain | None:
    """The libvirt Domain behind a libvirt-transport agent; None for a socket."""
    transport: Any = agent.transport
    if transport.kind != "libvirt":
        return None
    from virt_qga.host import Domain

    return Domain(transport.dom, transport.conn)


def _wake_hint(mode: str, name: str) -> str | None:
    if mode in ("ram", "hybrid"):
        return f"wake it with: virsh dompmwakeup {name}"
    if mode == "disk":
        return f"resume it by starting the domain: virsh start {name}"
    return None


def wire_command(action: str, mode: str) -> tuple[str, dict[str, Any]]:
    if action == "shutdown":
        return "guest-shutdown", {"mode": mode}
    return f"guest-suspend-{mode}", {}


def _send(agent: GuestAgent, action: str, mode: str) -> None:
    """Send the command. Over the socket the agent's no-reply path is exact; over
    libvirt we wait briefly for a reply instead (see LIBVIRT_NO_REPLY_WAIT): an error
    reply (e.g. suspend not supported) is raised, silence means it was delivered."""
    command, args = wire_command(action, mode)
    if agent.transport.kind != "libvirt":
        agent.call(command, args)
        return
    from virt_qga.spec import get_spec

    clean = get_spec().validate_args(command, args)
    agent._check_supported(command)
    try:
        agent.transport.execute(command, clean or None, timeout=LIBVIRT_NO_REPLY_WAIT)
    except (GuestError, CommandNotSupportedError):
        raise
    except VirtQgaError:
        pass  # no reply, or the domain already went away: expected; the state tells


def check_ready(agent: GuestAgent, action: str, mode: str | None = None) -> Domain | None:
    """What a dry run checks, and the real run first: the domain runs, the agent answers
    and has the command enabled. Returns the domain (None over a socket)."""
    dom = domain_of(agent)
    if dom is not None:
        from virt_qga.connection import require_running

        require_running(dom.dom)
    # Make sure the command is supported before the no-reply send: a refusal is then
    # reported by the capability check, not lost.
    agent.capabilities()
    command, _ = wire_command(action, mode or "powerdown")
    agent._check_supported(command)
    return dom


def power(agent: GuestAgent, action: str, mode: str, *, timeout: float = 120.0,
          confirm: bool = True) -> PowerResult:
    """Shut down / suspend the guest and confirm the effect within ``timeout`` seconds.

    Raises ``OperationError`` (exit 5, ``state="pending"``) when the effect is not seen
    by the deadline; agent errors (unsupported, disabled, guest refused) as they are.
    """
    modes = SHUTDOWN_MODES if action == "shutdown" else SUSPEND_MODES
    if mode not in modes:
        raise BadInputError(f"{action} mode must be one of {', '.join(modes)}", field="mode")
    name = agent.name
    result = PowerResult(action, mode, agent.transport.kind, hint=_wake_hint(mode, str(name)))
    dom = check_ready(agent, action, mode)
    t0 = time.monotonic()
    _send(agent, action, mode)
    if not confirm:
        result.not_confirmed.append("confirmation skipped (--no-wait)")
        return result
    deadline = t0 + timeout
    try:
        if dom is not None and mode in EXPECTED_STATE:
            result.final_state = dom.wait_for_state(EXPECTED_STATE[mode], timeout)
            result.confirmed = True
        elif dom is not None and mode == "halt":
            # A halted guest stops its CPUs but need not power off (systemd's
            # `shutdown -H` does not): the agent going silent is the proof; then
            # report the domain state as it is.
            result.agent_gone = agent.wait_until_unresponsive(deadline)
            if not result.agent_gone:
                raise AgentTimeoutError("the guest agent kept answering")
            try:
                grace = min(5.0, max(0.5, deadline - time.monotonic()))
                result.final_state = dom.wait_for_state({"shut off"}, grace)
            except AgentTimeoutError:
                result.final_state = dom.state()
                result.not_confirmed.append(f"power off: the guest halted but the domain is still "
                                            f"{result.final_state} (end it with `virsh destroy {name}`)")
            result.confirmed = True
        elif dom is not None:  # reboot: the agent goes away and comes back, domain running
            result.agent_gone = agent.wait_until_unresponsive(deadline)
            if not result.agent_gone:
                raise AgentTimeoutError("the guest agent kept answering: no reboot seen")
            _wait_agent_back(agent, deadline)
            result.final_state = dom.state()
            result.confirmed = result.final_state == "running"
        else:
            result.agent_gone = agent.wait_until_unresponsive(deadline)
            if not result.agent_gone:
                raise AgentTimeoutError("the guest agent kept answering")
            result.not_confirmed.append("domain state (no libvirt on the socket transport): "
                                        "only the agent going silent was seen")
    except AgentTimeoutError as exc:
        result.duration = time.monotonic() - t0
        raise OperationError(
            f"{action} {mode} was sent but its effect was not seen within {timeout:g} s: {exc.message}",
            state=State.PENDING, cause=exc, result=result.to_dict(), domain=name) from exc
    result.duration = time.monotonic() - t0
    return result


def _wait_agent_back(agent: GuestAgent, deadline: float) -> None:
    while True:
        try:
            agent.ping()
            return
        except VirtQgaError:
            if time.monotonic() >= deadline:
                raise AgentTimeoutError("the guest agent did not come back after the reboot") from None
            time.sleep(0.5)
