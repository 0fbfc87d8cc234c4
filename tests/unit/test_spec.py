"""The spec: generator output against the schema, argument and reply validation.

Pure Python: no libvirt, no guest. The schema file is only needed for the tests that
re-run the generator; they skip (with the reason) when it is absent.
"""

from __future__ import annotations

import inspect
import json
import re
import shutil
import subprocess
import sys
import timeit
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from virt_qga._commands import GeneratedCommands
from virt_qga.errors import BadInputError, ProtocolError
from virt_qga.spec import Spec, get_spec, load_spec

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO.parent / "shared" / "seed" / "qga-qapi-schema.txt"
sys.path.insert(0, str(REPO / "tools"))
import gen_spec  # noqa: E402

needs_schema = pytest.mark.skipif(not SCHEMA.exists(), reason=f"schema not found at {SCHEMA}")


@pytest.fixture(scope="module")
def spec() -> Spec:
    return get_spec()


@pytest.fixture(scope="module")
def schema_text() -> str:
    if not SCHEMA.exists():
        pytest.skip(f"schema not found at {SCHEMA}")
    return SCHEMA.read_text()


EXPECTED_METHODS = sorted([
    "exec", "exec_status", "file_close", "file_flush", "file_open", "file_read", "file_seek",
    "file_write", "fsfreeze_freeze", "fsfreeze_freeze_list", "fsfreeze_status", "fsfreeze_thaw",
    "fstrim", "get_cpustats", "get_devices", "get_disks", "get_diskstats", "get_fsinfo",
    "get_host_name", "get_memory_block_info", "get_memory_blocks", "get_osinfo", "get_time",
    "get_timezone", "get_users", "get_vcpus", "info", "network_get_interfaces", "ping",
    "set_memory_blocks", "set_time", "set_user_password", "set_vcpus", "shutdown",
    "ssh_add_authorized_keys", "ssh_get_authorized_keys", "ssh_remove_authorized_keys",
    "suspend_disk", "suspend_hybrid", "suspend_ram", "sync", "sync_delimited",
])  # fmt: skip


# ---------------------------------------------------------------------------
# The scanner and the generated data, checked against the schema text itself
# ---------------------------------------------------------------------------


@needs_schema
def test_scanner_finds_every_definition(schema_text: str) -> None:
    defs = gen_spec.scan(schema_text)
    by_meta: dict[str, list[str]] = {}
    for d in defs:
        by_meta.setdefault(d.meta, []).append(d.expr[d.meta] if d.meta != "pragma" else "")
    # Independent count: every "{ 'kind': 'Name'" in the text is a definition here.
    for kind in ("command", "struct", "enum", "union", "alternate"):
        names = re.findall(r"\{\s*'" + kind + r"'\s*:\s*'([\w-]+)'", schema_text)
        assert sorted(by_meta[kind]) == sorted(names), kind
    assert len(by_meta["command"]) == 42
    assert (len(by_meta["struct"]), len(by_meta["enum"]), len(by_meta["union"]),
            len(by_meta["alternate"]), len(by_meta["pragma"])) == (32, 8, 3, 2, 2)


def test_scanner_handles_comments_with_braces_and_quotes() -> None:
    text = (
        "# leading comment with { braces } and 'quotes' "
        "## # @Fake: # # not a definition: { 'command': 'guest-fake' } # # Since: 9.9 ## "
        "## # @guest-real: # # Since: 1.2 ## { 'command': 'guest-real', 'data': { '*x': 'int' } } "
        "# free comment { 'oops' ] "
        "{ 'pragma': { # a comment with 'quotes' and {braces} 'doc-required': true } } "
        "## # @E: # # @a: first # # @b: second (since 2.0) # # Since: 1.0 ## "
        "{ 'enum': 'E', 'data': [ 'a', { 'name': 'b', 'if': 'CONFIG_X' } ] }"
    )
    defs = gen_spec.scan(text)
    assert [(d.meta, d.expr[d.meta]) for d in defs[:1]] == [("command", "guest-real")]
    assert defs[1].expr == {"pragma": {"doc-required": True}}
    assert gen_spec.parse_doc(defs[0].doc).since == "1.2"
    info = gen_spec.parse_doc(defs[2].doc)
    assert (info.name, info.since, info.member_since) == ("E", "1.0", {"b": "2.0"})


