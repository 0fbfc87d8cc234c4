# Copyright (c) virt-qga developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Edge cases of the desired-state workflows behind the new Ansible modules: SSH keys,
passwords (shadow reading), the read-only command list, power's nothing-to-do, recover's
dry-run bookkeeping. The fakes stand in for replies a real agent gives only by chance
(a huge /etc/shadow, an agent without file commands)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from virt_qga.errors import BadInputError, CommandNotSupportedError, GuestError
from virt_qga.spec import READ_ONLY_COMMANDS, command_name, get_spec, is_read_only
from virt_qga.workflows import accounts
from virt_qga.workflows.call import plan_call
from virt_qga.workflows.power import already_done
from virt_qga.workflows.recover import RecoverReport

K1 = "ssh-ed25519 AAAAC3Nza one"
K2 = "ssh-rsa AAAAB3Nza two"
K3 = "ssh-ed25519 AAAAC3Nzb three"


class FakeAgent:
    """Keys and /etc/shadow kept in memory, the calls recorded."""

    name = "fake"

    def __init__(self, keys: list[str] | None = None, shadow: bytes | None = None,
                 files: bool = True) -> None:
        self.keys = keys
        self.shadow = shadow
        self.files = files
        self.calls: list[tuple[str, Any]] = []
        self.pos = 0

    def ssh_get_authorized_keys(self, user: str) -> dict[str, Any]:
        if self.keys is None:
            raise GuestError(f"failed to read '/home/{user}/.ssh/authorized_keys': Failed to open file: "
                             "No such file or directory", command="guest-ssh-get-authorized-keys")
        return {"keys": list(self.keys)}

    def ssh_add_authorized_keys(self, user: str, keys: list[str], reset: bool = False) -> None:
        self.calls.append(("add", (list(keys), reset)))
        base = [] if reset or self.keys is None else self.keys
        self.keys = base + [k for k in keys if k not in base]

    def ssh_remove_authorized_keys(self, user: str, keys: list[str]) -> None:
        self.calls.append(("remove", list(keys)))
        self.keys = [k for k in self.keys or [] if k not in keys]

    def file_open(self, path: str, mode: str) -> int:
        if not self.files or self.shadow is None:
            raise CommandNotSupportedError("command guest-file-open is disabled", command="guest-file-open")
        self.pos = 0
        return 7

    def file_read(self, handle: int, count: int) -> dict[str, Any]:
        assert self.shadow is not None
        chunk = self.shadow[self.pos:self.pos + count]
        self.pos += len(chunk)
        return {"count": len(chunk), "buf-b64": base64.b64encode(chunk).decode(),
                "eof": self.pos >= len(self.shadow)}

    def file_close(self, handle: int) -> None:
        self.calls.append(("close", handle))

    def set_user_password(self, user: str, password: str, crypted: bool) -> None:
        self.calls.append(("password", (user, base64.b64decode(password).decode(), crypted)))


def ensure(agent: FakeAgent, keys: list[str], state: str, check: bool = False) -> accounts.KeysChange:
    return accounts.ensure_keys(agent, "tester", keys, state, check=check)  # type: ignore[arg-type]


# ------------------------------------------------------------------ ssh keys

@pytest.mark.parametrize(("current", "wanted", "state", "add", "remove"), [
    ([K1], [K1, K2], "present", [K2], []),
    ([K1, K2], [K2, K2], "present", [], []),
    ([K1, K2], [K2, K3], "absent", [], [K2]),
    ([K1, K2], [K3], "absent", [], []),
    ([K1, K2], [K2, K3], "exclusive", [K3], [K1]),
    ([K1, K1], [K1], "exclusive", [], []),
    ([K1, K2], [], "exclusive", [], [K1, K2]),
])
def test_plan_keys(current: list[str], wanted: list[str], state: str, add: list[str],
                   remove: list[str]) -> None:
    assert accounts.plan_keys(current, wanted, state) == (add, remove)


def test_no_keys_file_is_no_keys_and_present_creates_it() -> None:
    agent = FakeAgent(keys=None)
    change = ensure(agent, [K1], "present")
    assert change.changed and change.before == [] and change.after == [K1]
    assert agent.calls == [("add", ([K1], False))]


def test_check_mode_sends_nothing_and_predicts_the_keys() -> None:
    agent = FakeAgent(keys=[K1, K2])
    change = ensure(agent, [K2, K3], "exclusive", check=True)
    assert change.changed and change.after == [K2, K3] and change.removed == [K1]
    assert agent.calls == [] and agent.keys == [K1, K2]


