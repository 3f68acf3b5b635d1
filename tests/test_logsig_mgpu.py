"""Multi-GPU facts and signatures (NCCL_DEBUG=INFO lines, stalls with no error, IOMMU faults, NCCL variables,
shared memory) and the other wording classes added with them. Log texts written for these tests."""

from __future__ import annotations

from logsig_util import outcome, snap_from

ENGINE = ("INFO 06-01 08:00:00 [core.py:70] Initializing a V1 LLM engine (v0.11.0) with config: model='m', "
          "dtype=torch.bfloat16, tensor_parallel_size=2, pipeline_parallel_size=1, device_config=cuda\n")
NCCL_INIT = """\
(VllmWorker rank=0 pid=11) node1:11:11 [0] NCCL INFO NCCL_SOCKET_IFNAME set by environment to eth9
(VllmWorker rank=0 pid=11) node1:11:11 [0] NCCL INFO cudaDriverVersion 12080
(VllmWorker rank=0 pid=11) node1:11:11 [0] NCCL INFO NCCL version 2.21.5+cuda12.4
(VllmWorker rank=0 pid=11) node1:11:40 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/IPC
(VllmWorker rank=1 pid=12) node1:12:41 [1] NCCL INFO Channel 00/0 : 1[1] -> 0[0] via P2P/IPC
(VllmWorker rank=0 pid=11) node1:11:40 [0] NCCL INFO Connected all rings
"""


def test_nccl_info_lines_become_facts():
    nccl = snap_from(ENGINE + NCCL_INIT).mapping("log.nccl")
    assert nccl["env"] == {"NCCL_SOCKET_IFNAME": "eth9"}
    assert nccl["transports"] == ["P2P/IPC"] and nccl["driver_cuda"] == "12.8" and nccl["version"] == "2.21.5"


def test_start_up_that_stops_in_nccl_set_up_with_no_error_is_a_p2p_stall():
    out = outcome("BWD-ENV-004", snap_from(ENGINE + NCCL_INIT))
    assert out.status == "fail" and out.root_cause == "nccl_p2p" and "P2P/IPC" in out.message
    ready = ENGINE + NCCL_INIT + "INFO 06-01 08:02:00 [launcher.py:30] Application startup complete.\n"
    assert outcome("BWD-ENV-004", snap_from(ready)).status == "skip"
    # one GPU: no collective to stall
    one = ENGINE.replace("tensor_parallel_size=2", "tensor_parallel_size=1") + "".join(
        ln + "\n" for ln in NCCL_INIT.splitlines() if "Channel" not in ln)
    assert outcome("BWD-ENV-004", snap_from(one)).status == "skip"


def test_iommu_fault_and_ipc_failure_are_p2p():
    out = outcome("BWD-ENV-004", snap_from("kernel: AMD-Vi: Event logged [IO_PAGE_FAULT domain=0x0021 "
                                           "address=0xfb000000 flags=0x0020]\n"))
    assert out.root_cause == "nccl_p2p"


def test_nccl_failure_with_variables_nccl_reports_reading_blames_them():
    text = NCCL_INIT + "torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled " \
                       "system error (run with NCCL_DEBUG=INFO for details)\n"
    out = outcome("BWD-ENV-005", snap_from(text))
    assert out.root_cause == "nccl_env_misconfig" and "NCCL_SOCKET_IFNAME=eth9" in out.message


def test_torch_shared_memory_file_without_space_is_shm():
    out = outcome("BWD-ENV-006", snap_from("RuntimeError: unable to write to file </torch_88_1297_3>: No space left "
                                           "on device (28)\n"))
    assert out.root_cause == "shm_too_small"


def test_decode_far_below_any_gpu_with_no_error_points_at_gpu_health():
    line = ("INFO 06-01 09:00:{s:02d} [metrics.py:400] Avg prompt throughput: 0.0 tokens/s, Avg generation "
            "throughput: {t} tokens/s, Running: 1 reqs, Swapped: 0 reqs, Pending: 0 reqs\n")
    slow = "".join(line.format(s=i, t=0.7) for i in range(4))
    out = outcome("BWD-ENV-009", snap_from(slow))
    assert out.status == "warn" and out.root_cause == "gpu_health" and "Reset" in out.message
    fast = "".join(line.format(s=i, t=41.5) for i in range(4))
    assert outcome("BWD-ENV-009", snap_from(fast)).status in ("pass", "skip")


