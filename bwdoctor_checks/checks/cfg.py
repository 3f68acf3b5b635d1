"""Checks of the deployment configuration (``BWD-CFG-0NN``) and of FP8 (``BWD-FP8V-0NN``).

They judge the ``config.*`` facts (Dockerfile, compose, ``.env``, command lines), ``host.env`` on a
live run, the vLLM version (installed ``vllm/envs.py``, the ``vllm`` fact, or the configuration's
pin), the log facts (``log.kv_cache``, ``log.fp8``, ``vllm.config``) and the GPU: every ``gpu.<i>``,
else the ``target`` given with ``--target``.

Facts consumed: ``config.env``, ``config.env_sources``, ``config.files``, ``config.base_image``,
``config.image``, ``config.vllm_pin``, ``config.pip_pins``, ``config.pip_indexes``,
``config.compose``, ``config.docker_run``, ``config.requested``, ``host.env``, ``vllm.env_vars``,
``vllm``, ``vllm.config``, ``log.kv_cache``, ``log.fp8``, ``log.attention_backend``,
``driver.cuda_version``, ``gpu.<i>``, ``target``.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from packaging.version import Version

from bwdoctor import CheckSpec, Outcome, Snapshot, failed, hookimpl, kb, passed, resolve, warned
from bwdoctor.kb import vllm as kbv
from bwdoctor_checks._lib import compat as _compat

_FALSY = {"", "0", "false", "no", "off", "n", "none", "disabled"}
_SECRET_NAME = re.compile(r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|PASS|KEY|API_KEY|CREDENTIALS?|AUTH)(_|$)", re.I)
_SAFE_VALUE = re.compile(r"^[\w.:/@+\-]{0,120}$")
_SECRET_VALUE = re.compile(r"^(hf_|sk-|ghp_|gho_|xox[abp]-|AKIA|eyJ)")


# ----------------------------------------------------------------------------- helpers


def _v(text: Any) -> Version | None:
    return kbv.parse_version(text) if text is not None else None


def judged_gpus(snap: Snapshot) -> list[dict[str, Any]]:
    """The GPUs to judge (:func:`bwdoctor.resolve.judged_gpus`): every ``gpu.<i>`` with a known
    compute capability, else ``target``."""
    out = []
    for j in resolve.judged_gpus(snap):
        label = f"{j.name} [--target]" if j.is_target else f"{j.name or 'GPU'} [GPU {j.index}]"
        out.append({"label": label, "subject": j.subject, "cc": j.cc, "name": j.name, "key": j.key,
                    "platform": j.platform})
    return out


def _dedupe_cc(gpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[tuple[str, Any], dict[str, Any]] = {}
    for g in gpus:
        seen.setdefault((g["cc"], g.get("platform")), g)
    return list(seen.values())


def _req(cc: str) -> Any:
    return kb.arch_requirements(cc)


def _vllm_range(g: dict[str, Any]) -> Any:
    return kb.vllm_range(g["cc"], g.get("platform"))


def _vllm_min(g: dict[str, Any]) -> str | None:
    r = _vllm_range(g)
    return r.first if r is not None else None


def _vllm_max(g: dict[str, Any]) -> str | None:
    """The last vLLM release with kernels for the GPU (inclusive), None when the newest has them."""
    r = _vllm_range(g)
    return r.last if r is not None else None


def _min_cuda(cc: str) -> str | None:
    r = _req(cc)
    return getattr(r, "min_cuda", None) if r else None


def vllm_in_use(snap: Snapshot, prefer_config: bool) -> tuple[str | None, str, list[str]]:
    """(version, how it is known, evidence keys) (:func:`bwdoctor.resolve.vllm_in_use`).
    ``prefer_config``: the configuration's pin before the installed/logged version."""
    return resolve.vllm_in_use(snap, prefer_config)


def advice_release(snap: Snapshot, prefer_config: bool) -> tuple[str | None, str, list[str], str | None, str]:
    """``(version in use, how it is known, evidence keys, release the advice is for, how to name it)``.

    When a fix moves the release (:func:`bwdoctor.resolve.vllm_release`: the pinned or installed vLLM
    has no kernels for the GPU, or the base image predates it) variables and flags are judged for
    the release it moves to, and the text says so; otherwise for the release in use."""
    rel = resolve.vllm_release(snap, prefer_config=prefer_config)
    keys = list(rel.evidence)
    if rel.moves:
        what = "this configuration" if prefer_config else "this environment"
        return (rel.current, rel.current_from, keys, rel.target,
                f"vLLM {rel.target} (the release the fix moves {what} to: {rel.reason})")
    if rel.current:
        return rel.current, rel.current_from, keys, rel.current, f"vLLM {rel.current}"
    latest, _ = kbv.resolve_version(None)
    return None, rel.current_from, keys, None, f"vLLM (version unknown; judged as {latest})"


def env_names_for(snap: Snapshot, version: str | None) -> tuple[set[str], str]:
    """The variables that version reads, and on what the list rests."""
    installed = snap.value("vllm.env_vars")
    if isinstance(installed, dict) and isinstance(installed.get("names"), list):
        iv = _v(installed.get("version"))
        wanted = _v(version)
        if version is None or (iv is not None and wanted is not None and iv.base_version == wanted.base_version):
            return set(installed["names"]), f"the installed vLLM {installed.get('version')}'s envs.py"
    rel, how = kbv.resolve_version(version)
    names = kbv.vllm_env_vars(rel)
    if how == "exact":
        basis = f"vLLM {rel}'s envs.py (bwdoctor's table)"
    elif how == "unknown":
        basis = f"the newest vLLM bwdoctor knows ({rel}), since the version in use is unknown"
    else:
        basis = f"vLLM {rel}'s envs.py, the nearest release bwdoctor knows to {version}"
    return names, basis


def _safe(name: str, value: Any) -> str | None:
    """A value fit to quote in a message (never one that looks secret)."""
    if not isinstance(value, str) or _SECRET_NAME.search(name) or _SECRET_VALUE.match(value):
        return None
    return value if _SAFE_VALUE.match(value) else None


def _fmt_ranges(ranges: list[tuple[str, str | None]]) -> str:
    return ", ".join(f"{lo}–{hi}" if hi else f"{lo} and later" for lo, hi in ranges)


def _configured_vars(snap: Snapshot) -> list[dict[str, Any]]:
    """VLLM_* variables set by configuration files and the live environment."""
    out = []
    env = snap.value("config.env")
    where = snap.mapping("config.env_sources")
    if isinstance(env, dict):
        for name, value in env.items():
            if isinstance(name, str) and name.startswith("VLLM_"):
                loc = where.get(name) if isinstance(where, dict) else None
                out.append({"name": name, "value": value, "origin": "config", "location": loc,
                            "evidence": ["config.env", "config.env_sources"]})
    henv = snap.value("host.env")
    if isinstance(henv, dict):
        have = {v["name"] for v in out}
        for name, value in henv.items():
            if isinstance(name, str) and name.startswith("VLLM_") and name not in have:
                out.append({"name": name, "value": value, "origin": "host", "location": "environment",
                            "evidence": ["host.env"]})
    return sorted(out, key=lambda d: d["name"])


