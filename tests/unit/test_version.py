"""One version: virt_qga.__version__, read by setup.cfg and copied into galaxy.yml."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import virt_qga

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
import sync_version  # noqa: E402


def test_every_copy_of_the_version_agrees() -> None:
    assert sync_version.main(["--check"]) == 0


def test_installed_metadata_comes_from_the_package() -> None:
    assert importlib.metadata.version("virt-qga") == virt_qga.__version__
    assert sync_version.package_version() == virt_qga.__version__


def test_a_stale_copy_is_reported() -> None:
    setup = f"[metadata]\nname = virt-qga\n{sync_version.SETUP_LINE}\n"
    galaxy = "namespace: virt_qga\nname: guest_agent\nversion: 0.0.9\n"
    changelog = "# Changelog\n\n## [1.2.3] - 2026-12-01\n"
    found = sync_version.problems("1.2.3", setup, galaxy, changelog)
    assert found == ["galaxy.yml: version is ['0.0.9'], virt_qga.__version__ is 1.2.3"
                     " (run tools/sync_version.py)"]
    assert sync_version.problems("1.2.3", setup, galaxy.replace("0.0.9", "1.2.3"), changelog) == []
    assert len(sync_version.problems("1.2.4", "version = 1.2.4\n", galaxy, changelog)) == 3
