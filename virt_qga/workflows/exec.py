"""Run a program in the guest and wait for it: ``guest-exec`` + ``guest-exec-status``.

The agent starts the process and returns a pid at once; the caller then polls
``guest-exec-status`` until it reports ``exited``. That reply is also the only one
carrying the captured output, and once it has been delivered the agent forgets the
process (it is reaped). So:

* Polling uses a doubling backoff (1 ms, 2 ms, ... capped at 100 ms): a short command
  is seen finished within a few ms of its exit, a long one costs at most 10 polls/s.
* Output limits are those of the path the reply travels (see :func:`output_limits`).
  qemu-ga keeps at most 16 MiB per stream (then sets ``*-truncated``). Through libvirt,
  the status reply (base64, +33 %) must fit libvirt's 4 MiB RPC string, and libvirtd
  itself refuses agent replies over 10 MiB: more than ~3 MiB of output in total cannot
  come back through libvirt at all. When that reply fails the process is already gone
  and its output lost; :func:`run` says so instead of leaving the caller guessing.
* Input (``input-data``) is base64 inside the request, so it is bounded by the
  transport's request size; :func:`max_stdin_bytes` computes the raw limit and
  :func:`run` refuses larger input before anything is sent. Over libvirt 9.0 that is
  ~140 KiB, not the 3 MiB the RPC cap suggests (see :data:`LIBVIRT_SAFE_REQUEST`);
  over the socket ~36 MiB (48 MiB request cap of the socket transport).
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from virt_qga.errors import (
    AgentTimeoutError,
    AgentUnavailableError,
    BadInputError,
    CommandNotSupportedError,
    GuestError,
    GuestExecStartError,
    OperationError,
    VirtQgaError,
    option_ref,
)
from virt_qga.exitcodes import ExitCode
from virt_qga.outcome import State

if TYPE_CHECKING:
    from virt_qga.agent import GuestAgent

#: qemu-ga's per-stream capture buffer (GUEST_EXEC_MAX_OUTPUT in qga/commands.c).
AGENT_OUTPUT_CAP = 16 * 1024 * 1024

#: libvirtd refuses an agent reply larger than this (QEMU_AGENT_MAX_RESPONSE_SIZE).
LIBVIRT_AGENT_REPLY_CAP = 10 * 1024 * 1024

#: The ``--capture`` choices of the CLI and what guest-exec is asked for. ``stdout`` and
#: ``stderr`` capture both streams and drop one: qemu-ga 7.2 has no modes, and qemu-ga
#: 10.0.2 with capture-output "stdout" or "stderr" never reports the process as exited
#: (guest-exec-status answers ``exited: false`` forever; seen in the lab).
CAPTURE_MODES: dict[str, str] = {
    "both": "separated",
    "stdout": "separated",
    "stderr": "separated",
    "merged": "merged",
    "none": "none",
}

#: PATH given to the guest process when the caller sets an environment without one:
#: qemu-ga passes ``env`` as the *whole* environment, so PATH would otherwise be empty.
DEFAULT_GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: JSON envelope around input-data in a guest-exec request (command name, keys, quotes).
REQUEST_OVERHEAD = 512

#: Largest agent *request* that libvirt 9.0 delivers intact. Bigger ones (from ~230 KB,
#: i.e. more than the ~208 KiB socket buffer between libvirtd and QEMU's chardev) reach
#: qemu-ga corrupted ("JSON parse error") or hang for the full timeout with "Guest agent
#: not available for now": seen in the lab with qemu-ga 7.2 and 10.0, never over the
#: direct socket. Far below libvirt's documented 4 MiB RPC string cap, which still
#: bounds *replies*.
LIBVIRT_SAFE_REQUEST = 192 * 1024


def effective_request_cap(transport_kind: str, max_request_bytes: int) -> int:
    """The request size we trust on this transport (see LIBVIRT_SAFE_REQUEST)."""
    if transport_kind == "libvirt":
        return min(max_request_bytes, LIBVIRT_SAFE_REQUEST)
    return max_request_bytes


def backoff_delays(first: float = 0.001, factor: float = 2.0, cap: float = 0.1) -> Iterator[float]:
    """Sleep lengths between ``guest-exec-status`` polls: ``first`` doubling up to ``cap``."""
    if first <= 0 or factor < 1 or cap < first:
        raise ValueError("need 0 < first <= cap and factor >= 1")
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * factor)


def b64_len(raw: int) -> int:
    """Length of the base64 text for ``raw`` bytes."""
    return 4 * ((raw + 2) // 3)


def raw_len_for_b64(budget: int) -> int:
    """Largest number of raw bytes whose base64 fits in ``budget`` characters."""
    return max(0, (budget // 4) * 3)


def max_stdin_bytes(max_request_bytes: int, argv: Sequence[str] = (), env: Sequence[str] = ()) -> int:
    """Largest stdin (raw bytes) one guest-exec request can carry on this transport."""
    used = REQUEST_OVERHEAD + sum(len(a.encode()) * 2 + 4 for a in (*argv, *env))
    return raw_len_for_b64(max_request_bytes - used)


@dataclass(frozen=True)
class OutputLimits:
    """What can come back from one process, per stream and in total."""

    per_stream: int            # qemu-ga's capture cap
    total: int                 # what the transport can carry (raw bytes, both streams)


def output_limits(transport_kind: str, max_reply_bytes: int) -> OutputLimits:
    """Output limits over a transport: qemu-ga's 16 MiB/stream, and the reply cap."""
    reply = max_reply_bytes
    if transport_kind == "libvirt":
        reply = min(reply, LIBVIRT_AGENT_REPLY_CAP)
    return OutputLimits(per_stream=AGENT_OUTPUT_CAP, total=raw_len_for_b64(reply - REQUEST_OVERHEAD))


