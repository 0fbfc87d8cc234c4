"""Where the lab keeps things.

Default root: ``$VIRT_QGA_LAB_DIR`` if set; else ``/var/lib/virt-qga/lab`` when run as
root (the lab's unprivileged daemon user must be able to reach the images, and it
cannot traverse ``/root``, mode 700); else ``~/.cache/virt-qga/lab``.

Layout under the root::

    lock                  flock(2) serialising build/up/down
    apt/                  private apt configuration, lists and archive cache
    debs/                 downloaded .deb files (kernel, agents, libraries)
    images/               build results, world-readable: kernel, initramfs per agent,
                          the base data disk, fsprobe; ``manifest-<agent>.json``
    home/                 HOME and XDG config/cache/data dirs of the lab daemon user
    run/                  its XDG_RUNTIME_DIR: run/libvirt/libvirt-sock
    guests/<name>/        one guest: meta.json, data.qcow2, console.log, sockets, pid
    roots/                built roots of the root stacks (debian13-<key>/, <stack>.json),
                          debootstrap and apt archives to rebuild them (cache-<release>/)
    stacks/<stack>/       a running root stack: ns.pid (its mount namespace), the
                          overlay (upper/, work/, root/), run/ (sockets, pidfiles), log/

Paths stay short on purpose: UNIX socket paths are limited to 107 bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_LAB_DIR = "VIRT_QGA_LAB_DIR"
ROOT_DEFAULT = Path("/var/lib/virt-qga/lab")


def default_root() -> Path:
    env = os.environ.get(ENV_LAB_DIR)
    if env:
        return Path(env).expanduser().absolute()
    if os.geteuid() == 0:
        return ROOT_DEFAULT
    return Path.home() / ".cache" / "virt-qga" / "lab"


@dataclass(frozen=True)
class LabPaths:
    root: Path

    @property
    def lock(self) -> Path:
        return self.root / "lock"

    @property
    def apt(self) -> Path:
        return self.root / "apt"

    @property
    def debs(self) -> Path:
        return self.root / "debs"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def xdg_config(self) -> Path:
        return self.home / "c"

    @property
    def xdg_cache(self) -> Path:
        return self.home / "k"

    @property
    def xdg_data(self) -> Path:
        return self.home / "d"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def libvirt_sock(self) -> Path:
        return self.run / "libvirt" / "libvirt-sock"

    @property
    def libvirtd_pidfile(self) -> Path:
        return self.run / "libvirt" / "libvirtd.pid"

    @property
    def daemon_log(self) -> Path:
        return self.home / "libvirtd.log"

    @property
    def guests(self) -> Path:
        return self.root / "guests"

    @property
    def roots(self) -> Path:
        return self.root / "roots"

    def stack_dir(self, name: str) -> Path:
        return self.root / "stacks" / name

    def guest_dir(self, name: str) -> Path:
        return self.guests / name

    def manifest(self, agent: str) -> Path:
        return self.images / f"manifest-{agent}.json"