def _file_line(snap: Snapshot, location: str | None) -> tuple[str | None, int | None]:
    if not location or ":" not in location:
        return None, None
    path, _, line = location.rpartition(":")
    return path, int(line) if line.isdigit() else None


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() not in _FALSY


def _replacement_text(rep: dict[str, Any], name: str, value: Any) -> str:
    shown = _safe(name, value)
    if not _truthy(value) and "use_if_false" in rep:
        use = rep.get("use_if_false") or "nothing: remove it"
    else:
        use = kbv.render(rep.get("use", ""), shown if shown is not None else "<value>")
    also = [kbv.render(a, shown if shown is not None else "<value>") for a in rep.get("also") or []]
    return use + (f" (or {'; '.join(also)})" if also and _truthy(value) else "")


# ----------------------------------------------------------------------------- BWD-CFG-001 / 002


def _was_in_use(snap: Snapshot, name: str, value: Any, in_use: str | None, instead: str) -> str:
    """What the release in use (before the fix moves it) makes of the variable, when that differs
    from the advice for the release moved to: `` (vLLM 0.6.2 still reads it)`` or
    `` (vLLM 0.6.2 took: --speculative-model X)``."""
    if not in_use:
        return ""
    names, _ = env_names_for(snap, in_use)
    if name in names:
        return f" (vLLM {in_use}, in use now, still reads it)"
    old = kbv.env_var_replacement(name, in_use)
    if old is None:
        return ""
    then = _replacement_text(old, name, value)
    return f" (vLLM {in_use} took: {then})" if then != instead else ""



def check_unread_env(snap: Snapshot) -> list[Outcome]:
    items = _configured_vars(snap)
    if not items:
        return [passed("the configuration sets no VLLM_* variable", evidence=[k for k in ("config.env", "host.env")
                                                                              if snap.has(k)])]
    out: list[Outcome] = []
    ok: list[str] = []
    for it in items:
        name, value = it["name"], it["value"]
        in_use, how, vkeys, version, ver_txt = advice_release(snap, prefer_config=it["origin"] == "config")
        names, basis = env_names_for(snap, version)
        if name in names:
            ok.append(name)
            continue
        moved = version is not None and version != in_use
        rep = kbv.env_var_replacement(name, version)
        hist = kbv.env_var_history(name)
        path, line = _file_line(snap, it["location"])
        where = f" (set at {it['location']})" if it["location"] else ""
        details = {"variable": name, "origin": it["origin"], "location": it["location"], "file": path, "line": line,
                   "vllm_version": in_use, "version_basis": how, "judged_against": basis,
                   "replacement": rep, "history": [list(r) for r in hist]}
        if moved:
            details["advice_for_vllm"] = version
        ev = list(it["evidence"]) + vkeys + (["config.files"] if path else [])
        if rep is not None:
            instead = _replacement_text(rep, name, value)
            details["use_instead"] = instead
            before = _was_in_use(snap, name, value, in_use, instead) if moved else ""
            if not hist:
                msg = (f"{name}{where} is read by no vLLM release (0.6.2–{kbv.latest_version()}), so {ver_txt} "
                       f"ignores it. {rep.get('why', '')} Use instead: {instead}{before}.")
            else:
                msg = (f"{name}{where} is not read by {ver_txt} (read only by {_fmt_ranges(hist)}). "
                       f"{rep.get('why', '')} Use instead: {instead}{before}.")
            status = failed if _truthy(value) or "use_if_false" not in rep else warned
            out.append(status(msg, evidence=ev, subject=name, details=details))
            continue
        if hist:
            first = hist[0][0]
            given = _v(version)
            if given is not None and given < Version(first):
                msg = (f"{name}{where} is first read by vLLM {first}; {ver_txt} ignores it. Upgrade vLLM or remove "
                       f"the variable.")
            else:
                msg = (f"{name}{where} is not read by {ver_txt} (read only by {_fmt_ranges(hist)}): it has no effect. "
                       f"Remove it, or use the setting that replaced it (see `vllm serve --help`).")
            details["use_instead"] = "remove it"
            out.append(failed(msg, evidence=ev, subject=name, details=details))
            continue
        close = kbv.close_matches(name, version)
        hint = f" Did you mean {' or '.join(close)}?" if close else " Check the spelling, or remove it."
        details["did_you_mean"] = close
        details["use_instead"] = close[0] if close else "remove it"
        out.append(warned(f"{name}{where} is read by no vLLM release bwdoctor knows (0.6.2–{kbv.latest_version()}), "
                          f"so {ver_txt} ignores it; from 0.17.0 vLLM logs it as an unknown variable.{hint}",
                          evidence=ev, subject=name, details=details))
    if not out:
        out.append(passed(f"vLLM reads every VLLM_* variable set ({', '.join(ok)})",
                          evidence=[k for k in ("config.env", "host.env", "vllm.env_vars") if snap.has(k)]))
    return out


def check_deprecated_env(snap: Snapshot) -> list[Outcome] | None:
    items = _configured_vars(snap)
    out: list[Outcome] = []
    for it in items:
        in_use, how, vkeys, version, ver_txt = advice_release(snap, prefer_config=it["origin"] == "config")
        info = kbv.is_deprecated(it["name"], version)
        if not info or version is None:
            continue
        use = kbv.render(info["use"], _safe(it["name"], it["value"]) or "<value>")
        path, line = _file_line(snap, it["location"])
        out.append(warned(f"{it['name']} is deprecated in {ver_txt} (since {info['since']}, no longer read from "
                          f"{info['removed']}): use {use}.", evidence=list(it["evidence"]) + vkeys, subject=it["name"],
                          details={"variable": it["name"], "use_instead": use, "file": path, "line": line,
                                   "location": it["location"], "vllm_version": in_use, "advice_for_vllm": version}))
    if not out and items:
        return [passed("no deprecated VLLM_* variable is set")]
    return out or None


# ----------------------------------------------------------------------------- BWD-CFG-008 serve flags


def check_serve_flags(snap: Snapshot) -> list[Outcome] | None:
    args = snap.mapping("config.serve_args")
    known = [f for f in args if isinstance(f, str) and f.startswith("--") and kbv.flag_info(f) is not None]
    if not known:
        return None
    in_use, how, vkeys, version, ver_txt = advice_release(snap, prefer_config=True)
    moved = version is not None and version != in_use
    loc = snap.mapping("config.requested").get("source")
    where = f" ({loc})" if isinstance(loc, str) and loc else ""
    path, line = _file_line(snap, loc if isinstance(loc, str) else None)
    changes = kbv.serve_flag_changes(args, version)
    ev = ["config.serve_args"] + vkeys + (["config.requested"] if where else [])
    out: list[Outcome] = []
    for p in changes["problems"]:
        flag, first, last = p["flag"], p["first"], p["last"]
        span = f"{first}–{last}" if last else f"{first} and later"
        use = p["use"] or "remove it"
        if moved and in_use and (kbv.flag_info(flag, in_use) or {}).get("exists"):
            before = f" (vLLM {in_use}, in use now, accepts {flag})"
        else:
            before = ""
        note = f" {p['note']}." if p["note"] else ""
        msg = (f"{flag}{where} is not accepted by {ver_txt} (accepted by {span}): vllm serve stops on an argument it "
               f"does not know.{note} Use instead: {use}{before}.")
        details = {"flag": flag, "value": p["value"], "accepted_by": [first, last], "use_instead": use,
                   "file": path, "line": line, "location": loc, "vllm_version": in_use, "version_basis": how}
        if moved:
            details["advice_for_vllm"] = version
        if version is None:
            out.append(warned(msg, evidence=ev, subject=flag, details=details, confidence=0.4))
        else:
            out.append(failed(msg, evidence=ev, subject=flag, details=details))
    if not out:
        judged = ver_txt if version else f"the newest vLLM bwdoctor knows ({kbv.latest_version()})"
        out.append(passed(f"{judged} accepts every vllm serve flag bwdoctor knows in the command line "
                          f"({', '.join(known)})", evidence=ev))
    return out


