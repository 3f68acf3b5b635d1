"""Remedies for the Python GPU stack: torch CUDA variant, torchvision/torchaudio companions,
vLLM release, vLLM/torch ABI, FlashInfer packages, the CUDA toolkit used by JIT paths, Triton's
ptxas and the NCCL wheel.

Remedy ids: ``torch.reinstall-cuda-variant``, ``torch.align-companions``,
``vllm.install-supported``, ``vllm.rebuild-for-torch``, ``flashinfer.align``,
``toolkit.cuda-home``, ``triton.ptxas``, ``nccl.upgrade``, ``python.install-dependency``.
Facts read: ``packages``, ``torch``, ``vllm``, ``flashinfer``, ``toolkit.nvcc``,
``toolkit.cuda_home``, ``triton``, ``nccl.version``, ``driver.version``, ``gpu.<i>``, ``target``,
``host.os``, ``host.container``.

Every pip command runs as ``python3 -m pip`` (the interpreter first on PATH: activate the
environment that serves vLLM before running the script) and pins exact versions, so that its
idempotency check (the exact version is installed) is meaningful.
"""

from __future__ import annotations

import os
import re

from packaging.version import Version

from bwdoctor import Finding, FixPlan, FixStep, RemedySpec, Snapshot, hookimpl, kb, resolve

from . import _common as c

COMPANIONS = ("torchvision", "torchaudio")
# the project name a requirement string starts with (PEP 508), read before the full parse
_REQ_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
canonical_name = resolve.canonical_name


# --------------------------------------------------------------------------- torch


def _driver_allows(snap: Snapshot, variant: str) -> bool | None:
    have = c.driver_version(snap)
    cuda = c.variant_cuda(variant)
    if have is None or cuda is None:
        return None
    floor = c.vparse(c.kb_cuda_compat_driver(cuda))
    return floor is None or have >= floor


def choose_variant(snap: Snapshot, torch_base: str) -> str | None:
    """The CUDA variant of ``torch_base`` to install: published on the PyTorch index, carrying
    SASS for every GPU (kb torch_cuda_variants), runnable on the installed driver; the newest
    such, or the PyPI default when the driver is unknown."""
    minor = c.minor_of(torch_base)
    published = list(kb.torch_index_variants().get(minor or "", ()))
    arch_ok = c.common_variants(snap)
    cands = [v for v in published if not arch_ok or v in arch_ok]
    if not cands:
        return None
    allowed = [v for v in cands if _driver_allows(snap, v) is not False]
    if not allowed:
        return None
    if c.driver_version(snap) is None:
        default = kb.torch_pypi_variant(minor) if minor else None
        if default in allowed:
            return default
    return max(allowed, key=lambda v: c.vparse(c.variant_cuda(v)) or Version("0"))


def _vllm_move(snap: Snapshot) -> tuple[str, str | None] | None:
    """``(release, the torch it pins)`` when the fix moves vLLM to another release
    (:func:`bwdoctor.resolve.vllm_release`), else None."""
    rel = resolve.vllm_release(snap)
    if not rel.moves or rel.target is None:
        return None
    kbv = c.kb_vllm()
    try:
        pin = kbv.torch_pin_for(rel.target) if kbv is not None else None
    except Exception:  # noqa: BLE001 - a release the knowledge base has no pin for
        pin = None
    return rel.target, (str(pin) if pin else None)


def _brings_torch(snap: Snapshot, release: str, torch_base: str) -> str | None:
    """Why moving to vLLM ``release`` already gives a torch with kernels for the GPU, or None: the
    configuration's base image becomes the official image of the release (built for it), or the
    default PyPI build of the torch it pins carries kernels for every GPU."""
    img = snap.value("config.base_image")
    if isinstance(img, dict):
        need = c.vparse(c.strictest(snap, "min_cuda"))
        cuda = c.vparse(img.get("cuda_version"))
        if img.get("vllm_version") or (cuda is not None and need is not None and cuda < need):
            return f"the image moves to vllm/vllm-openai:v{release}, which carries its torch {torch_base}"
    pin = snap.value("config.vllm_pin")
    if isinstance(pin, dict) and pin.get("origin") == "image":  # a compose service's official vLLM image
        return f"the image moves to vllm/vllm-openai:v{release}, which carries its torch {torch_base}"
    minor = c.minor_of(torch_base)
    default = kb.torch_pypi_variant(minor) if minor else None
    ok = c.common_variants(snap)
    if default and ok and default in ok and _driver_allows(snap, default) is not False:
        return f"vLLM {release} pins torch {torch_base}, whose default {default} build has kernels for this GPU"
    return None


