"""Pure-Python parts of the lab's stacks and guest builder: no lab, no root, no network."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from virt_qga import errors as E
from virt_qga.cli.main import main
from virt_qga.host.vcpus import NEXT_HOTPLUG_AFTER_MISSED_UNPLUG, hotplug_risk
from virt_qga.lab import LabError
from virt_qga.lab.apt import LAB_SUITES, _parse_deb822, _parse_one_line, debian_mirrors, lab_sources
from virt_qga.lab.build import AGENTS, KERNEL_RELEASE
from virt_qga.lab.manager import stack_for
from virt_qga.lab.rootfs import root_key
from virt_qga.lab.stacks import STACKS, RootStackSpec, check_stack
from virt_qga.lab.sysdaemon import kvm_group
from virt_qga.lab.userland import parse_depends, read_elf, resolve_in_tree, stage_binary
from virt_qga.libvirt_errors import map_libvirt_error

TRIXIE_HOST = """\
Types: deb
URIs: http://mirror.example/debian
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: trixie-security
Components: main
"""


def _spec() -> RootStackSpec:
    spec = STACKS["debian13"]
    assert spec is not None
    return spec


# ------------------------------------------------------------------ apt sources


def test_guest_suites_do_not_follow_the_host_release() -> None:
    """A Debian 13 host still gets bookworm (kernel, qemu-ga 7.2) on its own mirror."""
    sources = lab_sources(_parse_deb822(TRIXIE_HOST))
    suites = {(s.uri, s.suite) for s in sources}
    assert ("http://mirror.example/debian", "bookworm") in suites
    assert ("http://mirror.example/debian", "bookworm-updates") in suites
    assert ("http://mirror.example/debian-security", "bookworm-security") in suites
    assert ("http://mirror.example/debian", "trixie") in suites
    assert not any(s.suite.endswith("-backports") for s in sources)


def test_every_pinned_release_is_in_the_lab_lists() -> None:
    needed = {KERNEL_RELEASE, *AGENTS.values(), *(s.release for s in STACKS.values() if s is not None)}
    assert needed <= set(LAB_SUITES)


def test_no_debian_mirror_is_one_line() -> None:
    only_other = _parse_one_line("deb https://packages.example.com/apt cloud-sdk main\n")
    with pytest.raises(LabError, match="no Debian mirror"):
        debian_mirrors(only_other)


def test_parse_depends_takes_first_alternatives() -> None:
    field = "libc6 (>= 2.34), libglib2.0-0t64 (>= 2.80.0), awk | mawk, zlib1g:amd64 (>= 1:1.2)"
    assert parse_depends(field) == ["libc6", "libglib2.0-0t64", "awk", "zlib1g"]


# ------------------------------------------------------------------ ELF


def test_read_elf_of_a_real_binary() -> None:
    info = read_elf(Path(sys.executable).resolve())
    assert info.interpreter and info.interpreter.endswith("ld-linux-x86-64.so.2")
    assert "libc.so.6" in info.needed


def test_read_elf_refuses_other_files(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"#!/bin/sh\n")
    with pytest.raises(LabError, match="not a 64-bit"):
        read_elf(tmp_path / "x")


def test_resolve_in_tree_follows_links_inside_the_tree(tmp_path: Path) -> None:
    (tmp_path / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (tmp_path / "usr/lib/x86_64-linux-gnu/libz.so.1.3").write_text("z")
    (tmp_path / "usr/lib/x86_64-linux-gnu/libz.so.1").symlink_to("libz.so.1.3")
    (tmp_path / "lib").symlink_to("usr/lib")
    (tmp_path / "lib64").mkdir()
    (tmp_path / "lib64/libz.so.1").symlink_to("/lib/x86_64-linux-gnu/libz.so.1")  # absolute: in the tree
    hit = resolve_in_tree(tmp_path, "/lib64/libz.so.1")
    assert hit == tmp_path / "usr/lib/x86_64-linux-gnu/libz.so.1.3"
    assert resolve_in_tree(tmp_path, "/lib/x86_64-linux-gnu/libnope.so") is None


def test_stage_binary_names_what_the_packages_lack(tmp_path: Path) -> None:
    tree, root = tmp_path / "tree", tmp_path / "root"
    (tree / "usr/bin").mkdir(parents=True)
    shutil.copy(Path(sys.executable).resolve(), tree / "usr/bin/py")
    with pytest.raises(LabError, match=r"libc\.so\.6|ld-linux"):
        stage_binary(tree / "usr/bin/py", tree, root)


# ------------------------------------------------------------------ stacks


def test_unknown_stack_and_plain_on_a_root_stack_are_refused() -> None:
    with pytest.raises(LabError, match="unknown lab stack 'debian99'"):
        check_stack("debian99")
    with pytest.raises(LabError, match="plain QEMU guests have no libvirt stack"):
        stack_for(True, "debian13")
    assert stack_for(True, None) == "host" and stack_for(False, "debian13") == "debian13"


def test_root_key_changes_with_every_input() -> None:
    spec = _spec()
    versions = {p: "1.0" for p in spec.packages}
    key = root_key(spec, versions, "1.0.128")
    assert key == root_key(spec, dict(versions), "1.0.128")  # stable
    assert key != root_key(spec, {**versions, "libvirt-daemon": "1.1"}, "1.0.128")
    assert key != root_key(replace(spec, packages=(*spec.packages, "ovmf")), versions, "1.0.128")
    assert key != root_key(replace(spec, qemu_conf=spec.qemu_conf + "#\n"), versions, "1.0.128")
    assert key != root_key(spec, versions, "1.0.140")


def test_system_stack_config_keeps_dac_relabelling_on() -> None:
    conf = dict(
        line.split(" = ", 1) for line in _spec().qemu_conf.splitlines() if " = " in line
    )
    assert conf["user"] == conf["group"] == '"libvirt-qemu"'
    assert conf["dynamic_ownership"] == "1" and conf["remember_owner"] == "1"


def test_kvm_group_joins_libvirt_qemu_to_the_hosts_kvm_gid(tmp_path: Path) -> None:
    group = tmp_path / "group"
    group.write_text("root:x:0:\nkvm:x:102:\nlibvirt-qemu:x:64055:libvirt-qemu\n")
    dev = tmp_path / "kvm"
    dev.write_text("")
    gid = dev.stat().st_gid
    text = kvm_group(group, dev)
    assert f"host-kvm:x:{gid}:libvirt-qemu" in text.splitlines() or any(
        ln.split(":")[2] == str(gid) and "libvirt-qemu" in ln.split(":")[3] for ln in text.splitlines()
    )
    assert kvm_group(group, tmp_path / "no-kvm") == group.read_text()


# ------------------------------------------------------------------ refusal message per QEMU


class _FakeDomain:
    name = "d"

    def __init__(self, version: tuple[int, int, int] | None) -> None:
        self.version = version

    def xml(self, inactive: bool = False) -> Any:
        raise NotImplementedError

    def qmp(self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
        assert command == "query-version"
        if self.version is None:
            raise KeyError(command)
        major, minor, micro = self.version
        return {"qemu": {"major": major, "minor": minor, "micro": micro}, "package": ""}

    def call(self, method: str, *args: Any) -> Any:
        raise NotImplementedError


@pytest.mark.parametrize("version", [(7, 2, 15), (10, 0, 13)])
def test_refusal_names_what_was_measured_for_the_running_qemu(version: tuple[int, int, int]) -> None:
    text = hotplug_risk(_FakeDomain(version))
    assert text == NEXT_HOTPLUG_AFTER_MISSED_UNPLUG[version[:2]]
    assert f"QEMU {version[0]}.{version[1]}" in text


def test_refusal_for_an_unmeasured_or_unknown_qemu_says_so() -> None:
    assert "QEMU 9.2 was not measured" in hotplug_risk(_FakeDomain((9, 2, 0)))
    assert "version here was not measured" in hotplug_risk(_FakeDomain(None))


# ------------------------------------------------------------------ CLI


def test_lab_errors_go_through_the_one_renderer(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--json", "lab", "up", "--plain", "--stack", "debian13"])
    assert info.value.code == 1
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["ok"] is False and doc["error"] == "LabError" and doc["exit_code"] == 1
    assert err.strip() == "virt-qga: error: plain QEMU guests have no libvirt stack; drop --stack debian13"


# ------------------------------------------------------------------ libvirt 11.3's own words


class _LibvirtError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message

    def get_error_code(self) -> int:
        return self.code

    def get_error_message(self) -> str:
        return self.message


#: (code, message) exactly as libvirt 11.3.0 sent them on the debian13 stack.
RECORDED_11_3: list[tuple[int, str, type[E.VirtQgaError]]] = [
    (113, "guest agent command failed: unable to execute QEMU agent command 'guest-file-open': "
          "failed to open file '/nope/x' (mode: 'r'): No such file or directory", E.GuestError),
    (113, "guest agent command failed: unable to execute QEMU agent command 'guest-frobnicate': "
          "The command guest-frobnicate has not been found", E.CommandNotSupportedError),
    (112, "guest agent command timed out: guest agent didn't respond to command within '3' seconds",
     E.AgentTimeoutError),
    (86, "Guest agent is not responding: guest agent didn't respond to synchronization within '3' "
         "seconds", E.AgentNotConnectedError),
]


@pytest.mark.parametrize("code, message, cls", RECORDED_11_3)
def test_libvirt_11_3_agent_errors_map_to_their_class(code: int, message: str, cls: type) -> None:
    err = map_libvirt_error(_LibvirtError(code, message), domain="d", command="guest-ping")
    assert type(err) is cls
    if code == 113:
        assert "guest agent command failed" not in str(err)  # the agent's own text, not libvirt's wrapper
