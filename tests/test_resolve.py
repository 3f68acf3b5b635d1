"""The resolution layer (bwdoctor.resolve): versions, compute capabilities, GPU identity and the
GPUs being judged; and the contradictions it removed (the vLLM range per architecture)."""

from __future__ import annotations

import json

import pytest
from packaging.version import Version

from bwdoctor import kb, resolve

from conftest import make_snapshot, run_cli


@pytest.mark.parametrize("text,want", [
    ("0.9.0", "0.9.0"), ("v0.9.0", "0.9.0"), ("0.10.1.1", "0.10.1.1"), ("2.7.0+cu128", "2.7.0+cu128"),
    ("570.86.16", "570.86.16"), ("12.8.93", "12.8.93"), ("0.6.3.post1", "0.6.3.post1"), ("3.5.0rc1", "3.5.0rc1"),
    ("2.7.0 (cu128)", "2.7.0"), ("0.11.1.dev5+g1234abc", "0.11.1.dev5+g1234abc"),
])
def test_parse_version(text, want):
    assert resolve.parse_version(text) == Version(want)


@pytest.mark.parametrize("bad", [None, "", "N/A", "garbage", True, "[not supported]", object()])
def test_parse_version_bad_input_is_none(bad):
    assert resolve.parse_version(bad) is None
    assert resolve.base_version(bad) is None
    assert resolve.compare(bad, "1.0") is None and resolve.at_least(bad, "1.0") is None


def test_version_helpers():
    assert resolve.base_version("2.7.0+cu128") == Version("2.7.0")
    assert resolve.local_variant("2.7.0+cu128") == "cu128" and resolve.local_variant("2.5.1+rocm6.2") == "rocm6.2"
    assert resolve.local_variant("2.7.0+cpu") == "cpu" and resolve.local_variant("2.7.0") is None
    assert resolve.version_tuple("580.159.04") == (580, 159, 4) and resolve.version_tuple("x") == ()
    assert resolve.compare("0.10.1.1", "0.10.1") == 1 and resolve.compare("0.9.0+cu128", "0.9.0") == 0
    assert resolve.at_least("2.8.0+cu128", "2.8") is True and resolve.at_least("570.124.04", "570.133") is False
    assert resolve.in_range("0.19.1", "0.6.2", "0.19.1") is True and resolve.in_range("0.20.0", "0.6.2", "0.19.1") is False
    assert resolve.in_range("0.33.0", "0.9.2", None) is True and resolve.in_range("0.9.1", "0.9.2", None) is False
    assert resolve.cuda_of_variant("cu128") == "12.8" and resolve.cuda_of_variant("cu92") == "9.2"
    assert resolve.cuda_of_variant("cpu") is None and resolve.variant_of_cuda("12.8.1") == "cu128"
    assert resolve.short_version("CUDA Version: 12.4.131") == "12.4" and resolve.find_version("no") is None


@pytest.mark.parametrize("value", ["sm_120a", "12.0", "(12, 0)", (12, 0), [12, 0], "compute_120", "SM120a", "120",
                                   "sm_120f", 12.0, "sm120"])
def test_cc_forms(value):
    assert resolve.cc(value) == "12.0"
    assert resolve.cc_tuple(value) == (12, 0)
    assert resolve.sm(value) == "sm_120"


@pytest.mark.parametrize("value,want", [("compute_90", "9.0"), ("sm_86", "8.6"), ("8.9", "8.9"), (90, "9.0"),
                                        ("sm_100f", "10.0"), ("10.3", "10.3"), ("sm_110", "11.0"), ("7", "7.0")])
def test_cc_values(value, want):
    assert resolve.cc(value) == want


@pytest.mark.parametrize("bad", [None, True, "", "garbage", "sm_", "12.0.1.5", (1, 2, 3), "N/A"])
def test_cc_bad_input_is_none(bad):
    assert resolve.cc(bad) is None and resolve.cc_tuple(bad) is None


def test_cc_key_sorts():
    assert sorted(["12.0", "8.6", "10.3", "x"], key=resolve.cc_key) == ["x", "8.6", "10.3", "12.0"]


