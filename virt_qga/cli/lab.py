"""``virt-qga lab``: disposable libvirt/QEMU guests running the real qemu-ga.

Thin: parse options, call :class:`virt_qga.lab.Lab`, render. Every lab failure is a
one-line ``virt-qga: error: ...`` on stderr and the error's exit code.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from virt_qga.cli.context import emit, get_ctx, info
from virt_qga.errors import VirtQgaError
from virt_qga.lab.flavours import DEFAULT_FLAVOUR, FLAVOURS

F = TypeVar("F", bound=Callable[..., Any])


def _handle_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except VirtQgaError as err:
            if get_ctx().json:
                click.echo(json.dumps(err.to_dict(), indent=2))
            click.echo(f"virt-qga: error: {err}", err=True)
            sys.exit(int(err.exit_code))

    return wrapper  # type: ignore[return-value]


def _lab() -> Any:
    from virt_qga.lab import Lab

    return Lab()


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in columns]] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for r in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


@click.group("lab")
@click.option("--json", "json_", is_flag=True, help="One JSON document on stdout.")
def lab(json_: bool) -> None:
    """Disposable libvirt/QEMU guests with a real qemu-ga (see docs/lab.md).

    The lab lives in $VIRT_QGA_LAB_DIR (default /var/lib/virt-qga/lab as root,
    ~/.cache/virt-qga/lab otherwise) and never touches the machine's own libvirt.
    """
    if json_:
        get_ctx().json = True


@lab.command("up")
@click.option(
    "--count", "-n", default=1, show_default=True, type=click.IntRange(1, 16), help="Number of guests."
)
@click.option(
    "--agent",
    type=click.Choice(["7.2", "10.0"]),
    default="7.2",
    show_default=True,
    help="qemu-ga version inside the guests.",
)
@click.option(
    "--plain", is_flag=True, help="Plain QEMU (no libvirt): agent channel on a UNIX socket, plus QMP."
)
@click.option("--name", "name", metavar="PREFIX", help="Guest name (count 1) or name prefix.")
@click.option("--no-agent-channel", is_flag=True, help="Boot without an agent channel (to test that error).")
@click.option("--kvm", is_flag=True, help="Use KVM instead of TCG (does not work on every host).")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for the agents.")
@click.option(
    "--flavour",
    type=click.Choice(FLAVOURS),
    default=DEFAULT_FLAVOUR,
    show_default=True,
    help="Guest userland: busybox only, or busybox plus Debian 12's Python 3 (for Ansible modules).",
)
@_handle_errors
def up(
    count: int,
    agent: str,
    plain: bool,
    name: str | None,
    no_agent_channel: bool,
    kvm: bool,
    timeout: float,
    flavour: str,
) -> None:
    """Build what is needed (cached), boot guests, wait until each agent answers."""
    lab_ = _lab()
    start = time.monotonic()
    lab_.build(agent=agent, log=get_ctx().verbosity >= 0 and not get_ctx().json, flavour=flavour)
    guests = lab_.up(
        count=count,
        agent=agent,
        plain=plain,
        name=name,
        agent_channel=not no_agent_channel,
        kvm=kvm,
        timeout=timeout,
        flavour=flavour,
    )
    elapsed = time.monotonic() - start
    data = {"uri": lab_.uri, "seconds": round(elapsed, 2), "guests": [g.to_dict() for g in guests]}

    def human(d: dict[str, Any]) -> None:
        for g in d["guests"]:
            if g["kind"] == "plain":
                reach = f"agent socket {g['socket'] or '(none)'}  qmp {g['qmp']}"
            else:
                reach = f"libvirt domain {g['name']}"
            click.echo(
                f"{g['name']}  ({g['kind']}, {g['flavour']}, qemu-ga {g['agent']}, pid {g['pid']})  {reach}"
            )
        if any(g["kind"] == "libvirt" for g in d["guests"]):
            click.echo(f"libvirt URI: {d['uri']}")
        click.echo('eval "$(virt-qga lab env)" to point virt-qga at the lab')
        info(f"ready in {d['seconds']} s")

    emit(data, human)


@lab.command("status")
@_handle_errors
def status() -> None:
    """What runs: every lab guest with its live state."""
    lab_ = _lab()
    rows = [s.to_dict() for s in lab_.status()]
    data = {"root": str(lab_.root), "uri": lab_.uri, "daemon": lab_.session.daemon_alive(), "guests": rows}

    def human(d: dict[str, Any]) -> None:
        if not d["guests"]:
            click.echo(f"no lab guests (lab dir {d['root']})")
            return
        _table(
            ["NAME", "KIND", "AGENT", "STATE", "PID", "REACH"],
            [
                [
                    g["name"],
                    g["kind"],
                    g["agent"],
                    g["state"],
                    g["pid"],
                    g["socket"] if g["kind"] == "plain" else g["uri"],
                ]
                for g in d["guests"]
            ],
        )

    emit(data, human)


@lab.command("down")
@_handle_errors
def down() -> None:
    """Remove every guest and stop the lab's daemons (the build cache stays)."""
    lab_ = _lab()
    lab_.down()
    emit(
        {"down": True, "root": str(lab_.root)},
        lambda d: click.echo(f"lab is down (cache kept in {d['root']})"),
    )


@lab.command("destroy")
@click.argument("names", nargs=-1, required=True)
@_handle_errors
def destroy(names: tuple[str, ...]) -> None:
    """Remove the named guests completely."""
    lab_ = _lab()
    for n in names:
        lab_.destroy(n)
    emit({"destroyed": list(names)}, lambda d: click.echo("destroyed " + " ".join(d["destroyed"])))


@lab.command("env")
@_handle_errors
def env() -> None:
    """Shell exports targeting the lab: eval "$(virt-qga lab env)"."""
    lab_ = _lab()
    text = lab_.env()
    emit({"env": text, "uri": lab_.uri}, lambda d: click.echo(d["env"], nl=False))


@lab.command("build")
@click.option("--agent", type=click.Choice(["7.2", "10.0", "all"]), default="all", show_default=True)
@click.option("--refresh", is_flag=True, help="Fetch fresh apt lists first (picks up new package versions).")
@click.option(
    "--flavour",
    type=click.Choice(FLAVOURS),
    default=DEFAULT_FLAVOUR,
    show_default=True,
    help="Guest userland (see lab up).",
)
@_handle_errors
def build_cmd(agent: str, refresh: bool, flavour: str) -> None:
    """Build (or check the cache of) the guest kernel, initramfs and data disk."""
    lab_ = _lab()
    agents = ["7.2", "10.0"] if agent == "all" else [agent]
    start = time.monotonic()
    out = [
        vars(lab_.build(agent=a, refresh=refresh and i == 0, log=not get_ctx().json, flavour=flavour))
        for i, a in enumerate(agents)
    ]
    data = {"seconds": round(time.monotonic() - start, 2), "images": out}

    def human(d: dict[str, Any]) -> None:
        for m in d["images"]:
            click.echo(
                f"qemu-ga {m['agent_version']} ({m['flavour']}): {m['initrd']} "
                f"(kernel {m['kernel_version']}, fsprobe {m['fsprobe']})"
            )

    emit(data, human)


if __name__ == "__main__":
    lab()