def target_torch(snap: Snapshot) -> str | None:
    """The torch release to install: the one pinned by the vLLM release the fix moves to, else the
    one the vLLM in use pins, else the installed release raised to the architecture's minimum."""
    move = _vllm_move(snap)
    if move is not None and move[1]:
        return move[1]
    vinfo = snap.value("vllm")
    if isinstance(vinfo, dict) and isinstance(vinfo.get("torch_requirement"), str):
        m = re.search(r"==\s*([0-9][0-9.]*)", vinfo["torch_requirement"])
        if m:
            return m.group(1)
    vv = c.vllm_version(snap)
    kbv = c.kb_vllm()
    if vv and kbv is not None:
        try:
            pin = kbv.torch_pin_for(vv)
        except Exception:
            pin = None
        if pin:
            return str(pin)
    cur = c.vparse(c.torch_version(snap))
    tmin = c.vparse(c.strictest(snap, "torch_min"))
    if cur is None:
        return str(tmin) if tmin else None
    base = Version(cur.base_version)
    if tmin and base < tmin:
        return str(tmin)
    return str(base)


def _companion_reqs(snap: Snapshot, torch_base: str, variant: str | None) -> list[str]:
    out = []
    versions = c.companion_versions(torch_base)
    for name in COMPANIONS:
        if c.installed(snap, name) and name in versions:
            out.append(f"{name}=={versions[name]}" + (f"+{variant}" if variant else ""))
    return out


def torch_reinstall(finding: Finding, snap: Snapshot) -> FixPlan | None:
    base = target_torch(snap)
    move = _vllm_move(snap)
    if move is not None and base and _brings_torch(snap, move[0], base):
        return None  # installing that vLLM (remedy vllm.install-supported) is the whole fix
    if not base:
        return c.plan("torch.reinstall-cuda-variant", "Install a torch build for this GPU", finding, [
            c.advice("Install a PyTorch CUDA build whose architecture list includes the GPU "
                     "(https://pytorch.org/get-started/locally/).")])
    variant = choose_variant(snap, base)
    if variant is None:
        return c.plan("torch.reinstall-cuda-variant", f"Install a torch {base} build for this GPU", finding, [
            c.advice(f"No published CUDA build of torch {base} both carries kernels for this GPU and runs on the "
                     "installed driver: upgrade the driver first (remedy driver.upgrade), or move to a newer vLLM "
                     "whose torch has such a build (remedy vllm.install-supported).")])
    reqs = [f"torch=={base}+{variant}"] + _companion_reqs(snap, base, variant)
    pinned_by = (f"the release vLLM {move[0]} (the release the fix moves to) pins" if move is not None
                 else "the release vLLM pins" if c.vllm_version(snap) else "the release to keep")
    notes = (f"torch {base} is {pinned_by}; "
             f"the {variant} build has SASS for {', '.join(c.compute_capabilities(snap)) or 'the GPU'}"
             f"{' and runs on driver ' + str(c.driver_version(snap)) if c.driver_version(snap) else ''}.")
    cur = c.torch_version(snap) or "the previous torch"
    step = FixStep(f"Install torch {base} built for {variant} (with matching companions) from the PyTorch index",
                   argv=c.pip_install(reqs, index_url=c.torch_index(variant)), check=c.pip_has(reqs),
                   undo=f"python3 -m pip install torch=={cur} (the version installed before)")
    return c.plan("torch.reinstall-cuda-variant", f"Reinstall torch {base} as the {variant} build", finding, [step], notes)


