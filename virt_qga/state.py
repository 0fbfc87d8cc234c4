"""Where virt-qga keeps state that must outlive one process.

``$VIRT_QGA_STATE_DIR``, else ``/var/lib/virt-qga`` for root, else
``$XDG_STATE_HOME/virt-qga`` (``~/.local/state/virt-qga``). Snapshot journals and
locks live under it (:mod:`virt_qga.workflows.journal`), and so do the hot-plug
safety markers of :mod:`virt_qga.host.vcpus`.
"""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    env = os.environ.get("VIRT_QGA_STATE_DIR")
    if env:
        return Path(env).expanduser().absolute()
    if os.geteuid() == 0:
        return Path("/var/lib/virt-qga")
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "virt-qga"
