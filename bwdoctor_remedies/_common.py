"""Shared helpers of the built-in remedies: what GPU and distribution we are fixing for,
pip and package-manager command lines with idempotency checks, file diffs, and the small
version tables the remedies need beyond the knowledge base.

Remedies are pure functions of (finding, snapshot) with one exception: a remedy that edits a
user's file reads that file (and only that file) to compute the diff; when it cannot be read
the remedy falls back to advice.
"""

from __future__ import annotations

import os
import re
from typing import Any

from packaging.version import Version

from bwdoctor import Finding, FixPlan, FixStep, Snapshot, known, resolve
from bwdoctor.redact import escape_controls, redact_text

MAX_PATCH_BYTES = 1024 * 1024

# --------------------------------------------------------------------------- version tables

def vparse(text: Any) -> Version | None:
    """A version without its local part (:func:`bwdoctor.resolve.parse_version`)."""
    if text is None or not known(text):
        return None
    v = resolve.parse_version(text)
    return Version(v.public) if v is not None else None


def minor_of(version: Any) -> str | None:
    v = vparse(version)
    return f"{v.major}.{v.minor}" if v is not None else None


def local_variant(version: Any) -> str | None:
    """``cu128`` from ``2.8.0+cu128`` (:func:`bwdoctor.resolve.local_variant`)."""
    return resolve.local_variant(version)


def variant_cuda(variant: str | None) -> str | None:
    """``12.8`` from ``cu128``; None for cpu/rocm (:func:`bwdoctor.resolve.cuda_of_variant`)."""
    return resolve.cuda_of_variant(variant)


def companion_versions(torch_version: Any) -> dict[str, str]:
    """The torchvision and torchaudio releases built for a torch release.

    torchvision 0.(m+15) goes with torch 2.m, torchaudio 2.m.p with torch 2.m.p (verified from
    the Requires-Dist of the PyPI wheels torchvision 0.22.0, 0.23.0, 0.24.1, 0.25.0, 0.26.0, 0.27.0,
    0.28.0, 0.29.0 → ``torch==2.7.0``, ``2.8.0``, ``2.9.1``, ``2.10.0``, ``2.11.0``, ``2.12.0``,
    ``2.13.0``, ``2.14.0``, and torchaudio 2.8.0, 2.9.0 → ``torch==2.8.0``, ``2.9.0``)."""
    v = vparse(torch_version)
    if v is None or v.major != 2:
        return {}
    return {"torchvision": f"0.{v.minor + 15}.{v.micro}", "torchaudio": f"{v.major}.{v.minor}.{v.micro}"}


def flashinfer_pin_for(vllm_version: Any) -> str | None:
    """The flashinfer-python a vLLM release pins (:func:`bwdoctor.kb.flashinfer_pin_for`)."""
    from bwdoctor import kb

    return kb.flashinfer_pin_for(vllm_version)


# --------------------------------------------------------------------------- knowledge base


def kb_arch(cc: str | None) -> Any:
    """``bwdoctor.kb.arch_requirements(cc)`` or None."""
    if not cc:
        return None
    try:
        from bwdoctor import kb
        return kb.arch_requirements(cc)
    except Exception:
        return None


def kb_cuda_min_driver(cuda: str | None) -> str | None:
    if not cuda:
        return None
    try:
        from bwdoctor import kb
        return kb.cuda_min_driver(cuda)
    except Exception:
        return None


def kb_cuda_compat_driver(cuda: str | None) -> str | None:
    """Oldest driver that runs a CUDA <major>.x runtime (:func:`bwdoctor.resolve.cuda_compat_driver`)."""
    return resolve.cuda_compat_driver(cuda)


def gpu_specs(snap: Snapshot) -> list[Any]:
    """The knowledge base's GpuSpec of every judged GPU (by PCI id, name), else the ``--target``'s."""
    out = []
    for j in resolve.judged_gpus(snap, usable_only=False, need_cc=False):
        if j.spec is not None and j.spec not in out:
            out.append(j.spec)
    return out


def kb_vllm() -> Any:
    try:
        from bwdoctor.kb import vllm as kbv
        return kbv
    except Exception:
        return None


def attr(obj: Any, name: str, default: Any = None) -> Any:
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


# --------------------------------------------------------------------------- the machine


def compute_capabilities(snap: Snapshot) -> list[str]:
    """The judged GPUs' compute capabilities (:func:`bwdoctor.resolve.judged_gpus`), else the ``--target``'s."""
    out: list[str] = []
    for j in resolve.judged_gpus(snap):
        if j.cc and j.cc not in out:
            out.append(j.cc)
    return out


def requirements(snap: Snapshot) -> list[tuple[str, Any]]:
    """``[(cc, ArchRequirements)]`` for every GPU (or the target), newest architecture first."""
    return [(cc, kb_arch(cc)) for cc in sorted(compute_capabilities(snap), key=resolve.cc_key, reverse=True)]


