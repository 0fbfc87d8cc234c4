"""docs/api.md documents exactly the public API: every name in virt_qga.__all__."""

from __future__ import annotations

import re
from pathlib import Path

import virt_qga

API_PAGE = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_api_page_lists_every_export_once() -> None:
    documented = re.findall(r"^::: virt_qga\.(\w+)$", API_PAGE.read_text(encoding="utf-8"), re.MULTILINE)
    exported = [name for name in documented if name in virt_qga.__all__]
    assert sorted(exported) == sorted(virt_qga.__all__), "docs/api.md and virt_qga.__all__ differ"
    assert len(set(exported)) == len(exported), "a name is documented twice"
    assert set(documented) - set(virt_qga.__all__) <= {"errors"}, "docs/api.md names a non-export"