def _required_by(snap: Snapshot, name: str) -> list[str]:
    """Installed distributions that require ``name``."""
    out: list[str] = []
    pk = snap.value("packages")
    if not isinstance(pk, dict):
        return out
    want = canonical_name(name)
    for dist, info in pk.items():
        if dist == name or not isinstance(info, dict):
            continue
        for raw in info.get("requires") or []:
            head = _REQ_NAME.match(str(raw))
            if head is None or canonical_name(head.group(0)) != want:
                continue  # another project: only a requirement that names this one is parsed
            from packaging.requirements import InvalidRequirement, Requirement

            try:
                req = Requirement(str(raw))
            except InvalidRequirement:
                continue
            if req.marker is not None and "extra" in str(req.marker):
                continue
            if req.name.lower().replace("_", "-") == name:
                out.append(dist)
                break
    return sorted(out)


def align_companions(finding: Finding, snap: Snapshot) -> FixPlan | None:
    tv = c.torch_version(snap)
    if not tv:
        return None
    parsed = c.vparse(tv)
    base = str(Version(parsed.base_version)) if parsed else None
    if not base:
        return None
    variant = c.local_variant(tv)
    want = c.companion_versions(base)
    steps: list[FixStep] = []
    for name in COMPANIONS:
        have = c.installed(snap, name)
        if not have or name not in want:
            continue
        target = want[name] + (f"+{variant}" if variant else "")
        if have == target or (not variant and str(c.vparse(have)) == want[name]):
            continue
        users = _required_by(snap, name)
        if not users:
            steps.append(FixStep(f"Uninstall {name} {have}: it was built for another torch and nothing installed "
                                 "needs it", argv=[c.PYTHON, "-m", "pip", "uninstall", "-y", name],
                                 check=c.pip_absent([name]), undo=f"python3 -m pip install {name}=={have}"))
            steps.append(c.advice(f"If you need {name} yourself, install the release built for torch {tv} instead",
                                  c.pip_install([f"{name}=={target}"],
                                                index_url=c.torch_index(variant) if variant else None)))
        else:
            steps.append(FixStep(f"Install {name} {target}, the release built for torch {tv} "
                                 f"(needed by {', '.join(users)})",
                                 argv=c.pip_install([f"{name}=={target}"],
                                                    index_url=c.torch_index(variant) if variant else None),
                                 check=c.pip_has([f"{name}=={target}"]),
                                 undo=f"python3 -m pip install {name}=={have}"))
    if not steps:
        return None
    return c.plan("torch.align-companions", f"Match torchvision/torchaudio to torch {tv}", finding, steps,
                  "torchvision 0.(m+15).p and torchaudio 2.m.p are built for torch 2.m.p (their Requires-Dist).")


# --------------------------------------------------------------------------- vLLM


def _vllm_pip_reqs(snap: Snapshot, version: str) -> tuple[list[str], str | None]:
    """Requirements and an extra index: vLLM 0.9.x–0.10.1 pin torch 2.7, whose PyPI build has no
    Blackwell kernels; the cu128 index supplies the build that has (facts.md 2e)."""
    v = c.vparse(version)
    extra = None
    if v is not None and v < Version("0.10.2") and any(resolve.cc_key(cc)[0] >= 10 for cc in c.compute_capabilities(snap)):
        extra = c.torch_index("cu128")
    return [f"vllm=={version}"], extra


def vllm_install(finding: Finding, snap: Snapshot) -> FixPlan | None:
    version, why = c.recommended_vllm(snap)
    if not version:
        return c.plan("vllm.install-supported", "Install a vLLM release for this GPU", finding, [
            c.advice(f"No known vLLM release fits ({why}); upgrade the driver first (remedy driver.upgrade).")])
    reqs, extra = _vllm_pip_reqs(snap, version)
    torch_pin = None
    kbv = c.kb_vllm()
    if kbv is not None:
        try:
            torch_pin = kbv.torch_pin_for(version)
        except Exception:
            torch_pin = None
    steps = [FixStep(f"Install vLLM {version}" + (f" (it pins torch {torch_pin}, installed with it)" if torch_pin else ""),
                     argv=c.pip_install(reqs, extra_index_url=extra), check=c.pip_has(reqs),
                     undo=f"python3 -m pip install vllm=={c.vllm_version(snap) or '<previous version>'}")]
    steps.append(c.advice(f"Or run the official image that carries this release: vllm/vllm-openai:v{version}"))
    if c.container(snap):
        steps.insert(0, c.advice("Inside a container a pip install is lost when the container is recreated: prefer "
                                 f"the image tag vllm/vllm-openai:v{version} (or pin it in the Dockerfile)."))
    return c.plan("vllm.install-supported", f"Install vLLM {version}", finding, steps, why)


