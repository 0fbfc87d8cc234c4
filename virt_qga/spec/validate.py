"""Validators compiled from the spec: arguments (strict) and replies (tolerant).

Each QAPI type is turned, on first use, into a small closure ``value -> value``
that raises :class:`Invalid` on mismatch. Closures are cached per type and per mode,
so checking a command's arguments is a handful of dict look-ups and ``isinstance``
calls. Paths (``vcpus[0].logical-id``) are only built on the error path: each
container catches ``Invalid`` from a child, pushes its own segment and re-raises.

Two modes:

``args`` (what the caller wants to send) - strict:
    unknown members are errors; enum values must be known; ``None`` for a member
    means "not given" (dropped; an error if the member is required); lists may be
    lists or tuples; the result is a cleaned deep copy.

``reply`` (what the agent sent back) - tolerant where newer agents differ:
    unknown members are ignored and kept; unknown enum values are accepted (any
    string); everything else must match: required members present, right JSON types,
    integers in range, no ``bool`` for an ``int``. The value is returned unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

__all__ = ["Compiler", "Invalid", "Mode", "Validator", "describe_value", "format_path"]

Validator = Callable[[Any], Any]
Mode = Literal["args", "reply"]

_INT_RANGES: dict[str, tuple[int, int]] = {
    "int": (-(2**63), 2**63 - 1),
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint8": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
    "size": (0, 2**64 - 1),
}
BUILTIN_TYPES = frozenset({*_INT_RANGES, "str", "number", "bool", "any", "null"})


class Invalid(Exception):
    """Internal: a value did not match. ``path`` is collected innermost-first."""

    __slots__ = ("message", "path")

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str | int] = []


def describe_value(v: Any, *, show: bool = False) -> str:
    """How a value is named in messages: its type, or (``show``) a short repr."""
    if show and isinstance(v, (str, int, float)) and not isinstance(v, bool):
        text = repr(v)
        return text if len(text) <= 60 else text[:57] + "..."
    if v is None:
        return "null"
    if v is True or v is False:
        return "bool"
    return type(v).__name__


def _mismatch(expected: str, v: Any, *, show: bool = False) -> Invalid:
    return Invalid(f"expected {expected}, got {describe_value(v, show=show)}")


def format_path(path: list[str | int]) -> str:
    """Innermost-first segments -> ``a[0].b``."""
    out = []
    for seg in reversed(path):
        out.append(f"[{seg}]" if isinstance(seg, int) else f".{seg}")
    return "".join(out).lstrip(".")


def _type_key(t: str | list[str]) -> str:
    return f"[{t[0]}]" if isinstance(t, list) else t


class Compiler:
    """Builds and caches validators for one spec's types, in one mode."""

    def __init__(self, data: dict[str, Any], mode: Mode) -> None:
        self.data = data
        self.mode: Mode = mode
        self.strict = mode == "args"
        self._cache: dict[str, Validator] = {}

    # -- descriptions used in "expected ..." ----------------------------------------

    def describe(self, t: str | list[str]) -> str:
        if isinstance(t, list):
            return f"list of {self.describe(t[0])}"
        if t in _INT_RANGES:
            return "int" if t in ("int", "int64") else f"int ({t})"
        if t == "number":
            return "number"
        if t in BUILTIN_TYPES:
            return t
        if t in self.data["enums"]:
            if not self.strict:
                return "str"
            return "one of " + ", ".join(repr(v) for v in self.enum_values(t))
        if t in self.data["alternates"]:
            return " or ".join(self.describe(m["type"]) for m in self.data["alternates"][t]["data"])
        return f"dict ({t})"

    def enum_values(self, name: str) -> list[str]:
        return [v["name"] for v in self.data["enums"][name]["values"]]

    # -- compilation ----------------------------------------------------------------

    def type(self, t: str | list[str]) -> Validator:
        key = _type_key(t)
        fn = self._cache.get(key)
        if fn is not None:
            return fn
        # Placeholder first, so a (future) recursive type compiles into a trampoline.
        cell: list[Validator] = []
        self._cache[key] = lambda v: cell[0](v)
        fn = self._build(t)
        cell.append(fn)
        self._cache[key] = fn
        return fn

    def _build(self, t: str | list[str]) -> Validator:
        if isinstance(t, list):
            return self._list(t[0])
        if t in BUILTIN_TYPES:
            return self._builtin(t)
        d = self.data
        if t in d["enums"]:
            return self._enum(t)
        if t in d["structs"]:
            return self.members(self.struct_members(t), owner=t)
        if t in d["unions"]:
            return self._union(t)
        if t in d["alternates"]:
            return self._alternate(t)
        raise KeyError(f"unknown QAPI type {t!r}")

    def struct_members(self, name: str) -> list[dict[str, Any]]:
        s = self.data["structs"][name]
        base = self.struct_members(s["base"]) if s["base"] else []
        return base + list(s["members"])

    def _builtin(self, t: str) -> Validator:
        if t in _INT_RANGES:
            lo, hi = _INT_RANGES[t]
            expected = "int" if t in ("int", "int64") else f"int ({t})"
            in_range = f"int in range {lo}..{hi} ({t})"

            def check_int(v: Any) -> Any:
                if isinstance(v, int) and not isinstance(v, bool):
                    if lo <= v <= hi:
                        return v
                    raise _mismatch(in_range, v, show=True)
                raise _mismatch(expected, v)

            return check_int
        if t == "str":

            def check_str(v: Any) -> Any:
                if isinstance(v, str):
                    return v
                raise _mismatch("str", v)

            return check_str
        if t == "bool":

            def check_bool(v: Any) -> Any:
                if v is True or v is False:
                    return v
                raise _mismatch("bool", v)

            return check_bool
        if t == "number":
            strict = self.strict

            def check_number(v: Any) -> Any:
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    if strict and isinstance(v, float) and not math.isfinite(v):
                        raise _mismatch("finite number", v, show=True)
                    return v
                raise _mismatch("number", v)

            return check_number
        if t == "null":

            def check_null(v: Any) -> Any:
                if v is None:
                    return v
                raise _mismatch("null", v)

            return check_null

        def check_any(v: Any) -> Any:  # 'any'
            return v

        return check_any

    def _enum(self, name: str) -> Validator:
        values = frozenset(self.enum_values(name))
        if not self.strict:

            def check_enum_reply(v: Any) -> Any:
                if isinstance(v, str):  # newer agents may add values
                    return v
                raise _mismatch("str", v)

            return check_enum_reply
        expected = self.describe(name)

        def check_enum(v: Any) -> Any:
            if isinstance(v, str) and v in values:
                return v
            raise _mismatch(expected, v, show=isinstance(v, str))

        return check_enum

    def _list(self, item_type: str) -> Validator:
        item = self.type(item_type)
        expected = self.describe([item_type])
        if self.strict:

            def check_list_args(v: Any) -> Any:
                if not isinstance(v, (list, tuple)):
                    raise _mismatch(expected, v)
                out = []
                for i, x in enumerate(v):
                    try:
                        out.append(item(x))
                    except Invalid as e:
                        e.path.append(i)
                        raise
                return out

            return check_list_args

        def check_list_reply(v: Any) -> Any:
            if type(v) is not list:
                raise _mismatch(expected, v)
            for i, x in enumerate(v):
                try:
                    item(x)
                except Invalid as e:
                    e.path.append(i)
                    raise
            return v

        return check_list_reply

    def members(self, members: list[dict[str, Any]], *, owner: str, command: str | None = None) -> Validator:
        """Validator for a dict with these QAPI members (a struct, a union variant or a
        command's arguments when ``command`` is given)."""
        validators: dict[str, Validator] = {}
        required: list[str] = []
        for m in members:
            validators[m["name"]] = self.type(m["type"])
            if not m["optional"]:
                required.append(m["name"])
        n_required = len(required)
        types = {m["name"]: m["type"] for m in members}
        what = "dict" if command is None else "arguments as a dict"
        expected_self = f"dict ({owner})" if command is None else what
        noun = "member" if command is None else "argument"

        def missing(v: dict[str, Any]) -> Invalid:
            for name in required:
                if v.get(name) is None:
                    e = Invalid(f"required {noun} missing (expected {self.describe(types[name])})")
                    e.path.append(name)
                    return e
            raise AssertionError("unreachable")  # pragma: no cover

        if self.strict:
            names = list(validators)

            def unknown(key: Any) -> Invalid:
                from difflib import get_close_matches

                if not isinstance(key, str):
                    return Invalid(f"{noun} names must be str, got {describe_value(key)}")
                if command is not None:
                    takes = f"{command} takes: {', '.join(names)}" if names else f"{command} takes none"
                else:
                    takes = f"{owner} has: {', '.join(names)}"
                close = get_close_matches(key, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                e = Invalid(f"unknown {noun} ({takes}{hint})")
                e.path.append(key)
                return e

            def check_members_args(v: Any) -> Any:
                if not isinstance(v, dict):
                    raise _mismatch(expected_self, v)
                out: dict[str, Any] = {}
                for k, x in v.items():
                    fn = validators.get(k)
                    if fn is None:
                        raise unknown(k)
                    if x is None:  # None means "not given"
                        continue
                    try:
                        out[k] = fn(x)
                    except Invalid as e:
                        e.path.append(k)
                        raise
                if n_required:
                    for name in required:
                        if name not in out:
                            raise missing(out)
                return out

            return check_members_args

        items = list(validators.items())
        req = frozenset(required)

        def check_members_reply(v: Any) -> Any:
            if type(v) is not dict:
                raise _mismatch(expected_self, v)
            present = 0
            for k, fn in items:
                if k in v:
                    if k in req:
                        present += 1
                    try:
                        fn(v[k])
                    except Invalid as e:
                        e.path.append(k)
                        raise
            if present != n_required:
                raise missing(v)
            return v

        return check_members_reply

    def _union(self, name: str) -> Validator:
        u = self.data["unions"][name]
        disc = u["discriminator"]
        base: list[dict[str, Any]] = list(u["base"])
        disc_type = next(m["type"] for m in base if m["name"] == disc)
        values = self.enum_values(disc_type)
        variants: dict[str, Validator] = {}
        base_only = self.members(base, owner=name)
        for value in values:
            branch = u["data"].get(value)
            if branch is None:
                variants[value] = base_only
            else:
                variants[value] = self.members(base + self.struct_members(branch["type"]), owner=name)
        check_disc = self.type(disc_type)
        expected_self = f"dict ({name})"
        strict = self.strict

        def check_union(v: Any) -> Any:
            if type(v) is not dict and not (strict and isinstance(v, dict)):
                raise _mismatch(expected_self, v)
            tag = v.get(disc)
            if tag is None:
                e = Invalid(f"required member missing (expected {self.describe(disc_type)})")
                e.path.append(disc)
                raise e
            try:
                check_disc(tag)
            except Invalid as e:
                e.path.append(disc)
                raise
            fn = variants.get(tag, base_only)  # reply mode: unknown tag -> base members only
            return fn(v)

        return check_union

    def _alternate(self, name: str) -> Validator:
        branches = [(m["type"], self.type(m["type"])) for m in self.data["alternates"][name]["data"]]
        expected = self.describe(name)
        by_kind: dict[str, Validator] = {}
        for t, fn in branches:
            for kind in self._json_kinds(t):
                by_kind.setdefault(kind, fn)

        def check_alternate(v: Any) -> Any:
            fn = by_kind.get(_json_kind(v))
            if fn is None:
                raise _mismatch(expected, v)
            try:
                return fn(v)
            except Invalid as e:
                if not e.path:  # the branch itself rejected it: name every choice
                    raise _mismatch(expected, v, show=True) from None
                raise

        return check_alternate

    def _json_kinds(self, t: str | list[str]) -> set[str]:
        if isinstance(t, list):
            return {"list"}
        if t in _INT_RANGES:
            return {"int"}
        if t == "number":
            return {"int", "float"}
        if t in ("str",) or t in self.data["enums"]:
            return {"str"}
        if t in ("bool", "null"):
            return {t}
        if t == "any":
            return {"int", "float", "str", "bool", "null", "list", "dict"}
        if t in self.data["alternates"]:
            out: set[str] = set()
            for m in self.data["alternates"][t]["data"]:
                out |= self._json_kinds(m["type"])
            return out
        return {"dict"}


def _json_kind(v: Any) -> str:
    if v is None:
        return "null"
    if v is True or v is False:
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    if isinstance(v, (list, tuple)):
        return "list"
    if isinstance(v, dict):
        return "dict"
    return type(v).__name__