def test_scanner_rejects_broken_definitions() -> None:
    with pytest.raises(gen_spec.SchemaError):
        gen_spec.scan("{ 'command': 'guest-x', 'data': { 'a': 'int' }")  # never closes
    with pytest.raises(gen_spec.SchemaError):
        gen_spec.scan("{ 'command': 'guest-x', 'data': { 'a' 'int' } }")  # not a literal


def test_spec_counts(spec: Spec) -> None:
    assert len(spec.commands) == 42
    assert len(spec.structs) == 32 and len(spec.enums) == 8
    assert len(spec.unions) == 3 and len(spec.alternates) == 2


def test_guest_exec_arguments(spec: Spec) -> None:
    cmd = spec.command("guest-exec")
    got = [(m.name, m.type, m.optional) for m in cmd.arg_members]
    assert got == [
        ("path", "str", False),
        ("arg", ["str"], True),
        ("env", ["str"], True),
        ("input-data", "str", True),
        ("capture-output", "GuestExecCaptureOutput", True),
    ]
    assert cmd.returns == "GuestExec" and cmd.since == "2.5" and cmd.success_response


def test_alternates(spec: Spec) -> None:
    whence = spec.alternates["GuestFileWhence"]
    assert [(m["name"], m["type"]) for m in whence["data"]] == [("value", "int"), ("name", "QGASeek")]
    assert spec.enum_values("QGASeek") == ("set", "cur", "end")
    capture = spec.alternates["GuestExecCaptureOutput"]
    assert [(m["name"], m["type"]) for m in capture["data"]] == [
        ("flag", "bool"), ("mode", "GuestExecCaptureOutputMode")]
    modes = spec.enums["GuestExecCaptureOutputMode"]["values"]
    assert [v["name"] for v in modes] == ["none", "stdout", "stderr", "separated", "merged"]
    assert modes[-1]["if"] == {"not": "CONFIG_WIN32"}


def test_returns_and_success_response(spec: Spec) -> None:
    assert spec.command("guest-set-vcpus").returns == "int"
    assert spec.command("guest-get-fsinfo").returns == ["GuestFilesystemInfo"]
    assert spec.command("guest-ping").returns is None
    no_reply = sorted(n for n, c in spec.commands.items() if not c.success_response)
    assert no_reply == ["guest-shutdown", "guest-suspend-disk", "guest-suspend-hybrid",
                        "guest-suspend-ram"]


def test_since_versions(spec: Spec) -> None:
    assert spec.command("guest-sync").since == "0.15.0"
    assert spec.command("guest-sync-delimited").since == "1.1"
    assert spec.command("guest-get-osinfo").since == "2.10"
    assert spec.command("guest-get-cpustats").since == "7.1"
    assert spec.command("guest-ssh-add-authorized-keys").since == "5.2"
    assert all(c.since for c in spec.commands.values())
    fs = {m["name"]: m["since"] for m in spec.structs["GuestFilesystemInfo"]["members"]}
    assert fs["used-bytes"] == "3.0" and fs["total-bytes"] == "3.0" and fs["name"] is None
    bus = {v["name"]: v["since"] for v in spec.enums["GuestDiskBusType"]["values"]}
    assert bus["ide"] is None and bus["unknown"] == "2.4" and bus["nvme"] == "7.1"
    # "(since Linux 2.6.11)" is a kernel version, not a qemu-ga one: not recorded.
    cpu = {m["name"]: m["since"] for m in spec.structs["GuestLinuxCpuStats"]["members"]}
    assert cpu["steal"] is None


def test_conditions_and_features(spec: Spec) -> None:
    conditional = sorted(n for n, c in spec.commands.items() if c.condition)
    assert conditional == ["guest-ssh-add-authorized-keys", "guest-ssh-get-authorized-keys",
                           "guest-ssh-remove-authorized-keys"]
    assert spec.command("guest-ssh-get-authorized-keys").condition == "CONFIG_POSIX"
    assert not any(c.deprecated for c in spec.commands.values())


