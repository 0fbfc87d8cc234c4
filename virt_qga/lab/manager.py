"""The :class:`Lab`: build, boot, inspect and tear down disposable qemu-ga guests.

Each guest has a directory ``<lab>/guests/<name>/`` holding ``meta.json`` (what the lab
knows about it: its kind, agent and *stack*), its data disk overlay, console log and
sockets. The directory is the lab's record; the live truth (is it running?) always
comes from libvirt or ``/proc``.

libvirt guests run on one of the lab's host stacks (:mod:`virt_qga.lab.stacks`): the
host's session-mode libvirtd (``host``) or a root stack's system-mode libvirtd
(``debian13``). A :class:`Lab` has a default stack (``Lab(stack=...)``) for ``up``,
``uri`` and ``session``; ``status``, ``down`` and ``destroy`` cover every stack.
Plain QEMU guests have no libvirt and always use the host's QEMU.

Why this module is long (~900 lines): :class:`Lab` is the one holder of the lab's
cross-process lock and of its per-stack libvirt connections, and ``up``, ``status``,
``down`` and ``destroy`` all run under that lock over the same guest records. Split by
verb, each piece would need the lock and the records again. Everything that does not
need them already lives beside it: images (:mod:`.build`), the daemons (:mod:`.session`,
:mod:`.sysdaemon`), plain QEMU (:mod:`.plain`) and domain XML (:mod:`.domain`).
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from virt_qga.lab.agentping import socket_command
from virt_qga.lab.build import Manifest, build, check_agent
from virt_qga.lab.domain import DomainSpec, agent_from_xml, domain_xml
from virt_qga.lab.errors import SETUP_HINT, LabError
from virt_qga.lab.flavours import DEFAULT_FLAVOUR, check_flavour
from virt_qga.lab.mountns import host_mounts_under
from virt_qga.lab.paths import LabPaths, default_root
from virt_qga.lab.plain import PlainSpec, qemu_argv
from virt_qga.lab.proc import pid_alive, pid_cmdline, run
from virt_qga.lab.rootfs import RootManifest, build_root
from virt_qga.lab.rootfs import preflight as root_preflight
from virt_qga.lab.session import LabSession, terminate, which
from virt_qga.lab.stacks import HOST, STACK_NAMES, StackDaemon, check_stack
from virt_qga.lab.sysdaemon import SystemStack

KINDS = ("libvirt", "plain")


@dataclass
class LabGuest:
    """One lab guest, as the tests and users reach it."""

    name: str
    kind: str  # "libvirt" | "plain"
    agent: str  # "7.2" | "10.0"
    uri: str | None  # libvirt URI (libvirt guests)
    socket: str | None  # agent channel socket (plain guests with a channel)
    qmp: str | None  # QMP socket (plain guests)
    console_log: Path
    data_disk: Path
    pid: int | None  # QEMU pid when known
    agent_channel: bool = True
    stack: str = HOST  # host stack of a libvirt guest ("host" for plain guests)
    flavour: str = DEFAULT_FLAVOUR  # see virt_qga.lab.flavours

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["console_log"] = str(self.console_log)
        out["data_disk"] = str(self.data_disk)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabGuest:
        fields = dict(data)
        fields["console_log"] = Path(fields["console_log"])
        fields["data_disk"] = Path(fields["data_disk"])
        return cls(**{k: v for k, v in fields.items() if k in cls.__dataclass_fields__})


@dataclass
class GuestStatus:
    """What ``status`` reports for one guest. ``state`` is the live truth:
    "running", "paused", "shut off", "crashed" (QEMU died under libvirt), "dead" (plain
    QEMU process gone), "missing" (libvirt no longer knows the domain), ...
    """

    name: str
    kind: str
    agent: str
    state: str
    pid: int | None
    uri: str | None
    socket: str | None
    qmp: str | None
    console_log: str
    stack: str = HOST

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_QUIET = False
_T = TypeVar("_T", bound=Callable[..., Any])


def _os_errors(func: _T) -> _T:
    """Public Lab methods raise LabError only: a filesystem failure becomes one line."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise LabError(f"lab {func.__name__}: {exc.strerror or exc}{where}") from exc

    return wrapper  # type: ignore[return-value]