def vllm_rebuild(finding: Finding, snap: Snapshot) -> FixPlan | None:
    if _vllm_move(snap) is not None:
        return None  # the release the fix moves to comes with the torch it pins (remedy vllm.install-supported)
    vv = c.vllm_version(snap)
    pin = None
    vinfo = snap.value("vllm")
    if isinstance(vinfo, dict) and isinstance(vinfo.get("torch_requirement"), str):
        m = re.search(r"==\s*([0-9][0-9.]*)", vinfo["torch_requirement"])
        pin = m.group(1) if m else None
    kbv = c.kb_vllm()
    if pin is None and vv and kbv is not None:
        try:
            pin = kbv.torch_pin_for(vv)
        except Exception:
            pin = None
    steps: list[FixStep] = []
    if pin and vv:
        variant = choose_variant(snap, pin)
        reqs = [f"torch=={pin}" + (f"+{variant}" if variant else "")] + _companion_reqs(snap, pin, variant)
        steps.append(FixStep(f"Install torch {pin}, the release vLLM {vv} was built against",
                             argv=c.pip_install(reqs, index_url=c.torch_index(variant) if variant else None),
                             check=c.pip_has(reqs),
                             undo=f"python3 -m pip install torch=={c.torch_version(snap) or '<previous version>'}"))
    steps.append(c.advice("To keep the installed torch instead, build vLLM from source against it: in a vLLM "
                          "checkout run `python use_existing_torch.py` then "
                          "`pip install -e . --no-build-isolation`."))
    return c.plan("vllm.rebuild-for-torch", "Make vLLM and torch agree", finding, steps,
                  "vLLM's compiled extension links against one exact torch release (its wheel pins it).")


# --------------------------------------------------------------------------- FlashInfer


def flashinfer_align(finding: Finding, snap: Snapshot) -> FixPlan | None:
    fi = snap.value("flashinfer")
    pkgs = dict(fi.get("packages") or {}) if isinstance(fi, dict) else {}
    for name in ("flashinfer-python", "flashinfer-cubin", "flashinfer-jit-cache"):
        if name not in pkgs and c.installed(snap, name):
            pkgs[name] = c.installed(snap, name)
    vv = c.vllm_version(snap)
    target = c.flashinfer_pin_for(vv) if vv else None
    target = target or pkgs.get("flashinfer-python")
    if not target:
        return None
    steps: list[FixStep] = []
    fmin = c.vparse(c.strictest(snap, "flashinfer_min"))
    tgt = c.vparse(target)
    if fmin and tgt and tgt < fmin:
        steps.append(c.advice(f"FlashInfer {target} (what vLLM {vv} pins) predates kernels for this GPU "
                              f"(>= {fmin}); install a newer vLLM (remedy vllm.install-supported)."))
    reqs = [f"flashinfer-python=={target}"]
    if "flashinfer-cubin" in pkgs:
        reqs.append(f"flashinfer-cubin=={target}")
    steps.append(FixStep("Install matching FlashInfer packages (flashinfer-cubin must equal flashinfer-python)",
                         argv=c.pip_install(reqs), check=c.pip_has(reqs),
                         undo="python3 -m pip install the previous flashinfer versions"))
    jit = pkgs.get("flashinfer-jit-cache")
    if jit and str(jit).split("+")[0] != target:
        steps.append(FixStep(f"Uninstall flashinfer-jit-cache {jit}: precompiled kernels of another FlashInfer "
                             "release (FlashInfer compiles or downloads what it needs without it)",
                             argv=[c.PYTHON, "-m", "pip", "uninstall", "-y", "flashinfer-jit-cache"],
                             check=c.pip_absent(["flashinfer-jit-cache"]),
                             undo=f"python3 -m pip install flashinfer-jit-cache=={jit} from flashinfer.ai/whl"))
    steps.append(c.advice("Clear stale JIT builds after changing FlashInfer: remove ~/.cache/flashinfer",
                          ["rm", "-rf", os.path.join("~", ".cache", "flashinfer")]))
    return c.plan("flashinfer.align", f"Align FlashInfer packages to {target}", finding, steps,
                  f"vLLM {vv} pins flashinfer-python {target}." if vv else "")


