"""The ``virt-qga`` root command.

Subcommands live in their own modules and are imported only when invoked, so that
``virt-qga --help`` stays fast (libvirt, rich and the spec are never loaded for it).
Start-up is budgeted (docs/benchmarks.md, "Start-up"; tests/unit/test_import_budget.py):
nothing heavy is imported at module level here, and logging is set up only for the
commands that can log (:data:`SILENT_COMMANDS` cannot).
Every failure ends here: a :class:`~virt_qga.errors.VirtQgaError` becomes one line on
stderr (and, with ``--json``, an error document on stdout) and its exit code.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any

import click

from virt_qga.cli.context import CliContext
from virt_qga.exitcodes import MEANINGS, ExitCode

#: command name -> "module:attribute". Order is the order shown in --help.
COMMANDS: dict[str, str] = {
    "ping": "virt_qga.cli.agent_cmds:ping",
    "info": "virt_qga.cli.agent_cmds:info",
    "call": "virt_qga.cli.agent_cmds:call",
    "snapshot": "virt_qga.cli.snapshot:snapshot",
    "recover": "virt_qga.cli.snapshot:recover",
    "backup": "virt_qga.cli.backup:backup",
    "restore": "virt_qga.cli.restore:restore",
    "backup-verify": "virt_qga.cli.restore:backup_verify",
    "backup-list": "virt_qga.cli.restore:backup_list",
    "backup-prune": "virt_qga.cli.backup:backup_prune",
    "backup-schedule": "virt_qga.cli.schedule:backup_schedule",
    "exec": "virt_qga.cli.exec_cmd:exec_",
    "cp": "virt_qga.cli.files:cp",
    "osinfo": "virt_qga.cli.guest:osinfo",
    "hostname": "virt_qga.cli.guest:hostname",
    "users": "virt_qga.cli.guest:users",
    "timezone": "virt_qga.cli.guest:timezone",
    "time": "virt_qga.cli.guest:time_",
    "net": "virt_qga.cli.guest:net",
    "fsinfo": "virt_qga.cli.guest:fsinfo",
    "disks": "virt_qga.cli.guest:disks",
    "diskstats": "virt_qga.cli.guest:diskstats",
    "cpustats": "virt_qga.cli.guest:cpustats",
    "devices": "virt_qga.cli.guest:devices",
    "fstrim": "virt_qga.cli.guest:fstrim",
    "password": "virt_qga.cli.guest:password",
    "ssh-keys": "virt_qga.cli.guest:ssh_keys",
    "shutdown": "virt_qga.cli.power:shutdown",
    "suspend": "virt_qga.cli.power:suspend",
    "vcpus": "virt_qga.cli.vcpus:vcpus",
    "memory": "virt_qga.cli.memory:memory",
    "lab": "virt_qga.cli.lab:lab",
}

#: Commands whose code never logs: their import graph has no ``logging`` (a test
#: checks it), so the root group does not pay ~5 ms to set it up for them unless
#: ``-v`` asks. Every other command gets logging configured before it runs.
SILENT_COMMANDS = frozenset({
    "ping", "info", "call", "osinfo", "hostname", "users", "timezone", "time", "net", "fsinfo",
    "disks", "diskstats", "cpustats",
})

#: Short help per command, so --help needs no imports.
SHORT_HELP: dict[str, str] = {
    "ping": "Check that the guest agent answers.",
    "info": "Agent version and the commands it supports.",
    "call": "Run any guest agent command, validated against the schema.",
    "snapshot": "Freeze, snapshot and thaw: a consistent snapshot.",
    "recover": "Thaw and clean up after a run that died.",
    "backup": "Full and incremental backups of one or many domains.",
    "restore": "Restore a backup into standalone images, or as a new domain.",
    "backup-verify": "Check stored backups against their manifests and chain links.",
    "backup-list": "List the backups in a store: level, chain, sizes, verified.",
    "backup-prune": "Apply retention rules (keep-last/daily/weekly/...) to a backup store.",
    "backup-schedule": "Write a systemd timer (or print a crontab line) for nightly backups.",
    "exec": "Run a command in the guest and exit with its status.",
    "cp": "Copy a file into or out of the guest.",
    "osinfo": "Guest operating system.",
    "hostname": "Guest host name.",
    "users": "Users logged in to the guest.",
    "timezone": "Guest time zone.",
    "time": "Show, set or sync the guest clock.",
    "net": "Guest network interfaces, addresses and counters.",
    "fsinfo": "Guest mounted filesystems.",
    "disks": "Guest block devices.",
    "diskstats": "Guest disk I/O counters.",
    "cpustats": "Guest CPU time counters.",
    "devices": "Guest devices and drivers (Windows guests).",
    "fstrim": "Discard unused blocks in guest filesystems.",
    "password": "Set a guest user's password (read from stdin or a file).",
    "ssh-keys": "List, add, remove or set a guest user's SSH keys.",
    "shutdown": "Power down, halt or reboot the guest, and confirm it.",
    "suspend": "Suspend the guest to disk, RAM or both.",
    "vcpus": "Show or change the guest's vCPUs (hot-plug/unplug).",
    "memory": "Show, plug or unplug guest memory (DIMMs, virtio-mem).",
    "lab": "Disposable libvirt/QEMU guests with a real agent, for tests and demos.",
}


class Stopped(Exception):
    """A signal ended the command, after its cleanup ran (exit 130).

    The root group turns the command's ``KeyboardInterrupt`` (or
    :class:`virt_qga.errors.Interrupted`, which knows the signal) into this, so that it
    passes click's ``main`` untouched: click would print a blank line first (meant to
    close a terminal's ``^C`` echo, noise after a SIGTERM) and lose which signal it was.
    """

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise Stopped(str(getattr(exc, "signal_name", "SIGINT"))) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        import importlib.util  # --help only

        return [n for n in COMMANDS if importlib.util.find_spec(COMMANDS[n].split(":")[0]) is not None]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # the module exists but needs something missing
                raise
            return None
        cmd = getattr(mod, attr)
        assert isinstance(cmd, click.Command)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(n, SHORT_HELP.get(n, "")) for n in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Exit codes"):
            formatter.write_dl([(str(int(c)), m) for c, m in MEANINGS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--connect", "connect", metavar="URI", envvar="VIRT_QGA_CONNECT",
              help="libvirt URI (default: $VIRT_QGA_CONNECT, then libvirt's default).")
@click.option("--socket", "socket_path", metavar="PATH", envvar="VIRT_QGA_SOCKET",
              help="Talk to the agent's channel socket directly instead of libvirt; "
                   "DOMAIN is then only a label.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              envvar="VIRT_QGA_TIMEOUT", help="Deadline per agent command, seconds.")
@click.option("-v", "--verbose", count=True, help="More logging; -v shows tracebacks.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.version_option(package_name="virt-qga", prog_name="virt-qga")
@click.pass_context
def cli(ctx: click.Context, connect: str | None, socket_path: str | None, as_json: bool,
        timeout: float, verbose: int, quiet: bool) -> None:
    """Drive the QEMU guest agent of libvirt domains (or plain QEMU guests).

    \b
    virt-qga [--connect URI | --socket PATH] [--json] COMMAND DOMAIN ...
    """
    cmdline = click.core.ParameterSource.COMMANDLINE
    if connect and socket_path and ctx.get_parameter_source("socket_path") == cmdline \
            and ctx.get_parameter_source("connect") == cmdline:
        raise click.UsageError("--connect and --socket are mutually exclusive")
    verbosity = -1 if quiet else verbose
    ctx.obj = CliContext(connect=connect, socket=socket_path, json=as_json, timeout=timeout,
                         verbosity=verbosity)
    _state["silent"] = ctx.invoked_subcommand in SILENT_COMMANDS
    if not _state["silent"]:
        import gc

        gc.enable()  # off during start-up when run as the script (virt_qga/cli/entry.py)
    if not _state["silent"] or verbosity > 0:
        _setup_logging(verbosity)


def _setup_logging(verbosity: int) -> None:
    import logging

    level = logging.WARNING if verbosity <= 0 else logging.DEBUG if verbosity > 1 else logging.INFO
    if verbosity < 0:
        level = logging.ERROR
    logging.basicConfig(level=level, stream=sys.stderr, format="virt-qga: %(levelname)s: %(message)s")


def _global_flags(argv: list[str]) -> tuple[bool, bool]:
    """(--json, -v) as seen before any ``--``: needed before click has parsed anything."""
    head = argv[: argv.index("--")] if "--" in argv else argv
    verbose = any(a == "--verbose" or re.fullmatch(r"-v+", a) for a in head)
    return "--json" in head, verbose


def _report(exc_dict: dict[str, Any], message: str, as_json: bool) -> None:
    click.echo(f"virt-qga: error: {message}", err=True)
    if as_json:
        import json

        click.echo(json.dumps({"ok": False, **exc_dict}, indent=2))


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI and turn every outcome into an exit code.

    Run as the program (``argv`` None), a command of :data:`SILENT_COMMANDS` ends with
    ``os._exit`` once stdout and stderr are flushed: such a command holds nothing
    that needs the interpreter's teardown (no atexit handler, file, lock or worker
    thread is left), and skipping it saves ~10 ms per process (docs/benchmarks.md).
    Every other command, and any call from Python, exits through ``sys.exit``.
    """
    code = _run(list(sys.argv[1:] if argv is None else argv))
    if argv is None and _state["silent"]:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BrokenPipeError:
            code = int(ExitCode.FAILED)
        os._exit(code)
    sys.exit(code)


