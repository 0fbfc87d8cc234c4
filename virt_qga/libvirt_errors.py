"""Map ``libvirt.libvirtError`` onto the virt-qga hierarchy. The only place that does.

libvirt before 11.2 reports every agent failure with generic codes (INTERNAL_ERROR,
AGENT_UNRESPONSIVE, ARGUMENT_UNSUPPORTED); the cause is only in the message text, so
those codes are refined by message. From 11.2 on, ``VIR_ERR_AGENT_COMMAND_TIMEOUT``
and ``VIR_ERR_AGENT_COMMAND_FAILED`` say it directly. Message matching is
case-insensitive and keyed on phrases that have been stable since libvirt 1.x.
"""

from __future__ import annotations

import re
from typing import Any

from virt_qga.errors import (
    AgentNotConfiguredError,
    AgentNotConnectedError,
    AgentTimeoutError,
    BadInputError,
    DomainNotFoundError,
    DomainNotRunningError,
    HostError,
    VirtQgaError,
)
from virt_qga.transport.replies import error_from_text, sanitize

# virErrorNumber values. The two newest are absent from older bindings, hence literals.
ERR_INTERNAL_ERROR = 1
ERR_NO_SUPPORT = 3
ERR_NO_CONNECT = 5
ERR_INVALID_ARG = 8
ERR_OPERATION_FAILED = 9
ERR_OPERATION_DENIED = 29
ERR_SYSTEM_ERROR = 38
ERR_RPC = 39
ERR_NO_DOMAIN = 42
ERR_AUTH_FAILED = 45
ERR_OPERATION_INVALID = 55
ERR_OPERATION_TIMEOUT = 68
ERR_ARGUMENT_UNSUPPORTED = 74
ERR_OPERATION_UNSUPPORTED = 84
ERR_AGENT_UNRESPONSIVE = 86
ERR_ACCESS_DENIED = 88
ERR_AGENT_UNSYNCED = 97
ERR_AGENT_COMMAND_TIMEOUT = 112
ERR_AGENT_COMMAND_FAILED = 113

#: libvirt words AGENT_UNRESPONSIVE as "Guest agent is not responding: DETAIL". Our
#: message says that in its own words, so only DETAIL is kept (once).
_UNRESPONSIVE_PREFIX = "guest agent is not responding: "

#: Having waited this close to the full deadline means the wait ran out (seconds).
_FULL_WAIT_SLACK = 0.25

_AGENT_CMD_RE = re.compile(r"unable to execute QEMU agent command '([^']+)':\s*(.*)", re.I | re.S)


def _code_and_message(exc: Any) -> tuple[int, str]:
    code = exc.get_error_code() if hasattr(exc, "get_error_code") else None
    msg = exc.get_error_message() if hasattr(exc, "get_error_message") else None
    return int(code or 0), sanitize(str(msg or exc))


def _agent_detail(msg: str) -> str:
    """libvirt's own detail of an agent failure, without the prefix it adds to it."""
    return msg[len(_UNRESPONSIVE_PREFIX):] if msg.lower().startswith(_UNRESPONSIVE_PREFIX) else msg


def map_libvirt_error(exc: Exception, *, domain: str | None = None, command: str | None = None,
                      timeout: float | None = None, elapsed: float | None = None) -> VirtQgaError:
    """Return the virt-qga error for a libvirt exception (the caller raises it ``from`` exc).

    ``timeout`` is the agent command's deadline and ``elapsed`` how long the call
    took, both in seconds: libvirt before 11.2 words a command that ran out of time
    and an agent that never synced alike ("Guest agent not available for now");
    having waited the full deadline tells them apart.
    """
    code, msg = _code_and_message(exc)
    low = msg.lower()
    kw: dict[str, Any] = {"domain": domain, "command": command}

    if code == ERR_NO_DOMAIN:
        return DomainNotFoundError(f"domain not found ({msg})", domain=domain)
    if "domain is not running" in low or (code == ERR_OPERATION_INVALID and "not running" in low):
        return DomainNotRunningError("domain is not running", **kw)
    if "guest agent is not configured" in low or "agent is not configured" in low:
        return AgentNotConfiguredError("no guest agent channel configured for this domain "
                                       "(add <channel type='unix'><target type='virtio' "
                                       "name='org.qemu.guest_agent.0'/></channel>)", **kw)
    if code == ERR_AGENT_COMMAND_TIMEOUT or (
        code == ERR_AGENT_UNRESPONSIVE and ("within timeout" in low or "timed out" in low)
    ):
        return _no_reply(msg, timeout, kw)
    if code in (ERR_AGENT_UNRESPONSIVE, ERR_AGENT_UNSYNCED) or "agent is not connected" in low:
        if (code == ERR_AGENT_UNRESPONSIVE and timeout is not None and timeout > 0
                and elapsed is not None and elapsed >= timeout - _FULL_WAIT_SLACK):
            return _no_reply(msg, timeout, kw)
        return AgentNotConnectedError(f"guest agent is not responding (libvirt: {_agent_detail(msg)})",
                                      **kw)
    m = _AGENT_CMD_RE.search(msg)
    if m or code == ERR_AGENT_COMMAND_FAILED:
        desc = m.group(2).strip() if m else msg
        cmd = (m.group(1) if m else None) or command or "?"
        cls = "CommandNotFound" if "has not been found" in desc.lower() else "GenericError"
        err = error_from_text(cls, desc, cmd)
        err.domain = domain
        return err
    if code == ERR_OPERATION_TIMEOUT:
        return AgentTimeoutError(f"libvirt operation timed out ({msg})", **kw)
    if code in (ERR_NO_CONNECT, ERR_AUTH_FAILED, ERR_RPC, ERR_SYSTEM_ERROR) and domain is None:
        return HostError(f"cannot reach libvirt: {msg}", **kw)
    if code == ERR_INVALID_ARG:
        return BadInputError(f"libvirt rejected an argument: {msg}", **kw)
    return HostError(f"libvirt error: {msg}", **kw)


def _no_reply(msg: str, timeout: float | None, kw: dict[str, Any]) -> AgentTimeoutError:
    after = f" within {timeout:g} s" if timeout is not None and timeout > 0 else ""
    return AgentTimeoutError(f"no reply from the guest agent{after} (libvirt: {_agent_detail(msg)})",
                             **kw)
