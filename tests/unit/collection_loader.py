"""Ansible's collection finder for one test module at a time.

The plugin tests load the collection's connection and inventory plugins the way Ansible
does (the plugin loader, which needs ``init_plugin_loader``). Left installed, that finder
takes over every later ``ansible_collections`` import in the session (the import-linter
graph of test_layers, for one), so the fixture removes it again.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

COLLECTIONS = Path(__file__).resolve().parents[2] / "ansible"


@pytest.fixture(scope="module", autouse=True)
def collection_loader() -> Iterator[None]:
    from ansible.plugins.loader import init_plugin_loader
    from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

    _forget_collections()  # imported as plain packages by an earlier test: the finder must own them
    init_plugin_loader([str(COLLECTIONS)])
    yield
    _AnsibleCollectionFinder._remove()
    _forget_collections()


def _forget_collections() -> None:
    for name in [m for m in sys.modules if m.split(".", 1)[0] == "ansible_collections"]:
        del sys.modules[name]
