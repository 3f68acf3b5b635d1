"""Classification of CUDA / engine failure texts into root causes (shared by the probes and the smoke generation)."""

from __future__ import annotations

import re

_KINDS: list[tuple[str, re.Pattern[str]]] = [
    ("no_kernel_image", re.compile(r"no kernel image is available|cudaErrorNoKernelImageForDevice|"
                                   r"is not compatible with the current PyTorch installation", re.I)),
    ("forward_compat", re.compile(r"forward compatibility was attempted on non supported HW|Error 804", re.I)),
    ("driver_mismatch", re.compile(r"unsupported display driver / cuda driver combination|Error 803|"
                                   r"Driver/library version mismatch", re.I)),
    ("driver_too_old", re.compile(r"driver version is insufficient|driver on your system is too old|"
                                  r"cudaErrorInsufficientDriver|Error 35\b", re.I)),
    ("unsupported_ptx", re.compile(r"PTX was compiled with an unsupported toolchain|cudaErrorUnsupportedPtxVersion",
                                   re.I)),
    ("fabric_manager", re.compile(r"system not yet initialized|Error 802", re.I)),
    ("device_busy", re.compile(r"busy or unavailable", re.I)),
    ("out_of_memory", re.compile(r"out of memory|OutOfMemoryError", re.I)),
    ("gpu_fault", re.compile(r"illegal memory access|uncorrectable ECC|unspecified launch failure|"
                             r"fallen off the bus|illegal instruction", re.I)),
    ("no_driver", re.compile(r"Found no NVIDIA driver|NVIDIA driver .*not .*found|libcuda\.so.*(?:cannot|not found)",
                             re.I)),
    ("no_device", re.compile(r"no CUDA-capable device is detected|invalid device ordinal|No CUDA GPUs are available",
                             re.I)),
]


# kind -> (root cause, remedy ids, what it means)
KIND_CAUSES: dict[str, tuple[str | None, list[str], str]] = {
    "no_kernel_image": ("arch_not_in_torch_wheel", ["torch.reinstall-cuda-variant"],
                        "the installed torch has no machine code (SASS) or PTX for this GPU's architecture"),
    "forward_compat": ("driver_too_old_for_cuda", ["driver.remove-compat", "driver.upgrade"],
                       "CUDA forward-compatibility libraries were loaded on a GPU that does not support them"),
    "driver_mismatch": ("driver_library_mismatch", ["driver.reload"],
                        "the user-space driver libraries and the loaded kernel module disagree"),
    "driver_too_old": ("driver_too_old_for_cuda", ["driver.upgrade", "torch.reinstall-cuda-variant"],
                       "the NVIDIA driver is older than the CUDA runtime this torch was built with"),
    "unsupported_ptx": ("driver_too_old_for_cuda", ["driver.upgrade"],
                        "the PTX in the wheel is newer than the driver's JIT compiler"),
    "fabric_manager": ("fabric_manager_missing", ["fabric-manager.install"],
                       "an NVSwitch system whose Fabric Manager is not running"),
    "device_busy": ("gpu_health", ["gpu.advisory"],
                    "the GPU is in exclusive compute mode and taken, or in a bad state"),
    "out_of_memory": ("gpu_memory_contention", ["gpu.free-memory"], "other processes hold the GPU's memory"),
    "gpu_fault": ("gpu_health", ["gpu.advisory"], "the GPU faulted (XID error, ECC, bus)"),
    "no_driver": ("container_runtime", ["container.toolkit"], "torch finds no NVIDIA driver"),
    "no_device": ("container_runtime", ["container.toolkit"], "torch sees no CUDA device"),
    "other": (None, [], "an unrecognised CUDA error"),
}


def classify_cuda_error(text: str | None) -> str:
    """The kind of a CUDA/torch error text: no_kernel_image, driver_too_old, ... or ``other``."""
    if not text:
        return "other"
    for kind, rx in _KINDS:
        if rx.search(text):
            return kind
    return "other"


# Error texts → (root cause, remedies). Order matters: the first match wins.
_CLASSIFY = [
    (re.compile(r"no kernel image is available|is not compatible with the current PyTorch installation"),
     "arch_not_in_torch_wheel", ["torch.reinstall-cuda-variant"]),
    (re.compile(r"driver version is insufficient|driver on your system is too old|found version \d{4,5}"),
     "driver_too_old_for_cuda", ["driver.upgrade"]),
    (re.compile(r"Driver/library version mismatch|unsupported display driver / cuda driver combination"),
     "driver_library_mismatch", ["driver.reload"]),
    (re.compile(r"undefined symbol|vllm\._C|libcudart\.so\.\d+: cannot open"), "torch_vllm_abi_mismatch",
     ["vllm.install-supported"]),
    (re.compile(r"fp8e4nv not supported|FP8 .*not supported|does not support fp8", re.I), "fp8_unsupported_on_gpu",
     ["vllm.fp8-fallback"]),
    (re.compile(r"Bfloat16 is only supported on GPUs with compute capability of at least 8\.0", re.I),
     "dtype_unsupported_on_gpu", []),
    (re.compile(r"No available memory for the cache blocks|larger than the maximum number of tokens that can be "
                r"stored in KV cache|KV cache is needed, which is larger than"), "kv_cache_oom",
     ["vllm.memory-settings"]),
    (re.compile(r"Free memory on device .* is less than desired GPU memory utilization|CUDA out of memory|"
                r"OutOfMemoryError"), "gpu_memory_contention", ["gpu.free-memory", "vllm.memory-settings"]),
    (re.compile(r"ptxas|PTX \.version .* does not support|not defined for option 'gpu-name'"), "triton_ptxas_toolchain",
     ["triton.ptxas"]),
    (re.compile(r"Unsupported .*attention|attention backend .*not (?:valid|supported)", re.I),
     "attention_backend_unsupported", ["vllm.attention-backend"]),
]


def classify_failure(text: str) -> tuple[str | None, list[str]]:
    """A root-cause label and remedy ids suggested by a failure's error text (None when unclear)."""
    for rx, cause, remedies in _CLASSIFY:
        if rx.search(text):
            return cause, list(remedies)
    return None, []