# --------------------------------------------------------------------------- toolkits


def _needed_toolkit(snap: Snapshot) -> str | None:
    need = c.vparse(c.strictest(snap, "min_cuda"))
    t = snap.value("torch")
    tc = c.vparse(t.get("cuda")) if isinstance(t, dict) and t.get("cuda") else None
    best = max([v for v in (need, tc) if v is not None], default=None)
    return f"{best.major}.{best.minor}" if best else None


def toolkit_cuda_home(finding: Finding, snap: Snapshot) -> FixPlan | None:
    need = _needed_toolkit(snap)
    if not need:
        return None
    folder = f"/usr/local/cuda-{need}"
    nvcc = snap.value("toolkit.nvcc")
    have = c.vparse(nvcc.get("version")) if isinstance(nvcc, dict) else None
    steps: list[FixStep] = []
    needed = c.vparse(need)
    if have is not None and needed is not None and have >= needed and isinstance(nvcc, dict) and nvcc.get("path"):
        home = os.path.dirname(os.path.dirname(str(nvcc["path"])))
        steps.append(c.advice(f"A new enough toolkit ({have}) is installed at {home}: point the JIT paths at it",
                              ["export", f"CUDA_HOME={home}"]))
        return c.plan("toolkit.cuda-home", f"Use the CUDA {have} toolkit for JIT compilation", finding, steps)
    pkg = f"cuda-toolkit-{need.replace('.', '-')}"
    fam, _, _ = c.os_info(snap)
    if c.container(snap):
        steps.append(c.advice(f"Use a CUDA {need} devel base image (nvidia/cuda:{need}.*-devel-*) or install {pkg} "
                              "in the image, then set CUDA_HOME in it."))
    elif fam == "debian":
        steps.append(FixStep(f"Install the CUDA {need} toolkit ({pkg}, from NVIDIA's CUDA repository; no driver)",
                             argv=["apt-get", "install", "-y", pkg], check=["sh", "-c", 'test -x "$1"', "sh", f"{folder}/bin/nvcc"],
                             needs_root=True, undo=f"apt-get remove {pkg}"))
    elif fam == "rhel":
        steps.append(FixStep(f"Install the CUDA {need} toolkit ({pkg}, from NVIDIA's CUDA repository; no driver)",
                             argv=["dnf", "install", "-y", pkg], check=["sh", "-c", 'test -x "$1"', "sh", f"{folder}/bin/nvcc"],
                             needs_root=True, undo=f"dnf remove {pkg}"))
    else:
        steps.append(c.advice(f"Install the CUDA {need} toolkit (without the driver)."))
    steps.append(c.advice("Point FlashInfer/vLLM JIT builds at it in the environment that runs vLLM",
                          ["export", f"CUDA_HOME={folder}", f"PATH={folder}/bin:$PATH"]))
    return c.plan("toolkit.cuda-home", f"Provide a CUDA {need} toolkit for JIT compilation", finding, steps,
                  f"Kernels for compute capability {', '.join(c.compute_capabilities(snap))} need CUDA >= {need}.")


