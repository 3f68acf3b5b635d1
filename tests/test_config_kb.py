"""bwdoctor.kb.vllm: the per-release variable table, the static envs.py reader, replacements."""

from __future__ import annotations

import zipfile

import pytest

from bwdoctor.kb import vllm as V

SEED_NAMES = ["VLLM_ENABLE_FP8", "VLLM_USE_FLASHINFER", "VLLM_GPU_MEMORY_UTILIZATION", "VLLM_MAX_MODEL_LEN",
              "VLLM_MAX_NUM_SEQS", "VLLM_QUANTIZATION", "VLLM_ENABLE_CHUNKED_PREFILL", "VLLM_MAX_NUM_BATCHED_TOKENS",
              "VLLM_SPECULATIVE_MODEL", "VLLM_NUM_SPECULATIVE_TOKENS", "VLLM_ENABLE_LORA", "VLLM_MAX_LORAS"]

ENVS_SAMPLE = '''
import os
from typing import Any, Callable
if False:
    VLLM_NOT_A_KEY: int = 0
environment_variables: dict[str, Callable[[], Any]] = {
    "VLLM_ALPHA": lambda: os.getenv("VLLM_ALPHA"),
    'VLLM_BETA':
    lambda: int(os.getenv("VLLM_BETA", "1")),
    "CUDA_VISIBLE_DEVICES": lambda: os.environ.get("CUDA_VISIBLE_DEVICES"),
}
environment_variables["VLLM_GAMMA"] = lambda: None
environment_variables.update({"VLLM_DELTA": lambda: None})
def __getattr__(name): return environment_variables[name]()
'''


def test_read_envs_text_reads_dict_keys_only():
    assert V.read_envs_text(ENVS_SAMPLE) == {"VLLM_ALPHA", "VLLM_BETA", "CUDA_VISIBLE_DEVICES", "VLLM_GAMMA",
                                             "VLLM_DELTA"}


def test_read_envs_text_bad_input():
    assert V.read_envs_text("") == set()
    assert V.read_envs_text("def broken(:\n") == set()
    # unparsable text with the dict still yields its quoted keys
    assert "VLLM_X" in V.read_envs_text('environment_variables = {\n  "VLLM_X": lambda: 1,\n  oops(')


def test_read_envs_py_missing_file(tmp_path):
    assert V.read_envs_py(tmp_path / "nope.py") == set()
    p = tmp_path / "envs.py"
    p.write_bytes(ENVS_SAMPLE.encode() + b"\n# \xff\xfe\n")
    assert "VLLM_ALPHA" in V.read_envs_py(p)


