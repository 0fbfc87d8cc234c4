"""JSON Schema (draft 2020-12) export of the spec's types.

Mirrors the rules of :mod:`virt_qga.spec.validate` as far as JSON Schema can express
them: argument schemas are closed (``additionalProperties: false``, enums restricted),
reply schemas are open (extra members allowed, any string for an enum). One difference
is inherent: the argument validator treats ``None`` as "not given", a JSON Schema
rejects ``null`` for a member that is not of type ``null``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from virt_qga.spec.validate import _INT_RANGES

if TYPE_CHECKING:
    from virt_qga.spec import Command, Spec, TypeExpr

__all__ = ["args_schema", "type_schema"]

DIALECT = "https://json-schema.org/draft/2020-12/schema"


class _Builder:
    def __init__(self, spec: Spec, reply: bool) -> None:
        self.spec = spec
        self.reply = reply
        self.defs: dict[str, Any] = {}

    def ref(self, t: TypeExpr) -> dict[str, Any]:
        if isinstance(t, list):
            return {"type": "array", "items": self.ref(t[0])}
        if t in _INT_RANGES:
            lo, hi = _INT_RANGES[t]
            return {"type": "integer", "minimum": lo, "maximum": hi}
        simple = {"str": {"type": "string"}, "number": {"type": "number"},
                  "bool": {"type": "boolean"}, "null": {"type": "null"}, "any": {}}
        if t in simple:
            return dict(simple[t])
        if t not in self.defs:
            self.defs[t] = {}  # placeholder: recursion-safe
            self.defs[t] = self.named(t)
        return {"$ref": f"#/$defs/{t}"}

    def obj(self, members: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> dict[str, Any]:
        props = {m["name"]: self.ref(m["type"]) for m in members}
        if extra:
            props.update(extra)
        out: dict[str, Any] = {"type": "object", "properties": props,
                               "required": [m["name"] for m in members if not m["optional"]]}
        if not self.reply:
            out["additionalProperties"] = False
        return out

    def named(self, t: str) -> dict[str, Any]:
        s = self.spec
        if t in s.enums:
            if self.reply:
                return {"type": "string"}
            return {"enum": list(s.enum_values(t))}
        if t in s.structs:
            return self.obj(s._struct_members(t))
        if t in s.alternates:
            return {"anyOf": [self.ref(m["type"]) for m in s.alternates[t]["data"]]}
        u = s.unions[t]
        disc = u["discriminator"]
        base = [m for m in u["base"] if m["name"] != disc]
        disc_type = next(m["type"] for m in u["base"] if m["name"] == disc)
        values = list(s.enum_values(disc_type))
        variants = []
        for value, branch in u["data"].items():
            members = base + s._struct_members(branch["type"])
            v = self.obj(members, {disc: {"const": value}})
            v["required"] = [disc, *v["required"]]
            variants.append(v)
        rest = [v for v in values if v not in u["data"]]
        if self.reply:
            rest_schema: dict[str, Any] = {"type": "string", "not": {"enum": list(u["data"])}}
        else:
            rest_schema = {"enum": rest}
        if rest or self.reply:
            v = self.obj(base, {disc: rest_schema})
            v["required"] = [disc, *v["required"]]
            variants.append(v)
        return {"oneOf": variants}


def type_schema(spec: Spec, t: TypeExpr, *, reply: bool = False) -> dict[str, Any]:
    b = _Builder(spec, reply)
    root = b.ref(t)
    return {"$schema": DIALECT, **root, "$defs": b.defs}


def args_schema(spec: Spec, command: Command) -> dict[str, Any]:
    b = _Builder(spec, reply=False)
    members = [{"name": m.name, "type": m.type, "optional": m.optional} for m in command.arg_members]
    root = b.obj(members)
    return {"$schema": DIALECT, "title": f"{command.name} arguments", **root, "$defs": b.defs}
