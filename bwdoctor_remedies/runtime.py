"""Remedies for runtime settings: NCCL peer-to-peer and environment, GPU persistence mode, MIG,
clocks/power/reset (advice only), memory held by other processes and vLLM's memory, attention
backend and FP8 settings.

Remedy ids: ``nccl.p2p-disable``, ``nccl.env-fix``, ``nccl.unshadow``, ``gpu.persistence-mode``,
``gpu.mig-guidance``, ``gpu.advisory``, ``gpu.free-memory``, ``vllm.memory-settings``,
``vllm.attention-backend``, ``vllm.fp8-fallback``.
Facts read: ``gpu.<i>``, ``host.env``, ``host.container``, ``vllm.config``, ``log.kv_cache``,
``target``.
"""

from __future__ import annotations

from bwdoctor import Finding, FixPlan, FixStep, RemedySpec, Snapshot, hookimpl, known

from . import _common as c

# Succeeds when every GPU reports persistence mode Enabled (a fixed script: no value inside).
_PM_ALL_ENABLED = ('out=$(nvidia-smi --query-gpu=persistence_mode --format=csv,noheader) && [ -n "$out" ] && '
                   '! printf "%s\\n" "$out" | grep -qv "Enabled"')


def nccl_p2p_disable(finding: Finding, snap: Snapshot) -> FixPlan | None:
    steps = [
        c.advice("Disable NCCL peer-to-peer transfers for the vLLM process (PCIe P2P is broken or unsupported here: "
                 "IOMMU/ACS, virtualisation or consumer boards); set it where vLLM is started (.env, compose "
                 "environment, systemd unit)", ["export", "NCCL_P2P_DISABLE=1"]),
        c.advice("Also start vLLM with --disable-custom-all-reduce (its custom all-reduce relies on P2P)."),
        c.advice("For full speed instead, fix P2P at the platform level: disable ACS / set the IOMMU to passthrough "
                 "(iommu=pt) in the BIOS or kernel command line, then verify with "
                 "`nvidia-smi topo -p2p r` (needs a reboot; never automatic)."),
    ]
    return c.plan("nccl.p2p-disable", "Work around broken GPU peer-to-peer", finding, steps)


def nccl_env_fix(finding: Finding, snap: Snapshot) -> FixPlan | None:
    env = c.host_env(snap)
    names = [str(n) for n in (c.details(finding).get("variables") or []) if isinstance(n, str)]
    if not names:
        names = sorted(n for n in env if str(n).startswith("NCCL_"))
    seen = c.details(finding).get("values") or {}
    steps = [c.advice(f"Unset {n} (currently {env.get(n, seen.get(n) if isinstance(seen, dict) else None)!s}) where "
                      "the vLLM process is started, "
                      "unless it is needed for this network", ["unset", n]) for n in names]
    if not steps:
        steps = [c.advice("Remove hand-set NCCL_* variables and let NCCL auto-detect; set NCCL_DEBUG=INFO to see "
                          "what it chooses.")]
    return c.plan("nccl.env-fix", "Remove harmful NCCL_* settings", finding, steps)


def nccl_unshadow(finding: Finding, snap: Snapshot) -> FixPlan | None:
    lib = c.details(finding)
    path = str(lib.get("path") or "the older libnccl")
    folder = path.rsplit("/", 1)[0] if "/" in path else path
    steps = [c.advice(f"Take {folder} out of {lib.get('origin') or 'LD_LIBRARY_PATH'} where vLLM is started (it holds "
                      f"NCCL {lib.get('version') or 'of an unknown version'}, older than the NCCL torch was installed "
                      "with), so that torch loads its own nvidia-nccl wheel"),
             c.advice("Or upgrade that system NCCL to the wheel's release; check with NCCL_DEBUG=INFO, whose first "
                      "line names the NCCL version in use")]
    return c.plan("nccl.unshadow", "Let torch load its own NCCL", finding, steps)


