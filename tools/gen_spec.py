#!/usr/bin/env python3
"""Derive virt-qga's spec data and typed API from QEMU's guest agent QAPI schema.

Reads ``qga-qapi-schema.txt`` (QEMU's ``qga/qapi-schema.json`` with every newline
collapsed into one line) and writes three files, all derived data, no doc prose:

* ``virt_qga/spec/qga.json``  - commands, structs, enums, unions, alternates
* ``virt_qga/types.py``       - TypedDicts / Literal aliases for every type
* ``virt_qga/_commands.py``   - ``GeneratedCommands``: one typed method per command

Usage::

    python tools/gen_spec.py [SCHEMA]           # regenerate
    python tools/gen_spec.py [SCHEMA] --check   # exit 1 if the committed files are stale

Why one file of ~860 lines: it is a stand-alone script (run before the package it
generates can be imported), and its three outputs come from one parsed model; the
scanner, the model and the three writers are sections of it, in that order.

How the collapsed schema is scanned (see docs/spec.md for the long version):

1. Doc blocks are delimited by ``##`` tokens (``## # @name: ... # Since: X ##``).
   Anything inside a doc block is prose, whatever it contains.
2. Outside doc blocks, a definition starts at ``{`` followed by a quoted meta key
   (``'command'``, ``'struct'``, ``'enum'``, ``'union'``, ``'alternate'``, ``'pragma'``,
   ``'include'``) and a colon. Everything else there is free ``#`` comment text.
3. A definition ends at its matching ``}``; the matcher skips quoted strings and
   comments *inside* the definition. Since newlines are gone, an inner comment is taken
   to run up to the next ``'key':`` (that is how QEMU writes them: a comment line
   before a key). The result is parsed with :func:`ast.literal_eval`, so anything the
   scanner got wrong fails loudly instead of producing bad data.
4. The doc block right before a definition must name it (``@name:``); its ``Since:``
   line and per-member ``(since X.Y)`` notes are recorded.
"""

from __future__ import annotations

import argparse
import ast
import json
import keyword
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SCHEMA = REPO.parent / "shared" / "seed" / "qga-qapi-schema.txt"
OUT_JSON = REPO / "virt_qga" / "spec" / "qga.json"
OUT_TYPES = REPO / "virt_qga" / "types.py"
OUT_COMMANDS = REPO / "virt_qga" / "_commands.py"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from summaries import SUMMARIES  # noqa: E402

META_KEYS = ("command", "struct", "enum", "union", "alternate", "pragma", "include")
DEF_START = re.compile(r"\{\s*'(" + "|".join(META_KEYS) + r")'\s*:")
DOC_DELIM = re.compile(r"(?<!\S)##(?!\S)")
# Inside a definition, a '#' comment is taken to end where the next "'key':" starts.
INNER_COMMENT_END = re.compile(r"'[A-Za-z0-9_*.+-]+'\s*:")

BUILTINS = {
    "str", "number", "int", "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64", "size", "bool", "any", "null",
}  # fmt: skip


class SchemaError(Exception):
    """The schema text could not be scanned or does not make sense."""


# ---------------------------------------------------------------------------
# Scanning
# ---------------------------------------------------------------------------


@dataclass
class RawDef:
    meta: str  # 'command', 'struct', ...
    expr: dict[str, Any]
    start: int
    end: int
    doc: str | None  # the doc block text right before it (without the ## delimiters)


def _match_braces(text: str, start: int) -> int:
    """Return the index just past the ``}`` matching the ``{`` at *start*.

    Skips single-quoted strings and ``#`` comments inside the definition.
    """
    depth = 0
    i = start
    n = len(text)
    while i < n:
        c = text[i]
        if c == "'":
            j = text.find("'", i + 1)
            if j < 0:
                raise SchemaError(f"unterminated string at offset {i}")
            i = j + 1
            continue
        if c == "#":
            m = INNER_COMMENT_END.search(text, i)
            if m is None:
                raise SchemaError(f"comment inside definition at offset {i} never ends")
            i = m.start()
            continue
        if c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
            if depth < 0:
                raise SchemaError(f"unbalanced bracket at offset {i}")
        i += 1
    raise SchemaError(f"definition at offset {start} never closes")


