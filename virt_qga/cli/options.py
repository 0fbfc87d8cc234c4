"""Click options derived from a workflow's declared options (:mod:`virt_qga.options`).

``@click_options(SnapshotOptions, "mode", "disks", ...)`` adds one click option per
named field, with the field's default, range or choices and help; the command then
builds the dataclass with :func:`build`. The spelling (``--max-frozen``, ``--dir``)
comes from the declaration, so messages and help agree with the flags.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from virt_qga.errors import render_options
from virt_qga.options import Spec, cli_flag, declared, from_mapping

__all__ = ["build", "click_options", "help_text"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def help_text(spec: Spec) -> str:
    """The declared help with option references spelled as CLI flags."""
    return render_options(spec.help, cli_flag)


def _param_type(spec: Spec) -> Any:
    if spec.choices:
        return click.Choice(list(spec.choices))
    if spec.kind == "float":
        return click.FloatRange(min=spec.min, max=spec.max, min_open=spec.min_open)
    if spec.kind == "int":
        return click.IntRange(min=None if spec.min is None else int(spec.min),
                              max=None if spec.max is None else int(spec.max), min_open=spec.min_open)
    return None


def _decorator(name: str, spec: Spec, default: Any) -> Callable[[F], F]:
    flag = cli_flag(name)
    kw: dict[str, Any] = {"help": help_text(spec)}
    if spec.kind == "bool":
        if not spec.negatable:
            return click.option(flag, name, is_flag=True, default=default, **kw)
        if default is not None:
            kw["show_default"] = True
        return click.option(f"{flag}/--no-{flag[2:]}", name, default=default, **kw)
    if spec.kind == "list":
        kw.update(multiple=True, metavar=spec.metavar)
        return click.option(flag, name, **kw)
    kw.update(type=_param_type(spec), default=default, metavar=spec.metavar)
    if default is not None:
        kw["show_default"] = True
    return click.option(flag, name, **kw)


def click_options(cls: type[Any], *names: str) -> Callable[[F], F]:
    """Decorator: the click options of ``names`` (fields of ``cls``), in that order."""
    specs = {name: (spec, default) for name, spec, default in declared(cls)}
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise ValueError(f"{cls.__name__} declares no option {', '.join(unknown)}")

    def apply(fn: F) -> F:
        for name in reversed(names):
            spec, default = specs[name]
            fn = _decorator(name, spec, default)(fn)
        return fn

    return apply


def build(cls: Callable[..., T], params: dict[str, Any], **extra: Any) -> T:
    """``cls`` from a click command's parameters (keyed by field name) plus ``extra``."""
    return from_mapping(cls, params, **extra)
