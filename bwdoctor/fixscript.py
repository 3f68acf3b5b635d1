"""Fix plans → one reviewable bash script, and step-by-step application of the same plans.

Two ways to use the :class:`~bwdoctor.types.FixPlan` objects the remedies built:

* :func:`render_script` writes one bash script. Every step checks first whether it is already
  done (``if <check>; then echo already done; else <command>; fi``), so running the script twice
  changes nothing the second time. Every value is quoted with :func:`shlex.quote`; descriptions
  and finding messages go into comments only after control characters are escaped, so a model
  name such as ``$(touch /tmp/x)`` or one containing a newline is inert text. Steps that need
  root run through ``bwdoctor_as_root``, which runs the command directly as root, through
  ``sudo`` otherwise, and stops the script when neither is possible. Advisory steps are printed,
  never run. File edits are unified diffs fed to ``patch --fuzz=0`` from a quoted here-document
  whose delimiter does not occur in the diff.
* :func:`apply_plans` runs the steps in order with :func:`subprocess.run` on the argv list (never
  through a shell with values pasted in): the ``check`` argv first (success = already done,
  skipped), then, after confirmation, the step. Advisory steps are printed. Patch steps are
  applied in Python after verifying that the file still matches the diff's context, written to
  a temporary file in the same folder and moved over the original with :func:`os.replace`.
  The first failed step stops everything.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bwdoctor.lazy import lazy_regex
from bwdoctor.types import Finding, FixPlan, FixStep

__all__ = ["ApplyResult", "PatchError", "StepResult", "apply_plans", "apply_unified_diff", "render_script",
           "step_kind", "unified_diff"]

ENV_NAME_RE = lazy_regex(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONTROL_RE = lazy_regex(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")


# ----------------------------------------------------------------------------- text helpers


ADVICE_LIMIT = 1 << 20  # advice is shown whole; this only bounds a runaway value


def _one_line(text: Any, limit: int = 400) -> str:
    """Text safe to put after ``#`` in a script: control characters (newlines included) are
    shown escaped, so nothing can end the comment."""
    s = str(text if text is not None else "")
    s = _CONTROL_RE.sub(lambda m: repr(m.group(0))[1:-1] if m.group(0) != "\x00" else "\\x00", s)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s


def _q(value: Any) -> str:
    return shlex.quote(str(value))


def _join(argv: Sequence[str]) -> str:
    return " ".join(_q(a) for a in argv)


def _say(text: str) -> str:
    """A ``printf`` line that prints ``text`` literally (no option or escape interpretation)."""
    return f"printf '%s\\n' {_q(_one_line(text, 1 << 20))}"  # printed whole: advice is never cut


def fix_command(report: Any) -> str:
    """The ``bwdoctor fix`` command that builds the fixes of ``report`` from the same input with
    the same options (the folder or files given to analyze, --from, --target, --level,
    --select, --skip, --python)."""
    words = ["bwdoctor", "fix"]
    inputs = [str(i) for i in (getattr(report, "inputs", None) or [])]
    mode = getattr(report, "mode", "")
    if mode == "from" and inputs:
        words += ["--from", inputs[0]]
    elif mode == "analyze" and inputs:
        if len(inputs) > 1:
            try:
                common = os.path.commonpath(inputs)
            except ValueError:
                common = ""
            words += [common] if common and os.path.isdir(common) else inputs
        else:
            words += inputs
    opts = getattr(report, "options", None) or {}
    if opts.get("target"):
        words += ["--target", str(opts["target"])]
    if opts.get("level") and opts.get("level") != "quick" and mode != "analyze":
        words += ["--level", str(opts["level"])]
    for name in ("select", "skip"):
        for value in opts.get(name) or []:
            words += [f"--{name}", str(value)]
    if opts.get("python") and mode not in ("analyze", "from"):  # the environment inspected, not fix's own
        words += ["--python", str(opts["python"])]
    return _one_line(_join(words), 2000)


def use_interpreter(plans: Sequence[FixPlan], python: str | None) -> list[FixPlan]:
    """Steps that call ``python3`` (pip installs and their checks) call ``python`` instead: the
    interpreter of the environment the report inspected, not whichever is first on PATH."""
    if not python or python == "python3":
        return list(plans)
    from dataclasses import replace

    def swap(words: Sequence[str] | None) -> list[str] | None:
        if not words:
            return list(words) if words is not None else None
        return [python if i == 0 and w == "python3" else w for i, w in enumerate(words)]

    out = []
    for plan in plans:
        steps = [replace(s, argv=swap(s.argv), check=swap(s.check),
                         undo=s.undo.replace("python3 -m pip", f"{shlex.quote(python)} -m pip") if s.undo else s.undo)
                 for s in plan.steps]
        out.append(replace(plan, steps=steps))
    return out


def files_only(plans: Sequence[FixPlan]) -> list[FixPlan]:
    """Plans for a configuration given as files: they edit those files and nothing else. A
    command (installing packages, changing the driver) would run on the machine running
    bwdoctor, which is not the one the files describe: it becomes advice for that environment."""
    from dataclasses import replace

    out = []
    for plan in plans:
        steps = []
        for step in plan.steps:
            if step_kind(step) == "command":
                step = replace(step, advisory=True, check=None,
                               description=f"In the image or environment these files describe (not on this machine): "
                                           f"{step.description}")
            steps.append(step)
        out.append(replace(plan, steps=steps))
    return out


def step_identity(step: FixStep) -> tuple[str, ...]:
    """What makes two steps the same: the file and diff of a patch, the words of a command,
    the text of advice."""
    kind = step_kind(step)
    if kind == "patch" and step.patch is not None:
        return (kind, str(step.patch.get("path")), str(step.patch.get("diff")))
    if kind == "command":
        return (kind, str(step.description), *[str(a) for a in _command_words(step)], "check:",
                *[str(a) for a in (step.check or [])], str(step.needs_root))
    return (kind, str(step.description), *[str(a) for a in (step.argv or [])])


def step_kind(step: FixStep) -> str:
    """``advisory``, ``patch`` or ``command`` (a step without argv or patch is advice)."""
    if step.advisory:
        return "advisory"
    if step.patch:
        return "patch"
    if step.argv:
        return "command"
    return "advisory"


def _validate(step: FixStep) -> str | None:
    """Why a step cannot be rendered or run safely, or None."""
    for part in list(step.argv or []) + list(step.check or []):
        if not isinstance(part, str):
            return f"an argument is not a string ({type(part).__name__})"
        if "\x00" in part:
            return "an argument contains a NUL byte"
    for k, v in (step.env or {}).items():
        if not ENV_NAME_RE.match(str(k)):
            return f"invalid environment variable name {_one_line(k, 60)!r}"
        if "\x00" in str(v):
            return "an environment value contains a NUL byte"
    if step.patch:
        path = step.patch.get("path")
        diff = step.patch.get("diff")
        if not isinstance(path, str) or not path or not isinstance(diff, str) or not diff:
            return "a patch step needs a path and a diff"
        if "\x00" in path or "\x00" in diff:
            return "the patch contains a NUL byte"
    return None


def _command_words(step: FixStep) -> list[str]:
    argv = [str(a) for a in step.argv or []]
    if step.env:
        argv = ["env"] + [f"{k}={v}" for k, v in sorted(step.env.items())] + argv
    return argv


# ----------------------------------------------------------------------------- diffs


class PatchError(Exception):
    """The diff does not apply to the file as it is now."""


_HUNK_RE = lazy_regex(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def unified_diff(old: str, new: str, name: str) -> str:
    """A unified diff of two texts that GNU patch and :func:`apply_unified_diff` both accept
    (a missing final newline is marked with ``\\ No newline at end of file``)."""
    import difflib

    safe = _one_line(name, 200).replace(" ", "_") or "file"
    out = []
    for line in difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                     fromfile=f"a/{safe}", tofile=f"b/{safe}"):
        if line.startswith(("---", "+++", "@@")):
            out.append(line if line.endswith("\n") else line + "\n")
        elif line.endswith("\n"):
            out.append(line)
        else:
            out.append(line + "\n\\ No newline at end of file\n")
    return "".join(out)


def _parse_hunks(diff: str) -> list[tuple[int, int, list[tuple[str, str]]]]:
    hunks: list[tuple[int, int, list[tuple[str, str]]]] = []
    lines = diff.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        m = _HUNK_RE.match(lines[i])
        if not m:
            i += 1
            continue
        old_start, new_start = int(m.group(1)), int(m.group(3))
        old_n = int(m.group(2)) if m.group(2) is not None else 1
        new_n = int(m.group(4)) if m.group(4) is not None else 1
        body: list[tuple[str, str]] = []
        i += 1
        seen_old = seen_new = 0
        while i < len(lines) and (seen_old < old_n or seen_new < new_n or lines[i].startswith("\\")):
            line = lines[i]
            tag, text = line[:1], line[1:]
            i += 1
            if tag == "\\":
                if body:
                    t, prev = body[-1]
                    body[-1] = (t, prev[:-1] if prev.endswith("\n") else prev)
                continue
            if line == "\n":  # an empty context line whose leading space was stripped
                tag, text = " ", "\n"
            if tag not in (" ", "-", "+"):
                raise PatchError(f"malformed hunk line: {_one_line(line, 80)!r}")
            body.append((tag, text))
            if tag in (" ", "-"):
                seen_old += 1
            if tag in (" ", "+"):
                seen_new += 1
        if seen_old != old_n or seen_new != new_n:
            raise PatchError("truncated hunk")
        hunks.append((old_start, new_start, body))
    if not hunks:
        raise PatchError("the diff has no hunks")
    return hunks


def apply_unified_diff(text: str, diff: str, reverse: bool = False) -> str:
    """Apply a unified diff to ``text`` exactly where its hunk headers say (no fuzz, no offset);
    raise :class:`PatchError` when a context or removed line does not match. ``reverse``
    un-applies it."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    pos = 0
    hunks = _parse_hunks(diff)

    def lead(body: list[tuple[str, str]]) -> int:
        n = 0
        for t, _ in body:
            if t != " ":
                break
            n += 1
        return n

    # A hunk with less context than the others on one side sits at the start or end of the file
    # (that is how a unified diff encodes them); enforce it, as GNU patch does.
    ctx = max([max(lead(b), lead(b[::-1])) for _, _, b in hunks] + [0])
    for old_start, new_start, body in hunks:
        start = old_start
        if reverse:
            body = [({"-": "+", "+": "-"}.get(t, t), s) for t, s in body]
            start = new_start
        old_block = [s for t, s in body if t in (" ", "-")]
        new_block = [s for t, s in body if t in (" ", "+")]
        at = start - 1 if old_block else start
        if at < pos or lines[at:at + len(old_block)] != old_block:
            raise PatchError(f"hunk at line {start} does not match the file")
        if lead(body) < ctx and at != 0:
            raise PatchError(f"hunk at line {start} must be at the start of the file")
        if lead(body[::-1]) < ctx and at + len(old_block) != len(lines):
            raise PatchError(f"hunk at line {start} must be at the end of the file")
        out.extend(lines[pos:at])
        out.extend(new_block)
        pos = at + len(old_block)
    out.extend(lines[pos:])
    return "".join(out)


