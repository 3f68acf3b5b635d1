"""Log-signature and environment-class checks, on snapshots built from parsed text (the way
``analyze`` builds them) and on hand-made facts."""

from __future__ import annotations

from bwdoctor import runner
from bwdoctor.types import Snapshot
from bwdoctor_checks.parsers import log as parse_log

from logsig_util import SPECS, outcome, snap_from


def test_specs_are_well_formed():
    from bwdoctor.types import CHECK_ID_RE, ROOT_CAUSES
    for spec in SPECS.values():
        assert CHECK_ID_RE.match(spec.id)
        assert spec.root_cause is None or spec.root_cause in ROOT_CAUSES
        assert len(spec.doc) > 80
        assert spec.remedies or "remedy" in spec.doc.lower()


def test_torch_warning_proves_torch_arch_gap():
    s = snap_from("NVIDIA GeForce RTX 5080 with CUDA capability sm_120 is not compatible with the current PyTorch "
                  "installation.\nRuntimeError: CUDA error: no kernel image is available for execution on the device")
    f = outcome("BWD-LOG-001", s)
    assert f.status == "fail" and f.root_cause == "arch_not_in_torch_wheel" and f.confidence >= 0.85
    assert outcome("BWD-LOG-002", s).status == "skip"  # torch is the culprit, not vLLM


def test_torch_variant_against_gpu_from_facts():
    s = snap_from("RuntimeError: CUDA error: no kernel image is available for execution on the device",
                  torch={"version": "2.6.0+cu124", "cuda": "12.4", "variant": "cu124"},
                  gpu__0={"name": "NVIDIA B200", "compute_capability": "10.0"})
    f = outcome("BWD-LOG-001", s)
    assert f.status == "fail" and "12.4" in f.message


def test_no_kernel_image_alone_points_at_vllm_moderately():
    f = outcome("BWD-LOG-002", snap_from("RuntimeError: CUDA error: no kernel image is available for execution"
                                         " on the device"))
    assert f.status == "fail" and f.root_cause == "arch_not_in_vllm_wheel" and 0.4 <= f.confidence <= 0.6


def test_no_kernel_image_old_vllm_on_blackwell_is_strong():
    s = snap_from("RuntimeError: CUDA error: no kernel image is available for execution on the device",
                  vllm={"version": "0.9.0"}, gpu__0={"name": "NVIDIA GeForce RTX 5090", "compute_capability": "12.0"},
                  torch={"version": "2.7.0+cu128", "cuda": "12.8", "variant": "cu128"})
    f = outcome("BWD-LOG-002", s)
    assert f.confidence >= 0.8 and "0.9.2" in f.message


def test_no_compiled_kernel_for_built_arch_is_not_environment():
    f = outcome("BWD-LOG-002", snap_from("NotImplementedError: No compiled cutlass_scaled_mm for a compute capability "
                                         "less than CUDA device capability: 86"))
    assert f.status == "warn" and f.root_cause == "none_env_ok"


def test_no_compiled_kernel_in_fp4_context_is_fp4():
    s = snap_from("Loading nvfp4 checkpoint\nNotImplementedError: No compiled cutlass_fp4_group_mm for CUDA device "
                  "capability: 120")
    f = outcome("BWD-LOG-010", s)
    assert f.status == "fail" and f.root_cause == "fp4_kernel_arch_mismatch"


def test_driver_checks():
    f = outcome("BWD-LOG-003", snap_from("RuntimeError: The NVIDIA driver on your system is too old (found version "
                                         "12080)."))
    assert f.root_cause == "driver_too_old_for_cuda" and f.confidence >= 0.8 and "12.8" in f.message
    f = outcome("BWD-LOG-004", snap_from("Failed to initialize NVML: Driver/library version mismatch"))
    assert f.root_cause == "driver_library_mismatch"


def test_abi_distinguishes_torch_symbols_from_own_symbols():
    f = outcome("BWD-LOG-005", snap_from("ImportError: /v/vllm/_C.abi3.so: undefined symbol: _ZNK3c1010TensorImpl4sizeEl"))
    assert f.status == "fail" and f.root_cause == "torch_vllm_abi_mismatch"
    f = outcome("BWD-LOG-005", snap_from("ImportError: /v/vllm/_C.abi3.so: undefined symbol: _Z14my_op_sm100RN2at6TensorE"))
    assert f.status == "warn" and f.root_cause == "none_env_ok"


