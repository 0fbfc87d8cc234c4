"""Guest information and account commands: one agent command each, table or --json.

The read-only ones (osinfo ... cpustats, and ``time`` when it only shows) take several
domains or ``--all`` (:mod:`virt_qga.cli.many`).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from virt_qga.cli.common import clean, domain_argument, open_agent, print_kv, print_table
from virt_qga.cli.context import emit, info
from virt_qga.cli.many import read_only_command, run
from virt_qga.cli.options import click_options
from virt_qga.errors import BadInputError
from virt_qga.workflows.accounts import PasswordOptions

if TYPE_CHECKING:
    from virt_qga.agent import GuestAgent


def _show(domain: str, key: str, value: Any, human: Any) -> None:
    emit({"domain": domain, key: value}, lambda d: human(d[key]))


# ------------------------------------------------------------------ simple read-outs

@read_only_command()
def osinfo(domains: tuple[str, ...], all_: bool, jobs: int) -> None:
    """Guest operating system (guest-get-osinfo)."""
    run("osinfo", domains, all_, jobs, lambda a, d: {"domain": d, "osinfo": a.get_osinfo()},
        lambda doc: print_kv(sorted(doc["osinfo"].items())))


@read_only_command()
def hostname(domains: tuple[str, ...], all_: bool, jobs: int) -> None:
    """Guest host name (guest-get-host-name)."""
    run("hostname", domains, all_, jobs,
        lambda a, d: {"domain": d, "hostname": a.get_host_name()["host-name"]},
        lambda doc: click.echo(clean(doc["hostname"])))


@read_only_command()
def users(domains: tuple[str, ...], all_: bool, jobs: int) -> None:
    """Users logged in to the guest (guest-get-users)."""
    from virt_qga.workflows.guest_info import format_ns

    run("users", domains, all_, jobs, lambda a, d: {"domain": d, "users": a.get_users()},
        lambda doc: print_table(
            ["user", "domain", "login time (UTC)"],
            [(u.get("user"), u.get("domain", ""), format_ns(int(float(u.get("login-time", 0)) * 1e9)))
             for u in doc["users"]]))


@read_only_command()
def timezone(domains: tuple[str, ...], all_: bool, jobs: int) -> None:
    """Guest time zone and UTC offset (guest-get-timezone)."""
    run("timezone", domains, all_, jobs, lambda a, d: {"domain": d, "timezone": a.get_timezone()},
        lambda doc: print_kv([("zone", doc["timezone"].get("zone", "-")),
                              ("offset", f"{doc['timezone']['offset']:+d} s")]))


@read_only_command("time")
@click.option("--set", "set_ns", type=int, metavar="NS", help="Set the guest clock to NS (ns since epoch).")
@click.option("--sync-from-host", is_flag=True, help="Set the guest clock to the host's time.")
def time_(domains: tuple[str, ...], all_: bool, jobs: int, set_ns: int | None, sync_from_host: bool) -> None:
    """Show the guest clock, --set it, or --sync-from-host (guest-get-time / guest-set-time).

    Only showing takes several domains; --set and --sync-from-host take one DOMAIN.
    """
    from virt_qga.workflows.guest_info import format_ns, sync_time_from_host

    if set_ns is not None and sync_from_host:
        raise BadInputError("--set and --sync-from-host are mutually exclusive", field="--set")
    if set_ns is None and not sync_from_host:
        run("time", domains, all_, jobs, _get_time, _time_human)
        return
    if all_ or len(domains) != 1:
        raise click.UsageError("--set and --sync-from-host take exactly one DOMAIN")
    domain = domains[0]
    agent = open_agent(domain)
    if sync_from_host:
        s = sync_time_from_host(agent)
        emit({"domain": domain, "action": "sync-from-host", **s.to_dict()}, lambda d: print_kv([
            ("host time", format_ns(s.host_ns)), ("guest before", format_ns(s.guest_before_ns)),
            ("offset before", f"{s.offset_before_ns / 1e9:+.6f} s"),
            ("guest now", format_ns(s.guest_after_ns))]))
        return
    assert set_ns is not None
    if set_ns <= 0:
        raise BadInputError("--set needs a positive time in ns since the epoch", field="--set")
    agent.set_time(time=set_ns)
    doc = _get_time(agent, domain)
    emit(doc, _time_human)


def _get_time(agent: GuestAgent, domain: str) -> dict[str, Any]:
    import time as _time

    guest = int(agent.get_time())
    host = _time.time_ns()
    return {"domain": domain, "guest_ns": guest, "host_ns": host, "offset_ns": guest - host}


def _time_human(d: dict[str, Any]) -> None:
    from virt_qga.workflows.guest_info import format_ns

    print_kv([("guest", format_ns(d["guest_ns"])), ("host", format_ns(d["host_ns"])),
              ("offset", f"{d['offset_ns'] / 1e9:+.6f} s")])


@read_only_command()
def net(domains: tuple[str, ...], all_: bool, jobs: int) -> None:
    """Guest network interfaces, addresses and counters (guest-network-get-interfaces)."""
    from virt_qga.workflows.guest_info import net_rows

    run("net", domains, all_, jobs, lambda a, d: {"domain": d, "interfaces": a.network_get_interfaces()},
        lambda doc: print_table(["name", "mac", "addresses", "rx bytes", "tx bytes", "errors", "dropped"],
                                net_rows(doc["interfaces"])))


@read_only_command()
def fsinfo(domains: tuple[str, ...], all_: bool, jobs: int) -> None:
    """Guest mounted filesystems (guest-get-fsinfo)."""
    from virt_qga.workflows.guest_info import fs_rows

    run("fsinfo", domains, all_, jobs, lambda a, d: {"domain": d, "filesystems": a.get_fsinfo()},
        lambda doc: print_table(["mountpoint", "type", "device", "used", "total", "disks"],
                                fs_rows(doc["filesystems"])))


@read_only_command()
def disks(domains: tuple[str, ...], all_: bool, jobs: int) -> None:
    """Guest block devices (guest-get-disks)."""

    def human(doc: dict[str, Any]) -> None:
        print_table(["name", "partition", "depends on", "bus", "serial"],
                    [(d.get("name"), "yes" if d.get("partition") else "no",
                      ", ".join(d.get("dependencies", [])) or "-",
                      (d.get("address") or {}).get("bus-type", "-"),
                      (d.get("address") or {}).get("serial", "-")) for d in doc["disks"]])

    run("disks", domains, all_, jobs, lambda a, d: {"domain": d, "disks": a.get_disks()}, human)


@read_only_command()
def diskstats(domains: tuple[str, ...], all_: bool, jobs: int) -> None:
    """Guest disk I/O counters (guest-get-diskstats)."""

    def human(doc: dict[str, Any]) -> None:
        print_table(["name", "major:minor", "read ios", "read sectors", "write ios", "write sectors",
                     "flush ios"],
                    [(d["name"], f"{d['major']}:{d['minor']}",
                      *(str(d["stats"].get(k, "-")) for k in
                        ("read-ios", "read-sectors", "write-ios", "write-sectors", "flush-ios")))
                     for d in doc["diskstats"]])

    run("diskstats", domains, all_, jobs, lambda a, d: {"domain": d, "diskstats": a.get_diskstats()}, human)


@read_only_command()
def cpustats(domains: tuple[str, ...], all_: bool, jobs: int) -> None:
    """Guest CPU time counters, in clock ticks (guest-get-cpustats)."""
    keys = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")

    def human(doc: dict[str, Any]) -> None:
        print_table(["cpu", *keys], [(c.get("cpu"), *(str(c.get(k, "-")) for k in keys))
                                     for c in doc["cpustats"]])

    run("cpustats", domains, all_, jobs, lambda a, d: {"domain": d, "cpustats": a.get_cpustats()}, human)


@click.command()
@domain_argument
def devices(domain: str) -> None:
    """Guest devices and their drivers (guest-get-devices; Windows guests only)."""
    data = open_agent(domain).get_devices()

    def human(rows: list[Any]) -> None:
        def ident(d: Any) -> str:
            i = d.get("id") or {}
            return f"{i.get('vendor-id', 0):04x}:{i.get('device-id', 0):04x}" if i else "-"

        print_table(["driver", "version", "id"],
                    [(d.get("driver-name"), d.get("driver-version", "-"), ident(d)) for d in rows])

    _show(domain, "devices", data, human)


@click.command()
@domain_argument
@click.option("--minimum", type=click.IntRange(min=0), default=None,
              help="Skip free ranges smaller than this many bytes.")
def fstrim(domain: str, minimum: int | None) -> None:
    """Discard unused blocks in the guest's filesystems (guest-fstrim)."""
    data = open_agent(domain).fstrim(minimum=minimum)

    def human(d: Any) -> None:
        print_table(["path", "trimmed", "minimum", "error"],
                    [(p.get("path"), str(p.get("trimmed", "-")), str(p.get("minimum", "-")),
                      p.get("error", "")) for p in d.get("paths", [])])

    _show(domain, "fstrim", data, human)