def _delimiter(diff: str) -> str:
    import hashlib

    base = "BWDOCTOR_PATCH_" + hashlib.sha256(diff.encode("utf-8", "surrogatepass")).hexdigest()[:12].upper()
    present = set(diff.splitlines())
    delim, n = base, 0
    while delim in present:
        n += 1
        delim = f"{base}_{n}"
    return delim


# ----------------------------------------------------------------------------- rendering

_AS_ROOT = """\
# Steps marked "needs root" run through this function: directly when the script runs as root,
# through sudo otherwise; without either the script stops before changing anything further.
bwdoctor_as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -- "$@"
  else
    echo "bwdoctor: this step needs root; run the script as root or install sudo" >&2
    exit 1
  fi
}
"""


def _finding_lines(plans: Sequence[FixPlan], findings: Sequence[Finding]) -> list[str]:
    wanted: list[str] = []
    for p in plans:
        for fid in p.finding_ids:
            if fid not in wanted:
                wanted.append(fid)
    by_key: dict[str, Finding] = {}
    for f in findings:
        by_key.setdefault(f.key, f)
        by_key.setdefault(f.id, f)
    lines = []
    for fid in wanted:
        hit = by_key.get(fid)
        if hit is not None:
            lines.append(f"#   {_one_line(hit.key, 120)} [{_one_line(hit.status, 10)}] {_one_line(hit.message, 200)}")
        else:
            lines.append(f"#   {_one_line(fid, 120)}")
    if not wanted:
        for f in findings:
            if f.status in ("fail", "warn"):
                lines.append(f"#   {_one_line(f.key, 120)} [{f.status}] {_one_line(f.message, 200)}")
    return lines