def decode_output(data: bytes) -> tuple[str, str]:
    """(text, encoding) for JSON: ``"utf-8"`` when it decodes cleanly, else ``"base64"``."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def _b64decode(text: str | None, what: str) -> bytes:
    if not text:
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        from virt_qga.errors import ProtocolError

        raise ProtocolError(f"guest-exec-status: {what} is not valid base64: {exc}",
                            command="guest-exec-status") from exc


@dataclass
class ExecResult:
    """The outcome of one guest process."""

    pid: int
    exitcode: int | None
    signal: int | None
    stdout: bytes = b""
    stderr: bytes = b""
    out_truncated: bool = False
    err_truncated: bool = False
    duration: float = 0.0
    polls: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def status(self) -> int:
        """Shell-style status: the exit code, or 128+N for signal N."""
        if self.signal is not None:
            return 128 + self.signal
        return self.exitcode if self.exitcode is not None else int(ExitCode.EXEC_FAILED)

    def to_dict(self) -> dict[str, Any]:
        out, out_enc = decode_output(self.stdout)
        err, err_enc = decode_output(self.stderr)
        return {
            "pid": self.pid,
            "exitcode": self.exitcode,
            "signal": self.signal,
            "status": self.status,
            "stdout": out,
            "stdout_encoding": out_enc,
            "stderr": err,
            "stderr_encoding": err_enc,
            "stdout_bytes": len(self.stdout),
            "stderr_bytes": len(self.stderr),
            "out_truncated": self.out_truncated,
            "err_truncated": self.err_truncated,
            "duration": round(self.duration, 6),
            "polls": self.polls,
            "warnings": list(self.warnings),
        }


def build_command(argv: Sequence[str], cwd: str | None) -> tuple[str, list[str]]:
    """(path, args) for guest-exec. ``cwd`` needs a shell: qemu-ga has no cwd argument."""
    if not argv:
        raise BadInputError("no command given (put it after --)", field="CMD")
    if cwd is None:
        return argv[0], list(argv[1:])
    script = 'cd "$1" || exit 125; shift; exec "$@"'
    return "/bin/sh", ["-c", script, "sh", cwd, *argv]


def build_env(env: Sequence[str]) -> list[str] | None:
    """Validate ``K=V`` items; add a default PATH when the caller gave none."""
    if not env:
        return None
    out: list[str] = []
    for item in env:
        key, sep, _ = item.partition("=")
        if not sep or not key or "\0" in item:
            raise BadInputError(f"--env {item!r} is not KEY=VALUE", field="--env")
        out.append(item)
    if not any(e.startswith("PATH=") for e in out):
        out.append(f"PATH={DEFAULT_GUEST_PATH}")
    return out


def stdin_capacity(agent: GuestAgent, argv: Sequence[str], *, env: Sequence[str] = (),
                   cwd: str | None = None) -> int:
    """Largest stdin (raw bytes) :func:`start` can send with this command on ``agent``'s
    transport; a caller with more data stages it in a guest file instead."""
    path, args = build_command(argv, cwd)
    envl = build_env(env)
    cap = effective_request_cap(agent.transport.kind, agent.transport.max_request_bytes)
    return max_stdin_bytes(cap, [path, *args], envl or ())


def start(agent: GuestAgent, argv: Sequence[str], *, env: Sequence[str] = (),
          stdin: bytes | None = None, capture: str = "both", cwd: str | None = None) -> int:
    """Start the process; return its guest pid. Nothing is waited for."""
    if capture not in CAPTURE_MODES:
        raise BadInputError(f"{option_ref('capture')} must be one of {', '.join(CAPTURE_MODES)}",
                            field="capture")
    path, args = build_command(argv, cwd)
    envl = build_env(env)
    input_data: str | None = None
    if stdin:
        limit = stdin_capacity(agent, argv, env=env, cwd=cwd)
        if len(stdin) > limit:
            raise BadInputError(
                f"stdin is {len(stdin)} bytes; one guest-exec request over {agent.transport.kind} "
                f"carries at most {limit} bytes (base64 inside the request). Copy the data into "
                "a guest file first and redirect from it instead", field="stdin")
        input_data = base64.b64encode(stdin).decode("ascii")
    try:
        reply = agent.exec(path, arg=args, env=envl, input_data=input_data,
                           capture_output=CAPTURE_MODES[capture])
    except GuestError as exc:
        raise classify_start_failure(exc) from exc
    return int(reply["pid"])


#: qemu-ga's words (GLib's g_spawn error) when guest-exec cannot start the program,
#: and whether each means "not found" (else "not executable"). Stable from 2.x to 10.x.
SPAWN_FAILED = "failed to execute child process"
SPAWN_REASONS = {"no such file": True, "permission denied": False}


def classify_start_failure(exc: GuestError) -> GuestError:
    """A :class:`GuestExecStartError` when the agent says the program could not be
    spawned for a reason the shell has a status for; else ``exc`` unchanged."""
    low = exc.message.lower()
    if SPAWN_FAILED in low:
        for words, not_found in SPAWN_REASONS.items():
            if words in low:
                return GuestExecStartError(exc.message, not_found=not_found, error_class=exc.error_class,
                                           command=exc.command, domain=exc.domain)
    return exc


def _status_failed(exc: VirtQgaError, pid: int, agent: GuestAgent) -> OperationError:
    """guest-exec-status itself failed: explain the likely cause.

    Over libvirt an oversized reply (libvirt's "Unable to encode message payload", "No
    complete agent response found in 10485760 bytes") means the agent has already
    reaped the process. An agent that stopped answering (no size hint in the error)
    says nothing about the process: it may still be running.
    """
    text = str(exc)
    low = text.lower()
    size_hint = any(s in low for s in ("too large", "exceeds", "string length", "bytes",
                                       "encode", "message payload", "rpc", "complete agent response"))

    def failed(why: str = "") -> OperationError:
        return OperationError(f"guest-exec-status for pid {pid} failed: {text}{why}",
                              state=State.UNKNOWN,
                              command="guest-exec-status", result={"pid": pid})

    if agent.transport.kind == "libvirt" and (size_hint or not isinstance(exc, AgentUnavailableError)):
        return failed(". The reply was probably larger than libvirt can carry (4 MiB RPC string: "
                      "about 3 MiB of output in total; libvirtd also refuses agent replies over "
                      "10 MiB). The agent has reaped the process, so its exit status and output are "
                      "lost. Redirect large output to a file in the guest (e.g. `-- sh -c 'cmd > "
                      "/tmp/out'`) and fetch it with `virt-qga cp`")
    if isinstance(exc, AgentUnavailableError):
        return failed(f". The guest agent stopped answering; the command may still be running in "
                      f"the guest (pid {pid}), its status is unknown")
    return failed()


def wait(agent: GuestAgent, pid: int, *, timeout: float, capture: str = "both",
         started: float | None = None) -> ExecResult:
    """Poll until ``pid`` exits or ``timeout`` seconds pass (OperationError, exit 124)."""
    t0 = started if started is not None else time.monotonic()
    deadline = t0 + timeout
    delays = backoff_delays()
    polls = 0
    try:
        while True:
            try:
                st = agent.exec_status(pid)
            except AgentTimeoutError:
                if time.monotonic() < deadline:
                    continue  # one slow reply is not the end; the deadline is
                raise
            except VirtQgaError as exc:
                raise _status_failed(exc, pid, agent) from exc
            polls += 1
            if st.get("exited"):
                break
            now = time.monotonic()
            if now >= deadline:
                raise OperationError(
                    f"guest command (pid {pid}) did not finish within {timeout:g} s and is still "
                    f"running in the guest; stop it with `virt-qga exec {agent.name} -- kill {pid}` "
                    f"(or kill -9 {pid})",
                    state=State.RUNNING, undo=f"kill {pid}",
                    command="guest-exec", result={"pid": pid, "running": True,
                                                  "duration": round(now - t0, 6)})
            time.sleep(min(next(delays), max(0.0, deadline - now)))
    except KeyboardInterrupt as exc:
        raise OperationError(
            f"interrupted; the guest command (pid {pid}) may still be running; stop it with "
            f"`virt-qga exec {agent.name} -- kill {pid}`", state=State.RUNNING, cause=exc,
            undo=f"kill {pid}", command="guest-exec", result={"pid": pid}) from None
    result = ExecResult(
        pid=pid,
        exitcode=st.get("exitcode"),
        signal=st.get("signal"),
        stdout=_b64decode(st.get("out-data"), "out-data"),
        stderr=_b64decode(st.get("err-data"), "err-data"),
        out_truncated=bool(st.get("out-truncated", False)),
        err_truncated=bool(st.get("err-truncated", False)),
        duration=time.monotonic() - t0,
        polls=polls,
    )
    # stdout/stderr modes capture both streams (see CAPTURE_MODES): drop the other one.
    if capture == "stdout":
        result.stderr, result.err_truncated = b"", False
    elif capture == "stderr":
        result.stdout, result.out_truncated = b"", False
    mark_truncation(result)
    return result


def mark_truncation(result: ExecResult) -> None:
    """Set the truncation flags and warnings.

    qemu-ga 10.0.2 was seen returning exactly 16 MiB with ``out-truncated: false`` for
    20 MB of output, so a stream of exactly the cap counts as truncated too.
    """
    cap_mib = AGENT_OUTPUT_CAP // (1024 * 1024)
    for name in ("stdout", "stderr"):
        attr = "out_truncated" if name == "stdout" else "err_truncated"
        data: bytes = getattr(result, name)
        if getattr(result, attr):
            result.warnings.append(f"guest {name} was truncated by the agent at {cap_mib} MiB")
        elif len(data) >= AGENT_OUTPUT_CAP:
            setattr(result, attr, True)
            result.warnings.append(f"guest {name} is {len(data)} bytes, qemu-ga's {cap_mib} MiB cap: "
                                   "treated as truncated (the agent did not flag it)")


def run(agent: GuestAgent, argv: Sequence[str], *, timeout: float = 60.0, env: Sequence[str] = (),
        stdin: bytes | None = None, capture: str = "both", cwd: str | None = None) -> ExecResult:
    """Start ``argv`` in the guest and wait for it (see module docstring for limits).

    Raises ``OperationError`` with ``exit_code`` 124 on timeout (``state="running"``,
    ``result["pid"]``), 125 when virt-qga could not start or follow the process;
    ``BadInputError`` for input refused before sending; ``CommandNotSupportedError``
    when guest-exec is disabled.
    """
    t0 = time.monotonic()
    pid = start(agent, argv, env=env, stdin=stdin, capture=capture, cwd=cwd)
    return wait(agent, pid, timeout=timeout, capture=capture, started=t0)


def run_checked(agent: GuestAgent, argv: Sequence[str], *, timeout: float = 60.0,
                stdin: bytes | None = None) -> ExecResult:
    """Run a helper command (used by other workflows); GuestError-like failure on non-zero."""
    from virt_qga.errors import GuestError

    res = run(agent, argv, timeout=timeout, stdin=stdin)
    if res.status != 0:
        err = res.stderr.decode("utf-8", "replace").strip()[:300] or res.stdout.decode(
            "utf-8", "replace").strip()[:300]
        raise GuestError(f"`{' '.join(argv)}` failed in the guest (status {res.status}): {err}",
                         command="guest-exec", domain=agent.name)
    return res


#: Stops guest process $1 and every descendant: collects the tree from /proc/*/stat
#: (field 4 is the parent; the name in field 2 may hold spaces and parentheses, so the
#: fields are taken after its last ") "), SIGSTOPs all of it so nothing forks away, then
#: SIGKILLs it and prints the pids. Only sh builtins, kill and /proc: works on busybox.
KILL_TREE_SCRIPT = r"""
all=" $1 "
changed=1
while [ "$changed" = 1 ]; do
  changed=0
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    case "$all" in *" $p "*) continue ;; esac
    read -r line 2>/dev/null < "$d/stat" || continue
    set -- ${line##*) }
    case "$all" in *" $2 "*) all="$all$p "; changed=1 ;; esac
  done
