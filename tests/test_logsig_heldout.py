"""Layout and wording variants of environment failures: each test feeds invented text in a form a
reporter might paste and checks the class the log-signature checks name."""

from __future__ import annotations

from bwdoctor_checks._lib.textutil import family_cc, gpu_entry

from logsig_util import outcome, snap_from


def sigs(text: str) -> set[str]:
    snap = snap_from(text)
    return {e["signature"] for e in snap.value("log.errors") or []}


def test_gpu_family_gives_compute_capability_for_names_outside_the_knowledge_base():
    assert family_cc("Tesla P100-SXM2-16GB") == "6.0"
    assert family_cc("NVIDIA GeForce GTX 1070") == "6.1"
    assert family_cc("NVIDIA H800 PCIe") == "9.0"
    assert family_cc("NVIDIA A800 80GB PCIe") == "8.0"
    assert family_cc("NVIDIA RTX A5000") == "8.6"
    assert family_cc("NVIDIA GeForce RTX 3080 Ti") == "8.6"
    assert family_cc("Quadro RTX 5000") == "7.5"
    assert family_cc("NVIDIA RTX 5000 Ada Generation") == "8.9"
    assert family_cc("NVIDIA GeForce RTX 5070") == "12.0"
    assert family_cc("some accelerator") is None and family_cc("") is None and family_cc(None) is None
    e = gpu_entry("NVIDIA GeForce GTX 1060 6GB", "test")
    assert e["compute_capability"] == "6.1" and "kb_key" not in e and "family" in e["cc_source"].lower()


def test_pre_volta_gpu_is_outside_every_vllm_build_even_without_an_error():
    s = snap_from("starting the server\n", gpu__0={"name": "Tesla P4", "compute_capability": "6.1"},
                  vllm={"version": "0.8.5"})
    f = outcome("BWD-LOG-002", s)
    assert f.status == "fail" and f.root_cause == "arch_not_in_vllm_wheel" and f.confidence >= 0.7
    ok = snap_from("starting the server\n", gpu__0={"name": "NVIDIA L4", "compute_capability": "8.9"})
    assert outcome("BWD-LOG-002", ok).status in ("pass", "skip")


def test_rm_version_mismatch_wording_is_a_driver_library_mismatch():
    s = snap_from("nvidia-smi\nNVML: RM has detected an NVML/RM version mismatch.\n")
    assert outcome("BWD-LOG-004", s).root_cause == "driver_library_mismatch"


def test_cut_off_undefined_symbol_in_a_c_extension_points_at_the_torch_build():
    s = snap_from("Traceback (most recent call last):\n  File \"x.py\", line 3, in <module>\n"
                  "ImportError: /opt/env/site-packages/vllm/_moe_C.abi3.so: undefined symbol\n")
    f = outcome("BWD-LOG-005", s)
    assert f.status == "fail" and f.root_cause == "torch_vllm_abi_mismatch"


def test_nvcc_that_does_not_know_the_arch_is_a_jit_toolchain_problem():
    s = snap_from("[12/40] building decode kernels\nnvcc fatal   : Unsupported gpu architecture 'compute_100a'\n")
    f = outcome("BWD-LOG-006", s)
    assert f.status == "fail" and f.root_cause == "flashinfer_jit_toolchain" and f.confidence >= 0.75


def test_fp4_arch_refusals_in_several_wordings():
    assert "fp4_unsupported" in sigs("[Runner Error] GEMM dispatch: arch unsupported for CUTLASS FP4 GEMM")
    assert "fp4_unsupported" in sigs("ValueError: gemm_fp4 does not support backend 'xyz' with capability 121")
    s = snap_from("ValueError: gemm_fp4 does not support backend 'xyz' with capability 121\n",
                  gpu__0={"name": "NVIDIA GB10", "compute_capability": "12.1"})
    assert outcome("BWD-LOG-010", s).root_cause == "fp4_kernel_arch_mismatch"


def test_fp8_refusal_described_in_prose_and_by_scaled_mm():
    assert "fp8_type_unsupported" in sigs("the default fp8e4nv format is unsupported on Ampere cards, so it crashes")
    assert "fp8_type_unsupported" in sigs("RuntimeError: torch._scaled_mm is only supported on CUDA devices with "
                                          "compute capability >= 9.0 or 8.9")


def test_uva_unavailable_under_wsl_is_a_wsl2_limit():
    s = snap_from("Linux-5.15.153.1-microsoft-standard-WSL2-x86_64\nRuntimeError: UVA is not available\n")
    f = outcome("BWD-ENV-001", s)
    assert f.status == "fail" and f.root_cause == "wsl2"


def test_socket_interface_that_resolves_to_nothing_is_an_nccl_setting_problem():
    s = snap_from("node1:11:11 [0] NCCL INFO NCCL_SOCKET_IFNAME set by environment to ib7\n"
                  "node1:11:11 [0] ncclInternalError: Internal check failed.\n"
                  "ncclSocketInit: connecting to address with family 0 is neither AF_INET(2) nor AF_INET6(10)\n")
    assert outcome("BWD-ENV-005", s).root_cause == "nccl_env_misconfig"


def test_mig_partitions_in_prose_are_a_mig_marker():
    s = snap_from("I split the card into two MIG partitions and pass both to the server\n")
    assert outcome("BWD-ENV-002", s).root_cause == "mig"


def test_explicit_dtype_refusal_outranks_the_pre_volta_inference():
    s = snap_from("ValueError: Bfloat16 is only supported on GPUs with compute capability of at least 8.0. "
                  "Your Tesla P4 GPU has compute capability 6.1.\n",
                  gpu__0={"name": "Tesla P4", "compute_capability": "6.1"})
    arch = outcome("BWD-LOG-002", s)
    dtype = outcome("BWD-LOG-011", s)
    assert arch.status == "fail" and dtype.status == "fail" and dtype.confidence > arch.confidence


def test_engine_stall_on_pcie_only_gpus_is_a_p2p_hang():
    s = snap_from("(VllmWorkerProcess pid=12) WARNING 03-01 10:00:00 custom_all_reduce.py:130] Custom allreduce is "
                  "disabled because it's not supported on more than two PCIe-only GPUs.\n"
                  "DEBUG 03-01 10:05:00 client.py:170] Waiting for output from MQLLMEngine.\n")
    f = outcome("BWD-ENV-004", s)
    assert f.status == "fail" and f.root_cause == "nccl_p2p"
    # the same stall on one GPU is not a collective problem
    one = snap_from("DEBUG 03-01 10:05:00 client.py:170] Waiting for output from MQLLMEngine.\n")
    assert outcome("BWD-ENV-004", one).status == "skip"


def test_wsl_pinned_memory_notice_alone_is_a_soft_wsl2_finding():
    s = snap_from("WARNING 01-02 03:04:05 utils.py:90] Using 'pin_memory=False' as WSL is detected. This may slow "
                  "down the performance.\n")
    f = outcome("BWD-ENV-001", s)
    assert f.status == "warn" and f.root_cause == "wsl2" and f.confidence < 0.6
    crash = snap_from("WARNING 01-02 03:04:05 utils.py:90] Using 'pin_memory=False' as WSL is detected.\n"
                      "AttributeError: 'NoneType' object has no attribute 'shape'\n")
    assert outcome("BWD-ENV-001", crash).status == "pass"
