"""The public Python API: every exported name resolves, lazily, and importing the
package itself loads none of the heavy modules."""

from __future__ import annotations

import subprocess
import sys

import virt_qga


def test_all_names_resolve() -> None:
    assert virt_qga.__all__ == sorted(virt_qga._EXPORTS)
    for name in virt_qga.__all__:
        assert getattr(virt_qga, name) is not None, name
    assert virt_qga.run_command.__module__ == "virt_qga.workflows.exec"
    assert issubclass(virt_qga.OperationError, virt_qga.VirtQgaError)


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        virt_qga.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_is_cheap() -> None:
    code = ("import sys, virt_qga; heavy = [m for m in ('libvirt', 'rich', 'tenacity', 'click', "
            "'virt_qga.workflows', 'virt_qga.agent') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