#: Set by the root group: whether the command being run is one of SILENT_COMMANDS.
_state = {"silent": False}


def _run(args: list[str]) -> int:
    from virt_qga.errors import VirtQgaError, set_option_spelling
    from virt_qga.options import cli_flag

    set_option_spelling(cli_flag)  # messages name options as flags: --max-frozen
    as_json, verbose = _global_flags(args)
    try:
        rc = cli.main(args=args, prog_name="virt-qga", standalone_mode=False)
        return rc if isinstance(rc, int) else 0
    except VirtQgaError as exc:
        if verbose:
            import traceback

            traceback.print_exc()
        _report(exc.to_dict(), str(exc), as_json)
        return int(exc.exit_code)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (Stopped, click.Abort, KeyboardInterrupt) as exc:
        # with --json a script still gets its one document (cleanup has run by now)
        msg = f"interrupted by {exc.signal_name}" if isinstance(exc, Stopped) else "interrupted by a signal"
        _report({"error": "Interrupted", "message": msg, "exit_code": 130}, msg, as_json)
        return int(ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        return int(ExitCode.USAGE) if isinstance(exc, click.UsageError) else exc.exit_code
    except BrokenPipeError:
        os._exit(int(ExitCode.FAILED))
    except Exception as exc:
        if verbose:
            import traceback

            traceback.print_exc()
        msg = f"internal error: {type(exc).__name__}: {exc}".replace("\n", " ")
        _report({"error": "InternalError", "message": msg, "exit_code": 1}, msg + " (rerun with -v)",
                as_json)
        return int(ExitCode.FAILED)


if __name__ == "__main__":
    main()