def test_exclusive_resets_once_and_second_run_changes_nothing() -> None:
    agent = FakeAgent(keys=[K1, K2])
    assert ensure(agent, [K3], "exclusive").after == [K3]
    assert agent.calls == [("add", ([K3], True))]
    assert not ensure(agent, [K3], "exclusive").changed and len(agent.calls) == 1


def test_absent_removes_only_what_is_there() -> None:
    agent = FakeAgent(keys=[K1, K2])
    change = ensure(agent, [K2, K3], "absent")
    assert change.removed == [K2] and agent.calls == [("remove", [K2])] and agent.keys == [K1]


@pytest.mark.parametrize(("user", "keys", "state", "field"), [
    ("tester", [], "present", "keys"),
    ("tester", [], "absent", "keys"),
    ("tester", ["not-a-key"], "present", "KEY"),
    ("tester", ["ssh-ed25519 AAAA\nssh-rsa BBBB"], "present", "KEY"),
    ("", [K1], "present", "user"),
    ("a:b", [K1], "present", "user"),
    ("tester", [K1], "sometimes", "state"),
])
def test_bad_key_input_is_refused_before_anything_is_sent(user: str, keys: list[str], state: str,
                                                          field: str) -> None:
    agent = FakeAgent(keys=[K1])
    with pytest.raises(BadInputError) as exc:
        accounts.ensure_keys(agent, user, keys, state)  # type: ignore[arg-type]
    assert exc.value.field == field and agent.calls == []


def test_other_key_read_errors_are_not_hidden() -> None:
    class Refusing(FakeAgent):
        def ssh_get_authorized_keys(self, user: str) -> dict[str, Any]:
            raise GuestError("user 'ghost' not found", command="guest-ssh-get-authorized-keys")

    with pytest.raises(GuestError, match="not found"):
        ensure(Refusing(), [K1], "present")


# ------------------------------------------------------------------ passwords

SHADOW = b"root:*:19000:0:99999:7:::\ntester:!:19000:0:99999:7:::\nset:$6$s$h:19000::::::\nempty::1::::::\n"


@pytest.mark.parametrize(("field", "usable"), [("", False), ("!", False), ("*", False), ("!!", False),
                                               ("!$6$s$h", False), ("$6$s$h", True), ("x", True)])
def test_shadow_field_usable_password(field: str, usable: bool) -> None:
    entry = accounts.parse_shadow(f"u:{field}:1::::::\n", "u")
    assert entry is not None and entry.has_password is usable


def test_parse_shadow_finds_only_the_exact_user() -> None:
    assert accounts.parse_shadow("testers:$6$x:1\n", "tester") is None
    entry = accounts.parse_shadow("garbage\n\ntester:$1$a:1\n", "tester")
    assert entry == accounts.ShadowEntry("tester", "$1$a")


def pw(agent: FakeAgent, user: str, password: str, **kw: Any) -> accounts.PasswordChange:
    return accounts.ensure_password(agent, user, password, **kw)  # type: ignore[arg-type]


def test_on_create_sets_only_without_a_usable_password() -> None:
    agent = FakeAgent(shadow=SHADOW)
    assert pw(agent, "tester", "pw1", update="on_create").changed
    assert pw(agent, "empty", "pw1", update="on_create").changed
    assert not pw(agent, "set", "pw1", update="on_create").changed
    sent = [c[1] for c in agent.calls if c[0] == "password"]
    assert sent == [("tester", "pw1", False), ("empty", "pw1", False)]


def test_on_create_in_check_mode_and_missing_user() -> None:
    agent = FakeAgent(shadow=SHADOW)
    assert pw(agent, "tester", "pw1", update="on_create", check=True).changed
    assert not [c for c in agent.calls if c[0] == "password"]
    with pytest.raises(BadInputError, match="does not exist") as exc:
        pw(agent, "ghost", "pw1", update="on_create")
    assert exc.value.field == "user"


def test_on_create_without_readable_shadow_fails_instead_of_guessing() -> None:
    with pytest.raises(GuestError, match="on_create needs to read /etc/shadow"):
        pw(FakeAgent(shadow=SHADOW, files=False), "tester", "pw1", update="on_create")


def test_crypted_same_hash_is_unchanged_and_always_plain_is_always_changed() -> None:
    agent = FakeAgent(shadow=SHADOW)
    assert not pw(agent, "set", "$6$s$h", crypted=True).changed
    assert pw(agent, "set", "$6$s$other", crypted=True).changed
    assert pw(agent, "set", "plain", update="always").changed
    assert [c[1] for c in agent.calls if c[0] == "password"] == [("set", "$6$s$other", True),
                                                                  ("set", "plain", False)]


