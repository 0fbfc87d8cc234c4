"""The README's library example runs as written against a lab guest (only the domain
name and the URI are replaced), and prints what it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from virt_qga.lab import LabGuest

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README.md has no python example"
    return str(blocks[0])


def test_readme_library_example(fresh_guest: Callable[..., LabGuest]) -> None:
    from virt_qga import commit_back

    g = fresh_guest()
    assert g.uri
    code = readme_example()
    assert '"web1"' in code and '"qemu:///system"' in code
    code = code.replace('"web1"', repr(g.name)).replace('"qemu:///system"', repr(g.uri))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.strip().splitlines()[:2]
    assert "7.2" in first  # the agent version after the OS name
    consistency, window, overlays = second.split(" ", 2)
    assert consistency == "filesystem" and float(window) > 0
    assert ".vqga-" in overlays
    commit_back(g.name, g.uri)  # leave the guest on its base image