def test_attention_kernels_missing_for_the_arch():
    out = outcome("BWD-LOG-008", snap_from("RuntimeError: Error in function 'GenFmhaRunner' at fmha/runner.cuh:37: "
                                           "Unsupported architecture\n"))
    assert out.root_cause == "attention_backend_unsupported"


def test_several_mig_slices_in_one_process():
    text = "GPU 0: NVIDIA A100-SXM4-80GB MIG 3g.40gb\nRuntimeError: device >= 0 && device < num_gpus INTERNAL " \
           "ASSERT FAILED\n"
    assert outcome("BWD-ENV-002", snap_from(text)).root_cause == "mig"


def test_wsl_vmm_failure_by_driver_api_name():
    text = "Running under WSL2\ncuMemSetAccess returned CUDA_ERROR_UNKNOWN in ExpandableSegment::map\n"
    assert outcome("BWD-ENV-001", snap_from(text)).root_cause == "wsl2"


def test_stall_counts_gpus_from_nccl_ranks_when_no_engine_config_is_pasted():
    text = ("box:1:2 [0] NCCL INFO comm 0x1 rank 0 nranks 2 cudaDev 0 busId 1000 - Init COMPLETE\n"
            "box:2:3 [1] NCCL INFO Channel 00 : 1[1] -> 0[0] via SHM/direct/direct\n"
            "INFO 02-02 10:00:00 executor.py:50] # GPU blocks: 9000, # CPU blocks: 2000\n"
            "Processed prompts:   0%|          | 0/8 [00:00<?, ?it/s]\n")
    out = outcome("BWD-ENV-004", snap_from(text))
    assert out.status == "fail" and out.root_cause == "nccl_p2p" and "SHM" in out.message


def test_nccl_saying_its_build_is_too_old_is_a_version_mismatch():
    text = ("NCCL version 2.18.1+cuda11.0\nNCCL WARN NCCL cannot be captured in a graph if either it wasn't built "
            "with CUDA runtime >= 11.3 or if the installed CUDA driver < R465.\n")
    out = outcome("BWD-ENV-003", snap_from(text))
    assert out.status == "fail" and out.root_cause == "nccl_version_mismatch" and "2.18.1" in out.message


def test_nccl_system_error_with_several_gpus_in_a_container_is_shm_unless_nccl_variables_are_set():
    text = ("We start it with docker compose, --tensor-parallel-size 4\n"
            "RuntimeError: NCCLerror: unhandled system error (run with NCCL_DEBUG=INFO for details)\n")
    out = outcome("BWD-ENV-006", snap_from(text))
    assert out.status == "fail" and out.root_cause == "shm_too_small"
    tuned = "NCCL INFO NCCL_BUFFSIZE set by environment to 1073741824\n" + text
    assert outcome("BWD-ENV-006", snap_from(tuned)).status == "skip"
    assert outcome("BWD-ENV-005", snap_from(tuned)).root_cause == "nccl_env_misconfig"
    one = text.replace("--tensor-parallel-size 4", "--tensor-parallel-size 1")
    assert outcome("BWD-ENV-006", snap_from(one)).status == "skip"


def test_mig_uuid_given_as_a_device_index():
    text = "ValueError: invalid literal for int() with base 10: 'MIG-9f8e7d6c-aaaa-bbbb-cccc-ddddeeeeffff'\n"
    out = outcome("BWD-ENV-002", snap_from(text))
    assert out.root_cause == "mig" and out.confidence >= 0.8


def test_env_fix_plan_names_the_variables_nccl_reported():
    from bwdoctor_remedies import runtime

    text = NCCL_INIT + "RuntimeError: NCCL error: unhandled system error\n"
    snap = snap_from(text)
    out = outcome("BWD-ENV-005", snap)
    plan = runtime.nccl_env_fix(out, snap)
    assert plan.steps[0].argv == ["unset", "NCCL_SOCKET_IFNAME"] and "eth9" in plan.steps[0].description
