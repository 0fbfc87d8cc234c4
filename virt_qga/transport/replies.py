"""Turn an agent error reply into the right exception, for every transport.

qemu-ga answers a failed command with ``{"error": {"class": C, "desc": D}}``. The
class alone is too coarse: a command that is unknown and one that is disabled (by
``--block-rpcs`` or because the filesystems are frozen) both arrive as
``CommandNotFound``, told apart only by the text. That text has been stable across
qemu-ga 2.x to 10.x ("has not been found", "has been disabled", "frozen state").
"""

from __future__ import annotations

from typing import Any

from virt_qga.errors import CommandNotSupportedError, GuestError, GuestFrozenError, ProtocolError

#: Cap on the guest-supplied description kept in an exception message.
MAX_DESC = 500


def sanitize(text: str, limit: int = MAX_DESC) -> str:
    """Guest text is untrusted: one line, printable, bounded."""
    out = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text.replace("\n", " "))
    return out if len(out) <= limit else out[: limit - 3] + "..."


def error_from_reply(err: Any, command: str) -> GuestError | CommandNotSupportedError:
    """Map the ``error`` member of a reply. Raises ProtocolError if it is malformed."""
    if not isinstance(err, dict) or not isinstance(err.get("desc", ""), str):
        raise ProtocolError(f"malformed error reply: {sanitize(repr(err))}", command=command)
    cls = str(err.get("class", "GenericError"))
    desc = sanitize(str(err.get("desc", "")))
    return error_from_text(cls, desc, command)


def error_from_text(cls: str, desc: str, command: str) -> GuestError | CommandNotSupportedError:
    """Map an error class and description (from a raw reply or a libvirt message)."""
    low = desc.lower()
    if "frozen" in low and ("disabled" in low or "frozen state" in low):
        return GuestFrozenError(f"refused while the guest filesystems are frozen: {desc}",
                                error_class=cls, command=command)
    if cls == "CommandNotFound" or "has not been found" in low or "has been disabled" in low:
        what = "disabled in" if "disabled" in low else "not known to"
        return CommandNotSupportedError(f"command {command} is {what} this agent ({desc})", command=command)
    return GuestError(f"guest error {cls}: {desc}", error_class=cls, command=command)
