"""Backup stores for the tests. The backup-api method has QEMU write the target files,
and QEMU runs as the lab daemon's user (or libvirt-qemu on a system-mode stack), which
cannot enter pytest's ``tmp_path`` (below a mode-700 directory). These stores live
below /var/tmp, in a directory that QEMU can traverse; each test removes its own."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

BASE = Path("/var/tmp")


@pytest.fixture
def store() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vqga-store-", dir=BASE))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