def test_json_is_definitions_only() -> None:
    text = (REPO / "virt_qga" / "spec" / "qga.json").read_text()
    for prose in ("Echo back a unique integer value", "randomly generated", "fopen()",
                  "os-release(5)", "Returns:"):
        assert prose not in text


@needs_schema
def test_generated_files_are_up_to_date() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "gen_spec.py"), "--check"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr


@needs_schema
def test_check_mode_detects_a_stale_output(tmp_path: Path, schema_text: str) -> None:
    changed = schema_text.replace("{ 'command': 'guest-get-time', 'returns': 'int' }",
                                  "{ 'command': 'guest-get-time', 'returns': 'number' }")
    assert changed != schema_text
    (tmp_path / "schema.txt").write_text(changed)
    before = {p: p.read_bytes() for p in gen_spec.build(SCHEMA)}
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "gen_spec.py"),
                           str(tmp_path / "schema.txt"), "--check"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1
    assert "qga.json" in proc.stderr
    assert {p: p.read_bytes() for p in before} == before  # --check never writes


@needs_schema
def test_generation_is_deterministic() -> None:
    assert gen_spec.build(SCHEMA) == gen_spec.build(SCHEMA)


def test_spec_loads_without_the_schema_file() -> None:
    text = (REPO / "virt_qga" / "spec" / "qga.json").read_text()
    fresh = load_spec(text)
    assert fresh.commands.keys() == get_spec().commands.keys()
    assert get_spec() is get_spec()


# ---------------------------------------------------------------------------
# Generated methods
# ---------------------------------------------------------------------------