def _tool():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "tools" / "build_vllm_env_table.py"
    spec = importlib.util.spec_from_file_location("build_vllm_env_table", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_build_env_table_from_wheels(tmp_path):
    for ver, body in (("0.1.0", '{"VLLM_A": 1, "VLLM_B": 2}'), ("0.2.0", '{"VLLM_A": 1}'), ("0.3.0", '{"VLLM_A": 1, "VLLM_B": 2}')):
        with zipfile.ZipFile(tmp_path / f"vllm-{ver}-cp38-abi3-manylinux1_x86_64.whl", "w") as z:
            z.writestr("vllm/envs.py", f"environment_variables = {body}\n")
            z.writestr(f"vllm-{ver}.dist-info/METADATA", "Name: vllm\nRequires-Dist: torch==2.9.0\n")
    t = _tool().build_env_table(sorted(tmp_path.glob("*.whl")))
    assert t["versions"] == ["0.1.0", "0.2.0", "0.3.0"]
    assert t["variables"]["VLLM_A"]["ranges"] == [["0.1.0", None]]
    assert t["variables"]["VLLM_B"]["ranges"] == [["0.1.0", "0.1.0"], ["0.3.0", None]]
    assert t["torch_pins"] == {"0.1.0": "2.9.0", "0.2.0": "2.9.0", "0.3.0": "2.9.0"}


def test_table_covers_scanned_releases():
    vers = V.known_versions()
    assert vers[0] == "0.6.2" and vers[-1] == "0.33.0"
    assert "0.9.2" in vers and "0.21.0" not in vers  # 0.21.0 has no wheel on PyPI
    assert len(V.vllm_env_vars("0.6.2")) > 50
    assert len(V.vllm_env_vars("0.33.0")) > len(V.vllm_env_vars("0.6.2"))


@pytest.mark.parametrize("name", SEED_NAMES)
def test_seed_variables_exist_in_no_release(name):
    assert V.env_var_history(name) == []
    assert all(name not in V.vllm_env_vars(v) for v in V.known_versions())
    rep = V.env_var_replacement(name, "0.33.0")
    assert rep is not None and rep["use"]


def test_real_variable_ranges_match_the_wheels():
    # facts.md §3a, re-derived from the wheels
    assert V.env_var_history("VLLM_ATTENTION_BACKEND") == [("0.6.2", "0.14.1")]
    assert V.env_var_history("VLLM_USE_V1")[0][1] == "0.11.0"
    assert V.env_var_history("VLLM_USE_FLASHINFER_MOE_FP8") == [("0.10.0", "0.23.0")]
    assert V.env_var_history("VLLM_HAS_FLASHINFER_CUBIN") == [("0.10.2", None)]
    assert V.env_var_exists("VLLM_ATTENTION_BACKEND", "0.14.0")
    assert not V.env_var_exists("VLLM_ATTENTION_BACKEND", "0.15.0")
    assert V.env_var_exists("CUDA_VISIBLE_DEVICES", "0.6.2")


def test_resolve_version():
    assert V.resolve_version("0.9.0+cu128") == ("0.9.0", "exact")
    assert V.resolve_version("v0.10.1.1") == ("0.10.1.1", "exact")
    assert V.resolve_version("0.21.0") == ("0.20.2", "nearest-older")
    assert V.resolve_version("1.2.0") == ("0.33.0", "newer-than-known")
    assert V.resolve_version("0.5.4") == ("0.6.2", "older-than-known")
    assert V.resolve_version(None)[1] == "unknown"
    assert V.resolve_version("garbage")[1] == "unknown"


def test_flashinfer_replacement_depends_on_version():
    assert V.env_var_replacement("VLLM_USE_FLASHINFER", "0.8.5")["use"] == "VLLM_ATTENTION_BACKEND=FLASHINFER"
    assert V.env_var_replacement("VLLM_USE_FLASHINFER", "0.13.0")["use"] == "--attention-backend FLASHINFER"
    assert V.env_var_replacement("VLLM_USE_FLASHINFER", "0.33.0")["use"] == "--attention-backend FLASHINFER"
    fp8 = V.env_var_replacement("VLLM_ENABLE_FP8")
    assert fp8["use"] == "--quantization fp8" and "--kv-cache-dtype fp8" in fp8["also"]
    assert V.env_var_replacement("VLLM_GPU_MEMORY_UTILIZATION")["use"] == "--gpu-memory-utilization {value}"
    assert V.env_var_replacement("VLLM_SPECULATIVE_MODEL", "0.8.2")["use"].startswith("--speculative-model")
    assert V.env_var_replacement("VLLM_SPECULATIVE_MODEL", "0.8.3")["use"].startswith("--speculative-config")
    assert V.env_var_replacement("VLLM_ATTENTION_BACKEND", "0.20.0")["use"] == "--attention-backend {value}"
    assert V.env_var_replacement("VLLM_SOMETHING_ELSE") is None


def test_flags_deprecations_and_typos():
    assert V.flag_info("--attention-backend", "0.12.0")["exists"] is False
    assert V.flag_info("attention_backend", "0.13.0")["exists"] is True
    assert V.flag_info("--speculative-model", "0.9.0")["exists"] is False
    assert V.flag_info("--no-such-flag") is None
    assert V.is_deprecated("VLLM_ATTENTION_BACKEND", "0.13.0")
    assert not V.is_deprecated("VLLM_ATTENTION_BACKEND", "0.12.0")
    assert V.close_matches("VLLM_ATTENTON_BACKEND", "0.10.0") == ["VLLM_ATTENTION_BACKEND"]


def test_arch_fp8_and_versions():
    assert V.vllm_min_for_cc("12.0") == "0.9.2" and V.vllm_min_for_cc("sm_121") == "0.9.2"
    assert V.vllm_min_for_cc("10.0") == "0.9.0" and V.vllm_min_for_cc("sm_103") == "0.9.0"
    assert V.vllm_min_for_cc("6.1") is None
    assert V.vllm_max_for_cc("7.0") == "0.19.1" and V.vllm_max_for_cc("7.5") is None
    assert V.supports_native_fp8("8.9") and V.supports_native_fp8("12.0")
    assert V.supports_native_fp8("8.0") is False and V.supports_native_fp8(None) is None
    assert V.default_attention_backends("10.0")[0] == "FLASHINFER"
    assert V.default_attention_backends("12.0")[0] == "FLASH_ATTN"
    assert V.torch_pin_for("0.9.2") == "2.7.0" and V.torch_pin_for("0.6.4") == "2.5.1"
    assert V.torch_pypi_cuda("2.6.0") == "12.4" and V.torch_pypi_cuda("2.8.0+cu128") == "12.8"
    assert V.build_cuda_for("0.9.2") == "12.8" and V.build_cuda_for("0.20.0") == "13.0"
    assert V.image_tag_version("vllm/vllm-openai", "v0.9.0") == "0.9.0"
    assert V.image_tag_version("docker.io/vllm/vllm-openai", "v0.10.1.1") == "0.10.1.1"
    assert V.image_tag_version("vllm/vllm-openai", "latest") is None
    assert V.image_tag_version("nvidia/cuda", "12.8.0-runtime") is None


def test_installed_envs_collector(tmp_path):
    """The collector finds vLLM's envs.py through the inspected environment's metadata folders."""
    import bwdoctor_checks.collectors.vllm_envs as ve
    from bwdoctor import RunOptions, Unavailable

    site = tmp_path / "site"
    (site / "vllm").mkdir(parents=True)
    (site / "vllm" / "envs.py").write_text(ENVS_SAMPLE)
    (site / "vllm-0.99.0.dist-info").mkdir()
    (site / "vllm-0.99.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm\nVersion: 0.99.0\n")
    (fact,) = ve.collect_vllm_env_vars(RunOptions(extra={"site_packages": [str(site)]}))
    assert fact.key == "vllm.env_vars" and fact.value["version"] == "0.99.0"
    assert "VLLM_GAMMA" in fact.value["names"] and fact.value["source"] == "envs.py"
    assert fact.value["path"] == str(site / "vllm" / "envs.py")

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Unavailable):
        ve.collect_vllm_env_vars(RunOptions(extra={"site_packages": [str(empty)]}))
