"""Knowledge base rows for the GPUs people run vLLM on beyond Blackwell/Hopper flagships: China-market
Hopper/Ampere parts, Ampere/Ada workstation and GeForce cards, Turing, Volta 16 GB SKUs, Pascal and
Jetson Orin; NVML-name and PCI-id resolution; the pre-Volta "no vLLM release" rule."""

import json
from pathlib import Path

import pytest

from bwdoctor import kb

KB_DIR = Path(kb.__file__).parent

NEW_KEYS = ["h800", "h800-pcie", "h20", "a800-sxm-80gb", "a800-sxm-40gb", "a800-pcie-80gb", "a30", "a40", "a10g",
            "rtx-a6000", "rtx-a5000", "rtx-a4000", "rtx-3090-ti", "rtx-3090", "rtx-3080", "rtx-3060", "l40", "l20",
            "rtx-4080", "rtx-4070-ti", "rtx-4060-ti", "rtx-2080-ti", "titan-rtx", "quadro-rtx-6000",
            "v100-sxm2-16gb", "v100-pcie-16gb", "p100-sxm2", "p100-pcie-16gb", "p100-pcie-12gb", "p40", "p4",
            "gtx-1080-ti", "jetson-agx-orin"]


def test_new_rows_present_and_sourced():
    have = {g.key: g for g in kb.gpus()}
    assert not set(NEW_KEYS) - set(have)
    for key in NEW_KEYS:
        g = have[key]
        assert g.sources and all(s.startswith("https://") for s in g.sources), key
        assert g.memory_gib and g.memory_type, key
        assert g.confidence in ("high", "medium", "low"), key


def test_nulls_are_explained():
    """A figure that could not be sourced is null, and the row says so in its notes."""
    for g in kb.gpus():
        if g.key not in NEW_KEYS:
            continue
        if g.memory_bandwidth_gbs is None or g.power_w is None:
            assert "null" in g.notes or "not found" in g.notes, g.key


def test_every_gpu_has_an_architecture_row():
    ccs = {a.compute_capability for a in kb.architectures()}
    missing = {g.key: g.compute_capability for g in kb.gpus() if g.compute_capability not in ccs}
    assert not missing


def test_precision_flags_follow_the_architecture():
    for g in kb.gpus():
        major, minor = (int(p) for p in g.compute_capability.split("."))
        if (major, minor) < (8, 9):
            assert g.fp8 is False and g.fp4 is False, g.key
        if major < 8:
            assert g.bf16_dense_tflops is None, g.key  # no BF16 tensor cores before Ampere
        if major < 10:
            assert g.fp4 is False, g.key
    assert kb.find_gpu("h20").fp8 and kb.find_gpu("l40").fp8 and kb.find_gpu("rtx-4060-ti").fp8


@pytest.mark.parametrize("key,cc,mem_type,gib,bw", [
    ("h800", "9.0", "HBM3", 80, 3350),
    ("h20", "9.0", "HBM3", 96, 4000),
    ("a800-sxm-80gb", "8.0", "HBM2e", 80, 2039),
    ("a40", "8.6", "GDDR6", 48, 696),
    ("a10g", "8.6", "GDDR6", 24, 600),
    ("rtx-a6000", "8.6", "GDDR6", 48, 768),
    ("rtx-3090", "8.6", "GDDR6X", 24, 936),
    ("rtx-3090-ti", "8.6", "GDDR6X", 24, 1008),
    ("l40", "8.9", "GDDR6", 48, 864),
    ("l20", "8.9", "GDDR6", 48, 864),
    ("rtx-4060-ti", "8.9", "GDDR6", 16, 288),
    ("rtx-2080-ti", "7.5", "GDDR6", 11, 616),
    ("titan-rtx", "7.5", "GDDR6", 24, 672),
    ("v100-sxm2-16gb", "7.0", "HBM2", 16, 900),
    ("p100-pcie-16gb", "6.0", "HBM2", 16, 732),
    ("p40", "6.1", "GDDR5", 24, 346),
    ("p4", "6.1", "GDDR5", 8, 192.3),
    ("gtx-1080-ti", "6.1", "GDDR5X", 11, 484),
    ("jetson-agx-orin", "8.7", "LPDDR5", 64, None),
])
def test_spot_checks(key, cc, mem_type, gib, bw):
    g = kb.find_gpu(key)
    assert (g.compute_capability, g.memory_type, g.memory_gib, g.memory_bandwidth_gbs) == (cc, mem_type, gib, bw)


