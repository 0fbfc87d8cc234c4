"""Host side: what libvirt (and QEMU through it) says and does about a domain.

One module per concern: :mod:`.snapshots` (external/internal snapshots, blockcommit),
:mod:`.vcpus` (vCPU hotplug), :mod:`.memory` (DIMM / virtio-mem). This package's
``__init__`` holds what they share: the :class:`Domain` handle, live XML, read-only
QMP read-outs and bounded state waits.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from virt_qga.connection import domain_state, import_libvirt, lookup_domain, open_connection
from virt_qga.errors import AgentTimeoutError, DomainError, HostError, ProtocolError
from virt_qga.libvirt_errors import map_libvirt_error
from virt_qga.retry import call_with, when

#: How long :meth:`Domain.reconnect` waits for libvirt to come back (a restart of the
#: daemon takes seconds; it re-attaches to running QEMUs before it answers for them).
RECONNECT_WAIT = 60.0

#: QMP commands :meth:`Domain.qmp` may send: read-only ones only. Changing QEMU state
#: behind libvirt's back would make its view wrong, which is the very problem we solve.
READONLY_QMP = frozenset({
    "query-hotpluggable-cpus", "query-cpus-fast", "query-memory-devices", "query-memory-size-summary",
    "query-block", "query-named-block-nodes", "query-status", "query-version", "query-balloon",
    "query-memdev", "query-jobs", "query-block-jobs",
})


@dataclass
class Domain:
    """A libvirt domain and its connection; the host-side handle every workflow uses."""

    dom: Any
    conn: Any
    #: The URI it was looked up with (None: libvirt's default), for :meth:`reconnect`.
    asked_uri: str | None = None

    @classmethod
    def lookup(cls, name: str, uri: str | None = None) -> Domain:
        conn = open_connection(uri)
        return cls(lookup_domain(conn, name), conn, uri)

    def alive(self) -> bool:
        """The connection to libvirt still works (False after libvirtd went away)."""
        try:
            return bool(self.conn.isAlive())
        except import_libvirt().libvirtError:
            return False

    def reconnect(self, seconds: float = RECONNECT_WAIT) -> None:
        """A new connection after the old one died (libvirtd restarted), and the domain
        found again by its UUID, retried for up to ``seconds``; HostError (or
        DomainError) when libvirt does not come back with it in time."""
        uuid = str(self.dom.UUIDString())  # kept by the client: no call to the daemon
        lv = import_libvirt()

        def attempt() -> tuple[Any, Any]:
            conn = open_connection(self.asked_uri, fresh=True)
            try:
                return conn, conn.lookupByUUIDString(uuid)
            except lv.libvirtError as exc:
                raise map_libvirt_error(exc, domain=uuid) from exc

        policy = when(lambda e: isinstance(e, HostError | DomainError), attempts=1000, seconds=seconds,
                      max_wait=2.0)
        self.conn, self.dom = call_with(policy, attempt)

    @property
    def name(self) -> str:
        return str(self.dom.name())

    @property
    def uri(self) -> str:
        return str(self.conn.getURI())

    def state(self) -> str:
        return domain_state(self.dom)

    def call(self, method: str, *args: Any) -> Any:
        """Call a virDomain method, mapping libvirt errors onto ours."""
        lv = import_libvirt()
        try:
            return getattr(self.dom, method)(*args)
        except lv.libvirtError as exc:
            raise map_libvirt_error(exc, domain=self.name) from exc

    def xml(self, inactive: bool = False) -> ET.Element:
        """Live (default) or persistent domain XML, parsed."""
        lv = import_libvirt()
        flags = lv.VIR_DOMAIN_XML_INACTIVE if inactive else 0
        return ET.fromstring(self.call("XMLDesc", flags))

    def qmp(self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
        """A read-only QMP query through libvirt's monitor (QEMU's own view)."""
        if command not in READONLY_QMP:
            raise HostError(f"QMP command {command} is not in the read-only allow-list")
        import libvirt_qemu

        lv = import_libvirt()
        payload: dict[str, Any] = {"execute": command}
        if arguments:
            payload["arguments"] = arguments
        try:
            raw = libvirt_qemu.qemuMonitorCommand(self.dom, json.dumps(payload), 0)
        except lv.libvirtError as exc:
            raise map_libvirt_error(exc, domain=self.name, command=command) from exc
        try:
            reply = json.loads(raw)
        except ValueError as exc:
            raise ProtocolError(f"QMP reply is not JSON: {exc}", domain=self.name, command=command) from exc
        if "error" in reply:
            raise HostError(f"QMP {command} failed: {reply['error'].get('desc')}", domain=self.name)
        return reply.get("return")

    def wait_for_state(self, wanted: set[str], timeout: float, poll: float = 0.25) -> str:
        """Poll the domain state until it is one of ``wanted``; AgentTimeoutError at the deadline.

        A domain that disappears (transient domain shut down) counts as "shut off".
        """
        from virt_qga.errors import DomainNotFoundError

        deadline = time.monotonic() + timeout
        state = "unknown"
        while True:
            try:
                state = self.state()
            except DomainNotFoundError:
                state = "shut off"
            if state in wanted:
                return state
            if time.monotonic() >= deadline:
                raise AgentTimeoutError(f"domain still {state} after {timeout:g} s "
                                        f"(waited for {' or '.join(sorted(wanted))})", domain=self.name)
            time.sleep(poll)
