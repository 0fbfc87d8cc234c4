"""``virt-qga memory DOMAIN`` (show), ``memory plug DOMAIN SIZE``, ``memory unplug DOMAIN``."""

from __future__ import annotations

from typing import Any

import click

from virt_qga.cli.common import open_agent, open_domain, print_kv, print_table
from virt_qga.cli.context import emit, get_ctx
from virt_qga.cli.options import click_options
from virt_qga.cli.vcpus import DefaultCommandGroup
from virt_qga.workflows.memory.options import WAIT_FIELDS, MemoryOptions


def _open(domain: str) -> Any:
    """Event loop first (DEVICE_REMOVED), then the domain."""
    from virt_qga.connection import start_event_loop

    start_event_loop()
    return open_domain(domain, "memory hotplug")


@click.group(cls=DefaultCommandGroup)
def memory() -> None:
    """Show, plug or unplug DOMAIN's memory: `memory DOMAIN`, `memory plug DOMAIN 256M`,
    `memory unplug DOMAIN 256M | --dimm ALIAS`."""


def _mib(n: int | None) -> str:
    from virt_qga.host.memory import human_size

    return "" if n is None else human_size(n)


def _render_view(d: dict[str, Any]) -> None:
    print_kv([("block size", _mib(d["block_size"])), ("memory", _mib(d["memory"])),
              ("maxMemory", f"{_mib(d['max_memory'])} ({d['slots']} slots)" if d["max_memory"] else "none")])
    if d["dimms"]:
        print_table(["DIMM", "slot", "base", "size", "node", "guest blocks"],
                    [(x.get("alias"), x.get("slot"), x.get("base_hex"), _mib(x["size"]), x.get("node"),
                      " ".join(f"{b['id']}:{'on' if b['online'] else 'off' if b['present'] else 'absent'}"
                               for b in x["blocks"])) for x in d["dimms"]], title="DIMMs (libvirt live XML)")
    if d["virtio_mem"]:
        print_table(["device", "size", "requested", "current", "block"],
                    [(x.get("alias"), _mib(x["size"]), _mib(x.get("requested")), _mib(x.get("current")),
                      _mib(x.get("block"))) for x in d["virtio_mem"]], title="virtio-mem")
    print_table(["block", "online", "can-offline", "DIMM"],
                [(b["id"], "yes" if b["online"] else "no",
                  "" if b["can_offline"] is None else ("yes" if b["can_offline"] else "no"),
                  b["dimm"] or "boot")
                 for b in d["blocks"]], title="guest memory blocks")
    for p in d["disagreements"]:
        click.echo(f"DISAGREE: {p}")


@memory.command()
@click.argument("domain", metavar="DOMAIN")
def show(domain: str) -> None:
    """Guest memory blocks, the DIMMs (base, size) and which blocks each DIMM holds."""
    from virt_qga.workflows.memory import read_view

    dom = _open(domain)
    view = read_view(dom, open_agent(domain))
    emit({"domain": domain, **view.to_dict()}, _render_view)


def _render_result(d: dict[str, Any]) -> None:
    print_kv([("domain", d["domain"]), ("action", d["action"]), ("size", _mib(d["size"])),
              ("state", d["state"])])
    for s in d["steps"]:
        extra = ", ".join(f"{k}={v}" for k, v in s.items() if k not in ("step", "seconds"))
        click.echo(f"  {s['step']:<13} {s['seconds']:>7.3f} s  {extra}")


def _run(fn: Any) -> None:
    from virt_qga.errors import OperationError

    try:
        result = fn()
    except OperationError as exc:
        if not get_ctx().json and exc.result:
            _render_result(exc.result)
        raise
    emit(result.to_dict(), _render_result)


_timeout = click_options(MemoryOptions, *WAIT_FIELDS)


@memory.command()
@click.argument("domain", metavar="DOMAIN")
@click.argument("size", metavar="SIZE")
@click.option("--node", type=click.IntRange(min=0), default=0, show_default=True, help="Guest NUMA node.")
@click.option("--config", is_flag=True, help="Also add the DIMM to the persistent config.")
@click.option("--virtio-mem", "virtio_mem", metavar="ALIAS", is_flag=False, flag_value="", default=None,
              help="Grow a virtio-mem device's requested size instead (optionally by alias).")
@_timeout
def plug(domain: str, size: str, node: int, config: bool, virtio_mem: str | None,
         wait_timeout: float) -> None:
    """Hot-plug SIZE of memory (256M, 1G, 262144K) as a DIMM; its blocks are brought online."""
    from virt_qga.host.memory import parse_size
    from virt_qga.workflows.memory import plug as do_plug
    from virt_qga.workflows.memory import resize_virtio_mem

    nbytes = parse_size(size)
    dom = _open(domain)
    if virtio_mem is not None:
        _run(lambda: resize_virtio_mem(dom, nbytes, grow=True, alias=virtio_mem or None,
                                       timeout=wait_timeout))
        return
    _run(lambda: do_plug(dom, open_agent(domain), nbytes, node=node, config=config, timeout=wait_timeout))


@memory.command()
@click.argument("domain", metavar="DOMAIN")
@click.argument("size", metavar="[SIZE]", required=False)
@click.option("--dimm", "alias", metavar="ALIAS", help="Remove this DIMM (alias from `memory DOMAIN`).")
@click.option("--config", is_flag=True, help="Also remove the DIMM from the persistent config.")
@click.option("--virtio-mem", "virtio_mem", metavar="ALIAS", is_flag=False, flag_value="", default=None,
              help="Shrink a virtio-mem device's requested size instead (optionally by alias).")
@click.option("--busy-attempts", type=click.IntRange(min=1, max=50), default=6, show_default=True,
              help="Passes over blocks that answer EBUSY.")
@_timeout
def unplug(domain: str, size: str | None, alias: str | None, config: bool, virtio_mem: str | None,
           busy_attempts: int, wait_timeout: float) -> None:
    """Remove SIZE of DIMM memory (highest address first) or one --dimm, guest first.

    The guest offlines the DIMM's blocks (EBUSY retried), then libvirt detaches it;
    a refusal puts the blocks back online. Exit 0 done, 5 pending/partial,
    1 refused and rolled back, 9 inconsistent.
    """
    from virt_qga.errors import BadInputError
    from virt_qga.host.memory import parse_size
    from virt_qga.workflows.memory import resize_virtio_mem
    from virt_qga.workflows.memory import unplug as do_unplug

    if (size is None) == (alias is None):
        raise BadInputError("give exactly one of SIZE or --dimm ALIAS", field="SIZE")
    nbytes = parse_size(size) if size is not None else None
    dom = _open(domain)
    if virtio_mem is not None:
        if nbytes is None:
            raise BadInputError("--virtio-mem needs SIZE", field="SIZE")
        _run(lambda: resize_virtio_mem(dom, nbytes, grow=False, alias=virtio_mem or None,
                                       timeout=wait_timeout))
        return
    _run(lambda: do_unplug(dom, open_agent(domain), size=nbytes, alias=alias, config=config,
                           timeout=wait_timeout, attempts=busy_attempts))