def triton_ptxas(finding: Finding, snap: Snapshot) -> FixPlan | None:
    need = c.strictest(snap, "min_cuda")
    nvcc = snap.value("toolkit.nvcc")
    have = c.vparse(nvcc.get("version")) if isinstance(nvcc, dict) else None
    steps: list[FixStep] = []
    needed = c.vparse(need)
    if needed is not None and have is not None and have >= needed and isinstance(nvcc, dict) and nvcc.get("path"):
        ptxas = os.path.join(os.path.dirname(str(nvcc["path"])), "ptxas")
        steps.append(c.advice(f"Let Triton use the CUDA {have} ptxas instead of its bundled one",
                              ["export", f"TRITON_PTXAS_PATH={ptxas}"]))
    else:
        steps.append(c.advice(f"Install a CUDA toolkit >= {need or '12.8'} (remedy toolkit.cuda-home) and export "
                              "TRITON_PTXAS_PATH=<toolkit>/bin/ptxas."))
    tmin = c.strictest(snap, "triton_min")
    tri = snap.value("triton")
    tv = c.vparse(tri.get("version")) if isinstance(tri, dict) else c.vparse(c.installed(snap, "triton"))
    tfloor = c.vparse(tmin)
    if tfloor is not None and tv is not None and tv < tfloor:
        steps.append(c.advice(f"Triton {tv} predates support for this GPU (>= {tmin}); Triton is pinned by torch, so "
                              "upgrade torch (remedy torch.reinstall-cuda-variant) rather than Triton alone."))
    return c.plan("triton.ptxas", "Give Triton a ptxas that knows this GPU", finding, steps)


def nccl_upgrade(finding: Finding, snap: Snapshot) -> FixPlan | None:
    t = snap.value("torch")
    cuda = c.vparse(t.get("cuda")) if isinstance(t, dict) and t.get("cuda") else None
    variant = c.local_variant(c.torch_version(snap))
    vcuda = c.variant_cuda(variant)
    major = cuda.major if cuda else (int(vcuda.split(".")[0]) if vcuda else 12)
    pkg = f"nvidia-nccl-cu{major}"
    need = c.vparse(c.strictest(snap, "nccl_min"))
    pin = None
    pk = snap.value("packages")
    torch_info = pk.get("torch") if isinstance(pk, dict) else None
    for raw in (torch_info or {}).get("requires") or [] if isinstance(torch_info, dict) else []:
        m = re.match(rf"^\s*{re.escape(pkg)}\s*==\s*([0-9][0-9.a-z]*)", str(raw))
        if m:
            pin = m.group(1)
    # The first PyPI releases at or above the Blackwell minimum (2.26): nvidia-nccl-cu12 2.26.5,
    # nvidia-nccl-cu13 2.27.7 (the first cu13 build) — PyPI release lists.
    fallback = "2.26.5" if major == 12 else "2.27.7"
    pinned = c.vparse(pin)
    target = pin if pin and (need is None or (pinned is not None and pinned >= need)) else fallback
    steps = []
    env = c.host_env(snap)
    for var in ("LD_PRELOAD", "LD_LIBRARY_PATH", "VLLM_NCCL_SO_PATH"):
        if "nccl" in str(env.get(var, "")).lower():
            steps.append(c.advice(f"{var} points at another NCCL ({env.get(var)}); remove it so that the wheel's "
                                  "NCCL is used."))
    steps.append(FixStep(f"Install {pkg} {target}" + (" (the version torch pins)" if target == pin else ""),
                         argv=c.pip_install([f"{pkg}=={target}"]), check=c.pip_has([f"{pkg}=={target}"]),
                         undo=f"python3 -m pip install {pkg}=={c.installed(snap, pkg) or '<previous version>'}"))
    return c.plan("nccl.upgrade", f"Use NCCL {target}", finding, steps,
                  f"Blackwell needs NCCL >= {need}." if need else "")