def _strip_inner_comments(src: str) -> str:
    """Remove ``#`` comments from a definition's source (same rule as the matcher)."""
    out: list[str] = []
    i = 0
    while i < len(src):
        c = src[i]
        if c == "'":
            j = src.index("'", i + 1)
            out.append(src[i : j + 1])
            i = j + 1
        elif c == "#":
            m = INNER_COMMENT_END.search(src, i)
            assert m is not None  # the matcher already checked
            out.append(" ")
            i = m.start()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _literal(src: str) -> Any:
    """Parse a QAPI literal: Python syntax except JSON's true/false."""
    code = _strip_inner_comments(src)
    # true/false only ever appear as bare words outside strings; strings are quoted
    # with ' so a word-boundary replacement outside quotes is enough.
    parts = re.split(r"('[^']*')", code)
    for k in range(2, len(parts) - 1, 2):
        if not parts[k].strip():  # 'a' 'b' would silently concatenate
            raise SchemaError(f"adjacent strings {parts[k - 1]} {parts[k + 1]} in {src[:80]!r}")
    for k in range(0, len(parts), 2):
        parts[k] = re.sub(r"\btrue\b", "True", parts[k])
        parts[k] = re.sub(r"\bfalse\b", "False", parts[k])
    try:
        value = ast.literal_eval("".join(parts))
    except (ValueError, SyntaxError) as exc:
        raise SchemaError(f"cannot parse definition {src[:80]!r}...: {exc}") from exc
    _check_json_like(value, src)
    return value


