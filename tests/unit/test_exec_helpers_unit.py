"""exec workflow helpers used by the Ansible connection plugin: stdin capacity, tree kill."""

from __future__ import annotations

import os
import subprocess
import time
from types import SimpleNamespace
from typing import Any

import pytest

from virt_qga.errors import BadInputError
from virt_qga.workflows import exec as gexec


def _agent(kind: str, max_request: int) -> Any:
    return SimpleNamespace(transport=SimpleNamespace(kind=kind, max_request_bytes=max_request), name="t")


def test_stdin_capacity_is_what_start_enforces() -> None:
    lib = _agent("libvirt", 4 * 1024 * 1024 - 4096)
    argv = ["/bin/sh", "-c", "cat"]
    cap = gexec.stdin_capacity(lib, argv)
    # ~140 KiB over libvirt 9.0 (the safe request size), far below the 4 MiB RPC cap
    assert 130 * 1024 < cap < 150 * 1024
    assert gexec.stdin_capacity(lib, ["/bin/sh", "-c", "x" * 5000]) < cap  # argv shares the request
    assert gexec.stdin_capacity(lib, argv, cwd="/tmp") < cap               # cwd adds a wrapper
    sock = _agent("socket", 48 * 1024 * 1024)
    assert gexec.stdin_capacity(sock, argv) > 35 * 1024 * 1024

    calls: list[Any] = []

    def fake_exec(*args: Any, **kwargs: Any) -> dict[str, int]:
        calls.append(kwargs)
        return {"pid": 7}

    lib.exec = fake_exec
    with pytest.raises(BadInputError, match="at most"):
        gexec.start(lib, argv, stdin=b"x" * (cap + 1))
    assert not calls, "refused before anything was sent"
    assert gexec.start(lib, argv, stdin=b"x" * cap) == 7


def test_kill_tree_refuses_init_and_nonsense() -> None:
    for pid in (0, 1, -5):
        with pytest.raises(BadInputError):
            gexec.kill_tree(_agent("socket", 1 << 20), pid)


def test_kill_tree_script_kills_a_real_process_tree() -> None:
    """The script is plain sh + /proc: run it on this machine against a real tree
    (a shell with a background subshell that has children of its own)."""
    tree = subprocess.Popen(["/bin/sh", "-c", "sleep 60 & (sleep 61 & sleep 62) & sleep 63"])
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(_descendants(tree.pid)) < 4:
            time.sleep(0.05)
        before = _descendants(tree.pid)
        assert len(before) >= 4
        out = subprocess.run(["/bin/sh", "-c", gexec.KILL_TREE_SCRIPT, "sh", str(tree.pid)],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        killed = {int(p) for p in out.split()}
        assert {tree.pid, *before} <= killed
        assert tree.wait(timeout=10) == -9
        time.sleep(0.2)
        assert not [p for p in before if _alive(p)]
    finally:
        if tree.poll() is None:
            tree.kill()


def _descendants(root: int) -> list[int]:
    out: list[int] = []
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(") ", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == parent:
                out.append(int(d))
                frontier.append(int(d))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
