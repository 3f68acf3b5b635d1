"""vLLM log parser: engine config, KV cache, backends, FP8 lines, failure signatures, streaming in
bounded memory, no exception on any input."""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bwdoctor.types import Evidence
from bwdoctor_checks.parsers import log as parse_log

DATA = Path(__file__).parent / "data" / "evidence"


def ev_of(path: Path) -> Evidence:
    with open(path, "rb") as fh:
        head = fh.read(1 << 20)
    return Evidence(path=str(path), name=path.name, head=head.decode("utf-8", "replace"), size=path.stat().st_size)


def parsed(path: Path) -> dict:
    ev = ev_of(path)
    assert parse_log.detect(ev)
    return {f.key: (f.value, f.source) for f in parse_log.parse(ev)}


def sigs(text: str) -> list[dict]:
    out = {f.key: f.value for f in parse_log.parse_text(text)}
    return out.get("log.errors", [])


def names(text: str) -> set[str]:
    return {e["signature"] for e in sigs(text)}


def test_real_cpu_run_log():
    f = parsed(DATA / "vllm-cpu-0.32-tiny-llama.log")
    cfg, src = f["vllm.config"]
    assert cfg["version"] == "0.32.0"
    assert cfg["dtype"] == "bfloat16"
    assert cfg["quantization"] is None
    assert cfg["kv_cache_dtype"] == "auto"
    assert cfg["device"] == "cpu"
    assert cfg["max_model_len"] == 256
    assert cfg["tensor_parallel_size"] == 1 and cfg["pipeline_parallel_size"] == 1
    assert cfg["enforce_eager"] is True
    assert cfg["model"] == "/data/model"
    assert src.startswith("vllm-log:line ")
    assert f["vllm"][0] == {"version": "0.32.0"}
    kv = f["log.kv_cache"][0]
    assert kv["tokens"] == 1_048_576 and kv["device"] == "CPU" and kv["max_concurrency"] == 4096.0
    assert kv["gib"] == 1.0
    assert f["log.non_default_args"][0]["max_model_len"] == 256
    assert f["log.startup"][0] == {"seconds": 0.79}
    assert "log.errors" not in f  # a healthy run
    assert f["log.errors_by_file"][0] == {str(DATA / "vllm-cpu-0.32-tiny-llama.log"): []}


def test_v0_gpu_log_lines():
    f = parsed(DATA / "engine-gpu-v0.log")
    cfg = f["vllm.config"][0]
    assert cfg["version"] == "0.6.3.post1" and cfg["quantization"] == "fp8" and cfg["kv_cache_dtype"] == "fp8"
    assert cfg["tensor_parallel_size"] == 2 and cfg["dtype"] == "float16" and cfg["device"] == "cuda"
    assert f["log.attention_backend"][0]["name"] == "FLASH_ATTN"
    assert f["log.fp8"][0][0]["kind"] == "marlin_fallback"
    kv = f["log.kv_cache"][0]
    assert kv["gpu_blocks"] == 12001 and kv["max_concurrency"] == 23.44
    assert f["log.cuda_graphs"][0] == {"seconds": 15.0, "gib": 0.55}
    assert f["log.model_load"][0]["gib"] == 8.4632
    assert f["nccl.version"][0] == "2.20.5"


def test_new_backend_and_kv_lines():
    text = ("(EngineCore_DP0 pid=7) INFO 01-02 03:04:05 [cuda.py:509] Using FLASHINFER attention backend out of "
            "potential backends: ['FLASHINFER', 'TRITON_ATTN'].\n"
            "(EngineCore_DP0 pid=7) INFO 01-02 03:04:09 [kv_cache_utils.py:1148] GPU KV cache size: 1,234,560 tokens, "
            "Maximum concurrency for 32,768 tokens per request: 37.68x\n"
            "(EngineCore_DP0 pid=7) INFO 01-02 03:04:06 [__init__.py:779] Selected CutlassFP8ScaledMMLinearKernel for "
            "Fp8LinearMethod\n")
    f = {x.key: x.value for x in parse_log.parse_text(text)}
    assert f["log.attention_backend"]["name"] == "FLASHINFER"
    assert f["log.attention_backend"]["candidates"] == ["FLASHINFER", "TRITON_ATTN"]
    assert f["log.kv_cache"]["tokens"] == 1_234_560 and f["log.kv_cache"]["max_concurrency"] == 37.68
    assert f["log.fp8"][0] == {"kind": "linear_kernel", "kernel": "CutlassFP8ScaledMMLinearKernel",
                               "method": "Fp8LinearMethod", "line": 3}


