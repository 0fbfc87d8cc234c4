"""Consistent snapshots: pre-check, (hooks,) freeze, snapshot, thaw, verify.

:func:`snapshot` is the library entry point; ``virt-qga snapshot`` is a thin caller.

The promise is that the guest is never left frozen:

* the thaw runs in ``finally`` on every path, and SIGINT/SIGTERM are turned into an
  exception for the duration of the job so that path is taken;
* a separate **thaw guard** process (:mod:`.thaw_guard`), started and confirmed ready
  before the freeze, thaws at ``max_frozen`` seconds or as soon as this process dies;
* a **journal** (:mod:`.journal`) says what was in progress, so ``virt-qga recover``
  can thaw and clean up after a run that died; a **lock** (:mod:`.lock`) keeps two
  jobs on one domain apart.

Everything that can be decided or built before the freeze is (disk plan, overlay
names, snapshot XML and flags, free-space checks, journal write, guard start-up), so
the frozen window holds three calls: freeze, ``snapshotCreateXML`` (or the host
command) and thaw.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from virt_qga.errors import (
    AgentTimeoutError,
    AgentUnavailableError,
    BadInputError,
    DomainNotRunningError,
    LockBusyError,
    OperationError,
    VirtQgaError,
)
from virt_qga.exitcodes import ExitCode
from virt_qga.workflows.journal import Journal, maybe_frozen, state_dir
from virt_qga.workflows.lock import DomainLock, lock_path

if TYPE_CHECKING:
    from virt_qga.agent import GuestAgent
    from virt_qga.host import Domain
    from virt_qga.host.snapshots import DiskInfo

__all__ = [
    "MIN_FREE_BYTES",
    "MODES",
    "QUIESCE_POLICIES",
    "SnapshotOptions",
    "SnapshotResult",
    "commit_back",
    "decide_consistency",
    "snapshot",
]

MODES = ("external", "internal", "command")
QUIESCE_POLICIES = ("required", "preferred", "off")
#: Free space demanded in each overlay directory. A fresh qcow2 overlay is ~200 KiB and
#: grows with the guest's writes; 64 MiB buys minutes of normal write load and stops a
#: snapshot onto a full filesystem (where the guest would pause with ENOSPC at once).
MIN_FREE_BYTES = 64 * 1024 * 1024
#: Freeze/thaw commands that must be enabled for a quiesced snapshot.
FREEZE_COMMANDS = ("guest-fsfreeze-freeze", "guest-fsfreeze-thaw", "guest-fsfreeze-status")


@dataclass
class SnapshotOptions:
    mode: str = "external"
    disks: tuple[str, ...] = ()
    directory: str | None = None
    name: str | None = None
    metadata: bool = False
    mountpoints: tuple[str, ...] = ()
    quiesce: str = "required"
    pre_freeze: str | None = None
    post_thaw: str | None = None
    hook_timeout: float = 60.0
    command: str | None = None
    command_timeout: float = 30.0
    max_frozen: float = 10.0
    force_thaw_first: bool = False
    wait_lock: float = 0.0
    timeout: float = 30.0
    thaw_timeout: float = 5.0
    socket: str | None = None
    min_free_bytes: int = MIN_FREE_BYTES
    state_dir: Path | None = None
    description: str | None = None
    #: Create external overlays with qemu-img before the freeze and pass REUSE_EXT, so
    #: libvirt only attaches them inside the frozen window. None: on for local URIs
    #: and file-backed disks.
    precreate: bool | None = None
    #: A :class:`~virt_qga.workflows.lock.DomainLock` the caller already holds on this
    #: domain (a backup keeps it from snapshot through copy to commit-back); the
    #: snapshot then neither takes nor releases the lock itself.
    held_lock: DomainLock | None = None

    def validate(self) -> None:
        if self.mode not in MODES:
            raise BadInputError(f"--mode must be one of {', '.join(MODES)}", field="--mode")
        if self.quiesce not in QUIESCE_POLICIES:
            raise BadInputError(f"--quiesce must be one of {', '.join(QUIESCE_POLICIES)}",
                                field="--quiesce")
        if self.mode == "command" and not self.command:
            raise BadInputError("--mode command needs --command CMD", field="--command")
        if self.mode != "command" and self.command:
            raise BadInputError("--command is only used with --mode command", field="--command")
        if self.socket and self.mode != "command":
            raise BadInputError("over a bare agent socket only --mode command is possible "
                                "(libvirt makes the external and internal snapshots)", field="--mode")
        if self.max_frozen <= 0 or self.max_frozen > 600:
            raise BadInputError("--max-frozen must be in (0, 600] seconds", field="--max-frozen")
        if self.command_timeout <= 0:
            raise BadInputError("--command-timeout must be positive", field="--command-timeout")
        if self.mode == "internal" and self.directory:
            raise BadInputError("--dir is only for external overlays", field="--dir")
        if self.quiesce == "off" and (self.pre_freeze or self.post_thaw or self.mountpoints):
            raise BadInputError("hooks and --mountpoint need a freeze; not with --quiesce off",
                                field="--quiesce")


@dataclass
class SnapshotResult:
    domain: str
    uri: str | None
    mode: str
    name: str
    consistency: str = "crash"             # application, filesystem or crash
    consistency_reason: str | None = None
    frozen: int | None = None              # filesystems frozen (agent's count)
    thawed: int | None = None              # filesystems thawed (agent's count)
    frozen_window_ms: float | None = None  # freeze reply -> thaw reply, host clock
    timings_ms: dict[str, float] = field(default_factory=dict)
    overlays: list[dict[str, str]] = field(default_factory=list)
    metadata: bool = False
    hooks: dict[str, Any] = field(default_factory=dict)
    command: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    guard: dict[str, Any] = field(default_factory=dict)
    exit_code: int = int(ExitCode.OK)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": True, "domain": self.domain, "uri": self.uri, "mode": self.mode,
            "snapshot": self.name, "consistency": self.consistency,
            "consistency_reason": self.consistency_reason, "frozen": self.frozen,
            "thawed": self.thawed, "frozen_window_ms": self.frozen_window_ms,
            "timings_ms": self.timings_ms, "overlays": self.overlays, "metadata": self.metadata,
            "hooks": self.hooks, "command": self.command, "guard": self.guard,
            "warnings": self.warnings, "exit_code": self.exit_code,
        }


def decide_consistency(policy: str, *, can_freeze: bool, reason: str | None) -> tuple[bool, str | None]:
    """Policy decision before the freeze: (freeze?, why not).

    ``required`` and no freeze possible -> raise (the caller raises the original error);
    returns ``(False, reason)`` under ``preferred``; ``off`` never freezes.
    """
    if policy == "off":
        return False, "quiesce off (requested)"
    if can_freeze:
        return True, None
    if policy == "preferred":
        return False, reason or "guest agent unavailable"
    raise AssertionError("required policy without a freeze must raise before this point")


def achieved_consistency(froze: bool, hooks_ran: bool, guard_fired_early: bool) -> str:
    if not froze or guard_fired_early:
        return "crash"
    return "application" if hooks_ran else "filesystem"


class _Interrupted(BaseException):
    """SIGINT/SIGTERM during the job, raised into the main flow so cleanup runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Signals:
    """Turn SIGINT/SIGTERM into :class:`_Interrupted`; ``hold()`` defers them while
    cleanup runs (a second Ctrl-C must not abort the thaw)."""

    def __init__(self) -> None:
        self.saved: dict[int, Any] = {}
        self.pending: int | None = None
        self.holding = False
        self.active = threading.current_thread() is threading.main_thread()

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.holding:
            self.pending = self.pending or signum
            return
        raise _Interrupted(signum)

    def install(self) -> None:
        if not self.active:
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.saved[sig] = signal.signal(sig, self._handler)

    def hold(self) -> None:
        self.holding = True

    def restore(self) -> None:
        for sig, old in self.saved.items():
            signal.signal(sig, old)
        self.saved.clear()


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


