"""libvirt connections and domain lookup.

``libvirt`` is imported lazily: ``virt-qga --help`` and the socket transport must not
pay for it. Any URI libvirt accepts works (``qemu:///system``, ``qemu+ssh://host/system``,
``qemu+unix:///session?socket=...``). libvirt's default error handler prints every
error to stderr; it is replaced once by a silent one, since errors are raised as
exceptions and reported by the caller in one line.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING, Any

from virt_qga.errors import DomainNotFoundError, DomainNotRunningError, HostError
from virt_qga.libvirt_errors import map_libvirt_error

if TYPE_CHECKING:
    import libvirt

_lock = threading.Lock()
_connections: dict[str, Any] = {}
_event_thread: threading.Thread | None = None

#: Domain states by libvirt's virDomainState number.
STATE_NAMES = {
    0: "no state", 1: "running", 2: "blocked", 3: "paused", 4: "shutting down",
    5: "shut off", 6: "crashed", 7: "suspended (pmsuspended)",
}


def import_libvirt() -> Any:
    """Import libvirt-python, turning its absence into a one-line error.

    Python loads extensions with RTLD_NOW; libvirt's are loaded with RTLD_LAZY so that
    its ~1000 C symbols are bound when first called, as virsh does: ~3 ms less per
    CLI process (docs/benchmarks.md).
    """
    flags = sys.getdlopenflags()
    sys.setdlopenflags((flags & ~os.RTLD_NOW) | os.RTLD_LAZY)
    try:
        import libvirt
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise HostError("libvirt-python is not installed (pip install libvirt-python; it needs "
                        "libvirt-dev and pkg-config to build)") from exc
    finally:
        sys.setdlopenflags(flags)
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


def default_uri() -> str | None:
    """The URI used when none is given: $VIRT_QGA_CONNECT, then libvirt's own default."""
    return os.environ.get("VIRT_QGA_CONNECT") or None


def start_event_loop() -> None:
    """Run libvirt's default event loop in a daemon thread (needed for domain events
    and keepalive). Must happen before the connection that uses it is opened."""
    global _event_thread
    lv = import_libvirt()
    with _lock:
        if _event_thread is not None:
            return
        lv.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                lv.virEventRunDefaultImpl()

        _event_thread = threading.Thread(target=run, name="libvirt-events", daemon=True)
        _event_thread.start()


def open_connection(uri: str | None = None, *, readonly: bool = False, fresh: bool = False) -> Any:
    """Open (or reuse) a libvirt connection. Raises HostError with the URI on failure."""
    lv = import_libvirt()
    uri = uri if uri is not None else default_uri()
    key = f"{'ro' if readonly else 'rw'}:{uri or ''}"
    with _lock:
        conn = None if fresh else _connections.get(key)
        if conn is not None:
            if _still_usable(lv, conn):
                return conn
            _connections.pop(key, None)
        try:
            conn = lv.openReadOnly(uri) if readonly else lv.open(uri)
        except lv.libvirtError as exc:
            raise HostError(f"cannot connect to libvirt at {uri or '(default URI)'}: "
                            f"{map_libvirt_error(exc).message}") from exc
        if _event_thread is not None:
            try:
                conn.setKeepAlive(5, 3)
            except lv.libvirtError:
                pass
        _connections[key] = conn
        return conn


def _still_usable(lv: Any, conn: Any) -> bool:
    """True when a cached connection still reaches its daemon.

    ``isAlive()`` only looks at the client's own socket state: after libvirtd restarts,
    a connection without keepalive (no event loop) still claims to be alive until its
    next call fails with "Broken pipe" or "client socket is closed". One cheap round
    trip finds that out here, so that a long-lived process (a fleet run, the Ansible
    connection plugin, a test session) reconnects instead of failing its next command.
    """
    try:
        if conn.isAlive():
            conn.getLibVersion()
            return True
    except lv.libvirtError:
        pass
    try:
        conn.close()
    except lv.libvirtError:
        pass
    return False


def list_running_domains(uri: str | None = None, *, inactive: bool = False) -> list[str]:
    """Names of the running domains on ``uri``, sorted: what ``--all`` means.

    Only running ones: an agent lives in a running guest, so an inactive domain could
    only ever answer "not running" (the read-only commands have no ``--include-inactive``
    for that reason). ``inactive`` adds the defined, shut-off domains (``backup
    --include-inactive``: their disks can be copied as they are).
    """
    lv = import_libvirt()
    conn = open_connection(uri)
    flags = 0 if inactive else lv.VIR_CONNECT_LIST_DOMAINS_ACTIVE
    try:
        doms = conn.listAllDomains(flags)
    except lv.libvirtError as exc:
        raise map_libvirt_error(exc) from exc
    return sorted(str(d.name()) for d in doms)


def lookup_domain(conn: Any, name: str) -> libvirt.virDomain:
    """Find a domain by name, UUID or numeric ID."""
    lv = import_libvirt()
    lookups = [conn.lookupByName]
    if len(name) == 36 and name.count("-") == 4:
        lookups.insert(0, conn.lookupByUUIDString)
    if name.isdigit():
        lookups.append(lambda n: conn.lookupByID(int(n)))
    for lookup in lookups:
        try:
            return lookup(name)
        except lv.libvirtError as exc:
            if exc.get_error_code() != lv.VIR_ERR_NO_DOMAIN:
                raise map_libvirt_error(exc, domain=name) from exc
    raise DomainNotFoundError(f"no domain named '{name}' on {conn.getURI()}", domain=name)


def domain_state(dom: Any) -> str:
    """The domain's state as a word ("running", "shut off", ...)."""
    lv = import_libvirt()
    try:
        state, _reason = dom.state()
    except lv.libvirtError as exc:
        raise map_libvirt_error(exc, domain=dom.name()) from exc
    return STATE_NAMES.get(state, f"state {state}")


def require_running(dom: Any) -> None:
    """Raise DomainNotRunningError unless the domain is running."""
    state = domain_state(dom)
    if state != "running":
        hint = " (resume it with `virsh resume`)" if state == "paused" else ""
        raise DomainNotRunningError(f"domain is {state}, not running{hint}", domain=dom.name(),
                                    state=state)