def test_torch_arch_warning_gives_gpu_and_arch_list():
    f = parsed(DATA / "crash-torch-arch.log")
    gpu = f["gpu.0"][0]
    assert gpu["name"] == "NVIDIA GeForce RTX 5090" and gpu["compute_capability"] == "12.0"
    assert f["torch"][0]["arch_list"][-1] == "sm_90"
    errs = {e["signature"]: e for e in f["log.errors"][0]}
    assert errs["torch_arch_unsupported"]["env_class"] == "arch_not_in_torch_wheel"
    assert errs["no_kernel_image"]["context"][-1] == "vllm"
    assert f["vllm"][0]["version"] == "0.8.5"


@pytest.mark.parametrize("text, expected", [
    ("RuntimeError: The NVIDIA driver on your system is too old (found version 12040).", "torch_driver_too_old"),
    ("nvidia-container-cli: requirement error: unsatisfied condition: cuda>=12.9, please update your driver",
     "container_cuda_requirement"),
    ("RuntimeError: Unexpected error from cudaGetDeviceCount(). Error 804: forward compatibility was attempted on "
     "non supported HW", "cuda_forward_compat"),
    ("Failed to initialize NVML: Driver/library version mismatch", "nvml_driver_mismatch"),
    ("cudaGetDeviceCount ... Error 802: system not yet initialized", "cuda_system_not_ready"),
    ('docker: Error response from daemon: could not select device driver "" with capabilities: [[gpu]].',
     "container_no_gpu_driver"),
    ("ImportError: libcudart.so.13: cannot open shared object file: No such file or directory", "cuda_library_missing"),
    ("ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`",
     "kv_no_memory"),
    ("ptxas fatal   : Value 'sm_120a' is not defined for option 'gpu-name'", "ptxas_unknown_arch"),
    ("ptxas /tmp/x.ptx, line 5; fatal : PTX .version 8.4 does not support .target sm_120a", "ptx_version_target"),
    ("RuntimeError: No supported CUDA architectures found for major versions [12].", "flashinfer_no_arch"),
    ("/bin/sh: 1: nvcc: not found", "nvcc_missing"),
    ("triton.compiler.errors.CompilationError: type fp8e4nv not supported in this architecture", "fp8_type_unsupported"),
    ("ValueError: Bfloat16 is only supported on GPUs with compute capability of at least 8.0. Your Tesla T4 GPU has "
     "compute capability 7.5.", "bf16_unsupported"),
    ("misc.cc:50 NCCL WARN Error : ncclShmOpen failed: No space left on device", "shm_error"),
    ("[rank0]: Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1, OpType=ALLREDUCE)", "collective_hang"),
    ("NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, GPU has fallen off the bus.", "xid"),
    ("ValueError: Free memory on device (10.1/79.2 GiB) on startup is less than desired GPU memory utilization "
     "(0.9, 71.3 GiB).", "insufficient_free_memory"),
    ("RuntimeError: CUDA driver error: device not ready", "device_not_ready"),
    ("ValueError: XFormers does not support attention logits soft capping.", "attention_softcap"),
])
def test_signatures(text, expected):
    assert expected in names(text)


def test_wrapped_driver_message_and_fact():
    f = {x.key: x.value for x in parse_log.parse_text(
        "ERROR [core.py:1] RuntimeError: The NVIDIA driver on your system is too old\n(found version 12080). "
        "Please update your GPU driver\n")}
    assert f["driver.cuda_version"] == "12.8"
    assert f["log.errors"][0]["signature"] == "torch_driver_too_old"


def test_undefined_symbol_owner():
    torch_sym = sigs("ImportError: /x/vllm/_C.abi3.so: undefined symbol: _ZN3c104cuda9SetDeviceEi")[0]
    own_sym = sigs("ImportError: /x/vllm/_C.abi3.so: undefined symbol: _Z17my_kernel_sm100RN2at6TensorE")[0]
    assert torch_sym["owner"] == "torch" and torch_sym["library"] == "_C.abi3.so"
    assert own_sym["owner"] == "own"


def test_xid_classes():
    assert sigs("NVRM: Xid (PCI:0000:3b:00): 79, pid=1, GPU has fallen off the bus.")[0]["env_class"] == "gpu_health"
    app_fault = [e for e in sigs("NVRM: Xid (PCI:0000:3b:00): 13, pid=1, Graphics Exception") if e["signature"] == "xid"]
    assert app_fault and app_fault[0]["env_class"] is None


