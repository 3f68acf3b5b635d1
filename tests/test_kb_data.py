"""Knowledge base: key facts, sources, resolve_target, JSON validity, CLI."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bwdoctor import kb
from bwdoctor.kb.cli import kb_command

KB_DIR = Path(kb.__file__).parent


def test_json_files_are_valid_and_sourced():
    for name in ("gpus.json", "arch.json"):
        data = json.loads((KB_DIR / name).read_text())
        assert isinstance(data, dict) and data.get("schema") == 2
    for g in kb.gpus():
        assert g.sources, g.key
        assert all(s.startswith("https://") for s in g.sources), g.key
    for a in kb.architectures():
        assert a.sources and all(s.startswith("https://") for s in a.sources), a.compute_capability


def test_keys_and_pci_ids_unique():
    keys = [g.key for g in kb.gpus()]
    assert len(keys) == len(set(keys))
    ids = [p for g in kb.gpus() for p in g.pci_device_ids]
    assert len(ids) == len(set(ids))
    assert all(p.startswith("0x") and len(p) == 6 for p in ids)


def test_required_rows_present():
    want = ["rtx-pro-6000", "rtx-pro-6000-max-q", "rtx-pro-6000-server", "rtx-pro-5000", "rtx-pro-4500",
            "rtx-pro-4000", "rtx-5090", "rtx-5080", "rtx-5070-ti", "rtx-5060-ti", "b200", "b300", "gb200", "gb300",
            "gb10", "h100", "h100-pcie", "h100-nvl", "h200", "h200-nvl", "l40s", "l4", "rtx-6000-ada", "rtx-4090",
            "a100-sxm-80gb", "a100-sxm-40gb", "a100-pcie-80gb", "a100-pcie-40gb", "a10", "v100-sxm2", "t4"]
    have = {g.key for g in kb.gpus()}
    assert not set(want) - have
    ccs = {a.compute_capability for a in kb.architectures()}
    assert {"6.0", "6.1", "7.0", "7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "10.3", "12.0", "12.1"} <= ccs


def test_rtx_pro_6000_facts_correct():
    """The seed material got these wrong: CC 10.0, HBM3e, 512 GB/s, NVLink 5."""
    for key in ("rtx-pro-6000", "rtx-pro-6000-max-q", "rtx-pro-6000-server"):
        g = kb.find_gpu(key)
        assert g.compute_capability == "12.0"
        assert g.memory_type == "GDDR7"
        assert g.memory_gib == 96
        assert g.memory_bandwidth_gbs == 1792
        assert g.nvlink is False and not g.has_nvlink
        assert (g.pcie_gen, g.pcie_lanes) == (5, 16)
        assert g.mig_max_instances == 4
        assert "1g.24gb" in g.mig_profiles and "4g.96gb" in g.mig_profiles
        assert g.fp8 and g.fp4
    assert kb.find_gpu("rtx-pro-6000").power_w == 600
    assert kb.find_gpu("rtx-pro-6000-max-q").power_w == 300
    assert kb.find_gpu("rtx-pro-6000").pci_device_ids == ("0x2bb1",)
    assert kb.find_gpu("rtx-pro-6000").forward_compat is False


@pytest.mark.parametrize("key,cc,mem_type,nvlink_gbs,fp4", [
    ("b200", "10.0", "HBM3e", 1800, True),
    ("b300", "10.3", "HBM3e", 1800, True),
    ("gb10", "12.1", "LPDDR5x", None, True),
    ("rtx-5090", "12.0", "GDDR7", None, True),
    ("h100", "9.0", "HBM3", 900, False),
    ("l40s", "8.9", "GDDR6", None, False),
    ("a100-sxm-80gb", "8.0", "HBM2e", 600, False),
])
def test_spot_checks(key, cc, mem_type, nvlink_gbs, fp4):
    g = kb.find_gpu(key)
    assert g.compute_capability == cc and g.memory_type == mem_type and g.fp4 is fp4
    assert g.nvlink_bandwidth_gbs == nvlink_gbs


def test_fp8_support_by_arch():
    assert kb.find_gpu("a100-sxm-80gb").fp8 is False
    assert kb.find_gpu("l40s").fp8 is True and kb.find_gpu("rtx-6000-ada").fp8 is True
    assert kb.find_gpu("h100").fp4 is False
    assert kb.arch_requirements("8.9").fp8 and not kb.arch_requirements("8.9").fp4
    assert kb.arch_requirements("12.0").fp4


def test_find_gpu_by_nvml_name_and_pci():
    assert kb.find_gpu("NVIDIA H100 80GB HBM3").key == "h100"
    assert kb.find_gpu(pci_device_id=0x233010DE).key == "h100"
    assert kb.find_gpu(pci_device_id="0x2BB110DE").key == "rtx-pro-6000"
    assert kb.find_gpu(pci_device_id="2bb4").key == "rtx-pro-6000-max-q"
    assert kb.find_gpu("NVIDIA RTX PRO 6000 Blackwell Server Edition MIG 1g.24gb").key == "rtx-pro-6000-server"
    assert kb.find_gpu("NVIDIA RTX 6000 Ada Generation").key == "rtx-6000-ada"
    assert kb.find_gpu("Tesla T4").key == "t4"
    assert kb.find_gpu("NVIDIA GeForce RTX 5090").key == "rtx-5090"
    assert kb.find_gpu("NVIDIA Imaginary 9999") is None
    assert kb.find_gpu("") is None and kb.find_gpu(None) is None


@pytest.mark.parametrize("query,cc,gpu", [
    ("rtx-pro-6000", "12.0", "rtx-pro-6000"),
    ("b200", "10.0", "b200"),
    ("B200", "10.0", "b200"),
    ("rtx-5090", "12.0", "rtx-5090"),
    ("h100", "9.0", "h100"),
    ("NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition", "12.0", "rtx-pro-6000-max-q"),
    ("sm_120", "12.0", None),
    ("sm_120a", "12.0", None),
    ("12.0", "12.0", None),
    ("120", "12.0", None),
    ("sm_90a", "9.0", None),
    ("sm_103", "10.3", None),
    ("dgx spark", "12.1", "gb10"),
])
def test_resolve_target(query, cc, gpu):
    r = kb.resolve_target(query)
    assert r["query"] == query and r["compute_capability"] == cc and r["gpu"] == gpu and r["name"]


@pytest.mark.parametrize("query", ["", "sm_99", "potato", "42.0"])
def test_resolve_target_unknown(query):
    with pytest.raises(ValueError):
        kb.resolve_target(query)


def test_arch_requirements_blackwell():
    r = kb.arch_requirements("12.0")
    assert r.sm == "sm_120" and r.min_cuda == "12.8" and r.min_driver.startswith("570.")
    assert r.torch_min == "2.7.0" and r.vllm_min == "0.9.2" and r.flashinfer_min == "0.3.1"
    assert set(r.torch_cuda_variants) == {"cu128", "cu129", "cu130"}
    assert "cu124" not in r.torch_cuda_variants and "cu126" not in r.torch_cuda_variants
    assert kb.arch_requirements("sm_100").vllm_min == "0.9.0"
    assert kb.arch_requirements("10.3").min_cuda == "12.9"
    assert kb.arch_requirements("12.1").min_driver == "580.94.13"
    assert kb.arch_requirements((9, 0)).compute_capability == "9.0"
    assert kb.arch_requirements("6.1").vllm_supported is False
    assert kb.arch_requirements("7.0").max_cuda_major == 12 and "cu130" not in kb.arch_requirements("7.0").torch_cuda_variants
    assert kb.arch_requirements("5.2") is None and kb.arch_requirements("garbage") is None


def test_cuda_min_driver_table():
    assert kb.cuda_min_driver("12.8") == "570.26"
    assert kb.cuda_min_driver("12.8.1") == "570.124.06"
    assert kb.cuda_min_driver("12.9") == "575.51.03"
    assert kb.cuda_min_driver("13.0") == "580.65.06"
    assert kb.cuda_min_driver("13") == "580.65.06"
    assert kb.cuda_min_driver("12.4") == "550.54.14"
    assert kb.cuda_min_driver("12.7") == "560.28.03"  # nearest lower row
    assert kb.cuda_min_driver("9.2") is None and kb.cuda_min_driver("x") is None
    assert kb.cuda_compat_min_driver("12.8") == "525.60.13"
    assert kb.cuda_compat_min_driver("13.0") == "580.65.06"


def test_driver_compare_and_forward_compat():
    assert kb.driver_at_least("580.159.04", "580.65.06") is True
    assert kb.driver_at_least("550.54.14", "570.86.16") is False
    assert kb.driver_at_least("570.86.16", "570.86.16") is True
    assert kb.driver_at_least("garbage", "1") is None
    assert kb.forward_compat_supported("b200") is True
    assert kb.forward_compat_supported("h100") is True
    assert kb.forward_compat_supported("rtx-5090") is False
    assert kb.forward_compat_supported("rtx-pro-6000") is False
    assert kb.forward_compat_supported("no such gpu") is None


def test_import_is_light():
    code = ("import sys, bwdoctor.kb; bad=[m for m in ('torch','vllm','rich','pynvml') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_kb_cli_json():
    r = CliRunner().invoke(kb_command, ["--format", "json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert set(data) == {"gpus", "architectures"}
    by_key = {g["key"]: g for g in data["gpus"]}
    pro = by_key["rtx-pro-6000"]
    for field in ("name", "compute_capability", "memory_type", "memory_gib", "memory_bandwidth_gbs", "nvlink",
                  "pcie_gen", "fp8", "fp4", "mig_max_instances", "sources"):
        assert field in pro
    assert pro["nvlink"] is False and by_key["b200"]["nvlink"] == 1800
    assert {a["compute_capability"] for a in data["architectures"]} >= {"9.0", "12.0"}


def test_kb_cli_table():
    r = CliRunner().invoke(kb_command, [])
    assert r.exit_code == 0, r.output
    assert "rtx-pro-6000" in r.output and "sm_120" in r.output and "GDDR7" in r.output
    r = CliRunner().invoke(kb_command, ["--gpu", "l40s", "--format", "json"])
    assert [g["key"] for g in json.loads(r.output)["gpus"]] == ["l40s"]


def test_nvlink_topology_and_torch_cuda_firsts_come_from_the_data():
    # an NV18 / NV12 entry of `nvidia-smi topo -m` allows only the SXM parts with that many links
    assert kb.ccs_with_nvlink_links(18) == ("9.0", "10.0", "10.3")
    assert kb.ccs_with_nvlink_links(12) == ("8.0",)
    assert kb.ccs_with_nvlink_links(7) == ()
    # the first torch with a cu128 index build, and the first whose PyPI default is CUDA >= 12.8
    assert kb.torch_first_with_cuda("12.8") == ("2.7", "2.8.0")
    assert kb.torch_first_with_cuda("13.0") == ("2.9", "2.11.0")