# ------------------------------------------------------------------ accounts

@click.command()
@domain_argument
@click.argument("user")
@click.option("--password-file", type=click.Path(dir_okay=False, exists=True, allow_dash=True),
              help="Read the new password from this file (first line). Default: stdin.")
@click_options(PasswordOptions, "crypted", "update_password")
def password(domain: str, user: str, password_file: str | None, crypted: bool, update_password: str) -> None:
    """Set USER's password in the guest. The password is read from stdin (first line) or
    --password-file, never from the command line, and is never printed or logged.

    With --update-password on_create (or --crypted and the same hash already in place)
    nothing is changed when the guest's /etc/shadow shows no need; the JSON says changed.
    """
    from virt_qga.workflows.accounts import ensure_password
    from virt_qga.workflows.guest_info import read_secret

    if password_file and password_file != "-":
        with open(password_file, "rb") as fh:
            secret = read_secret(fh)
    else:
        if sys.stdin.isatty():
            import getpass

            secret = getpass.getpass(f"new password for {user}: ")
        else:
            secret = read_secret(sys.stdin.buffer)
    res = ensure_password(open_agent(domain), user, secret, crypted=crypted, update=update_password)
    del secret
    emit({"domain": domain, **res.to_dict()}, lambda d: info(f"{clean(domain)}: {clean(d['msg'])}"))


