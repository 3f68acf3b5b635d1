"""Environment-report parsers: collect_env (both layouts), nvidia-smi (table, -q, CSV, topo),
pip/conda lists, issue text, env dumps. Robustness: property-based, no exception on any input."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bwdoctor.types import Evidence
from bwdoctor_checks.parsers import env as parse_env

DATA = Path(__file__).parent / "data" / "evidence"


def ev_of(path: Path) -> Evidence:
    raw = path.read_bytes()
    return Evidence(path=str(path), name=path.name, head=raw[: 1 << 20].decode("utf-8", "replace"), size=len(raw))


def ev_text(tmp_path: Path, text: str | bytes, name: str = "paste.txt") -> Evidence:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return ev_of(p)


def facts(parser, ev: Evidence) -> dict:
    out: dict = {}
    for f in parser(ev):
        if isinstance(out.get(f.key), dict) and isinstance(f.value, dict):
            out[f.key] = {**out[f.key], **f.value}
        else:
            out[f.key] = f.value
        out.setdefault("_sources", {})[f.key] = f.source
    return out


SPECS = {s.name: s for s in parse_env.bwdoctor_parsers()}


def run(name: str, ev: Evidence) -> dict:
    spec = SPECS[name]
    assert spec.detect(ev), f"{name} did not recognise {ev.name}"
    return facts(spec.func, ev)


def test_collect_env_old_layout_real_h100():
    f = run("collect_env", ev_of(DATA / "h100-collect_env.txt"))
    assert f["torch"] == {"version": "2.11.0+cu130", "cuda": "13.0", "variant": "cu130"}
    assert f["driver.version"] == "580.159.04"
    assert f["gpu.0"]["name"] == "NVIDIA H100 80GB HBM3"
    assert f["gpu.0"]["compute_capability"] == "9.0"
    assert f["gpu.0"]["cc_source"] == "kb.find_gpu(name)"
    assert f["host.os"]["id"] == "ubuntu" and f["host.os"]["version"].startswith("24.04")
    assert f["host.python"] == "3.12.3"
    assert f["toolkit.nvcc"]["version"] == "13.0"
    assert f["nccl.version"] == "2.28.9"
    assert f["triton"]["version"] == "3.6.0"
    assert f["packages"]["torch"]["version"] == "2.11.0"
    assert f["_sources"]["driver.version"] == "collect_env:line 20"


def test_collect_env_sectioned_layout():
    f = run("collect_env", ev_of(DATA / "sectioned-collect-env.txt"))
    assert f["torch"] == {"version": "2.6.0+cu124", "cuda": "12.4", "variant": "cu124"}
    assert f["gpu.count"] == 2
    assert f["gpu.1"]["compute_capability"] == "12.0"
    assert f["driver.version"] == "575.51.03"
    assert f["vllm"]["version"] == "0.8.4"
    assert f["vllm.cuda_archs"] == ["7.0", "7.5", "8.0", "8.6", "8.9", "9.0"]
    assert f["toolkit.nvcc"]["version"] == "12.8"
    assert f["host.env"]["NVIDIA_REQUIRE_CUDA"] == "cuda>=12.4"
    assert f["host.env"]["VLLM_USE_V1"] == "1"
    assert f["host.python"] == "3.12.9"
    assert f["host.kernel"] == "6.8.0-51-generic"
    assert f["flashinfer"]["packages"]["flashinfer-python"] == "0.2.2.post1"
    assert f["nccl.version"] == "2.21.5"
    assert f["host.gpu_topology"]["pcie_only"] is True
    # torch comes from "PyTorch version", not from the [pip3] line without a local version
    assert f["_sources"]["torch"].startswith("collect_env:line ")


def test_nvidia_smi_table_real_h100():
    f = run("nvidia-smi", ev_of(DATA / "h100-nvidia-smi.txt"))
    assert f["driver.version"] == "580.159.04"
    assert f["driver.cuda_version"] == "13.0"
    g = f["gpu.0"]
    assert g["name"] == "NVIDIA H100 80GB HBM3" and g["compute_capability"] == "9.0"
    assert g["memory_total_mib"] == 81559 and g["memory_used_mib"] == 0
    assert g["persistence_mode"] is True and g["mig"] == {"current": False}
    assert g["compute_mode"] == "default" and g["power"] == {"draw_w": 82.0, "limit_w": 700.0}


def test_nvidia_smi_table_truncated_name_and_processes():
    f = run("nvidia-smi", ev_of(DATA / "smi-table-two-gpus.txt"))
    assert f["gpu.count"] == 2
    assert f["gpu.0"]["compute_capability"] == "12.0"
    assert f["gpu.1"]["name"].startswith("NVIDIA RTX PRO 6000")
    assert f["gpu.1"]["compute_capability"] == "12.0"  # prefix match on the cut name
    assert f["gpu.1"]["processes"] == [{"pid": 4242, "type": "C", "name": "python3", "used_mib": 20400}]
    assert f["gpu.1"]["memory_used_mib"] == 20480


def test_nvidia_smi_q_real_h100():
    f = run("nvidia-smi", ev_of(DATA / "h100-nvidia-smi-q.txt"))
    g = f["gpu.0"]
    assert g["name"] == "NVIDIA H100 80GB HBM3"
    assert g["pci_device_id"] == "0x2330"
    assert g["memory_total_mib"] == 81559
    assert g["mig"] == {"current": False, "pending": False}
    assert g["pcie"]["gen_max"] == 5 and g["pcie"]["width_max"] == 16
    assert g["recovery_action"] == "none"
    assert g["ecc"]["current"] is True and g["ecc"]["aggregate_uncorrected"] == 0
    assert g["remapped_rows"] == {"corrected": 0, "uncorrected": 0, "pending": False, "failure": False}
    assert g["clock_event_reasons"] == {"active": 1, "active_names": ["gpu_idle"]}
    assert g["temperature"]["gpu_c"] == 38 and g["clocks"]["sm"] == {"current": 345, "max": 1980}
    assert g["arch"] == "hopper" and g["virtualization_mode"] == "passthrough"
    assert f["driver.cuda_version"] == "13.0"


def test_nvidia_smi_query_csv():
    f = run("nvidia-smi", ev_of(DATA / "smi-query.csv"))
    assert f["gpu.count"] == 2
    assert f["gpu.1"] == {"name": "NVIDIA L40S", "compute_capability": "8.9", "cc_source": "nvidia-smi --query-gpu",
                          "memory_total_mib": 46068}
    assert f["driver.version"] == "550.127.05"


def test_topology_matrix(tmp_path):
    text = ("$ nvidia-smi topo -m\n        GPU0    GPU1    GPU2    CPU Affinity    NUMA Affinity\n"
            "GPU0     X      NV4     PHB     0-31    0\nGPU1    NV4      X      PHB     0-31    0\n"
            "GPU2    PHB     PHB      X      0-31    0\n")
    f = run("nvidia-smi", ev_text(tmp_path, text))
    topo = f["host.gpu_topology"]
    assert topo["nvlink"] is True and topo["links"]["GPU0"] == {"GPU1": "NV4", "GPU2": "PHB"}


def test_pip_list_real():
    f = run("packages", ev_of(DATA / "h100-pip-list.txt"))
    assert len(f["packages"]) > 100
    assert f["torch"]["cuda"] == "13.0"  # no local version: CUDA from the nvidia-cuda-runtime companion
    assert f["nccl.version"] == "2.28.9"


def test_pip_freeze_and_url_lines():
    f = run("packages", ev_of(DATA / "pip-freeze.txt"))
    assert f["torch"] == {"version": "2.7.0+cu126", "cuda": "12.6", "variant": "cu126"}
    assert f["vllm"]["version"] == "0.9.0"
    assert f["packages"]["xformers"]["version"] == "0.0.30"
    assert f["flashinfer"]["packages"] == {"flashinfer-python": "0.2.5"}


def test_conda_list():
    f = run("packages", ev_of(DATA / "conda-list.txt"))
    assert f["torch"] == {"version": "2.5.1", "cuda": "12.4", "variant": "cu124"}
    assert f["vllm"]["version"] == "0.6.6.post1"


def test_env_dump_needs_a_real_listing(tmp_path):
    prose = "The fix was\n```\nNCCL_P2P_DISABLE=1\n```\nwhich made it pass.\n"
    assert not SPECS["env-dump"].detect(ev_text(tmp_path, prose))
    listing = "CUDA_VERSION=12.8.1\nNVIDIA_REQUIRE_CUDA=cuda>=12.8 brand=tesla\nVLLM_LOGGING_LEVEL=DEBUG\n"
    f = run("env-dump", ev_text(tmp_path, listing, "env.txt"))
    assert f["container.cuda_version"] == "12.8"
    assert f["host.env"]["VLLM_LOGGING_LEVEL"] == "DEBUG"


def test_non_utf8_bytes_tolerated():
    ev = ev_of(DATA / "binary-noise.txt")
    f = run("collect_env", ev)
    assert f["torch"]["variant"] == "cu128"


def test_blob_with_several_outputs(tmp_path):
    blob = ("Here is my setup.\n" + (DATA / "smi-table-two-gpus.txt").read_text() + "\nand pip:\n"
            + (DATA / "pip-freeze.txt").read_text())
    ev = ev_text(tmp_path, blob)
    assert SPECS["nvidia-smi"].detect(ev) and SPECS["packages"].detect(ev)
    assert facts(SPECS["packages"].func, ev)["vllm"]["version"] == "0.9.0"
    assert facts(SPECS["nvidia-smi"].func, ev)["gpu.count"] == 2


@pytest.mark.parametrize("name", sorted(SPECS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(
    st.binary(max_size=3000),
    st.lists(st.sampled_from([
        "PyTorch version: ", "GPU 0: ", "| NVIDIA-SMI 1 Driver Version: x", "GPU 00000000:00:06.0", "    Product Name : ",
        "Package Version", "---- ----", "torch==", "[conda] pytorch 2", "GPU0\tGPU1\tCPU Affinity", "GPU0 X NV",
        "--query-gpu=name,compute_cap", "name, compute_cap", "NVIDIA A100, 8.", "vLLM Version: ", "CUDA Archs: ;",
        "Environment Variables", "CUDA_VERSION=", "- GPU: 4x", "\xff", "", "    MIG Mode", "        Current : ",
    ]), max_size=40).map("\n".join),
))
def test_parsers_never_raise(tmp_path, name, data):
    ev = ev_text(tmp_path, data)
    spec = SPECS[name]
    spec.detect(ev)
    out = list(spec.func(ev))
    assert all(hasattr(f, "key") for f in out)
