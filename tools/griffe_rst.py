"""Griffe extensions for docs/api.md: docstrings as Markdown, option help as field docs.

The docstrings use a few reStructuredText habits (they read well in ``help()`` and in an
editor): roles such as ``:class:`~virt_qga.errors.BadInputError```, and ``::`` at the end
of a paragraph that introduces an indented literal block. mkdocstrings renders Markdown,
where those would show up verbatim. This extension, loaded by mkdocs.yml, rewrites them
when the API page is built; the source stays as it is.

* ``:role:`~pkg.mod.Name``` -> ```Name``` (the ``~`` keeps the last component, as in Sphinx);
* ``:role:`pkg.mod.Name``` or ``:role:`text <target>``` -> ```pkg.mod.Name``` / ```text```;
* ``text::`` before an indented block -> ``text:`` (Markdown already makes the indented
  block, preceded by a blank line, a code block); a ``::`` line of its own is dropped.

A second extension, ``OptionHelp``, documents the fields of the workflows' options
dataclasses: each is declared as ``name: type = option(default, help=...)``
(:mod:`virt_qga.options`), and that help, the text the CLI and Ansible show, becomes the
field's docstring on the API page.
"""

from __future__ import annotations

import ast
import re
import textwrap
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?[a-z]+:`(~?)([^`<]*?)(?:\s*<([^`>]+)>)?`")
LITERAL_INTRO = re.compile(r"(?<=\S)::$", re.MULTILINE)
LITERAL_ALONE = re.compile(r"^[ \t]*::[ \t]*$\n?", re.MULTILINE)


def _role(match: re.Match[str]) -> str:
    tilde, text, target = match.group(1), match.group(2).strip(), match.group(3)
    if target:
        return f"`{text}`"
    return f"`{text.rsplit('.', 1)[-1]}`" if tilde else f"`{text}`"


def to_markdown(text: str) -> str:
    """The docstring *text* with roles and literal-block markers in Markdown form."""
    text = ROLE.sub(_role, text)
    text = LITERAL_ALONE.sub("", text)
    return LITERAL_INTRO.sub(":", text)


class RstToMarkdown(griffe.Extension):
    """Rewrite every docstring once the object tree is complete."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)


def _escape(text: str) -> str:
    """Help text is plain text; in Markdown ``<UTC time>`` would be an HTML tag."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _help_text(node: ast.expr) -> str | None:
    """The text of a help= argument: a string, or an f-string whose ``{ref("x")}`` parts
    name option ``x`` (any call with one string argument; other expressions are shown
    as code)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return _escape(node.value)
    if not isinstance(node, ast.JoinedStr):
        return None
    parts = []
    for value in node.values:
        if isinstance(value, ast.Constant):
            parts.append(_escape(str(value.value)))
        elif isinstance(value, ast.FormattedValue):
            expr = value.value
            if (isinstance(expr, ast.Call) and len(expr.args) == 1 and not expr.keywords
                    and isinstance(expr.args[0], ast.Constant) and isinstance(expr.args[0].value, str)):
                parts.append(f"`{expr.args[0].value}`")
            else:
                parts.append(f"`{ast.unparse(expr)}`")
    return "".join(parts)


def option_help(source: str) -> str | None:
    """The help of a ``field: type = option(..., help=...)`` statement, else None."""
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return None
    stmt = tree.body[0] if len(tree.body) == 1 else None
    call = stmt.value if isinstance(stmt, (ast.AnnAssign, ast.Assign)) else None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "option"):
        return None
    for keyword in call.keywords:
        if keyword.arg == "help":
            return _help_text(keyword.value)
    return None


class OptionHelp(griffe.Extension):
    """Give undocumented ``option(...)`` fields their help text as docstring."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if not obj.is_attribute or obj.docstring is not None or obj.lineno is None:
            return
        try:
            source = obj.source
        except (OSError, ValueError):
            return
        text = option_help(source)
        if text:
            obj.docstring = griffe.Docstring(to_markdown(text), parent=obj)
