"""Unit tests never write to the real state directory (/var/lib/virt-qga as root)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRT_QGA_STATE_DIR", str(tmp_path / "state"))