def _render_step(step: FixStep, label: str) -> list[str]:
    kind = step_kind(step)
    # advice is the whole of an advisory step: never cut (the other steps' diff or command follows)
    out = [f"# Step {label}: {_one_line(step.description, ADVICE_LIMIT if kind == 'advisory' else 400)}"]
    if step.needs_root and kind != "advisory":
        out.append("#   needs root")
    if step.undo:
        out.append(f"#   undo: {_one_line(step.undo)}")
    problem = _validate(step)
    if problem:
        out.append(f"#   not rendered: {_one_line(problem)}")
        out.append(f"echo {_q('bwdoctor: step ' + label + ' could not be rendered safely: ' + problem)} >&2")
        out.append("false  # stops the script (set -e)")
        return out
    if kind == "advisory":
        if step.argv:
            out.append(f"#   suggested command (not run): {_one_line(_join(_command_words(step)), 1000)}")
        out.append(_say(f"ADVICE ({label}): {step.description}"))
        if step.argv:
            out.append(_say(f"  suggested command: {_join(_command_words(step))}"))
        return out
    if kind == "patch":
        assert step.patch is not None
        path, diff = step.patch["path"], step.patch["diff"]
        if not diff.endswith("\n"):
            diff += "\n"
        delim = _delimiter(diff)
        qpath = _q(path)
        out.append("if ! command -v patch >/dev/null 2>&1; then")
        out.append("  echo \"bwdoctor: the 'patch' program is needed for this step\" >&2")
        out.append("  exit 1")
        out.append("fi")
        out.append(f"if patch --dry-run --reverse --force --fuzz=0 --silent -- {qpath} >/dev/null 2>&1 <<'{delim}'")
        out.append(diff.rstrip("\n"))
        out.append(delim)
        out.append("then")
        out.append("  " + _say(f"already done ({label}): {step.description}"))
        out.append("else")
        out.append("  " + _say(f"step {label}: {step.description}"))
        out.append(f"  patch --forward --force --fuzz=0 --no-backup-if-mismatch --reject-file=- -- {qpath} <<'{delim}'")
        out.append(diff.rstrip("\n"))
        out.append(delim)
        out.append("fi")
        return out
    words = _join(_command_words(step))
    run = ("bwdoctor_as_root " + words) if step.needs_root else words
    if step.check:
        out.append(f"if {_join(step.check)} >/dev/null 2>&1; then")
        out.append("  " + _say(f"already done ({label}): {step.description}"))
        out.append("else")
        out.append("  " + _say(f"step {label}: {step.description}"))
        out.append("  " + run)
        out.append("fi")
    else:
        out.append("#   (no check: this step runs every time)")
        out.append(_say(f"step {label}: {step.description}"))
        out.append(run)
    return out


