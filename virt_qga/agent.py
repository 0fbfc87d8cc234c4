"""GuestAgent: one typed method per guest agent command, over any transport.

The 42 per-command methods come from :class:`virt_qga._commands.GeneratedCommands`
(generated from the schema). Every one of them funnels into :meth:`GuestAgent._call`,
which is where the conventions live:

1. arguments are validated against the spec (``BadInputError`` names the field);
2. the command is checked against what *this* agent supports (``guest-info``, cached
   per connection): unknown commands are refused before sending, disabled ones too
   (told apart from "disabled because frozen", which is ``GuestFrozenError``);
3. the command goes through the transport, with a deadline;
4. the reply is validated against the spec's return type (``ProtocolError``).

A few commands need more than that and are overridden here: ``guest-exec`` (qemu-ga
before 8.0 takes ``capture-output`` as a bool only), and the commands that never
answer on success (``guest-shutdown``, ``guest-suspend-*``).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from virt_qga._commands import GeneratedCommands
from virt_qga.errors import (
    CommandNotSupportedError,
    GuestFrozenError,
    VirtQgaError,
)
from virt_qga.spec import get_spec
from virt_qga.transport.base import DEFAULT_TIMEOUT, Transport

#: Commands that work on every agent and are never capability-checked.
ALWAYS_AVAILABLE = frozenset({"guest-sync", "guest-sync-delimited", "guest-ping", "guest-info"})

#: Commands qemu-ga keeps enabled while filesystems are frozen.
FROZEN_SAFE = frozenset({
    "guest-ping", "guest-info", "guest-sync", "guest-sync-delimited",
    "guest-fsfreeze-status", "guest-fsfreeze-thaw", "guest-get-time", "guest-get-fsinfo",
})


def parse_version(text: str) -> tuple[int, ...]:
    """"7.2.15" -> (7, 2, 15); anything unparsable -> (0,)."""
    nums = re.findall(r"\d+", text or "")
    return tuple(int(n) for n in nums[:3]) or (0,)


@dataclass(frozen=True)
class Capabilities:
    """What ``guest-info`` said: the agent version and each command's enabled flag."""

    version: str
    commands: dict[str, bool]

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return parse_version(self.version)

    def knows(self, command: str) -> bool:
        return command in self.commands

    def enabled(self, command: str) -> bool:
        return self.commands.get(command, False)


