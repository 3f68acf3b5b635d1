"""Classification of CUDA / engine failure texts into root causes (shared by the probes and the smoke generation).

Both read the one signature table of the knowledge base (``bwdoctor/kb/signatures.json``), the
table the log parser reads: a probe's CUDA error gets the ``probe_kind`` of the first signature that
matches (what a known-good probe kernel failing means), a failed smoke generation the root cause and
remedies of the first matching signature that names one.
"""

from __future__ import annotations

from typing import Any

from bwdoctor.kb import signatures as sigtable


def kind_causes() -> dict[str, tuple[str | None, list[str], str]]:
    """kind -> (root cause, remedy ids, what it means), from the table's ``probe_kinds``."""
    return {k.name: (k.root_cause, list(k.remedies), k.meaning) for k in sigtable.probe_kinds().values()}


def classify_cuda_error(text: str | None) -> str:
    """The kind of a CUDA/torch error text: no_kernel_image, driver_too_old, ... or ``other``."""
    return sigtable.probe_kind(text)


def classify_failure(text: str) -> tuple[str | None, list[str]]:
    """A root-cause label and remedy ids suggested by a failure's error text (None when unclear)."""
    sig = sigtable.classify(text)
    if sig is None:
        return None, []
    return sig.root_cause, list(sig.remedies)


def failure_detail(text: str) -> dict[str, Any]:
    """What the first matching signature says about a failure text: ``root_cause``, ``remedies``,
    ``signature`` (its id), ``meaning``, and for a missing Python module ``module`` and, where the
    knowledge base knows it, ``package`` (the PyPI distribution that provides it). Empty when none
    matches."""
    if not text:
        return {}
    for sig, rx in sigtable.compiled():
        if not sig.root_cause:
            continue
        m = rx.search(text)
        if m is None:
            continue
        out: dict[str, Any] = {"root_cause": sig.root_cause, "remedies": list(sig.remedies), "signature": sig.id,
                               "meaning": sig.meaning}
        if sig.root_cause == "python_dependency_broken":
            groups = [g for g in sigtable.captures(sig, m) if g]
            module = groups[-1] if sig.id == "import_name_missing" and len(groups) > 1 else (groups[0] if groups else None)
            if module:
                out["module"] = module
                package = sigtable.python_package(module)
                if package:
                    out["package"] = package
        return out
    return {}