def test_gpu_identity():
    assert resolve.gpu_spec(name="NVIDIA RTX PRO 6000 Blackwell Workstation Edition").key == "rtx-pro-6000"
    assert resolve.gpu_spec(name="NVIDIA RTX PRO 6000 Blac...").key == "rtx-pro-6000"
    assert resolve.gpu_spec(name="NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition").key == "rtx-pro-6000-max-q"
    assert resolve.gpu_spec(pci_device_id="0x2BB110DE").key == "rtx-pro-6000"
    assert resolve.gpu_spec(pci_device_id=0x2C05).key == "rtx-5070-ti"
    assert resolve.gpu_spec(pci_device_id="0x2d04").key == "rtx-5060-ti"
    assert resolve.gpu_spec(key="b200").compute_capability == "10.0"
    assert resolve.gpu_spec(name="NVIDIA H100 80GB HBM3 MIG 1g.10gb").key == "h100"
    assert resolve.gpu_spec(name="NVIDIA ...") is None and resolve.gpu_spec() is None
    assert resolve.family_cc("Tesla P100-PCIE-16GB") == "6.0" and resolve.family_cc("NVIDIA H800") == "9.0"
    assert resolve.family_cc("NVIDIA Jetson AGX Thor") == "11.0" and resolve.family_cc("potato") is None
    assert resolve.gpu_cc({"name": "NVIDIA GeForce RTX 3070"})[0] == "8.6"  # family, not in the table
    assert resolve.gpu_cc({"name": "NVIDIA B200", "compute_capability": "sm_100"})[0] == "10.0"


def test_judged_gpus_live_recorded_and_target():
    s = make_snapshot({"gpu.0": {"name": "NVIDIA B200", "compute_capability": "10.0"},
               "gpu.1": {"name": "NVIDIA B200", "compute_capability": "10.0"},
               "gpu.2": {"name": "NVIDIA B200", "lost": True},
               "gpu.3": {"name": "NVIDIA RTX PRO 6000 Blac..."},
               "target": kb.resolve_target("v100")})
    js = resolve.judged_gpus(s)
    assert [(j.index, j.cc, j.subject, j.key) for j in js] == [
        (0, "10.0", "gpu0", "gpu.0"), (1, "10.0", "gpu1", "gpu.1"), (3, "12.0", "gpu3", "gpu.3")]
    assert js[2].spec.key == "rtx-pro-6000" and js[2].cc_source == "knowledge base"
    assert len(resolve.judged_gpus(s, distinct_cc=True)) == 2
    assert js[0].source == "test"  # the fact's provenance: nvml when live, a file and line when recorded
    assert [j.index for j in resolve.judged_gpus(s, usable_only=False)] == [0, 1, 2, 3]
    t = resolve.judged_gpus(make_snapshot({"target": kb.resolve_target("v100")}))
    assert len(t) == 1 and t[0].is_target and t[0].cc == "7.0" and t[0].subject == "target"
    assert resolve.judged_gpus(make_snapshot({"gpu.0": {"name": "mystery"}})) == []
    assert len(resolve.judged_gpus(make_snapshot({"gpu.0": {"name": "mystery"}}), need_cc=False)) == 1


def test_judged_gpu_platform():
    s = make_snapshot({"target": kb.resolve_target("gb10")})
    assert resolve.judged_gpus(s)[0].platform == "aarch64"  # the GB10 host is always aarch64
    s = make_snapshot({"target": kb.resolve_target("b200"), "host.arch": "arm64"})
    assert resolve.judged_gpus(s)[0].platform == "aarch64"
    assert resolve.judged_gpus(make_snapshot({"target": kb.resolve_target("b200")}))[0].platform is None


# ------------------------------------------------------------------- one vLLM range per architecture


def test_vllm_range_is_one_inclusive_fact():
    from bwdoctor.kb import vllm as kbv

    v = kb.vllm_range("7.0")
    assert (v.first, v.last) == ("0.6.2", "0.19.1")
    assert v.contains("0.19.1") is True and v.contains("0.20.0") is False and v.contains("0.6.1") is False
    assert kbv.vllm_max_for_cc("sm_70") == "0.19.1" == kb.arch_requirements("7.0").vllm_last
    for cc in ("7.5", "8.0", "8.6", "8.7", "8.9", "9.0", "10.0", "10.3", "12.0", "12.1"):
        assert kbv.vllm_min_for_cc(cc) == kb.arch_requirements(cc).vllm_min == kb.vllm_range(cc, "x86_64").first
    assert kb.vllm_range("12.0").first == "0.9.2" and kb.vllm_range("10.0").first == "0.9.0"
    # aarch64 hosts: the first PyPI aarch64 wheel is 0.10.2; the x86_64 floors stay
    for cc in ("10.0", "10.3", "12.1", "8.7"):
        assert kb.vllm_range(cc, "aarch64").first == "0.10.2"
    assert kb.vllm_range("11.0").supported is None  # Jetson Thor: not established, not "no release"


