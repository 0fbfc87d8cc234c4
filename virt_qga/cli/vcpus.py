"""``virt-qga vcpus DOMAIN`` (show) and ``virt-qga vcpus set DOMAIN N``."""

from __future__ import annotations

from typing import Any

import click

from virt_qga.cli.common import open_agent, open_domain, print_kv, print_table
from virt_qga.cli.context import emit, get_ctx
from virt_qga.cli.options import click_options
from virt_qga.workflows.vcpus.options import WAIT_FIELDS, VcpuOptions


class DefaultCommandGroup(click.Group):
    """A group whose first argument may be a DOMAIN instead of a subcommand.

    ``vcpus DOMAIN`` runs the default subcommand (``show``); ``vcpus set DOMAIN N``
    runs ``set``. A domain named like a subcommand needs the explicit ``show``.
    """

    default_command = "show"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


@click.group(cls=DefaultCommandGroup)
def vcpus() -> None:
    """Show or change DOMAIN's vCPUs: `vcpus DOMAIN`, `vcpus set DOMAIN N`."""


def _render_views(d: dict[str, Any]) -> None:
    rows = []
    for r in d["vcpus"]:
        can = "" if r["can_offline"] is None else ("yes" if r["can_offline"] else "no")
        rows.append((r["id"], r["guest"], can, r["qemu"], r["libvirt"],
                     "yes" if r["hotpluggable"] else "no", r["order"] if r["order"] is not None else "",
                     "; ".join(r["problems"]) or "ok"))
    print_table(["vCPU", "guest", "can-offline", "QEMU", "libvirt", "hotplug", "order", "agree"], rows)
    lv = d["libvirt"]
    guest = d["guest"]
    pairs = [("libvirt", f"{lv['current']} of {lv['maximum']} (enabled {lv['enabled']})"),
             ("QEMU", d["qemu"]["present"] if d["qemu"]["present"] is not None
              else f"unreadable: {d['qemu']['error']}"),
             ("guest", f"online {guest['online']}" if guest["online"] is not None
              else f"unreadable: {guest['error']}")]
    print_kv(pairs)
    for problem in d["disagreements"]:
        click.echo(f"DISAGREE: {problem}")


@vcpus.command()
@click.argument("domain", metavar="DOMAIN")
def show(domain: str) -> None:
    """Each vCPU as the guest, QEMU and libvirt see it; disagreements flagged."""
    from virt_qga.workflows.vcpus import read_views

    dom = open_domain(domain, "vCPU hotplug")
    views = read_views(dom, open_agent(domain))
    data = {"domain": domain, **views.to_dict()}
    emit(data, _render_views)


def _render_result(d: dict[str, Any]) -> None:
    print_kv([("domain", d["domain"]), ("action", d["action"]), ("target", d["target"]),
              ("state", d["state"])]
             + [(k, d[k]) for k in ("changed_guest", "plugged", "unplugged", "rolled_back") if d.get(k)])
    for s in d["steps"]:
        extra = ", ".join(f"{k}={v}" for k, v in s.items() if k not in ("step", "seconds"))
        click.echo(f"  {s['step']:<14} {s['seconds']:>7.3f} s  {extra}")
    if d.get("views"):
        _render_views(d["views"])


@vcpus.command("set")
@click.argument("domain", metavar="DOMAIN")
@click.argument("count", metavar="N", type=int)
@click.option("--guest-only", is_flag=True, help="Only change which vCPUs are online in the guest.")
@click.option("--config", is_flag=True, help="Also persist the count once the live change is done.")
@click_options(VcpuOptions, *WAIT_FIELDS)
def set_(domain: str, count: int, guest_only: bool, config: bool, wait_timeout: float) -> None:
    """Bring DOMAIN to N vCPUs: online in the guest, present in QEMU and libvirt.

    Shrinking asks the guest first (offline), then unplugs; growing plugs, then
    onlines. The three views are read back until they agree or the deadline passes.
    Exit 0 done, 5 pending/partial, 1 failed and rolled back, 9 views disagree.
    """
    from virt_qga.errors import BadInputError, OperationError
    from virt_qga.workflows.vcpus import set_vcpu_count

    if count < 1:
        raise BadInputError(f"N must be at least 1, got {count}", field="N")
    dom = open_domain(domain, "vCPU hotplug")
    agent = open_agent(domain)
    try:
        result = set_vcpu_count(dom, agent, count, guest_only=guest_only, config=config, timeout=wait_timeout)
    except OperationError as exc:
        if not get_ctx().json and exc.result:
            _render_result(exc.result)
        raise
    emit(result.to_dict(), _render_result)