# ----------------------------------------------------------------------------- BWD-CFG-003 base image CUDA


def check_base_image_cuda(snap: Snapshot) -> list[Outcome] | None:
    gpus = _dedupe_cc(judged_gpus(snap))
    images = [(k, snap.value(k)) for k in ("config.base_image", "config.image") if isinstance(snap.value(k), dict)]
    images = [(k, v) for k, v in images if v.get("cuda_version")]
    if not images:
        return None
    out: list[Outcome] = []
    drv_cuda = snap.value("driver.cuda_version")
    for key, img in images:
        ref = f"{img.get('image')}:{img.get('tag')}" if img.get("tag") else str(img.get("image"))
        cuda = str(img["cuda_version"])
        subject = f"{img.get('file')}:{img.get('line')}"
        details = {"image": ref, "cuda_version": cuda, "file": img.get("file"), "line": img.get("line")}
        for g in gpus:
            need = _min_cuda(g["cc"])
            r = _req(g["cc"])
            max_major = getattr(r, "max_cuda_major", None) if r else None
            if need and Version(cuda) < Version(need):
                d = dict(details, gpu=g["name"], compute_capability=g["cc"], min_cuda=need)
                out.append(failed(
                    f"{ref} ships CUDA {cuda}, but {g['label']} (compute capability {g['cc']}) needs CUDA ≥ {need}: "
                    f"nothing built with CUDA {cuda} (the PyTorch and vLLM wheels of that era, kernels compiled in the "
                    f"image) contains sm_{g['cc'].replace('.', '')} code. Use a CUDA ≥ {need} base image.",
                    evidence=[key, g["key"]], subject=subject, details=d))
            elif max_major is not None and int(cuda.split(".")[0]) > int(max_major):
                d = dict(details, gpu=g["name"], compute_capability=g["cc"], max_cuda_major=max_major)
                out.append(failed(
                    f"{ref} ships CUDA {cuda}, but CUDA {int(max_major) + 1} and later dropped compute capability "
                    f"{g['cc']} ({g['label']}); use a CUDA {max_major}.x base image.",
                    evidence=[key, g["key"]], subject=subject, details=d))
        dcv = _v(drv_cuda) if isinstance(drv_cuda, str) else None
        if isinstance(drv_cuda, str) and dcv is not None and Version(cuda) > dcv:
            if int(cuda.split(".")[0]) > int(drv_cuda.split(".")[0]):
                out.append(failed(
                    f"{ref} ships CUDA {cuda}, newer than the host driver supports (CUDA {drv_cuda}); the container "
                    f"will fail with 'driver version is insufficient'. Upgrade the driver (≥ "
                    f"{kb.cuda_min_driver(cuda) or 'the branch for CUDA ' + cuda}) or use an older base image.",
                    evidence=[key, "driver.cuda_version"], subject=subject, root_cause="driver_too_old_for_cuda",
                    remedies=["driver.upgrade", "dockerfile.base-image"], details=dict(details, driver_cuda=drv_cuda)))
        if not gpus and not out:
            continue
        if not any(o.subject == subject for o in out) and gpus:
            out.append(passed(f"{ref} (CUDA {cuda}) is new enough for "
                              f"{', '.join(g['label'] for g in gpus)}", evidence=[key], subject=subject))
    return out or None


# ----------------------------------------------------------------------------- BWD-CFG-004 vLLM pin


def _spec_allows_any(spec: str, lo: str | None, hi: str | None) -> bool | None:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet  # only for a pin given as a range

    try:
        ss = SpecifierSet(spec)
    except InvalidSpecifier:
        return None
    for v in kbv.known_versions():
        vv = Version(v)
        if (lo is None or vv >= Version(lo)) and (hi is None or vv <= Version(hi)) and ss.contains(vv, prereleases=True):
            return True
    return False


def _pin_advice(snap: Snapshot, fallback: str) -> str:
    """The release to pin, as the fix pins it (:func:`bwdoctor.resolve.recommended_vllm`)."""
    rec, why = _compat.recommended_release(snap)
    if rec is None:
        return f"Pin {fallback}."
    return f"Pin vllm=={rec} (or the vllm/vllm-openai:v{rec} image), {why}."


