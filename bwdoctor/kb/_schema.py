"""Strict loading of the knowledge-base files: each ``<name>.json`` is checked against
``schema/<name>.schema.json`` (JSON Schema, the subset below) before any code reads it, so a
misspelt, unknown or missing field fails loading instead of being dropped or defaulted.

Supported keywords: ``type`` (one or a list), ``properties``, ``required``,
``additionalProperties`` (false or a schema), ``patternProperties``, ``items``, ``enum``,
``const``, ``pattern``, ``minimum``, ``minItems``, ``minLength``, ``anyOf``, ``$ref`` (``#/$defs/...``).
The test suite also validates every file with the ``jsonschema`` package.
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

_DIR = Path(__file__).resolve().parent

_TYPES: dict[str, Any] = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
}


class KnowledgeBaseError(ValueError):
    """A knowledge-base file does not match its schema."""


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise KnowledgeBaseError(f"unsupported $ref {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node  # type: ignore[no-any-return]


def errors(value: Any, schema: dict[str, Any], root: dict[str, Any] | None = None, path: str = "$") -> list[str]:
    """Every way ``value`` breaks ``schema`` (empty when it conforms)."""
    root = root if root is not None else schema
    if "$ref" in schema:
        return errors(value, _resolve(schema["$ref"], root), root, path)
    out: list[str] = []
    if "anyOf" in schema:
        if all(errors(value, s, root, path) for s in schema["anyOf"]):
            out.append(f"{path}: matches none of the allowed forms")
        return out
    t = schema.get("type")
    if t is not None:
        names = t if isinstance(t, list) else [t]
        if not any(_is_type(value, n) for n in names):
            return [f"{path}: expected {' or '.join(names)}, got {type(value).__name__}"]
    if "const" in schema and value != schema["const"]:
        out.append(f"{path}: must be {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{path}: {value!r} does not match {schema['pattern']!r}")
        if len(value) < schema.get("minLength", 0):
            out.append(f"{path}: shorter than {schema['minLength']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and "minimum" in schema \
            and value < schema["minimum"]:
        out.append(f"{path}: {value} is below {schema['minimum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            out.append(f"{path}: fewer than {schema['minItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                out.extend(errors(item, schema["items"], root, f"{path}[{i}]"))
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                out.append(f"{path}: missing field {name!r}")
        pattern_props = schema.get("patternProperties", {})
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if k in props:
                out.extend(errors(v, props[k], root, f"{path}.{k}"))
                continue
            matched = [s for p, s in pattern_props.items() if re.search(p, k)]
            for s in matched:
                out.extend(errors(v, s, root, f"{path}.{k}"))
            if matched:
                continue
            if extra is False:
                out.append(f"{path}: unknown field {k!r}")
            elif isinstance(extra, dict):
                out.extend(errors(v, extra, root, f"{path}.{k}"))
    return out


@cache
def schema(name: str) -> dict[str, Any]:
    with open(_DIR / "schema" / f"{name}.schema.json", encoding="utf-8") as fh:
        return json.load(fh)  # type: ignore[no-any-return]


def check(name: str, data: Any) -> Any:
    """Raise :class:`KnowledgeBaseError` naming every problem when ``data`` breaks ``<name>``'s schema."""
    problems = errors(data, schema(name))
    if problems:
        shown = "; ".join(problems[:8]) + (f" (and {len(problems) - 8} more)" if len(problems) > 8 else "")
        raise KnowledgeBaseError(f"bwdoctor/kb/{name}.json does not match its schema: {shown}")
    return data


def load(name: str, path: Path | None = None) -> dict[str, Any]:
    """``<name>.json`` from the knowledge-base folder (or ``path``), checked against its schema.

    A file that passed is remembered in the user's cache folder under a key of its bytes, its
    schema's bytes and this validator's, so a later run skips checking the same bytes again; any
    change to one of them checks afresh."""
    from bwdoctor import usercache

    raw = (path or _DIR / f"{name}.json").read_bytes()
    data = json.loads(raw)
    schema_raw = (_DIR / "schema" / f"{name}.schema.json").read_bytes()
    stamp = f"kb-valid-{name}-{usercache.key_of(raw, schema_raw, _validator_stamp())}.json"
    if usercache.read_json(stamp) == name:
        return data  # type: ignore[no-any-return]
    check(name, data)
    usercache.write_json(stamp, name)
    return data  # type: ignore[no-any-return]


@cache
def _validator_stamp() -> str:
    try:
        st = os.stat(__file__)
    except OSError:
        return "unknown"
    return f"{__file__}:{st.st_size}:{st.st_mtime_ns}"
