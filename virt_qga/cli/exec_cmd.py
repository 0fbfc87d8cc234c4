"""``virt-qga exec``: run a command in the guest, exit with its status."""

from __future__ import annotations

import signal as _signal
import sys
from typing import IO, Any

import click

from virt_qga.cli.common import clean, domain_argument, open_agent
from virt_qga.cli.context import emit, get_ctx
from virt_qga.errors import GuestExecStartError, VirtQgaError
from virt_qga.exitcodes import ExitCode

#: Read at most this much stdin; the real (smaller) limit is checked per transport.
STDIN_READ_CAP = 64 * 1024 * 1024


def _signal_name(num: int) -> str:
    try:
        return _signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _exit_code_for(exc: VirtQgaError) -> int:
    """exec's own failures: 124 timeout, 130 Ctrl-C while waiting (the guest process
    runs on), 127/126 command not found / not executable (as env(1) and the shell do),
    125 anything else (also input the transport cannot carry, e.g. too much stdin).
    Malformed input never gets here: it exits 2 before the agent is opened."""
    if isinstance(exc, GuestExecStartError):
        return int(ExitCode.EXEC_NOT_FOUND if exc.not_found else ExitCode.EXEC_CANNOT_RUN)
    if exc.exit_code in (ExitCode.EXEC_TIMEOUT, ExitCode.INTERRUPTED):
        return int(exc.exit_code)
    return int(ExitCode.EXEC_FAILED)


def _read_stdin(source: str) -> bytes:
    stream: IO[bytes]
    if source == "-":
        stream = sys.stdin.buffer
        return stream.read(STDIN_READ_CAP + 1)
    try:
        with open(source, "rb") as fh:
            return fh.read(STDIN_READ_CAP + 1)
    except OSError as exc:
        from virt_qga.errors import BadInputError

        raise BadInputError(f"cannot read --stdin {source}: {exc.strerror}", field="--stdin") from exc


@click.command("exec")
@domain_argument
@click.argument("argv", nargs=-1, required=True, metavar="-- CMD [ARGS]...")
@click.option("--timeout", "timeout", type=click.FloatRange(min=0.01), default=300.0, show_default=True,
              help="Deadline for the guest command, seconds (then exit 124; it keeps running).")
@click.option("--env", "env", multiple=True, metavar="K=V",
              help="Environment for the command (repeatable). Replaces the agent's environment; "
                   "a default PATH is added unless given.")
@click.option("--stdin", "stdin", metavar="FILE|-",
              help="Feed FILE (or our stdin) to the command. It must fit one request: ~140 KiB over "
                   "libvirt 9.0, ~36 MiB over the socket; larger input is refused before sending.")
@click.option("--capture", type=click.Choice(["both", "stdout", "stderr", "merged", "none"]),
              default="both", show_default=True,
              help="Which guest streams to capture (merged: stderr into stdout).")
@click.option("--cwd", metavar="DIR", help="Run in DIR (through /bin/sh in the guest).")
@click.pass_context
def exec_(ctx: click.Context, domain: str, argv: tuple[str, ...], timeout: float, env: tuple[str, ...],
          stdin: str | None, capture: str, cwd: str | None) -> None:
    """Run CMD in DOMAIN and exit with its exit status (128+N for signal N).

    \b
    Guest stdout/stderr are copied to ours as raw bytes. Malformed input (an --env
    without '=', an unreadable --stdin file) exits 2 with nothing sent, own failures
    exit 125, a --timeout exits 124 (the guest process is left running; its pid is printed).
    Output comes back in one agent reply: qemu-ga keeps 16 MiB per stream, and through
    libvirt about 3 MiB in total fits. Example:
      virt-qga exec vm1 -- uname -a
    """
    from virt_qga.workflows import exec as wf

    # Malformed input (--env without '=', an unreadable --stdin file) is bad input:
    # exit 2 with one line, before the agent is even looked up.
    wf.build_command(argv, cwd)
    wf.build_env(env)
    data = _read_stdin(stdin) if stdin is not None else None
    try:
        agent = open_agent(domain)
        result = wf.run(agent, list(argv), timeout=timeout, env=list(env), stdin=data,
                        capture=capture, cwd=cwd)
    except VirtQgaError as exc:
        exc.exit_code = ExitCode(_exit_code_for(exc))
        raise

    as_json = get_ctx().json
    for warning in result.warnings:
        click.echo(f"virt-qga: warning: {warning}", err=True)
    if result.signal is not None:
        click.echo(f"virt-qga: guest command killed by {_signal_name(result.signal)} "
                   f"(signal {result.signal}); exit {result.status}", err=True)
    if as_json:
        doc: dict[str, Any] = {"domain": domain, "command": list(argv), **result.to_dict()}
        emit(doc)
    else:
        if result.stdout:
            sys.stdout.flush()
            sys.stdout.buffer.write(result.stdout)
            sys.stdout.buffer.flush()
        if result.stderr:
            sys.stderr.flush()
            sys.stderr.buffer.write(result.stderr)
            sys.stderr.buffer.flush()
    if get_ctx().verbosity > 0:
        click.echo(f"virt-qga: pid {result.pid} {clean(argv[0])}: status {result.status} in "
                   f"{result.duration * 1000:.1f} ms ({result.polls} polls)", err=True)
    ctx.exit(result.status)