def test_flashinfer_confidence_rises_with_old_toolkit():
    text = "RuntimeError: Check failed: Could not construct fused moe op with the requested input combination"
    weak = outcome("BWD-LOG-006", snap_from(text))
    strong = outcome("BWD-LOG-006", snap_from(text, toolkit__nvcc={"version": "12.4", "path": "/usr/local/cuda"},
                                              torch={"version": "2.9.0+cu129", "cuda": "12.9", "variant": "cu129"}))
    assert weak.confidence < 0.6 <= strong.confidence


def test_ptxas_triton():
    f = outcome("BWD-LOG-007", snap_from("ptxas fatal : Value 'sm_121a' is not defined for option 'gpu-name'\n"
                                         "Repro command: /x/triton/backends/nvidia/bin/ptxas --gpu-name=sm_121a"))
    assert f.root_cause == "triton_ptxas_toolchain"


def test_fp8_on_ampere_vs_hopper():
    text = "ValueError: type fp8e4nv not supported in this architecture"
    amp = outcome("BWD-LOG-009", snap_from(text, gpu__0={"name": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0"}))
    hop = outcome("BWD-LOG-009", snap_from(text, gpu__0={"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}))
    assert amp.confidence > hop.confidence


def test_dtype_from_engine_config():
    s = snap_from("INFO 01-01 00:00:00 llm_engine.py:1] Initializing an LLM engine (v0.6.0) with config: model='m', "
                  "dtype=torch.bfloat16, device_config=cuda\n",
                  gpu__0={"name": "Tesla T4", "compute_capability": "7.5"})
    f = outcome("BWD-LOG-011", s)
    assert f.status == "fail" and f.root_cause == "dtype_unsupported_on_gpu"


def test_kv_cache_vs_contention():
    kv = outcome("BWD-LOG-012", snap_from("ValueError: No available memory for the cache blocks."))
    assert kv.root_cause == "kv_cache_oom"
    text = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. Process 4242 has 30.10 GiB "
            "memory in use. Of the allocated memory ...")
    assert outcome("BWD-LOG-012", snap_from(text)).status == "skip"
    assert outcome("BWD-ENV-008", snap_from(text)).root_cause == "gpu_memory_contention"


def test_plain_crash_blames_nothing():
    s = snap_from('Traceback (most recent call last):\n  File "/x/vllm/v1/engine/core.py", line 1, in run\n'
                  "KeyError: 'logprobs'\n")
    f = outcome("BWD-LOG-014", s)
    assert f.status == "warn" and f.root_cause == "none_env_ok"
    for cid in SPECS:
        for finding in runner.run_check(SPECS[cid], s):
            assert finding.status not in ("fail",) or finding.root_cause == "none_env_ok", finding


def test_wsl_class():
    s = snap_from("Linux 5.15.153.1-microsoft-standard-WSL2\nRuntimeError: CUDA driver error: device not ready")
    assert outcome("BWD-ENV-001", s).root_cause == "wsl2"
    assert outcome("BWD-ENV-001", snap_from("running under WSL2, all fine")).status == "pass"


def test_mig_with_failure():
    s = snap_from("CUDA_VISIBLE_DEVICES=MIG-5c3f2a1b-aaaa-bbbb-cccc-000011112222\nValueError: invalid literal for int()")
    f = outcome("BWD-ENV-002", s)
    assert f.status == "fail" and f.root_cause == "mig"


def test_nccl_version_against_runtime():
    s = snap_from("NCCL INFO NCCL version 2.25.1+cuda12.8\nNCCL WARN Cuda failure 1 'invalid argument'",
                  log__cuda_runtime="13.0")
    f = outcome("BWD-ENV-003", s)
    assert f.status == "fail" and f.root_cause == "nccl_version_mismatch"
    ok = snap_from("NCCL INFO NCCL version 2.27.3+cuda12.9", log__cuda_runtime="12.9")
    assert outcome("BWD-ENV-003", ok).status == "pass"


def test_nccl_hang_on_pcie_only_topology():
    topo = {"links": {"GPU0": {"GPU1": "PHB"}, "GPU1": {"GPU0": "PHB"}}, "kinds": ["PHB"], "nvlink": False,
            "pcie_only": True}
    s = snap_from("the first all_reduce hangs forever after NCCL init", host__gpu_topology=topo, gpu__count=2)
    f = outcome("BWD-ENV-004", s)
    assert f.status == "fail" and f.root_cause == "nccl_p2p" and f.confidence >= 0.7


def test_shm_from_ray_warning_with_tp():
    s = snap_from("WARNING: /dev/shm has only 67108864 bytes available. This will harm performance!\n"
                  "INFO x llm_engine.py:1] Initializing an LLM engine (v0.4.0) with config: model='m', "
                  "tensor_parallel_size=2, device_config=cuda\n")
    f = outcome("BWD-ENV-006", s)
    assert f.status == "fail" and f.root_cause == "shm_too_small"


def test_container_runtime_but_not_for_nvml_mismatch():
    f = outcome("BWD-ENV-007", snap_from("could not select device driver \"\" with capabilities: [[gpu]]"))
    assert f.root_cause == "container_runtime"
    s = snap_from("nvidia-container-cli: initialization error: nvml error: driver/library version mismatch")
    assert outcome("BWD-ENV-007", s).status == "skip"


def test_gpu_health_xid():
    f = outcome("BWD-ENV-009", snap_from("NVRM: Xid (PCI:0000:41:00): 48, pid=9, DBE (double bit error) ECC error"))
    assert f.root_cause == "gpu_health"


def test_errors_from_several_files_are_combined():
    snap = Snapshot()
    for text, name in (("RuntimeError: The NVIDIA driver on your system is too old (found version 12040).", "a.log"),
                       ("nothing wrong here", "b.log")):
        for f in parse_log.scan_lines(text.splitlines(), name):
            snap.add(f)
    assert outcome("BWD-LOG-003", snap).status == "fail"


def test_no_kernel_image_where_gpu_torch_and_vllm_cover_the_arch_is_not_blamed_on_the_environment():
    from logsig_util import outcome, snap_from

    text = "RuntimeError: CUDA error: no kernel image is available for execution on the device\n"
    snap = snap_from(text, torch={"version": "2.7.0+cu128", "variant": "cu128", "cuda": "12.8"},
                     vllm={"version": "0.9.0"}, gpu__0={"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"})
    out = outcome("BWD-LOG-002", snap)
    assert out.status == "warn" and out.root_cause == "none_env_ok" and "not the environment" in out.message
    # the same text on a GPU that vLLM 0.9.0 has no kernels for still blames the wheel
    snap = snap_from(text, torch={"version": "2.7.0+cu128", "variant": "cu128", "cuda": "12.8"},
                     vllm={"version": "0.9.0"}, gpu__0={"name": "NVIDIA GeForce RTX 5090", "compute_capability": "12.0"})
    assert outcome("BWD-LOG-002", snap).root_cause == "arch_not_in_vllm_wheel"


def test_nvcc_reported_missing_while_nvcc_runs_is_a_discovery_bug():
    from logsig_util import outcome, snap_from

    text = ("RuntimeError: Could not find nvcc\n$ nvcc --version\n"
            "Cuda compilation tools, release 12.9, V12.9.41\n")
    out = outcome("BWD-LOG-006", snap_from(text))
    assert out.status == "warn" and out.root_cause == "none_env_ok"
    out = outcome("BWD-LOG-006", snap_from("RuntimeError: Could not find nvcc\n"))
    assert out.status == "fail" and out.root_cause == "flashinfer_jit_toolchain"


def test_fp8_refusal_on_a_gpu_with_fp8_is_a_kernel_bug_not_the_environment():
    from logsig_util import outcome, snap_from

    text = "triton.CompilationError: type fp8e4nv not supported in this architecture\n"
    out = outcome("BWD-LOG-009", snap_from(text, gpu__0={"name": "NVIDIA L40S", "compute_capability": "8.9"}))
    assert out.status == "warn" and out.root_cause == "none_env_ok" and "FP8 tensor cores" in out.message
    out = outcome("BWD-LOG-009", snap_from(text, gpu__0={"name": "NVIDIA A10", "compute_capability": "8.6"}))
    assert out.status == "fail" and out.root_cause == "fp8_unsupported_on_gpu"


def test_jit_arch_list_empty_while_nvcc_supports_the_gpu_is_a_library_bug():
    from logsig_util import outcome, snap_from

    text = "RuntimeError: No supported CUDA architectures found for major versions [9].\n"
    gpu = {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    out = outcome("BWD-LOG-006", snap_from(text, gpu__0=gpu, toolkit__nvcc={"version": "12.8"}))
    assert out.status == "warn" and out.root_cause == "none_env_ok"
    out = outcome("BWD-LOG-006", snap_from(text, gpu__0={"name": "NVIDIA GeForce RTX 5090", "compute_capability": "12.0"},
                                           toolkit__nvcc={"version": "12.8"}))
    assert out.status == "fail" and out.root_cause == "flashinfer_jit_toolchain"
