"""The failure-signature table: schema, strict loading, its examples, and the three readers (log parser,
smoke classifier, probe kinds) agreeing on it."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from bwdoctor.kb import signatures as sigtable
from bwdoctor.types import ROOT_CAUSES
from bwdoctor_checks._lib import classify
from bwdoctor_checks.parsers import log as logparser

KB = Path(sigtable.__file__).resolve().parent
DOC = json.loads((KB / "signatures.json").read_text(encoding="utf-8"))
SIGS = sigtable.signatures()


def test_table_matches_its_schema():
    schema = json.loads((KB / "schema" / "signatures.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(DOC, schema)


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d["signatures"][0].update(extra=1), "unknown fields"),
    (lambda d: d["signatures"][0].pop("meaning"), "missing fields"),
    (lambda d: d["signatures"][0].update(root_cause="not_a_label"), "unknown label"),
    (lambda d: d["signatures"][0].update(env_class="somewhere"), "neither a label nor a placeholder"),
    (lambda d: d["signatures"][0].update(patterns=["(unclosed"]), "does not compile"),
    (lambda d: d["signatures"][0].update(triggers=["Upper"]), "lower case"),
    (lambda d: d["signatures"][1].update(id=d["signatures"][0]["id"]), "unique"),
    (lambda d: d["signatures"][0].update(probe_kind="nope"), "unknown kind"),
    (lambda d: d.pop("probe_kinds"), "top-level fields"),
])
def test_loader_is_strict(mutate, match):
    doc = copy.deepcopy(DOC)
    mutate(doc)
    with pytest.raises(sigtable.SignatureTableError, match=match):
        sigtable.validate(doc)
    from bwdoctor.kb import _schema

    if match in ("unknown fields", "missing fields", "top-level fields"):
        with pytest.raises(_schema.KnowledgeBaseError):
            _schema.check("signatures", doc)


def test_every_label_is_known_and_causes_name_remedies():
    for sig in SIGS:
        assert sig.root_cause is None or sig.root_cause in ROOT_CAUSES
        if sig.root_cause:
            assert sig.remedies or sig.root_cause == "dtype_unsupported_on_gpu", sig.id


@pytest.mark.parametrize("sig", SIGS, ids=[s.id for s in SIGS])
def test_examples_match_their_signature_and_pass_the_prefilter(sig):
    rx = dict(sigtable.compiled())[sig]
    for ex in sig.examples:
        assert rx.search(ex), (sig.id, ex)
        assert any(t in ex.lower() for t in sig.triggers), (sig.id, ex)


@pytest.mark.parametrize("sig", [s for s in SIGS if s.id != "python_exception"], ids=lambda s: s.id)
def test_log_parser_reports_each_example(sig):
    for ex in sig.examples:
        facts = {f.key: f.value for f in logparser.parse_text("INFO 01-01 00:00:00 starting\n" + ex)}
        found = {e["signature"] for e in facts.get("log.errors", [])}
        assert sig.id in found, (ex, found)


def test_captures_number_groups_per_wording():
    sig = next(s for s in SIGS if s.id == "pip_conflict")
    rx = dict(sigtable.compiled())[sig]
    m = rx.search("sglang 0.5.0 requires torchao==0.9.0, which is not installed.")
    assert sigtable.captures(sig, m) == ("sglang", "torchao")
    m = rx.search("vllm 0.30.0 requires xgrammar==0.1.29, but you have xgrammar 0.1.20 which is incompatible.")
    assert sigtable.captures(sig, m) == ("vllm", "xgrammar", "==0.1.29", "xgrammar", "0.1.20")


def test_smoke_and_probe_classifiers_read_the_same_table():
    for sig in SIGS:
        for ex in sig.examples:
            if sig.probe_kind:
                assert classify.classify_cuda_error(ex) != "other", ex
            if sig.root_cause:
                assert classify.classify_failure(ex)[0] is not None, ex
    assert set(classify.kind_causes()) == set(DOC["probe_kinds"])


def test_importing_the_table_module_reads_and_compiles_nothing():
    code = ("import bwdoctor.kb.signatures as s, sys; "
            "print(s._table.cache_info().currsize, s.compiled.cache_info().currsize)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "0"]
