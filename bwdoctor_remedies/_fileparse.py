"""Is a file edit safe? Multi-line constructs, and a re-parse of the result with the library the
evidence parsers use for that kind of file (PyYAML for compose, dockerfile-parse, python-dotenv).

Used by the remedies before they offer a patch: an edit that touches a construct spanning several
lines, or whose result no longer parses the same way, becomes advice to edit by hand.
"""

from __future__ import annotations

import difflib
import io
import logging
import re
from typing import Any

_BACKSLASH = re.compile(r"\\\s*$")
_HEREDOC = re.compile(r"<<-?\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)['\"]?")
_ENV_START = re.compile(r"^\s*(?:export\s+)?[A-Za-z_][A-Za-z0-9_.]*\s*=\s*(?P<q>[\"'])")


def _dockerfile_regions(lines: list[str]) -> set[int]:
    out: set[int] = set()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("#"):
            i += 1
            continue
        m = _HEREDOC.search(line)
        if m and not line.lstrip().startswith("#"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == m.group(1)), len(lines) - 1)
            out.update(range(i, end + 1))
            i = end + 1
            continue
        if _BACKSLASH.search(line):
            j = i
            while j < len(lines) and (_BACKSLASH.search(lines[j]) or lines[j].lstrip().startswith("#")):
                j += 1
            out.update(range(i, min(j, len(lines) - 1) + 1))
            i = j + 1
            continue
        i += 1
    return out


def _yaml_regions(text: str) -> set[int]:
    """Lines of scalars written over several lines (block ``|``/``>``, folded plain or quoted)
    and of flow collections (``[a,\\n b]``) that span lines."""
    import yaml

    out: set[int] = set()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return out
    stack: list[Any] = [root] if root is not None else []
    while stack:
        node = stack.pop()
        start, end = node.start_mark, node.end_mark
        last = end.line - 1 if end.column == 0 and end.line > start.line else end.line
        if isinstance(node, yaml.ScalarNode):
            if node.style in ("|", ">") or last > start.line:
                out.update(range(start.line, last + 1))
        else:
            if getattr(node, "flow_style", False) and last > start.line:
                out.update(range(start.line, last + 1))
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    stack += [k, v]
            elif isinstance(node, yaml.SequenceNode):
                stack += list(node.value)
    return out


def _dotenv_regions(lines: list[str]) -> set[int]:
    out: set[int] = set()
    i = 0
    while i < len(lines):
        m = _ENV_START.match(lines[i])
        if m:
            q = m.group("q")
            rest = lines[i][m.end():]
            closed = re.search(rf"(?<!\\){q}", rest) if q == '"' else (q in rest)
            if not closed:
                j = i + 1
                while j < len(lines) and not (re.search(rf"(?<!\\){q}", lines[j]) if q == '"' else q in lines[j]):
                    j += 1
                out.update(range(i, min(j, len(lines) - 1) + 1))
                i = j + 1
                continue
        i += 1
    return out


def _regions(text: str, kind: str) -> set[int]:
    lines = text.splitlines()
    if kind == "dockerfile":
        return _dockerfile_regions(lines)
    if kind == "compose":
        return _yaml_regions(text)
    if kind in ("dotenv", "env"):
        return _dotenv_regions(lines)
    return set()


_WHAT = {"dockerfile": "an instruction continued over several lines (\\ or a heredoc)",
         "compose": "a value written over several lines (a block scalar > or |, or a quoted or flow value)",
         "dotenv": "a value quoted over several lines", "env": "a value quoted over several lines"}


def _only_run_words_removed(old: str, new: str) -> bool:
    """Every instruction continued over several lines that the edit changes is a RUN that lost
    words or went entirely (dockerfile-parse reads both texts; one-line instructions may change):
    safe inside a continued instruction."""
    from dockerfile_parse import DockerfileParser

    def instructions(text: str) -> list[tuple[str, str, bool]]:
        dfp = DockerfileParser(fileobj=io.BytesIO(text.encode("utf-8", "replace")), env_replace=False)
        return [(str(i.get("instruction", "")).upper(), str(i.get("value", "")), i.get("startline") != i.get("endline"))
                for i in dfp.structure if str(i.get("instruction", "")).upper() != "COMMENT"]

    def subsequence(short: list[str], long: list[str]) -> bool:
        it = iter(long)
        return all(w in it for w in short)

    try:
        a, b = instructions(old), instructions(new)
    except Exception:  # noqa: BLE001 - unparseable: not shown to be safe
        return False
    i = 0
    for kind, value, _ in b:
        while i < len(a):
            okind, ovalue, multi = a[i]
            i += 1
            if okind == kind and (ovalue == value or not multi
                                  or (kind == "RUN" and subsequence(value.split(), ovalue.split()))):
                break
            if okind != "RUN":
                return False  # another instruction changed or went
        else:
            return False
    return all(k == "RUN" for k, _, _ in a[i:])