def check_vllm_pin(snap: Snapshot) -> list[Outcome] | None:
    pin = snap.value("config.vllm_pin")
    gpus = _dedupe_cc(judged_gpus(snap))
    if not isinstance(pin, dict) or not gpus:
        return None
    version, spec = pin.get("version"), pin.get("spec") or ""
    where = f"{pin.get('file')}:{pin.get('line')}"
    what = (f"vllm{spec}" if pin.get("origin") == "pip" else f"image {pin.get('image')}") + f" ({where})"
    out: list[Outcome] = []
    rec = resolve.recommended_vllm(snap)[0]
    for g in gpus:
        lo, hi = _vllm_min(g), _vllm_max(g)
        rng = _vllm_range(g)
        plat = f" on {rng.platform} hosts" if rng is not None and g.get("platform") else ""
        details = {"vllm_version": version, "spec": spec, "origin": pin.get("origin"), "file": pin.get("file"),
                   "line": pin.get("line"), "gpu": g["name"], "compute_capability": g["cc"], "vllm_min": lo,
                   "vllm_max": hi}
        ev = ["config.vllm_pin", g["key"]]
        if lo is None:
            if rng is not None and not rng.established:
                out.append(warned(f"which vLLM release first has kernels for compute capability {g['cc']} "
                                  f"({g['label']}) is not known; {what} may not run on it.", evidence=ev,
                                  subject=g["subject"], details=details, confidence=0.3))
                continue
            out.append(failed(f"{g['label']} (compute capability {g['cc']}) is supported by no vLLM release{plat}; "
                              f"{what} cannot run on it.", evidence=ev, subject=g["subject"], details=details))
            continue
        v = _v(version)
        if v is not None:
            if resolve.at_least(v, lo) is False:
                # torch without the architecture fails before any vLLM kernel runs: then this pin is the
                # second problem of the two (the same newer pin fixes both)
                gap = _compat.torch_gap(snap.mapping("torch"), snap.mapping("cudabin.torch") or None, g["cc"],
                                        getattr(_req(g["cc"]), "torch_cuda_variants", None) or [])
                out.append(failed(
                    f"{what} is older than vLLM {lo}, the first release{plat} with kernels for compute capability "
                    f"{g['cc']} ({g['label']}): its CUDA kernels have no sm_{g['cc'].replace('.', '')} code and fail "
                    f"with 'no kernel image'. {_pin_advice(snap, f'vllm>={lo} (or a vllm/vllm-openai:v{lo}+ image)')}"
                    + (f" Torch fails first: {gap}." if gap else ""),
                    evidence=ev, subject=g["subject"], details=dict(details, secondary_to="torch", recommended=rec)
                    if gap else dict(details, recommended=rec), confidence=0.5 if gap else None))
            elif hi is not None and resolve.compare(v, hi) == 1:
                out.append(failed(f"{what} is newer than vLLM {hi}, the last release with kernels for compute "
                                  f"capability {g['cc']} ({g['label']}): later releases dropped "
                                  f"{resolve.sm(g['cc'])}. {_pin_advice(snap, f'vllm<={hi}')}", evidence=ev,
                                  subject=g["subject"], details=dict(details, recommended=rec)))
            else:
                span = f"{lo} to {hi}" if hi else f"≥ {lo}"
                out.append(passed(f"{what} has kernels for compute capability {g['cc']} ({g['label']}; needs "
                                  f"{span})", evidence=ev, subject=g["subject"]))
            continue
        allowed = _spec_allows_any(spec, lo, hi) if spec else True
        span = f"from {lo} to {hi}" if hi else f"≥ {lo}"
        if allowed is False:
            out.append(failed(f"{what} allows no vLLM release {span}, the releases with kernels for compute capability "
                              f"{g['cc']} ({g['label']}).", evidence=ev, subject=g["subject"], details=details))
        else:
            out.append(warned(f"{what} does not pin an exact vLLM version; make sure it resolves to {span} for "
                              f"compute capability {g['cc']} ({g['label']}).", evidence=ev, subject=g["subject"],
                              details=details, confidence=0.3))
    return out


# ----------------------------------------------------------------------------- BWD-CFG-005 torch in the image


def check_image_torch(snap: Snapshot) -> list[Outcome] | None:
    pins = snap.value("config.pip_pins")
    gpus = _dedupe_cc(judged_gpus(snap))
    if not isinstance(pins, dict) or not gpus:
        return None
    torch_pin = pins.get("torch") if isinstance(pins.get("torch"), dict) else None
    vpin = pins.get("vllm") if isinstance(pins.get("vllm"), dict) else None
    indexes = snap.value("config.pip_indexes") or []
    variants = [i.get("variant") for i in indexes if isinstance(i, dict) and i.get("variant")]
    torch_v = torch_pin.get("version") if torch_pin else None
    how = "pinned"
    line = torch_pin.get("line") if torch_pin else None
    if torch_v is None and vpin and vpin.get("version"):
        torch_v = kbv.torch_pin_for(vpin["version"])
        how = f"required by vllm=={vpin['version']}"
        line = vpin.get("line")
    if torch_v is None:
        return None
    file = (torch_pin or vpin or {}).get("file")
    if variants:
        var = variants[-1]
        cuda = resolve.cuda_of_variant(var)
        origin = f"index {var}"
    else:
        cuda = kbv.torch_pypi_cuda(torch_v)
        origin = "PyPI default build"
        if "+" in str(torch_v):
            local = str(torch_v).split("+", 1)[1]
            cuda = resolve.cuda_of_variant(local)
            origin = f"local version +{local}"
    if cuda is None:
        return None
    out: list[Outcome] = []
    subject = f"{file}:{line}"
    for g in gpus:
        need = _min_cuda(g["cc"])
        details = {"torch_version": torch_v, "torch_cuda": cuda, "how": how, "origin": origin, "file": file,
                   "line": line, "gpu": g["name"], "compute_capability": g["cc"], "min_cuda": need}
        ev = [k for k in ("config.pip_pins", "config.pip_indexes") if snap.has(k)] + [g["key"]]
        req = _req(g["cc"])
        variant = resolve.variant_of_cuda(cuda)
        variants_ok = tuple(getattr(req, "torch_cuda_variants", ()) or ())
        max_major = getattr(req, "max_cuda_major", None)
        if max_major is not None and resolve.version_tuple(cuda)[:1] > (int(max_major),):
            ok = ", ".join(variants_ok) or "none"
            out.append(failed(
                f"torch {torch_v} ({how}; {origin}) is a CUDA {cuda} build, and the {variant} wheels carry no kernels "
                f"for {g['label']} (compute capability {g['cc']}; CUDA {int(max_major) + 1} dropped {resolve.sm(g['cc'])}): "
                f"use a torch whose CUDA variant is one of {ok}"
                + (f" (vLLM ≤ {_vllm_max(g)} pins such a torch)" if _vllm_max(g) else "") + ".",
                evidence=ev, subject=subject, details=dict(details, torch_cuda_variants=list(variants_ok),
                                                           max_cuda_major=max_major)))
        elif need and resolve.compare(cuda, need) == -1:
            variant = resolve.variant_of_cuda(need)
            minor = ".".join(str(x) for x in resolve.version_tuple(torch_v)[:2])
            first_index, first_default = kb.torch_first_with_cuda(need)
            fix = (f"add --extra-index-url https://download.pytorch.org/whl/{variant}"
                   if variant in kb.torch_index_variants().get(minor, ()) else
                   f"move to a vLLM release whose torch has a CUDA ≥ {need} build (torch ≥ {first_index} {variant}; "
                   f"PyPI default from {first_default})")
            out.append(failed(
                f"torch {torch_v} ({how}; {origin}) is a CUDA {cuda} build with no sm_{g['cc'].replace('.', '')} "
                f"kernels, so {g['label']} (compute capability {g['cc']}, needs CUDA ≥ {need}) gets 'no kernel "
                f"image': {fix}.", evidence=ev, subject=subject, details=details))
        else:
            out.append(passed(f"torch {torch_v} ({how}; {origin}, CUDA {cuda}) can run on {g['label']}", evidence=ev,
                              subject=subject))
    return out


# ----------------------------------------------------------------------------- BWD-CFG-006 shm / ipc


def _parallel(snap: Snapshot) -> int:
    n = 1
    for key in ("config.requested", "vllm.config"):
        c = snap.value(key)
        if isinstance(c, dict):
            tp = c.get("tensor_parallel_size") or 1
            pp = c.get("pipeline_parallel_size") or 1
            with contextlib.suppress(TypeError, ValueError):
                n = max(n, int(tp) * int(pp))
    return n


