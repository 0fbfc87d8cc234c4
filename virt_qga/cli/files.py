"""``virt-qga cp``: copy one file into or out of a guest."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import click

from virt_qga.cli.common import clean, open_agent
from virt_qga.cli.context import emit, get_ctx, info, is_tty_stderr
from virt_qga.errors import BadInputError


@dataclass(frozen=True)
class Location:
    """One side of a copy: local (``domain`` None) or in a guest."""

    path: str
    domain: str | None = None

    @property
    def remote(self) -> bool:
        return self.domain is not None

    @property
    def stdio(self) -> bool:
        return self.domain is None and self.path == "-"


def parse_location(arg: str) -> Location:
    """Parse a cp operand (the CLI's ``DOMAIN:PATH`` syntax).

    * ``-``: stdin/stdout.
    * ``DOMAIN:PATH``: in a guest. DOMAIN ends at the first ``:``. With ``--socket``,
      DOMAIN is only a label (any word, e.g. ``vm:/tmp/x``).
    * ``unix:SOCKET:PATH``: in the guest behind the agent socket SOCKET (a socket path
      containing ``:`` needs ``--socket`` instead).
    * anything else is local. As with scp, a ``:`` after a ``/`` does not count, so
      ``./a:b`` and ``/x/a:b`` are local files.
    """
    if not arg:
        raise BadInputError("empty path", field="PATH")
    if arg == "-":
        return Location("-")
    colon = arg.find(":")
    slash = arg.find("/")
    if colon <= 0 or (0 <= slash < colon):
        return Location(arg)
    if arg.startswith("unix:"):
        rest = arg[len("unix:"):]
        sock, sep, path = rest.partition(":")
        if not sep or not sock:
            raise BadInputError(f"{arg!r}: expected unix:SOCKET:PATH", field="PATH")
        domain = f"unix:{sock}"
    else:
        domain, _, path = arg.partition(":")
    if not path:
        raise BadInputError(f"{arg!r}: missing the guest path after ':'", field="PATH")
    return Location(path, domain)


@contextlib.contextmanager
def _progress_bar(label: str, total: int | None) -> Iterator[Any]:
    """A rich progress bar on stderr when it is a terminal (and not -q); else nothing."""
    if not is_tty_stderr() or get_ctx().verbosity < 0:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done: bar.update(task, completed=done)


@click.command("cp")
@click.argument("source", metavar="SOURCE")
@click.argument("dest", metavar="DEST")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing target.")
@click.option("--mode", metavar="OCTAL",
              help="Mode of the new file (default: the source file's mode).")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Compare SHA-256 after the copy (sha256sum in the guest, else a read-back).")
@click.option("--in-place", is_flag=True,
              help="If guest-exec is unavailable, write the target directly (not atomic).")
@click.option("--chunk-size", type=click.IntRange(min=4096), default=None, hidden=True,
              help="Bytes per guest-file-read/write (default: sized to the transport).")
def cp(source: str, dest: str, force: bool, mode: str | None, verify: bool, in_place: bool,
       chunk_size: int | None) -> None:
    """Copy a file: `cp LOCAL DOMAIN:PATH` (push) or `cp DOMAIN:PATH LOCAL` (pull).

    \b
    LOCAL may be `-` for stdin/stdout. DOMAIN:PATH names a file in a guest; with the
    global --socket option DOMAIN is only a label; `unix:SOCKET:PATH` names the agent
    socket inline. A `:` after a `/` is part of a local file name (./a:b is local).
    The target is written under a temp name and renamed, so it is never half-written;
    an existing target needs --force. Examples:
      virt-qga cp ./app.tar.gz vm1:/tmp/
      virt-qga cp vm1:/var/log/syslog ./syslog
    """
    from virt_qga.workflows import files as wf

    src, dst = parse_location(source), parse_location(dest)
    if src.remote == dst.remote:
        raise BadInputError("exactly one of SOURCE and DEST must be DOMAIN:PATH "
                            "(use ./NAME for a local file whose name has a ':')", field="SOURCE")
    want_mode = wf.parse_mode(mode)
    if dst.remote:
        assert dst.domain is not None
        agent = open_agent(dst.domain)
        total: int | None = None
        if not src.stdio:
            import os

            with contextlib.suppress(OSError):
                total = os.path.getsize(src.path)
        with _progress_bar(f"-> {clean(dst.path)}", total) as progress:
            result = wf.push(agent, sys.stdin.buffer if src.stdio else src.path, dst.path, force=force,
                             mode=want_mode, verify=verify, in_place=in_place, progress=progress,
                             chunk=chunk_size)
    else:
        assert src.domain is not None
        agent = open_agent(src.domain)
        with _progress_bar(f"<- {clean(src.path)}", None) as progress:
            if dst.stdio:
                result = wf.pull(agent, src.path, sys.stdout.buffer, force=force, mode=want_mode,
                                 verify=verify, progress=progress, chunk=chunk_size)
                sys.stdout.buffer.flush()
            else:
                result = wf.pull(agent, src.path, dst.path, force=force, mode=want_mode,
                                 verify=verify, progress=progress, chunk=chunk_size)
    for warning in result.warnings:
        click.echo(f"virt-qga: warning: {warning}", err=True)
    data = {"domain": dst.domain or src.domain, **result.to_dict()}
    if get_ctx().json:
        if dst.stdio:  # stdout carries the file; the report goes to stderr
            import json

            click.echo(json.dumps(data, indent=2), err=True)
        else:
            emit(data)
        return
    arrow = "->" if result.direction == "push" else "<-"
    ver = f", verified ({result.verify_method})" if result.verified else ""
    info(f"{clean(result.local_path)} {arrow} {clean(data['domain'])}:{clean(result.guest_path)}: "
         f"{result.bytes} bytes in {result.duration:.2f} s ({result.mb_per_s:.1f} MB/s){ver}")