def test_markers_and_facts():
    f = {x.key: x.value for x in parse_log.parse_text(
        "Linux box 5.15.167.4-microsoft-standard-WSL2 #1 SMP\n"
        "WARNING: The object store is using /tmp instead of /dev/shm because /dev/shm has only 67108864 bytes "
        "available.\nCUDA_VISIBLE_DEVICES=MIG-1a2b3c4d-1111-2222-3333-444455556666\n"
        "NCCL INFO NCCL version 2.21.5+cuda12.4\n")}
    assert f["host.wsl"] is True
    assert f["host.shm_bytes"] == 67108864
    assert f["log.mig"]
    assert f["log.nccl"] == {"version": "2.21.5", "cuda": "12.4", "last_info_line": 4}


def test_plain_exception_has_no_env_class():
    errs = sigs("Traceback (most recent call last):\n  File \"/x/vllm/entrypoints/llm.py\", line 3, in f\n"
                "KeyError: 'response_format'\n")
    assert [e["env_class"] for e in errs] == [None]


def test_config_files_are_not_logs(tmp_path):
    p = tmp_path / "Dockerfile"
    p.write_text("FROM vllm/vllm-openai:v0.9.0\nRUN echo driver\n")
    assert not parse_log.detect(ev_of(p))


def _write_big_log(path: Path, megabytes: int) -> int:
    chunk = ("(EngineCore pid=1) INFO 01-01 00:00:00 [core.py:1] step done, throughput 123.4 tokens/s, "
             "nothing to see here\n" * 2000).encode()
    n = 0
    with open(path, "wb") as fh:
        fh.write(b"INFO 01-01 00:00:00 [core.py:140] Initializing a V1 LLM engine (v0.10.1) with config: model='m', "
                 b"dtype=torch.bfloat16, quantization=None, device_config=cuda\n")
        while n < megabytes << 20:
            fh.write(chunk)
            n += len(chunk)
        fh.write(b"RuntimeError: CUDA error: no kernel image is available for execution on the device\n")
    return n


def test_streams_in_bounded_memory(tmp_path):
    p = tmp_path / "big.log"
    _write_big_log(p, 6)
    tracemalloc.start()
    out = {f.key: f.value for f in parse_log.parse(ev_of(p))}
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert "no_kernel_image" in {e["signature"] for e in out["log.errors"]}
    assert out["vllm.config"]["version"] == "0.10.1"
    assert peak < 8 << 20, f"peak {peak >> 20} MiB for a 6 MiB log"


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("BWDOCTOR_SLOW"), reason="set BWDOCTOR_SLOW=1 to scan a 300 MB log")
def test_large_log_bounded(tmp_path):
    import resource

    p = tmp_path / "huge.log"
    _write_big_log(p, 300)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    out = {f.key: f.value for f in parse_log.parse(ev_of(p))}
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert "no_kernel_image" in {e["signature"] for e in out["log.errors"]}
    assert grown_kib < 64 << 10, f"peak RSS grew {grown_kib >> 10} MiB for a 300 MiB log"
    print(f"300 MiB scanned in {time.perf_counter() - t0:.1f} s, peak RSS growth {grown_kib} KiB")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(
    st.binary(max_size=4000),
    st.lists(st.sampled_from([
        "Initializing a V1 LLM engine (v", "with config: model='", "dtype=", "a=(b", "c='d, e", "}", "]",
        "no kernel image is available", "capability sm_", " is not compatible", "with the current PyTorch installation",
        "supports CUDA capabilities sm_", "found version ", "undefined symbol: ", "_ZN3c10", "Xid ", "NCCL version 2.",
        "/dev/shm has only ", "KV cache size: ", "# GPU blocks: ", "Maximum concurrency for ", "tokens per request: x",
        "non-default args: {", "'a': [1,", "No compiled ", "capability: ", "\x1b[31m", "\xff", "", "  File \"", "\t",
    ]), max_size=60).map(lambda parts: "".join(p + ("\n" if i % 3 == 0 else "") for i, p in enumerate(parts))),
))
def test_parser_never_raises(tmp_path, data):
    p = tmp_path / "fuzz.log"
    p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
    ev = ev_of(p)
    parse_log.detect(ev)
    facts = parse_log.parse(ev)
    assert any(f.key == "log.errors_by_file" for f in facts)
