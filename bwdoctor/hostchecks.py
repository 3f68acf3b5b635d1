"""The host's own checks: the ``BWD-CORE`` findings bwdoctor emits when a plugin, a collector, a
parser or a remedy breaks, or when evidence is not recognised.

They are declared through the same ``bwdoctor_checks`` hook a third-party plugin uses (plugin
``checks.host``), so that ``bwdoctor list``, ``explain`` and ``--select`` know them like any other
check. Their function is :func:`reported_by_host`: the runner never calls it, the host emits these
findings itself while it runs plugin code.
"""

from __future__ import annotations

from bwdoctor.hookspecs import hookimpl
from bwdoctor.types import CheckSpec, Outcome, Snapshot

CORE_CHECKS: dict[str, tuple[str, str]] = {
    "BWD-CORE-001": ("Plugin loads", "A plugin failed to import, one of its hooks raised or returned the wrong "
                     "type, or it implements a hook that does not exist (a typo: `bwdoctor_check`) or a function named "
                     "like a hook without the @hookimpl decorator, which is never called. The plugin, its "
                     "distribution and the hook are named; its checks did not run. Fix or upgrade the plugin, or disable it with "
                     "--disable NAME. No automatic remedy: the plugin's code is not bwdoctor's to change."),
    "BWD-CORE-002": ("Plugin ids are unique", "Two plugins declared the same check, collector, parser, remedy or "
                     "reporter id; the second declaration was ignored. Rename one of them or disable a plugin. No "
                     "automatic remedy."),
    "BWD-CORE-003": ("Collectors finish", "A collector raised or ran past its deadline (a hung driver call, a crash "
                     "while importing a package). Its facts are missing and checks needing them were skipped. No "
                     "automatic remedy: the message says what hung."),
    "BWD-CORE-004": ("Evidence parsers finish", "A parser raised or ran past its deadline on an evidence file. The "
                     "other parsers and checks still ran. No automatic remedy."),
    "BWD-CORE-005": ("Remedies build", "A remedy raised or ran past its deadline while building its fix plan. "
                     "No automatic remedy."),
    "BWD-CORE-006": ("Evidence recognised", "No parser recognised an evidence file given to analyze, so nothing "
                     "was learnt from it. Give the raw output (collect_env, nvidia-smi, pip list, a vLLM log, "
                     "Dockerfile, compose or .env). No automatic remedy."),
}


def reported_by_host(snapshot: Snapshot) -> Outcome | None:
    """The function of a check whose findings the host emits itself: never run as a check."""
    return None


@hookimpl
def bwdoctor_checks() -> list[CheckSpec]:
    return [CheckSpec(id=cid, title=title, func=reported_by_host, area="CORE", doc=doc, can_fail=False)
            for cid, (title, doc) in CORE_CHECKS.items()]
