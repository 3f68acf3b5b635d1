"""Shared helpers of the log-signature tests: snapshots built from parsed text, one check's outcome."""

from __future__ import annotations

from bwdoctor import runner
from bwdoctor.types import Snapshot
from bwdoctor_checks.checks import log as logsig
from bwdoctor_checks.parsers import log as parse_log

from conftest import make_snapshot

SPECS = {s.id: s for s in logsig.bwdoctor_checks()}


def snap_from(text: str, **facts) -> Snapshot:
    """What analyze builds from ``text``, plus hand-made facts (``gpu__0`` sets ``gpu.0``)."""
    return make_snapshot(base=parse_log.parse_text(text), **facts)


def outcome(cid: str, snap: Snapshot):
    found = runner.run_check(SPECS[cid], snap)
    assert len(found) == 1, found
    return found[0]
