"""Helpers shared by the CLI command modules: opening an agent, tables, parsing."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import click

from virt_qga.cli.context import CliContext, get_ctx
from virt_qga.errors import BadInputError
from virt_qga.workflows.target import Target

if TYPE_CHECKING:
    from virt_qga.agent import GuestAgent
    from virt_qga.host import Domain

domain_argument = click.argument("domain", metavar="DOMAIN")


def resolve(domain: str, c: CliContext | None = None) -> Target:
    """DOMAIN (or ``unix:PATH``) with the global ``--connect``/``--socket``, resolved.

    ``c`` (default: the current click context's) lets worker threads, which have no
    click context, resolve targets too (:mod:`virt_qga.cli.many`).
    """
    c = c or get_ctx()
    return Target.resolve(domain, uri=c.connect, socket=c.socket)


def open_domain(domain: str, what: str) -> Domain:
    """The libvirt side of a running DOMAIN, for commands that change the domain itself
    (``what`` names them in the error when DOMAIN is an agent socket)."""
    from virt_qga.connection import require_running

    d = resolve(domain).domain(what)
    require_running(d.dom)
    return d


def open_agent(domain: str, c: CliContext | None = None) -> GuestAgent:
    """The agent for DOMAIN, over the socket (``--socket`` or ``unix:PATH``) or libvirt."""
    c = c or get_ctx()
    return resolve(domain, c).agent(c.timeout)


def clean(value: Any) -> str:
    """Guest-supplied text for a terminal: control characters escaped."""
    text = "" if value is None else str(value)
    return "".join(ch if ch.isprintable() or ch == " " else f"\\x{ord(ch):02x}" for ch in text)


def print_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None, *,
                wide: bool = False) -> None:
    """A rich table on stdout; every cell is plain text (no markup interpretation).

    ``wide``: when stdout is not a terminal, rows are never wrapped (rich would fold
    them to 80 columns), so that a listing piped into grep keeps one line per row."""
    import sys

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, show_edge=False, header_style="bold", title_justify="left")
    for col in columns:
        table.add_column(col, no_wrap=wide)
    for row in rows:
        table.add_row(*(Text(clean(cell)) for cell in row))
    width = 1000 if wide and not sys.stdout.isatty() else None
    Console(soft_wrap=False, width=width).print(table)


def print_kv(pairs: Iterable[tuple[str, Any]]) -> None:
    """Aligned ``key: value`` lines."""
    items = [(k, clean(v)) for k, v in pairs]
    width = max((len(k) for k, _ in items), default=0)
    for k, v in items:
        click.echo(f"{k + ':':<{width + 1}} {v}")


def parse_call_args(args_json: str | None, pairs: Sequence[str]) -> dict[str, Any]:
    """``--args JSON`` and/or ``key=value`` (string) / ``key:=json`` (typed) pairs."""
    out: dict[str, Any] = {}
    if args_json:
        try:
            parsed = json.loads(args_json)
        except ValueError as exc:
            raise BadInputError(f"--args is not valid JSON: {exc}", field="--args") from exc
        if not isinstance(parsed, dict):
            raise BadInputError("--args must be a JSON object", field="--args")
        out.update(parsed)
    for pair in pairs:
        if ":=" in pair and ("=" not in pair or pair.index(":=") < pair.index("=")):
            key, raw = pair.split(":=", 1)
            try:
                out[key] = json.loads(raw)
            except ValueError as exc:
                raise BadInputError(f"{key}:= needs a JSON value: {exc}", field=key) from exc
        elif "=" in pair:
            key, value = pair.split("=", 1)
            out[key] = value
        else:
            raise BadInputError(f"argument '{pair}' is not key=value or key:=json", field=pair)
        if not key:
            raise BadInputError(f"argument '{pair}' has an empty name", field=pair)
    return out
