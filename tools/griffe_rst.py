"""Griffe extension for docs/api.md: show virt-qga's reST-flavoured docstrings as Markdown.

The docstrings use a few reStructuredText habits (they read well in ``help()`` and in an
editor): roles such as ``:class:`~virt_qga.errors.BadInputError```, and ``::`` at the end
of a paragraph that introduces an indented literal block. mkdocstrings renders Markdown,
where those would show up verbatim. This extension, loaded by mkdocs.yml, rewrites them
when the API page is built; the source stays as it is.

* ``:role:`~pkg.mod.Name``` -> ```Name``` (the ``~`` keeps the last component, as in Sphinx);
* ``:role:`pkg.mod.Name``` or ``:role:`text <target>``` -> ```pkg.mod.Name``` / ```text```;
* ``text::`` before an indented block -> ``text:`` (Markdown already makes the indented
  block, preceded by a blank line, a code block); a ``::`` line of its own is dropped.
"""

from __future__ import annotations

import re
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