def _check_json_like(value: Any, src: str) -> None:
    """Only dicts with str keys, lists, str and bool may appear in a definition."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise SchemaError(f"non-string key {k!r} in {src[:80]!r}")
            _check_json_like(v, src)
    elif isinstance(value, list):
        for v in value:
            _check_json_like(v, src)
    elif not isinstance(value, (str, bool)):
        raise SchemaError(f"unexpected {type(value).__name__} {value!r} in {src[:80]!r}")


def scan(text: str) -> list[RawDef]:
    """Split collapsed schema text into definitions, each with its doc block."""
    defs: list[RawDef] = []
    pos = 0
    n = len(text)
    last_doc: str | None = None
    while pos < n:
        d = DOC_DELIM.search(text, pos)
        m = DEF_START.search(text, pos)
        if m is None:
            break
        if d is not None and d.start() < m.start():
            # A doc block opens before the next definition: skip it whole.
            close = DOC_DELIM.search(text, d.end())
            if close is None:
                raise SchemaError(f"doc block at offset {d.start()} is never closed")
            last_doc = text[d.end() : close.start()]
            pos = close.end()
            continue
        end = _match_braces(text, m.start())
        expr = _literal(text[m.start() : end])
        if not isinstance(expr, dict):
            raise SchemaError(f"definition at offset {m.start()} is not a dict")
        meta = m.group(1)
        # The doc block belongs to this definition only if nothing but free comment
        # text sits between them; a definition in between would have consumed it.
        defs.append(RawDef(meta, expr, m.start(), end, last_doc))
        last_doc = None
        pos = end
    return defs


# ---------------------------------------------------------------------------
# Doc blocks: only versions are taken from them
# ---------------------------------------------------------------------------

_VERSION = r"(\d+\.\d+(?:\.\d+)?)"


def _unwrap(doc: str) -> str:
    """Undo the collapsing: drop the '#' line markers, squeeze whitespace."""
    return re.sub(r"\s+", " ", re.sub(r"(?<!\S)#(?!\S)", " ", doc)).strip()


@dataclass
class DocInfo:
    name: str | None
    since: str | None
    since_note: str | None  # anything after the version on the Since: line
    member_since: dict[str, str] = field(default_factory=dict)
    other_notes: dict[str, str] = field(default_factory=dict)  # e.g. "(since Linux 2.6.11)"


def parse_doc(doc: str | None) -> DocInfo:
    if doc is None:
        return DocInfo(None, None, None)
    flat = _unwrap(doc)
    head = re.match(r"@([\w-]+):", flat)
    name = head.group(1) if head else None
    since = since_note = None
    sm = re.search(r"\bSince: " + _VERSION + r"([^@]*)", flat)
    if sm:
        since = sm.group(1)
        rest = sm.group(2).strip().lstrip(";").strip()
        since_note = rest or None
    info = DocInfo(name, since, since_note)
    # Member sections: "@member: text" up to the next "@x:" or section header.
    body = flat[head.end() :] if head else flat
    section_end = r"(?=\s@[\w-]+:|\s(?:Returns|Since|Errors|Notes?|Example)s?:|$)"
    for mm in re.finditer(r"(?:^|\s)@([\w-]+):(.*?)" + section_end, body):
        member, text = mm.group(1), mm.group(2)
        vm = re.search(r"\(since:? " + _VERSION + r"\)", text)
        if vm:
            info.member_since[member] = vm.group(1)
        else:
            om = re.search(r"\((since [^)]*)\)", text)
            if om:
                info.other_notes[member] = om.group(1)
    return info


def _range_since(note: str | None, values: list[str]) -> dict[str, str]:
    """Read notes like "'unknown' and all entries below since 2.4" on an enum."""
    out: dict[str, str] = {}
    if not note:
        return out
    m = re.search(r"'([\w-]+)' and all entries below since " + _VERSION, note)
    lowered = [v.lower() for v in values]
    if m and m.group(1).lower() in lowered:  # the schema writes 'Unknown' for 'unknown'
        for v in values[lowered.index(m.group(1).lower()) :]:
            out[v] = m.group(2)
    return out


# ---------------------------------------------------------------------------
# Normalisation: QAPI expressions -> qga.json
# ---------------------------------------------------------------------------


def _type_expr(t: Any, where: str) -> str | list[str]:
    if isinstance(t, str):
        return t
    if isinstance(t, list) and len(t) == 1 and isinstance(t[0], str):
        return [t[0]]
    raise SchemaError(f"{where}: bad type expression {t!r}")


def _features(raw: Any, where: str) -> list[dict[str, Any]]:
    out = []
    for f in raw or []:
        if isinstance(f, str):
            out.append({"name": f, "if": None})
        elif isinstance(f, dict) and "name" in f:
            out.append({"name": f["name"], "if": f.get("if")})
        else:
            raise SchemaError(f"{where}: bad feature {f!r}")
    return out


def _members(data: Any, where: str, doc: DocInfo) -> list[dict[str, Any]]:
    if not isinstance(data, dict):
        raise SchemaError(f"{where}: members must be a dict, got {data!r}")
    out = []
    for key, val in data.items():
        optional = key.startswith("*")
        name = key[1:] if optional else key
        cond = None
        feats: list[dict[str, Any]] = []
        if isinstance(val, dict):  # long form {'type': ..., 'if': ..., 'features': ...}
            cond = val.get("if")
            feats = _features(val.get("features"), f"{where}.{name}")
            val = val["type"]
        out.append(
            {
                "name": name,
                "type": _type_expr(val, f"{where}.{name}"),
                "optional": optional,
                "if": cond,
                "features": feats,
                "since": doc.member_since.get(name),
            }
        )
    return out


def _deprecated(feats: list[dict[str, Any]]) -> bool:
    return any(f["name"] == "deprecated" for f in feats)


def normalise(defs: list[RawDef]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "pragma": {},
        "commands": {},
        "structs": {},
        "enums": {},
        "unions": {},
        "alternates": {},
    }
    for d in defs:
        e = d.expr
        if d.meta == "pragma":
            spec["pragma"].update(e["pragma"])
            continue
        if d.meta == "include":
            raise SchemaError("'include' is not supported: the seed schema is a single file")
        name = e[d.meta]
        doc = parse_doc(d.doc)
        if doc.name is not None and doc.name != name:
            raise SchemaError(f"doc block names {doc.name!r} but is followed by {name!r}")
        feats = _features(e.get("features"), name)
        common = {"name": name, "if": e.get("if"), "features": feats, "since": doc.since}
        if d.meta == "command":
            data = e.get("data")
            spec["commands"][name] = {
                **common,
                "data": data if isinstance(data, str) else _members(data or {}, name, doc),
                "boxed": bool(e.get("boxed", False)),
                "returns": _type_expr(e["returns"], name) if "returns" in e else None,
                "success-response": bool(e.get("success-response", True)),
                "allow-preconfig": bool(e.get("allow-preconfig", False)),
                "allow-oob": bool(e.get("allow-oob", False)),
                "coroutine": bool(e.get("coroutine", False)),
                "deprecated": _deprecated(feats),
            }
        elif d.meta == "struct":
            spec["structs"][name] = {
                **common,
                "members": _members(e.get("data", {}), name, doc),
                "base": e.get("base"),
            }
        elif d.meta == "enum":
            raw_values = e["data"]
            names = [v if isinstance(v, str) else v["name"] for v in raw_values]
            ranged = _range_since(doc.since_note, names)
            values = []
            for v in raw_values:
                vname = v if isinstance(v, str) else v["name"]
                values.append(
                    {
                        "name": vname,
                        "if": None if isinstance(v, str) else v.get("if"),
                        "since": doc.member_since.get(vname) or ranged.get(vname),
                    }
                )
            spec["enums"][name] = {**common, "values": values, "prefix": e.get("prefix")}
        elif d.meta == "union":
            base = e.get("base")
            branches = {}
            for bname, bval in e["data"].items():
                if isinstance(bval, dict):
                    branches[bname] = {"type": bval["type"], "if": bval.get("if")}
                else:
                    branches[bname] = {"type": bval, "if": None}
            spec["unions"][name] = {
                **common,
                "base": base if isinstance(base, str) else _members(base or {}, name, doc),
                "discriminator": e["discriminator"],
                "data": branches,
            }
        elif d.meta == "alternate":
            spec["alternates"][name] = {**common, "data": _members(e["data"], name, doc)}
    check(spec)
    return spec


def _all_type_refs(spec: dict[str, Any]) -> list[tuple[str, str]]:
    refs: list[tuple[str, str]] = []

    def add(where: str, t: str | list[str] | None) -> None:
        if t is not None:
            refs.append((where, t[0] if isinstance(t, list) else t))

    for c in spec["commands"].values():
        if isinstance(c["data"], str):
            add(c["name"], c["data"])
        else:
            for m in c["data"]:
                add(f"{c['name']}.{m['name']}", m["type"])
        add(f"{c['name']} returns", c["returns"])
    for s in spec["structs"].values():
        for m in s["members"]:
            add(f"{s['name']}.{m['name']}", m["type"])
        add(f"{s['name']} base", s["base"])
    for u in spec["unions"].values():
        if isinstance(u["base"], str):
            add(f"{u['name']} base", u["base"])
        else:
            for m in u["base"]:
                add(f"{u['name']}.{m['name']}", m["type"])
        for b, br in u["data"].items():
            add(f"{u['name']}.{b}", br["type"])
    for a in spec["alternates"].values():
        for m in a["data"]:
            add(f"{a['name']}.{m['name']}", m["type"])
    return refs


def check(spec: dict[str, Any]) -> None:
    """Cross-check the normalised spec: every type defined, summaries complete."""
    known = set(BUILTINS)
    for kind in ("structs", "enums", "unions", "alternates"):
        known.update(spec[kind])
    for where, t in _all_type_refs(spec):
        if t not in known:
            raise SchemaError(f"{where}: unknown type {t!r}")
    for u in spec["unions"].values():
        if not isinstance(u["base"], list):
            raise SchemaError(f"{u['name']}: only inline union bases are supported")
        disc = next((m for m in u["base"] if m["name"] == u["discriminator"]), None)
        if disc is None or disc["type"] not in spec["enums"]:
            raise SchemaError(f"{u['name']}: discriminator must be an enum member of the base")
        values = {v["name"] for v in spec["enums"][disc["type"]]["values"]}
        for b, br in u["data"].items():
            if b not in values or br["type"] not in spec["structs"]:
                raise SchemaError(f"{u['name']}: bad branch {b!r}")
    for s in spec["structs"].values():
        if s["base"] is not None and s["base"] not in spec["structs"]:
            raise SchemaError(f"{s['name']}: base must be a struct")
    missing = sorted(set(spec["commands"]) - set(SUMMARIES))
    extra = sorted(set(SUMMARIES) - set(spec["commands"]))
    if missing or extra:
        raise SchemaError(f"tools/summaries.py out of date: missing {missing}, unknown {extra}")
    for cmd, text in SUMMARIES.items():
        if len(text) > 95 or "\n" in text:
            raise SchemaError(f"tools/summaries.py: summary of {cmd} must be one line of <= 95 chars")


def render_json(spec: dict[str, Any]) -> str:
    return json.dumps(spec, indent=1, sort_keys=True, ensure_ascii=True) + "\n"


# ---------------------------------------------------------------------------
# Python rendering helpers
# ---------------------------------------------------------------------------

PY_BUILTIN = {
    "str": "str", "number": "float", "bool": "bool", "any": "Any", "null": "None",
    "int": "int", "int8": "int", "int16": "int", "int32": "int", "int64": "int",
    "uint8": "int", "uint16": "int", "uint32": "int", "uint64": "int", "size": "int",
}  # fmt: skip
# Names that must not be shadowed by a TypedDict member in class syntax.
_SHADOW = {"str", "int", "float", "bool", "list", "Any", "None", "Literal", "NotRequired"}

HEADER = (
    "# GENERATED by tools/gen_spec.py from QEMU's guest agent QAPI schema. DO NOT EDIT.\n"
    "# Regenerate with `python tools/gen_spec.py`; CI runs `python tools/gen_spec.py --check`.\n"
)


def py_type(t: str | list[str]) -> str:
    if isinstance(t, list):
        return f"list[{py_type(t[0])}]"
    return PY_BUILTIN.get(t, t)


def py_ident(name: str) -> str:
    ident = name.replace("-", "_").replace(".", "_")
    if keyword.iskeyword(ident) or ident == "self":
        ident += "_"
    return ident


def method_name(command: str) -> str:
    return py_ident(command.removeprefix("guest-"))


def condition_text(cond: Any) -> str:
    if isinstance(cond, str):
        return cond
    if isinstance(cond, dict):
        if "not" in cond:
            return f"not {condition_text(cond['not'])}"
        if "all" in cond:
            return " and ".join(f"({condition_text(c)})" for c in cond["all"])
        if "any" in cond:
            return " or ".join(f"({condition_text(c)})" for c in cond["any"])
    raise SchemaError(f"bad 'if' condition {cond!r}")


def _camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[-_.]", name) if p)


def struct_members(spec: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """All members of a struct, base members first."""
    s = spec["structs"][name]
    base = struct_members(spec, s["base"]) if s["base"] else []
    return base + list(s["members"])


def union_variants(spec: dict[str, Any], name: str) -> list[tuple[str, list[str], list[dict[str, Any]]]]:
    """(class name, discriminator values, flattened members) per variant of a union.

    One variant per branch, plus one (``<Union>Other``) covering every discriminator
    value that has no branch, when there are such values.
    """
    u = spec["unions"][name]
    disc = u["discriminator"]
    disc_enum = next(m["type"] for m in u["base"] if m["name"] == disc)
    values = [v["name"] for v in spec["enums"][disc_enum]["values"]]
    base = [m for m in u["base"] if m["name"] != disc]
    out = []
    for b, br in u["data"].items():
        out.append((name + _camel(b), [b], base + struct_members(spec, br["type"])))
    rest = [v for v in values if v not in u["data"]]
    if rest:
        out.append((name + "Other", rest, base))
    # Keep variant names apart from type names, even when only the case differs
    # (GuestDeviceId's 'pci' branch would otherwise be GuestDeviceIdPci next to
    # the struct GuestDeviceIdPCI).
    taken = {n.lower() for kind in ("structs", "enums", "unions", "alternates") for n in spec[kind]}
    for i, (cls, vals, mem) in enumerate(out):
        if cls.lower() in taken or cls.lower() in {o[0].lower() for o in out[:i]}:
            out[i] = (cls + "Variant", vals, mem)
    return out


def _deps(spec: dict[str, Any], name: str) -> list[str]:
    ts: list[str | list[str]] = []
    if name in spec["structs"]:
        ts = [m["type"] for m in struct_members(spec, name)]
    elif name in spec["unions"]:
        u = spec["unions"][name]
        ts = [m["type"] for m in u["base"]] + [br["type"] for br in u["data"].values()]
        for b in u["data"].values():
            ts += [m["type"] for m in struct_members(spec, b["type"])]
    elif name in spec["alternates"]:
        ts = [m["type"] for m in spec["alternates"][name]["data"]]
    names = [t[0] if isinstance(t, list) else t for t in ts]
    return sorted({n for n in names if n not in BUILTINS})


def type_order(spec: dict[str, Any]) -> list[str]:
    """Enums first, then every other type after the types it refers to."""
    order = sorted(spec["enums"])
    done = set(order)
    active: set[str] = set()

    def visit(n: str) -> None:
        if n in done:
            return
        if n in active:
            raise SchemaError(f"recursive type {n!r} is not supported by types.py")
        active.add(n)
        for d in _deps(spec, n):
            visit(d)
        active.discard(n)
        done.add(n)
        order.append(n)

    for kind in ("alternates", "structs", "unions"):
        for n in sorted(spec[kind]):
            visit(n)
    return order


def _literal_type(values: list[str]) -> str:
    """``Literal[...]``; long ones are laid out one value per line by _typeddict."""
    return "Literal[" + ", ".join(f'"{v}"' for v in values) + "]"


def _member_line(indent: str, key: str, t: str, comma: str) -> list[str]:
    """One TypedDict member; a long ``Literal[...]`` gets one value per line."""
    line = f"{indent}{key}: {t}{comma}"
    if len(line) <= 100 or not t.startswith("Literal["):
        return [line]
    values = t[len("Literal[") : -1].split(", ")
    return [f"{indent}{key}: Literal[", *(f"{indent}    {v}," for v in values), f"{indent}]{comma}"]


def _wrapped(prefix: str, items: list[str], suffix: str) -> list[str]:
    one = prefix + ", ".join(items) + suffix
    if len(one) <= 100:
        return [one]
    return [prefix, *(f"    {it}," for it in items), suffix]


def _typeddict(name: str, members: list[tuple[str, str, bool]], comment: str) -> list[str]:
    """Render a TypedDict; functional syntax when a key is not a plain identifier."""
    functional = any(
        not k.isidentifier() or keyword.iskeyword(k) or k in _SHADOW for k, _, _ in members
    )
    lines = [f"# {comment}"]
    if functional:
        if not members:
            return [*lines, f'{name} = TypedDict("{name}", {{}})']
        lines.append(f"{name} = TypedDict(")
        lines.append(f'    "{name}",')
        lines.append("    {")
        for k, t, opt in members:
            lines += _member_line("        ", f'"{k}"', f"NotRequired[{t}]" if opt else t, ",")
        lines.append("    },")
        lines.append(")")
        return lines
    lines.append(f"class {name}(TypedDict):")
    if not members:
        lines.append("    pass")
    for k, t, opt in members:
        lines += _member_line("    ", k, f"NotRequired[{t}]" if opt else t, "")
    return lines


def _since(obj: dict[str, Any]) -> str:
    return f", since {obj['since']}" if obj.get("since") else ""


def _cond(obj: dict[str, Any]) -> str:
    return f", only if {condition_text(obj['if'])}" if obj.get("if") else ""


def render_types(spec: dict[str, Any]) -> str:
    out = [
        HEADER.rstrip("\n"),
        '"""Typed shapes of everything the guest agent sends and accepts.',
        "",
        "One ``TypedDict`` per QAPI struct, a ``Literal`` alias per enum, a union of",
        "per-variant ``TypedDict`` s per QAPI union and a plain ``|`` alias per alternate.",
        "Optional QAPI members are ``NotRequired``. Member names are the wire names, so",
        "names containing ``-`` use the functional ``TypedDict(...)`` syntax.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Any, Literal, NotRequired, TypeAlias, TypedDict  # noqa: F401",
        "",
    ]
    exported: list[str] = []
    body: list[str] = []
    for name in type_order(spec):
        body.append("")
        if name in spec["enums"]:
            e = spec["enums"][name]
            body.append(f"# enum {name}{_since(e)}{_cond(e)}")
            values = [f'"{v["name"]}"' for v in e["values"]]
            body.extend(_wrapped(f"{name}: TypeAlias = Literal[", values, "]"))
            exported.append(name)
        elif name in spec["alternates"]:
            a = spec["alternates"][name]
            alts = " | ".join(py_type(m["type"]) for m in a["data"])
            body.append(f"# alternate {name}{_since(a)}{_cond(a)}: " + ", ".join(
                f"{m['name']}={m['type']}" for m in a["data"]))
            body.append(f"{name}: TypeAlias = {alts}")
            exported.append(name)
        elif name in spec["structs"]:
            s = spec["structs"][name]
            mem = [(m["name"], py_type(m["type"]), m["optional"]) for m in struct_members(spec, name)]
            body.extend(_typeddict(name, mem, f"struct {name}{_since(s)}{_cond(s)}"))
            exported.append(name)
        else:
            u = spec["unions"][name]
            variants = union_variants(spec, name)
            for cls, values, members in variants:
                mem = [(u["discriminator"], _literal_type(values), False)]
                mem += [(m["name"], py_type(m["type"]), m["optional"]) for m in members]
                which = values[0] if len(values) == 1 else "any value without a branch"
                body.extend(_typeddict(cls, mem, f"union {name}, {u['discriminator']}: {which}"))
                body.append("")
                exported.append(cls)
            body.append(f"# union {name}{_since(u)}{_cond(u)}")
            body.append(f"{name}: TypeAlias = {' | '.join(v[0] for v in variants)}")
            exported.append(name)
    out.append("__all__ = [")
    out.extend(f'    "{n}",' for n in sorted(exported))
    out.append("]")
    out.append("")
    out.extend(body)
    return "\n".join(out) + "\n"


