"""``virt-qga lab``: disposable libvirt/QEMU guests running the real qemu-ga.

Thin: parse options, call :class:`virt_qga.lab.Lab`, render. A lab failure is a
:class:`~virt_qga.lab.LabError` like any other error: the one renderer in
:mod:`virt_qga.cli.main` turns it into ``virt-qga: error: ...`` on stderr (and the JSON
error document with ``--json``) and its exit code.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import click

from virt_qga.cli.context import emit, get_ctx, info
from virt_qga.lab.flavours import DEFAULT_FLAVOUR, FLAVOURS
from virt_qga.lab.stacks import HOST, STACK_NAMES

STACK_HELP = "Host stack of the libvirt guests: host (session-mode libvirt of this machine) or " \
    "debian13 (libvirt 11.3 + QEMU 10.0, system mode, from a cached Debian 13 root)."


def _lab(stack: str = HOST) -> Any:
    from virt_qga.lab import Lab

    return Lab(stack=stack)


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
@click.option("--stack", type=click.Choice(STACK_NAMES), default=HOST, show_default=True, help=STACK_HELP)
@click.option(
    "--flavour",
    type=click.Choice(FLAVOURS),
    default=DEFAULT_FLAVOUR,
    show_default=True,
    help="Guest userland: busybox only, or busybox plus Debian 12's Python 3 (for Ansible modules).",
)
def up(
    count: int, agent: str, plain: bool, name: str | None, no_agent_channel: bool, kvm: bool, timeout: float,
    stack: str, flavour: str,
) -> None:
    """Build what is needed (cached), boot guests, wait until each agent answers."""
    from virt_qga.lab.manager import stack_for

    stack_for(plain, stack)  # refuse --plain --stack debian13 before building anything
    lab_ = _lab(stack)
    start = time.monotonic()
    log = get_ctx().verbosity >= 0 and not get_ctx().json
    lab_.build(agent=agent, log=log, flavour=flavour)
    if not plain:
        lab_.build_stack(log=log)
    guests = lab_.up(
        count=count,
        agent=agent,
        plain=plain,
        name=name,
        agent_channel=not no_agent_channel,
        kvm=kvm,
        timeout=timeout,
        stack=stack,
        flavour=flavour,
    )
    elapsed = time.monotonic() - start
    data = {"uri": lab_.uri, "stack": stack, "seconds": round(elapsed, 2),
            "guests": [g.to_dict() for g in guests]}

    def human(d: dict[str, Any]) -> None:
        for g in d["guests"]:
            if g["kind"] == "plain":
                reach = f"agent socket {g['socket'] or '(none)'}  qmp {g['qmp']}"
            else:
                reach = f"libvirt domain {g['name']} on stack {g['stack']}"
            click.echo(
                f"{g['name']}  ({g['kind']}, {g['flavour']}, qemu-ga {g['agent']}, pid {g['pid']})  {reach}"
            )
        if any(g["kind"] == "libvirt" for g in d["guests"]):
            click.echo(f"libvirt URI: {d['uri']}")
        flag = "" if d["stack"] == HOST else f" --stack {d['stack']}"
        click.echo(f'eval "$(virt-qga lab env{flag})" to point virt-qga at the lab')
        info(f"ready in {d['seconds']} s")

    emit(data, human)


@lab.command("status")
def status() -> None:
    """What runs: every lab guest with its stack and live state, then each stack."""
    lab_ = _lab()
    rows = [s.to_dict() for s in lab_.status()]
    stacks = [lab_.stack_info(name) for name in STACK_NAMES]
    data = {"root": str(lab_.root), "uri": lab_.uri, "daemon": lab_.session.daemon_alive(), "guests": rows,
            "stacks": stacks}

    def human(d: dict[str, Any]) -> None:
        if not d["guests"]:
            click.echo(f"no lab guests (lab dir {d['root']})")
        else:
            _table(
                ["NAME", "STACK", "KIND", "AGENT", "STATE", "PID", "REACH"],
                [
                    [
                        g["name"],
                        g["stack"] if g["kind"] == "libvirt" else "-",
                        g["kind"],
                        g["agent"],
                        g["state"],
                        g["pid"],
                        g["socket"] if g["kind"] == "plain" else g["uri"],
                    ]
                    for g in d["guests"]
                ],
            )
        for st in d["stacks"]:
            versions = f"libvirt {st['libvirt'] or '?'}, QEMU {st['qemu'] or '?'}"
            state = "daemon up" if st["daemon"] else "daemon down"
            click.echo(f"stack {st['name']}: {st['mode']} mode, {versions}, {state}")

    emit(data, human)


@lab.command("down")
def down() -> None:
    """Remove every guest of every stack, stop the lab's daemons, unmount what the
    stacks mounted (the build cache stays)."""
    lab_ = _lab()
    lab_.down()
    emit(
        {"down": True, "root": str(lab_.root)},
        lambda d: click.echo(f"lab is down (cache kept in {d['root']})"),
    )


@lab.command("destroy")
@click.argument("names", nargs=-1, required=True)
def destroy(names: tuple[str, ...]) -> None:
    """Remove the named guests completely."""
    lab_ = _lab()
    for n in names:
        lab_.destroy(n)
    emit({"destroyed": list(names)}, lambda d: click.echo("destroyed " + " ".join(d["destroyed"])))


@lab.command("env")
@click.option("--stack", type=click.Choice(STACK_NAMES), default=HOST, show_default=True,
              help="Which stack's libvirt the exports point at.")
def env(stack: str) -> None:
    """Shell exports targeting the lab: eval "$(virt-qga lab env [--stack S])"."""
    lab_ = _lab(stack)
    text = lab_.env()
    emit({"env": text, "uri": lab_.uri, "stack": stack}, lambda d: click.echo(d["env"], nl=False))


@lab.command("build")
@click.option("--agent", type=click.Choice(["7.2", "10.0", "all"]), default="all", show_default=True)
@click.option("--stack", type=click.Choice([*STACK_NAMES, "all"]), default=HOST, show_default=True,
              help="Also build a root stack's root (debian13, or all).")
@click.option("--refresh", is_flag=True, help="Fetch fresh apt lists first (picks up new package versions).")
@click.option(
    "--flavour",
    type=click.Choice(FLAVOURS),
    default=DEFAULT_FLAVOUR,
    show_default=True,
    help="Guest userland (see lab up).",
)
def build_cmd(agent: str, stack: str, refresh: bool, flavour: str) -> None:
    """Build (or check the cache of) the guest kernel, initramfs, data disk and stack roots."""
    lab_ = _lab()
    agents = ["7.2", "10.0"] if agent == "all" else [agent]
    stacks = [s for s in STACK_NAMES if s != HOST] if stack == "all" else [s for s in [stack] if s != HOST]
    start = time.monotonic()
    log = not get_ctx().json
    out = [vars(lab_.build(agent=a, refresh=refresh and i == 0, log=log, flavour=flavour))
           for i, a in enumerate(agents)]
    roots = [vars(lab_.build_stack(s, log=log)) for s in stacks]
    data = {"seconds": round(time.monotonic() - start, 2), "images": out, "roots": roots}

    def human(d: dict[str, Any]) -> None:
        for m in d["images"]:
            click.echo(
                f"qemu-ga {m['agent_version']} ({m['flavour']}): {m['initrd']} "
                f"(kernel {m['kernel_version']}, fsprobe {m['fsprobe']})"
            )
        for r in d["roots"]:
            click.echo(f"stack {r['stack']}: {r['path']} (libvirt {r['versions']['libvirt']}, "
                       f"QEMU {r['versions']['qemu']})")

    emit(data, human)


if __name__ == "__main__":
    lab()