def vllm_bounds(snap: Snapshot) -> tuple[str | None, str | None, str | None]:
    """The vLLM releases with kernels for every judged GPU (:func:`bwdoctor.resolve.vllm_bounds`)."""
    return resolve.vllm_bounds(snap)


def strictest(snap: Snapshot, field: str) -> str | None:
    """The highest value of a version field of ``ArchRequirements`` over the GPUs (``vllm_min``: the
    platform-aware first vLLM release, :func:`vllm_bounds`)."""
    if field == "vllm_min":
        return vllm_bounds(snap)[0]
    best: str | None = None
    for _, req in requirements(snap):
        val = attr(req, field)
        if val and (best is None or resolve.compare(val, best) == 1):
            best = str(val)
    return best


def common_variants(snap: Snapshot) -> list[str]:
    """Torch CUDA variants whose wheels run on every GPU (intersection of the kb lists)."""
    sets = [list(attr(req, "torch_cuda_variants") or []) for _, req in requirements(snap) if req is not None]
    if not sets:
        return []
    return [v for v in sets[0] if all(v in s for s in sets[1:])]


def os_info(snap: Snapshot) -> tuple[str | None, str, str]:
    """``(family, id, version)`` with family ``debian``, ``rhel``, ``suse`` or None."""
    osv = snap.value("host.os")
    if not isinstance(osv, dict):
        return None, "", ""
    ident = str(osv.get("id") or "").lower()
    like = str(osv.get("id_like") or "").lower().split()
    ver = str(osv.get("version") or osv.get("version_id") or "")
    names = [ident] + like
    if any(n in ("ubuntu", "debian", "pop", "linuxmint", "raspbian") for n in names):
        return "debian", ident, ver
    if any(n in ("rhel", "centos", "rocky", "almalinux", "fedora", "ol", "amzn") for n in names):
        return "rhel", ident, ver
    if any(n.startswith(("sles", "opensuse", "suse")) for n in names):
        return "suse", ident, ver
    return None, ident, ver


def container(snap: Snapshot) -> str | None:
    c = snap.value("host.container")
    return str(c) if c else None


def driver_version(snap: Snapshot) -> Version | None:
    """:func:`bwdoctor.resolve.driver_version`."""
    return resolve.driver_version(snap)


def driver_branch(version: Any) -> int | None:
    v = vparse(version)
    return v.major if v is not None else None


def installed(snap: Snapshot, name: str) -> str | None:
    pk = snap.value("packages")
    if isinstance(pk, dict):
        ent = pk.get(name)
        if isinstance(ent, dict) and ent.get("version"):
            return str(ent["version"])
    return None


def vllm_version(snap: Snapshot) -> str | None:
    v = snap.value("vllm")
    if isinstance(v, dict) and v.get("version"):
        return str(v["version"])
    cfg = snap.value("vllm.config")
    if isinstance(cfg, dict) and cfg.get("version"):
        return str(cfg["version"])
    return installed(snap, "vllm")


def torch_version(snap: Snapshot) -> str | None:
    t = snap.value("torch")
    if isinstance(t, dict) and t.get("version"):
        return str(t["version"])
    return installed(snap, "torch")


def host_env(snap: Snapshot) -> dict[str, Any]:
    env = snap.value("host.env")
    return env if isinstance(env, dict) else {}


def recommended_vllm(snap: Snapshot) -> tuple[str | None, str]:
    """The release a fix moves vLLM to (:func:`bwdoctor.resolve.recommended_vllm`): the checks and the
    diagnosis ask the same function, so the report and the fix name the same release."""
    return resolve.recommended_vllm(snap)


# --------------------------------------------------------------------------- commands

PYTHON = "python3"

# Succeeds when every ``name==version`` argument is installed at that version; a requested
# version without a local part (``2.8.0``) also matches ``2.8.0+cu128``. Values arrive as argv,
# never pasted into the code.
_PIP_HAS = (
    "import sys, importlib.metadata as m\n"
    "for req in sys.argv[1:]:\n"
    "    name, _, want = req.partition('==')\n"
    "    try:\n"
    "        have = m.version(name)\n"
    "    except m.PackageNotFoundError:\n"
    "        sys.exit(1)\n"
    "    if want and have != want and ('+' in want or have.split('+')[0] != want):\n"
    "        sys.exit(1)\n"
)

# Succeeds when none of the named distributions is installed.
_PIP_ABSENT = (
    "import sys, importlib.metadata as m\n"
    "for name in sys.argv[1:]:\n"
    "    try:\n"
    "        m.version(name)\n"
    "    except m.PackageNotFoundError:\n"
    "        continue\n"
    "    sys.exit(1)\n"
)


