"""``ping``, ``info`` and ``call``: the agent itself. ``ping`` and ``info`` take several
domains or ``--all`` (:mod:`virt_qga.cli.many`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from virt_qga.cli.common import domain_argument, open_agent, parse_call_args, print_kv, print_table
from virt_qga.cli.context import emit
from virt_qga.cli.many import read_only_command, run

if TYPE_CHECKING:
    from virt_qga.agent import GuestAgent


@read_only_command()
def ping(domains: tuple[str, ...], all_: bool, jobs: int) -> None:
    """Check that the guest agent of DOMAIN (or of each DOMAIN) answers, and how fast."""
    run("ping", domains, all_, jobs, _ping, _ping_human)


def _ping(agent: GuestAgent, domain: str) -> dict[str, Any]:
    start = time.perf_counter()
    agent.ping()
    ms = (time.perf_counter() - start) * 1000
    return {"domain": domain, "ok": True, "latency_ms": round(ms, 3)}


def _ping_human(d: dict[str, Any]) -> None:
    click.echo(f"{d['domain']}: agent answered in {d['latency_ms']:.1f} ms")


@read_only_command()
def info(domains: tuple[str, ...], all_: bool, jobs: int) -> None:
    """Agent version and every command it supports (and whether it is enabled)."""
    run("info", domains, all_, jobs, _info, _info_human)


def _info(agent: GuestAgent, domain: str) -> dict[str, Any]:
    from virt_qga.spec import get_spec

    caps = agent.capabilities()
    spec = get_spec()
    rows: list[dict[str, Any]] = []
    for name in sorted(set(caps.commands) | set(spec.commands)):
        cmd = spec.commands.get(name)
        rows.append({
            "name": name,
            "supported": caps.knows(name),
            "enabled": caps.enabled(name),
            "in_schema": cmd is not None,
            "since": cmd.since if cmd else None,
        })
    return {"domain": domain, "version": caps.version, "transport": agent.transport.kind,
            "commands": rows}


def _info_human(d: dict[str, Any]) -> None:
    from virt_qga.spec import get_spec

    rows = d["commands"]
    n_sup = sum(r["supported"] for r in rows)
    n_en = sum(r["enabled"] for r in rows)
    print_kv([("domain", d["domain"]), ("agent", f"qemu-ga {d['version']}"),
              ("transport", d["transport"]),
              ("commands", f"{n_sup} supported, {n_en} enabled, {len(get_spec().commands)} in schema")])
    print_table(["command", "supported", "enabled", "since"],
                [(r["name"], "yes" if r["supported"] else "no",
                  "yes" if r["enabled"] else "-", r["since"] or "") for r in rows])


@click.command(context_settings={"ignore_unknown_options": False})
@domain_argument
@click.argument("command")
@click.argument("pairs", nargs=-1, metavar="[KEY=VALUE | KEY:=JSON]...")
@click.option("--args", "args_json", metavar="JSON", help="Arguments as one JSON object.")
def call(domain: str, command: str, pairs: tuple[str, ...], args_json: str | None) -> None:
    """Run any guest agent COMMAND (e.g. guest-get-osinfo) and print its reply as JSON.

    Arguments are validated against the schema before anything is sent.
    KEY=VALUE passes a string; KEY:=JSON passes a typed value (count:=4096,
    arg:='["-l"]'). The "guest-" prefix may be omitted.
    """
    from virt_qga.workflows.call import plan_call

    plan = plan_call(command, parse_call_args(args_json, pairs))
    agent = open_agent(domain)
    result = agent.call(plan.command, plan.args)
    emit({"domain": domain, "command": plan.command, "return": result})
