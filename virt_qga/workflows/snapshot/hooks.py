"""What runs around the freeze besides the snapshot itself: the guest hooks
(``pre_freeze``, ``post_thaw``) and the host command of ``mode command``."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from virt_qga.errors import AgentTimeoutError, OperationError
from virt_qga.errors import option_ref as ref
from virt_qga.exitcodes import ExitCode
from virt_qga.outcome import State
from virt_qga.workflows.snapshot.job import Job
from virt_qga.workflows.snapshot.result import ms

__all__ = ["guest_hook", "host_command_env", "run_host_command"]

#: Output kept per stream of a hook or host command in the report.
OUTPUT_TAIL = 400


def guest_hook(job: Job, which: str, cmd: str) -> None:
    """Run a guest hook (``/bin/sh -c``); a failure or timeout raises."""
    from virt_qga.workflows import exec as gexec

    agent = job.open_agent()
    try:
        res = gexec.run(agent, ["/bin/sh", "-c", cmd], timeout=job.opts.hook_timeout)
    except OperationError as exc:
        if exc.exit_code == ExitCode.EXEC_TIMEOUT:  # not an interrupted wait (exit 130)
            raise AgentTimeoutError(f"{which} hook did not finish within {job.opts.hook_timeout:g} s "
                                    f"({ref('hook_timeout')}): {cmd}", domain=job.label) from exc
        raise
    out = res.stdout.decode("utf-8", "replace")[-OUTPUT_TAIL:]
    err = res.stderr.decode("utf-8", "replace")[-OUTPUT_TAIL:]
    job.result.hooks[which] = {"command": cmd, "status": res.status, "stdout": out, "stderr": err,
                               "ms": ms(res.duration)}
    if res.status != 0:
        raise OperationError(f"{which} hook failed with status {res.status}: {cmd}"
                             + (f" ({err.strip()[-200:]})" if err.strip() else ""),
                             state=State.NOTHING_DONE, domain=job.label)


def host_command_env(job: Job) -> dict[str, str]:
    """The environment of the host command: ours plus what it needs to know."""
    env = dict(os.environ)
    env["VIRT_QGA_DOMAIN"] = job.label
    env["VIRT_QGA_URI"] = job.result.uri or ""
    env["VIRT_QGA_SNAPSHOT_NAME"] = job.name
    env["VIRT_QGA_FROZEN"] = "1" if job.freeze else "0"
    pairs = []
    for d, path in job.plan:
        env[f"VIRT_QGA_DISK_{d.target.upper()}"] = path
        pairs.append(f"{d.target}={path}")
    env["VIRT_QGA_DISKS"] = " ".join(pairs)
    return env


def run_host_command(job: Job) -> None:
    """``mode command``: run the host command within ``command_timeout``."""
    command = job.opts.command
    assert command is not None
    timeout = job.opts.command_timeout
    start = time.monotonic()
    proc = subprocess.Popen(["/bin/sh", "-c", command], env=host_command_env(job),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        stop = AgentTimeoutError(f"the snapshot command took longer than {timeout:g} s")
        raise OperationError(f"snapshot command did not finish within {timeout:g} s "
                             f"({ref('command_timeout')}) and was killed: {command}",
                             state=State.ROLLED_BACK, cause=stop, domain=job.label) from None
    except BaseException:
        kill_group(proc)
        raise
    job.result.command = {"command": command, "status": proc.returncode,
                          "ms": ms(time.monotonic() - start),
                          "stdout": out.decode("utf-8", "replace")[-OUTPUT_TAIL:],
                          "stderr": err.decode("utf-8", "replace")[-OUTPUT_TAIL:]}
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip()[-200:]
        raise OperationError(f"snapshot command failed with status {proc.returncode}: {command}"
                             + (f" ({tail})" if tail else ""), state=State.ROLLED_BACK,
                             domain=job.label)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a host command and everything it started (it has its own session)."""
    for sig, wait in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        proc.communicate(timeout=1.0)
    except (subprocess.TimeoutExpired, ValueError, OSError):
        pass
