"""Desired-state account changes: a user's SSH keys and password, idempotent where the
agent lets us tell.

* :func:`ensure_keys` reads the current keys (``guest-ssh-get-authorized-keys``),
  works out what to add and remove for ``present``, ``absent`` or ``exclusive``, and
  changes only that (nothing in a dry run). Keys compare as whole lines.
* :func:`ensure_password` sets a password with ``guest-set-user-password``. The agent
  has no way to read a password back, so a plain-text password is set every time
  (``always``), unless ``on_create`` is asked: then the password is set only when the
  account has no usable one yet. That, and a crypted password already in place, is
  read from the guest's ``/etc/shadow`` through the agent's file commands (the agent
  runs as root); ``guest-get-users`` cannot help, it lists logged-in users only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from virt_qga.errors import BadInputError, GuestError, VirtQgaError
from virt_qga.options import declare, option
from virt_qga.workflows.guest_info import check_keys, check_password, set_password

if TYPE_CHECKING:
    from virt_qga.agent import GuestAgent

KEY_STATES = ("present", "absent", "exclusive")
UPDATE_PASSWORD = ("always", "on_create")

#: The guest file that says whether an account has a password.
SHADOW = "/etc/shadow"
#: Bytes of /etc/shadow read at most (a few thousand accounts).
MAX_SHADOW = 1024 * 1024
#: Text in qemu-ga's error when the user has no authorized_keys file yet.
NO_KEYS_FILE = ("no such file", "failed to read")


# ------------------------------------------------------------------ ssh keys

@dataclass
class KeysChange:
    user: str
    state: str
    before: list[str]
    after: list[str]
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    check: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)

    def to_dict(self) -> dict[str, Any]:
        return {"user": self.user, "state": self.state, "changed": self.changed, "keys": self.after,
                "added": self.added, "removed": self.removed}


def _unique(keys: list[str]) -> list[str]:
    return list(dict.fromkeys(keys))


def plan_keys(current: list[str], wanted: list[str], state: str) -> tuple[list[str], list[str]]:
    """(keys to add, keys to remove) that bring ``current`` to ``state`` for ``wanted``."""
    if state not in KEY_STATES:
        raise BadInputError(f"state must be one of {', '.join(KEY_STATES)}", field="state")
    have = set(current)
    if state == "absent":
        return [], [k for k in _unique(wanted) if k in have]
    add = [k for k in _unique(wanted) if k not in have]
    if state == "present":
        return add, []
    want = set(wanted)
    return add, [k for k in _unique(current) if k not in want]


def current_keys(agent: GuestAgent, user: str) -> list[str]:
    """The user's authorized keys; none when the file does not exist yet."""
    try:
        return [str(k) for k in agent.ssh_get_authorized_keys(user)["keys"]]
    except GuestError as exc:
        text = str(exc).lower()
        if all(part in text for part in NO_KEYS_FILE):
            return []
        raise


def ensure_keys(agent: GuestAgent, user: str, keys: list[str], state: str, *,
                check: bool = False) -> KeysChange:
    """Make ``user``'s authorized keys match ``state`` for ``keys``; in a dry run
    (``check``) only read and report what would change."""
    if state not in KEY_STATES:
        raise BadInputError(f"state must be one of {', '.join(KEY_STATES)}", field="state")
    if not user or any(ch in user for ch in ":/\n\0"):
        raise BadInputError(f"invalid user name {user!r}", field="user")
    wanted = check_keys(list(keys)) if keys else []
    if not wanted and state != "exclusive":
        raise BadInputError("at least one SSH key is needed to add or remove", field="keys")
    before = current_keys(agent, user)
    add, remove = plan_keys(before, wanted, state)
    change = KeysChange(user, state, before, list(before), add, remove, check)
    if not change.changed:
        return change
    if check:
        change.after = [k for k in before if k not in set(remove)] + add
        return change
    if state == "exclusive":
        agent.ssh_add_authorized_keys(user, _unique(wanted), reset=True)
    else:
        if add:
            agent.ssh_add_authorized_keys(user, add)
        if remove:
            agent.ssh_remove_authorized_keys(user, remove)
    change.after = current_keys(agent, user)
    return change


