"""The lab user and its session-mode libvirtd.

The lab never touches the machine's own libvirt (``qemu:///system``, its config, its
domains). It runs a *session* libvirtd as an unprivileged user with every XDG
directory under the lab root, so all state lives in one folder:

* run as root: the user is ``qgalab`` (created with ``useradd --system`` if missing);
* run as anyone else: the user is yourself.

The daemon is started explicitly, without ``--timeout``, so it does not exit 120 s
after the last client the way an auto-spawned session daemon does; ``down`` stops it.
If it has gone away anyway (killed, crashed), :meth:`LabSession.ensure_daemon` starts
it again and it re-attaches to the QEMU processes that kept running.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from virt_qga.lab.errors import SETUP_HINT, LabError
from virt_qga.lab.paths import LabPaths
from virt_qga.lab.proc import pid_alive, pid_cmdline, pids_of_uid, run
from virt_qga.lab.reconnect import wait_reconnected

LAB_USER = "qgalab"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def which(tool: str) -> str | None:
    """shutil.which, also looking in the sbin directories a non-root PATH may lack."""
    return shutil.which(tool) or shutil.which(tool, path=SYSTEM_PATH)


class LabSession:
    """The ``host`` stack: the machine's libvirt and QEMU, in session mode."""

    name = "host"
    mode = "session"

    def __init__(self, paths: LabPaths) -> None:
        self.paths = paths
        self.is_root = os.geteuid() == 0
        self.user = LAB_USER if self.is_root else pwd.getpwuid(os.geteuid()).pw_name

    @property
    def uri(self) -> str:
        return f"qemu+unix:///session?socket={self.paths.libvirt_sock}"

    @property
    def emulator(self) -> str:
        return which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"

    @property
    def daemon_log(self) -> Path:
        return self.paths.daemon_log

    def qemu_pidfile(self, name: str) -> Path:
        return self.paths.run / "libvirt" / "qemu" / "run" / f"{name}.pid"

    def defined_xml_files(self) -> list[Path]:
        return sorted((self.paths.xdg_config / "libvirt" / "qemu").glob("*.xml"))

    # ------------------------------------------------------------ user and dirs

    def user_ids(self) -> tuple[int, int] | None:
        try:
            pw = pwd.getpwnam(self.user)
        except KeyError:
            return None
        return pw.pw_uid, pw.pw_gid

    def ensure_user(self) -> tuple[int, int]:
        ids = self.user_ids()
        if ids is not None:
            return ids
        if not self.is_root:
            raise LabError(f"user {self.user} not found")
        useradd = which("useradd")
        if useradd is None:
            raise LabError(f"useradd not found: cannot create the lab user {LAB_USER}; {SETUP_HINT}")
        run(
            [
                useradd,
                "--system",
                "--no-create-home",
                "--home-dir",
                str(self.paths.home),
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                "virt-qga lab",
                LAB_USER,
            ],
            timeout=60,
        )
        ids = self.user_ids()
        if ids is None:
            raise LabError(f"useradd did not create {LAB_USER}")
        return ids

    def prepare_dirs(self) -> None:
        """Create the lab user's own directories (home, XDG, run, guests), owned by it."""
        uid, gid = self.ensure_user()
        for d in (
            self.paths.home,
            self.paths.xdg_config,
            self.paths.xdg_cache,
            self.paths.xdg_data,
            self.paths.run,
            self.paths.guests,
        ):
            d.mkdir(parents=True, exist_ok=True)
            self.chown(d, uid, gid)
        self.paths.run.chmod(0o700)

    def chown(self, path: Path, uid: int | None = None, gid: int | None = None) -> None:
        if not self.is_root:
            return
        if uid is None or gid is None:
            uid, gid = self.ensure_user()
        os.chown(path, uid, gid, follow_symlinks=False)

    def user_env(self) -> dict[str, str]:
        return {
            "HOME": str(self.paths.home),
            "USER": self.user,
            "LOGNAME": self.user,
            "PATH": SYSTEM_PATH,
            "LANG": "C.UTF-8",
            "XDG_RUNTIME_DIR": str(self.paths.run),
            "XDG_CONFIG_HOME": str(self.paths.xdg_config),
            "XDG_CACHE_HOME": str(self.paths.xdg_cache),
            "XDG_DATA_HOME": str(self.paths.xdg_data),
        }

    def as_user(self, argv: list[str]) -> list[str]:
        """``argv`` run as the lab user with the lab's private environment only."""
        env = [f"{k}={v}" for k, v in self.user_env().items()]
        prefix = ["runuser", "-u", self.user, "--"] if self.is_root else []
        return [*prefix, "env", "-i", *env, *argv]

    # ------------------------------------------------------------ daemon

    def daemon_alive(self) -> bool:
        """The daemon's socket accepts a connection."""
        sock_path = str(self.paths.libvirt_sock)
        if not os.path.exists(sock_path):
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2.0)
            try:
                s.connect(sock_path)
            except OSError:
                return False
        return True

    def ensure_daemon(self, timeout: float = 30.0) -> bool:
        """Start the lab's session libvirtd unless it already answers; True if started."""
        if self.daemon_alive():
            return False
        libvirtd = which("libvirtd")
        if libvirtd is None:
            raise LabError(f"libvirtd not found (package libvirt-daemon-system); {SETUP_HINT}")
        self.prepare_dirs()
        self.paths.libvirt_sock.unlink(missing_ok=True)
        log = self.paths.daemon_log.open("ab")
        try:
            subprocess.Popen(
                self.as_user([libvirtd]),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            log.close()
        self.chown(self.paths.daemon_log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.daemon_alive():
                return True
            time.sleep(0.1)
        raise LabError(
            f"the lab libvirtd did not come up within {timeout:.0f} s; see {self.paths.daemon_log}"
        )

    def restart_daemon(self, timeout: float = 30.0) -> None:
        """Stop the lab's libvirtd and start it again; running domains keep running.

        On start libvirt reconnects to every QEMU and re-reads its state (vCPUs
        included), which is what an operator's ``systemctl restart libvirtd`` does.
        Returns once that re-attach is done (:func:`wait_reconnected`): before, the
        live XML is still the old one (a test saw the stale vCPU list under load).
        """
        pids = [p for p in self.daemon_pids() if Path((pid_cmdline(p) or [""])[0]).name == "libvirtd"]
        terminate(pids, grace=10.0)
        self.ensure_daemon(timeout)
        wait_reconnected(self.uri, timeout)

    def daemon_pids(self) -> list[int]:
        """libvirtd/virtlogd of the lab (by pidfile, and every process of qgalab when root)."""
        pids: set[int] = set()
        for pidfile in self.paths.run.glob("libvirt/*.pid"):
            try:
                pid = int(pidfile.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            if pid_alive(pid) and any(
                Path(a).name in ("libvirtd", "virtlogd", "virtlockd") for a in pid_cmdline(pid)[:1]
            ):
                pids.add(pid)
        return sorted(pids)

    def lab_pids(self) -> list[int]:
        """Live processes of *this* lab: the lab user's processes whose environment or
        command line names the lab root (libvirtd, virtlogd, QEMU). Other labs of the
        same user (another root) are left alone."""
        ids = self.user_ids()
        if ids is None:
            return []
        root = str(self.paths.root).rstrip("/") + "/"
        out = []
        for pid in pids_of_uid(ids[0]):
            if pid == os.getpid():
                continue
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
            except OSError:
                environ = ""
            if f"={root}" in environ or any(root in arg for arg in pid_cmdline(pid)):
                out.append(pid)
        return out

    def stop_all(self, grace: float = 5.0) -> None:
        """Stop the daemons and every other process of this lab (see lab_pids)."""
        terminate(sorted(set(self.daemon_pids()) | set(self.lab_pids())), grace)


def terminate(pids: list[int], grace: float = 5.0) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL what is left."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.05)
