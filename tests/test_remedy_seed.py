"""The seed deployment files (tests/data/remedy/seed-config) with target rtx-pro-6000: the
remedies' diffs turn them into a configuration the config lint passes."""

from __future__ import annotations

import shutil
from pathlib import Path

from bwdoctor import Finding, kb
from bwdoctor.fixscript import apply_plans, render_script
from bwdoctor.manager import PluginManager
from bwdoctor.runner import parse, plan_remedies, run_checks

SEED = Path(__file__).parent / "data" / "remedy" / "seed-config"
CONFIG_REMEDIES = ["config.replace-vllm-env", "compose.ipc-host", "compose.shm-size", "dockerfile.base-image",
                   "dockerfile.vllm-pin"]


def _analyze(reg, folder: Path):
    snap, _ = parse(reg, [str(folder)])
    snap.set("target", kb.resolve_target("rtx-pro-6000"), "cli --target")
    return snap, run_checks(reg.checks, snap)


def _bad_cfg(findings):
    return [f for f in findings if f.status in ("fail", "warn") and (f.area == "CFG" or set(f.remedies) & set(CONFIG_REMEDIES))]


def test_seed_config_fixed_by_diffs(tmp_path: Path) -> None:
    work = tmp_path / "seed copy"
    shutil.copytree(SEED, work)
    (work / "README.md").unlink()
    reg = PluginManager().registry()
    snap, findings = _analyze(reg, work)
    bad = _bad_cfg(findings)
    # drive every config remedy even if the lint names only some of them
    bad.append(Finding(id="BWD-CFG-999", title="all config remedies", area="CFG", status="warn", message="seed",
                       remedies=CONFIG_REMEDIES))
    plans, errors = plan_remedies(reg, bad, snap)
    assert not errors, [e.message for e in errors]
    # only the file edits run here: never a pip/apt command on the test machine
    plans = [p for p in plans if p.remedy_id in CONFIG_REMEDIES]
    assert all(s.patch or s.advisory for p in plans for s in p.steps)
    patches = [s for p in plans for s in p.steps if s.patch]
    assert {Path(s.patch["path"]).name for s in patches} == {"Dockerfile", "docker-compose.vllm.yml", ".env.vllm"}
    script = render_script(plans, bad, "test")
    assert "vllm/vllm-openai:v" in script and "ipc: host" in script

    result = apply_plans(plans, yes=True, echo=lambda s: None)
    assert result.ok and result.ran

    snap2, after = _analyze(reg, work)
    left = [f"{f.key}: {f.message}" for f in _bad_cfg(after)]
    assert not left, left
    # and what the parsers read back is a Blackwell-capable configuration
    env = snap2.value("config.env") or {}
    assert not [n for n in env if n in ("VLLM_ENABLE_FP8", "VLLM_USE_FLASHINFER", "VLLM_GPU_MEMORY_UTILIZATION")]
    base = snap2.value("config.base_image") or {}
    assert base.get("image") == "vllm/vllm-openai"
    req = kb.arch_requirements("12.0")
    from packaging.version import Version
    assert Version(str(base.get("vllm_version"))) >= Version(req.vllm_min)
    pin = snap2.value("config.vllm_pin") or {}
    assert Version(str(pin.get("version"))) >= Version(req.vllm_min)
    compose = snap2.value("config.compose") or {}
    assert compose.get("ipc") == "host"
    # applying again changes nothing
    before = {p.name: p.read_text() for p in work.iterdir()}
    again = apply_plans(plans, yes=True, echo=lambda s: None)
    assert again.ok and not again.ran
    assert before == {p.name: p.read_text() for p in work.iterdir()}
