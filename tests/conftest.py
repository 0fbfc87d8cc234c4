"""Fixtures and settings shared by every test directory.

The test run may start as ``.venv/bin/python -m pytest`` without the virtualenv being
activated; tools installed with the package's test extras (``ansible-playbook``,
``ansible-doc``, ``ansible-test``, ``virt-qga``) live next to that interpreter. Put its
directory first on ``PATH`` so that ``shutil.which`` and every subprocess find them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

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


ENV_STACKS = "VIRT_QGA_STACKS"


def pytest_addoption(parser: pytest.Parser) -> None:
    """The lab's options, here so that they work whatever paths pytest is given (an option
    declared in tests/integration/conftest.py is unknown to ``pytest tests``)."""
    from virt_qga.lab.stacks import STACK_NAMES

    parser.addoption(
        "--stacks",
        default=os.environ.get(ENV_STACKS, "all"),
        help=f"lab stacks for integration tests: all, or a comma list of {', '.join(STACK_NAMES)} "
        f"(default: ${ENV_STACKS} or all)",
    )
    parser.addoption(
        "--stack-tests-only", action="store_true", default=False,
        help="deselect every test that does not run on a lab stack (unit tests, offline checks): "
        "for a second pytest process that covers one more stack beside a full run",
    )


@pytest.fixture(autouse=True)
def _option_spelling_restored() -> Iterator[None]:
    """A test that runs the CLI in this process (``virt_qga.cli.main._run``) sets the
    process's option spelling to the CLI's (``--max-frozen``); later tests expect the
    library's default. Put it back after every test."""
    from virt_qga import errors

    saved = errors._spelling
    yield
    errors._spelling = saved