def test_interconnects_and_mig():
    assert kb.find_gpu("h800").nvlink_bandwidth_gbs == 400  # cut from the H100's 900
    assert kb.find_gpu("h20").nvlink_bandwidth_gbs == 900
    assert kb.find_gpu("a800-sxm-80gb").nvlink_bandwidth_gbs == 400
    assert kb.find_gpu("a40").nvlink_bridge and kb.find_gpu("rtx-a6000").nvlink_bridge
    assert not kb.find_gpu("l40").has_nvlink and not kb.find_gpu("p40").has_nvlink
    assert kb.find_gpu("h20").mig_max_instances == 7
    a30 = kb.find_gpu("a30")
    assert a30.mig_max_instances == 4 and {"1g.6gb", "2g.12gb", "4g.24gb"} <= set(a30.mig_profiles)
    assert kb.find_gpu("rtx-4060-ti").pcie_lanes == 8
    assert kb.find_gpu("jetson-agx-orin").pci_device_ids == () and kb.find_gpu("jetson-agx-orin").segment == "embedded"


def test_fp16_tensor_rate_for_gpus_without_bf16():
    assert kb.find_gpu("v100-sxm2").fp16_dense_tflops == 125.0
    assert kb.find_gpu("titan-rtx").fp16_dense_tflops == 130.0
    assert kb.find_gpu("h100").fp16_dense_tflops is None  # optional field, default None
    assert "fp16_dense_tflops" in kb.find_gpu("t4").to_dict()


@pytest.mark.parametrize("name,key", [
    ("NVIDIA GeForce RTX 3090", "rtx-3090"),
    ("NVIDIA GeForce RTX 3090 Ti", "rtx-3090-ti"),
    ("NVIDIA GeForce RTX 3080", "rtx-3080"),
    ("NVIDIA GeForce RTX 3060", "rtx-3060"),
    ("NVIDIA GeForce RTX 4080", "rtx-4080"),
    ("NVIDIA GeForce RTX 4070 Ti", "rtx-4070-ti"),
    ("NVIDIA GeForce RTX 4060 Ti", "rtx-4060-ti"),
    ("NVIDIA GeForce RTX 2080 Ti", "rtx-2080-ti"),
    ("NVIDIA GeForce GTX 1080 Ti", "gtx-1080-ti"),
    ("NVIDIA TITAN RTX", "titan-rtx"),
    ("Quadro RTX 6000", "quadro-rtx-6000"),
    ("NVIDIA A100-SXM4-80GB", "a100-sxm-80gb"),
    ("NVIDIA A100-SXM4-40GB", "a100-sxm-40gb"),
    ("NVIDIA A100-PCIE-40GB", "a100-pcie-40gb"),
    ("NVIDIA A100 80GB PCIe", "a100-pcie-80gb"),
    ("NVIDIA A100-SXM4-80GB MIG 1g.10gb", "a100-sxm-80gb"),
    ("NVIDIA A800-SXM4-80GB", "a800-sxm-80gb"),
    ("NVIDIA A800-SXM4-40GB", "a800-sxm-40gb"),
    ("NVIDIA A800 80GB PCIe", "a800-pcie-80gb"),
    ("NVIDIA A30", "a30"),
    ("NVIDIA A40", "a40"),
    ("NVIDIA A10", "a10"),
    ("NVIDIA A10G", "a10g"),
    ("NVIDIA L4", "l4"),
    ("NVIDIA L40", "l40"),
    ("NVIDIA L40S", "l40s"),
    ("NVIDIA L20", "l20"),
    ("NVIDIA H800", "h800"),
    ("NVIDIA H800 PCIe", "h800-pcie"),
    ("NVIDIA H20", "h20"),
    ("NVIDIA RTX A6000", "rtx-a6000"),
    ("NVIDIA RTX A5000", "rtx-a5000"),
    ("NVIDIA RTX A4000", "rtx-a4000"),
    ("Tesla V100-SXM2-32GB", "v100-sxm2"),
    ("Tesla V100-SXM2-16GB", "v100-sxm2-16gb"),
    ("Tesla V100-PCIE-32GB", "v100-pcie"),
    ("Tesla V100-PCIE-16GB", "v100-pcie-16gb"),
    ("Tesla P100-SXM2-16GB", "p100-sxm2"),
    ("Tesla P100-PCIE-16GB", "p100-pcie-16gb"),
    ("Tesla P100-PCIE-12GB", "p100-pcie-12gb"),
    ("Tesla P40", "p40"),
    ("Tesla P4", "p4"),
    ("Tesla T4", "t4"),
    ("Orin", "jetson-agx-orin"),
    ("Jetson AGX Orin", "jetson-agx-orin"),
    ("rtx 3090", "rtx-3090"),
    ("A6000", "rtx-a6000"),
])
def test_find_gpu_by_nvml_name(name, key):
    g = kb.find_gpu(name)
    assert g is not None and g.key == key, (name, g and g.key)


