"""bwdoctor: will this machine or image serve LLMs with vLLM on NVIDIA GPUs, and if not, why?

This module is the public API for plugins. Importing it imports neither torch nor vLLM.
``bwdoctor.resolve`` (versions, compute capabilities, GPU identity, the GPUs being judged) and
``bwdoctor.kb`` (the knowledge base) are part of it: ``from bwdoctor import kb, resolve``.
"""

from bwdoctor.hookspecs import hookimpl
from bwdoctor.lazy import lazy_command, lazy_module, lazy_regex
from bwdoctor.types import (
    INFERRED,
    STATED,
    CheckResult,
    CheckSpec,
    CollectorSpec,
    Evidence,
    Fact,
    Finding,
    FixPlan,
    FixStep,
    Missing,
    Outcome,
    ParserSpec,
    RemedySpec,
    Report,
    ReporterSpec,
    RunOptions,
    Snapshot,
    Unavailable,
    Unsupported,
    failed,
    is_unsupported,
    known,
    passed,
    skipped,
    warned,
)

__version__ = "0.1.0"

__all__ = [
    "INFERRED", "STATED", "CheckResult", "CheckSpec", "CollectorSpec", "Evidence", "Fact", "Finding", "FixPlan",
    "FixStep", "Missing", "Outcome",
    "ParserSpec", "RemedySpec", "Report", "ReporterSpec", "RunOptions", "Snapshot", "Unavailable", "kb", "resolve",
    "Unsupported", "__version__", "failed", "hookimpl", "is_unsupported", "known", "lazy_command", "lazy_module", "lazy_regex",
    "passed", "skipped", "warned",
]
