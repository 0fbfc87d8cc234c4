# Copyright (c) virt-qga developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make the collection importable as ``ansible_collections.virt_qga.guest_agent`` and the
virt_qga library importable from the repository checkout, when pytest runs these tests
directly (``ansible-test units`` sets up the collection path itself)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve()
COLLECTIONS_ROOT = HERE.parents[5]          # .../ansible (holds ansible_collections/)
REPO_ROOT = COLLECTIONS_ROOT.parent          # the virt-qga checkout

for path in (COLLECTIONS_ROOT, REPO_ROOT):
    if (path / "ansible_collections").is_dir() or (path / "virt_qga").is_dir():
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


# ----------------------------------------------------------------------------- harness

import json  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402


class ModuleExit(SystemExit):
    """exit_json/fail_json stand-in. A SystemExit, like the real ones, so the modules'
    last-resort ``except Exception`` does not swallow it."""

    def __init__(self, failed: bool, result: dict[str, Any]) -> None:
        super().__init__(1 if failed else 0)
        self.failed = failed
        self.result = result


def _module_args_patch(args: dict[str, Any]) -> Any:
    try:  # ansible-core >= 2.19
        from ansible.module_utils.testing import patch_module_args

        return patch_module_args(args)
    except ImportError:  # older ansible-core: the classic global
        from unittest import mock

        from ansible.module_utils import basic
        from ansible.module_utils.common.text.converters import to_bytes

        return mock.patch.object(basic, "_ANSIBLE_ARGS",
                                 to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args})))


@pytest.fixture
def run_module(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``run_module(mod, args, check_mode=False)`` -> ModuleExit (``.failed``, ``.result``,
    ``.result["_warnings"]``)."""
    from ansible.module_utils import basic

    def exit_json(self: Any, **kwargs: Any) -> None:
        kwargs.setdefault("changed", False)
        kwargs["_warnings"] = list(getattr(self, "_test_warnings", []))
        raise ModuleExit(False, kwargs)

    def fail_json(self: Any, msg: str, **kwargs: Any) -> None:
        kwargs["msg"] = msg
        kwargs["_warnings"] = list(getattr(self, "_test_warnings", []))
        raise ModuleExit(True, kwargs)

    def warn(self: Any, warning: str) -> None:
        if not hasattr(self, "_test_warnings"):
            self._test_warnings = []
        self._test_warnings.append(warning)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    monkeypatch.setattr(basic.AnsibleModule, "warn", warn)

    def run(mod: Any, args: dict[str, Any], check_mode: bool = False) -> ModuleExit:
        full = dict(args)
        if check_mode:
            full["_ansible_check_mode"] = True
        with _module_args_patch(full):
            with pytest.raises(ModuleExit) as info:
                mod.main()
        return info.value

    return run


# ----------------------------------------------------------------------------- fake agent
# A stand-in for virt_qga.agent.GuestAgent, for edge cases a real agent cannot produce on
# demand (old versions, disabled commands, timeouts, odd statuses). The integration tests
# in the repository's tests/ansible/ run the same modules against real guests.

import base64  # noqa: E402


class FakeTransport:
    kind = "libvirt"
    max_request_bytes = 4 * 1024 * 1024
    max_reply_bytes = 4 * 1024 * 1024

    def close(self) -> None:
        pass


#: python method -> schema command, for the read-only getters the info module uses.
GETTERS = {
    "get_osinfo": "guest-get-osinfo",
    "get_host_name": "guest-get-host-name",
    "get_fsinfo": "guest-get-fsinfo",
    "get_vcpus": "guest-get-vcpus",
    "network_get_interfaces": "guest-network-get-interfaces",
    "get_timezone": "guest-get-timezone",
    "get_users": "guest-get-users",
    "get_disks": "guest-get-disks",
    "get_time": "guest-get-time",
    "get_memory_blocks": "guest-get-memory-blocks",
    "get_memory_block_info": "guest-get-memory-block-info",
    "fsfreeze_status": "guest-fsfreeze-status",
}


class FakeAgent:
    """Programs are ``handler(argv, env, stdin) -> dict`` with ``exitcode``/``signal``,
    ``stdout``/``stderr`` (bytes) and optionally ``running=True`` (never exits)."""

    def __init__(self, *, version: str = "7.2.15", disabled: tuple[str, ...] = (),
                 unknown: tuple[str, ...] = (), replies: dict[str, Any] | None = None,
                 program: Any = None) -> None:
        self.name = "fake"
        self.transport = FakeTransport()
        self._version = version
        known = set(GETTERS.values()) | {"guest-exec", "guest-exec-status", "guest-ping",
                                         "guest-info", "guest-fsfreeze-freeze"}
        self.commands = {c: c not in disabled for c in known - set(unknown)}
        self.replies = {"guest-fsfreeze-status": "thawed", **(replies or {})}
        self.program = program or (lambda argv, env, stdin: {"exitcode": 0})
        self.calls: list[Any] = []
        self.started: list[list[str]] = []
        self._procs: dict[int, dict[str, Any]] = {}
        self.closed = False

    # -- what the modules use -------------------------------------------------------
    def ping(self) -> None:
        self.calls.append("guest-ping")

    def capabilities(self, refresh: bool = False) -> Any:
        from virt_qga.agent import Capabilities

        return Capabilities(version=self._version, commands=dict(self.commands))

    @property
    def version(self) -> str:
        return self._version

    def _check(self, command: str) -> None:
        from virt_qga.errors import CommandNotSupportedError

        if command not in self.commands:
            raise CommandNotSupportedError(f"command {command} is not supported by this agent "
                                           f"(qemu-ga {self._version})", command=command)
        if not self.commands[command]:
            raise CommandNotSupportedError(f"command {command} is disabled in this agent",
                                           command=command)

    def __getattr__(self, attr: str) -> Any:
        if attr in GETTERS:
            command = GETTERS[attr]

            def getter() -> Any:
                self._check(command)
                self.calls.append(command)
                return self.replies[command]
            return getter
        raise AttributeError(attr)

    def exec(self, path: str, arg: list[str] | None = None, env: list[str] | None = None,
             input_data: str | None = None, capture_output: Any = None) -> dict[str, int]:
        self._check("guest-exec")
        argv = [path, *(arg or [])]
        self.calls.append("guest-exec")
        self.started.append(argv)
        stdin = base64.b64decode(input_data) if input_data else b""
        pid = 100 + len(self.started)
        self._procs[pid] = dict(self.program(argv, env, stdin))
        return {"pid": pid}

    def exec_status(self, pid: int) -> dict[str, Any]:
        self.calls.append("guest-exec-status")
        proc = self._procs[pid]
        if proc.get("running"):
            return {"exited": False}
        out: dict[str, Any] = {"exited": True}
        if proc.get("signal") is not None:
            out["signal"] = proc["signal"]
        else:
            out["exitcode"] = proc.get("exitcode", 0)
        for key, field in (("stdout", "out-data"), ("stderr", "err-data")):
            if proc.get(key):
                out[field] = base64.b64encode(proc[key]).decode()
        if proc.get("out_truncated"):
            out["out-truncated"] = True
        return out

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_agent(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``fake_agent(mod, **FakeAgent kwargs)``: the module ``mod`` opens this agent."""

    def install(mod: Any, **kwargs: Any) -> FakeAgent:
        agent = FakeAgent(**kwargs)
        monkeypatch.setattr(mod, "open_agent", lambda module, timeout=None: agent)
        return agent

    return install
