#!/usr/bin/env python3
"""Build bwdoctor/kb/vllm_env.json from vLLM wheels.

Reads ``vllm/envs.py`` (the keys of ``environment_variables``, statically, with
:func:`bwdoctor.kb.vllm.read_envs_text`) and the ``Requires-Dist: torch==`` pin of every wheel
given (or folders named after a version holding an extracted ``envs.py``); nothing is imported or
installed. The descriptive fields (``description``, ``sources``) and pins of releases whose wheels
were not scanned are kept from the existing file.

    python tools/build_vllm_env_table.py ~/wheels/vllm-*.whl > bwdoctor/kb/vllm_env.json
"""

from __future__ import annotations

import json
import re
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from packaging.version import Version

from bwdoctor.kb.vllm import read_envs_text

_TORCH_PIN = re.compile(r"^Requires-Dist:\s*torch\s*==\s*([\w.]+)", re.M)


def _torch_pin(z: zipfile.ZipFile) -> str | None:
    for name in z.namelist():
        if name.endswith(".dist-info/METADATA"):
            m = _TORCH_PIN.search(z.read(name).decode("utf-8", errors="replace"))
            return m.group(1) if m else None
    return None


def build_env_table(wheels: Iterable[str | Path]) -> dict[str, Any]:
    """Build the ``vllm_env.json`` table from vLLM wheels (or folders holding an extracted
    ``envs.py``): each variable with the release ranges in which ``environment_variables``
    holds it. Wheels are read as zip files; nothing is imported or installed."""
    per: dict[str, set[str]] = {}
    pins: dict[str, str] = {}
    for w in wheels:
        p = Path(w)
        if p.is_dir():
            m = re.match(r"^(\d[\w.]*)$", p.name)
            ver = m.group(1) if m else None
            text = (p / "envs.py").read_text(encoding="utf-8", errors="replace") if (p / "envs.py").exists() else ""
        else:
            m = re.match(r"^vllm-([^-]+)-", p.name)
            ver = m.group(1) if m else None
            with zipfile.ZipFile(p) as z:
                text = z.read("vllm/envs.py").decode("utf-8", errors="replace")
                pin = _torch_pin(z)
            if ver and pin:
                pins[ver] = pin
        if ver:
            per[ver] = read_envs_text(text)
    versions = sorted(per, key=Version)
    variables: dict[str, dict[str, Any]] = {}
    for name in sorted(set().union(*per.values()) if per else set()):
        ranges: list[list[str | None]] = []
        start = prev = None
        for v in versions:
            if name in per[v]:
                if start is None:
                    start = v
                prev = v
            elif start is not None:
                ranges.append([start, prev])
                start = None
        if start is not None:
            ranges.append([start, None if prev == versions[-1] else prev])
        variables[name] = {"ranges": ranges}
    out: dict[str, Any] = {"versions": versions, "variables": variables}
    if pins:
        out["torch_pins"] = {v: pins[v] for v in sorted(pins, key=Version)}
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    table = build_env_table(argv)
    current = Path(__file__).resolve().parent.parent / "bwdoctor" / "kb" / "vllm_env.json"
    old = json.loads(current.read_text()) if current.exists() else {}
    pins = dict(old.get("torch_pins", {}))
    pins.update(table.get("torch_pins", {}))
    doc = {"description": old.get("description", ""), "sources": old.get("sources", []), "versions": table["versions"],
           "torch_pins": {v: pins[v] for v in sorted(pins, key=Version)}, "variables": table["variables"]}
    json.dump(doc, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
