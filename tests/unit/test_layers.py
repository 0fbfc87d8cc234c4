"""The layer rules of setup.cfg ([importlinter]) really catch a violating import.

``./dev lint`` runs ``lint-imports`` over the real code. These tests take the same
contracts and the same import graph, add one import that breaks a rule, and check that
the contract then reports exactly that import: a contract that can never fail would be
a rule on paper only.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grimp
import pytest
from importlinter.api import read_configuration
from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.contracts.layers import LayersContract
from importlinter.contracts.protected import ProtectedContract
from importlinter.domain.contract import Contract

REPO = Path(__file__).resolve().parents[2]
CONTRACT_TYPES: dict[str, type[Contract]] = {
    "layers": LayersContract,
    "forbidden": ForbiddenContract,
    "protected": ProtectedContract,
}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return read_configuration(str(REPO / "setup.cfg"))


@pytest.fixture(scope="module")
def real_graph(config: dict[str, Any]) -> Iterator[grimp.ImportGraph]:
    # The collection is a namespace package found through ansible/ (as ./dev lint does it).
    sys.path.insert(0, str(REPO / "ansible"))
    try:
        roots = config["session_options"]["root_packages"]
        yield grimp.build_graph(*roots, cache_dir=None)
    finally:
        sys.path.remove(str(REPO / "ansible"))


def contract(config: dict[str, Any], contract_id: str) -> Contract:
    for options in config["contracts_options"]:
        if options["id"] == contract_id:
            cls = CONTRACT_TYPES[options["type"]]
            return cls(name=options["name"], session_options=config["session_options"],
                       contract_options=options)
    raise AssertionError(f"no contract {contract_id!r} in setup.cfg")


def with_import(graph: grimp.ImportGraph, importer: str, imported: str) -> grimp.ImportGraph:
    bad = copy.deepcopy(graph)
    bad.add_import(importer=importer, imported=imported, line_number=1,
                   line_contents=f"import {imported}")
    return bad


def assert_kept(rule: Contract, graph: grimp.ImportGraph) -> None:
    """The real code keeps the rule (else adding a breach proves nothing); `./dev lint` explains."""
    kept = rule.check(graph, verbose=False).kept
    assert kept, f"contract {rule.name!r} is broken by the code itself: run ./dev lint"


def violations(check_metadata: dict[str, Any]) -> str:
    """The contract's report as one string (enough to look for module names in)."""
    return repr(check_metadata)


# Each case: a contract, then an import that must break it. The first import of every
# contract is also a plausible mistake a newcomer could make.
BREACHES = [
    ("layers", "virt_qga.transport.socket", "virt_qga.agent"),
    ("layers", "virt_qga.spec", "virt_qga.workflows.exec"),
    ("layers", "virt_qga.agent", "virt_qga.host"),          # siblings stay independent
    ("layers", "virt_qga.errors", "virt_qga.retry"),
    ("layers", "virt_qga.outcome", "virt_qga.errors"),       # outcome imports nothing
    ("layers", "virt_qga.host.snapshots", "virt_qga.agent"),
    # the package root re-exports the workflows: importing it from below reaches up
    ("layers", "virt_qga.transport.socket", "virt_qga"),
    ("layers", "virt_qga.workflows.exec", "virt_qga.cli.main"),
    ("exitcodes-at-the-edges", "virt_qga.host.memory", "virt_qga.exitcodes"),
    ("exitcodes-at-the-edges", "virt_qga.transport.socket", "virt_qga.exitcodes"),
    ("lab-is-test-infrastructure", "virt_qga.workflows.exec", "virt_qga.lab.manager"),
    ("lab-is-test-infrastructure", "virt_qga.cli.main", "virt_qga.lab"),
    ("ansible-front-end",
     "ansible_collections.virt_qga.guest_agent.plugins.module_utils.virt_qga_common",
     "virt_qga.cli.main"),
]


@pytest.mark.parametrize(("contract_id", "importer", "imported"), BREACHES)
def test_contract_breaks_on_a_violating_import(config: dict[str, Any],
                                               real_graph: grimp.ImportGraph,
                                               contract_id: str, importer: str,
                                               imported: str) -> None:
    rule = contract(config, contract_id)
    assert_kept(rule, real_graph)
    check = rule.check(with_import(real_graph, importer, imported), verbose=False)
    assert not check.kept
    report = violations(check.metadata)
    assert importer in report and imported in report


def test_a_new_top_level_module_must_be_placed_in_the_layers(config: dict[str, Any],
                                                             real_graph: grimp.ImportGraph) -> None:
    rule = contract(config, "layers")
    bad = copy.deepcopy(real_graph)
    bad.add_module("virt_qga.newthing")
    check = rule.check(bad, verbose=False)
    assert not check.kept
    assert "newthing" in violations(check.metadata)


def test_indirect_use_of_exit_codes_through_errors_is_allowed(config: dict[str, Any],
                                                              real_graph: grimp.ImportGraph) -> None:
    """host raises errors, errors carry exit codes: that chain is not a breach."""
    assert real_graph.find_shortest_chain(importer="virt_qga.host.memory",
                                          imported="virt_qga.exitcodes") is not None
    assert_kept(contract(config, "exitcodes-at-the-edges"), real_graph)