done
kill -STOP $all 2>/dev/null
kill -KILL $all 2>/dev/null
echo $all
"""


def kill_tree(agent: GuestAgent, pid: int, *, timeout: float = 30.0) -> list[int]:
    """SIGKILL guest process ``pid`` and its descendants (see :data:`KILL_TREE_SCRIPT`);
    returns the pids signalled. For callers that own a command past its deadline
    (:func:`wait` leaves it running, as ``virt-qga exec`` promises)."""
    if pid <= 1:
        raise BadInputError(f"refusing to kill pid {pid}", field="pid")
    res = run(agent, ["/bin/sh", "-c", KILL_TREE_SCRIPT, "sh", str(pid)], timeout=timeout)
    return [int(p) for p in res.stdout.split() if p.isdigit()]


def exec_available(agent: GuestAgent) -> bool:
    """True when guest-exec and guest-exec-status are known and enabled."""
    try:
        caps = agent.capabilities()
    except VirtQgaError:
        return False
    return caps.enabled("guest-exec") and caps.enabled("guest-exec-status")


__all__ = [
    "AGENT_OUTPUT_CAP",
    "CAPTURE_MODES",
    "CommandNotSupportedError",
    "ExecResult",
    "OutputLimits",
    "backoff_delays",
    "build_command",
    "build_env",
    "classify_start_failure",
    "decode_output",
    "exec_available",
    "kill_tree",
    "max_stdin_bytes",
    "output_limits",
    "run",
    "run_checked",
    "start",
    "stdin_capacity",
    "wait",
]
