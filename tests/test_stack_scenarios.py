"""Stack checks driven like a live run: collectors read a fake site-packages tree built from the
nvcc-compiled fixtures, then the runner judges the facts against GPUs or a --target."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bwdoctor import RunOptions, Snapshot, kb
from bwdoctor.manager import Registry
from bwdoctor.runner import collect, run_checks
from bwdoctor_checks.checks import stack as stack_checks
from bwdoctor_checks.collectors import stack as stack_collectors

BIN = Path(__file__).parent / "data" / "cudabin"
SNAPS = Path(__file__).parent / "data" / "stack"


def _dist(site: Path, name: str, version: str, files: dict[str, Path | str], requires: list[str] = ()) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"  # as pip names it: the local version included
    info.mkdir(parents=True)
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    meta += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(meta) + "\n")
    record = []
    for rel, src in files.items():
        dst = site / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, Path):
            shutil.copy(src, dst)
        else:
            dst.write_text(src)
        record.append(f"{rel},,")
    record.append(f"{info.name}/METADATA,,")
    (info / "RECORD").write_text("\n".join(record) + "\n")


def torch_dist(site: Path, version: str, cuda: str | None, lib: Path | None) -> None:
    vpy = (f"__version__ = '{version}'\ndebug = False\n"
           f"cuda: Optional[str] = {repr(cuda) if cuda else 'None'}\nhip: Optional[str] = None\n")
    files: dict[str, Path | str] = {"torch/__init__.py": "", "torch/version.py": vpy}
    if lib is not None:
        files["torch/lib/libtorch_cuda.so"] = lib
    _dist(site, "torch", version, files)


def vllm_dist(site: Path, version: str, ext: Path | None, torch_pin: str, fi_pin: str | None = None) -> None:
    files: dict[str, Path | str] = {"vllm/__init__.py": ""}
    if ext is not None:
        files["vllm/_C.abi3.so"] = ext
    reqs = [torch_pin] + ([fi_pin] if fi_pin else [])
    _dist(site, "vllm", version, files, reqs)


def snapshot_of(site: Path, level: str = "quick", gpus: list[dict] | None = None, target: str | None = None) -> Snapshot:
    opts = RunOptions(level=level, extra={"site_packages": [str(site)]})
    reg = Registry(collectors=[c for c in stack_collectors.bwdoctor_collectors() if c.name != "toolkit"])
    snap, errors = collect(reg, opts)
    assert not errors, [e.message for e in errors]
    for i, g in enumerate(gpus or []):
        snap.set(f"gpu.{i}", g, "test")
    if target:
        snap.set("target", kb.resolve_target(target), f"--target {target}")
    return snap


def findings(snap: Snapshot, *ids: str):
    specs = [s for s in stack_checks.bwdoctor_checks() if s.id in ids]
    assert len(specs) == len(ids)
    return run_checks(specs, snap)


RTX5090 = {"name": "NVIDIA GeForce RTX 5090", "compute_capability": "12.0"}
H100 = {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}


def test_torch_cu126_on_rtx5090_has_no_kernel(tmp_path):
    torch_dist(tmp_path, "2.7.0+cu126", "12.6", BIN / "torch_cu126_like.so")
    snap = snapshot_of(tmp_path, gpus=[RTX5090])
    assert snap.value("torch")["variant"] == "cu126"
    (f,) = findings(snap, "BWD-STACK-001")
    assert f.status == "fail" and f.root_cause == "arch_not_in_torch_wheel"
    assert f.remedies == ["torch.reinstall-cuda-variant"]
    assert "no kernel for sm_120" in f.message and "sm_90a" in f.message and "no PTX" in f.message


def test_torch_cu130_passes_on_rtx5090_and_h100(tmp_path):
    torch_dist(tmp_path, "2.11.0+cu130", "13.0", BIN / "torch_cu130_like.so")
    snap = snapshot_of(tmp_path, gpus=[RTX5090, H100, RTX5090])
    fs = findings(snap, "BWD-STACK-001")
    assert [f.status for f in fs] == ["pass", "pass"]  # one outcome per distinct CC


def test_target_gating_without_gpus(tmp_path):
    torch_dist(tmp_path, "2.7.0+cu126", "12.6", BIN / "torch_cu126_like.so")
    (f,) = findings(snapshot_of(tmp_path, target="rtx-pro-6000"), "BWD-STACK-001")
    assert f.status == "fail" and f.subject == "target"
    (f,) = findings(snapshot_of(tmp_path, target="sm_90"), "BWD-STACK-001")
    assert f.status == "pass"
    (f,) = findings(snapshot_of(tmp_path), "BWD-STACK-001")
    assert f.status == "skip"


def test_ptx_only_library_is_a_slow_first_start(tmp_path):
    torch_dist(tmp_path, "2.7.0+cu126", "12.6", BIN / "ptx_only.so")
    (f,) = findings(snapshot_of(tmp_path, target="sm_120"), "BWD-STACK-001")
    assert f.status == "warn" and "JIT" in f.message


def test_cpu_torch_build(tmp_path):
    torch_dist(tmp_path, "2.11.0+cpu", None, None)
    snap = snapshot_of(tmp_path, target="sm_120")
    assert snap.value("torch")["variant"] == "cpu"
    (f,) = findings(snap, "BWD-STACK-001")
    assert f.status == "fail" and "CPU build" in f.message


def test_vllm_image_without_sm120(tmp_path):
    torch_dist(tmp_path, "2.7.0+cu128", "12.8", BIN / "torch_cu130_like.so")
    vllm_dist(tmp_path, "0.9.0", BIN / "vllm_no_sm120.so", "torch==2.7.0")
    snap = snapshot_of(tmp_path, gpus=[RTX5090])
    assert snap.value("vllm.cuda_archs") == ["8.0", "8.9", "9.0", "10.0"]
    fs = {f.id: f for f in findings(snap, "BWD-STACK-001", "BWD-STACK-002", "BWD-STACK-003")}
    assert fs["BWD-STACK-001"].status == "pass"
    v = fs["BWD-STACK-002"]
    # compute_90 PTX can be JIT-compiled for 12.0, but vLLM 0.9.0's kernels without PTX fail
    assert v.status == "warn" and v.root_cause == "arch_not_in_vllm_wheel"
    assert fs["BWD-STACK-003"].status == "pass"


def test_vllm_family_cubins_cover_gb10_and_b300(tmp_path):
    vllm_dist(tmp_path, "0.33.0", BIN / "vllm_family.so", "torch==2.14.0")
    for tgt in ("sm_121", "sm_103", "sm_120", "sm_100"):
        (f,) = findings(snapshot_of(tmp_path, target=tgt), "BWD-STACK-002")
        assert f.status == "pass", (tgt, f.message)


def test_vllm_without_any_blackwell_kernel_fails(tmp_path):
    vllm_dist(tmp_path, "0.8.5", BIN / "ext_cu12.so", "torch==2.6.0")
    (f,) = findings(snapshot_of(tmp_path, target="rtx-pro-6000"), "BWD-STACK-002")
    assert f.status == "fail" and "no kernel for sm_120" in f.message


def test_vllm_cpu_build_is_named(tmp_path):
    vllm_dist(tmp_path, "0.33.0+cpu", BIN / "plain_host.so", "torch==2.14.0")
    snap = snapshot_of(tmp_path, target="sm_120")
    assert snap.value("vllm")["build"] == "cpu"
    (f,) = findings(snap, "BWD-STACK-002")
    assert f.status == "fail" and "vLLM 0.33.0+cpu is a CPU build: no CUDA kernels" in f.message


def test_vllm_built_for_another_torch(tmp_path):
    torch_dist(tmp_path, "2.8.0+cu128", "12.8", BIN / "torch_cu130_like.so")
    vllm_dist(tmp_path, "0.10.1", BIN / "ext_cu12.so", "torch==2.7.1")
    fs = {f.id: f for f in findings(snapshot_of(tmp_path, target="sm_90"), "BWD-STACK-003", "BWD-STACK-004")}
    assert fs["BWD-STACK-003"].status == "fail" and fs["BWD-STACK-003"].root_cause == "torch_vllm_abi_mismatch"
    assert set(fs["BWD-STACK-003"].remedies) == {"vllm.rebuild-for-torch", "torch.reinstall-cuda-variant"}
    assert fs["BWD-STACK-004"].status == "pass"


def test_vllm_cuda13_with_cu12_torch(tmp_path):
    torch_dist(tmp_path, "2.11.0+cu128", "12.8", BIN / "torch_cu130_like.so")
    vllm_dist(tmp_path, "0.20.0", BIN / "ext_cu13.so", "torch==2.11.0")
    snap = snapshot_of(tmp_path, target="sm_120")
    assert snap.value("vllm")["cuda_major"] == 13 and snap.value("torch")["cuda_major"] == 12
    fs = {f.id: f for f in findings(snap, "BWD-STACK-003", "BWD-STACK-004")}
    assert fs["BWD-STACK-003"].status == "pass"
    assert fs["BWD-STACK-004"].status == "fail" and "libcudart.so.13" in fs["BWD-STACK-004"].message


def test_mixed_runtime_wheels_warn(tmp_path):
    torch_dist(tmp_path, "2.11.0+cu130", "13.0", None)
    _dist(tmp_path, "nvidia-cuda-runtime", "13.0.96", {})
    _dist(tmp_path, "nvidia-cublas-cu12", "12.4.5.8", {})
    snap = snapshot_of(tmp_path, target="sm_120")
    assert snap.value("toolkit.cuda_runtimes")["majors"] == [12, 13]
    (f,) = findings(snap, "BWD-STACK-005")
    assert f.status == "warn" and "nvidia-cublas-cu12" in f.message


def test_flashinfer_alignment(tmp_path):
    vllm_dist(tmp_path, "0.19.0", None, "torch==2.10.0", "flashinfer-python==0.6.6")
    _dist(tmp_path, "flashinfer-python", "0.6.6", {})
    _dist(tmp_path, "flashinfer-cubin", "0.6.4", {})
    snap = snapshot_of(tmp_path, target="sm_120")
    fs = findings(snap, "BWD-STACK-006")
    assert [f.status for f in fs] == ["fail"] and "flashinfer-cubin 0.6.4" in fs[0].message
    assert fs[0].remedies == ["flashinfer.align"]


def test_flashinfer_too_old_for_sm120_and_vllm_pin(tmp_path):
    vllm_dist(tmp_path, "0.11.1", None, "torch==2.9.0", "flashinfer-python==0.5.2")
    _dist(tmp_path, "flashinfer-python", "0.2.5", {})
    fs = findings(snapshot_of(tmp_path, target="sm_120"), "BWD-STACK-006")
    assert {f.status for f in fs} == {"fail"} and len(fs) == 2


def test_flashinfer_jit_with_cuda_124_toolkit_on_sm120_from_snapshot():
    snap = Snapshot.from_json((SNAPS / "flashinfer_jit_cuda124_sm120.json").read_text())
    fs = findings(snap, "BWD-STACK-007", "BWD-STACK-006")
    tk = [f for f in fs if f.id == "BWD-STACK-007"][0]
    assert tk.status == "fail" and tk.root_cause == "flashinfer_jit_toolchain"
    assert tk.remedies == ["toolkit.cuda-home"] and "12.4" in tk.message and "12.8" in tk.message


def test_toolkit_collector_reads_version_json(tmp_path, monkeypatch):
    home = tmp_path / "cuda-12.4"
    (home / "bin").mkdir(parents=True)
    nvcc = home / "bin" / "nvcc"
    nvcc.write_text("#!/bin/sh\nexit 1\n")
    nvcc.chmod(0o755)
    (home / "version.json").write_text(json.dumps({"cuda": {"name": "CUDA SDK", "version": "12.4.1"}}))
    monkeypatch.setenv("CUDA_HOME", str(home))
    facts = {f.key: f.value for f in stack_collectors.collect_toolkit(RunOptions())}
    assert facts["toolkit.cuda_home"] == str(home)
    assert facts["toolkit.nvcc"] == {"version": "12.4", "path": str(nvcc)}


def test_triton_ptxas_too_old_for_gb10(tmp_path):
    ptxas = "#!/bin/sh\necho 'ptxas: NVIDIA (R) Ptx optimizing assembler'\necho 'Cuda compilation tools, release 12.8, V12.8.93'\n"
    _dist(tmp_path, "triton", "3.5.0", {"triton/__init__.py": "", "triton/backends/nvidia/bin/ptxas": ptxas})
    (tmp_path / "triton/backends/nvidia/bin/ptxas").chmod(0o755)
    snap = snapshot_of(tmp_path, target="sm_121")
    assert snap.value("triton")["ptxas_version"] == "12.8"
    (f,) = findings(snap, "BWD-STACK-008")
    assert f.status == "fail" and f.root_cause == "triton_ptxas_toolchain" and "3.6.0" in f.message
    (f,) = findings(snapshot_of(tmp_path, target="sm_90"), "BWD-STACK-008")
    assert f.status == "pass"


def test_nccl_too_old_for_blackwell(tmp_path):
    _dist(tmp_path, "nvidia-nccl-cu12", "2.21.5", {})
    (f,) = findings(snapshot_of(tmp_path, target="b200"), "BWD-STACK-009")
    assert f.status == "fail" and f.remedies == ["nccl.upgrade"]
    (f,) = findings(snapshot_of(tmp_path, target="h100"), "BWD-STACK-009")
    assert f.status == "pass"


def test_standard_level_scans_other_cuda_dists(tmp_path):
    torch_dist(tmp_path, "2.7.0+cu126", "12.6", BIN / "torch_cu126_like.so")
    _dist(tmp_path, "nvidia-cufft-cu12", "11.3.0.4", {"nvidia/cufft/lib/libcufft.so.11": BIN / "torch_cu126_like.so"})
    _dist(tmp_path, "xformers", "0.0.29", {"xformers/_C.so": BIN / "torch_cu126_like.so"})
    quick = snapshot_of(tmp_path, target="sm_120")
    assert not quick.keys("cudabin.other.")
    snap = snapshot_of(tmp_path, level="standard", target="sm_120")
    assert snap.value("cudabin.other.nvidia-cufft-cu12")["sass"][-1] == "sm_90a"
    # NVIDIA's own libraries are facts only; third-party extensions are judged
    (f,) = findings(snap, "BWD-STACK-010")
    assert f.status == "fail" and f.subject == "xformers:target" and "no kernel for sm_120" in f.message


@pytest.mark.parametrize("quant,cc,status,path", [
    ("fp8", "8.0", "warn", "marlin-w8a16"),
    ("fp8", "8.9", "pass", "native"),
    ("fp8", "12.0", "pass", "native"),
    (None, "8.6", "pass", "weight-only FP8 via Marlin (W8A16)"),
])
def test_fp8_paths(tmp_path, quant, cc, status, path):
    vllm_dist(tmp_path, "0.33.0", BIN / "vllm_family.so", "torch==2.14.0")
    snap = snapshot_of(tmp_path, gpus=[{"name": "x", "compute_capability": cc}])
    if quant:
        snap.set("vllm.config", {"quantization": quant}, "test")
    (f,) = findings(snap, "BWD-FP8-001")
    assert f.status == status and f.details["fp8_path"] == path
    if status == "warn":
        assert f.root_cause == "fp8_unsupported_on_gpu" and f.remedies == ["vllm.fp8-fallback"]


def test_fp8_on_blackwell_with_vllm_lacking_the_arch(tmp_path):
    vllm_dist(tmp_path, "0.9.0", BIN / "vllm_no_sm120.so", "torch==2.7.0")
    snap = snapshot_of(tmp_path, target="rtx-pro-6000")
    snap.set("vllm.config", {"quantization": "fp8"}, "test")
    (f,) = findings(snap, "BWD-FP8-001")
    assert f.status == "fail" and f.root_cause == "arch_not_in_vllm_wheel"


def test_fp4_kernels_for_sm100_only_fail_on_sm120(tmp_path):
    vllm_dist(tmp_path, "0.9.0", BIN / "vllm_no_sm120.so", "torch==2.7.0")
    snap = snapshot_of(tmp_path, target="sm_120")
    snap.set("vllm.config", {"quantization": "nvfp4"}, "test")
    (f,) = findings(snap, "BWD-FP8-002")
    assert f.status == "fail" and f.root_cause == "fp4_kernel_arch_mismatch"
    snap = snapshot_of(tmp_path, target="b200")
    snap.set("vllm.config", {"quantization": "nvfp4"}, "test")
    (f,) = findings(snap, "BWD-FP8-002")
    assert f.status == "pass"
    snap = snapshot_of(tmp_path, target="h100")
    snap.set("vllm.config", {"quantization": "modelopt_fp4"}, "test")
    (f,) = findings(snap, "BWD-FP8-002")
    assert f.status == "warn"


def test_specs_are_complete():
    from bwdoctor.types import ROOT_CAUSES

    for spec in stack_checks.bwdoctor_checks():
        assert len(spec.doc) > 120
        # a missing vLLM has no root-cause label and no automatic remedy; the check's doc says why
        assert (spec.root_cause in ROOT_CAUSES and spec.remedies) or "No automatic remedy" in spec.doc
    names = [c.name for c in stack_collectors.bwdoctor_collectors()]
    assert "toolkit" in names and "cudabin" in names and "stack.torch" in names


@pytest.mark.vllm
def test_real_vllm_cpu_build_is_named():
    import os
    import subprocess

    py = os.environ.get("BWDOCTOR_VLLM_PYTHON")
    if not py or not os.path.exists(py):
        if os.environ.get("BWDOCTOR_REQUIRE_VLLM") == "1":
            pytest.fail("BWDOCTOR_VLLM_PYTHON (the vLLM CPU venv) is not set up")
        pytest.skip("BWDOCTOR_VLLM_PYTHON (the vLLM CPU venv) is not set up")
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    snap = snapshot_of(Path(site), target="rtx-pro-6000")
    assert snap.value("vllm")["build"] == "cpu"
    assert snap.value("torch")["variant"] == "cpu"
    fs = {f.id: f for f in findings(snap, "BWD-STACK-001", "BWD-STACK-002")}
    assert fs["BWD-STACK-002"].status == "fail" and "is a CPU build: no CUDA kernels" in fs["BWD-STACK-002"].message
    assert fs["BWD-STACK-001"].status == "fail" and "CPU build" in fs["BWD-STACK-001"].message


def test_nccl_version_from_a_bundled_library(tmp_path):
    blob = b"\x7fELF" + b"\0" * 100 + b"NCCL version 2.21.5+cuda12.4\0" + b"\0" * 50
    torch_dist(tmp_path, "2.5.1+cu124", "12.4", None)
    (tmp_path / "torch" / "lib").mkdir(parents=True, exist_ok=True)
    (tmp_path / "torch" / "lib" / "libnccl.so.2").write_bytes(blob)
    snap = snapshot_of(tmp_path, target="sm_100")
    assert snap.value("nccl.version") == "2.21.5"
    (f,) = findings(snap, "BWD-STACK-009")
    assert f.status == "fail"