def persistence_mode(finding: Finding, snap: Snapshot) -> FixPlan | None:
    if c.container(snap):
        return c.plan("gpu.persistence-mode", "Enable persistence mode", finding, [
            c.advice("Enable persistence mode on the HOST (nvidia-smi -pm 1 or the nvidia-persistenced service)."),
        ])
    return c.plan("gpu.persistence-mode", "Enable GPU persistence mode", finding, [
        FixStep("Enable persistence mode on every GPU (keeps the driver initialised between processes; lost at reboot)",
                argv=["nvidia-smi", "-pm", "1"], check=["sh", "-c", _PM_ALL_ENABLED, "sh"], needs_root=True,
                undo="nvidia-smi -pm 0"),
        c.advice("To keep it across reboots enable the daemon instead: systemctl enable --now nvidia-persistenced",
                 ["systemctl", "enable", "--now", "nvidia-persistenced"]),
    ])


def mig_guidance(finding: Finding, snap: Snapshot) -> FixPlan | None:
    profiles = []
    for spec in c.gpu_specs(snap):
        profiles = list(c.attr(spec, "mig_profiles") or [])
        if profiles:
            break
    steps = [
        c.advice("Give each vLLM process exactly one MIG device: CUDA_VISIBLE_DEVICES=MIG-<uuid> (list them with "
                 "`nvidia-smi -L`); tensor parallelism across MIG slices is not supported."),
        c.advice("Size gpu_memory_utilization and max_model_len for the slice's memory, not the whole GPU's."),
        c.advice("To turn MIG off (needs an idle GPU, and a GPU reset; never automatic): nvidia-smi -i <gpu> -mig 0",
                 ["nvidia-smi", "-mig", "0"]),
    ]
    if profiles:
        steps.insert(1, c.advice(f"Profiles on this GPU: {', '.join(profiles)}."))
    return c.plan("gpu.mig-guidance", "Use MIG slices correctly", finding, steps)


def gpu_advisory(finding: Finding, snap: Snapshot) -> FixPlan | None:
    return c.plan("gpu.advisory", "Check the GPU's health, clocks and power", finding, [
        c.advice("Clocks, power limits and GPU resets are never changed automatically. Look at "
                 "`nvidia-smi -q -d PERFORMANCE,POWER,CLOCK,TEMPERATURE` for the active clock-event reasons."),
        c.advice("Thermal or power-brake slowdown: improve cooling/airflow and the power supply; restore the default "
                 "power limit with nvidia-smi -pl <default W> only after checking the board's rating."),
        c.advice("XID errors or a pending row remap / recovery action: drain the GPU, then reset it "
                 "(nvidia-smi -r, or a reboot) and, if errors persist, contact the vendor (RMA)."),
    ])


def free_memory(finding: Finding, snap: Snapshot) -> FixPlan | None:
    holders = []
    for i, g in snap.gpus():
        procs = g.get("processes")
        if isinstance(procs, list):
            for p in procs:
                if isinstance(p, dict) and known(p.get("pid")):
                    holders.append(f"GPU {i}: pid {p.get('pid')} {p.get('name') or ''} "
                                   f"({p.get('used_memory_mib', '?')} MiB)")
    steps = [c.advice("Other processes hold GPU memory: " + ("; ".join(holders[:10]) if holders else
                      "see `nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv`") +
                      ". Stop them (a stale vLLM worker, another server, a desktop session), or lower "
                      "--gpu-memory-utilization to the share that is really free.")]
    return c.plan("gpu.free-memory", "Free GPU memory held by other processes", finding, steps)


def memory_settings(finding: Finding, snap: Snapshot) -> FixPlan | None:
    cfg = snap.value("vllm.config") if isinstance(snap.value("vllm.config"), dict) else {}
    kv = snap.value("log.kv_cache") if isinstance(snap.value("log.kv_cache"), dict) else {}
    steps = []
    tokens = kv.get("tokens")
    mml = cfg.get("max_model_len")
    if isinstance(tokens, int) and isinstance(mml, int) and tokens < mml:
        steps.append(c.advice(f"The KV cache holds {tokens} tokens but max_model_len is {mml}: start vLLM with "
                              f"--max-model-len {tokens} (or less)"))
    gmu = cfg.get("gpu_memory_utilization")
    steps.append(c.advice("Raise --gpu-memory-utilization (e.g. 0.92–0.95 when nothing else uses the GPU)"
                          + (f"; it is {gmu} now" if gmu is not None else "")
                          + ", or lower --max-model-len / --max-num-seqs, or use --kv-cache-dtype fp8 "
                            "(FP8-capable GPUs) or a quantized checkpoint, or more tensor parallelism."))
    return c.plan("vllm.memory-settings", "Fit the model, KV cache and max_model_len in GPU memory", finding, steps)