def install_dependency(finding: Finding, snap: Snapshot) -> FixPlan | None:
    from packaging.requirements import InvalidRequirement, Requirement

    details = finding.details if isinstance(finding.details, dict) else {}
    dist = details.get("package")
    if not dist or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", str(dist)):
        return c.plan("python.install-dependency", "Install the missing Python dependency", finding,
                      [c.advice("Install the package named in the error into the environment that serves vLLM, at the "
                                "version vLLM's metadata pins (python3 -m pip show vllm; python3 -m pip check).")])
    req = str(details.get("requirement") or "")
    try:
        parsed = Requirement(req) if req else None
    except InvalidRequirement:
        parsed = None
    if parsed is not None and str(parsed.specifier):
        spec = f"{parsed.name}{parsed.specifier}"
        pinned = next((s.version for s in parsed.specifier if s.operator == "=="), None)
        step = FixStep(f"Install {spec} (the version the evidence pins)", argv=c.pip_install([spec]),
                       check=c.pip_has([f"{parsed.name}=={pinned}"]) if pinned else None,
                       undo=f"python3 -m pip install {dist}=={details.get('installed') or '<previous version>'}")
        return c.plan("python.install-dependency", f"Install {spec}", finding,
                      [step, c.advice("Then run python3 -m pip check: it lists any other requirement left unmet.")])
    return c.plan("python.install-dependency", f"Install {dist}", finding,
                  [c.advice(f"No pin for {dist} is in the evidence: run python3 -m pip show vllm (Requires) or "
                            f"python3 -m pip check, then python3 -m pip install '{dist}==<the version vLLM pins>'.")])


@hookimpl
def bwdoctor_remedies() -> list[RemedySpec]:
    return [
        RemedySpec("torch.reinstall-cuda-variant", "Reinstall torch as a CUDA build with kernels for the GPU",
                   torch_reinstall, doc="Keeps the torch release vLLM pins (when the fix moves vLLM, the one the "
                   "new release pins, and nothing when that release brings a torch with kernels for the GPU; else "
                   "raises it to the architecture's torch_min), picks the newest PyTorch-index CUDA variant that carries SASS for every GPU and runs "
                   "on the driver, and installs torch==X+cuXXX with matching torchvision/torchaudio from "
                   "https://download.pytorch.org/whl/cuXXX."),
        RemedySpec("torch.align-companions", "Match torchvision/torchaudio to the installed torch", align_companions,
                   doc="Installs torchvision 0.(m+15).p / torchaudio 2.m.p for torch 2.m.p from the same index, or "
                       "uninstalls a stale companion that no installed distribution requires."),
        RemedySpec("vllm.install-supported", "Install a vLLM release with kernels for the GPU", vllm_install,
                   doc="Picks the newest known vLLM release between the architecture's first and last supported "
                       "release whose CUDA build runs on the driver; pip install vllm==X (torch comes with it), or "
                       "the image vllm/vllm-openai:vX."),
        RemedySpec("vllm.rebuild-for-torch", "Make vLLM and torch agree", vllm_rebuild,
                   doc="Installs the torch release the vLLM wheel was built against, or advises a source build."),
        RemedySpec("flashinfer.align", "Align FlashInfer packages", flashinfer_align,
                   doc="Installs the flashinfer-python (and flashinfer-cubin) version vLLM pins, removes a "
                       "mismatched flashinfer-jit-cache and advises clearing the JIT cache."),
        RemedySpec("toolkit.cuda-home", "Point JIT compilation at a new enough CUDA toolkit", toolkit_cuda_home,
                   doc="Installs cuda-toolkit-X-Y (apt/dnf, NVIDIA repository) when none is new enough and advises "
                       "CUDA_HOME."),
        RemedySpec("triton.ptxas", "Point Triton at a new enough ptxas", triton_ptxas,
                   doc="Advises TRITON_PTXAS_PATH=<toolkit>/bin/ptxas when a new enough toolkit exists."),
        RemedySpec("python.install-dependency", "Install a missing or mismatched Python dependency",
                   install_dependency,
                   doc="Installs the package a failure names at the version vLLM's metadata or pip's resolver pins "
                       "(python3 -m pip install 'pkg==X'), or advises pip check when no pin is in the evidence."),
        RemedySpec("nccl.upgrade", "Upgrade the NCCL wheel", nccl_upgrade,
                   doc="Installs nvidia-nccl-cu12/cu13 at torch's pin (or the first release >= the arch minimum) and "
                       "advises removing LD_PRELOAD/LD_LIBRARY_PATH entries that load another NCCL."),
    ]
