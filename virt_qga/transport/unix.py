"""Opening the AF_UNIX stream socket of an agent channel, by a deadline.

Split out of :mod:`virt_qga.transport.socket` because it is its own concern: turning
what ``connect(2)`` says into an error a user can act on (no socket there, not a
socket, nobody listening, permission denied, path too long), and waiting out a full
listener backlog (AF_UNIX answers EAGAIN then) no longer than the caller allows.
"""

from __future__ import annotations

import os
import socket
import stat
import time

from virt_qga.errors import (
    AgentNotConfiguredError,
    AgentNotConnectedError,
    AgentUnavailableError,
    BadInputError,
)

__all__ = ["connect_unix", "secs"]


def secs(t: float) -> str:
    """5 -> '5.0', 0.25 -> '0.25': what a user reads in 'no reply within ... s'."""
    return f"{t:.1f}" if round(t, 1) == t else f"{t:.3g}"


def connect_unix(path: str, deadline: float, limit: float) -> socket.socket:
    """A connected, non-blocking stream socket to ``path`` (``@name``: abstract).

    ``deadline`` is on the monotonic clock; ``limit`` is the figure a timeout message
    quotes. Raises only :mod:`virt_qga.errors`.
    """
    addr = "\0" + path[1:] if path.startswith("@") else path
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        while True:
            try:
                sock.connect(addr)
                return sock
            except (BlockingIOError, InterruptedError):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AgentNotConnectedError(
                        f"agent socket {path} did not accept a connection within "
                        f"{secs(limit)} s (listener backlog full)") from None
                time.sleep(min(0.01, left))
    except FileNotFoundError:
        sock.close()
        raise AgentNotConfiguredError(f"no agent socket at {path}") from None
    except NotADirectoryError:
        sock.close()
        raise AgentNotConfiguredError(f"no agent socket at {path} (a parent is not a directory)") \
            from None
    except PermissionError:
        sock.close()
        raise AgentUnavailableError(
            f"permission denied on agent socket {path}: run as a user allowed to open it "
            "(usually root or the owner of the QEMU process)") from None
    except ConnectionRefusedError:
        sock.close()
        if not _is_socket(path):
            raise AgentNotConfiguredError(f"{path} is not a socket") from None
        raise AgentNotConnectedError(f"nothing is listening on agent socket {path} "
                                     "(connection refused; is the VM running?)") from None
    except OSError as exc:
        sock.close()
        if "too long" in str(exc):
            raise BadInputError(f"agent socket path is too long for AF_UNIX: {path}",
                                field="path") from None
        raise AgentNotConnectedError(f"cannot connect to agent socket {path}: "
                                     f"{exc.strerror or exc}") from None
    except BaseException:
        sock.close()
        raise


def _is_socket(path: str) -> bool:
    if path.startswith("@"):
        return True
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return True  # cannot tell; keep the "refused" message