@pytest.mark.parametrize("name", [
    "NVIDIA GeForce RTX 3080 Ti",        # 12 GB, not the 10 GB RTX 3080
    "NVIDIA GeForce RTX 3060 Ti",
    "NVIDIA GeForce RTX 4080 SUPER",
    "NVIDIA GeForce RTX 4070 Ti SUPER",
    "NVIDIA GeForce RTX 3080 Laptop GPU",
    "NVIDIA H20-3e",
    "Jetson Orin Nano",
])
def test_find_gpu_does_not_take_a_variant_for_its_base_product(name):
    assert kb.find_gpu(name) is None


@pytest.mark.parametrize("pci,key", [
    (0x220410DE, "rtx-3090"),
    ("0x2203", "rtx-3090-ti"),
    ("2216", "rtx-3080"),
    ("0x2230", "rtx-a6000"),
    ("0x2235", "a40"),
    ("0x223710DE", "a10g"),
    ("0x20B7", "a30"),
    ("0x20F3", "a800-sxm-80gb"),
    ("0x2324", "h800"),
    ("0x2322", "h800-pcie"),
    ("0x2329", "h20"),
    ("0x26B5", "l40"),
    ("0x26BA", "l20"),
    ("0x2704", "rtx-4080"),
    ("0x2782", "rtx-4070-ti"),
    ("0x2803", "rtx-4060-ti"),
    ("0x1E04", "rtx-2080-ti"),
    ("0x1E02", "titan-rtx"),
    ("0x1E30", "quadro-rtx-6000"),
    (0x1DB110DE, "v100-sxm2-16gb"),
    ("0x1DB5", "v100-sxm2"),
    ("0x1DB4", "v100-pcie-16gb"),
    ("0x1DB6", "v100-pcie"),
    ("0x15F9", "p100-sxm2"),
    ("0x15F8", "p100-pcie-16gb"),
    ("0x1B38", "p40"),
    ("0x1BB3", "p4"),
    ("0x1B06", "gtx-1080-ti"),
])
def test_find_gpu_by_pci_id(pci, key):
    assert kb.find_gpu(pci_device_id=pci).key == key


def test_pci_id_wins_over_a_wrong_name():
    assert kb.find_gpu("NVIDIA Graphics Device", pci_device_id="0x2324").key == "h800"