def render_script(plans: Sequence[FixPlan], findings: Sequence[Finding], version: str) -> str:
    """Render fix plans as one bash script (see the module docstring for its guarantees)."""
    lines = [
        "#!/usr/bin/env bash",
        "# Every quoted value below is literal text on purpose (values from the machine are never expanded):",
        "# shellcheck disable=SC2016",
        f"# bwdoctor fix script, generated by bwdoctor {_one_line(version, 40)}.",
        "# Read every step before running it. Each step first checks whether it is already done, so the",
        "# script can be run again safely. Steps marked ADVICE are printed, never run.",
        "#",
        "# Findings addressed:",
    ]
    lines += _finding_lines(plans, findings) or ["#   (none)"]
    lines += ["", "set -euo pipefail", ""]
    if any(s.needs_root and step_kind(s) == "command" for p in plans for s in p.steps):
        lines += _AS_ROOT.splitlines() + [""]
    if not plans:
        lines.append(_say("bwdoctor: nothing to fix."))
    seen: dict[tuple[str, ...], str] = {}
    for pi, plan in enumerate(plans, 1):
        lines.append(f"# === Plan {pi}: {_one_line(plan.title)}")
        lines.append(f"#     remedy {_one_line(plan.remedy_id, 80)}; findings: "
                     f"{_one_line(', '.join(plan.finding_ids) or '-', 300)}")
        if plan.notes:
            for note in str(plan.notes).splitlines()[:20]:
                lines.append(f"#     {_one_line(note)}")
        for si, step in enumerate(plan.steps, 1):
            label = f"{pi}.{si}"
            key = step_identity(step)
            if key in seen:  # several findings share one remedy (one combined edit of a file): shown once
                lines.append(f"# Step {label}: the same as step {seen[key]} above")
                continue
            seen[key] = label
            lines += _render_step(step, label)
        lines.append("")
    lines.append(_say("bwdoctor: fix script finished. Re-run bwdoctor to confirm the findings are resolved."))
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- applying