class GuestAgent(GeneratedCommands):
    """A typed client for one guest agent.

    Build one with :meth:`for_domain` (libvirt) or :meth:`for_socket` (channel socket),
    or hand any :class:`~virt_qga.transport.base.Transport` to the constructor.
    """

    def __init__(self, transport: Transport, *, timeout: float | None = None,
                 validate_replies: bool = True, name: str | None = None) -> None:
        self.transport = transport
        self.timeout = timeout if timeout is not None else DEFAULT_TIMEOUT
        self.validate_replies = validate_replies
        self.name = name or getattr(transport, "domain_name", None) or transport.target
        self._spec = get_spec()
        self._caps: Capabilities | None = None
        self._caps_lock = threading.Lock()

    # -- construction --------------------------------------------------------------

    @classmethod
    def for_domain(cls, domain: str, uri: str | None = None, *, timeout: float | None = None,
                   **kw: Any) -> GuestAgent:
        """Agent of a libvirt domain (by name, UUID or ID) on ``uri``."""
        from virt_qga.transport.libvirt import LibvirtTransport

        t = timeout if timeout is not None else DEFAULT_TIMEOUT
        return cls(LibvirtTransport(domain, uri, timeout=t), timeout=t, **kw)

    @classmethod
    def for_socket(cls, path: str, *, timeout: float | None = None, **kw: Any) -> GuestAgent:
        """Agent behind a channel socket (plain QEMU, or an extra virtio-serial port)."""
        from virt_qga.transport.socket import SocketTransport

        t = timeout if timeout is not None else DEFAULT_TIMEOUT
        return cls(SocketTransport(path, timeout=t), timeout=t, **kw)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> GuestAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- capabilities --------------------------------------------------------------

    def capabilities(self, refresh: bool = False) -> Capabilities:
        """``guest-info``, cached for the life of this object unless ``refresh``."""
        with self._caps_lock:
            if self._caps is None or refresh:
                info = self._send("guest-info", {}, None)
                cmds = {c["name"]: bool(c.get("enabled", True))
                        for c in info.get("supported_commands", [])}
                self._caps = Capabilities(version=str(info.get("version", "")), commands=cmds)
            return self._caps

    @property
    def version(self) -> str:
        return self.capabilities().version

    def _check_supported(self, command: str) -> None:
        if command in ALWAYS_AVAILABLE:
            return
        caps = self.capabilities()
        if not caps.knows(command):
            since = self._spec.command(command).since
            if since and caps.version_tuple < parse_version(since):
                hint = f" (needs qemu-ga {since} or newer)"
            else:  # new enough: not built for this guest OS (e.g. guest-get-devices on Linux)
                hint = " (not built into this agent for this guest OS)"
            raise CommandNotSupportedError(
                f"command {command} is not supported by this agent (qemu-ga {caps.version}){hint}",
                command=command, domain=self.name, agent_version=caps.version)
        if not caps.enabled(command):
            caps = self.capabilities(refresh=True)  # enabled flags change (freeze, thaw)
            if caps.enabled(command):
                return
            if command not in FROZEN_SAFE and self._is_frozen():
                raise GuestFrozenError(f"command {command} is refused while the guest "
                                       "filesystems are frozen", command=command, domain=self.name)
            raise CommandNotSupportedError(
                f"command {command} is disabled in this agent (qemu-ga {caps.version}): not "
                "implemented for this guest OS, or blocked by --block-rpcs / its config file",
                command=command, domain=self.name, agent_version=caps.version)

    def _is_frozen(self) -> bool:
        try:
            return bool(self._send("guest-fsfreeze-status", {}, None) == "frozen")
        except VirtQgaError:
            return False

    # -- the one path every command takes -----------------------------------------

    def _send(self, command: str, args: dict[str, Any], timeout: float | None) -> Any:
        value = self.transport.execute(command, args or None,
                                       timeout=timeout if timeout is not None else self.timeout)
        if self.validate_replies:
            value = self._spec.validate_reply(command, value)
        return value

    def _call(self, command: str, args: dict[str, Any], *, timeout: float | None = None) -> Any:
        clean = self._spec.validate_args(command, args)
        self._check_supported(command)
        if not self._spec.command(command).success_response:
            self.transport.execute_no_reply(command, clean or None)
            return None
        try:
            return self._send(command, clean, timeout)
        except VirtQgaError as exc:
            if exc.domain is None:
                exc.domain = self.name
            raise

    def call(self, command: str, args: dict[str, Any] | None = None, *,
             timeout: float | None = None, **kwargs: Any) -> Any:
        """Run any schema command by name, validated like the typed methods.

        ``agent.call("guest-file-open", path="/etc/hostname")`` or with an ``args`` dict
        (needed for names with dashes, e.g. ``{"input-data": ...}``).
        """
        merged = dict(args or {})
        merged.update({k.replace("_", "-"): v for k, v in kwargs.items()})
        if command in ("guest-exec",):
            return self._exec(merged, timeout=timeout)
        return self._call(command, merged, timeout=timeout)

    # -- overrides needing version adaptation --------------------------------------

    def exec(self, path: str, arg: list[str] | None = None, env: list[str] | None = None,
             input_data: str | None = None, capture_output: bool | str | None = None) -> Any:
        """Start a process in the guest; returns ``{"pid": N}``.

        ``capture_output`` takes a bool or, on every agent version, a mode: ``"none"``,
        ``"stdout"``, ``"stderr"``, ``"separated"`` or ``"merged"``. Agents before
        qemu-ga 8.0 only know a bool; there the modes are emulated (``stdout``/``stderr``
        capture both streams and the caller drops one; ``merged`` wraps the command in
        ``/bin/sh -c 'exec "$0" "$@" 2>&1'``).
        """
        args: dict[str, Any] = {"path": path, "arg": arg, "env": env, "input-data": input_data,
                                "capture-output": capture_output}
        return self._exec({k: v for k, v in args.items() if v is not None})

    def _exec(self, args: dict[str, Any], *, timeout: float | None = None) -> Any:
        mode = args.get("capture-output")
        if isinstance(mode, str) and self.capabilities().version_tuple < (8, 0):
            self._spec.validate_args("guest-exec", args)  # reject bad modes first
            if mode == "none":
                args["capture-output"] = False
            elif mode == "merged":
                args = dict(args)
                args["arg"] = [args["path"], *args.get("arg", [])]
                args["path"] = "/bin/sh"
                args["arg"] = ["-c", 'exec "$0" "$@" 2>&1', *args["arg"]]
                args["capture-output"] = True
            else:
                args["capture-output"] = True
        return self._call("guest-exec", args, timeout=timeout)

    # -- commands without a reply --------------------------------------------------

    def shutdown(self, mode: str | None = None) -> None:
        """Ask the guest to halt, power down (default) or reboot. No reply is sent by
        the agent; use :func:`virt_qga.workflows.power.confirm_state` to confirm."""
        self._call("guest-shutdown", {"mode": mode})

    def wait_until_unresponsive(self, deadline: float) -> bool:
        """Poll guest-ping until it fails (agent gone) or ``deadline`` (monotonic)."""
        while time.monotonic() < deadline:
            try:
                self._send("guest-ping", {}, min(2.0, max(0.5, deadline - time.monotonic())))
            except VirtQgaError:
                return True
            time.sleep(0.2)
        return False


__all__ = ["Capabilities", "GuestAgent", "parse_version"]