def check_shm(snap: Snapshot) -> list[Outcome] | None:
    out: list[Outcome] = []
    par = _parallel(snap)
    for key in ("config.compose", "config.docker_run"):
        c = snap.value(key)
        if not isinstance(c, dict):
            continue
        what = "compose service " + str(c.get("service")) if key == "config.compose" else "docker run"
        subject = f"{c.get('file')}:{c.get('line')}"
        gpu_count = c.get("gpu_count") if isinstance(c.get("gpu_count"), int) else None
        multi = par > 1 or (gpu_count or 0) > 1
        ipc = str(c.get("ipc") or "").lower()
        shm = c.get("shm_bytes") if isinstance(c.get("shm_bytes"), int) else None
        details = {"file": c.get("file"), "line": c.get("line"), "service": c.get("service"), "kind": key,
                   "ipc": c.get("ipc"), "shm_bytes": shm, "parallel": par, "gpu_count": gpu_count}
        ev = [key] + [k for k in ("config.requested",) if snap.has(k)]
        if ipc == "host":
            out.append(passed(f"{what} shares the host's IPC namespace (ipc: host)", evidence=ev, subject=subject))
            continue
        size_txt = f"{shm >> 20} MiB" if shm is not None else "Docker's default 64 MiB"
        if shm is not None and shm >= 1 << 30:
            out.append(passed(f"{what} has a {shm >> 30} GiB /dev/shm", evidence=ev, subject=subject))
            continue
        why = (f"tensor/pipeline parallel size {par}" if par > 1 else f"{gpu_count} GPUs")
        if multi:
            out.append(failed(
                f"{what} runs vLLM on several GPUs ({why}) with {size_txt} of /dev/shm and no ipc: host: NCCL and "
                f"vLLM's worker processes exchange data through shared memory and crash or hang (ncclShmOpen, "
                f"'Bus error'). Add ipc: host (--ipc=host) or shm_size of several GiB (--shm-size 16g).",
                evidence=ev, subject=subject, details=details))
        else:
            out.append(warned(
                f"{what} gives vLLM {size_txt} of /dev/shm and no ipc: host; vLLM's docs ask for --ipc=host or a "
                f"larger --shm-size, and tensor parallelism will fail with this.", evidence=ev, subject=subject,
                details=details, severity="low", confidence=0.4))
    return out or None


# ----------------------------------------------------------------------------- BWD-CFG-007 memory settings


def _num(x: Any) -> float | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return float(x)
    try:
        return float(str(x).replace(",", ""))
    except (TypeError, ValueError):
        return None


def check_memory_settings(snap: Snapshot) -> list[Outcome] | None:
    req = snap.value("config.requested") if isinstance(snap.value("config.requested"), dict) else {}
    vc = snap.value("vllm.config") if isinstance(snap.value("vllm.config"), dict) else {}
    kv = snap.value("log.kv_cache") if isinstance(snap.value("log.kv_cache"), dict) else {}
    out: list[Outcome] = []
    gmu = _num(req.get("gpu_memory_utilization", vc.get("gpu_memory_utilization")))
    ev_cfg = [k for k in ("config.requested", "vllm.config") if snap.has(k)]
    if gmu is not None:
        if not 0 < gmu <= 1:
            out.append(failed(f"gpu_memory_utilization {gmu} is outside (0, 1]: it is the fraction of the GPU's memory "
                              f"vLLM may use (default 0.9; 0.92 from vLLM 0.20).", evidence=ev_cfg,
                              subject="gpu_memory_utilization", details={"gpu_memory_utilization": gmu}))
    mml = _num(req.get("max_model_len") or vc.get("max_model_len") or vc.get("max_seq_len"))
    tokens = _num(kv.get("tokens"))
    conc = _num(kv.get("max_concurrency"))
    gib = _num(kv.get("gib"))
    ev_kv = ev_cfg + ["log.kv_cache"]
    if kv:
        if (tokens is not None and tokens <= 0) or (gib is not None and gib <= 0):
            out.append(failed(f"the log shows no room for the KV cache ({gib if gib is not None else '?'} GiB, "
                              f"{int(tokens) if tokens is not None else '?'} tokens): weights and activations use the "
                              f"whole budget. Raise --gpu-memory-utilization, lower --max-model-len/--max-num-seqs, or "
                              f"use a smaller or quantized model.", evidence=ev_kv, subject="kv_cache",
                              details={"tokens": tokens, "gib": gib}))
        elif mml is not None and tokens is not None and mml > tokens:
            out.append(failed(f"max_model_len {int(mml)} is larger than the {int(tokens)} tokens the KV cache holds: "
                              f"one full-length request does not fit. Lower --max-model-len to ≤ {int(tokens)} or raise "
                              f"--gpu-memory-utilization.", evidence=ev_kv, subject="max_model_len",
                              details={"max_model_len": int(mml), "kv_tokens": int(tokens)}))
        elif conc is not None and conc < 1:
            out.append(failed(f"the log's maximum concurrency is {conc:.2f}x: not even one request of the maximum "
                              f"length fits in the KV cache. Lower --max-model-len or raise --gpu-memory-utilization.",
                              evidence=ev_kv, subject="kv_cache", details={"max_concurrency": conc}))
        elif tokens is not None:
            extra = f", max_model_len {int(mml)}" if mml is not None else ""
            out.append(passed(f"the KV cache holds {int(tokens)} tokens{extra}", evidence=ev_kv, subject="kv_cache"))
    if not out and gmu is not None:
        out.append(passed(f"gpu_memory_utilization {gmu} is valid", evidence=ev_cfg, subject="gpu_memory_utilization"))
    return out or None


# ----------------------------------------------------------------------------- FP8


def _fp8_requested(snap: Snapshot) -> dict[str, Any]:
    """What in the configuration really asks for FP8 (real flags, an FP8 checkpoint name)."""
    req = snap.value("config.requested") if isinstance(snap.value("config.requested"), dict) else {}
    got: dict[str, Any] = {}
    q = req.get("quantization")
    if isinstance(q, str) and kb.quant_kind(q) == "fp8":
        got["quantization"] = q
    k = req.get("kv_cache_dtype")
    if isinstance(k, str) and k.lower().startswith("fp8"):
        got["kv_cache_dtype"] = k
    m = req.get("model")
    if isinstance(m, str) and re.search(r"(^|[-_/.])fp8($|[-_/.])", m, re.I):
        got["model"] = m
    # a live smoke generation asked for it on the command line (bwdoctor run --smoke --quantization fp8)
    asked = snap.mapping("smoke.engine").get("requested")
    if isinstance(asked, dict):
        q = asked.get("quantization")
        if isinstance(q, str) and kb.quant_kind(q) == "fp8" and "quantization" not in got:
            got["quantization"] = q
        k = asked.get("kv_cache_dtype")
        if isinstance(k, str) and k.lower().startswith("fp8") and "kv_cache_dtype" not in got:
            got["kv_cache_dtype"] = k
    return got


def _fp8_ignored_vars(snap: Snapshot) -> list[dict[str, Any]]:
    """VLLM_* variables meant to turn FP8 on that the vLLM in use does not read."""
    out = []
    for it in _configured_vars(snap):
        name, value = it["name"], it["value"]
        version = advice_release(snap, prefer_config=it["origin"] == "config")[3]
        names, _ = env_names_for(snap, version)
        if name in names:
            continue
        rep = kbv.env_var_replacement(name, version)
        if rep is None or not _truthy(value):
            continue
        if rep.get("intent") == "fp8" or (rep.get("intent") in ("quantization", "kv_cache_dtype")
                                          and "fp8" in str(value).lower()):
            out.append(dict(it, replacement=rep))
    return out