def _wrap_call(prefix: str, items: list[str], suffix: str, indent: str) -> list[str]:
    one = f"{indent}{prefix}{{{', '.join(items)}}}{suffix}"
    if len(one) <= 99:
        return [one]
    lines = [f"{indent}{prefix}{{"]
    lines += [f"{indent}    {it}," for it in items]
    lines.append(f"{indent}}}{suffix}")
    return lines


def render_commands(spec: dict[str, Any]) -> str:
    type_names: set[str] = set()
    methods: list[str] = []
    for cname in sorted(spec["commands"], key=method_name):
        c = spec["commands"][cname]
        if isinstance(c["data"], str):  # 'data': 'SomeStruct' - expand its members
            members = struct_members(spec, c["data"])
        else:
            members = c["data"]
        required = [m for m in members if not m["optional"]]
        optional = [m for m in members if m["optional"]]
        params = ["self"]
        for m in required:
            params.append(f"{py_ident(m['name'])}: {py_type(m['type'])}")
        if optional:
            params.append("*")
            for m in optional:
                params.append(f"{py_ident(m['name'])}: {py_type(m['type'])} | None = None")
        ret = py_type(c["returns"]) if c["returns"] is not None else "None"
        for t in [m["type"] for m in members] + ([c["returns"]] if c["returns"] else []):
            base = t[0] if isinstance(t, list) else t
            if base not in BUILTINS:
                type_names.add(base)
        sig = f"    def {method_name(cname)}({', '.join(params)}) -> {ret}:"
        if len(sig) > 99:
            sig_lines = [f"    def {method_name(cname)}("]
            sig_lines += [f"        {p}," for p in params]
            sig_lines.append(f"    ) -> {ret}:")
        else:
            sig_lines = [sig]
        doc = [f'        """{SUMMARIES[cname]}', ""]
        doc.append(f"        Wire command ``{cname}``; since qemu-ga {c['since'] or '(unknown)'}.")
        if c["if"]:
            doc.append(f"        Only in agents built with ``{condition_text(c['if'])}``.")
        if c["deprecated"]:
            doc.append("        Deprecated by QEMU.")
        if not c["success-response"]:
            doc.append("        The agent sends no response on success: a reply never comes,")
            doc.append("        so success has to be observed on the host (domain state, events).")
        if members:
            doc += ["", "        Args:"]
            for m in members:
                t = m["type"]
                qt = f"[{t[0]}]" if isinstance(t, list) else t
                extra = "optional" if m["optional"] else "required"
                if m["since"]:
                    extra += f", since {m['since']}"
                pname = py_ident(m["name"])
                doc.append(f"            {pname}: ``{m['name']}``, QAPI type ``{qt}`` ({extra}).")
        if c["returns"] is not None:
            t = c["returns"]
            qt = f"[{t[0]}]" if isinstance(t, list) else t
            doc += ["", "        Returns:", f"            QAPI ``{qt}``, checked against the spec."]
        doc.append('        """')
        items = [f'"{m["name"]}": {py_ident(m["name"])}' for m in members]
        if c["returns"] is None:
            call = _wrap_call(f'self._call("{cname}", ', items, ")", "        ")
        else:
            call = _wrap_call(f'return cast("{ret}", self._call("{cname}", ', items, "))", "        ")
        methods.append("\n".join(sig_lines + doc + call))
    imports = sorted(type_names, key=lambda n: (n.lower(), n))
    out = [
        HEADER.rstrip("\n"),
        '"""``GeneratedCommands``: one typed method per guest agent command.',
        "",
        "A mixin. The class that uses it (``virt_qga.agent.GuestAgent``) provides",
        "``_call(command, args)``, which drops ``None`` arguments, validates the rest",
        "against the spec, sends the command and checks the reply.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import TYPE_CHECKING, Any, cast",
        "",
    ]
    if imports:
        # Annotations only (the casts name the types as strings): importing types.py
        # at run time would cost every CLI process a few ms for nothing.
        out.append("if TYPE_CHECKING:")
        out.append("    from virt_qga.types import (")
        out.extend(f"        {n}," for n in imports)
        out.append("    )")
        out.append("")
    out += [
        '__all__ = ["GeneratedCommands"]',
        "",
        "",
        "class GeneratedCommands:",
        '    """Typed wrappers for the 42 guest agent commands (see ``virt_qga.spec``)."""',
        "",
        "    __slots__ = ()",
        "",
        "    def _call(self, command: str, args: dict[str, Any]) -> Any:",
        '        """Send *command* with *args*; provided by the concrete agent class."""',
        "        raise NotImplementedError",
    ]
    for method in methods:
        out.append("")
        out.append(method)
    text = "\n".join(out) + "\n"
    return text.replace("the 42 guest", f"the {len(spec['commands'])} guest")


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def build(schema_path: Path) -> dict[Path, str]:
    text = schema_path.read_text(encoding="utf-8")
    spec = normalise(scan(text))
    return {
        OUT_JSON: render_json(spec),
        OUT_TYPES: render_types(spec),
        OUT_COMMANDS: render_commands(spec),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("schema", nargs="?", type=Path, default=DEFAULT_SCHEMA,
                    help="collapsed QAPI schema (default: %(default)s)")
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if the committed output differs")
    args = ap.parse_args(argv)
    try:
        outputs = build(args.schema)
    except (OSError, SchemaError) as exc:
        print(f"gen_spec: {exc}", file=sys.stderr)
        return 2
    stale = []
    for path, content in outputs.items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != content:
            stale.append(path)
            if not args.check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content, encoding="utf-8")
    rel = [str(p.relative_to(REPO)) for p in stale]
    if args.check:
        if stale:
            print("gen_spec: stale generated files: " + ", ".join(rel)
                  + " (run: python tools/gen_spec.py)", file=sys.stderr)
            return 1
        print("gen_spec: generated files are up to date")
        return 0
    print("gen_spec: wrote " + (", ".join(rel) if rel else "nothing (already up to date)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
