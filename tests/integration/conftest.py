"""Session fixtures for every integration test: the lab and its guests.

* ``lab`` (session): a :class:`virt_qga.lab.Lab` at ``$VIRT_QGA_LAB_DIR`` or the default
  root; brings nothing up by itself.
* ``guests`` (session): long-lived shared guests ``"libvirt-7.2"``, ``"libvirt-10.0"``,
  ``"plain-7.2"``, ``"plain-10.0"`` -> LabGuest, booted in parallel once per session
  and destroyed at its end. Do not leave them frozen, shut down or re-plugged.
* ``fresh_guest`` (function): factory ``fresh_guest(agent="7.2", plain=False,
  agent_channel=True) -> LabGuest`` for destructive tests; destroyed after the test.

When the lab cannot start: ``pytest.fail`` if ``$CI`` is set (non-empty), else skip.
Every test under tests/integration is marked ``integration``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from virt_qga.lab import Lab, LabError, LabGuest

HERE = Path(__file__).resolve().parent

#: guests fixture key -> (plain, agent)
SHARED: dict[str, tuple[bool, str]] = {
    "libvirt-7.2": (False, "7.2"),
    "libvirt-10.0": (False, "10.0"),
    "plain-7.2": (True, "7.2"),
    "plain-10.0": (True, "10.0"),
}

#: Guest names carry the pytest pid, so parallel sessions on one lab do not collide.
SESSION_TAG = f"t{os.getpid()}"
BOOT_TIMEOUT = 120.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs the lab (real libvirt, QEMU and qemu-ga)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def lab_unavailable(reason: str) -> None:
    """Fail under CI (a broken lab must not turn into a green run), skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"the lab cannot start and CI is set: {reason}", pytrace=False)
    pytest.skip(f"the lab cannot start: {reason}")


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    try:
        the_lab = Lab()
        the_lab.preflight(plain=False)
    except LabError as exc:
        lab_unavailable(str(exc))
    yield the_lab
    the_lab.close()


@pytest.fixture(scope="session")
def guests(lab: Lab) -> Iterator[dict[str, LabGuest]]:
    booted: dict[str, LabGuest] = {}
    try:
        for _, agent in SHARED.values():
            lab.build(agent=agent)
        for key, (plain, agent) in SHARED.items():
            [guest] = lab.up(agent=agent, plain=plain, name=f"{SESSION_TAG}-{key}", wait=False)
            booted[key] = guest
        lab.wait_ready(list(booted.values()), timeout=BOOT_TIMEOUT)
    except LabError as exc:
        _destroy_all(lab, [g.name for g in booted.values()])
        lab_unavailable(str(exc))
    yield booted
    _destroy_all(lab, [g.name for g in booted.values()])
    _down_if_idle(lab)


@pytest.fixture
def fresh_guest(lab: Lab) -> Iterator[Callable[..., LabGuest]]:
    made: list[str] = []
    counter = itertools.count(1)

    def make(agent: str = "7.2", plain: bool = False, agent_channel: bool = True) -> LabGuest:
        name = f"{SESSION_TAG}-fresh-{next(counter)}-{os.urandom(2).hex()}"
        made.append(name)
        try:
            [guest] = lab.up(
                agent=agent, plain=plain, name=name, agent_channel=agent_channel, timeout=BOOT_TIMEOUT
            )
        except LabError as exc:
            lab_unavailable(str(exc))
        return guest

    yield make
    _destroy_all(lab, made)


def _destroy_all(lab: Lab, names: list[str]) -> None:
    for name in names:
        try:
            lab.destroy(name)
        except LabError:
            pass


def _down_if_idle(lab: Lab) -> None:
    """Stop the lab daemon when no guest (of anyone) is left, so nothing keeps running."""
    try:
        if not lab.status():
            lab.down()
    except LabError:
        pass
