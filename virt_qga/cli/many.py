"""Read-only commands over one DOMAIN, several, or ``--all``: the CLI side of
:mod:`virt_qga.workflows.fleet`.

A command written for one domain provides ``fetch(agent, domain) -> document`` (the
JSON document ``--json`` prints for that domain) and ``human(document)``;
:func:`read_only_command` adds ``DOMAIN...``, ``--all`` and ``--jobs`` and the help
text, and :func:`run` does the rest:

* one DOMAIN: exactly what the command always did (its document, or its error and
  exit code);
* several DOMAINs or ``--all``: ``fetch`` for each, at most ``--jobs`` at a time, then
  one JSON document, or the human output grouped under ``==> DOMAIN <==`` headers
  (errors on stderr), and the aggregated exit code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from virt_qga.cli.common import clean, open_agent
from virt_qga.cli.context import CliContext, emit, get_ctx, info

if TYPE_CHECKING:
    from virt_qga.agent import GuestAgent

F = TypeVar("F", bound=Callable[..., Any])
Fetch = Callable[["GuestAgent", str], dict[str, Any]]

#: Appended to the help of every read-only command: the one place that says how
#: several domains behave.
MANY_EPILOG = """\b
Several DOMAINs, or --all (the running domains of the connection; inactive
domains have no agent to ask, so there is no --include-inactive), are asked
--jobs at a time. --json then prints one document: {"command", "domains":
[{"domain", "ok", "result" (the one-domain document) | "error", "exit_code"}],
"exit_code"}. Exit: 0 every domain answered; 5 some did, some not; else the
code all failures share (6 no such domain or not running, 3 no agent, 4
timeout), or 1 if they differ.
"""


def read_only_command(name: str | None = None) -> Callable[[F], F]:
    """``@click.command`` with ``DOMAIN...``, ``--all``, ``--jobs`` and :data:`MANY_EPILOG`.

    The decorated function receives ``domains``, ``all_`` and ``jobs``.
    """
    from virt_qga.workflows.fleet import DEFAULT_JOBS, MAX_JOBS

    def deco(fn: F) -> F:
        f: Any = click.option(
            "--jobs", type=click.IntRange(1, MAX_JOBS), default=DEFAULT_JOBS, show_default=True,
            metavar="N", help="With several domains: how many are asked at once.")(fn)
        f = click.option("--all", "all_", is_flag=True,
                         help="Every running domain of the connection (libvirt only).")(f)
        f = click.argument("domains", nargs=-1, metavar="DOMAIN...")(f)
        return click.command(name, epilog=MANY_EPILOG)(f)  # type: ignore[return-value]

    return deco


def targets(domains: tuple[str, ...], all_: bool) -> list[str] | None:
    """The domains to ask, or None for "exactly one DOMAIN, the way it always was"."""
    c = get_ctx()
    if all_ and domains:
        raise click.UsageError("give DOMAIN names or --all, not both")
    if not all_ and not domains:
        raise click.UsageError("missing DOMAIN (or --all)")
    if not all_ and len(domains) == 1:
        return None
    if c.socket:
        raise click.UsageError("--socket names one agent: give one DOMAIN, or several as unix:PATH")
    if all_:
        from virt_qga.connection import list_running_domains

        return list_running_domains(c.connect)
    return list(dict.fromkeys(domains))  # each domain once, in the order given


def run(command: str, domains: tuple[str, ...], all_: bool, jobs: int, fetch: Fetch,
        human: Callable[[dict[str, Any]], None]) -> None:
    """Run ``fetch`` for the requested domains and print the outcome (module docstring)."""
    c = get_ctx()
    names = targets(domains, all_)
    if names is None:
        emit(_fetch_one(c, fetch, domains[0]), human)
        return
    from virt_qga.workflows.fleet import aggregate_exit, run_each

    results = run_each(names, lambda d: _fetch_one(c, fetch, d), jobs=jobs)
    code = aggregate_exit(r.exit_code for r in results)
    doc = {"command": command, "domains": [r.to_dict() for r in results], "exit_code": code}

    def grouped(d: dict[str, Any]) -> None:
        if not results:
            info("virt-qga: no running domains")
        for i, r in enumerate(results):
            click.echo(("\n" if i else "") + f"==> {clean(r.domain)} <==")
            if r.ok:
                assert r.result is not None
                human(r.result)
            else:
                message = (r.error or {}).get("message", "failed")
                click.echo(f"virt-qga: error: {clean(message)}", err=True)

    emit(doc, grouped)
    if code:
        click.get_current_context().exit(code)


def _fetch_one(c: CliContext, fetch: Fetch, domain: str) -> dict[str, Any]:
    agent = open_agent(domain, c)
    try:
        return fetch(agent, domain)
    finally:
        agent.close()