class Recorder(GeneratedCommands):
    """Records what the generated methods hand to ``_call`` (the seam the real
    GuestAgent overrides), and answers from a table."""

    def __init__(self, answers: dict[str, Any] | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answers = answers or {}

    def _call(self, command: str, args: dict[str, Any]) -> Any:
        self.calls.append((command, args))
        return self.answers.get(command)


def test_one_method_per_command(spec: Spec) -> None:
    methods = sorted(n for n, v in vars(GeneratedCommands).items()
                     if callable(v) and not n.startswith("_"))
    assert methods == EXPECTED_METHODS
    assert sorted(c.method_name for c in spec.commands.values()) == EXPECTED_METHODS


def test_method_signatures_and_wire_names() -> None:
    sig = inspect.signature(GeneratedCommands.file_open)
    assert list(sig.parameters) == ["self", "path", "mode"]
    assert sig.parameters["mode"].kind is inspect.Parameter.KEYWORD_ONLY
    assert sig.parameters["mode"].default is None
    r = Recorder({"guest-exec": {"pid": 7}})
    assert r.exec("/bin/true", arg=["-x"], input_data="aGk=", capture_output="merged") == {"pid": 7}
    assert r.calls[-1] == ("guest-exec", {"path": "/bin/true", "arg": ["-x"], "env": None,
                                          "input-data": "aGk=", "capture-output": "merged"})
    r.ping()
    assert r.calls[-1] == ("guest-ping", {})


def test_method_docstrings() -> None:
    doc = GeneratedCommands.file_open.__doc__ or ""
    assert "since qemu-ga 0.15.0" in doc and "``guest-file-open``" in doc
    assert "no response on success" in (GeneratedCommands.shutdown.__doc__ or "")
    assert "CONFIG_POSIX" in (GeneratedCommands.ssh_add_authorized_keys.__doc__ or "")
    for name in EXPECTED_METHODS:
        assert getattr(GeneratedCommands, name).__doc__


@needs_schema
def test_summaries_are_not_copied_from_the_schema(schema_text: str) -> None:
    flat = re.sub(r"\s*#\s*", " ", schema_text)
    from summaries import SUMMARIES

    for cmd, line in SUMMARIES.items():
        assert line.rstrip(".") not in flat, cmd


# ---------------------------------------------------------------------------
# Argument validation
# ---------------------------------------------------------------------------


def bad_args(spec: Spec, command: str, args: Any) -> BadInputError:
    with pytest.raises(BadInputError) as info:
        spec.validate_args(command, args)
    err = info.value
    assert err.command == command and command in str(err)
    return err


def test_valid_args_are_cleaned(spec: Spec) -> None:
    assert spec.validate_args("guest-file-open", {"path": "/etc/hostname", "mode": None}) == {
        "path": "/etc/hostname"}
    assert spec.validate_args("guest-ping", None) == {}
    assert spec.validate_args("guest-exec", {"path": "ls", "arg": ("-l",)}) == {
        "path": "ls", "arg": ["-l"]}
    args = {"vcpus": [{"logical-id": 1, "online": False, "can-offline": None}]}
    assert spec.validate_args("guest-set-vcpus", args) == {
        "vcpus": [{"logical-id": 1, "online": False}]}


def test_wrong_type(spec: Spec) -> None:
    err = bad_args(spec, "guest-file-open", {"path": 5})
    assert err.field == "path" and "expected str, got int" in str(err)


def test_required_missing(spec: Spec) -> None:
    err = bad_args(spec, "guest-file-open", {"mode": "r"})
    assert err.field == "path" and "required argument missing (expected str)" in str(err)
    err = bad_args(spec, "guest-file-open", {"path": None})
    assert err.field == "path"


def test_unknown_field(spec: Spec) -> None:
    err = bad_args(spec, "guest-file-open", {"path": "/x", "modee": "r"})
    assert err.field == "modee"
    assert "unknown argument" in str(err) and "did you mean 'mode'" in str(err)
    err = bad_args(spec, "guest-ping", {"verbose": True})
    assert "takes none" in str(err)


def test_enum_lists_allowed_values(spec: Spec) -> None:
    err = bad_args(spec, "guest-exec", {"path": "ls", "capture-output": "both"})
    assert err.field == "capture-output"
    assert "'none', 'stdout', 'stderr', 'separated', 'merged'" in str(err)
    assert "got 'both'" in str(err)


def test_alternates_in_args(spec: Spec) -> None:
    for whence in (0, 2, "set", "cur", "end"):
        spec.validate_args("guest-file-seek", {"handle": 1, "offset": 0, "whence": whence})
    for capture in (True, False, "none", "merged"):
        spec.validate_args("guest-exec", {"path": "ls", "capture-output": capture})
    err = bad_args(spec, "guest-file-seek", {"handle": 1, "offset": 0, "whence": "start"})
    assert err.field == "whence" and "expected int or one of 'set', 'cur', 'end'" in str(err)
    err = bad_args(spec, "guest-file-seek", {"handle": 1, "offset": 0, "whence": 1.5})
    assert "got float" in str(err)
    err = bad_args(spec, "guest-exec", {"path": "ls", "capture-output": 1})
    assert "expected bool or one of" in str(err)


def test_int_ranges_and_bool_is_not_int(spec: Spec) -> None:
    err = bad_args(spec, "guest-set-memory-blocks",
                   {"mem-blks": [{"phys-index": -1, "online": True}]})
    assert err.field == "mem-blks[0].phys-index" and "0..18446744073709551615 (uint64)" in str(err)
    err = bad_args(spec, "guest-file-read", {"handle": 2**63})
    assert "int in range" in str(err)
    spec.validate_args("guest-file-read", {"handle": 2**63 - 1})
    err = bad_args(spec, "guest-file-read", {"handle": True})
    assert "expected int, got bool" in str(err)
    err = bad_args(spec, "guest-sync", {"id": 1.0})
    assert "got float" in str(err)


def test_lists_and_nested_structs(spec: Spec) -> None:
    err = bad_args(spec, "guest-exec", {"path": "ls", "arg": "-l"})
    assert err.field == "arg" and "expected list of str, got str" in str(err)
    err = bad_args(spec, "guest-exec", {"path": "ls", "arg": ["-l", 3]})
    assert err.field == "arg[1]"
    err = bad_args(spec, "guest-set-vcpus", {"vcpus": [{"logical-id": 0, "online": True}, 5]})
    assert err.field == "vcpus[1]" and "expected dict (GuestLogicalProcessor), got int" in str(err)
    err = bad_args(spec, "guest-set-vcpus", {"vcpus": [{"logical-id": 0}]})
    assert err.field == "vcpus[0].online" and "required member missing" in str(err)
    err = bad_args(spec, "guest-set-vcpus", {"vcpus": [{"logical-id": 0, "online": 1, "x": 1}]})
    assert err.field == "vcpus[0].online"
    err = bad_args(spec, "guest-set-vcpus", {"vcpus": [{"logical-id": 0, "online": True, "x": 1}]})
    assert err.field == "vcpus[0].x" and "GuestLogicalProcessor has: logical-id" in str(err)


def test_args_must_be_a_dict(spec: Spec) -> None:
    err = bad_args(spec, "guest-ping", ["x"])
    assert "expected arguments as a dict, got list" in str(err)
    err = bad_args(spec, "guest-ping", {1: 2})
    assert "names must be str" in str(err)


def test_unknown_command_suggests(spec: Spec) -> None:
    for wrong, right in (("guest-file-opn", "guest-file-open"), ("get-osinfo", "guest-get-osinfo"),
                         ("get_osinfo", "guest-get-osinfo")):
        with pytest.raises(BadInputError, match=f"unknown guest agent command '{wrong}' "
                                                f"\\(did you mean '{right}'\\?\\)"):
            spec.command(wrong)
    with pytest.raises(BadInputError, match=r"unknown guest agent command 'frobnicate'$"):
        spec.validate_args("frobnicate", {})
    with pytest.raises(BadInputError):
        spec.validate_reply("frobnicate", {})


def test_validate_args_is_fast(spec: Spec) -> None:
    args = {"path": "/etc/hostname", "mode": "r"}
    spec.validate_args("guest-file-open", args)
    n = 2000
    per_call = min(timeit.repeat(lambda: spec.validate_args("guest-file-open", args),
                                 number=n, repeat=3)) / n
    assert per_call < 20e-6, f"{per_call * 1e6:.1f} us per call"


# ---------------------------------------------------------------------------
# Reply validation
# ---------------------------------------------------------------------------

PCI = {"domain": 0, "bus": 0, "slot": 4, "function": 0}
SAMPLE_REPLIES: dict[str, Any] = {
    "guest-get-osinfo": {
        "name": "Debian GNU/Linux", "kernel-release": "6.1.0-26-amd64",
        "version": "12 (bookworm)", "pretty-name": "Debian GNU/Linux 12 (bookworm)",
        "version-id": "12", "kernel-version": "#1 SMP PREEMPT_DYNAMIC Debian 6.1.112-1",
        "machine": "x86_64", "id": "debian",
    },
    "guest-get-fsinfo": [
        {"name": "vda1", "mountpoint": "/", "type": "ext4", "used-bytes": 1874403328,
         "total-bytes": 8318783488,
         "disk": [{"pci-controller": PCI, "bus-type": "virtio", "bus": 0, "target": 0,
                   "unit": 0, "serial": "root-disk", "dev": "/dev/vda1"}]},
        {"name": "vda15", "mountpoint": "/boot/efi", "type": "vfat", "used-bytes": 6146560,
         "total-bytes": 129718272,
         "disk": [{"pci-controller": PCI, "bus-type": "virtio", "bus": 0, "target": 0,
                   "unit": 0, "dev": "/dev/vda15"}]},
    ],
    "guest-get-vcpus": [
        {"online": True, "can-offline": False, "logical-id": 0},
        {"online": True, "can-offline": True, "logical-id": 1},
        {"online": False, "can-offline": True, "logical-id": 2},
    ],
    "guest-network-get-interfaces": [
        {"name": "lo", "ip-addresses": [
            {"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8},
            {"ip-address-type": "ipv6", "ip-address": "::1", "prefix": 128}],
         "statistics": {"tx-packets": 12, "tx-errs": 0, "rx-bytes": 1064, "rx-dropped": 0,
                        "rx-packets": 12, "rx-errs": 0, "tx-bytes": 1064, "tx-dropped": 0},
         "hardware-address": "00:00:00:00:00:00"},
        {"name": "enp1s0", "hardware-address": "52:54:00:12:34:56", "ip-addresses": [
            {"ip-address-type": "ipv4", "ip-address": "192.168.122.31", "prefix": 24}]},
    ],
    "guest-info": {"version": "7.2.15", "supported_commands": [
        {"enabled": True, "name": "guest-get-osinfo", "success-response": True},
        {"enabled": True, "name": "guest-shutdown", "success-response": False},
        {"enabled": False, "name": "guest-exec", "success-response": True}]},
    "guest-exec-status": {"exitcode": 0, "out-data": "aGVsbG8K", "exited": True},
    "guest-get-disks": [
        {"name": "/dev/nvme0n1", "partition": False, "dependencies": [],
         "address": {"pci-controller": PCI, "bus-type": "nvme", "bus": 0, "target": 0,
                     "unit": 0, "dev": "/dev/nvme0n1"},
         "smart": {"type": "nvme", **{k: 0 for k in (
             "critical-warning", "temperature", "available-spare", "available-spare-threshold",
             "percentage-used")}, **{f"{k}-{h}": 1 for k in (
             "data-units-read", "data-units-written", "host-read-commands", "host-write-commands",
             "controller-busy-time", "power-cycles", "power-on-hours", "unsafe-shutdowns",
             "media-errors", "number-of-error-log-entries") for h in ("lo", "hi")}}},
        {"name": "/dev/sda", "partition": False, "smart": {"type": "scsi"}},
    ],
    "guest-get-cpustats": [{"type": "linux", "cpu": 0, "user": 1, "nice": 0, "system": 2,
                            "idle": 100, "iowait": 3}],
    "guest-get-users": [{"user": "root", "login-time": 1700000000.5}],
    "guest-fsfreeze-status": "thawed",
    "guest-set-vcpus": 2,
    "guest-ping": {},
}


@pytest.mark.parametrize("command", sorted(SAMPLE_REPLIES))
def test_valid_replies_pass_unchanged(spec: Spec, command: str) -> None:
    value = SAMPLE_REPLIES[command]
    assert spec.validate_reply(command, value) is value


def test_replies_tolerate_new_members_and_enum_values(spec: Spec) -> None:
    fs = json.loads(json.dumps(SAMPLE_REPLIES["guest-get-fsinfo"]))
    fs[0]["quota"] = {"x": 1}  # a member from a newer agent
    fs[0]["disk"][0]["bus-type"] = "cxl"  # an enum value from a newer agent
    spec.validate_reply("guest-get-fsinfo", fs)
    spec.validate_reply("guest-fsfreeze-status", "partially-frozen")
    disks = [{"name": "/dev/x", "partition": False, "smart": {"type": "future-bus", "y": 1}}]
    spec.validate_reply("guest-get-disks", disks)


def bad_reply(spec: Spec, command: str, value: Any) -> str:
    with pytest.raises(ProtocolError) as info:
        spec.validate_reply(command, value)
    assert info.value.command == command
    return str(info.value)


def test_malformed_replies(spec: Spec) -> None:
    fs = json.loads(json.dumps(SAMPLE_REPLIES["guest-get-fsinfo"]))
    fs[0]["disk"].append(dict(fs[0]["disk"][0], **{"bus-type": 3}))
    assert bad_reply(spec, "guest-get-fsinfo", fs) == (
        "guest-get-fsinfo: reply[0].disk[1].bus-type: expected str, got int")
    assert bad_reply(spec, "guest-get-osinfo", ["x"]) == (
        "guest-get-osinfo: reply: expected dict (GuestOSInfo), got list")
    assert "reply.exited: required member missing (expected bool)" in bad_reply(
        spec, "guest-exec-status", {"exitcode": 0})
    assert "reply.exitcode: expected int, got str" in bad_reply(
        spec, "guest-exec-status", {"exited": True, "exitcode": "0"})
    assert "reply[1].logical-id: expected int, got bool" in bad_reply(
        spec, "guest-get-vcpus", [{"logical-id": 0, "online": True},
                                  {"logical-id": True, "online": True}])
    assert "reply[0].ip-addresses[0].prefix" in bad_reply(
        spec, "guest-network-get-interfaces",
        [{"name": "lo", "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "1.2.3.4",
                                          "prefix": None}]}])
    assert "reply.supported_commands: expected list of dict" in bad_reply(
        spec, "guest-info", {"version": "9.0", "supported_commands": {"a": 1}})
    assert "reply[0].statistics.rx-bytes: expected int in range" in bad_reply(
        spec, "guest-network-get-interfaces",
        [{"name": "lo", "statistics": dict(
            SAMPLE_REPLIES["guest-network-get-interfaces"][0]["statistics"], **{"rx-bytes": -5})}])
    assert "reply: expected int, got NoneType" not in bad_reply(spec, "guest-set-vcpus", None)
    assert bad_reply(spec, "guest-set-vcpus", None) == "guest-set-vcpus: reply: expected int, got null"
    assert "reply[0].cpu: required member missing" in bad_reply(
        spec, "guest-get-cpustats", [{"type": "linux", "user": 1, "nice": 0, "system": 2, "idle": 1}])
    assert "reply: expected an empty dict, got list" in bad_reply(spec, "guest-ping", [])


