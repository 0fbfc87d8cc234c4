"""Workflow options, declared once.

A workflow's options are a dataclass (``SnapshotOptions``, ``BackupOptions``, ...).
Each field that a user can set is declared with :func:`option`: its default, its
range or choices, and its help, in neutral words. Everything else is derived:

* the click options of the CLI (:mod:`virt_qga.cli.options`), spelled ``--max-frozen``;
* the Ansible ``argument_spec`` and the ``options:`` documentation of the modules
  (generated into the module files by ``tools/gen_ansible.py``, drift-checked by
  ``./dev lint``), spelled ``max_frozen``;
* validation (:func:`validate`), whose errors carry the neutral field name and refer
  to options with :func:`~virt_qga.errors.option_ref`, so that each front end prints
  them in its own spelling.

Fields declared without :func:`option` (a held lock, the state directory, ...) are
internal: a caller of the Python API may set them, no front end shows them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from virt_qga.errors import BadInputError, option_ref

__all__ = [
    "Spec",
    "ansible_name",
    "cli_flag",
    "declare",
    "declared",
    "from_mapping",
    "option",
    "validate",
]

#: Key of the :class:`Spec` in a dataclass field's metadata.
META_KEY = "virt_qga.option"

#: Kinds of option values. ``host_path`` is a path on the machine running virt-qga
#: (Ansible expands ``~`` in it), ``guest_path`` one inside the guest (never expanded).
KINDS = ("str", "int", "float", "bool", "list", "host_path", "guest_path")


@dataclass(frozen=True)
class Spec:
    """What a user needs to know about one option; see :func:`option`."""

    help: str
    kind: str
    choices: tuple[str, ...] = ()
    min: float | None = None
    #: The lower bound is exclusive: ``(0, 600]``.
    min_open: bool = False
    max: float | None = None
    unit: str = ""
    metavar: str | None = None
    #: CLI spelling when it is not ``--`` plus the name with dashes (``--dir``, ``--disk``).
    flag: str | None = None
    #: Ansible spelling when it is not the field name (``dir`` for ``directory``).
    ansible: str | None = None
    #: A boolean shown as ``--x/--no-x`` on the CLI (default: a plain ``--x`` flag).
    negatable: bool = False

    def range_text(self) -> str:
        """``(0, 600] seconds``, ``at least 1``, or ``""`` without bounds."""
        unit = f" {self.unit}" if self.unit else ""
        if self.min is not None and self.max is not None:
            return f"{'(' if self.min_open else '['}{_num(self.min)}, {_num(self.max)}]{unit}"
        if self.min is not None:
            return f"{'greater than' if self.min_open else 'at least'} {_num(self.min)}{unit}"
        if self.max is not None:
            return f"at most {_num(self.max)}{unit}"
        return ""


def _num(x: float) -> str:
    return f"{x:g}"


def option(default: Any = None, *, help: str, kind: str | None = None, **spec: Any) -> Any:
    """A dataclass field that is a user-visible option (see :class:`Spec` for ``spec``).

    ``kind`` defaults from the default value (bool, int, float, tuple -> list); give it
    when the default is None or the value is a path.
    """
    if kind is None:
        kind = _kind_of(default)
    if kind not in KINDS:
        raise ValueError(f"unknown option kind {kind!r}")
    return dataclasses.field(default=default, metadata={META_KEY: Spec(help=help, kind=kind, **spec)})


def _kind_of(default: Any) -> str:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, tuple):
        return "list"
    if isinstance(default, str):
        return "str"
    raise ValueError("give kind= for an option whose default is None")


#: Every declared option by field name, so that messages can be spelled without
#: knowing which workflow raised them. One name means one option everywhere.
_REGISTRY: dict[str, Spec] = {}

T = TypeVar("T")


def declare(cls: type[T]) -> type[T]:
    """Class decorator for an options dataclass: registers its options' spellings."""
    for name, spec, _ in declared(cls):
        known = _REGISTRY.get(name)
        if known is not None and (known.flag, known.ansible) != (spec.flag, spec.ansible):
            raise ValueError(f"option {name} is spelled differently in {cls.__name__}")
        _REGISTRY[name] = spec
    return cls


def declared(cls: type[Any]) -> Iterator[tuple[str, Spec, Any]]:
    """``(name, spec, default)`` of each user-visible option of ``cls``, in field order."""
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(META_KEY)
        if isinstance(spec, Spec):
            yield f.name, spec, f.default


def cli_flag(name: str) -> str:
    """How the CLI spells option ``name``: ``--max-frozen``, ``--dir``."""
    spec = _REGISTRY.get(name)
    if spec is not None and spec.flag:
        return spec.flag
    return "--" + name.replace("_", "-")


def ansible_name(name: str) -> str:
    """How the Ansible modules spell option ``name``: ``max_frozen``, ``dir``."""
    spec = _REGISTRY.get(name)
    if spec is not None and spec.ansible:
        return spec.ansible
    return name


def validate(opts: Any) -> None:
    """Check every declared option of ``opts`` against its choices and range.

    Raises BadInputError naming the neutral field; a workflow adds its own rules on
    combinations of options after calling this.
    """
    for name, spec, _ in declared(type(opts)):
        value = getattr(opts, name)
        if value is None:
            continue
        if spec.choices and value not in spec.choices:
            raise BadInputError(f"{option_ref(name)} must be one of {', '.join(spec.choices)}, "
                                f"not {value!r}", field=name)
        if spec.kind in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise BadInputError(f"{option_ref(name)} must be a number, not {value!r}", field=name)
            low_bad = spec.min is not None and (value <= spec.min if spec.min_open else value < spec.min)
            high_bad = spec.max is not None and value > spec.max
            if low_bad or high_bad:
                raise BadInputError(f"{option_ref(name)} must be {_range_phrase(spec)}, not {value:g}",
                                    field=name)


def _range_phrase(spec: Spec) -> str:
    text = spec.range_text()
    return f"in {text}" if text.startswith(("(", "[")) else text


def from_mapping(cls: Callable[..., T], values: Mapping[str, Any], *,
                 spell: Callable[[str], str] = str, **extra: Any) -> T:
    """Build options ``cls`` from a front end's values (keyed by its spelling).

    Declared options missing from ``values`` (or None there, for options whose
    default is not None) keep their default; lists become tuples. ``extra`` sets
    internal fields.
    """
    assert isinstance(cls, type)
    kwargs: dict[str, Any] = {}
    for name, spec, default in declared(cls):
        key = spell(name)
        if key not in values:
            continue
        value = values[key]
        if value is None and default is not None:
            continue
        if spec.kind == "list" and value is not None:
            value = tuple(value)
        kwargs[name] = value
    kwargs.update(extra)
    built: T = cls(**kwargs)
    return built