def _log_engine_config(snap: Snapshot) -> dict[str, Any] | None:
    f = snap.get("vllm.config")
    if f is None or not isinstance(f.value, dict):
        return None
    src = f.source or ""
    if "log" in src and not any(p.startswith(("compose:", "dockerfile:", "dotenv:", "cmdline:"))
                                for p in (s.strip() for s in src.split(";"))):
        return f.value
    return None


def _fp8_log_entries(snap: Snapshot) -> list[dict[str, Any]]:
    v = snap.value("log.fp8")
    if isinstance(v, dict):
        v = [v]
    return [e for e in v or [] if isinstance(e, dict)]


def check_fp8_silently_off(snap: Snapshot) -> list[Outcome] | None:
    ignored = _fp8_ignored_vars(snap)
    if not ignored:
        return None
    real = _fp8_requested(snap)
    eng = _log_engine_config(snap)
    names = ", ".join(i["name"] for i in ignored)
    ev = sorted({k for i in ignored for k in i["evidence"]} | ({"config.requested"} if snap.has("config.requested")
                                                                else set()))
    reps = "; ".join(f"{i['name']} → {_replacement_text(i['replacement'], i['name'], i['value'])}" for i in ignored)
    details = {"variables": [i["name"] for i in ignored], "locations": [i["location"] for i in ignored],
               "real_fp8_settings": real, "use_instead": reps}
    if eng and (kb.quant_kind(eng.get("quantization")) == "fp8" or
                str(eng.get("kv_cache_dtype") or "").lower().startswith("fp8")):
        return [passed(f"FP8 is on according to the engine config in the log, although {names} has no effect",
                       evidence=ev + ["vllm.config"])]
    if real:
        on = ", ".join(f"{k}={v}" for k, v in real.items())
        return [warned(f"{names} has no effect; FP8 comes only from the real setting ({on}). Remove the variable to "
                       f"avoid confusion: {reps}.", evidence=ev, details=details, confidence=0.5)]
    verb = "is" if len(ignored) == 1 else "are"
    return [failed(f"FP8 would silently not be on: {names} {verb} read by no vLLM release, and nothing else asks for FP8 "
                   f"(no --quantization fp8, no --kv-cache-dtype fp8, no FP8 checkpoint). Use instead: {reps}.",
                   evidence=ev, details=details)]


def check_fp8_vs_gpu(snap: Snapshot) -> list[Outcome] | None:
    real = _fp8_requested(snap)
    eng = _log_engine_config(snap) or {}
    if kb.quant_kind(eng.get("quantization")) == "fp8":
        real.setdefault("quantization", eng.get("quantization"))
    if str(eng.get("kv_cache_dtype") or "").lower().startswith("fp8"):
        real.setdefault("kv_cache_dtype", eng.get("kv_cache_dtype"))
    gpus = _dedupe_cc(judged_gpus(snap))
    if not real or not gpus:
        return None
    facts = kbv.fp8_facts()
    out: list[Outcome] = []
    asked = ", ".join(f"{k}={v}" for k, v in real.items())
    version, _, vkeys = vllm_in_use(snap, prefer_config=True)
    forced = str((snap.mapping("config.requested")).get("attention_backend") or
                 (snap.mapping("config.env")).get("VLLM_ATTENTION_BACKEND") or "").upper()
    for g in gpus:
        cc = g["cc"]
        native = kbv.supports_native_fp8(cc)
        ev = [k for k in ("config.requested", "vllm.config") if snap.has(k)] + [g["key"]] + vkeys
        details = {"requested": real, "gpu": g["name"], "compute_capability": cc, "native_fp8": native}
        if native is False:
            marlin = kb.marlin_fallback("fp8", cc)
            if marlin:
                out.append(warned(
                    f"FP8 is asked for ({asked}) on {g['label']}, compute capability {cc} < {facts['native_min_cc']}: "
                    f"no FP8 tensor cores, so vLLM runs FP8 weights as weight-only FP8 through the Marlin kernel "
                    f"(W8A16): memory is saved but compute is not faster. Use a BF16/INT8/AWQ/GPTQ model for speed, "
                    f"or a GPU with compute capability ≥ 8.9.", evidence=ev, subject=g["subject"],
                    details=details))
            else:
                out.append(failed(
                    f"FP8 is asked for ({asked}) on {g['label']}, compute capability {cc}: below "
                    f"{facts['marlin_min_cc']} vLLM has no FP8 path at all (not even Marlin weight-only).",
                    evidence=ev, subject=g["subject"], details=details))
            continue
        vmin = _vllm_min(g)
        if version and vmin and resolve.at_least(version, vmin) is False:
            out.append(failed(
                f"FP8 is asked for ({asked}) on {g['label']} (compute capability {cc} has FP8 tensor cores), but "
                f"vLLM {version} predates {vmin}, the first release with kernels for this architecture: its FP8 "
                f"(CUTLASS) kernels have no sm_{cc.replace('.', '')} code.", evidence=ev, subject=g["subject"],
                root_cause="arch_not_in_vllm_wheel", remedies=["dockerfile.vllm-pin", "vllm.install-supported"],
                details=dict(details, vllm_version=version, vllm_min=vmin)))
            continue
        if "kv_cache_dtype" in real and cc.startswith("12.") and forced in ("FLASH_ATTN", "FLASH_ATTENTION"):
            out.append(failed(
                f"an FP8 KV cache ({real['kv_cache_dtype']}) with the FLASH_ATTN backend forced on {g['label']} "
                f"(compute capability {cc}): FlashAttention supports an FP8 KV cache only with FA3 on SM90 or FA4 on "
                f"SM100, so the engine refuses it. Let vLLM choose (it falls through to FLASHINFER) or force "
                f"FLASHINFER.", evidence=ev, subject=g["subject"], root_cause="attention_backend_unsupported",
                remedies=["vllm.attention-backend"], details=dict(details, forced_backend=forced)))
            continue
        out.append(passed(f"{g['label']} (compute capability {cc} ≥ {facts['native_min_cc']}) runs FP8 natively "
                          f"({asked})", evidence=ev, subject=g["subject"]))
    return out