def multiline_change(old: str, new: str, kind: str) -> str:
    """Why the edit from ``old`` to ``new`` touches a multi-line construct ('' when it does not)."""
    regions = _regions(old, kind)
    if not regions:
        return ""
    a, b = old.splitlines(), new.splitlines()
    for tag, i1, i2, _j1, _j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        touched = set(range(i1, i2)) if i2 > i1 else ({i1 - 1, i1} if i1 - 1 in regions and i1 in regions else set())
        hit = sorted(touched & regions)
        if hit and not (kind == "dockerfile" and _only_run_words_removed(old, new)):
            return f"line {hit[0] + 1} is part of {_WHAT.get(kind, 'a multi-line construct')}"
    return ""


def _dotenv_parse(text: str) -> tuple[dict[str, Any], int]:
    """(values, statements python-dotenv could not parse)."""
    from dotenv import dotenv_values

    bad = [0]

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            bad[0] += 1

    logger = logging.getLogger("dotenv.main")
    handler = Count(level=logging.WARNING)
    logger.addHandler(handler)
    try:
        values = dict(dotenv_values(stream=io.StringIO(text), interpolate=False))
    finally:
        logger.removeHandler(handler)
    return values, bad[0]


def _env_names(lines: list[str]) -> set[str]:
    out = set()
    for ln in lines:
        m = re.match(r"^\s*(?:#\s*)?(?:export\s+)?(?:ENV\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*[=:]", ln, re.I)
        if m:
            out.add(m.group(1))
    return out


def reparse_problem(old: str, new: str, kind: str) -> str:
    """Why ``new`` does not parse as ``kind`` the way ``old`` did ('' when it does)."""
    try:
        if kind == "compose":
            import yaml

            try:
                before = yaml.safe_load(old)
            except yaml.YAMLError:
                return ""  # it did not parse before either: nothing to compare (the edit is line-based)
            try:
                after = yaml.safe_load(new)
            except yaml.YAMLError as exc:
                return f"the result would not be valid YAML ({str(exc).splitlines()[0]})"
            if isinstance(before, dict) and not isinstance(after, dict):
                return "the result would no longer be a compose mapping"
            return ""
        if kind == "dockerfile":
            from dockerfile_parse import DockerfileParser

            def instructions(text: str) -> list[str]:
                dfp = DockerfileParser(fileobj=io.BytesIO(text.encode("utf-8", "replace")), env_replace=False)
                return [str(i.get("instruction", "")).upper() for i in dfp.structure]

            before_i, after_i = instructions(old), instructions(new)
            if [i for i in after_i if i != "COMMENT"][:1] != [i for i in before_i if i != "COMMENT"][:1]:
                return "the result would start with another instruction"
            return ""
        if kind in ("dotenv", "env"):
            before_v, before_bad = _dotenv_parse(old)
            after_v, after_bad = _dotenv_parse(new)
            if after_bad > before_bad:
                return "python-dotenv could not parse the result"
            a, b = old.splitlines(), new.splitlines()
            touched: set[str] = set()
            for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
                if tag != "equal":
                    touched |= _env_names(a[i1:i2]) | _env_names(b[j1:j2])
            for name in set(before_v) | set(after_v):
                if name not in touched and before_v.get(name) != after_v.get(name):
                    return f"the value of {name}, which the edit does not mean to change, would change"
            return ""
    except Exception as exc:  # noqa: BLE001 - a parser that breaks on the result is a reason not to patch
        return f"the result could not be parsed ({type(exc).__name__}: {exc})"
    return ""