#: The CLI's ssh-keys actions as states.
ACTION_STATES = {"add": "present", "remove": "absent", "set": "exclusive"}


def ssh_keys(agent: GuestAgent, user: str, action: str, keys: list[str]) -> KeysChange:
    """The CLI's ``ssh-keys``: ``list`` reads; add/remove/set are ``ensure_keys`` with
    present/absent/exclusive (so a key already there is not sent again)."""
    if action == "list":
        current = current_keys(agent, user)
        return KeysChange(user, "list", current, current)
    if action not in ACTION_STATES:
        raise BadInputError(f"unknown action {action!r}", field="ACTION")
    return ensure_keys(agent, user, keys, ACTION_STATES[action])


# ------------------------------------------------------------------ password

@declare
@dataclass(frozen=True)
class PasswordOptions:
    """How a new password is given and when it is set (CLI ``password``, Ansible
    ``virt_qga_user_password``)."""

    crypted: bool = option(False, help=(
        "The new password is already a crypt(3) hash such as $6$salt$hash, not plain text."))
    update_password: str = option("always", choices=UPDATE_PASSWORD, help=(
        "always: set the password on every run; on_create: only while the account has no "
        "usable password (its /etc/shadow field is empty, or starts with ! or *)."))


@dataclass(frozen=True)
class ShadowEntry:
    user: str
    hash: str

    @property
    def has_password(self) -> bool:
        """A usable password: not empty, not locked (``!``/``*``)."""
        return bool(self.hash) and not self.hash.startswith(("!", "*"))


def parse_shadow(text: str, user: str) -> ShadowEntry | None:
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 2 and fields[0] == user:
            return ShadowEntry(user, fields[1])
    return None


def read_shadow_entry(agent: GuestAgent, user: str) -> ShadowEntry | None:
    """``user``'s line of the guest's /etc/shadow (None: no such account)."""
    import base64

    from virt_qga.workflows.files.guest import guest_file

    data = b""
    with guest_file(agent, SHADOW, "r") as handle:
        while len(data) <= MAX_SHADOW:
            reply = agent.file_read(handle, count=64 * 1024)
            data += base64.b64decode(reply.get("buf-b64", ""))
            if reply.get("eof") or not reply.get("count"):
                break
    if len(data) > MAX_SHADOW:
        raise GuestError(f"{SHADOW} in the guest is larger than {MAX_SHADOW} bytes",
                         command="guest-file-read")
    return parse_shadow(data.decode("utf-8", "replace"), user)


@dataclass
class PasswordChange:
    user: str
    changed: bool
    reason: str
    crypted: bool

    def to_dict(self) -> dict[str, Any]:
        return {"user": self.user, "changed": self.changed, "msg": self.reason, "crypted": self.crypted}


def ensure_password(agent: GuestAgent, user: str, password: str, *, crypted: bool = False,
                    update: str = "always", check: bool = False) -> PasswordChange:
    """Set ``user``'s password per ``update`` (see the module doc); ``check``: dry run."""
    if update not in UPDATE_PASSWORD:
        raise BadInputError(f"update_password must be one of {', '.join(UPDATE_PASSWORD)}",
                            field="update_password")
    check_password(password, crypted=crypted)
    entry: ShadowEntry | None = None
    if update == "on_create" or crypted:
        try:
            entry = read_shadow_entry(agent, user)
        except VirtQgaError as exc:
            if update == "on_create":
                raise GuestError(f"update_password=on_create needs to read {SHADOW} in the guest: {exc}",
                                 command="guest-file-open") from exc
            entry = None  # crypted + always: cannot compare, set it
        else:
            if entry is None:
                raise BadInputError(f"user {user} does not exist in the guest ({SHADOW})", field="user")
    if update == "on_create" and entry is not None and entry.has_password:
        return PasswordChange(user, False, f"{user} already has a password (update_password=on_create)",
                              crypted)
    if crypted and entry is not None and entry.hash == password:
        return PasswordChange(user, False, f"{user} already has this password hash", crypted)
    if check:
        return PasswordChange(user, True, f"would set the password of {user} (check mode)", crypted)
    set_password(agent, user, password, crypted=crypted)
    return PasswordChange(user, True, f"set the password of {user}", crypted)