def check_fp8_log(snap: Snapshot) -> list[Outcome] | None:
    entries = _fp8_log_entries(snap)
    eng = _log_engine_config(snap)
    real = _fp8_requested(snap)
    out: list[Outcome] = []
    marlin = [e for e in entries if e.get("kind") == "marlin_fallback" or "marlin" in str(e.get("text", "")).lower()]
    gpus = _dedupe_cc(judged_gpus(snap))
    if marlin:
        native_gpus = [g for g in gpus if kbv.supports_native_fp8(g["cc"])]
        line = marlin[0].get("line")
        if native_gpus:
            g = native_gpus[0]
            out.append(failed(
                f"the log (line {line}) shows FP8 running as weight-only Marlin although {g['label']} (compute "
                f"capability {g['cc']}) has FP8 tensor cores: this vLLM build lacks native FP8 kernels for the "
                f"architecture. Use a vLLM release with kernels for it.", evidence=["log.fp8", g["key"]],
                subject="marlin", root_cause="arch_not_in_vllm_wheel", confidence=0.5,
                remedies=["vllm.install-supported", "vllm.fp8-fallback"], details={"line": line}))
        else:
            out.append(warned(
                f"the log (line {line}) shows FP8 running as weight-only FP8 through Marlin (W8A16): the GPU has no "
                f"native FP8 (compute capability < 8.9), so FP8 saves memory but not compute.",
                evidence=["log.fp8"] + [g["key"] for g in gpus], subject="marlin", details={"line": line}))
    if eng is not None and real:
        lost = []
        if "quantization" in real and kb.quant_kind(eng.get("quantization")) != "fp8" \
                and "quantization" in eng:
            lost.append(f"quantization={real['quantization']} (engine: {eng.get('quantization')})")
        if "kv_cache_dtype" in real and "kv_cache_dtype" in eng \
                and not str(eng.get("kv_cache_dtype") or "").lower().startswith("fp8"):
            lost.append(f"kv_cache_dtype={real['kv_cache_dtype']} (engine: {eng.get('kv_cache_dtype')})")
        if lost:
            out.append(failed(f"the configuration asks for {', '.join(lost)} but the engine config in the log does "
                              f"not use it: the setting never reached the engine (another command line or image "
                              f"entrypoint was used).", evidence=["config.requested", "vllm.config"], subject="engine",
                              root_cause=None, remedies=["config.replace-vllm-env"], details={"lost": lost}))
    native = [e for e in entries if e.get("kind") == "linear_kernel" and "marlin" not in str(e.get("kernel", "")).lower()]
    if not out and native:
        e = native[0]
        on = f" on {', '.join(g['label'] + ' (compute capability ' + g['cc'] + ')' for g in gpus)}" if gpus else ""
        out.append(passed(f"the log (line {e.get('line')}) shows native FP8 (W8A8: FP8 weights and activations on "
                          f"the tensor cores): vLLM selected {e.get('kernel')} for {e.get('method')}{on}, and no "
                          f"Marlin weight-only fallback", evidence=[k for k in ("log.fp8", "vllm.config") if snap.has(k)]
                          + [g["key"] for g in gpus if g["key"].startswith("gpu.")],
                          details={"line": e.get("line"), "kernel": e.get("kernel"), "method": e.get("method")}))
    if not out and (entries or (eng and real)):
        out.append(passed("the log shows FP8 as configured" if real else "the log shows no FP8 fallback",
                          evidence=[k for k in ("log.fp8", "vllm.config") if snap.has(k)]))
    return out or None


# ----------------------------------------------------------------------------- registration


