#!/usr/bin/env python3
"""Keep every copy of the release version equal to ``virt_qga.__version__``.

The version is written once, in ``virt_qga/__init__.py``. ``setup.cfg`` reads it with
``version = attr: virt_qga.__version__`` (setuptools takes the literal from the source
without importing the package). Two places cannot point at it and are kept equal here:

* the Ansible collection's ``galaxy.yml`` (``version:``), rewritten by this script;
* ``CHANGELOG.md``, which must have a section ``## [X.Y.Z]`` for the version (checked
  only: the text of a release is written by a person).

Usage::

    python tools/sync_version.py          # rewrite galaxy.yml from __version__
    python tools/sync_version.py --check  # exit 1 when anything disagrees (./dev lint)
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INIT = ROOT / "virt_qga" / "__init__.py"
SETUP_CFG = ROOT / "setup.cfg"
GALAXY = ROOT / "ansible" / "ansible_collections" / "virt_qga" / "guest_agent" / "galaxy.yml"
CHANGELOG = ROOT / "CHANGELOG.md"

SETUP_LINE = "version = attr: virt_qga.__version__"
GALAXY_VERSION = re.compile(r"^version:[ \t]*(\S*)[ \t]*$", re.MULTILINE)
SEMVER = re.compile(r"\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?")


def package_version(init: Path = INIT) -> str:
    """The ``__version__ = "..."`` literal of virt_qga/__init__.py, read without importing."""
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "__version__"
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            return node.value.value
    raise SystemExit(f"sync_version: no literal __version__ = '...' in {init}")


def problems(version: str, setup_cfg: str, galaxy: str, changelog: str) -> list[str]:
    """Everything that disagrees with *version* (empty when all is in order)."""
    out = []
    if not SEMVER.fullmatch(version):
        out.append(f"virt_qga.__version__ {version!r} is not X.Y.Z (galaxy.yml needs semver)")
    if SETUP_LINE not in setup_cfg.splitlines():
        out.append(f"setup.cfg: [metadata] must say '{SETUP_LINE}'")
    found = GALAXY_VERSION.findall(galaxy)
    if found != [version]:
        out.append(f"galaxy.yml: version is {found or 'missing'}, virt_qga.__version__ is {version}"
                   " (run tools/sync_version.py)")
    if not re.search(rf"^## \[{re.escape(version)}\]", changelog, re.MULTILINE):
        out.append(f"CHANGELOG.md: no section '## [{version}]'")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="report disagreements, change nothing")
    args = ap.parse_args(argv)
    version = package_version()
    galaxy = GALAXY.read_text(encoding="utf-8")
    if not args.check:
        galaxy = GALAXY_VERSION.sub(f"version: {version}", galaxy, count=1)
        GALAXY.write_text(galaxy, encoding="utf-8")
    changelog = CHANGELOG.read_text(encoding="utf-8") if CHANGELOG.exists() else ""
    found = problems(version, SETUP_CFG.read_text(encoding="utf-8"), galaxy, changelog)
    for line in found:
        print(f"sync_version: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
