"""The Transport protocol: how one JSON command reaches one guest agent.

A transport moves *already validated* commands and returns the raw ``return`` value
(or raises from :mod:`virt_qga.errors`). It knows nothing about the schema. Two
implementations exist: :mod:`.libvirt` (``qemuAgentCommand``) and :mod:`.socket`
(direct connection to the agent's virtio-serial channel socket).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

#: Largest reply any transport accepts, in bytes. qemu-ga's guest-file-read caps a
#: read at 48 MB of data (64 MB base64); replies bigger than this are refused.
MAX_REPLY_BYTES = 80 * 1024 * 1024

#: Default deadline for a command, seconds.
DEFAULT_TIMEOUT = 30.0


@runtime_checkable
class Transport(Protocol):
    """One agent endpoint. Implementations must be safe to call from several threads
    (at most one command in flight at a time) and must bound every wait."""

    #: Human-readable target ("qemu:///system/dom1", "/run/qga.sock").
    target: str
    #: Transport kind: "libvirt" or "socket".
    kind: str
    #: Largest request (serialised JSON) this transport can carry, bytes.
    max_request_bytes: int
    #: Largest reply this transport can carry, bytes.
    max_reply_bytes: int

    def execute(self, command: str, arguments: dict[str, Any] | None = None, *,
                timeout: float | None = None) -> Any:
        """Send one command and return its ``return`` value.

        ``timeout`` is seconds (None = the transport's default). Raises
        ``AgentTimeoutError`` on deadline, ``GuestError`` for an error reply,
        ``ProtocolError`` for a malformed one, ``AgentUnavailableError`` subclasses
        when nothing answers.
        """
        ...

    def execute_no_reply(self, command: str, arguments: dict[str, Any] | None = None) -> None:
        """Send a command that the agent never answers on success (guest-shutdown,
        guest-suspend-*). Returns once the command is handed over."""
        ...

    def close(self) -> None:
        """Release the connection. Idempotent."""
        ...