# ---------------------------------------------------------------------------
# JSON Schema export agrees with the validators on the samples
# ---------------------------------------------------------------------------


def test_json_schema_export_agrees_with_samples(spec: Spec) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    for command, value in SAMPLE_REPLIES.items():
        returns = spec.command(command).returns
        if returns is None:
            continue
        jsonschema.validate(value, spec.type_schema(returns, reply=True))
    schema = spec.args_schema("guest-file-seek")
    jsonschema.validate({"handle": 1, "offset": 0, "whence": "cur"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"handle": 1, "offset": 0, "whence": "start"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"handle": 1, "offset": 0, "whence": 0, "x": 1}, schema)


# ---------------------------------------------------------------------------
# Property: nothing but BadInputError / ProtocolError ever escapes
# ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True) | st.text(max_size=12)
    | st.sampled_from(["set", "merged", "nvme", "linux", "pci", "ipv4", "thawed", "type"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["type", "name", "path", "logical-id", "online", "vcpus",
                                       "disk", "bus-type", "handle", "whence", "id", "x"])
                      | st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)
COMMANDS = sorted(get_spec().commands)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(command=st.sampled_from(COMMANDS), value=json_values)
def test_random_values_only_raise_our_errors(command: str, value: Any) -> None:
    spec = get_spec()
    for fn in (spec.validate_args, spec.validate_reply):
        try:
            fn(command, value)
        except (BadInputError, ProtocolError):
            pass


