"""Which guest a command means, and how to reach it: the one target resolver.

A target is a libvirt domain (name, UUID or ID on a URI) or an agent channel socket
(plain QEMU; the "domain" is then only a label). The CLI (``DOMAIN``, ``unix:PATH``,
``--socket``), the Ansible modules (``domain``/``uri``/``socket``), the thaw guard and
the workflows all resolve it here, so the rules are the same everywhere:

* ``unix:PATH`` as the domain names the socket ``PATH`` directly;
* otherwise a socket given separately wins, and the domain is its label;
* otherwise the domain is looked up on the libvirt URI (None: libvirt's default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from virt_qga.errors import BadInputError, option_ref

if TYPE_CHECKING:
    from virt_qga.agent import GuestAgent
    from virt_qga.host import Domain
    from virt_qga.transport.base import Transport

__all__ = ["SOCKET_PREFIX", "Target"]

#: A domain argument that names an agent socket: ``unix:/run/qga.sock``.
SOCKET_PREFIX = "unix:"


@dataclass(frozen=True)
class Target:
    """A resolved target. ``uri`` is used only when ``socket`` is None."""

    label: str
    uri: str | None = None
    socket: str | None = None

    @classmethod
    def resolve(cls, domain: str, *, uri: str | None = None, socket: str | None = None) -> Target:
        """Apply the rules of the module docstring to a front end's inputs."""
        if domain.startswith(SOCKET_PREFIX):
            path = domain[len(SOCKET_PREFIX):]
            if not path:
                raise BadInputError(f"{domain!r}: expected unix:SOCKET_PATH", field="domain")
            return cls(label=domain, socket=path)
        if socket:
            return cls(label=domain, socket=socket)
        if not domain:
            raise BadInputError("no domain given", field="domain")
        return cls(label=domain, uri=uri)

    @property
    def via_socket(self) -> bool:
        return self.socket is not None

    def transport(self, timeout: float) -> Transport:
        """A transport to the agent (nothing is sent yet)."""
        if self.socket is not None:
            from virt_qga.transport.socket import SocketTransport

            return SocketTransport(self.socket, timeout=timeout)
        from virt_qga.transport.libvirt import LibvirtTransport

        return LibvirtTransport(self.label, self.uri, timeout=timeout)

    def agent(self, timeout: float) -> GuestAgent:
        """A :class:`~virt_qga.agent.GuestAgent` for the target (nothing is sent yet)."""
        from virt_qga.agent import GuestAgent

        if self.socket is not None:
            return GuestAgent.for_socket(self.socket, timeout=timeout, name=self.label)
        return GuestAgent.for_domain(self.label, self.uri, timeout=timeout)

    def domain(self, what: str = "this") -> Domain:
        """The libvirt side of the target; an agent socket has none (BadInputError)."""
        if self.socket is not None:
            raise BadInputError(f"{what} needs libvirt: give a domain (and a URI), not "
                                f"{option_ref('socket')}", field="socket")
        from virt_qga.host import Domain

        return Domain.lookup(self.label, self.uri)

    def journal_identity(self, host: Domain | None) -> tuple[str, str, str | None]:
        """(URI, name, UUID) that key the per-domain journal and lock."""
        if host is not None:
            return host.uri, host.name, str(host.dom.UUIDString())
        return f"{SOCKET_PREFIX}{self.socket}", self.label, None
