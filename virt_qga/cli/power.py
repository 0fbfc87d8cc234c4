"""``shutdown`` and ``suspend``: sent, then confirmed from outside the guest."""

from __future__ import annotations

import click

from virt_qga.cli.common import clean, domain_argument, open_agent
from virt_qga.cli.context import emit, info
from virt_qga.cli.options import click_options
from virt_qga.workflows.power import PowerOptions, PowerResult


def _render(domain: str, result: PowerResult) -> None:
    def human(_: object) -> None:
        what = f"{result.action} {result.mode}"
        if result.confirmed:
            state = f" (domain {result.final_state})" if result.final_state else ""
            info(f"{clean(domain)}: {what} confirmed in {result.duration:.1f} s{state}")
        elif result.agent_gone:
            info(f"{clean(domain)}: {what} sent; the guest agent went silent")
        else:
            info(f"{clean(domain)}: {what} sent")
        for item in result.not_confirmed:
            info(f"  not confirmed: {item}")
        if result.hint:
            info(f"  {result.hint}")

    emit({"domain": domain, **result.to_dict()}, human)


@click.command()
@domain_argument
@click_options(PowerOptions, "mode", "wait")
@click.option("--no-wait", is_flag=True, help="Send the request and return at once.")
def shutdown(domain: str, mode: str, wait: float, no_wait: bool) -> None:
    """Power down, halt or reboot the guest, then confirm it happened.

    Over libvirt the domain must reach "shut off" (or, for reboot, the agent must go
    away and come back) before --wait runs out (exit 5 otherwise). Over a socket only
    the agent going silent can be seen; the JSON says what was not confirmed.
    """
    from virt_qga.workflows.power import power

    _render(domain, power(open_agent(domain), "shutdown", mode, timeout=wait, confirm=not no_wait))


@click.command()
@domain_argument
@click.argument("mode", type=click.Choice(["disk", "ram", "hybrid"]))
@click.option("--wait", "wait", type=click.FloatRange(min=1), default=120.0, show_default=True,
              help="Seconds to wait for the domain state (shut off / pmsuspended).")
@click.option("--no-wait", is_flag=True, help="Send the request and return at once.")
def suspend(domain: str, mode: str, wait: float, no_wait: bool) -> None:
    """Suspend the guest to disk, RAM or both (hybrid), then confirm the domain state.

    Wake a ram/hybrid-suspended guest with `virsh dompmwakeup DOMAIN`; a disk-suspended
    one resumes when started again.
    """
    from virt_qga.workflows.power import power

    _render(domain, power(open_agent(domain), "suspend", mode, timeout=wait, confirm=not no_wait))