def pip_install(reqs: list[str], index_url: str | None = None, extra_index_url: str | None = None) -> list[str]:
    argv = [PYTHON, "-m", "pip", "install"]
    if index_url:
        argv += ["--index-url", index_url]
    if extra_index_url:
        argv += ["--extra-index-url", extra_index_url]
    return argv + list(reqs)


def pip_has(reqs: list[str]) -> list[str]:
    return [PYTHON, "-c", _PIP_HAS] + list(reqs)


def pip_absent(names: list[str]) -> list[str]:
    return [PYTHON, "-c", _PIP_ABSENT] + list(names)


def torch_index(variant: str) -> str:
    return f"https://download.pytorch.org/whl/{variant}"


def advice(description: str, argv: list[str] | None = None, undo: str = "") -> FixStep:
    return FixStep(description=description, argv=argv, advisory=True, undo=undo)


def plan(remedy_id: str, title: str, finding: Finding, steps: list[FixStep], notes: str = "") -> FixPlan:
    return FixPlan(remedy_id=remedy_id, title=title, finding_ids=[finding.key], steps=steps, notes=notes)


def details(finding: Finding) -> dict[str, Any]:
    return finding.details if isinstance(finding.details, dict) else {}


# --------------------------------------------------------------------------- files


def read_user_file(path: str) -> str | None:
    """The text of a file a remedy will patch, or None when it cannot be patched safely (missing,
    not a regular file, larger than 1 MiB, not UTF-8, contains NUL bytes)."""
    try:
        if not os.path.isfile(path) or os.path.getsize(path) > MAX_PATCH_BYTES:
            return None
        with open(path, encoding="utf-8", newline="") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if "\x00" in text:
        return None
    return text


def unified_diff(old: str, new: str, name: str) -> str:
    """The host's unified diff (what ``bwdoctor fix --apply`` and GNU patch both apply), labelled
    with the file's base name."""
    from bwdoctor import fixscript  # the script writer, only when a file is patched

    return fixscript.unified_diff(old, new, os.path.basename(name) or "file")


def patch_step(path: str, old: str, new: str, description: str, kind: str | None = None) -> FixStep | None:
    """A patch step turning ``old`` into ``new`` in ``path``; None when nothing changes.

    Given as advice to make by hand instead (never a patch that could break the file):

    * a diff whose lines (changed or context) hold a secret: it would carry it into the report
      and the script, where it is redacted and the patch no longer applies;
    * a diff with terminal control characters (they are escaped in the script);
    * a change to a construct that spans several lines (a compose block scalar ``>``/``|`` or a
      quoted scalar over several lines, a Dockerfile ``\\`` continuation or heredoc, a ``.env``
      value quoted over several lines): line edits inside it would break it;
    * a result that no longer parses as ``kind`` (``compose``, ``dockerfile``, ``dotenv``) with
      the library the evidence parser uses, or that changes a value the edit did not mean to."""
    if old == new:
        return None
    diff = unified_diff(old, new, path)
    if any(redact_text(line) != line for line in diff.splitlines()):
        return advice(f"{description} (edit the file by hand: the lines around the change hold a secret, which "
                      f"bwdoctor never writes into a script)")
    if escape_controls(diff) != diff:
        return advice(f"{description} (edit the file by hand: the lines around the change hold terminal control "
                      f"characters)")
    if kind:
        from . import _fileparse

        problem = _fileparse.multiline_change(old, new, kind) or _fileparse.reparse_problem(old, new, kind)
        if problem:
            return advice(f"{description} (edit the file by hand: {problem})")
    return FixStep(description=description, patch={"path": os.path.abspath(path), "diff": diff, "kind": kind or ""},
                   undo=f"reverse the diff: patch -R {os.path.abspath(path)} (or restore the file from version control)")


def config_files(snap: Snapshot, kinds: tuple[str, ...]) -> list[tuple[str, dict[str, Any]]]:
    """``config.files`` entries of the given kinds (``env``, ``compose``, ``dockerfile``)."""
    files = snap.value("config.files")
    if not isinstance(files, dict):
        return []
    out = []
    for path, info in sorted(files.items()):
        if isinstance(info, dict) and str(info.get("kind") or "") in kinds:
            out.append((str(path), info))
    return out


def finding_paths(finding: Finding) -> list[str]:
    """File paths a finding points at: ``details["path"]``/``["paths"]``/``["file"]``, its subject,
    and the sources of its evidence (``compose:/x/docker-compose.yml:line 4``)."""
    d = details(finding)
    out: list[str] = []
    for key in ("path", "file"):
        if isinstance(d.get(key), str):
            out.append(d[key])
    for key in ("paths", "files"):
        if isinstance(d.get(key), list):
            out += [str(p) for p in d[key]]
    if finding.subject:
        out.append(finding.subject)
    for ev in finding.evidence:
        m = re.search(r"(/[^\s:]+)", ev.source or "")
        if m:
            out.append(m.group(1))
    return out
