"""Fixtures and settings shared by every test directory.

The test run may start as ``.venv/bin/python -m pytest`` without the virtualenv being
activated; tools installed with the package's test extras (``ansible-playbook``,
``ansible-doc``, ``ansible-test``, ``virt-qga``) live next to that interpreter. Put its
directory first on ``PATH`` so that ``shutil.which`` and every subprocess find them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: Fixtures shared across test folders (``store``: a backup store QEMU can write into).
pytest_plugins = ["tests.integration.stores"]

_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = os.pathsep.join(p for p in (_BIN, os.environ.get("PATH", "")) if p)


def tool_missing(name: str) -> bool:
    """True when ``name`` cannot be found *and* we may skip for it.

    Under CI (``$CI`` non-empty) a missing tool never turns into a skip: the test runs
    and fails, so a broken install cannot produce a green run.
    """
    import shutil

    return shutil.which(name) is None and not os.environ.get("CI")
