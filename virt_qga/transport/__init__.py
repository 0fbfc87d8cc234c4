"""Transports: libvirt (qemuAgentCommand) and the agent's channel socket."""

from virt_qga.transport.base import DEFAULT_TIMEOUT, MAX_REPLY_BYTES, Transport

__all__ = ["DEFAULT_TIMEOUT", "MAX_REPLY_BYTES", "Transport"]
