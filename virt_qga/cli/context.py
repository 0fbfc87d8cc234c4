"""Shared CLI state (``click`` ``ctx.obj``) and output helpers used by every group."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click


@dataclass
class CliContext:
    """Global options, parsed once by the root group."""

    connect: str | None = None      # libvirt URI (--connect / VIRT_QGA_CONNECT)
    socket: str | None = None       # agent channel socket path (--socket / VIRT_QGA_SOCKET)
    json: bool = False              # one JSON document on stdout
    timeout: float = 30.0           # per-command deadline, seconds
    verbosity: int = 0              # -1 quiet, 0 normal, 1+ verbose (tracebacks)


def get_ctx() -> CliContext:
    ctx = click.get_current_context()
    obj = ctx.find_object(CliContext)
    if obj is None:  # a group invoked on its own (tests): defaults
        obj = ctx.ensure_object(CliContext)
    return obj


def emit(data: Any, human: Callable[[Any], None] | None = None) -> None:
    """Print a result: JSON document with --json, else the human renderer (or JSON)."""
    cli = get_ctx()
    if cli.json or human is None:
        import json  # not at module level: ``--help`` needs none of it

        click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
    else:
        human(data)


def info(msg: str) -> None:
    """A log line on stderr, hidden by -q."""
    if get_ctx().verbosity >= 0:
        click.echo(msg, err=True)


def is_tty_stderr() -> bool:
    return sys.stderr.isatty()
