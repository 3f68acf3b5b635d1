"""The vLLM release advice is phrased for: one resolver (bwdoctor.resolve.vllm_release /
recommended_vllm) answers for the checks, the diagnosis and the remedies, so `analyze` and `fix`
of the same files name the same release and the same flag spellings."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bwdoctor import kb, resolve
from bwdoctor.kb import vllm as kbv

from conftest import ROOT, make_snapshot, run_cli

SMI_570 = ROOT / "tests" / "data" / "evidence" / "smi-table-two-gpus.txt"  # RTX 5090 + RTX PRO 6000, driver 570.124.06


def _pin(version: str) -> dict:
    return {"version": version, "spec": f"=={version}", "origin": "pip", "file": "/srv/Dockerfile", "line": 3}


def _recorded(path: Path):
    from bwdoctor import pipeline

    from conftest import builtin_registry

    snap, _ = pipeline.parse(builtin_registry(), [str(path)])
    return snap


# ----------------------------------------------------------------------------- the resolver


def test_driver_570_keeps_blackwell_on_a_cuda_12_release():
    snap = _recorded(SMI_570)
    assert str(resolve.driver_version(snap)) == "570.124.6"
    rec, why = resolve.recommended_vllm(snap)
    # releases from 0.20.0 are CUDA 13.0 builds, which need driver >= 580.65.06
    assert rec == "0.19.1", why
    assert "570.124.06" in why
    assert resolve.vllm_bounds(snap) == ("0.9.2", None, None)


def test_an_old_pin_moves_to_the_recommended_release():
    snap = _recorded(SMI_570)
    snap.set("config.vllm_pin", _pin("0.6.2"), "dockerfile:/srv/Dockerfile")
    rel = resolve.vllm_release(snap)
    assert (rel.current, rel.target, rel.moves, rel.advice) == ("0.6.2", "0.19.1", True, "0.19.1")
    assert rel.current_from == "the configuration's pin" and "config.vllm_pin" in rel.evidence
    assert "no kernels" in rel.reason


def test_a_pin_with_kernels_does_not_move():
    snap = make_snapshot({"config.vllm_pin": _pin("0.10.1")}, target="rtx-pro-6000")
    rel = resolve.vllm_release(snap)
    assert not rel.moves and rel.target is None and rel.advice == "0.10.1"


def test_nothing_moves_without_a_gpu():
    rel = resolve.vllm_release(make_snapshot({"config.vllm_pin": _pin("0.6.2")}))
    assert not rel.moves and rel.advice == "0.6.2"


def test_a_release_past_the_last_with_kernels_moves_back():
    snap = make_snapshot({"vllm": {"version": "0.22.0"}}, target="v100")
    rel = resolve.vllm_release(snap, prefer_config=False)
    assert (rel.current, rel.advice) == ("0.22.0", "0.19.1")


def test_an_old_base_image_moves_an_unpinned_configuration():
    snap = make_snapshot({"config.base_image": {"image": "nvidia/cuda", "tag": "12.4.1-runtime-ubuntu22.04",
                                                "cuda_version": "12.4", "file": "/srv/Dockerfile", "line": 1}},
                         target="b200")
    rel = resolve.vllm_release(snap)
    assert rel.current is None and rel.moves and rel.advice == kbv.latest_version()
    assert "config.base_image" in rel.evidence


def test_the_remedies_ask_the_host_resolver():
    from bwdoctor_remedies import _common

    snap = _recorded(SMI_570)
    assert _common.recommended_vllm(snap) == resolve.recommended_vllm(snap)
    v100 = make_snapshot({"target": kb.resolve_target("v100")})
    assert _common.vllm_bounds(v100) == resolve.vllm_bounds(v100) == ("0.6.2", "0.19.1", None)


# ----------------------------------------------------------------------------- analyze and fix agree


def _old_deployment(folder: Path) -> Path:
    """An inference image on an old vLLM: the launch sets the attention backend by variable, as
    that release wanted."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text("# serving image, built by CI\nFROM vllm/vllm-openai:v0.6.2\n")
    (folder / "compose.yaml").write_text(
        "services:\n"
        "  api:\n"
        "    image: vllm/vllm-openai:v0.6.2\n"
        "    environment:\n"
        "      - VLLM_ATTENTION_BACKEND=FLASHINFER\n"
        "    command: --model Qwen/Qwen2.5-7B-Instruct --max-model-len 8192 --speculative-model "
        "Qwen/Qwen2.5-0.5B-Instruct --num-speculative-tokens 3\n"
        "    ipc: host\n")
    return folder


