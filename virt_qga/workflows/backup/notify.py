"""``backup --on-failure CMD``: a host command for mail or chat hooks when a run did not
exit 0.

The command runs through ``/bin/sh -c`` on the machine running virt-qga, with the
run's JSON document (what ``--json`` prints) on its stdin and ``VIRT_QGA_EXIT_CODE``
in its environment. It is bounded by a timeout (killed with its process group when it
overruns); its output goes to temporary files, of which at most :data:`OUTPUT_CAP` bytes per
stream are read back. Whatever it does, it never changes the run's exit code: its outcome is
reported beside the run's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from typing import IO, Any

__all__ = ["DEFAULT_TIMEOUT", "HookResult", "run_on_failure"]

DEFAULT_TIMEOUT = 60.0
#: Bytes of the hook's stdout and stderr kept in the report.
OUTPUT_CAP = 4096


@dataclass
class HookResult:
    command: str
    ok: bool
    exit_code: int | None = None
    error: str | None = None
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_on_failure(command: str, document: dict[str, Any], *,
                   timeout: float = DEFAULT_TIMEOUT) -> HookResult:
    """Run ``command`` with ``document`` as JSON on its stdin; never raises for the
    command's own failure (it is in the result)."""
    import time

    t0 = time.monotonic()
    env = dict(os.environ, VIRT_QGA_EXIT_CODE=str(document.get("exit_code", "")))
    payload = json.dumps(document, default=str).encode()
    # The hook's output goes to unnamed temporary files, not pipes: whatever it prints,
    # virt-qga reads back only the first OUTPUT_CAP bytes of each stream.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE,
                                    stdout=out, stderr=err, env=env, start_new_session=True)
        except OSError as exc:
            return HookResult(command, False, error=f"cannot run /bin/sh: {exc.strerror}")
        try:
            proc.communicate(payload, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return HookResult(command, False, error=f"killed after the {timeout:g} s timeout",
                              stdout=_cap(out), stderr=_cap(err),
                              duration_s=round(time.monotonic() - t0, 3))
        ok = proc.returncode == 0
        return HookResult(command, ok, exit_code=proc.returncode,
                          error=None if ok else f"exited with status {proc.returncode}",
                          stdout=_cap(out), stderr=_cap(err), duration_s=round(time.monotonic() - t0, 3))


def _cap(stream: IO[bytes]) -> str:
    stream.seek(0)
    return stream.read(OUTPUT_CAP).decode(errors="replace")