def attention_backend(finding: Finding, snap: Snapshot) -> FixPlan | None:
    ccs = c.compute_capabilities(snap)
    kbv = c.kb_vllm()
    order: list[str] = []
    if kbv is not None and ccs:
        try:
            order = list(kbv.default_attention_backends(ccs[0], c.vllm_version(snap)))
        except Exception:
            order = []
    env = c.host_env(snap)
    steps = []
    if "VLLM_ATTENTION_BACKEND" in env:
        steps.append(c.advice(f"Remove VLLM_ATTENTION_BACKEND={env.get('VLLM_ATTENTION_BACKEND')} (removed in vLLM "
                              "0.15; it forces a backend this GPU cannot use)", ["unset", "VLLM_ATTENTION_BACKEND"]))
    steps.append(c.advice("Let vLLM choose the backend (no --attention-backend)"
                          + (f"; for compute capability {ccs[0]} it tries {', '.join(order)} in this order" if order else "")
                          + ". To force one on vLLM >= 0.13 use --attention-backend NAME."))
    return c.plan("vllm.attention-backend", "Use an attention backend this GPU supports", finding, steps)


def fp8_fallback(finding: Finding, snap: Snapshot) -> FixPlan | None:
    steps = [
        c.advice("This GPU has no native FP8 (compute capability < 8.9): drop --quantization fp8 and "
                 "--kv-cache-dtype fp8 and serve the BF16/FP16 checkpoint, or use a weight-only quantization "
                 "(AWQ/GPTQ int4 via Marlin). vLLM runs FP8 checkpoints here only as weight-only FP8 (Marlin)."),
    ]
    return c.plan("vllm.fp8-fallback", "Do without native FP8", finding, steps)


@hookimpl
def bwdoctor_remedies() -> list[RemedySpec]:
    return [
        RemedySpec("nccl.p2p-disable", "Disable NCCL P2P", nccl_p2p_disable,
                   doc="Advice: NCCL_P2P_DISABLE=1 and --disable-custom-all-reduce, or fix ACS/IOMMU."),
        RemedySpec("nccl.env-fix", "Remove harmful NCCL variables", nccl_env_fix, doc="Advice per variable."),
        RemedySpec("nccl.unshadow", "Stop an older system NCCL from shadowing torch's", nccl_unshadow,
                   doc="Advice only: which folder to take out of LD_LIBRARY_PATH/LD_PRELOAD."),
        RemedySpec("gpu.persistence-mode", "Enable persistence mode", persistence_mode,
                   doc="nvidia-smi -pm 1 (root), skipped when every GPU already reports Enabled."),
        RemedySpec("gpu.mig-guidance", "MIG guidance", mig_guidance, doc="Advice only (MIG changes reset the GPU)."),
        RemedySpec("gpu.advisory", "Clocks, power and reset advice", gpu_advisory,
                   doc="Advice only: clocks, power limits and resets are never changed automatically."),
        RemedySpec("gpu.free-memory", "Free GPU memory", free_memory, doc="Advice naming the processes."),
        RemedySpec("vllm.memory-settings", "vLLM memory settings", memory_settings,
                   doc="Advice with the KV-cache token count and max_model_len from the log."),
        RemedySpec("vllm.attention-backend", "Attention backend", attention_backend,
                   doc="Advice: remove the forcing variable, let vLLM pick (kb default order)."),
        RemedySpec("vllm.fp8-fallback", "FP8 fallback", fp8_fallback, doc="Advice only."),
    ]
