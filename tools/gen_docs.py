#!/usr/bin/env python3
"""Generate the docs pages that must never drift from the code.

* ``docs/cli.md``: every command's ``--help``, walked from the click tree.
* ``docs/errors.md``: the exit-code table (virt_qga.exitcodes) and the exception
  hierarchy (virt_qga.errors' docstring).

``--check`` exits 1 when a committed page differs from what the code produces (CI).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _help(cmd: click.Command, path: list[str], parent: click.Context | None) -> str:
    ctx = click.Context(cmd, info_name=path[-1], parent=parent, terminal_width=100, max_content_width=100)
    return cmd.get_help(ctx)


def _walk(cmd: click.Command, path: list[str], parent: click.Context | None, out: list[str]) -> None:
    level = min(len(path) + 1, 4)
    out.append(f"{'#' * level} `{' '.join(path)}`\n")
    out.append("```text\n" + _help(cmd, path, parent).rstrip() + "\n```\n")
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd, info_name=path[-1], parent=parent)
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                _walk(sub, [*path, name], ctx, out)


def cli_page() -> str:
    from virt_qga.cli.main import cli

    out = ["# CLI reference\n",
           "Generated from the click commands by `tools/gen_docs.py`; do not edit by hand.\n"]
    _walk(cli, ["virt-qga"], None, out)
    return "\n".join(out)


def errors_page() -> str:
    import virt_qga.errors as errors
    from virt_qga.exitcodes import EXIT_BY_STATE, MEANINGS

    rows = "\n".join(f"| {int(code)} | `{code.name}` | {text} |" for code, text in MEANINGS.items())
    states = "\n".join(
        f"| `{state.value}` | {int(code)} | {'always' if fixed else 'unless the cause has its own code'} | "
        f"{_first_line(state)} |" for state, (code, fixed) in EXIT_BY_STATE.items())
    doc = (errors.__doc__ or "").strip()
    return f"""# Errors and exit codes

Generated from `virt_qga/exitcodes.py` and `virt_qga/errors.py` by `tools/gen_docs.py`.

Every failure is reported as one line on stderr, `virt-qga: error: DOMAIN: message`. With
`--json`, stdout also carries one document `{{"ok": false, "error": CLASS, "message": ...,
"exit_code": N, ...}}` so that scripts never have to parse stderr. Tracebacks appear only with
`-v`.

## Exit codes

| code | name | meaning |
|-----:|------|---------|
{rows}

## Workflow outcomes

A workflow that cannot finish cleanly reports a `state` (in the `--json` error document and
in the Ansible failure) and exits with the code this table gives it. "Unless the cause has
its own code": a clean state reached because of a timeout exits 4, after a signal 130, with
the agent unavailable 3.

| state | exit code | | meaning |
|-------|----------:|-|---------|
{states}

## Exception hierarchy (library users)

```text
{doc}
```
"""


def _first_line(state: object) -> str:
    """The comment above a State member in virt_qga/outcome.py."""
    import inspect

    import virt_qga.outcome as outcome

    lines = inspect.getsource(outcome).splitlines()
    name = getattr(state, "name", "")
    for i, line in enumerate(lines):
        if line.strip().startswith(f"{name} = "):
            notes: list[str] = []
            j = i - 1
            while j >= 0 and lines[j].strip().startswith("#:"):
                notes.insert(0, lines[j].strip()[2:].strip())
                j -= 1
            return " ".join(notes)
    return ""


PAGES = {"docs/cli.md": cli_page, "docs/errors.md": errors_page}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a page is stale")
    opts = parser.parse_args()
    stale = []
    for rel, make in PAGES.items():
        path = ROOT / rel
        text = make()
        if opts.check:
            if not path.exists() or path.read_text() != text:
                stale.append(rel)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"stale generated docs: {', '.join(stale)} (run python tools/gen_docs.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
