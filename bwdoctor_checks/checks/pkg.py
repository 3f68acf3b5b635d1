"""Checks of the installed Python packages (BWD-PKG)."""

from __future__ import annotations

from packaging.version import Version

from bwdoctor import CheckResult, CheckSpec, Snapshot, failed, hookimpl, passed, resolve, skipped, warned

# ----------------------------------------------------------------------------- checks


def _base(version: str) -> Version | None:
    return resolve.base_version(version)


def _local(version: str) -> str | None:
    v = resolve.parse_version(version)
    return v.local if v is not None else None


COMPANIONS = ("torchvision", "torchaudio")


def check_companions(snap: Snapshot) -> CheckResult:
    pkgs = snap.mapping("packages")
    present = [c for c in COMPANIONS if c in pkgs]
    if not present:
        return skipped("neither torchvision nor torchaudio is installed", ["packages"])
    torch = pkgs.get("torch")
    outcomes = []
    for comp in present:
        info = pkgs[comp]
        version = str(info.get("version", ""))
        reqs = info.get("requires")
        if torch is None:
            outcomes.append(failed(f"{comp} {version} is installed but torch is not: importing {comp} (and vLLM, "
                                   f"which imports it) fails", ["packages"], subject=comp))
            continue
        tver = str(torch.get("version", ""))
        if reqs is None:
            outcomes.append(warned(f"{comp} {version} is installed beside torch {tver}, but its requirements are "
                                   f"unknown (evidence without metadata): check they were built together",
                                   ["packages"], subject=comp, confidence=0.3))
            continue
        pin = None
        from packaging.requirements import InvalidRequirement, Requirement  # only when there are requirements
        from packaging.utils import canonicalize_name

        for raw in reqs:
            try:
                req = Requirement(raw)
            except InvalidRequirement:
                continue
            if canonicalize_name(req.name) == "torch" and (req.marker is None or req.marker.evaluate({"extra": ""})):
                pin = req
                break
        tbase = _base(tver)
        if pin is not None and tbase is not None and pin.specifier and not pin.specifier.contains(tbase, prereleases=True):
            outcomes.append(failed(
                f"{comp} {version} was built for torch{pin.specifier} but torch {tver} is installed: its compiled "
                f"operators fail to load (\"operator torchvision::nms does not exist\"), which breaks `import vllm`",
                ["packages"], subject=comp, details={"requires": str(pin), "torch": tver}))
            continue
        tl, cl = _local(tver), _local(version)
        if tl and cl and tl != cl and (tl.startswith("cu") or cl.startswith("cu") or "cpu" in (tl, cl)):
            outcomes.append(failed(
                f"{comp} {version} and torch {tver} are builds for different platforms (+{cl} vs +{tl}): its "
                f"compiled operators do not match torch's", ["packages"], subject=comp,
                details={"torch": tver, comp: version}))
            continue
        outcomes.append(passed(f"{comp} {version} matches torch {tver}", ["packages"], subject=comp))
    return outcomes




@hookimpl
def bwdoctor_checks() -> list[CheckSpec]:
    return [
        CheckSpec(
            id="BWD-PKG-001", title="torchvision/torchaudio were built for the installed torch",
            func=check_companions, needs=["packages"], tags=["packages", "static"],
            root_cause="torch_vllm_abi_mismatch", remedies=["torch.align-companions"], confidence=0.9,
            doc="torchvision and torchaudio wheels contain compiled operators linked against one exact torch "
                "release, and declare it (Requires-Dist: torch==X). When pip installs a different torch (a CPU or "
                "CUDA build from another index, or a vLLM that pins another torch), the companion fails at import "
                "with errors such as \"operator torchvision::nms does not exist\", and `import vllm` fails with "
                "it because vLLM imports torchvision. The check compares each companion's declared torch "
                "requirement with the installed torch version, and the local build tags (+cu128, +cpu) of both. "
                "Fix: install the companion release built for the installed torch from the same index, or "
                "uninstall the companion if nothing needs it (remedy torch.align-companions).",
        ),
    ]
