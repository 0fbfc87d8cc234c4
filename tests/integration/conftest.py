"""Session fixtures for every integration test: the lab, its stacks and its guests.

**Stacks.** Every test that uses ``lab``, ``guests`` or ``fresh_guest`` (or ``stack``)
runs once per selected lab stack (:mod:`virt_qga.lab.stacks`): ``host`` (this machine's
libvirt in session mode) and ``debian13`` (libvirt 11.3 + QEMU 10.0, system mode). The
stack is part of the test id (``test_x[debian13-libvirt-7.2]``) and the run ends with
a per-stack summary (tests, outcome, seconds). A test says where it runs:

* nothing: on every selected stack (the default: what virt-qga does with libvirt is
  worth checking on both);
* ``@pytest.mark.stacks("host")``: the host stack only, for tests the stack cannot
  change (plain QEMU guests, the socket transport, CLI plumbing): keep the CI budget;
* a test whose parameters pick a plain QEMU guest (a ``plain-*`` guest key, or a
  parameter named ``plain`` that is true) runs on the host stack only, automatically:
  plain guests have no libvirt, so another stack would only repeat it.

``--stacks host,debian13`` (or ``$VIRT_QGA_STACKS``; default ``all``) selects stacks.

**Fixtures.**

* ``stack`` (session, parametrised): the stack name.
* ``lab`` (session): a :class:`virt_qga.lab.Lab` for that stack at ``$VIRT_QGA_LAB_DIR``
  or the default root; brings nothing up by itself. ``lab.uri`` is the stack's URI.
* ``guests`` (session): long-lived shared guests ``"libvirt-7.2"``, ``"libvirt-10.0"``
  on the stack, and on the host stack also ``"plain-7.2"``, ``"plain-10.0"`` ->
  LabGuest, booted in parallel once per stack and destroyed at its end. Do not leave
  them frozen, shut down or re-plugged.
* ``fresh_guest`` (function): factory ``fresh_guest(agent="7.2", plain=False,
  agent_channel=True) -> LabGuest`` for destructive tests; destroyed after the test.
  A plain guest is always the host's QEMU.

When the lab cannot start: ``pytest.fail`` if ``$CI`` is set (non-empty), else skip.
Every test under tests/integration is marked ``integration``.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from virt_qga.lab import Lab, LabError, LabGuest
from virt_qga.lab.stacks import HOST, STACK_NAMES

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



# ------------------------------------------------------------------ stack selection


def selected_stacks(config: pytest.Config) -> list[str]:
    raw = str(config.getoption("--stacks") or "all")
    if raw == "all":
        return list(STACK_NAMES)
    names = [s.strip() for s in raw.split(",") if s.strip()]
    unknown = [s for s in names if s not in STACK_NAMES]
    if unknown:
        raise pytest.UsageError(
            f"--stacks: unknown stack(s) {', '.join(unknown)}; choose from {', '.join(STACK_NAMES)}"
        )
    return names


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs the lab (real libvirt, QEMU and qemu-ga)")
    config.addinivalue_line(
        "markers", "stacks(*names): run only on these lab stacks (default: every selected stack)"
    )


def _allowed(definition: Any) -> list[str]:
    marker = definition.get_closest_marker("stacks")
    if marker is None:
        return list(STACK_NAMES)
    unknown = [s for s in marker.args if s not in STACK_NAMES]
    if unknown:
        raise pytest.UsageError(f"{definition.nodeid}: unknown stack(s) in @stacks: {', '.join(unknown)}")
    return list(marker.args)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "stack" not in metafunc.fixturenames:
        return
    wanted = selected_stacks(metafunc.config)
    allowed = _allowed(metafunc.definition)
    params = [s for s in STACK_NAMES if s in wanted and s in allowed] or allowed[:1]
    metafunc.parametrize("stack", params, indirect=True, scope="session")


def _runs_plain_guest(item: pytest.Item) -> bool:
    params = getattr(getattr(item, "callspec", None), "params", {})
    return params.get("plain") is True or any(
        isinstance(v, str) and v.startswith("plain-") for v in params.values()
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = selected_stacks(config)
    stack_tests_only = bool(config.getoption("--stack-tests-only"))
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)
        params = getattr(getattr(item, "callspec", None), "params", {})
        stack = params.get("stack")
        if stack is None and stack_tests_only:
            dropped.append(item)
            continue
        if stack is not None:
            item.user_properties.append(("stack", stack))
            not_here = stack not in wanted or stack not in _allowed(item)
            if not_here or (stack != HOST and _runs_plain_guest(item)):
                dropped.append(item)
                continue
        keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


# ------------------------------------------------------------------ per-stack report

_per_stack: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    stack = dict(report.user_properties).get("stack")
    key = str(stack) if stack else "no lab"
    _per_stack[key]["seconds"] += report.duration
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _per_stack[key][report.outcome] += 1
    elif report.when == "teardown" and report.outcome == "failed":
        _per_stack[key]["error"] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _per_stack:
        return
    terminalreporter.section("time per lab stack")
    for name, counts in sorted(_per_stack.items()):
        kinds = ("passed", "failed", "error", "skipped")
        outcome = ", ".join(f"{int(counts[k])} {k}" for k in kinds if counts.get(k))
        terminalreporter.write_line(f"{name:9} {counts['seconds']:7.1f} s  {outcome}")


# ------------------------------------------------------------------ fixtures


def lab_unavailable(reason: str) -> None:
    """Fail under CI (a broken lab must not turn into a green run), skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"the lab cannot start and CI is set: {reason}", pytrace=False)
    pytest.skip(f"the lab cannot start: {reason}")


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", HOST))


@pytest.fixture(scope="session")
def lab(stack: str) -> Iterator[Lab]:
    try:
        the_lab = Lab(stack=stack)
        the_lab.preflight(plain=False)
        start = time.monotonic()
        the_lab.build_stack(log=True)
        if time.monotonic() - start > 5:
            print(f"\nlab: {stack} root built in {time.monotonic() - start:.0f} s")
    except LabError as exc:
        lab_unavailable(str(exc))
    yield the_lab
    the_lab.close()


@pytest.fixture(scope="session")
def guests(lab: Lab, stack: str) -> Iterator[dict[str, LabGuest]]:
    booted: dict[str, LabGuest] = {}
    # plain guests have no libvirt: only the host stack's session boots them
    wanted = {k: v for k, v in SHARED.items() if stack == HOST or not v[0]}
    try:
        for _, agent in wanted.values():
            lab.build(agent=agent)
        for key, (plain, agent) in wanted.items():
            [guest] = lab.up(agent=agent, plain=plain, name=f"{SESSION_TAG}-{stack}-{key}", wait=False)
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
                agent=agent, plain=plain, name=name, agent_channel=agent_channel, timeout=BOOT_TIMEOUT,
                stack=HOST if plain else None,
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
    """Stop the lab's daemons when no guest (of anyone, on any stack) is left, so nothing
    keeps running."""
    try:
        if not lab.status():
            lab.down()
    except LabError:
        pass
