"""The lab's own error: one line, saying what is missing and how to get it."""

from __future__ import annotations

from virt_qga.errors import HostError


class LabError(HostError):
    """The lab could not be built, started, inspected or torn down.

    A subclass of :class:`virt_qga.errors.HostError` (and so of ``VirtQgaError``):
    the CLI prints ``str(err)`` on one line and exits with ``err.exit_code``.
    """


SETUP_HINT = "run `bash scripts/setup-system.sh` (as root) to install the lab's system packages"