def _analyze(args: list[str]) -> dict:
    code, out, err = run_cli(["analyze", *args, "--format", "json"])
    assert code == 1, err
    return json.loads(out)


def _fix(args: list[str]) -> str:
    code, out, err = run_cli(["fix", *args, "--apply", "--dry-run"])
    assert code == 0, err
    return out


def _findings(report: dict, check: str) -> list[dict]:
    return [f for f in report["findings"] if f["id"] == check]


def _releases_named_by_fix(text: str) -> set[str]:
    return set(re.findall(r"vllm/vllm-openai:v(\d+(?:\.\d+)+)", text)) | set(re.findall(r"vllm==(\d+(?:\.\d+)+)",
                                                                                        text))


def _agree(args: list[str], want: str) -> None:
    report = _analyze(args)
    fix = _fix(args)
    # the release: the pin check, the diagnosis and the fix name the same one
    pin = _findings(report, "BWD-CFG-004")
    assert pin and all(f["details"]["recommended"] == want for f in pin if f["status"] == "fail")
    assert f"vllm=={want}" in report["diagnosis"][0]["summary"] or \
        f"vllm=={want}" in " ".join(f["message"] for f in pin)
    assert _releases_named_by_fix(fix) - {"0.6.2"} == {want}
    # the flag: advice for the release moved to, in the report and in the patch
    env = _findings(report, "BWD-CFG-001")
    assert [f["subject"] for f in env if f["status"] == "fail"] == ["VLLM_ATTENTION_BACKEND"]
    (finding,) = [f for f in env if f["status"] == "fail"]
    assert finding["details"]["advice_for_vllm"] == want
    assert finding["details"]["use_instead"].startswith("--attention-backend FLASHINFER")
    assert f"vLLM {want} (the release the fix moves this configuration to" in finding["message"]
    assert "--attention-backend FLASHINFER" in fix
    assert "set VLLM_ATTENTION_BACKEND" not in fix and "set VLLM_ATTENTION_BACKEND" not in finding["message"]
    # the speculative-decoding flags: one JSON flag in the report and in the patched command line
    spec = '--speculative-config \'{"model":"Qwen/Qwen2.5-0.5B-Instruct","num_speculative_tokens":3}\''
    flags = {f["subject"]: f for f in _findings(report, "BWD-CFG-008")}
    assert set(flags) == {"--speculative-model", "--num-speculative-tokens"}
    assert all(f["status"] == "fail" and f["details"]["use_instead"] == spec and
               f["details"]["advice_for_vllm"] == want for f in flags.values())
    patched = [ln for ln in fix.splitlines() if ln.startswith("+    command:")]
    assert len(patched) == 1 and spec in patched[0] and "--speculative-model" not in patched[0]
    assert "--attention-backend FLASHINFER" in patched[0]


def test_analyze_and_fix_name_the_newest_release_for_a_target(tmp_path):
    folder = _old_deployment(tmp_path / "deploy")
    _agree([str(folder), "--target", "rtx-pro-6000"], kbv.latest_version())


def test_analyze_and_fix_name_the_release_the_driver_allows(tmp_path):
    folder = _old_deployment(tmp_path / "deploy")
    _agree([str(folder), str(SMI_570)], "0.19.1")


def test_without_a_move_the_advice_stays_for_the_pinned_release(tmp_path):
    folder = _old_deployment(tmp_path / "deploy")
    code, out, err = run_cli(["analyze", str(folder), "--target", "a100", "--format", "json"])
    report = json.loads(out)
    # vLLM 0.6.2 has kernels for an A100, reads VLLM_ATTENTION_BACKEND and takes --speculative-model
    assert [f["status"] for f in _findings(report, "BWD-CFG-004")] == ["pass"]
    assert [f["status"] for f in _findings(report, "BWD-CFG-001")] == ["pass"]
    assert [f["status"] for f in _findings(report, "BWD-CFG-008")] == ["pass"]
    assert "vLLM 0.6.2 accepts" in _findings(report, "BWD-CFG-008")[0]["message"]
    fix = _fix([str(folder), "--target", "a100"])
    assert "--attention-backend" not in fix and "--speculative-config" not in fix and "compose.yaml" not in fix


