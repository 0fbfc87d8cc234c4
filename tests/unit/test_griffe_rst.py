"""tools/griffe_rst.py: the reST habits of the docstrings become Markdown on the API page."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from griffe_rst import to_markdown


def test_roles_become_code_spans() -> None:
    text = "Use :meth:`for_domain` or :class:`~virt_qga.transport.base.Transport`."
    assert to_markdown(text) == "Use `for_domain` or `Transport`."
    assert to_markdown(":func:`virt_qga.errors.is_transient`") == "`virt_qga.errors.is_transient`"
    assert to_markdown(":py:mod:`the table <virt_qga.exitcodes>`") == "`the table`"


def test_literal_block_markers() -> None:
    text = "Grouped like this::\n\n    A\n    +-- B\n\n::\n\n    raw\n"
    assert to_markdown(text) == "Grouped like this:\n\n    A\n    +-- B\n\n\n    raw\n"
    assert to_markdown("``qemu:///system`` stays") == "``qemu:///system`` stays"


def test_option_help_becomes_the_field_text() -> None:
    from griffe_rst import option_help

    assert option_help('mode: str = option("external", choices=MODES, help="Which kind.")\n') \
        == "Which kind."
    src = ('    mode: str = option("x", help=(\n'
           '        f"run {ref(\'command\')} while frozen; see {LIMIT} <UTC>"))\n')
    assert option_help(src) == "run `command` while frozen; see `LIMIT` &lt;UTC&gt;"
    assert option_help("timeout: float = 30.0\n") is None
    assert option_help('x: int = field(default=1, metadata={"help": "no"})\n') is None
