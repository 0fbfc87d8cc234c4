"""Guest information and account commands that need more than one agent call.

The read-only ``guest-get-*`` commands are one call each and are rendered by the CLI
directly; what lives here is the logic around the others: the clock sync, password
and SSH key input checks, and flattening replies into table rows.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from virt_qga.errors import BadInputError

if TYPE_CHECKING:
    from virt_qga.agent import GuestAgent

#: A password longer than this is refused (chpasswd lines, and nobody types more).
MAX_PASSWORD = 4096
#: Bytes read from a password or key source at most.
MAX_SECRET_READ = 64 * 1024


# ------------------------------------------------------------------ clock

@dataclass(frozen=True)
class TimeSync:
    guest_before_ns: int
    host_ns: int
    guest_after_ns: int

    @property
    def offset_before_ns(self) -> int:
        """Guest minus host before the sync (positive: guest was ahead)."""
        return self.guest_before_ns - self.host_ns

    @property
    def offset_after_ns(self) -> int:
        return self.guest_after_ns - time.time_ns()

    def to_dict(self) -> dict[str, Any]:
        return {"guest_before_ns": self.guest_before_ns, "host_ns": self.host_ns,
                "guest_after_ns": self.guest_after_ns, "offset_before_ns": self.offset_before_ns}


def sync_time_from_host(agent: GuestAgent) -> TimeSync:
    """Set the guest clock to the host's (guest-set-time with the host time in ns)."""
    before = int(agent.get_time())
    host = time.time_ns()
    agent.set_time(time=host)
    after = int(agent.get_time())
    return TimeSync(before, host, after)


def format_ns(ns: int) -> str:
    """UTC ISO-8601 with microseconds for a time in ns since the epoch."""
    secs, rem = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{rem // 1000:06d}Z"


# ------------------------------------------------------------------ secrets

def read_secret(stream: IO[bytes], what: str = "password") -> str:
    """The first line of ``stream`` (trailing newline dropped), validated for chpasswd."""
    raw = stream.read(MAX_SECRET_READ + 1)
    if len(raw) > MAX_SECRET_READ:
        raise BadInputError(f"{what} input is too large", field=what)
    text = raw.decode("utf-8", "strict") if raw else ""
    line = text.split("\n", 1)[0].removesuffix("\r")
    check_password(line)
    return line


def check_password(password: str, *, crypted: bool = False) -> None:
    if not password:
        raise BadInputError("the new password is empty", field="password")
    if len(password) > MAX_PASSWORD:
        raise BadInputError("the new password is too long", field="password")
    if any(ch in password for ch in "\n\r\0"):
        raise BadInputError("the new password contains a newline or NUL", field="password")
    if crypted and not password.startswith("$"):
        raise BadInputError("a crypted password must be a crypt(3) hash such as $6$salt$hash",
                            field="password")


def set_password(agent: GuestAgent, user: str, password: str, *, crypted: bool = False) -> None:
    """guest-set-user-password (the agent wants it base64-encoded). Never logged."""
    if not user or ":" in user or "\n" in user:
        raise BadInputError(f"invalid user name {user!r}", field="USER")
    check_password(password, crypted=crypted)
    encoded = base64.b64encode(password.encode("utf-8")).decode("ascii")
    agent.set_user_password(user, encoded, crypted)


# ------------------------------------------------------------------ ssh keys

def parse_keys(text: str) -> list[str]:
    """authorized_keys-style text -> keys (blank lines and comments dropped)."""
    keys = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keys.append(line)
    return keys


def check_keys(keys: list[str]) -> list[str]:
    out = []
    for key in keys:
        key = key.strip()
        if not key or "\n" in key or "\0" in key:
            raise BadInputError("an SSH key must be one non-empty line", field="KEY")
        if len(key.split()) < 2:
            raise BadInputError(f"not an SSH public key (expected 'TYPE BASE64 [comment]'): {key[:40]!r}",
                                field="KEY")
        out.append(key)
    return out


# ------------------------------------------------------------------ table rows

def net_rows(ifaces: list[Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for nic in ifaces:
        addrs = ", ".join(f"{a.get('ip-address')}/{a.get('prefix')}" for a in nic.get("ip-addresses", []))
        st = nic.get("statistics") or {}
        rows.append((nic.get("name", ""), nic.get("hardware-address", ""), addrs or "-",
                     str(st.get("rx-bytes", "")), str(st.get("tx-bytes", "")),
                     str(st.get("rx-errs", 0) + st.get("tx-errs", 0)) if st else "",
                     str(st.get("rx-dropped", 0) + st.get("tx-dropped", 0)) if st else ""))
    return rows


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def fs_rows(fss: list[Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for fs in fss:
        disks = ", ".join(d.get("dev") or d.get("serial") or f"{d.get('bus-type')}:{d.get('target')}"
                          for d in fs.get("disk", []))
        used, total = fs.get("used-bytes"), fs.get("total-bytes")
        rows.append((fs.get("mountpoint", ""), fs.get("type", ""), fs.get("name", ""),
                     human_bytes(used), human_bytes(total), disks or "-"))
    return rows