class _Run:
    """One snapshot job. Attributes record what has been done, for cleanup and report."""

    def __init__(self, domain: str, uri: str | None, opts: SnapshotOptions) -> None:
        from virt_qga.host.snapshots import check_snapshot_name, default_snapshot_name

        self.label = domain
        self.uri = uri
        self.opts = opts
        self.name = check_snapshot_name(opts.name) if opts.name else default_snapshot_name()
        self.host: Domain | None = None
        self.agent: GuestAgent | None = None
        self.result = SnapshotResult(domain=domain, uri=uri, mode=opts.mode, name=self.name,
                                     metadata=opts.metadata or opts.mode == "internal")
        self.t: dict[str, float] = {}
        self.plan: list[tuple[DiskInfo, str]] = []
        self.all_disks: list[DiskInfo] = []
        self.xml = ""
        self.flags = 0
        self.freeze = False
        self.freeze_sent = False
        self.frozen_at: float | None = None
        self.armed_at: float | None = None
        self.snapshot_done_at: float | None = None
        self.snapshot_made = False
        self.thaw_confirmed = True
        self.guard: Any = None
        self.journal: Journal | None = None
        self.signals = _Signals()
        self.hooks_ran = False
        self.precreate = False

    # -- small helpers ---------------------------------------------------------------

    def _timed(self, phase: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.result.timings_ms[phase] = _ms(time.perf_counter() - start)

    def warn(self, msg: str) -> None:
        self.result.warnings.append(msg)
        if self.journal:
            self.journal.event("warning", message=msg)

    # -- pre-checks ------------------------------------------------------------------

    def connect(self) -> None:
        from virt_qga.agent import GuestAgent

        if self.opts.socket:
            self.agent = GuestAgent.for_socket(self.opts.socket, timeout=self.opts.timeout,
                                               name=self.label)
            return
        from virt_qga.host import Domain

        self.host = Domain.lookup(self.label, self.uri)
        self.result.uri = self.host.uri
        self.label = self.host.name

    def identity(self) -> tuple[str, str, str | None]:
        if self.host is not None:
            return self.host.uri, self.host.name, str(self.host.dom.UUIDString())
        return f"unix:{self.opts.socket}", self.label, None

    def check_domain_state(self) -> str | None:
        """None if running; a reason not to freeze if paused (and allowed)."""
        if self.host is None:
            return None
        state = self.host.state()
        if state == "running":
            return None
        if state == "paused":
            if self.opts.quiesce == "required":
                raise DomainNotRunningError(
                    "domain is paused: its agent cannot freeze filesystems. Resume it, or pass "
                    "--quiesce preferred for a crash-consistent snapshot of the paused domain",
                    domain=self.label, state=state)
            return "domain is paused: no freeze possible"
        raise DomainNotRunningError(f"domain is {state}, not running; nothing to freeze "
                                    "(use virsh for snapshots of stopped domains)",
                                    domain=self.label, state=state)

    def open_agent(self) -> GuestAgent:
        if self.agent is None:
            from virt_qga.agent import GuestAgent

            self.agent = GuestAgent.for_domain(self.label, self.uri, timeout=self.opts.timeout)
        return self.agent

    def check_agent(self) -> None:
        """Agent answers, supports freezing, guest not already frozen, mountpoints exist."""
        agent = self.open_agent()
        agent.ping()
        caps = agent.capabilities(refresh=True)
        needed = list(FREEZE_COMMANDS)
        if self.opts.mountpoints:
            needed.append("guest-fsfreeze-freeze-list")
        if self.opts.pre_freeze or self.opts.post_thaw:
            needed += ["guest-exec", "guest-exec-status"]
        missing = [c for c in needed if not caps.knows(c)]
        status = agent.fsfreeze_status() if caps.knows("guest-fsfreeze-status") else "thawed"
        if status == "frozen":
            if not self.opts.force_thaw_first:
                raise OperationError(
                    "guest filesystems are already frozen (by another tool, or a run that died); "
                    "refusing to snapshot. Thaw with `virt-qga recover DOMAIN`, or pass "
                    "--force-thaw-first", exit_code=ExitCode.MAYBE_FROZEN, state="frozen",
                    undo=f"virt-qga recover {self.label}", domain=self.label)
            n = agent.fsfreeze_thaw()
            if agent.fsfreeze_status() != "thawed":
                raise OperationError("guest was frozen and the thaw did not take (--force-thaw-first)",
                                     exit_code=ExitCode.MAYBE_FROZEN, state="frozen",
                                     domain=self.label)
            self.warn(f"guest was frozen before the snapshot; thawed {n} filesystem(s) first "
                      "(--force-thaw-first)")
            caps = agent.capabilities(refresh=True)
        disabled = [c for c in needed if caps.knows(c) and not caps.enabled(c)]
        if missing or disabled:
            from virt_qga.errors import CommandNotSupportedError

            what = ", ".join(missing + disabled)
            raise CommandNotSupportedError(
                f"the agent (qemu-ga {caps.version}) lacks or disables {what}; it cannot freeze",
                domain=self.label, agent_version=caps.version)
        if self.opts.mountpoints:
            mounted = {str(fs.get("mountpoint")) for fs in agent.get_fsinfo()}
            unknown = [m for m in self.opts.mountpoints if m not in mounted]
            if unknown:
                raise BadInputError(f"not mounted in the guest: {', '.join(unknown)} (mounted: "
                                    f"{', '.join(sorted(mounted))})", field="--mountpoint",
                                    domain=self.label)

    def plan_disks(self) -> None:
        from virt_qga.host import snapshots as hs

        if self.host is None:
            return
        self.all_disks = hs.list_disks(self.host.xml())
        if self.opts.mode == "command":
            chosen = hs.select_disks(self.all_disks, self.opts.disks) if self.all_disks else []
            self.plan = [(d, d.source or "") for d in chosen]
            return
        if self.opts.mode == "internal":
            if self.opts.disks:
                raise BadInputError("--disk is not used by internal snapshots (all disks are "
                                    "included)", field="--disk")
            not_qcow2 = [d.target for d in hs.default_disks(self.all_disks) if d.driver_type != "qcow2"]
            if not_qcow2:
                raise BadInputError(f"internal snapshots need qcow2 disks; not qcow2: "
                                    f"{', '.join(not_qcow2)}", field="--mode")
            self.xml = hs.internal_snapshot_xml(self.name, self._description())
            self.flags = hs.snapshot_flags("internal", metadata=True)
            if hs.is_local_uri(self.host.uri):
                mem_bytes = int(self.host.call("info")[2]) * 1024
                for d in hs.default_disks(self.all_disks):
                    if d.source and d.source_type == "file":
                        self._check_dir(Path(d.source).parent, need=mem_bytes + self.opts.min_free_bytes,
                                        what="internal snapshot (RAM state + disk data)")
            return
        chosen = hs.select_disks(self.all_disks, self.opts.disks)
        local = hs.is_local_uri(self.host.uri)
        for d in chosen:
            if d.source_type not in ("file", "block", "network", "volume"):
                raise BadInputError(f"disk {d.target} has source type {d.source_type}; cannot "
                                    "place an external overlay for it", field="--disk")
            if not self.opts.directory and d.source_type != "file":
                raise BadInputError(f"disk {d.target} is not a file ({d.source_type}); pass "
                                    "--dir for its overlay", field="--dir")
            self.plan.append((d, hs.overlay_path(d.source or d.target, self.name, self.opts.directory)))
        targets = [o for _, o in self.plan]
        if len(set(targets)) != len(targets):
            raise BadInputError("two disks would get the same overlay name; use --dir or rename "
                                "the images", field="--dir")
        if local:
            for _, overlay in self.plan:
                if os.path.lexists(overlay):
                    raise BadInputError(f"overlay {overlay} already exists; pick another --name",
                                        field="--name")
            for folder in sorted({str(Path(o).parent) for o in targets}):
                self._check_dir(Path(folder), need=self.opts.min_free_bytes, what="overlay")
        else:
            self.warn("libvirt host is remote: overlay directory and free space not checked")
        self.precreate = self.opts.precreate if self.opts.precreate is not None else \
            (local and all(d.source_type == "file" and d.driver_type in ("qcow2", "raw")
                           for d, _ in self.plan))
        if self.precreate and not local:
            raise BadInputError("--precreate needs a local libvirt URI", field="--precreate")
        self.xml = hs.external_snapshot_xml(self.name, self.plan, self.all_disks, self._description())
        self.flags = hs.snapshot_flags("external", metadata=self.opts.metadata, reuse=self.precreate)

    def precreate_overlays(self) -> None:
        from virt_qga.host.snapshots import precreate_overlay

        assert self.host is not None
        for d, overlay in self.plan:
            precreate_overlay(self.host, d, overlay)

    def _description(self) -> str:
        return self.opts.description or f"virt-qga snapshot ({self.opts.mode}, quiesce {self.opts.quiesce})"

    def _check_dir(self, folder: Path, *, need: int, what: str) -> None:
        if not folder.is_dir():
            raise BadInputError(f"{what} directory {folder} does not exist", field="--dir")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise BadInputError(f"{what} directory {folder} is not writable", field="--dir")
        st = os.statvfs(folder)
        free = st.f_bavail * st.f_frsize
        if free < need:
            raise BadInputError(f"{what} directory {folder} has {free // (1024 * 1024)} MiB free; "
                                f"need at least {need // (1024 * 1024)} MiB", field="--dir")

    # -- hooks and command -----------------------------------------------------------

    def guest_hook(self, which: str, cmd: str) -> None:
        from virt_qga.workflows import exec as gexec

        agent = self.open_agent()
        try:
            res = gexec.run(agent, ["/bin/sh", "-c", cmd], timeout=self.opts.hook_timeout)
        except OperationError as exc:
            if exc.exit_code == ExitCode.EXEC_TIMEOUT:
                raise AgentTimeoutError(f"{which} hook did not finish within {self.opts.hook_timeout:g} s "
                                        f"(--hook-timeout): {cmd}", domain=self.label) from exc
            raise
        out = res.stdout.decode("utf-8", "replace")[-400:]
        err = res.stderr.decode("utf-8", "replace")[-400:]
        self.result.hooks[which] = {"command": cmd, "status": res.status, "stdout": out, "stderr": err,
                                    "ms": _ms(res.duration)}
        if res.status != 0:
            raise OperationError(f"{which} hook failed with status {res.status}: {cmd}"
                                 + (f" ({err.strip()[-200:]})" if err.strip() else ""),
                                 exit_code=ExitCode.FAILED, state="nothing-done", domain=self.label)

    def host_command_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["VIRT_QGA_DOMAIN"] = self.label
        env["VIRT_QGA_URI"] = self.result.uri or ""
        env["VIRT_QGA_SNAPSHOT_NAME"] = self.name
        env["VIRT_QGA_FROZEN"] = "1" if self.freeze else "0"
        pairs = []
        for d, path in self.plan:
            env[f"VIRT_QGA_DISK_{d.target.upper()}"] = path
            pairs.append(f"{d.target}={path}")
        env["VIRT_QGA_DISKS"] = " ".join(pairs)
        return env

    def run_host_command(self) -> None:
        assert self.opts.command is not None
        timeout = self.opts.command_timeout
        start = time.monotonic()
        proc = subprocess.Popen(["/bin/sh", "-c", self.opts.command], env=self.host_command_env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise OperationError(f"snapshot command did not finish within {timeout:g} s "
                                 f"(--command-timeout) and was killed: {self.opts.command}",
                                 exit_code=ExitCode.TIMEOUT, state="rolled-back",
                                 domain=self.label) from None
        except BaseException:
            _kill_group(proc)
            raise
        self.result.command = {"command": self.opts.command, "status": proc.returncode,
                               "ms": _ms(time.monotonic() - start),
                               "stdout": out.decode("utf-8", "replace")[-400:],
                               "stderr": err.decode("utf-8", "replace")[-400:]}
        if proc.returncode != 0:
            tail = err.decode("utf-8", "replace").strip()[-200:]
            raise OperationError(f"snapshot command failed with status {proc.returncode}: "
                                 f"{self.opts.command}" + (f" ({tail})" if tail else ""),
                                 exit_code=ExitCode.FAILED, state="rolled-back", domain=self.label)

    # -- the frozen section ---------------------------------------------------------

    def do_freeze(self) -> None:
        agent = self.open_agent()
        assert self.journal is not None
        self.journal.advance("freezing", guard_pid=self.guard.pid if self.guard else None)
        if self.guard is not None:
            self.armed_at = time.monotonic()
            self.guard.arm()
        self.freeze_sent = True
        self.thaw_confirmed = False
        t0 = time.perf_counter()
        if self.opts.mountpoints:
            count = agent.fsfreeze_freeze_list(mountpoints=list(self.opts.mountpoints))
        else:
            count = agent.fsfreeze_freeze()
        self.frozen_at = time.perf_counter()
        self.result.timings_ms["freeze"] = _ms(self.frozen_at - t0)
        self.result.frozen = int(count)

    def do_snapshot(self) -> None:
        t0 = time.perf_counter()
        try:
            if self.opts.mode == "command":
                self.run_host_command()
            else:
                from virt_qga.host.snapshots import create_snapshot

                assert self.host is not None
                create_snapshot(self.host, self.xml, self.flags)
            self.snapshot_made = True
            self.snapshot_done_at = time.monotonic()
        finally:
            self.result.timings_ms["snapshot"] = _ms(time.perf_counter() - t0)

    def do_thaw(self) -> None:
        """Thaw and confirm. Never raises: failures are recorded for the report."""
        agent = self.open_agent()
        t0 = time.perf_counter()
        errors: list[str] = []
        thawed: int | None = None
        wait = self.opts.thaw_timeout
        for _attempt in range(2):
            try:
                thawed = int(agent.call("guest-fsfreeze-thaw", timeout=wait))
                break
            except VirtQgaError as exc:
                if str(exc) not in errors:
                    errors.append(str(exc))
        t1 = time.perf_counter()
        self.result.timings_ms["thaw"] = _ms(t1 - t0)
        if self.frozen_at is not None:
            self.result.frozen_window_ms = _ms(t1 - self.frozen_at)
        self.result.thawed = thawed
        try:
            status = agent.call("guest-fsfreeze-status", timeout=wait)
        except VirtQgaError as exc:
            status = None
            if str(exc) not in errors:
                errors.append(str(exc))
        self.result.timings_ms["verify"] = _ms(time.perf_counter() - t1)
        self.thaw_confirmed = status == "thawed"
        if not self.thaw_confirmed:
            self.thaw_error = "; ".join(errors) or f"status still {status}"

    thaw_error = ""

    def frozen_section(self) -> None:
        try:
            try:
                self.do_freeze()
            except VirtQgaError as exc:
                if self.opts.quiesce != "preferred":
                    raise
                self.do_thaw()  # a failed or timed-out freeze may have frozen some filesystems
                if not self.thaw_confirmed:
                    raise
                self._fall_back(f"freeze failed: {exc}")
            self.do_snapshot()
        finally:
            self.signals.hold()
            if self.freeze_sent:
                self.do_thaw()

    def _fall_back(self, reason: str) -> None:
        """``--quiesce preferred``: the freeze failed and the guest is thawed again."""
        self.freeze = False
        self.freeze_sent = False
        self.frozen_at = None
        self.result.frozen = None
        self.result.frozen_window_ms = None
        self.result.consistency_reason = reason
        if self.guard is not None:
            self.guard.stop()
            self.guard = None
        self.warn(f"falling back to a crash-consistent snapshot: {reason}")

    # -- rollback ----------------------------------------------------------------------

    def rollback(self) -> tuple[str, str | None]:
        """Undo what the snapshot step made. Returns (state, undo command or None)."""
        from virt_qga.host import snapshots as hs

        if self.opts.mode == "command" or self.host is None:
            if self.snapshot_made:
                return "snapshot-kept", None
            return "rolled-back", None
        if self.opts.mode == "internal":
            try:
                hs.delete_internal(self.host, self.name)
            except VirtQgaError as exc:
                return "inconsistent", f"virsh snapshot-delete {self.label} {self.name}  # {exc}"
            return "rolled-back", None
        try:
            active = hs.active_sources(self.host)
        except VirtQgaError as exc:
            return "inconsistent", f"virt-qga recover {self.label}  # cannot read the disks: {exc}"
        to_commit = [d.target for d, ov in self.plan if active.get(d.target) == ov]
        if to_commit:
            try:
                hs.commit_external(self.host, to_commit, timeout=120.0,
                                   expect_overlays={d.target: ov for d, ov in self.plan},
                                   snapshot_name=self.name if self.opts.metadata else None)
            except VirtQgaError as exc:
                return "inconsistent", (f"virt-qga snapshot {self.label} --commit-back "
                                        + " ".join(f"--disk {t}" for t in to_commit) + f"  # {exc}")
        for _, overlay in self.plan:
            if hs.is_local_uri(self.host.uri) and os.path.exists(overlay):
                try:
                    os.unlink(overlay)
                except OSError as exc:
                    return "inconsistent", f"rm {shlex.quote(overlay)}  # {exc.strerror}"
        return "rolled-back", None

    # -- the whole job -----------------------------------------------------------------

    def execute(self) -> SnapshotResult:
        t_start = time.perf_counter()
        self.opts.validate()
        self._timed("connect", self.connect)
        uri, name, uuid = self.identity()
        base = self.opts.state_dir or state_dir()
        journal = Journal.for_domain(uri, name, uuid, base=base)
        held = self.opts.held_lock
        lock = held or DomainLock(lock_path(base, journal.key), domain=name, wait=self.opts.wait_lock)
        if held is None:
            lock.acquire()
        try:
            self._check_stale(journal)
            self.journal = journal
            self.signals.install()
            try:
                return self._locked(lock, t_start)
            finally:
                self.signals.restore()
        finally:
            if held is None:
                lock.release()

    def _check_stale(self, journal: Journal) -> None:
        st = journal.load()
        if st is None:
            return
        if st.owner_alive:
            raise LockBusyError(f"a {st.operation} job (pid {st.pid}) is in progress on this domain",
                                domain=self.label)
        code = ExitCode.MAYBE_FROZEN if maybe_frozen(st.phase) else ExitCode.INCONSISTENT
        raise OperationError(
            f"a previous {st.operation} (pid {st.pid}) died in phase '{st.phase}'; run "
            f"`virt-qga recover {self.label}` first", exit_code=code, state="stale-journal",
            undo=f"virt-qga recover {self.label}", domain=self.label)

    def _locked(self, lock: DomainLock, t_start: float) -> SnapshotResult:
        assert self.journal is not None
        opts = self.opts
        uri, name, uuid = self.identity()
        no_freeze_reason = self._timed("domain_check", self.check_domain_state)
        can_freeze = no_freeze_reason is None and opts.quiesce != "off"
        if can_freeze:
            try:
                self._timed("agent_check", self.check_agent)
            except (AgentUnavailableError, AgentTimeoutError) as exc:
                if opts.quiesce == "required":
                    raise
                can_freeze, no_freeze_reason = False, f"guest agent unusable: {exc}"
        self.freeze, reason = decide_consistency(opts.quiesce, can_freeze=can_freeze,
                                                 reason=no_freeze_reason)
        if not self.freeze and (opts.pre_freeze or opts.post_thaw):
            self.warn("hooks skipped: no freeze")
        self.result.consistency_reason = reason
        self._timed("plan", self.plan_disks)
        self.result.overlays = [{"target": d.target, "base": d.source or "", "overlay": ov}
                                for d, ov in self.plan] if opts.mode == "external" else []
        self.journal.begin(domain=name, uri=uri, uuid=uuid, operation="snapshot", data={
            "mode": opts.mode, "name": self.name, "metadata": self.result.metadata,
            "planned_overlays": self.result.overlays, "command": opts.command,
            "freeze": self.freeze})
        try:
            if self.freeze:
                from virt_qga.workflows.thaw_guard import ThawGuard

                self.guard = ThawGuard(domain=name, uri=None if opts.socket else uri,
                                       socket=opts.socket, max_frozen=opts.max_frozen,
                                       journal_dir=self.journal.dir, journal_key=self.journal.key,
                                       thaw_timeout=opts.thaw_timeout,
                                       pass_fds=(lock.fd,) if lock.fd is not None else ())
                self.guard.start()
                if self.precreate:
                    self._timed("precreate", self.precreate_overlays)
                if opts.pre_freeze:
                    self.journal.advance("hooks")
                    hook = opts.pre_freeze
                    self._timed("pre_freeze_hook", lambda: self.guest_hook("pre_freeze", hook))
                    self.hooks_ran = True
                self._timed("guard_ready_wait", self.guard.wait_ready)
                self.result.guard = {"pid": self.guard.pid, "max_frozen_s": opts.max_frozen}
                self.frozen_section()
            else:
                if self.precreate:
                    self._timed("precreate", self.precreate_overlays)
                self.journal.advance("snapshotting")
                self.do_snapshot()
        except BaseException as exc:
            return self._failed(exc)
        return self._finish(t_start)

    def _guard_fired_early(self) -> bool:
        if self.guard is None or not self.guard.poll_fired():
            return False
        if self.snapshot_done_at is None or self.armed_at is None:
            return True
        return self.snapshot_done_at >= self.armed_at + self.opts.max_frozen

    def _stop_guard(self) -> None:
        if self.guard is None:
            return
        fired = self.guard.poll_fired()
        if self.thaw_confirmed:
            self.guard.stop()
        else:
            # Leave it running: closing its stdin makes it thaw and keep retrying.
            try:
                if self.guard.proc is not None and self.guard.proc.stdin is not None:
                    self.guard.proc.stdin.close()
            except OSError:
                pass
        self.result.guard["fired"] = [list(f) for f in self.guard.report.fired]
        if fired:
            self.warn("the thaw guard thawed the guest itself (the job exceeded --max-frozen "
                      f"{self.opts.max_frozen:g} s)")

    def _finish(self, t_start: float) -> SnapshotResult:
        assert self.journal is not None
        opts = self.opts
        early = self._guard_fired_early()
        self._stop_guard()
        if self.freeze and not self.thaw_confirmed:
            self.journal.event("thaw-unconfirmed", error=self.thaw_error)
            raise OperationError(
                f"snapshot {self.name} was made but the thaw could not be confirmed "
                f"({self.thaw_error}); the thaw guard keeps trying. Check with `virt-qga recover "
                f"{self.label}`", exit_code=ExitCode.MAYBE_FROZEN, state="maybe-frozen",
                undo=f"virt-qga recover {self.label}", domain=self.label, result=self.result.to_dict())
        self.journal.advance("thawed", thawed=self.result.thawed)
        if early:
            reason = (f"the snapshot step took longer than --max-frozen ({opts.max_frozen:g} s): "
                      "the thaw guard thawed the guest before it completed")
            if opts.quiesce == "required":
                state, undo = self.rollback()
                self.journal.advance("rolling-back")
                self.journal.advance("failed", state=state)
                if state == "rolled-back":
                    self.journal.remove()
                raise OperationError(reason + f"; snapshot {state}", exit_code=ExitCode.TIMEOUT,
                                     state=state, undo=undo, domain=self.label,
                                     result=self.result.to_dict())
            self.result.consistency_reason = reason
        if self.freeze and self.result.frozen is not None and self.result.thawed is not None \
                and self.result.thawed != self.result.frozen:
            self.warn(f"froze {self.result.frozen} filesystem(s) but thawed {self.result.thawed} "
                      "(the guard or another client may have thawed some)")
        self.result.consistency = achieved_consistency(self.freeze, self.hooks_ran, early)
        if self.opts.post_thaw and self.freeze:
            self.journal.advance("post-hooks")
            try:
                self._timed("post_thaw_hook", lambda: self.guest_hook("post_thaw", opts.post_thaw or ""))
            except VirtQgaError as exc:
                self.warn(f"post-thaw hook failed: {exc}")
                self.result.exit_code = int(ExitCode.PARTIAL)
        if opts.mode == "internal" and self.freeze:
            self.warn("the internal checkpoint holds the guest RAM as it was while frozen: after "
                      f"`virsh snapshot-revert {self.label} {self.name}` the guest resumes frozen; "
                      f"thaw it with `virt-qga recover {self.label}`")
        self.journal.advance("done")
        self.journal.remove()
        if self.result.consistency == "crash" and self.result.exit_code == ExitCode.OK:
            self.result.exit_code = int(ExitCode.CRASH_CONSISTENT)
        self.result.timings_ms["total"] = _ms(time.perf_counter() - t_start)
        return self.result

    def _failed(self, exc: BaseException) -> SnapshotResult:
        """Cleanup after any failure. The thaw has already run (frozen_section's
        ``finally``); what is left is the guard, the rollback, the journal and the report."""
        assert self.journal is not None
        self.signals.hold()
        self._stop_guard()
        interrupted = isinstance(exc, _Interrupted | KeyboardInterrupt)
        try:
            self.journal.advance("rolling-back", error=_describe(exc))
        except ValueError:
            pass
        state, undo = self.rollback()
        thaw_ok = not self.freeze_sent or self.thaw_confirmed
        self.journal.advance("failed", state=state)
        if thaw_ok and state == "rolled-back":
            self.journal.remove()
        cause = exc if isinstance(exc, Exception) else None
        if not thaw_ok:
            raise OperationError(
                f"{_describe(exc)}; and the thaw could not be confirmed ({self.thaw_error}): the "
                f"guest may still be frozen; the thaw guard keeps trying. Check with "
                f"`virt-qga recover {self.label}`", exit_code=ExitCode.MAYBE_FROZEN,
                state="maybe-frozen", undo=f"virt-qga recover {self.label}", domain=self.label,
                result=self.result.to_dict()) from cause
        thawed = "guest thawed, " if self.freeze_sent else ""
        if state == "inconsistent":
            raise OperationError(f"{_describe(exc)}; {thawed}rollback incomplete",
                                 exit_code=ExitCode.INCONSISTENT, state=state, undo=undo,
                                 domain=self.label, result=self.result.to_dict()) from cause
        if interrupted:
            raise OperationError(f"interrupted by {_signame(exc)}; {thawed}snapshot {state}",
                                 exit_code=ExitCode.INTERRUPTED, state=state, undo=undo,
                                 domain=self.label, result=self.result.to_dict()) from cause
        if isinstance(exc, OperationError):
            exc.result = self.result.to_dict()
            if state != "rolled-back":
                exc.state, exc.undo = state, undo
            raise exc
        if isinstance(exc, VirtQgaError):
            if not self.freeze_sent and not self.snapshot_made:
                raise exc
            raise OperationError(f"{exc}; {thawed}snapshot {state}", exit_code=exc.exit_code,
                                 state=state, undo=undo, domain=self.label,
                                 result=self.result.to_dict()) from exc
        raise exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _Interrupted):
        return f"interrupted by {_signame(exc)}"
    return str(exc) or type(exc).__name__


def _signame(exc: BaseException) -> str:
    if isinstance(exc, _Interrupted):
        try:
            return signal.Signals(exc.signum).name
        except ValueError:
            return f"signal {exc.signum}"
    return "SIGINT"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a host command and everything it started (it has its own session)."""
    for sig, wait in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        proc.communicate(timeout=1.0)
    except (subprocess.TimeoutExpired, ValueError, OSError):
        pass


def snapshot(domain: str, uri: str | None = None, *,
             options: SnapshotOptions | None = None) -> SnapshotResult:
    """Take a consistent snapshot of ``domain`` (see the module docstring).

    Returns a :class:`SnapshotResult` whose ``exit_code`` is 0, 7 (crash-consistent
    only) or 5 (post-thaw hook failed). Every failure raises a ``VirtQgaError``; an
    :class:`OperationError` says what state was left (``rolled-back``,
    ``maybe-frozen``, ``inconsistent``) and how to undo it.
    """
    return _Run(domain, uri, options or SnapshotOptions()).execute()


def commit_back(domain: str, uri: str | None = None, *, disks: tuple[str, ...] = (),
                timeout: float = 300.0, wait_lock: float = 0.0,
                state_dir_: Path | None = None,
                held_lock: DomainLock | None = None) -> list[dict[str, Any]]:
    """Undo external snapshots: commit the active overlay of each disk into its base.

    Default disks: those whose active image is a virt-qga overlay (``*.vqga-*Z.qcow2``).
    Holds the domain lock while it works (or runs under ``held_lock``, already held).
    """
    from virt_qga.host import Domain
    from virt_qga.host import snapshots as hs

    host = Domain.lookup(domain, uri)
    base = state_dir_ or state_dir()
    journal = Journal.for_domain(host.uri, host.name, str(host.dom.UUIDString()), base=base)
    lock = held_lock or DomainLock(lock_path(base, journal.key), domain=host.name,
                                   operation="commit-back", wait=wait_lock)
    if held_lock is None:
        lock.acquire()
    try:
        targets = list(disks)
        if not targets:
            targets = [d.target for d in hs.list_disks(host.xml())
                       if hs.is_vqga_overlay(d.source) and d.backing]
            if not targets:
                raise BadInputError("no disk runs on a virt-qga overlay; name one with --disk",
                                    field="--disk", domain=host.name)
        return [r.to_dict() for r in hs.commit_external(host, targets, timeout)]
    finally:
        if held_lock is None:
            lock.release()
