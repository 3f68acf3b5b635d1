"""BWD-CFG / BWD-FP8V checks, driven through the same path as the CLI (parse + run_checks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bwdoctor import Snapshot, kb
from bwdoctor.manager import PluginManager
from bwdoctor.runner import parse, run_checks

DATA = Path(__file__).parent / "data" / "config"


@pytest.fixture(scope="module")
def registry():
    return PluginManager(entry_points=False).registry()


def analyze(registry, paths, target=None, facts=()):
    snap = Snapshot()
    if target:
        snap.set("target", kb.resolve_target(target), "cli:--target")
    for key, value in facts:
        snap.set(key, value, "test")
    snap, perr = parse(registry, [str(p) for p in paths], snap)
    assert not [f for f in perr if f.status == "error"], [f.message for f in perr]
    checks = [c for c in registry.checks if c.id.startswith(("BWD-CFG-", "BWD-FP8V-"))]
    return snap, run_checks(checks, snap)


def by(findings, cid, status=None):
    return [f for f in findings if f.id == cid and (status is None or f.status == status)]


# ---------------------------------------------------------------------------------------- seed


SEED_REAL = {
    "VLLM_ENABLE_FP8": "--quantization fp8", "VLLM_USE_FLASHINFER": "--attention-backend FLASHINFER",
    "VLLM_GPU_MEMORY_UTILIZATION": "--gpu-memory-utilization 0.95", "VLLM_MAX_MODEL_LEN": "--max-model-len",
    "VLLM_MAX_NUM_SEQS": "--max-num-seqs", "VLLM_QUANTIZATION": "--quantization fp8",
    "VLLM_ENABLE_CHUNKED_PREFILL": "--enable-chunked-prefill", "VLLM_MAX_NUM_BATCHED_TOKENS": "--max-num-batched-tokens",
    "VLLM_SPECULATIVE_MODEL": "--speculative-config", "VLLM_NUM_SPECULATIVE_TOKENS": "--speculative-config",
    "VLLM_ENABLE_LORA": "--enable-lora", "VLLM_MAX_LORAS": "--max-loras", "VLLM_MODEL": "vllm serve",
}


def test_seed_config_names_every_invented_variable(registry):
    snap, fs = analyze(registry, [DATA / "seed-config"], target="rtx-pro-6000")
    unread = {f.subject: f for f in by(fs, "BWD-CFG-001", "fail")}
    assert set(SEED_REAL) <= set(unread)
    for name, real in SEED_REAL.items():
        f = unread[name]
        assert real in f.message, (name, f.message)
        assert f.remedies == ["config.replace-vllm-env"]
        assert f.details["file"] and f.details["line"] >= 1  # enough to build a diff
    # the Dockerfile pins 0.6.2, which has no kernels for the GPU: the advice is for the release the fix
    # moves to, and the 0.6.2-era spelling is only noted
    from bwdoctor.kb import vllm as kbv

    flashinfer = unread["VLLM_USE_FLASHINFER"]
    assert flashinfer.details["vllm_version"] == "0.6.2"
    assert flashinfer.details["advice_for_vllm"] == kbv.latest_version()
    assert flashinfer.details["use_instead"].startswith("--attention-backend FLASHINFER")
    assert "(vLLM 0.6.2 took: VLLM_ATTENTION_BACKEND=FLASHINFER)" in flashinfer.message
    assert "(vLLM 0.6.2 took: --speculative-model" in unread["VLLM_SPECULATIVE_MODEL"].message
    # the compose file's variables are located in the compose file
    assert unread["VLLM_ENABLE_FP8"].details["file"].endswith("docker-compose.vllm.yml")
    assert unread["VLLM_ENABLE_FP8"].details["line"] == 5


def test_seed_config_base_image_pin_and_fp8(registry):
    snap, fs = analyze(registry, [DATA / "seed-config"], target="rtx-pro-6000")
    base = by(fs, "BWD-CFG-003", "fail")
    assert base and "CUDA 12.4" in base[0].message and "12.8" in base[0].message
    assert base[0].remedies == ["dockerfile.base-image"] and base[0].details["line"] == 2
    pin = by(fs, "BWD-CFG-004", "fail")
    assert pin and "0.6.2" in pin[0].message and "0.9.2" in pin[0].message
    assert pin[0].root_cause == "arch_not_in_vllm_wheel" and "dockerfile.vllm-pin" in pin[0].remedies
    assert pin[0].details["line"] == 5
    torch = by(fs, "BWD-CFG-005", "fail")
    assert torch and "2.4.0" in torch[0].message and torch[0].root_cause == "arch_not_in_torch_wheel"
    fp8 = by(fs, "BWD-FP8V-001", "fail")
    assert fp8 and "FP8 would silently not be on" in fp8[0].message and "VLLM_ENABLE_FP8" in fp8[0].message


def test_seed_config_on_a_supported_gpu_has_no_arch_failures(registry):
    # on an H100 (sm_90) CUDA 12.4 and vLLM 0.6.2 are fine; the ignored variables stay
    seed = DATA / "seed-config"
    # (the README names the RTX PRO 6000, which other parsers read as a GPU: leave it out here)
    _, fs = analyze(registry, [seed / "Dockerfile", seed / "docker-compose.vllm.yml", seed / ".env.vllm"],
                    target="H100")
    assert not by(fs, "BWD-CFG-003", "fail") and not by(fs, "BWD-CFG-004", "fail")
    assert by(fs, "BWD-CFG-004", "pass")
    assert by(fs, "BWD-CFG-001", "fail")


def test_no_secret_in_messages(registry):
    _, fs = analyze(registry, [DATA / "blobs" / "serve.env", DATA / "compose-tp"], target="rtx-pro-6000")
    for f in fs:
        assert "s3cr3t" not in f.message and "hf_notarealtoken" not in f.message


# ---------------------------------------------------------------------------------------- env lint


def test_typo_and_installed_envs_list(registry):
    snap, fs = analyze(registry, [DATA / "blobs" / "serve.env"],
                       facts=[("vllm.env_vars", {"version": "0.10.0", "names": ["VLLM_ATTENTION_BACKEND"],
                                                 "source": "envs.py"})])
    typo = by(fs, "BWD-CFG-001", "warn")
    assert typo and typo[0].subject == "VLLM_ATTENTON_BACKEND" and "VLLM_ATTENTION_BACKEND" in typo[0].message
    assert by(fs, "BWD-CFG-001", "fail")[0].details["judged_against"].startswith("the installed vLLM 0.10.0")


def test_removed_and_deprecated_variables_by_version(registry):
    # compose pins vllm/vllm-openai:v0.10.1: VLLM_ATTENTION_BACKEND is read, VLLM_USE_V1 too
    _, fs = analyze(registry, [DATA / "compose-tp"], target="rtx-pro-6000")
    assert not by(fs, "BWD-CFG-001", "fail")
    # the same variables on vLLM 0.20: both gone, the real flag is proposed
    _, fs = analyze(registry, [], facts=[("config.env", {"VLLM_ATTENTION_BACKEND": "FLASHINFER", "VLLM_USE_V1": "1"}),
                                         ("vllm", {"version": "0.20.1"})])
    fails = {f.subject: f for f in by(fs, "BWD-CFG-001", "fail")}
    assert "--attention-backend FLASHINFER" in fails["VLLM_ATTENTION_BACKEND"].message
    assert "VLLM_USE_V1" in fails
    _, fs = analyze(registry, [], facts=[("host.env", {"VLLM_ATTENTION_BACKEND": "FLASHINFER"}),
                                         ("vllm", {"version": "0.14.0"})])
    dep = by(fs, "BWD-CFG-002", "warn")
    assert dep and "--attention-backend FLASHINFER" in dep[0].message
    assert by(fs, "BWD-CFG-001", "pass")


# ---------------------------------------------------------------------------------------- shm, memory, fp8


def test_multi_gpu_compose_without_ipc_fails(registry):
    _, fs = analyze(registry, [DATA / "compose-tp"], target="rtx-pro-6000")
    shm = by(fs, "BWD-CFG-006", "fail")
    assert shm and shm[0].root_cause == "shm_too_small"
    assert shm[0].remedies == ["compose.ipc-host", "compose.shm-size"]
    _, fs = analyze(registry, [DATA / "blobs" / "issue-paste.md"])
    assert by(fs, "BWD-CFG-006", "fail")


def test_ipc_host_passes(registry, tmp_path):
    p = tmp_path / "c.yml"
    p.write_text("services:\n  v:\n    image: vllm/vllm-openai:v0.11.0\n    ipc: host\n"
                 "    command: --model m -tp 4\n")
    _, fs = analyze(registry, [p])
    assert by(fs, "BWD-CFG-006", "pass") and not by(fs, "BWD-CFG-006", "fail")


def test_memory_settings_against_log_kv_cache(registry):
    _, fs = analyze(registry, [DATA / "compose-tp"], facts=[("log.kv_cache", {"tokens": 40000, "gib": 3.1,
                                                                               "max_concurrency": 0.61})])
    mem = by(fs, "BWD-CFG-007", "fail")
    assert mem and mem[0].root_cause == "kv_cache_oom" and "65536" in mem[0].message
    assert mem[0].remedies == ["vllm.memory-settings"]
    _, fs = analyze(registry, [], facts=[("log.kv_cache", {"tokens": -1200, "gib": -1.05})])
    assert by(fs, "BWD-CFG-007", "fail")
    _, fs = analyze(registry, [], facts=[("log.kv_cache", {"tokens": 500000, "gib": 30.0, "max_concurrency": 15.2})])
    assert by(fs, "BWD-CFG-007", "pass")


def test_fp8_on_ampere_is_marlin_and_on_blackwell_native(registry):
    _, fs = analyze(registry, [DATA / "blobs" / "issue-paste.md"], target="A100")
    w = by(fs, "BWD-FP8V-002", "warn")
    assert w and w[0].root_cause == "fp8_unsupported_on_gpu" and "Marlin" in w[0].message
    _, fs = analyze(registry, [DATA / "blobs" / "Containerfile.multi"], target="rtx-pro-6000")
    assert by(fs, "BWD-FP8V-002", "pass")
    # vLLM 0.8.5 image on Blackwell: FP8 kernels for sm_120 are missing
    _, fs = analyze(registry, [DATA / "blobs" / "issue-paste.md"], target="rtx-pro-6000")
    f = by(fs, "BWD-FP8V-002", "fail")
    assert f and f[0].root_cause == "arch_not_in_vllm_wheel"


def test_fp8_kv_cache_with_forced_flash_attn_on_sm120(registry):
    _, fs = analyze(registry, [DATA / "compose-tp"], target="rtx-pro-6000")
    f = by(fs, "BWD-FP8V-002", "fail")
    assert f and f[0].root_cause == "attention_backend_unsupported" and f[0].remedies == ["vllm.attention-backend"]


def test_fp8_log_marlin_and_lost_setting(registry):
    log_cfg = ("vllm.config", {"model": "m", "quantization": None, "kv_cache_dtype": "auto"})
    snap = Snapshot()
    snap.set("target", kb.resolve_target("rtx-pro-6000"), "cli")
    _, fs = analyze(registry, [DATA / "blobs" / "issue-paste.md"], target="A100",
                    facts=[("log.fp8", [{"kind": "marlin_fallback", "text": "Weight-only FP8 ... Marlin", "line": 42}])])
    m = by(fs, "BWD-FP8V-003", "warn")
    assert m and "line 42" in m[0].message
    # a log engine config (source vllm-log) that drops the configured quantization
    s2 = Snapshot()
    s2.set("vllm.config", log_cfg[1], "vllm-log:line 7")
    s2, _ = parse(registry, [str(DATA / "blobs" / "Containerfile.multi")], s2)
    s2.facts["vllm.config"].source = "vllm-log:line 7"  # the log line wins for what the engine did
    s2.facts["vllm.config"].value = log_cfg[1]
    checks = [c for c in registry.checks if c.id == "BWD-FP8V-003"]
    lost = by(run_checks(checks, s2), "BWD-FP8V-003", "fail")
    assert lost and "kv_cache_dtype=fp8" in lost[0].message