def test_a_pin_that_stays_is_judged_for_its_own_flags(tmp_path):
    folder = _old_deployment(tmp_path / "deploy")
    for name in ("Dockerfile", "compose.yaml"):
        (folder / name).write_text((folder / name).read_text().replace("v0.6.2", "v0.10.1"))
    report = _analyze([str(folder), "--target", "rtx-pro-6000"])
    assert [f["status"] for f in _findings(report, "BWD-CFG-004")] == ["pass"]
    # 0.10.1 still reads VLLM_ATTENTION_BACKEND, but no longer takes --speculative-model
    assert [f["status"] for f in _findings(report, "BWD-CFG-001")] == ["pass"]
    flags = _findings(report, "BWD-CFG-008")
    assert {f["subject"] for f in flags} == {"--speculative-model", "--num-speculative-tokens"}
    assert all("not accepted by vLLM 0.10.1 (accepted by 0.6.2–0.8.2)" in f["message"] and
               "advice_for_vllm" not in f["details"] for f in flags)
    fix = _fix([str(folder), "--target", "rtx-pro-6000"])
    assert "--attention-backend" not in fix and "v0.33.0" not in fix
    assert "--speculative-config" in fix and "+    image:" not in fix  # the release stays


def test_a_flag_joins_a_one_line_compose_command_and_the_next_key_stays():
    from bwdoctor_remedies import configfiles

    text = "services:\n  api:\n    command: --model m/x\n    ipc: host\n"
    new = configfiles.add_compose_flags(text, ["--attention-backend", "FLASHINFER"])
    assert new == "services:\n  api:\n    command: --model m/x --attention-backend FLASHINFER\n    ipc: host\n"


def test_a_flag_newer_than_the_release_is_advised_as_its_variable_and_kept_in_the_patch():
    from bwdoctor_remedies import configfiles

    args = {"--attention-backend": "TRITON_ATTN", "--swap-space": "4", "model": "m/x"}
    before = kbv.serve_flag_changes(args, "0.10.1")
    assert [(p["flag"], p["use"]) for p in before["problems"]] == [("--attention-backend",
                                                                    "VLLM_ATTENTION_BACKEND=TRITON_ATTN")]
    after = kbv.serve_flag_changes(args, "0.33.0")
    assert [(p["flag"], p["use"]) for p in after["problems"]] == [("--swap-space", "")]
    tokens = ["m/x", "--attention-backend", "TRITON_ATTN", "--swap-space", "4"]
    assert configfiles.rewrite_serve_flags(tokens, "0.10.1") == (tokens, [], ["VLLM_ATTENTION_BACKEND=TRITON_ATTN"])
    assert configfiles.rewrite_serve_flags(tokens, "0.33.0")[0] == ["m/x", "--attention-backend", "TRITON_ATTN"]


def test_a_log_with_an_old_vllm_names_the_release_the_fix_installs():
    from logsig_util import outcome, snap_from

    s = snap_from("RuntimeError: CUDA error: no kernel image is available for execution on the device",
                  vllm={"version": "0.8.5"}, gpu__0={"name": "NVIDIA GeForce RTX 5090", "compute_capability": "12.0"},
                  torch={"version": "2.7.0+cu128", "cuda": "12.8", "variant": "cu128"},
                  driver__version="570.124.06")
    f = outcome("BWD-LOG-002", s)
    rec, _ = resolve.recommended_vllm(s)
    assert rec == "0.19.1" and f"install vLLM {rec}" in f.message and "driver 570.124.06" in f.message
    from conftest import judge

    (stack,) = [f for f in judge(s, "BWD-STACK-002") if f.status == "fail"]
    assert f"install vLLM {rec}" in stack.message
