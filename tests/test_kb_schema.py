"""Every knowledge-base file is checked against its JSON Schema when it is loaded: an unknown,
misspelt or missing field fails loading instead of being dropped or defaulted."""

from __future__ import annotations

import copy
import json
import shutil

import jsonschema
import pytest

from bwdoctor import kb
from bwdoctor.kb import _schema

FILES = ("gpus", "arch", "drivers", "families", "quantization", "torch", "flashinfer", "nvml", "vllm_config", "vllm_env")


@pytest.mark.parametrize("name", FILES)
def test_every_file_matches_its_schema(name):
    data = json.loads((_schema._DIR / f"{name}.json").read_text())
    schema = _schema.schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(data, schema)  # the reference implementation agrees
    assert _schema.errors(data, schema) == []


def _row(data, name):
    return {"gpus": lambda: data["gpus"][0], "arch": lambda: data["architectures"][0],
            "drivers": lambda: data["known_gaps"]["rows"][0], "families": lambda: data["families"][0],
            "quantization": lambda: data["fp8"], "torch": lambda: data["pypi_default"][0],
            "flashinfer": lambda: data["vllm_pins"][0], "nvml": lambda: data["clock_event_reasons"][0],
            "vllm_config": lambda: data["deprecated_env"]["VLLM_ATTENTION_BACKEND"],
            "vllm_env": lambda: data["variables"]["CUDA_HOME"]}[name]()


@pytest.mark.parametrize("name", FILES)
def test_unknown_field_fails(name):
    data = json.loads((_schema._DIR / f"{name}.json").read_text())
    bad = copy.deepcopy(data)
    _row(bad, name)["min_drvier"] = "570.1"  # a typo must not be dropped silently
    with pytest.raises(_schema.KnowledgeBaseError, match="unknown field 'min_drvier'"):
        _schema.check(name, bad)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, _schema.schema(name))


@pytest.mark.parametrize("name", FILES)
def test_missing_field_fails(name):
    data = json.loads((_schema._DIR / f"{name}.json").read_text())
    bad = copy.deepcopy(data)
    row = _row(bad, name)
    field = next(iter(row))
    del row[field]
    with pytest.raises(_schema.KnowledgeBaseError, match=f"missing field '{field}'"):
        _schema.check(name, bad)


def test_every_row_keeps_its_sources():
    """The schemas require sources: per row for GPUs, architectures (and their vLLM range), driver gaps
    and feature floors, quantization kinds; per file for the rest."""
    sch = {n: _schema.schema(n) for n in FILES}
    assert "sources" in sch["gpus"]["$defs"]["gpu"]["required"]
    assert "sources" in sch["arch"]["$defs"]["arch"]["required"]
    assert "sources" in sch["arch"]["$defs"]["arch"]["properties"]["vllm"]["required"]
    for part in ("cuda_toolkit_drivers", "cuda_minor_compat", "forward_compat", "driver_branches"):
        assert "sources" in sch["drivers"]["properties"][part]["required"]
    for part in ("known_gaps", "feature_floors"):
        assert "sources" in sch["drivers"]["properties"][part]["properties"]["rows"]["items"]["required"]
    for kind in ("fp8", "fp4"):
        assert "sources" in sch["quantization"]["properties"][kind]["required"]
    for name in ("families", "torch", "flashinfer", "nvml", "vllm_env"):
        assert "sources" in sch[name]["required"]
    for part in ("attention_backends", "build_cuda"):
        assert "sources" in sch["vllm_config"]["properties"][part]["required"]
    for a in kb.architectures():
        assert a.sources and all(r.sources for r in a.vllm.values())


def test_loading_a_broken_file_fails(tmp_path, monkeypatch):
    """The loader the checks use reads through the schema: a file with a misspelt field does not load."""
    for p in _schema._DIR.glob("*.json"):
        shutil.copy(p, tmp_path / p.name)
    shutil.copytree(_schema._DIR / "schema", tmp_path / "schema")
    data = json.loads((tmp_path / "gpus.json").read_text())
    data["gpus"][0]["computecapability"] = data["gpus"][0].pop("compute_capability")
    (tmp_path / "gpus.json").write_text(json.dumps(data))
    monkeypatch.setattr(_schema, "_DIR", tmp_path)
    _schema.schema.cache_clear()
    kb._gpus.cache_clear()
    try:
        with pytest.raises(kb.KnowledgeBaseError, match="computecapability"):
            kb.gpus()
    finally:
        monkeypatch.undo()
        _schema.schema.cache_clear()
        kb._gpus.cache_clear()
    assert kb.find_gpu("b200") is not None


def test_schema_subset_keywords():
    s = {"type": "object", "properties": {"a": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 1}]},
                                          "b": {"enum": ["x"]}, "c": {"type": "string", "pattern": "^0x"}},
         "required": ["a"], "additionalProperties": False}
    assert _schema.errors({"a": None, "b": "x", "c": "0x1"}, s) == []
    assert _schema.errors({"a": 0}, s) and _schema.errors({"a": 1, "b": "y"}, s) and _schema.errors({"a": 1, "c": "1"}, s)
    assert _schema.errors({"a": True}, s)  # a boolean is not an integer


def test_a_file_that_passed_is_not_checked_again_until_its_bytes_change(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    calls = []
    real = _schema.check

    def counting(name, data):
        calls.append(name)
        return real(name, data)

    monkeypatch.setattr(_schema, "check", counting)
    first = _schema.load("nvml")
    assert calls == ["nvml"]
    assert _schema.load("nvml") == first and calls == ["nvml"]  # the same bytes: remembered

    folder = tmp_path / "kb"
    shutil.copytree(_schema._DIR / "schema", folder / "schema")
    data = json.loads((_schema._DIR / "nvml.json").read_text())
    (folder / "nvml.json").write_text(json.dumps(data))
    monkeypatch.setattr(_schema, "_DIR", folder)
    _schema.schema.cache_clear()
    try:
        _schema.load("nvml")  # other bytes (re-serialised): checked again
        assert calls == ["nvml", "nvml"]
        data["unknown_field"] = 1
        (folder / "nvml.json").write_text(json.dumps(data))
        with pytest.raises(kb.KnowledgeBaseError, match="unknown_field"):
            _schema.load("nvml")
    finally:
        monkeypatch.undo()
        _schema.schema.cache_clear()