def _quiet_libvirt() -> None:
    """libvirt prints every error to stderr by default; the lab reports its own."""
    global _QUIET
    if not _QUIET:
        import libvirt

        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        _QUIET = True


class Lab:
    """Disposable libvirt and plain-QEMU guests running the real qemu-ga.

    ``stack`` is the default host stack of libvirt guests (``up``, ``uri``, ``session``).
    """

    def __init__(self, root: Path | None = None, stack: str = HOST) -> None:
        check_stack(stack)
        self.paths = LabPaths(Path(root) if root is not None else default_root())
        self.stack = stack
        self.host = LabSession(self.paths)  # the lab user; plain guests run as it
        self._daemons: dict[str, StackDaemon] = {HOST: self.host}
        self._rlock = threading.RLock()
        self._depth = 0
        self._lock_fd: int | None = None
        self._conns: dict[str, Any] = {}

    # ------------------------------------------------------------ basics

    @property
    def root(self) -> Path:
        return self.paths.root

    def daemon(self, stack: str | None = None) -> StackDaemon:
        """The libvirt daemon of ``stack`` (default: this lab's stack)."""
        name = stack or self.stack
        if name not in self._daemons:
            spec = check_stack(name)
            assert spec is not None
            self._daemons[name] = SystemStack(self.paths, spec)
        return self._daemons[name]

    @property
    def session(self) -> StackDaemon:
        """The daemon of this lab's stack (``restart_daemon``, ``daemon_pids``, ...)."""
        return self.daemon()

    @property
    def uri(self) -> str:
        """The libvirt URI of this lab's stack (the session daemon for ``host``)."""
        return self.daemon().uri

    def uri_of(self, stack: str) -> str:
        return self.daemon(stack).uri

    @contextmanager
    def _locked(self, timeout: float = 900.0) -> Iterator[None]:
        """Serialise build/up/destroy/down across processes (flock on <lab>/lock)."""
        with self._rlock:
            if self._depth == 0:
                self.paths.root.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT, 0o644)
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            os.close(fd)
                            raise LabError(
                                f"another lab operation holds {self.paths.lock} for over {timeout:.0f} s"
                            ) from None
                        time.sleep(0.2)
                self._lock_fd = fd
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._lock_fd is not None:
                    os.close(self._lock_fd)
                    self._lock_fd = None

    def preflight(self, plain: bool, stack: str | None = None) -> None:
        """One clear error naming what is missing, before anything is changed."""
        spec = check_stack(stack or self.stack)
        if spec is not None and not plain:
            root_preflight(spec)
        missing = []
        if which("qemu-system-x86_64") is None:
            missing.append("qemu-system-x86_64 (qemu-system-x86)")
        if which("qemu-img") is None:
            missing.append("qemu-img (qemu-utils)")
        if self.host.is_root and which("runuser") is None:
            missing.append("runuser (util-linux)")
        if not plain:
            if which("libvirtd") is None:
                missing.append("libvirtd (libvirt-daemon-system)")
            try:
                import libvirt  # noqa: F401
            except ImportError:
                missing.append("the libvirt Python module (pip install libvirt-python)")
        if missing:
            raise LabError(f"missing on this host: {', '.join(missing)}; {SETUP_HINT}")

    @_os_errors
    def build(self, agent: str = "7.2", refresh: bool = False, log: bool = False,
              flavour: str = DEFAULT_FLAVOUR) -> Manifest:
        """Cached build of kernel, initramfs (for ``agent`` and ``flavour``) and base data disk."""
        with self._locked():
            return build(self.paths, agent, refresh=refresh, log=log, flavour=flavour)

    @_os_errors
    def build_stack(self, stack: str | None = None, refresh: bool = False,
                    log: bool = False) -> RootManifest | None:
        """Cached build of a root stack's root (None for the host stack, nothing to build)."""
        spec = check_stack(stack or self.stack)
        if spec is None:
            return None
        with self._locked():
            return build_root(self.paths, spec, refresh=refresh, log=log)

    def stack_info(self, stack: str | None = None) -> dict[str, Any]:
        """What a stack is and whether its daemon runs: name, mode, uri, daemon, and the
        libvirt and QEMU versions (asked from the daemon when it runs)."""
        name = stack or self.stack
        d = self.daemon(name)
        info: dict[str, Any] = {"name": name, "mode": d.mode, "uri": d.uri, "daemon": d.daemon_alive(),
                                "libvirt": None, "qemu": None}
        if isinstance(d, SystemStack):
            m = d.manifest()
            info["root"] = m.path if m is not None else None
            if m is not None:
                info["libvirt"], info["qemu"] = m.versions["libvirt"], m.versions["qemu"]
        else:  # the host's packages, until the daemon can say
            info["libvirt"], info["qemu"] = _dpkg_version("libvirt-daemon"), _dpkg_version("qemu-system-x86")
        if info["daemon"]:
            import libvirt

            try:
                conn = self._connect(name, timeout=5.0)
                info["libvirt"] = _version(conn.getLibVersion())
                info["qemu"] = _version(conn.getVersion())
            except (LabError, libvirt.libvirtError):
                pass
        return info

    # ------------------------------------------------------------ libvirt connection

    def _connect(self, stack: str | None = None, timeout: float = 20.0) -> Any:
        """A working connection to the lab daemon, (re)starting the daemon if it went away.

        A freshly started libvirtd accepts on its socket before its drivers are ready
        and may drop early clients ("Connection reset by peer"), so opening is retried
        until ``timeout``; a cached connection is checked with a cheap call first.
        """
        import libvirt

        _quiet_libvirt()
        name = stack or self.stack
        daemon = self.daemon(name)
        if daemon.ensure_daemon():
            self._close_one(name)
        cached = self._conns.get(name)
        if cached is not None:
            try:
                cached.getLibVersion()
                return cached
            except libvirt.libvirtError:
                self._close_one(name)
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = libvirt.open(daemon.uri)
                conn.getLibVersion()
                self._conns[name] = conn
                return conn
            except libvirt.libvirtError as exc:
                if time.monotonic() > deadline:
                    raise LabError(
                        f"cannot connect to the lab libvirtd at {daemon.uri}: "
                        f"{exc.get_error_message()}; see {daemon.daemon_log}"
                    ) from exc
                time.sleep(0.2)
                daemon.ensure_daemon()

    def _lookup(self, name: str, stack: str | None = None) -> Any | None:
        import libvirt

        try:
            return self._connect(stack).lookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise LabError(f"{name}: {exc.get_error_message()}") from exc

    def _close_one(self, stack: str) -> None:
        conn = self._conns.pop(stack, None)
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def close(self) -> None:
        for stack in list(self._conns):
            self._close_one(stack)

    # ------------------------------------------------------------ records

    def _meta_path(self, name: str) -> Path:
        return self.paths.guest_dir(name) / "meta.json"

    def _load(self, name: str) -> LabGuest | None:
        try:
            return LabGuest.from_dict(json.loads(self._meta_path(name).read_text()))
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def _recorded(self) -> list[LabGuest]:
        out = []
        if self.paths.guests.is_dir():
            for d in sorted(self.paths.guests.iterdir()):
                g = self._load(d.name)
                if g is not None:
                    out.append(g)
        return out

    @_os_errors
    def guest(self, name: str) -> LabGuest:
        """The recorded guest ``name`` with its current pid."""
        g = self._load(name)
        if g is None:
            raise LabError(f"no lab guest named {name!r}")
        g.pid = self._pid(g)
        return g

    def _pid(self, g: LabGuest) -> int | None:
        if g.kind == "plain":
            pidfile = self.paths.guest_dir(g.name) / "qemu.pid"
        else:
            pidfile = self.daemon(g.stack).qemu_pidfile(g.name)
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        if not pid_alive(pid):
            return None
        # a recycled pid is not ours: the QEMU command line names this guest
        if not any(g.name in arg for arg in pid_cmdline(pid)):
            return None
        return pid

    # ------------------------------------------------------------ up

    @_os_errors
    def up(
        self,
        count: int = 1,
        agent: str = "7.2",
        plain: bool = False,
        name: str | None = None,
        agent_channel: bool = True,
        kvm: bool = False,
        wait: bool = True,
        timeout: float = 60.0,
        stack: str | None = None,
        flavour: str = DEFAULT_FLAVOUR,
    ) -> list[LabGuest]:
        """Boot ``count`` guests (reusing running ones of the same names) and wait for their agents.

        Names: ``name`` when count is 1 and a name is given, else ``<prefix>-<i>``
        with the prefix ``name`` or ``lab-<agent>`` / ``lab-plain-<agent>`` (``lab-python-<agent>``
        / ``lab-plain-python-<agent>`` for the python flavour).
        ``stack`` (default: this lab's) runs libvirt guests; plain guests have none.
        """
        check_agent(agent)
        check_flavour(flavour)
        stack = stack_for(plain, stack) or self.stack
        check_stack(stack)
        if count < 1:
            raise LabError("--count must be at least 1")
        self.preflight(plain, stack)
        kind = "plain" if plain else "libvirt"
        with self._locked():
            manifest = build(self.paths, agent, flavour=flavour)
            build_root_for = check_stack(stack)
            if build_root_for is not None:
                build_root(self.paths, build_root_for)
            self.host.prepare_dirs()
            if not plain:
                self.daemon(stack).prepare_dirs()
                self._connect(stack)
            names = self._names(count, agent, plain, name, stack, flavour)
            guests: list[LabGuest] = []
            to_start: list[str] = []
            for n in names:
                existing = self._load(n)
                if existing is not None and self._state(existing) == "running":
                    if (existing.kind, existing.agent, existing.agent_channel, existing.stack,
                            existing.flavour) != (kind, agent, agent_channel, stack, flavour):
                        raise LabError(
                            f"guest {n} already runs ({existing.kind}, agent {existing.agent}, "
                            f"{existing.flavour}, channel {'on' if existing.agent_channel else 'off'}, "
                            f"stack {existing.stack}); "
                            "choose another --name or destroy it"
                        )
                    existing.pid = self._pid(existing)
                    guests.append(existing)
                    continue
                self._destroy(n)
                to_start.append(n)
            with ThreadPoolExecutor(max_workers=max(1, len(to_start))) as pool:
                if plain:
                    started = list(pool.map(lambda n: self._start_plain(n, manifest, agent_channel, kvm),
                                            to_start))
                else:
                    started = list(pool.map(
                        lambda n: self._start_libvirt(n, manifest, agent_channel, kvm, stack), to_start))
            by_name = {g.name: g for g in guests + started}
            guests = [by_name[n] for n in names]
        if wait:
            self.wait_ready(guests, timeout)
        return guests

    def _names(self, count: int, agent: str, plain: bool, name: str | None, stack: str = HOST,
               flavour: str = DEFAULT_FLAVOUR) -> list[str]:
        if name is not None and count == 1:
            names = [name]
        else:
            on = "" if stack == HOST else f"{stack}-"
            tag = agent if flavour == DEFAULT_FLAVOUR else f"{flavour}-{agent}"
            prefix = name or (f"lab-plain-{tag}" if plain else f"lab-{on}{tag}")
            names = [f"{prefix}-{i}" for i in range(1, count + 1)]
        for n in names:
            if not n or len(n) > 40 or not all(c.isalnum() or c in "-_." for c in n) or n.startswith("."):
                raise LabError(f"invalid guest name {n!r}: use up to 40 letters, digits, '-', '_', '.'")
        return names

    def _new_guest_dir(self, name: str, manifest: Manifest, owner: StackDaemon) -> Path:
        """The guest's folder and data disk, owned as ``owner`` needs: by the lab user for
        the session daemon and plain QEMU, by root in system mode (libvirt relabels)."""
        gdir = self.paths.guest_dir(name)
        shutil.rmtree(gdir, ignore_errors=True)
        gdir.mkdir(parents=True)
        owner.chown(gdir)
        disk = gdir / "data.qcow2"
        run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", manifest.data_base, disk],
            timeout=30,
        )
        owner.chown(disk)
        return gdir

    def _check_socket_paths(self, *paths: Path) -> None:
        for p in paths:
            if len(str(p).encode()) > 107:
                raise LabError(
                    f"socket path too long for UNIX sockets ({p}); "
                    "set VIRT_QGA_LAB_DIR to a shorter directory"
                )

    def _start_libvirt(
        self, name: str, manifest: Manifest, agent_channel: bool, kvm: bool, stack: str = HOST
    ) -> LabGuest:
        import libvirt

        daemon = self.daemon(stack)
        gdir = self._new_guest_dir(name, manifest, daemon)
        sock = gdir / "qga.sock"
        self._check_socket_paths(sock)
        guest = LabGuest(
            name=name,
            kind="libvirt",
            agent=manifest.agent,
            uri=daemon.uri,
            socket=None,
            qmp=None,
            console_log=gdir / "console.log",
            data_disk=gdir / "data.qcow2",
            pid=None,
            agent_channel=agent_channel,
            stack=stack,
            flavour=manifest.flavour,
        )
        spec = DomainSpec(
            name=name,
            agent=manifest.agent,
            kernel=Path(manifest.kernel),
            initrd=Path(manifest.initrd),
            data_disk=guest.data_disk,
            console_log=guest.console_log,
            agent_socket=sock if agent_channel else None,
            emulator=daemon.emulator,
            kvm=kvm,
        )
        self._save(guest)
        conn = self._connect(stack)
        try:
            dom = conn.defineXML(domain_xml(spec))
            dom.create()
        except libvirt.libvirtError as exc:
            raise LabError(f"{name}: libvirt could not start the guest: {exc.get_error_message()}") from exc
        guest.pid = self._pid(guest)
        return guest

    def _start_plain(self, name: str, manifest: Manifest, agent_channel: bool, kvm: bool) -> LabGuest:
        gdir = self._new_guest_dir(name, manifest, self.host)
        sock, qmp = gdir / "qga.sock", gdir / "qmp.sock"
        self._check_socket_paths(sock, qmp)
        guest = LabGuest(
            name=name,
            kind="plain",
            agent=manifest.agent,
            uri=None,
            socket=str(sock) if agent_channel else None,
            qmp=str(qmp),
            console_log=gdir / "console.log",
            data_disk=gdir / "data.qcow2",
            pid=None,
            agent_channel=agent_channel,
            flavour=manifest.flavour,
        )
        spec = PlainSpec(
            name=name,
            kernel=Path(manifest.kernel),
            initrd=Path(manifest.initrd),
            data_disk=guest.data_disk,
            console_log=guest.console_log,
            agent_socket=sock if agent_channel else None,
            qmp_socket=qmp,
            pidfile=gdir / "qemu.pid",
            emulator=which("qemu-system-x86_64") or "qemu-system-x86_64",
            kvm=kvm,
        )
        self._save(guest)
        qemu_log = gdir / "qemu.log"
        with qemu_log.open("wb") as log:
            import subprocess

            try:
                proc = subprocess.run(
                    self.host.as_user(qemu_argv(spec)),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    timeout=60,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise LabError(f"{name}: QEMU did not daemonize within 60 s; see {qemu_log}") from exc
        if proc.returncode != 0:
            tail = qemu_log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise LabError(f"{name}: QEMU failed to start (exit {proc.returncode}): {tail[0]}")
        guest.pid = self._pid(guest)
        return guest

    def _save(self, guest: LabGuest) -> None:
        path = self._meta_path(guest.name)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(guest.to_dict(), indent=2) + "\n")
        tmp.replace(path)

    # ------------------------------------------------------------ readiness

    @_os_errors
    def wait_ready(self, guests: list[LabGuest], timeout: float = 60.0) -> None:
        """Wait (in parallel) until each guest's agent answers guest-ping.

        Guests without an agent channel are ready when their init reports it found no
        channel. On failure: one line with the console log's tail.
        """
        if not guests:
            return
        deadline = time.monotonic() + timeout
        with ThreadPoolExecutor(max_workers=len(guests)) as pool:
            errors = [f for f in pool.map(lambda g: self._wait_one(g, deadline, timeout), guests) if f]
        if errors:
            raise LabError(
                errors[0] if len(errors) == 1 else f"{len(errors)} guests not ready; first: {errors[0]}"
            )

    def ping(self, guest: LabGuest, timeout: float = 5.0) -> None:
        """One guest-ping over the guest's own transport; raises on failure."""
        if guest.kind == "plain":
            if guest.socket is None:
                raise LabError(f"{guest.name} has no agent channel")
            socket_command(guest.socket, {"execute": "guest-ping"}, timeout=timeout)
            return
        import libvirt_qemu

        dom = self._lookup(guest.name, guest.stack)
        if dom is None:
            raise LabError(f"{guest.name}: domain is gone")
        libvirt_qemu.qemuAgentCommand(dom, '{"execute":"guest-ping"}', max(1, int(timeout)), 0)

    def _wait_one(self, guest: LabGuest, deadline: float, timeout: float) -> str | None:
        last = "no answer yet"
        while time.monotonic() < deadline:
            state = self._state(guest)
            if state != "running":
                tail = self._console_tail(guest)
                return f"{guest.name}: guest stopped while booting (state {state}); console: {tail}"
            if not guest.agent_channel:
                try:
                    if "agent not started" in guest.console_log.read_text(errors="replace"):
                        return None
                except OSError:
                    pass
                time.sleep(0.2)
                continue
            try:
                self.ping(guest, timeout=2.0)
                guest.pid = self._pid(guest)
                return None
            except Exception as exc:
                last = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            time.sleep(0.2)
        return (
            f"{guest.name}: qemu-ga did not answer guest-ping within {timeout:.0f} s ({last}); "
            f"console: {self._console_tail(guest)}"
        )

    def _console_tail(self, guest: LabGuest, lines: int = 4) -> str:
        try:
            text = guest.console_log.read_text(errors="replace")
        except OSError:
            return "(no console log)"
        tail = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
        return " | ".join(tail) if tail else "(console log empty)"

    # ------------------------------------------------------------ status

    def _stack_running(self, stack: str) -> bool:
        """Whether the stack's libvirtd can be reached or (re)started without booting the
        whole stack: always for the host; for a root stack, while its namespace lives."""
        daemon = self.daemon(stack)
        return not isinstance(daemon, SystemStack) or daemon.namespace() is not None

    def _state(self, guest: LabGuest) -> str:
        if guest.kind == "plain":
            return "running" if self._pid(guest) is not None else "dead"
        if not self._stack_running(guest.stack):
            return "dead"  # its stack is down: no QEMU of it can run
        import libvirt

        dom = self._lookup(guest.name, guest.stack)
        if dom is None:
            return "missing"
        try:
            state, reason = dom.state()
        except libvirt.libvirtError:
            return "missing"
        if state == libvirt.VIR_DOMAIN_SHUTOFF and reason == libvirt.VIR_DOMAIN_SHUTOFF_CRASHED:
            return "crashed"
        names = {
            libvirt.VIR_DOMAIN_NOSTATE: "no state",
            libvirt.VIR_DOMAIN_RUNNING: "running",
            libvirt.VIR_DOMAIN_BLOCKED: "blocked",
            libvirt.VIR_DOMAIN_PAUSED: "paused",
            libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
            libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
            libvirt.VIR_DOMAIN_CRASHED: "crashed",
            libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
        }
        text = names.get(state, f"state {state}")
        if text == "running" and self._pid(guest) is None and self._pid_file_exists(guest):
            return "dead"  # libvirt has not noticed yet
        return text

    def _pid_file_exists(self, guest: LabGuest) -> bool:
        return self.daemon(guest.stack).qemu_pidfile(guest.name).exists()

    @_os_errors
    def status(self) -> list[GuestStatus]:
        """Every lab guest of every stack with its live state (re-spawning a stack's libvirtd
        that went away while it has guests)."""
        recorded = self._recorded()
        out: list[GuestStatus] = []
        seen: set[tuple[str, str]] = set()
        for g in recorded:
            seen.add((g.stack, g.name))
            out.append(
                GuestStatus(
                    name=g.name,
                    kind=g.kind,
                    agent=g.agent,
                    state=self._state(g),
                    pid=self._pid(g),
                    uri=g.uri,
                    socket=g.socket,
                    qmp=g.qmp,
                    console_log=str(g.console_log),
                    stack=g.stack,
                )
            )
        for stack in STACK_NAMES:
            daemon = self.daemon(stack)
            has_guests = any(g.kind == "libvirt" and g.stack == stack for g in recorded)
            if not ((has_guests and self._stack_running(stack)) or daemon.daemon_alive()):
                continue
            import libvirt

            try:
                domains = self._connect(stack).listAllDomains()
            except libvirt.libvirtError as exc:
                raise LabError(
                    f"the lab libvirtd ({stack}) does not list its domains: {exc.get_error_message()}"
                ) from exc
            for dom in domains:
                if (stack, dom.name()) in seen:
                    continue
                orphan = LabGuest(
                    name=dom.name(),
                    kind="libvirt",
                    agent=agent_from_xml(dom.XMLDesc()) or "?",
                    uri=daemon.uri,
                    socket=None,
                    qmp=None,
                    console_log=Path("-"),
                    data_disk=Path("-"),
                    pid=None,
                    stack=stack,
                )
                out.append(
                    GuestStatus(
                        name=orphan.name,
                        kind="libvirt",
                        agent=orphan.agent,
                        state=self._state(orphan),
                        pid=self._pid(orphan),
                        uri=daemon.uri,
                        socket=None,
                        qmp=None,
                        console_log="-",
                        stack=stack,
                    )
                )
        return out

    # ------------------------------------------------------------ teardown

    @_os_errors
    def destroy(self, name: str) -> None:
        """Remove one guest completely (domain, QEMU process, files). No error if absent."""
        with self._locked():
            self._destroy(name)

    def _destroy(self, name: str, stack: str | None = None) -> None:
        guest = self._load(name)
        pid = self._pid(guest) if guest is not None else None
        if guest is not None and guest.kind == "libvirt":
            stacks = [guest.stack]
        elif guest is None:  # unrecorded: whichever running stack knows it
            stacks = [stack] if stack else [s for s in STACK_NAMES if self.daemon(s).daemon_alive()]
        else:
            stacks = []
        for st in stacks:
            if self._stack_running(st):
                self._undefine(name, st)
        if pid is not None:
            terminate([pid], grace=3.0)
        shutil.rmtree(self.paths.guest_dir(name), ignore_errors=True)

    def _undefine(self, name: str, stack: str) -> None:
        import libvirt

        dom = self._lookup(name, stack)
        if dom is None:
            return
        try:
            if dom.isActive():
                dom.destroy()
            # snapshot and checkpoint metadata (tests leave them) must not block the undefine
            dom.undefineFlags(
                libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
                | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            )
        except libvirt.libvirtError as exc:
            if dom.isActive():
                raise LabError(f"{name}: could not destroy the domain: {exc.get_error_message()}") from exc

    @_os_errors
    def down(self) -> None:
        """Remove every guest of every stack, stop the lab's daemons and processes, end the
        root stacks' mount namespaces (so nothing stays mounted); keep the build cache."""
        with self._locked():
            recorded = self._recorded()
            for stack in STACK_NAMES:
                daemon = self.daemon(stack)
                # Domains go through libvirt when it can run: it stops QEMU cleanly and gives
                # relabelled files back to their owners. A root stack whose namespace is gone
                # has nothing running; starting it only to stop it is pointless.
                if isinstance(daemon, SystemStack):
                    needs_daemon = self._stack_running(stack)
                else:
                    needs_daemon = bool(daemon.defined_xml_files()) or any(
                        g.kind == "libvirt" and g.stack == stack for g in recorded
                    )
                if needs_daemon or daemon.daemon_alive():
                    import libvirt

                    try:
                        for dom in self._connect(stack).listAllDomains():
                            self._destroy(dom.name(), stack)
                    except (LabError, libvirt.libvirtError):
                        pass  # a broken daemon: the forced cleanup below still removes everything
            for g in recorded:
                try:
                    self._destroy(g.name)
                except LabError:
                    pass
            self.close()
            for stack in STACK_NAMES:
                self.daemon(stack).stop_all()
            for leftover in self.host.defined_xml_files():
                leftover.unlink(missing_ok=True)
            shutil.rmtree(self.paths.guests, ignore_errors=True)
            shutil.rmtree(self.paths.run, ignore_errors=True)
            left = host_mounts_under(self.paths.root)
            if left:
                raise LabError(f"lab down: still mounted under {self.paths.root}: {', '.join(left)}")

    # ------------------------------------------------------------ env

    @_os_errors
    def env(self, stack: str | None = None) -> str:
        """Shell lines that point virt-qga (and virsh) at the lab's ``stack``."""
        stack = stack or self.stack
        uri = self.uri_of(stack)
        guests = self._recorded()
        lv = [g for g in guests if g.kind == "libvirt" and g.stack == stack]
        others = sorted({g.stack for g in guests if g.kind == "libvirt" and g.stack != stack})
        plain = [g for g in guests if g.kind == "plain" and g.socket]
        lines = [f"# virt-qga lab at {self.root}, stack {stack} ({self.daemon(stack).mode} mode)"]
        if lv or not plain or stack != HOST:
            lines.append(f"export VIRT_QGA_CONNECT='{uri}'")
            lines.append(f"export LIBVIRT_DEFAULT_URI='{uri}'")
        if lv:
            lines.append("# libvirt guests: " + " ".join(g.name for g in lv))
        for other in others:
            names = " ".join(g.name for g in guests if g.kind == "libvirt" and g.stack == other)
            lines.append(f"# guests on stack {other} (virt-qga lab env --stack {other}): {names}")
        if stack == HOST:
            if len(plain) == 1 and not lv:
                lines.append(f"export VIRT_QGA_SOCKET='{plain[0].socket}'")
            else:
                for g in plain:
                    lines.append(
                        f"# plain guest {g.name}: export VIRT_QGA_SOCKET='{g.socket}'  # QMP: {g.qmp}"
                    )
        return "\n".join(lines) + "\n"


def stack_for(plain: bool, stack: str | None) -> str | None:
    """The stack a guest runs on: plain QEMU guests have no libvirt and always use the
    host's QEMU (asking for another stack is an error); libvirt guests the one asked."""
    if plain:
        if stack not in (None, HOST):
            raise LabError(f"plain QEMU guests have no libvirt stack; drop --stack {stack}")
        return HOST
    return stack


def _dpkg_version(package: str) -> str | None:
    res = run(["dpkg-query", "-W", "-f=${Version}", package], timeout=30, check=False)
    return res.stdout.decode().strip() or None


def _version(number: int) -> str:
    """libvirt's packed version number (major * 1e6 + minor * 1e3 + micro) as text."""
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"
