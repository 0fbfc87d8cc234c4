# Copyright (c) virt-qga developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Each module's DOCUMENTATION/EXAMPLES/RETURN parse as YAML, and the documented options
(with the doc fragment merged in) are exactly the argument_spec, with the same types,
defaults, choices, element types and no_log flags."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml

COLLECTION = Path(__file__).resolve().parents[4]
FQCN_PREFIX = "virt_qga.guest_agent."
MODULES = sorted(p.stem for p in (COLLECTION / "plugins" / "modules").glob("virt_qga_*.py"))


def load(name: str) -> Any:
    return importlib.import_module(f"ansible_collections.virt_qga.guest_agent.plugins.modules.{name}")


def fragment_options() -> dict[str, Any]:
    from ansible_collections.virt_qga.guest_agent.plugins.doc_fragments.common import ModuleDocFragment

    options: dict[str, Any] = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    return options


def documented_options(mod: Any) -> dict[str, Any]:
    doc = yaml.safe_load(mod.DOCUMENTATION)
    opts: dict[str, Any] = {}
    if "virt_qga.guest_agent.common" in doc.get("extends_documentation_fragment", []):
        opts.update(fragment_options())
    for key, value in (doc.get("options") or {}).items():  # the module's own text wins
        merged = dict(opts.get(key, {}))
        merged.update(value)
        opts[key] = merged
    return opts


def test_modules_found() -> None:
    assert "virt_qga_info" in MODULES and "virt_qga_exec" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_blocks_are_yaml(name: str) -> None:
    mod = load(name)
    doc = yaml.safe_load(mod.DOCUMENTATION)
    assert doc["module"] == name
    assert doc["short_description"] and doc["description"]
    assert isinstance(yaml.safe_load(mod.RETURN), dict)
    examples = yaml.safe_load(mod.EXAMPLES)
    assert isinstance(examples, list) and examples


@pytest.mark.parametrize("name", MODULES)
def test_documented_options_match_argument_spec(name: str) -> None:
    mod = load(name)
    spec = mod.argument_spec()
    docs = documented_options(mod)
    assert sorted(docs) == sorted(spec)
    for opt, s in spec.items():
        d = docs[opt]
        assert d.get("type", "str") == s.get("type", "str"), opt
        assert d.get("default") == s.get("default"), opt
        assert d.get("elements") == s.get("elements"), opt
        if "choices" in s or "choices" in d:
            assert sorted(d["choices"]) == sorted(s["choices"]), opt
        assert d.get("required", False) == s.get("required", False), opt
        assert d.get("description"), opt


@pytest.mark.parametrize("name", MODULES)
def test_examples_use_documented_options(name: str) -> None:
    mod = load(name)
    spec = mod.argument_spec()
    for task in yaml.safe_load(mod.EXAMPLES):
        key = FQCN_PREFIX + name
        if key not in task:
            continue
        args = task[key]
        assert set(args) <= set(spec), (task.get("name"), set(args) - set(spec))


#: Options whose name sounds secret but whose value is a mode, not a secret (their
#: no_log=False is explicit, as ansible-test's validate-modules asks).
NOT_SECRET = {"update_password"}


@pytest.mark.parametrize("name", MODULES)
def test_secrets_are_no_log(name: str) -> None:
    spec = load(name).argument_spec()
    for opt, s in spec.items():
        if opt in NOT_SECRET:
            assert s.get("no_log") is False and s.get("choices"), opt
        elif any(w in opt for w in ("secret", "password", "passphrase", "token")):
            assert s.get("no_log") is True, opt


@pytest.mark.parametrize("name", MODULES)
def test_return_keys_documented(name: str) -> None:
    ret = yaml.safe_load(load(name).RETURN)
    for key, value in ret.items():
        assert value.get("description") and value.get("returned") and value.get("type"), key