@hookimpl
def bwdoctor_checks() -> list[CheckSpec]:
    return [
        CheckSpec(
            id="BWD-CFG-001", title="vLLM reads every VLLM_* variable the configuration sets", func=check_unread_env,
            needs_any=["config.env", "host.env"], tags=["config", "vllm", "env"], root_cause=None,
            remedies=["config.replace-vllm-env"], confidence=0.95,
            doc="Every VLLM_* variable set in a Dockerfile, compose file, .env file, docker run -e or the live "
                "environment is looked up in the environment_variables dict of the vLLM in use: the installed "
                "vllm/envs.py read statically (fact vllm.env_vars), else bwdoctor's table of every release 0.6.2 → "
                "0.33.0 for the pinned/reported version, else the newest; when a fix moves that release (it has no "
                "kernels for the GPU, or the base image predates it) for the release moved to, noting what the "
                "release in use made of the variable. vLLM silently ignores any other name (from "
                "0.17.0 it only logs 'Unknown vLLM environment variable detected'), so a setting the user believes "
                "is on is off. Guides invent such names (VLLM_ENABLE_FP8, VLLM_USE_FLASHINFER, "
                "VLLM_GPU_MEMORY_UTILIZATION, VLLM_MAX_MODEL_LEN, ...); others were removed (VLLM_ATTENTION_BACKEND "
                "after 0.14, VLLM_USE_V1 after 0.11.0). Fails with the real flag or variable to use instead "
                "(--quantization fp8, --kv-cache-dtype fp8, --attention-backend FLASHINFER or "
                "VLLM_ATTENTION_BACKEND=FLASHINFER by version, --gpu-memory-utilization, --max-model-len, ...); "
                "warns for names no release reads with a spelling suggestion. An ignored variable is a configuration "
                "problem, not an environment failure, so no root-cause label is implied. Remedy "
                "config.replace-vllm-env rewrites the file at the recorded line."),
        CheckSpec(
            id="BWD-CFG-002", title="No deprecated vLLM variables", func=check_deprecated_env,
            needs_any=["config.env", "host.env"], tags=["config", "vllm", "env"], root_cause=None,
            remedies=["config.replace-vllm-env"], confidence=0.9,
            doc="Warns when a variable the vLLM in use still reads is deprecated and will stop working on upgrade "
                "(VLLM_ATTENTION_BACKEND and VLLM_FLASH_ATTN_VERSION in 0.13/0.14, gone from 0.15.0), naming the "
                "flag that replaces it (--attention-backend, --attention-config.flash_attn_version)."),
        CheckSpec(
            id="BWD-CFG-008", title="The vllm serve flags exist in the vLLM release", func=check_serve_flags,
            needs=["config.serve_args"], tags=["config", "vllm", "flags"], root_cause=None,
            remedies=["config.serve-flags"], confidence=0.9,
            doc="Looks up every vllm serve flag of the configuration's command line (compose command:, docker run, "
                "a launch script) that bwdoctor's table of releases 0.6.2 → 0.33.0 knows, for the release the "
                "configuration runs: its pin, else the installed or reported vLLM; when a fix moves that release "
                "(it has no kernels for the GPU, or the base image predates it) for the release moved to, so the "
                "advice matches the fix. vllm serve stops on an argument it does not know: --speculative-model and "
                "--num-speculative-tokens were removed in 0.8.3 (one --speculative-config JSON replaces them), "
                "--swap-space after 0.17.1, --attention-backend arrived in 0.13.0 (VLLM_ATTENTION_BACKEND before). "
                "Flags the table does not know are not judged. Remedy config.serve-flags rewrites a compose "
                "service's one-line command:."),
        CheckSpec(
            id="BWD-CFG-003", title="The base image's CUDA supports the GPU", func=check_base_image_cuda,
            needs_any=["config.base_image", "config.image"], tags=["config", "docker", "cuda"],
            root_cause="arch_not_in_torch_wheel", remedies=["dockerfile.base-image"], confidence=0.7,
            doc="Compares the CUDA version in the image tag (nvidia/cuda:12.4.1-..., pytorch/pytorch:...-cuda12.4-, "
                "-cu124, or the CUDA a vllm/vllm-openai:vX.Y.Z image was built with) with the GPU's minimum (CUDA "
                "12.8 for sm_100/sm_120, 12.9 for sm_103/sm_121; kb arch data) for every GPU, else the --target. A "
                "CUDA 12.4 image cannot hold sm_120 code: the PyTorch and vLLM wheels that match it stop at sm_90, "
                "so the first kernel fails with 'no kernel image'; the label is arch_not_in_torch_wheel because "
                "that is where it breaks first. Also fails (driver_too_old_for_cuda) when the image's CUDA major is "
                "newer than the host driver supports. Remedy dockerfile.base-image proposes a CUDA ≥ minimum tag."),
        CheckSpec(
            id="BWD-CFG-004", title="The vLLM the configuration pins has kernels for the GPU", func=check_vllm_pin,
            needs=["config.vllm_pin"], tags=["config", "docker", "vllm"], root_cause="arch_not_in_vllm_wheel",
            remedies=["dockerfile.vllm-pin", "vllm.install-supported"], confidence=0.9,
            doc="Compares the vLLM version pinned by pip (vllm==X) or an image tag (vllm/vllm-openai:vX) with the "
                "first release whose wheel has kernels for the GPU's architecture (0.9.0 for sm_100, 0.9.2 for "
                "sm_120; wheel inspection) and the last one (sm_70 dropped in 0.20.0). Older vLLM fails with 'no "
                "kernel image' in its own kernels even when torch works. Names the release to pin as the fix does: the "
                "newest with kernels for every judged GPU whose CUDA build the driver runs. Remedy dockerfile.vllm-pin "
                "rewrites the pin (a Dockerfile's FROM and pip pins, a compose service's image)."),
        CheckSpec(
            id="BWD-CFG-005", title="The torch the configuration installs has kernels for the GPU",
            func=check_image_torch, needs=["config.pip_pins"], tags=["config", "docker", "torch"],
            root_cause="arch_not_in_torch_wheel", remedies=["dockerfile.vllm-pin", "torch.reinstall-cuda-variant"],
            confidence=0.8,
            doc="Works out the torch build a Dockerfile installs: an explicit torch pin, else the torch the pinned "
                "vLLM requires (wheel METADATA), with its CUDA from the --index-url/--extra-index-url variant (cu124, "
                "cu128, ...) or the default PyPI build of that torch (2.6 cu124, 2.7 cu126, 2.8 cu128, 2.11 cu130). "
                "A build whose CUDA is below the GPU's minimum has no kernels for it (vLLM 0.9.x/0.10.0-0.10.1 on "
                "Blackwell need --extra-index-url https://download.pytorch.org/whl/cu128)."),
        CheckSpec(
            id="BWD-CFG-006", title="Containers give vLLM enough shared memory", func=check_shm,
            needs_any=["config.compose", "config.docker_run"], tags=["config", "docker", "shm", "multi-gpu"],
            root_cause="shm_too_small", remedies=["compose.ipc-host", "compose.shm-size"], confidence=0.85,
            doc="A compose service or docker run without ipc: host (--ipc=host) and without shm_size (--shm-size) "
                "gets Docker's 64 MiB /dev/shm. NCCL and vLLM's worker processes use shared memory; with tensor or "
                "pipeline parallelism (--tensor-parallel-size > 1) or several GPUs requested this crashes or hangs "
                "(ncclShmOpen, Bus error). Fails for multi-GPU, warns (low) for one GPU; shm ≥ 1 GiB or ipc: host "
                "passes."),
        CheckSpec(
            id="BWD-CFG-007", title="Memory settings fit the KV cache", func=check_memory_settings,
            needs_any=["config.requested", "vllm.config", "log.kv_cache"], tags=["config", "memory"],
            root_cause="kv_cache_oom", remedies=["vllm.memory-settings"], confidence=0.85,
            doc="Checks gpu_memory_utilization is in (0, 1] and, when a log reports the KV cache (log.kv_cache: "
                "tokens, GiB, maximum concurrency), that it is not empty or negative and that max_model_len (flags or "
                "engine config) fits in it: otherwise vLLM refuses to start ('No available memory for the cache "
                "blocks', 'max seq len ... larger than ... KV cache'). Remedy vllm.memory-settings proposes a fitting "
                "--max-model-len / --gpu-memory-utilization."),
        CheckSpec(
            id="BWD-FP8V-001", title="FP8 is switched on by a setting vLLM reads", func=check_fp8_silently_off,
            needs_any=["config.env", "host.env"], tags=["fp8", "config"], root_cause=None,
            remedies=["config.replace-vllm-env"], confidence=0.9,
            doc="When the configuration tries to turn FP8 on with a variable the vLLM in use never reads "
                "(VLLM_ENABLE_FP8, VLLM_QUANTIZATION=fp8, VLLM_KV_CACHE_DTYPE=fp8, ...) and nothing real asks for "
                "FP8 (--quantization fp8, --kv-cache-dtype fp8, an FP8 checkpoint), FP8 would silently not be on: "
                "fails with the flags to use. Passes when the engine config in a log shows FP8 anyway. No "
                "root-cause label: the environment is fine, the setting is ignored."),
        CheckSpec(
            id="BWD-FP8V-002", title="The GPU and vLLM can run the FP8 asked for", func=check_fp8_vs_gpu,
            needs_any=["config.requested", "vllm.config"], tags=["fp8", "gpu"], root_cause="fp8_unsupported_on_gpu",
            remedies=["vllm.fp8-fallback"], confidence=0.85,
            doc="For FP8 asked for by real flags (--quantization fp8, --kv-cache-dtype fp8), an FP8 checkpoint name, "
                "or the engine config in a log: native FP8 needs compute capability ≥ 8.9 (vLLM supports_fp8()); "
                "from 7.5 vLLM falls back to weight-only FP8 through Marlin (warn: no compute speed-up), below 7.5 "
                "there is no FP8 path (fail). On an FP8-capable GPU, a vLLM older than the first release with "
                "kernels for the architecture fails (arch_not_in_vllm_wheel), and an FP8 KV cache with the "
                "FLASH_ATTN backend forced on CC 12.x fails (attention_backend_unsupported)."),
        CheckSpec(
            id="BWD-FP8V-003", title="The log shows the FP8 the configuration asked for", func=check_fp8_log,
            needs_any=["log.fp8", "vllm.config"], tags=["fp8", "log"], root_cause="fp8_unsupported_on_gpu",
            remedies=["vllm.fp8-fallback"], confidence=0.8,
            doc="Reads what the engine actually did: the Marlin weight-only fallback message (log.fp8) is a warning "
                "on a GPU without native FP8 and a failure on one with it (the build lacks kernels for the "
                "architecture: arch_not_in_vllm_wheel); a configured --quantization fp8 / --kv-cache-dtype fp8 that "
                "the engine config line in the log does not show means the setting never reached the engine. Passes "
                "with the proof of native FP8 (W8A8) when the log names the FP8 GEMM kernel vLLM selected "
                "('Selected CutlassFP8ScaledMMLinearKernel for Fp8LinearMethod') and no Marlin fallback. The "
                "engine log of a live smoke generation (run --smoke --quantization fp8) is read the same way."),
    ]
