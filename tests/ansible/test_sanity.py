"""Offline checks of the Ansible collection (no lab needed), run against the collection as
``ansible-galaxy collection build`` packs it (:mod:`tests.collection_build`):

* every module's documentation renders with ``ansible-doc`` (fragments merged, YAML valid);
* every plugin compiles;
* the collection's own unit tests pass (run here so the repository's test run covers them);
* ``ansible-test sanity``: every test it has, no ignore file (docs/ansible.md, "Sanity tests");
* the tarball carries the GPL text, and the generated changelog is up to date.
"""

from __future__ import annotations

import json
import os
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.collection_build import SOURCE, installed_collection, installed_collections
from tests.conftest import tool_missing

REPO = Path(__file__).resolve().parents[2]
#: The source tree (what the unit tests import and ./dev lint checks).
COLLECTION = SOURCE
MODULES = sorted(p.stem for p in (COLLECTION / "plugins" / "modules").glob("*.py"))
PLUGINS = sorted((COLLECTION / "plugins").rglob("*.py"))

needs_ansible = pytest.mark.skipif(tool_missing("ansible-doc"),
                                   reason="ansible-core is not installed (pip install ansible-core)")


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["ANSIBLE_COLLECTIONS_PATH"] = str(installed_collections())
    e["ANSIBLE_NOCOLOR"] = "1"
    return e


def test_expected_modules_present() -> None:
    assert {"virt_qga_info", "virt_qga_exec", "virt_qga_copy", "virt_qga_snapshot",
            "virt_qga_vcpus", "virt_qga_memory", "virt_qga_backup", "virt_qga_call",
            "virt_qga_recover", "virt_qga_user_password", "virt_qga_authorized_key",
            "virt_qga_power"} <= set(MODULES)


@needs_ansible
@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders(module: str) -> None:
    fqcn = f"virt_qga.guest_agent.{module}"
    proc = subprocess.run(["ansible-doc", "--json", fqcn], env=env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)[fqcn]
    assert doc["doc"]["module"] == module
    options = doc["doc"]["options"]
    assert {"domain", "uri", "socket", "timeout"} <= set(options), "common fragment not merged"
    assert doc["examples"] and doc["return"]
    assert "[WARNING]" not in proc.stderr, proc.stderr


@needs_ansible
def test_ansible_doc_lists_the_collection() -> None:
    proc = subprocess.run(["ansible-doc", "-l", "virt_qga.guest_agent"], env=env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    listed = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    assert listed == {f"virt_qga.guest_agent.{m}" for m in MODULES}


@pytest.mark.parametrize("path", PLUGINS, ids=lambda p: str(p.relative_to(COLLECTION)))
def test_plugins_compile(path: Path, tmp_path: Path) -> None:
    py_compile.compile(str(path), cfile=str(tmp_path / "x.pyc"), doraise=True)


@needs_ansible
def test_collection_unit_tests() -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(COLLECTION / "tests" / "unit")], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def _offline_pip_bootstrap() -> None:
    """ansible-test builds a venv per sanity test and bootstraps pip into it with a script it
    downloads (get-pip), unless one is cached. This machine reaches only the package
    registries, so the project ships its own stand-in (pip from ensurepip, then the registry)
    and puts it where ansible-test looks."""
    cache = Path.home() / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    for name in ("get_pip_24_2.py",):
        target = cache / name
        if not target.exists():
            shutil.copyfile(Path(__file__).with_name("get_pip_offline.py"), target)
            (cache / f"{name}.download").touch()


def test_no_sanity_ignores() -> None:
    """Nothing is hidden from ansible-test: no ignore (or skip) file for any version."""
    assert not list((COLLECTION / "tests" / "sanity").glob("*.txt"))


@pytest.mark.slow
@pytest.mark.skipif(tool_missing("ansible-test"), reason="ansible-test is not installed")
def test_ansible_test_sanity() -> None:
    """Every sanity test ansible-test has (no --test: all of them), on the installed tarball.
    pslint and shellcheck find no PowerShell or shell file in the collection, so they pass
    without running their tool; the test fails if any sanity test is skipped for another
    reason."""
    _offline_pip_bootstrap()
    proc = subprocess.run(
        ["ansible-test", "sanity", "--python", f"{sys.version_info.major}.{sys.version_info.minor}",
         "--local", "--color", "no"],
        cwd=installed_collection(), capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    listed = subprocess.run(["ansible-test", "sanity", "--list-tests"], cwd=installed_collection(),
                            capture_output=True, text=True, timeout=120).stdout.split()
    ran = [line.split('"')[1] for line in proc.stdout.splitlines() if line.startswith("Running sanity test")]
    assert len(listed) >= 24 and set(listed) == set(ran), (listed, ran)
    assert "skipped" not in proc.stdout.lower() and "skipped" not in proc.stderr.lower(), proc.stdout


def test_tarball_has_the_licence_and_changelog() -> None:
    installed = installed_collection()
    gpl = (installed / "LICENSES" / "GPL-3.0-or-later.txt").read_text()
    assert "GNU GENERAL PUBLIC LICENSE" in gpl and "Version 3" in gpl
    assert (installed / "COPYING").read_text() == gpl
    assert (installed / "CHANGELOG.rst").is_file() and (installed / "changelogs" / "changelog.yaml").is_file()
    manifest = json.loads((installed / "MANIFEST.json").read_text())["collection_info"]
    assert manifest["license"] == ["GPL-3.0-or-later"]
    assert not any("example" in str(manifest.get(k) or "") for k in ("repository", "homepage", "issues",
                                                                      "documentation"))
    for path in sorted((installed / "plugins").rglob("*.py")):
        assert "SPDX-License-Identifier: GPL-3.0-or-later" in path.read_text(), path


@pytest.mark.skipif(tool_missing("antsibull-changelog"), reason="antsibull-changelog is not installed")
def test_changelog_is_generated_and_fragments_lint(tmp_path: Path) -> None:
    """CHANGELOG.rst is what antsibull-changelog makes of changelogs/changelog.yaml, and
    every pending fragment is valid (the ``changelog`` sanity test lints them too)."""
    copy = tmp_path / "ansible_collections" / "virt_qga" / "guest_agent"
    shutil.copytree(COLLECTION, copy, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    for args in (["lint"], ["generate"]):
        proc = subprocess.run(["antsibull-changelog", *args], cwd=copy, env=env(), capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("CHANGELOG.rst", "changelogs/changelog.yaml"):
        assert (copy / name).read_text() == (COLLECTION / name).read_text(), (
            f"{name} is stale: run antsibull-changelog generate in the collection")