def test_crypted_without_shadow_is_set_anyway() -> None:
    agent = FakeAgent(shadow=None)
    assert pw(agent, "set", "$6$s$h", crypted=True).changed


@pytest.mark.parametrize(("password", "kw", "match"), [
    ("", {}, "empty"), ("a\nb", {}, "newline"), ("nohash", {"crypted": True}, "crypt"),
    ("x", {"update": "never"}, "update_password"),
])
def test_bad_password_input(password: str, kw: dict[str, Any], match: str) -> None:
    agent = FakeAgent(shadow=SHADOW)
    with pytest.raises(BadInputError, match=match):
        pw(agent, "tester", password, **kw)
    assert agent.calls == []


def test_oversized_shadow_is_refused() -> None:
    big = b"x:y:1\n" * (accounts.MAX_SHADOW // 6 + 10)
    with pytest.raises(GuestError, match="larger than"):
        pw(FakeAgent(shadow=big), "tester", "pw", update="on_create")


# ------------------------------------------------------------------ call: read-only list

def test_read_only_commands_exist_and_exclude_state_changing_ones() -> None:
    spec = get_spec()
    assert set(READ_ONLY_COMMANDS) <= set(spec.commands)
    for name in ("guest-exec", "guest-exec-status", "guest-file-open", "guest-file-read",
                 "guest-fsfreeze-freeze", "guest-set-time", "guest-ssh-add-authorized-keys"):
        assert not is_read_only(name)
    assert all(is_read_only(n) for n in spec.commands if n.startswith("guest-get-"))


def test_plan_call_names_validation_and_refusals() -> None:
    assert command_name("get-osinfo") == "guest-get-osinfo"
    plan = plan_call("fstrim", {"minimum": 4096})
    assert (plan.command, plan.args, plan.read_only) == ("guest-fstrim", {"minimum": 4096}, False)
    assert plan_call("guest-ping", None).read_only
    with pytest.raises(BadInputError, match="minimum"):
        plan_call("guest-fstrim", {"minimum": "big"})
    with pytest.raises(BadInputError, match="no reply"):
        plan_call("guest-shutdown", {"mode": "reboot"})
    with pytest.raises(BadInputError, match="unknown guest agent command"):
        plan_call("guest-frobnicate", {})


# ------------------------------------------------------------------ power, recover

class _Transport:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.dom, self.conn = object(), object()


class _PowerAgent:
    def __init__(self, kind: str) -> None:
        self.transport = _Transport(kind)


@pytest.mark.parametrize(("kind", "mode", "state", "expect"), [
    ("libvirt", "powerdown", "shut off", "the domain is already shut off"),
    ("libvirt", "halt", "shut off", "the domain is already shut off"),
    ("libvirt", "powerdown", "running", None),
    ("libvirt", "reboot", "shut off", None),
    ("socket", "powerdown", "shut off", None),
])
def test_power_nothing_to_do_only_when_libvirt_says_shut_off(
        monkeypatch: pytest.MonkeyPatch, kind: str, mode: str, state: str, expect: str | None) -> None:
    from virt_qga.host import Domain

    monkeypatch.setattr(Domain, "state", lambda self: state)
    assert already_done(_PowerAgent(kind), mode) == expect  # type: ignore[arg-type]


def test_recover_report_dry_run_words_and_changed() -> None:
    dry = RecoverReport("vm", None, dry_run=True)
    dry.would("thaw the guest")
    real = RecoverReport("vm", None)
    real.did("removed x")
    assert dry.actions == ["would thaw the guest"] and dry.changed
    assert real.actions == ["removed x"] and real.to_dict()["changed"] is True
    assert RecoverReport("vm", None).to_dict()["changed"] is False


def test_cli_actions_map_to_states_and_list_without_file_is_empty() -> None:
    agent = FakeAgent(keys=None)
    listed = accounts.ssh_keys(agent, "tester", "list", [])  # type: ignore[arg-type]
    assert listed.after == [] and not listed.changed
    assert accounts.ssh_keys(agent, "tester", "add", [K1]).added == [K1]  # type: ignore[arg-type]
    again = accounts.ssh_keys(agent, "tester", "add", [K1])  # type: ignore[arg-type]
    assert not again.changed and agent.calls == [("add", ([K1], False))]
    assert accounts.ssh_keys(agent, "tester", "set", [K2]).after == [K2]  # type: ignore[arg-type]
    with pytest.raises(BadInputError, match="unknown action"):
        accounts.ssh_keys(agent, "tester", "append", [K1])  # type: ignore[arg-type]
