# Copyright (c) virt-qga developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared plumbing of the virt_qga.guest_agent modules.

* ``common_argument_spec()``: the options of the ``common`` doc fragment;
* ``require_library(module)``: a clean ``missing_required_lib`` failure when the
  ``virt_qga`` package is not installed on the managed node;
* ``target(module)`` / ``open_agent(module)`` / ``open_domain(module)``: the module's
  guest through the one resolver of the CLI (libvirt domain or channel socket);
* ``workflow_options(module, cls)``: a workflow's options dataclass from the parameters
  (the options themselves are generated into each module by ``tools/gen_ansible.py``);
* ``error_result(exc)`` / ``fail_from_error(module, exc)``: one ``fail_json`` shape for
  every virt-qga error (``msg``, ``exit_code``, ``error`` and what the error carries),
  the same exit codes the ``virt-qga`` CLI uses;
* ``run_guarded(module, fn)``: runs a module body so that no traceback reaches the user.
"""

from __future__ import annotations

import os
import shlex
import traceback
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from ansible.module_utils.basic import missing_required_lib

if TYPE_CHECKING:
    from ansible.module_utils.basic import AnsibleModule
    from virt_qga.agent import GuestAgent
    from virt_qga.host import Domain
    from virt_qga.workflows.target import Target

T = TypeVar("T")

VIRT_QGA_IMPORT_ERROR: str | None
try:
    from virt_qga.errors import VirtQgaError, set_option_spelling
    from virt_qga.exitcodes import ExitCode
    from virt_qga.options import ansible_name
except ImportError:  # reported by require_library()
    HAS_VIRT_QGA = False
    VIRT_QGA_IMPORT_ERROR = traceback.format_exc()
    # Without the library these names are None; require_library() fails the module
    # before anything uses ExitCode, and error_result() checks VirtQgaError first.
    VirtQgaError = None  # type: ignore[assignment,misc]
    ExitCode = None  # type: ignore[assignment,misc]
else:
    HAS_VIRT_QGA = True
    VIRT_QGA_IMPORT_ERROR = None
    # Messages name workflow options as module options (max_frozen, not --max-frozen).
    set_option_spelling(ansible_name)

#: What the modules import from here (ExitCode is re-exported from the library).
__all__ = [
    "CHANGED_STATES",
    "COLLECTION",
    "COMMON_MODULE_KWARGS",
    "DEFAULT_URI",
    "GENERIC_FAILURE",
    "HAS_VIRT_QGA",
    "URI_ENV",
    "VIRT_QGA_IMPORT_ERROR",
    "ExitCode",
    "VirtQgaError",
    "common_argument_spec",
    "connection_uri",
    "error_changed",
    "error_result",
    "fail_from_error",
    "live_config_diff",
    "module_kwargs",
    "open_agent",
    "open_domain",
    "require_library",
    "run_guarded",
    "target",
    "target_name",
    "undo_action",
    "undo_fields",
    "wait_argument_spec",
    "workflow_options",
]

DEFAULT_URI = "qemu:///system"
URI_ENV = "VIRT_QGA_CONNECT"

#: exit_code reported for failures that are not virt-qga errors (same as ExitCode.FAILED).
GENERIC_FAILURE = 1


def common_argument_spec(**extra: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The shared options (see the ``common`` doc fragment) plus a module's own."""
    spec: dict[str, dict[str, Any]] = dict(
        domain=dict(type="str"),
        uri=dict(type="str"),
        socket=dict(type="path"),
        timeout=dict(type="float", default=30.0),
    )
    spec.update(extra)
    return spec


def wait_argument_spec(default: float) -> dict[str, dict[str, Any]]:
    """``wait_timeout``: the deadline of a module's whole operation, in seconds, for the
    modules that wait for work to finish (a hotplug, a guest command). ``timeout`` keeps
    one meaning in every module: the wait for each single agent reply."""
    return dict(wait_timeout=dict(type="float", default=float(default)))


#: Keyword arguments for AnsibleModule that go with common_argument_spec().
COMMON_MODULE_KWARGS = dict(
    required_one_of=[("domain", "socket")],
)


def module_kwargs(**extra: Any) -> dict[str, Any]:
    """COMMON_MODULE_KWARGS merged with a module's own constraints (lists are joined)."""
    out = {k: list(v) for k, v in COMMON_MODULE_KWARGS.items()}
    for key, value in extra.items():
        if key in out and isinstance(value, list):
            out[key] = out[key] + list(value)
        else:
            out[key] = value
    return out


def require_library(module: AnsibleModule) -> None:
    """fail_json when virt_qga cannot be imported on the managed node."""
    if not HAS_VIRT_QGA:
        module.fail_json(msg=missing_required_lib("virt-qga"), exception=VIRT_QGA_IMPORT_ERROR,
                         exit_code=GENERIC_FAILURE, error="ImportError")


def connection_uri(params: Mapping[str, Any]) -> str:
    """The libvirt URI: the option, else $VIRT_QGA_CONNECT, else qemu:///system."""
    return params.get("uri") or os.environ.get(URI_ENV) or DEFAULT_URI


def target_name(params: Mapping[str, Any]) -> str:
    """What messages call the guest: the domain, else ``unix:<socket>``."""
    return params.get("domain") or "unix:{}".format(params.get("socket"))


def target(module: AnsibleModule) -> Target:
    """The module's guest (virt_qga.workflows.target.Target): domain on uri, or socket."""
    from virt_qga.workflows.target import Target

    p = module.params
    return Target.resolve(target_name(p), uri=connection_uri(p), socket=p.get("socket"))


