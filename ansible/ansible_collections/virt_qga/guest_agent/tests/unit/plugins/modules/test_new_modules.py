# Copyright (c) virt-qga developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The new modules' own edges with a fake agent: what check mode sends, diff output,
secrets kept out of results, failures as one line with an exit code. The workflows'
logic has its tests in the repository's tests/unit; the lab playbook runs them for real."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.virt_qga.guest_agent.plugins.modules import (
    virt_qga_authorized_key,
    virt_qga_call,
    virt_qga_power,
    virt_qga_user_password,
)

K1 = "ssh-ed25519 AAAAC3Nza one"
K2 = "ssh-ed25519 AAAAC3Nzb two"


class Agent:
    """Records calls; knows SSH keys and a password setter."""

    name = "fake"

    def __init__(self, keys: list[str] | None = None) -> None:
        self.sent: list[tuple[str, Any]] = []
        self.keys = list(keys or [])
        self.closed = False

    def call(self, command: str, args: dict[str, Any]) -> Any:
        self.sent.append((command, args))
        return {"kernel-release": "6.1"} if command == "guest-get-osinfo" else {"paths": []}

    def ssh_get_authorized_keys(self, user: str) -> dict[str, Any]:
        return {"keys": list(self.keys)}

    def ssh_add_authorized_keys(self, user: str, keys: list[str], reset: bool = False) -> None:
        self.sent.append(("add", keys))
        self.keys = (list(keys) if reset else self.keys + [k for k in keys if k not in self.keys])

    def ssh_remove_authorized_keys(self, user: str, keys: list[str]) -> None:
        self.sent.append(("remove", keys))
        self.keys = [k for k in self.keys if k not in keys]

    def set_user_password(self, user: str, password: str, crypted: bool) -> None:
        self.sent.append(("password", user))

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def agent(monkeypatch: pytest.MonkeyPatch) -> Agent:
    a = Agent(keys=[K1])
    for mod in (virt_qga_call, virt_qga_authorized_key, virt_qga_user_password, virt_qga_power):
        monkeypatch.setattr(mod, "open_agent", lambda module, timeout=None: a)
    return a


def test_call_check_mode_sends_only_read_only_commands(run_module: Any, agent: Agent) -> None:
    ro = run_module(virt_qga_call, {"domain": "d", "command": "get-osinfo"}, check_mode=True)
    assert ro.result["changed"] is False and ro.result["reply"] == {"kernel-release": "6.1"}
    rw = run_module(virt_qga_call, {"domain": "d", "command": "fstrim", "args": {"minimum": 1}},
                    check_mode=True)
    assert rw.result["changed"] is True and "reply" not in rw.result and rw.result["read_only"] is False
    assert agent.sent == [("guest-get-osinfo", {})]
    real = run_module(virt_qga_call, {"domain": "d", "command": "fstrim", "args": {"minimum": 1}})
    assert real.result["changed"] is True and agent.sent[-1] == ("guest-fstrim", {"minimum": 1})


@pytest.mark.parametrize(("args", "text"), [
    ({"command": "guest-fstrim", "args": {"minimum": "x"}}, "minimum"),
    ({"command": "guest-nope"}, "unknown guest agent command"),
    ({"command": "guest-shutdown"}, "no reply"),
])
def test_call_bad_input_fails_before_sending(run_module: Any, agent: Agent, args: dict[str, Any],
                                             text: str) -> None:
    res = run_module(virt_qga_call, {"domain": "d", **args})
    assert res.failed and res.result["exit_code"] == 2 and text in res.result["msg"]
    assert "\n" not in res.result["msg"] and agent.sent == []


def test_authorized_key_diff_and_check_mode(run_module: Any, agent: Agent) -> None:
    args = {"domain": "d", "user": "u", "keys": [K2], "state": "exclusive", "_ansible_diff": True}
    res = run_module(virt_qga_authorized_key, args, check_mode=True)
    assert res.result["changed"] is True and agent.sent == []
    assert res.result["diff"]["before"] == f"{K1}\n" and res.result["diff"]["after"] == f"{K2}\n"
    res = run_module(virt_qga_authorized_key, {"domain": "d", "user": "u", "keys": [K1]})
    assert res.result["changed"] is False and agent.sent == [] and "diff" not in res.result


def test_authorized_key_present_needs_keys(run_module: Any, agent: Agent) -> None:
    res = run_module(virt_qga_authorized_key, {"domain": "d", "user": "u"})
    assert res.failed and res.result["exit_code"] == 2 and "at least one SSH key" in res.result["msg"]


def test_password_never_in_the_result(run_module: Any, agent: Agent) -> None:
    res = run_module(virt_qga_user_password, {"domain": "d", "user": "u", "password": "s3cret-pw"})
    assert res.result["changed"] is True and agent.sent == [("password", "u")]
    assert "s3cret-pw" not in repr(res.result)
    check = run_module(virt_qga_user_password, {"domain": "d", "user": "u", "password": "s3cret-pw"},
                       check_mode=True)
    assert check.result["changed"] is True and len(agent.sent) == 1


def test_power_options_come_from_the_workflow(run_module: Any, agent: Agent) -> None:
    spec = virt_qga_power.argument_spec()
    assert spec["mode"]["choices"] == ["powerdown", "halt", "reboot"]
    assert spec["wait_timeout"]["default"] == 120.0 and spec["timeout"]["default"] == 30.0
    res = run_module(virt_qga_power, {"domain": "d", "mode": "sleep"})
    assert res.failed and "mode" in res.result["msg"]
