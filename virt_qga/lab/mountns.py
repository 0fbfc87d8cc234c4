"""A private mount namespace held open by one process, for a root stack's mounts.

Everything a root stack mounts (its overlay root, proc/sys/dev, the bind mounts of the
lab's folders) is mounted inside a namespace made with ``unshare --mount
--propagation private``, never in the host's. A *holder* process (``sleep infinity``
started by unshare) keeps the namespace alive between commands; commands and daemons
enter it with ``nsenter``. The host's ``/proc/mounts`` never lists any of it, and when
the holder and every process started inside are gone, the kernel drops all of those
mounts at once: a lab killed with SIGKILL cannot leave a mount behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from virt_qga.lab.errors import SETUP_HINT, LabError
from virt_qga.lab.proc import pid_alive, run
from virt_qga.lab.session import SYSTEM_PATH, terminate, which

#: Environment variable naming the namespace's owner (a lab stack dir) in the holder,
#: so a recycled pid in a stale pidfile is never mistaken for it.
TAG_ENV = "VIRT_QGA_LAB_NS"


def mnt_ns(pid: int | str = "self") -> str | None:
    """The mount namespace id of a process (``mnt:[4026531841]``), None if gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    out = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.decode(errors="replace").partition("=")
        if sep:
            out[key] = value
    return out


class MountNamespace:
    """A mount namespace kept alive by its holder process ``pid``."""

    def __init__(self, pid: int, tag: str) -> None:
        self.pid = pid
        self.tag = tag
        ns = mnt_ns(pid)
        if ns is None:
            raise LabError(f"the mount namespace holder {pid} is gone")
        self.ns = ns

    # ------------------------------------------------------------ life cycle

    @classmethod
    def start(cls, pidfile: Path, tag: str, timeout: float = 10.0) -> MountNamespace:
        """A new private mount namespace; its holder's pid goes to ``pidfile``."""
        for tool in ("unshare", "nsenter"):
            if which(tool) is None:
                raise LabError(f"{tool} not found (package util-linux); {SETUP_HINT}")
        ours = mnt_ns()
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sleep", "infinity"],
            env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", TAG_ENV: tag},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
        deadline = time.monotonic() + timeout
        while mnt_ns(proc.pid) in (None, ours):
            if proc.poll() is not None:
                raise LabError(f"unshare --mount failed (exit {proc.returncode}): no private mount namespace")
            if time.monotonic() > deadline:
                proc.kill()
                raise LabError(f"unshare --mount did not start within {timeout:.0f} s")
            time.sleep(0.01)
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        pidfile.write_text(f"{proc.pid}\n")
        return cls(proc.pid, tag)

    @classmethod
    def attach(cls, pidfile: Path, tag: str) -> MountNamespace | None:
        """The namespace recorded in ``pidfile`` if its holder still runs, else None."""
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        if not pid_alive(pid) or _environ(pid).get(TAG_ENV) != tag or mnt_ns(pid) == mnt_ns():
            return None
        try:
            return cls(pid, tag)
        except LabError:
            return None

    def members(self) -> list[int]:
        """Every live process in this namespace (daemons, QEMU, the holder)."""
        out = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and mnt_ns(entry.name) == self.ns and pid_alive(int(entry.name)):
                out.append(int(entry.name))
        return sorted(out)

    def stop(self, grace: float = 5.0) -> None:
        """End every process in the namespace, the holder last: the kernel then drops
        all of its mounts."""
        others = [p for p in self.members() if p != self.pid]
        terminate(others, grace)
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 5.0
        while pid_alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        try:  # reap it if this process started it
            os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if pid_alive(self.pid):
            raise LabError(f"the mount namespace holder {self.pid} did not stop")

    # ------------------------------------------------------------ inside

    def argv(self, argv: Sequence[str | os.PathLike[str]]) -> list[str]:
        return ["nsenter", f"--target={self.pid}", "--mount", "--", *(str(a) for a in argv)]

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        return run(self.argv(argv), timeout=timeout, env=env, check=check)

    def mount(self, *args: str | os.PathLike[str]) -> None:
        self.run(["mount", *args], timeout=30)

    def mountpoints(self, under: Path | None = None) -> list[str]:
        """Mount points of this namespace (optionally only those under ``under``)."""
        try:
            lines = Path(f"/proc/{self.pid}/mountinfo").read_text().splitlines()
        except OSError:
            return []
        points = [ln.split()[4] for ln in lines if len(ln.split()) > 4]
        if under is None:
            return points
        prefix = str(under).rstrip("/")
        return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def host_mounts_under(path: Path) -> list[str]:
    """Mount points in *this* process's namespace at or below ``path``."""
    prefix = str(path).rstrip("/")
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    points = [ln.split()[1].replace("\\040", " ") for ln in lines if len(ln.split()) > 1]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]