def test_no_other_copy_of_the_vllm_arch_range():
    cfg = json.loads((kb._schema._DIR / "vllm_config.json").read_text())
    assert "arch_min_vllm" not in cfg and "arch_max_vllm" not in cfg
    from bwdoctor_checks.checks import log as logchecks

    assert not hasattr(logchecks, "VLLM_FIRST_ARCH") and not hasattr(logchecks, "VLLM_BASE_CCS")


# ------------------------------------------------------------------- V100 and a CUDA 13 vLLM


def _analyze_v100(tmp_path, version, cli_env=None):
    df = tmp_path / "Dockerfile"
    df.write_text(f"FROM python:3.12\nRUN pip install vllm=={version}\n")
    _, out, _ = run_cli(["analyze", str(df), "--target", "v100", "--format", "json"])
    report = json.loads(out)
    return {f["id"]: f for f in report["findings"] if f["id"] in ("BWD-CFG-004", "BWD-CFG-005")}


def test_v100_dockerfile_with_vllm_0_20_fails(tmp_path):
    fs = _analyze_v100(tmp_path, "0.20.0")
    assert fs["BWD-CFG-004"]["status"] == "fail" and "0.19.1" in fs["BWD-CFG-004"]["message"]
    assert fs["BWD-CFG-005"]["status"] == "fail" and "torch 2.11.0" in fs["BWD-CFG-005"]["message"]


def test_v100_dockerfile_with_vllm_0_19_1_passes(tmp_path):
    fs = _analyze_v100(tmp_path, "0.19.1")
    assert fs["BWD-CFG-004"]["status"] == "pass" and fs["BWD-CFG-005"]["status"] == "pass"


def test_remedies_recommend_a_vllm_inside_the_inclusive_range():
    from bwdoctor_remedies import _common

    assert _common.recommended_vllm(make_snapshot({"target": kb.resolve_target("v100")}))[0] == "0.19.1"
    assert _common.vllm_bounds(make_snapshot({"target": kb.resolve_target("gb10")}))[:2] == ("0.10.2", None)
    assert _common.vllm_bounds(make_snapshot({"target": kb.resolve_target("rtx-pro-6000")}))[:2] == ("0.9.2", None)
    assert _common.vllm_bounds(make_snapshot({"target": kb.resolve_target("p40")}))[2] == "6.1"


def _analyze(tmp_path, version, target):
    df = tmp_path / "Dockerfile"
    df.write_text(f"FROM python:3.12\nRUN pip install vllm=={version}\n")
    _, out, _ = run_cli(["analyze", str(df), "--target", target, "--format", "json"])
    return {f["id"]: f for f in json.loads(out)["findings"] if f["id"] == "BWD-CFG-004"}["BWD-CFG-004"]


def test_aarch64_hosts_have_their_own_vllm_floor(tmp_path):
    """GB10 / GB200 hosts are aarch64: the first PyPI aarch64 wheel is 0.10.2 (x86 floors stay)."""
    f = _analyze(tmp_path, "0.10.1", "gb10")
    assert f["status"] == "fail" and "0.10.2" in f["message"] and "aarch64" in f["message"]
    assert _analyze(tmp_path, "0.10.2", "gb200")["status"] == "pass"
    assert _analyze(tmp_path, "0.10.1", "rtx-pro-6000")["status"] == "pass"  # x86_64: 0.9.2 and later


def test_collect_env_platform_gives_the_host_arch(tmp_path):
    from bwdoctor import Evidence
    from bwdoctor_checks.parsers import env

    text = "Collecting environment information...\nPyTorch version: 2.9.0+cu130\nIs debug build: False\n" \
           "Python platform: Linux-6.11.0-1016-nvidia-aarch64-with-glibc2.39\n"
    path = tmp_path / "collect_env.txt"
    path.write_text(text)
    ev = Evidence(path=str(path), name=path.name, head=text, size=len(text))
    facts = {f.key: f.value for f in env.parse_collect_env(ev)}
    assert facts.get("host.arch") == "aarch64"