def test_prevolta_requirements_say_no_vllm_release():
    for cc in ("6.0", "6.1", "sm_60", (6, 1)):
        req = kb.arch_requirements(cc)
        assert req.vllm_supported is False and req.vllm_min is None and req.vllm_last is None
        assert all(r.first is None and r.established for r in req.vllm.values())
        assert kb.vllm_supports(cc) is False
    assert kb.VLLM_MIN_COMPUTE_CAPABILITY == "7.0"
    assert kb.vllm_supports("5.2") is False  # older than any row: still below vLLM's floor
    assert kb.vllm_supports("7.0") is True and kb.vllm_supports("12.0") is True
    assert kb.vllm_supports("garbage") is None and kb.vllm_supports("13.0") is None


def test_jetson_orin_architecture_row():
    req = kb.arch_requirements("sm_87")
    assert req.compute_capability == "8.7" and req.arch_name.startswith("Ampere")
    assert req.bf16 and not req.fp8 and not req.fp4
    assert req.torch_cuda_variants == ()  # PyPI CUDA torch is not built for Jetson
    assert req.min_driver is None and req.sources
    assert kb.resolve_target("sm_87")["compute_capability"] == "8.7"
    assert kb.resolve_target("jetson agx orin") == {"query": "jetson agx orin", "name": "Orin",
                                                    "compute_capability": "8.7", "gpu": "jetson-agx-orin"}


@pytest.mark.parametrize("query,cc,gpu", [
    ("P40", "6.1", "p40"), ("Tesla P100-PCIE-16GB", "6.0", "p100-pcie-16gb"), ("h800", "9.0", "h800"),
    ("RTX 3090", "8.6", "rtx-3090"), ("A10G", "8.6", "a10g"), ("L20", "8.9", "l20"),
])
def test_resolve_target_new_rows(query, cc, gpu):
    r = kb.resolve_target(query)
    assert (r["compute_capability"], r["gpu"]) == (cc, gpu)


def test_arch_json_rows_sorted_by_compute_capability():
    data = json.loads((KB_DIR / "arch.json").read_text())
    ccs = [kb.version_tuple(a["compute_capability"]) for a in data["architectures"]]
    assert ccs == sorted(ccs)


def test_audited_values():
    """Values an audit against primary sources corrected (each row cites its source)."""
    from bwdoctor.kb import vllm as kbv

    assert kb.arch_requirements("10.3").triton_min == "3.6.0"  # 3.5.x bundles a ptxas without sm_103
    assert kb.arch_requirements("10.0").nccl_min == "2.25.1"
    for key in ("gb10", "gb200", "gb300", "jetson-agx-orin", "jetson-agx-thor"):
        g = kb.find_gpu(key)
        assert g.host_platform == "aarch64"
        assert kb.vllm_range(g.compute_capability, g.host_platform).first in ("0.10.2", None)
    assert kb.vllm_range("12.1", "x86_64").first == "0.9.2" and kb.vllm_range("10.0", "x86_64").first == "0.9.0"
    assert kb.vllm_range("8.7", "aarch64").first == "0.10.2" and "sm_87" in kb.arch_requirements("8.7").vllm["x86_64"].note
    assert kbv.torch_pin_for("0.21.0") == "2.11.0" and kb.flashinfer_pin_for("0.21.0") == "0.6.8.post1"
    assert kb.find_gpu("rtx-pro-4000").first_listed_for("0x2c33") == "570.190"
    assert kb.find_gpu("rtx-pro-4000").first_listed_for("0x2c34") == "570.169"
    assert kb.find_gpu("rtx-5090").first_listed_for("0x2b8c") == "580.76.05"
    assert kb.find_gpu(pci_device_id="0x2c05").key == "rtx-5070-ti"
    assert kb.find_gpu("rtx-5070-ti").first_listed_for("0x2c05") == "570.123.01"
    assert kb.find_gpu(pci_device_id="0x2d04").key == "rtx-5060-ti"
    assert kb.find_gpu("rtx-5060-ti").first_listed_for("0x2d04") == "570.123.10"
    thor = kb.arch_requirements("sm_110")
    assert thor.compute_capability == "11.0" and thor.fp4 and kb.resolve_target("jetson thor")["gpu"] == "jetson-agx-thor"
    assert kb.forward_compat_supported("jetson-agx-orin") is True and kb.forward_compat_supported("jetson-agx-thor")
