"""The thaw guard: a watchdog process that thaws the guest if the snapshot job cannot.

The job (parent) starts it with :class:`ThawGuard` *before* freezing, in its own session
(so a terminal's SIGINT/SIGHUP does not reach it), and waits for its ``ready`` line:
the guard's start-up (Python, libvirt, the connection) is never paid inside the frozen
window. The conversation is line based, parent stdin -> guard, guard stdout -> parent::

    guard:  ready                 connected, agent answered a ping (libvirt; over a
                                  bare socket the guard connects only to thaw, since
                                  the channel serves one client at a time)
    parent: arm                   sent just before the freeze request: the clock starts
    parent: done                  the job has thawed (or never froze): exit quietly
    guard:  fired REASON COUNT    the guard thawed the guest itself (REASON: deadline,
                                  parent-gone, terminated); COUNT = thawed filesystems

The guard thaws when

* the deadline (``--max-frozen`` seconds after ``arm``) passes without ``done``, or
* its stdin hits EOF while armed (the parent died, even by SIGKILL: the kernel closes
  the pipe), or it receives SIGTERM while armed.

Thawing is retried until ``guest-fsfreeze-status`` says ``thawed`` or ``--give-up``
seconds pass. Every step is appended to the domain's journal event log. The guard also
inherits the job's lock descriptor, so no other job starts on the domain until the
guard is finished.

Run by hand only for debugging: ``python -m virt_qga.workflows.thaw_guard --help``.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

__all__ = ["GuardReport", "ThawGuard", "main"]

READY_TIMEOUT = 15.0


class GuardReport:
    """What the guard said it did (``fired`` lines)."""

    def __init__(self) -> None:
        self.fired: list[tuple[str, str]] = []

    @property
    def thawed_by_guard(self) -> bool:
        return bool(self.fired)


class ThawGuard:
    """Parent-side handle of the guard process."""

    def __init__(self, *, domain: str, uri: str | None, socket: str | None, max_frozen: float,
                 journal_dir: Path, journal_key: str, thaw_timeout: float = 5.0,
                 pass_fds: tuple[int, ...] = ()) -> None:
        self.domain = domain
        self.uri = uri
        self.socket = socket
        self.max_frozen = max_frozen
        self.journal_dir = journal_dir
        self.journal_key = journal_key
        self.thaw_timeout = thaw_timeout
        self.pass_fds = pass_fds
        self.proc: subprocess.Popen[bytes] | None = None
        self.report = GuardReport()
        self._buf = b""
        self.ready = False

    def argv(self) -> list[str]:
        cmd = [sys.executable, "-m", "virt_qga.workflows.thaw_guard",
               "--domain", self.domain, "--max-frozen", repr(float(self.max_frozen)),
               "--journal-dir", str(self.journal_dir), "--journal-key", self.journal_key,
               "--thaw-timeout", repr(float(self.thaw_timeout))]
        if self.socket:
            cmd += ["--socket", self.socket]
        elif self.uri:
            cmd += ["--uri", self.uri]
        return cmd

    def start(self) -> None:
        """Spawn the guard (returns at once; :meth:`wait_ready` confirms it)."""
        from virt_qga.errors import HostError

        env = dict(os.environ)
        # The guard must find this very package even when run from a source tree.
        pkg_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            self.proc = subprocess.Popen(
                self.argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
                pass_fds=self.pass_fds, env=env)
        except OSError as exc:
            raise HostError(f"cannot start the thaw guard: {exc}", domain=self.domain) from exc

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _read_lines(self, timeout: float) -> list[str]:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        lines: list[str] = []
        end = time.monotonic() + timeout
        while True:
            wait = max(0.0, end - time.monotonic())
            r, _, _ = select.select([fd], [], [], wait)
            if not r:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            self._buf += chunk
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                lines.append(line.decode("utf-8", "replace").strip())
            if lines:
                break
        for text in lines:
            if text.startswith("fired"):
                parts = text.split()
                self.report.fired.append((parts[1] if len(parts) > 1 else "?",
                                          parts[2] if len(parts) > 2 else "?"))
        return lines

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Block until the guard says ``ready``; raise if it fails or is too slow."""
        from virt_qga.errors import AgentTimeoutError, HostError

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            lines = self._read_lines(end - time.monotonic())
            for line in lines:
                if line == "ready":
                    self.ready = True
                    return
                if line.startswith("error"):
                    self.stop()
                    raise HostError(f"thaw guard could not start: {line[6:]}", domain=self.domain)
            if self.proc is not None and self.proc.poll() is not None and not lines:
                raise HostError(f"thaw guard exited with status {self.proc.returncode} before "
                                "it was ready", domain=self.domain)
        self.stop()
        raise AgentTimeoutError(f"thaw guard not ready after {timeout:g} s; not freezing",
                                domain=self.domain)

    def _send(self, word: str) -> None:
        if self.proc is None or self.proc.stdin is None:
            return
        try:
            self.proc.stdin.write(word.encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass

    def arm(self) -> None:
        self._send("arm")

    def poll_fired(self) -> bool:
        """Did the guard report having thawed? (non-blocking)"""
        if self.proc is not None and self.proc.stdout is not None:
            self._read_lines(0)
        return self.report.thawed_by_guard

    def stop(self, timeout: float = 5.0) -> None:
        """Tell the guard we are done and reap it (bounded)."""
        if self.proc is None:
            return
        self._send("done")
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            # A guard still busy thawing is left to finish; it only ever thaws.
            return
        if self.proc.stdout is not None:
            try:
                rest = self.proc.stdout.read()
            except (OSError, ValueError):
                rest = b""
            self._buf += rest + b"\n"
            self._read_lines(0)
            self.proc.stdout.close()
        self.proc = None


# ---------------------------------------------------------------------------------
# The guard process itself


class _Guard:
    def __init__(self, args: argparse.Namespace) -> None:
        from virt_qga.workflows.journal import Journal

        self.args = args
        self.journal = Journal(Path(args.journal_dir), args.journal_key)
        self.transport: Any = None
        self.armed_at: float | None = None
        self.out: IO[str] = sys.stdout
        self.fired = False

    def say(self, line: str) -> None:
        try:
            self.out.write(line + "\n")
            self.out.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def connect(self) -> None:
        from virt_qga.workflows.target import Target

        target = Target.resolve(self.args.domain, uri=self.args.uri, socket=self.args.socket)
        self.transport = target.transport(self.args.thaw_timeout)
        if target.via_socket:
            # A chardev socket serves one client at a time and the job holds it: connect
            # only when a thaw is needed (after the job died, its connection is gone).
            return
        self.transport.execute("guest-ping", None, timeout=self.args.thaw_timeout)

    def thaw(self, reason: str) -> int:
        """Thaw until confirmed or --give-up; returns the exit status for the guard."""
        self.journal.event("guard-thawing", reason=reason, guard_pid=os.getpid())
        end = time.monotonic() + self.args.give_up
        attempt = 0
        count: Any = "?"
        while True:
            attempt += 1
            try:
                count = self.transport.execute("guest-fsfreeze-thaw", None,
                                               timeout=self.args.thaw_timeout)
                status = self.transport.execute("guest-fsfreeze-status", None,
                                                timeout=self.args.thaw_timeout)
                if status == "thawed":
                    self.journal.event("guard-thawed", reason=reason, thawed=count, attempts=attempt)
                    self.say(f"fired {reason} {count}")
                    return 0
                self.journal.event("guard-thaw-unconfirmed", status=status, attempt=attempt)
            except Exception as exc:
                self.journal.event("guard-thaw-error", error=f"{type(exc).__name__}: {exc}",
                                   attempt=attempt)
            if time.monotonic() >= end:
                self.journal.event("guard-gave-up", reason=reason, attempts=attempt)
                self.say(f"fired {reason}-unconfirmed {count}")
                return 8
            time.sleep(0.5)

    def run(self) -> int:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            self.connect()
        except Exception as exc:
            self.say(f"error {type(exc).__name__}: {exc}".replace("\n", " "))
            return 1
        self.say("ready")
        self.fired = False
        signal.signal(signal.SIGTERM, self._on_term)
        try:
            return self._loop()
        except _Terminated:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # do not interrupt the thaw
            if self.armed_at is not None and not self.fired:
                return self.thaw("terminated")
            return 0

    def _loop(self) -> int:
        fd = sys.stdin.fileno()
        buf = b""
        while True:
            fired = self.fired
            timeout: float | None = None
            if self.armed_at is not None and not fired:
                timeout = max(0.0, self.armed_at + self.args.max_frozen - time.monotonic())
            try:
                r, _, _ = select.select([fd], [], [], timeout)
            except InterruptedError:
                continue
            if not r:  # deadline
                if self.armed_at is not None and not fired:
                    self.fired = True
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)
                    rc = self.thaw("deadline")
                    if rc:
                        return rc
                continue
            try:
                chunk = os.read(fd, 1024)
            except InterruptedError:
                continue
            if not chunk:  # parent gone
                if self.armed_at is not None and not fired:
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)
                    return self.thaw("parent-gone")
                return 0
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                word = raw.decode("ascii", "replace").strip()
                if word == "arm":
                    self.armed_at = time.monotonic()
                elif word == "done":
                    return 0

    def _on_term(self, signum: int, frame: object) -> None:
        raise _Terminated()


class _Terminated(Exception):
    """SIGTERM reached the guard."""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="virt-qga-thaw-guard", description=__doc__.split("\n\n")[0])
    p.add_argument("--domain", required=True)
    p.add_argument("--uri")
    p.add_argument("--socket")
    p.add_argument("--max-frozen", type=float, required=True)
    p.add_argument("--thaw-timeout", type=float, default=5.0)
    p.add_argument("--give-up", type=float, default=60.0,
                   help="stop retrying the thaw after this many seconds")
    p.add_argument("--journal-dir", required=True)
    p.add_argument("--journal-key", required=True)
    args = p.parse_args(argv)
    return _Guard(args).run()


if __name__ == "__main__":
    sys.exit(main())