def open_agent(module: AnsibleModule, timeout: float | None = None) -> GuestAgent:
    """A GuestAgent for the module's domain or socket (nothing is sent yet)."""
    p = module.params
    t = float(timeout if timeout is not None else p["timeout"])
    if t <= 0:
        module.fail_json(msg=f"timeout must be positive, got {t}",
                         exit_code=int(ExitCode.USAGE), error="BadInputError")
    try:
        return target(module).agent(t)
    except ImportError:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=traceback.format_exc(),
                         exit_code=int(ExitCode.AGENT_UNAVAILABLE), error="ImportError")


def open_domain(module: AnsibleModule, what: str = "this module") -> Domain:
    """The host-side handle (virt_qga.host.Domain) of a running domain, for modules that
    change the domain itself (hotplug, snapshots); the agent socket is not enough."""
    from virt_qga.connection import require_running

    d = target(module).domain(what)
    require_running(d.dom)
    return d


def workflow_options(module: AnsibleModule, cls: type[T], **extra: Any) -> T:
    """An options dataclass of a workflow (for example SnapshotOptions) from the module's
    parameters, plus ``extra`` internal fields. Validation is the workflow's own."""
    from virt_qga.options import from_mapping

    return from_mapping(cls, module.params, spell=ansible_name, **extra)


#: Workflow states (virt_qga.outcome.State values) that leave the guest or domain changed:
#: a failure in one of them still reports ``changed: true``.
CHANGED_STATES = frozenset({"done", "pending", "partial", "snapshot-kept", "inconsistent",
                            "maybe-frozen", "running"})


def error_changed(exc: BaseException) -> bool:
    """True when a failed workflow left something changed (its state says so)."""
    return str(getattr(exc, "state", None) or "") in CHANGED_STATES


def error_result(exc: BaseException) -> dict[str, Any]:
    """The fail_json keyword arguments for an exception (one-line msg, no traceback);
    ``changed`` follows the state the workflow left."""
    if VirtQgaError is not None and isinstance(exc, VirtQgaError):
        out = dict(msg=str(exc), exit_code=int(exc.exit_code), error=type(exc).__name__,
                   changed=error_changed(exc))
        for attr in ("error_class", "state", "field", "agent_version", "command"):
            value = getattr(exc, attr, None)
            if value is not None:
                out[attr] = value
        undo = getattr(exc, "undo", None)
        if undo:
            out.update(undo_fields(undo))
        result = getattr(exc, "result", None)
        if result is not None:
            out["result"] = result
        return out
    text = " ".join(str(exc).split()) or type(exc).__name__
    return dict(msg=f"{type(exc).__name__}: {text}", exit_code=GENERIC_FAILURE,
                error=type(exc).__name__)


COLLECTION = "virt_qga.guest_agent"


def undo_action(command: str) -> dict[str, Any]:
    """The task that repairs what a failed workflow left, from the CLI command the library
    names (``OperationError.undo``): ``{"module": FQCN, "args": {...}}``, ready for a
    playbook's ``rescue:`` (for example with ``ansible.builtin.include_role`` or a task
    templated from it). virt-qga commands that a module of this collection does are
    mapped to that module; anything else runs as a command on the hypervisor."""
    text = command.split("  #", 1)[0].strip()
    try:
        argv = shlex.split(text)
    except ValueError:
        argv = text.split()
    if argv[:2] == ["virt-qga", "recover"] and len(argv) == 3:
        return {"module": f"{COLLECTION}.virt_qga_recover", "args": {"domain": argv[2]}}
    if argv[:2] == ["virt-qga", "snapshot"] and len(argv) >= 4 and argv[3] == "--commit-back":
        disks = [argv[i + 1] for i in range(4, len(argv) - 1) if argv[i] == "--disk"]
        args: dict[str, Any] = {"domain": argv[2], "commit_back": True}
        if disks:
            args["disks"] = disks
        return {"module": f"{COLLECTION}.virt_qga_snapshot", "args": args}
    if len(argv) == 2 and argv[0] == "kill" and argv[1].isdigit():
        return {"module": f"{COLLECTION}.virt_qga_exec", "args": {"argv": ["kill", argv[1]]}}
    return {"module": "ansible.builtin.command", "args": {"argv": argv}}


def undo_fields(command: str) -> dict[str, Any]:
    """``undo`` (the task, see :func:`undo_action`) and ``undo_command`` (the CLI text)."""
    return {"undo": undo_action(command), "undo_command": command}


def live_config_diff(key: str, live: Any, config: Any, want: Any, persistent: bool) -> dict[str, Any]:
    """Ansible's diff for a value the domain has live and, with ``persistent``, in its
    persistent definition (``config_<key>``): before and after."""
    before, after = {key: live}, {key: want}
    if persistent:
        before[f"config_{key}"], after[f"config_{key}"] = config, want
    return {"before": before, "after": after}


def fail_from_error(module: AnsibleModule, exc: BaseException, **extra: Any) -> NoReturn:
    """fail_json for ``exc``; ``extra`` adds module-specific keys (e.g. partial output)."""
    kwargs = error_result(exc)
    kwargs.update(extra)
    if not (VirtQgaError is not None and isinstance(exc, VirtQgaError)):
        # Unexpected: keep the traceback for -vvv, never in msg.
        kwargs["exception"] = traceback.format_exc()
    module.fail_json(**kwargs)


def run_guarded(module: AnsibleModule, body: Callable[[AnsibleModule], None]) -> None:
    """Run ``body(module)``; any exception becomes a one-line fail_json.

    ``body`` calls ``module.exit_json``/``fail_json`` itself; SystemExit passes through.
    """
    try:
        body(module)
    except SystemExit:
        raise
    except Exception as exc:
        fail_from_error(module, exc)
