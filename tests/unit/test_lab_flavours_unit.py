"""Lab guest flavours: names, cache tags, what the python flavour keeps and drops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from virt_qga.lab import flavours
from virt_qga.lab.errors import LabError


def test_flavour_names_and_tags() -> None:
    assert flavours.FLAVOURS[0] == flavours.DEFAULT_FLAVOUR == "busybox"
    flavours.check_flavour("python")
    with pytest.raises(LabError, match="busybox, python"):
        flavours.check_flavour("alpine")
    # the busybox images keep their historical names; python images never match them
    assert flavours.image_tag("7.2", "busybox") == "7.2"
    assert flavours.image_tag("10.0", "python") == "10.0-python"


class FakeApt:
    dir = Path("/nonexistent")

    def __init__(self, table: dict[str, list[tuple[str, str]]]) -> None:
        self.table = table

    def versions(self, package: str) -> list[tuple[str, str]]:
        return self.table.get(package, [])


def test_pinned_versions_take_the_newest_of_the_release_never_backports() -> None:
    apt: Any = FakeApt({
        "libssl3": [("3.0.17-1~deb12u2", "bookworm"), ("3.0.17-1~deb12u3", "bookworm-security"),
                    ("3.5.1-1~bpo12+1", "bookworm-backports"), ("3.5.1-1", "trixie")],
    })
    assert flavours.pinned_versions(apt, ("libssl3",)) == {"libssl3": "3.0.17-1~deb12u3"}
    with pytest.raises(LabError, match="libffi8 not found in Debian bookworm"):
        flavours.pinned_versions(apt, ("libffi8",))


def test_busybox_adds_nothing() -> None:
    apt: Any = FakeApt({})
    assert flavours.inputs(apt, "busybox") == {}
    flavours.stage(apt, "busybox", Path("/nonexistent"))  # no download, no file touched


def test_standard_library_trimming() -> None:
    top = f"/x/usr/lib/python{flavours.PYTHON_VERSION}"
    names = ["json", "test", "idlelib", "tkinter", "email", "__pycache__", "asyncio", "ensurepip"]
    dropped = {"test", "idlelib", "tkinter", "__pycache__", "ensurepip"}
    assert flavours._ignore_in_stdlib(top, names) == dropped
    # test suites inside packages (ctypes/test, unittest/test) go too, the packages stay
    assert flavours._ignore_in_stdlib(top + "/ctypes", ["test", "macholib", "util.py"]) == {"test"}
    dynload = ["_ssl.cpython-311-x86_64-linux-gnu.so", "readline.cpython-311-x86_64-linux-gnu.so",
               "_sqlite3.cpython-311-x86_64-linux-gnu.so", "_ctypes.cpython-311-x86_64-linux-gnu.so",
               "_testcapi.cpython-311-x86_64-linux-gnu.so"]
    kept = set(dynload) - flavours._ignore_in_stdlib(top + "/lib-dynload", dynload)
    assert kept == {"_ssl.cpython-311-x86_64-linux-gnu.so", "_ctypes.cpython-311-x86_64-linux-gnu.so"}


def test_every_dropped_extension_says_why() -> None:
    assert all(reason for reason in flavours.DROP_EXTENSIONS.values())
    assert "ctypes" in flavours.SMOKE_IMPORTS and "ssl" in flavours.SMOKE_IMPORTS
