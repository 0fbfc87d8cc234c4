"""Per-domain job lock: two snapshot/backup jobs on one domain never interleave.

The lock is ``flock(2)`` on ``<state dir>/locks/<key>.lock``. The kernel drops it when
the last descriptor of the open file goes away, so a job that dies (even by SIGKILL)
never leaves a stale lock behind. The descriptor is handed to the thaw guard
(``pass_fds``) so that the lock stays held until the guard, too, is finished: a new
job cannot start while a dead job's guard is still thawing.

The lock file records the holder's pid and operation for the "busy" message; that
text is advisory only, the flock is the truth.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from virt_qga.errors import HostError, LockBusyError

__all__ = ["DomainLock", "lock_path"]


def lock_path(state_dir: Path, key: str) -> Path:
    return state_dir / "locks" / f"{key}.lock"


class DomainLock:
    """``with DomainLock(path, domain=..., wait=5.0):`` holds the lock or raises
    :class:`LockBusyError` after ``wait`` seconds (0: fail at once)."""

    poll_interval = 0.1

    def __init__(self, path: Path, *, domain: str, operation: str = "snapshot",
                 wait: float = 0.0) -> None:
        self.path = path
        self.domain = domain
        self.operation = operation
        self.wait = max(0.0, wait)
        self.fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise HostError(f"cannot open lock file {self.path}: {exc.strerror}",
                            domain=self.domain) from exc
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    os.close(fd)
                    raise HostError(f"cannot lock {self.path}: {exc.strerror}",
                                    domain=self.domain) from exc
            if time.monotonic() >= deadline:
                holder = self._holder(fd)
                os.close(fd)
                waited = f" after waiting {self.wait:g} s" if self.wait else ""
                raise LockBusyError(
                    f"another virt-qga job holds this domain's lock{waited} ({holder}); "
                    "use --wait-lock SECONDS to wait for it", domain=self.domain)
            time.sleep(self.poll_interval)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid={os.getpid()} operation={self.operation}\n".encode(), 0)
        self.fd = fd

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            text = os.pread(fd, 200, 0).decode("ascii", "replace").strip()
        except OSError:
            text = ""
        return text or "holder unknown"

    def release(self) -> None:
        """Close our descriptor. No ``LOCK_UN``: that would also drop the lock for the
        thaw guard that shares the open file; the kernel releases it on the last close."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> DomainLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