@dataclass
class StepResult:
    remedy_id: str
    index: int
    description: str
    status: str  # ran | skipped | failed | declined | advisory | planned | not-run
    detail: str = ""
    returncode: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ApplyResult:
    steps: list[StepResult] = field(default_factory=list)
    stopped_at: StepResult | None = None

    def _with(self, status: str) -> list[StepResult]:
        return [s for s in self.steps if s.status == status]

    @property
    def ran(self) -> list[StepResult]:
        return self._with("ran")

    @property
    def skipped(self) -> list[StepResult]:
        return self._with("skipped")

    @property
    def failed(self) -> list[StepResult]:
        return self._with("failed")

    @property
    def declined(self) -> list[StepResult]:
        return self._with("declined")

    @property
    def advisories(self) -> list[StepResult]:
        return self._with("advisory")

    @property
    def planned(self) -> list[StepResult]:
        return self._with("planned")

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "steps": [s.to_dict() for s in self.steps],
                "stopped_at": self.stopped_at.to_dict() if self.stopped_at else None}


def _root_prefix() -> list[str] | None:
    """Nothing when running as root, ``sudo --`` when available, None when root is impossible."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return []
    sudo = shutil.which("sudo")
    return [sudo, "--"] if sudo else None


def _run(argv: Sequence[str], env: dict[str, str] | None, timeout: float | None,
         capture: bool) -> subprocess.CompletedProcess:
    full_env = None
    if env:
        full_env = dict(os.environ)
        full_env.update({str(k): str(v) for k, v in env.items()})
    return subprocess.run(list(argv), env=full_env, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE if capture else None,
                          stderr=subprocess.STDOUT if capture else None,
                          text=True if capture else None)


def _read_exact(path: str) -> str:
    with open(path, encoding="utf-8", newline="") as fh:
        return fh.read()


def writable_problem(path: str, roots: Sequence[str] | None = None) -> str:
    """Why ``path`` may not be edited in place ('' when it may): it must be a regular file (not a
    symbolic link, a device or a file with several hard links), inside one of ``roots`` once every
    link is resolved, writable, and its owner must be kept (only root can give a file back to
    another user)."""
    try:
        lst = os.lstat(path)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    if stat.S_ISLNK(lst.st_mode):
        return f"{path} is a symbolic link: bwdoctor edits only regular files"
    if not stat.S_ISREG(lst.st_mode):
        return f"{path} is not a regular file"
    if lst.st_nlink > 1:
        return f"{path} has {lst.st_nlink} hard links: replacing it would separate them"
    real = os.path.realpath(path)
    if roots is not None:
        inside = False
        for root in roots:
            rroot = os.path.realpath(root)
            if os.path.isfile(rroot):
                inside = inside or real == rroot
            elif real.startswith(rroot.rstrip(os.sep) + os.sep):
                inside = True
        if not inside:
            return (f"{path} resolves to {real}, outside the folders given" if roots
                    else f"{path} is not in a folder given on the command line")
    if not lst.st_mode & 0o222:
        return f"{path} is read-only"
    euid = os.geteuid() if hasattr(os, "geteuid") else -1
    if euid not in (0, lst.st_uid):
        return f"{path} belongs to another user"
    if not os.access(os.path.dirname(real) or ".", os.W_OK):
        return f"the folder of {path} is not writable"
    return ""


def reparser(parsers: Sequence[Any], evidence: Sequence[dict[str, Any]],
             known_errors: Sequence[Any] = ()) -> Callable[[str, str, str], str]:
    """A ``verify`` for :func:`apply_plans`: the evidence parsers that recognised ``path`` when
    the plan was made read it again; '' when each still recognises it and reports no new error
    (``config.errors``)."""
    used = {os.path.realpath(str(e.get("path"))): list(e.get("parsers") or []) for e in evidence if isinstance(e, dict)}
    before = {str(e.get("file")) for e in known_errors if isinstance(e, dict)}

    def verify(path: str, kind: str, text: str) -> str:
        from pathlib import Path

        from bwdoctor.runner import load_evidence

        names = used.get(os.path.realpath(path)) or []
        ev = load_evidence(Path(path))
        for spec in parsers:
            if spec.name not in names:
                continue
            if not spec.detect(ev):
                return f"the {spec.name} parser no longer recognises it"
            for fact in list(spec.func(ev) or []):
                if getattr(fact, "key", "") == "config.errors" and path not in before and os.path.abspath(path) not in before:
                    errs = fact.value if isinstance(fact.value, list) else []
                    first = errs[0].get("error") if errs and isinstance(errs[0], dict) else "an error"
                    return f"the {spec.name} parser reports {first}"
        return ""

    return verify


def _write_atomic(path: str, text: str) -> None:
    """Replace ``path`` by ``text`` through a temporary file in its folder, keeping its mode,
    owner and group."""
    real = os.path.realpath(path)
    folder = os.path.dirname(real) or "."
    st = os.stat(real)
    mode = st.st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=".bwdoctor-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if hasattr(os, "chown") and (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
            os.chown(tmp, st.st_uid, st.st_gid)  # raises when it cannot be given back: nothing is replaced
        os.chmod(tmp, mode)
        os.replace(tmp, real)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _patch_state(path: str, diff: str) -> tuple[str, str | None, str]:
    """(``apply`` | ``done`` | ``mismatch``, new text, detail)."""
    try:
        current = _read_exact(path)
    except (OSError, UnicodeDecodeError) as exc:
        return "mismatch", None, f"cannot read {path}: {exc}"
    try:
        return "apply", apply_unified_diff(current, diff), ""
    except PatchError as exc:
        forward_error = str(exc)
    with contextlib.suppress(PatchError):
        apply_unified_diff(current, diff, reverse=True)
        return "done", None, "the change is already in the file"
    return "mismatch", None, f"{path} changed since the plan was made ({forward_error}); re-run bwdoctor"


def apply_plans(plans: Sequence[FixPlan], *, yes: bool = False, dry_run: bool = False,
                confirm: Callable[[str], bool] | None = None, echo: Callable[[str], None] = print,
                step_timeout: float | None = None, check_timeout: float = 60.0,
                capture: bool = False, roots: Sequence[str] | None = None,
                verify: Callable[[str, str, str], str] | None = None) -> ApplyResult:
    """Apply fix plans in order; see the module docstring.

    ``yes`` skips confirmation; otherwise ``confirm(prompt)`` is asked before every step that
    changes something, and a "no" skips the rest of that plan (later plans still run).
    ``dry_run`` executes nothing (not even the checks) and reports what would run. The first
    failed step stops everything (``result.stopped_at``).

    Patches edit only regular files inside ``roots`` (when given; no symbolic link is followed
    out of them), keep mode and owner, and refuse a file they could not write back as it was.
    After writing, ``verify(path, kind, text)`` (when given) re-reads the file the way the
    evidence parser does; a problem restores the original and fails the step.
    """
    result = ApplyResult()
    if confirm is None:
        confirm = (lambda _prompt: False) if not yes else (lambda _prompt: True)
    done: dict[tuple[str, ...], str] = {}  # step -> where it first came ("plan 1, step 2")
    for plan_no, plan in enumerate(plans, 1):
        echo(f"== {plan_no}. {plan.title} ({plan.remedy_id})")
        declined = False
        for i, step in enumerate(plan.steps, 1):
            identity = step_identity(step)
            if identity in done:
                echo(f"  step {i}: the same as {done[identity]} above")
                result.steps.append(StepResult(plan.remedy_id, i, step.description, "skipped", "the same step ran above"))
                continue
            done[identity] = f"plan {plan_no}, step {i}"
            def record(status: str, detail: str = "", rc: int | None = None,
                       _i: int = i, _s: FixStep = step, _p: FixPlan = plan) -> StepResult:
                r = StepResult(_p.remedy_id, _i, _s.description, status, detail, rc)
                result.steps.append(r)
                return r

            if declined:
                record("not-run", "an earlier step of this plan was declined")
                continue
            kind = step_kind(step)
            problem = _validate(step)
            if problem:
                result.stopped_at = record("failed", problem)
                echo(f"  FAILED: {_one_line(step.description)}: {problem}")
                return result
            if kind == "advisory":
                echo(f"  ADVICE: {_one_line(step.description, ADVICE_LIMIT)}")
                if step.argv:
                    echo(f"    suggested command (not run): {_join(_command_words(step))}")
                record("advisory")
                continue
            if kind == "patch":
                assert step.patch is not None
                path, diff = step.patch["path"], step.patch["diff"]
                state, new_text, detail = _patch_state(path, diff)
                if state == "done":
                    echo(f"  already done: {_one_line(step.description)}")
                    record("skipped", detail)
                    continue
                if state == "mismatch":
                    echo(f"  FAILED: {_one_line(step.description)}: {detail}")
                    result.stopped_at = record("failed", detail)
                    return result
                refusal = writable_problem(path, roots)
                if refusal:
                    echo(f"  FAILED: {_one_line(step.description)}: {refusal}")
                    result.stopped_at = record("failed", refusal)
                    return result
                if dry_run:
                    echo(f"  would patch {path}:\n{diff}")
                    record("planned", "dry run")
                    continue
                if not yes and not confirm(f"{step.description}\n  patch {path}:\n{diff}\nApply this change?"):
                    echo(f"  declined: {_one_line(step.description)}")
                    record("declined")
                    declined = True
                    continue
                try:
                    assert new_text is not None
                    original = _read_exact(path)
                    _write_atomic(path, new_text)
                except OSError as exc:
                    detail = f"could not write {path}: {exc.strerror or exc}"
                    echo(f"  FAILED: {detail}")
                    result.stopped_at = record("failed", detail)
                    return result
                problem = ""
                if verify is not None:
                    try:
                        problem = verify(path, str(step.patch.get("kind") or ""), _read_exact(path))
                    except Exception as exc:  # noqa: BLE001 - a verifier that breaks is a reason to restore
                        problem = f"it could not be re-read ({type(exc).__name__}: {exc})"
                if problem:
                    try:
                        _write_atomic(path, original)
                        detail = f"{path} was restored: after the change {problem}"
                    except OSError as exc:
                        detail = f"after the change {problem}, and restoring {path} failed: {exc.strerror or exc}"
                    echo(f"  FAILED: {detail}")
                    result.stopped_at = record("failed", detail)
                    return result
                echo(f"  patched {path}")
                record("ran", f"patched {path}")
                continue
            argv = _command_words(step)
            shown = _join(argv)
            if dry_run:
                echo(f"  would run{' (as root)' if step.needs_root else ''}: {shown}")
                record("planned", "dry run")
                continue
            if step.check:
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):  # the check could not run: treat as "not done"
                    chk = _run(step.check, None, check_timeout, capture=True)
                    if chk.returncode == 0:
                        echo(f"  already done: {_one_line(step.description)}")
                        record("skipped", "check succeeded", chk.returncode)
                        continue
            if not yes and not confirm(f"{step.description}\n  run{' as root' if step.needs_root else ''}: "
                                       f"{shown}\nRun this command?"):
                echo(f"  declined: {_one_line(step.description)}")
                record("declined")
                declined = True
                continue
            if step.needs_root:
                prefix = _root_prefix()
                if prefix is None:
                    detail = "needs root: run as root or install sudo"
                    echo(f"  FAILED: {_one_line(step.description)}: {detail}")
                    result.stopped_at = record("failed", detail)
                    return result
                argv = prefix + argv
            echo(f"  running: {shown}")
            try:
                proc = _run(argv, None, step_timeout, capture)
            except (OSError, subprocess.TimeoutExpired) as exc:
                detail = f"could not run {argv[0]}: {exc}"
                echo(f"  FAILED: {detail}")
                result.stopped_at = record("failed", detail)
                return result
            if proc.returncode != 0:
                from bwdoctor.isolation import describe_exit

                detail = describe_exit(proc.returncode)
                if capture and proc.stdout:
                    detail += ": " + _one_line(proc.stdout[-2000:], 2000)
                echo(f"  FAILED ({detail}): {_one_line(step.description)}")
                result.stopped_at = record("failed", detail, proc.returncode)
                return result
            record("ran", "", 0)
    return result
