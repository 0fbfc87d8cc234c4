"""The Ansible collection as its users get it: built into a tarball by
``ansible-galaxy collection build`` and installed from that tarball into a temporary
collections path, once per test process.

Playbook, ``ansible-doc`` and ``ansible-test sanity`` tests point Ansible at
:func:`installed_collections`, so a file the build leaves out (``build_ignore``, a
missing ``meta/``...) fails them the way it would fail a user. ruff and mypy keep
checking the source tree (``./dev lint``), and so do the unit tests that import the
plugins directly.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "ansible" / "ansible_collections" / "virt_qga" / "guest_agent"
NAME = ("virt_qga", "guest_agent")


def _galaxy(*args: str, cwd: Path) -> None:
    exe = shutil.which("ansible-galaxy") or "ansible-galaxy"
    proc = subprocess.run([exe, "collection", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"ansible-galaxy collection {args[0]} failed: "
                           f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


@functools.cache
def installed_collections() -> Path:
    """A collections path (``ANSIBLE_COLLECTIONS_PATH``) holding the collection installed
    from the tarball built from the source tree; removed when the process exits."""
    root = Path(tempfile.mkdtemp(prefix="virt-qga-collection-"))
    atexit.register(shutil.rmtree, root, True)
    dist = root / "dist"
    _galaxy("build", str(SOURCE), "--output-path", str(dist), cwd=root)
    [tarball] = dist.glob("*.tar.gz")
    _galaxy("install", "--offline", "-p", str(root / "collections"), str(tarball), cwd=root)
    return root / "collections"


def installed_collection() -> Path:
    """The installed collection's own directory (``.../ansible_collections/NS/NAME``)."""
    return installed_collections().joinpath("ansible_collections", *NAME)