@click.command("ssh-keys")
@domain_argument
@click.argument("user")
@click.argument("action", type=click.Choice(["list", "add", "remove", "set"]), default="list")
@click.argument("keys", nargs=-1, metavar="[KEY]...")
@click.option("--file", "files", multiple=True, type=click.Path(dir_okay=False, exists=True, allow_dash=True),
              help="Read keys from this authorized_keys-style file ('-': stdin). Repeatable.")
def ssh_keys(domain: str, user: str, action: str, keys: tuple[str, ...], files: tuple[str, ...]) -> None:
    """List, add, remove or set (replace all of) USER's SSH authorized keys.

    \b
    Keys come as arguments (quote each), from --file, or from stdin when the action
    needs keys and none were given. Example:
      virt-qga ssh-keys vm1 tester add --file ~/.ssh/id_ed25519.pub
    """
    from virt_qga.workflows.accounts import ssh_keys as run
    from virt_qga.workflows.guest_info import parse_keys

    wanted = list(keys)
    for path in files:
        if path == "-":
            wanted += parse_keys(sys.stdin.read())
        else:
            with open(path, encoding="utf-8") as fh:
                wanted += parse_keys(fh.read())
    if action in ("add", "remove") and not wanted and not sys.stdin.isatty():
        wanted = parse_keys(sys.stdin.read())
    change = run(open_agent(domain), user, action, wanted)

    def human(d: dict[str, Any]) -> None:
        if action == "list":
            for key in d["keys"]:
                click.echo(clean(key))
        else:
            info(f"{clean(domain)}: {clean(user)} now has {len(d['keys'])} authorized key(s)"
                 f" ({len(d['added'])} added, {len(d['removed'])} removed)")

    emit({"domain": domain, "action": action, **change.to_dict()}, human)