@settings(max_examples=200, deadline=None)
@given(command=st.sampled_from(COMMANDS), data=st.data())
def test_random_args_dicts_only_raise_bad_input(command: str, data: st.DataObject) -> None:
    spec = get_spec()
    names = [m.name for m in spec.command(command).arg_members] or ["x"]
    args = data.draw(st.dictionaries(st.sampled_from(names), json_values, max_size=len(names)))
    try:
        clean = spec.validate_args(command, args)
    except BadInputError as e:
        assert e.field is None or e.field.split("[")[0].split(".")[0] in names
    else:
        assert None not in clean.values()
        json.dumps(clean)


# ---------------------------------------------------------------------------
# Static checks of the generated code
# ---------------------------------------------------------------------------


def test_mypy_strict_on_generated_code() -> None:
    if shutil.which("mypy") is None and not _has_module("mypy"):
        pytest.skip("mypy is not installed (pip install -e .[test])")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         "virt_qga/types.py", "virt_qga/_commands.py", "virt_qga/spec"],
        capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_on_generated_code() -> None:
    if not _has_module("ruff"):
        pytest.skip("ruff is not installed (pip install -e .[test])")
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "virt_qga/types.py", "virt_qga/_commands.py",
         "virt_qga/spec", "tools/gen_spec.py", "tools/summaries.py"],
        capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
