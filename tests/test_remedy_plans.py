"""Each remedy builds a plan for representative machines; the plans use exact versions from the
knowledge base, respect the distribution and the container case, and render to scripts that
pass bash -n and shellcheck."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bwdoctor import Finding, FixPlan, Snapshot, kb
from bwdoctor.fixscript import render_script
from bwdoctor.manager import PluginManager

from conftest import make_snapshot


def finding(*remedies: str, **details) -> Finding:
    return Finding(id="BWD-TEST-001", title="t", area="TEST", status="fail", message="m", remedies=list(remedies),
                   details=details)


REG = PluginManager(entry_points=False).registry()
BY_ID = {r.id: r for r in REG.remedies}


def plan_for(rid: str, s: Snapshot, f: Finding | None = None) -> FixPlan | None:
    return BY_ID[rid].func(f or finding(rid), s)


BLACKWELL_UBUNTU = dict(host__os={"id": "ubuntu", "version": "22.04"}, driver__version="550.54.14",
                        gpu__0={"name": "NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "compute_capability": "12.0",
                                "pci_device_id": "0x2bb1"},
                        packages={"torch": {"version": "2.6.0+cu124"}, "torchvision": {"version": "0.21.0+cu124"},
                                  "vllm": {"version": "0.8.5"}},
                        torch={"version": "2.6.0+cu124", "cuda": "12.4", "variant": "cu124"},
                        vllm={"version": "0.8.5", "cuda_major": 12, "torch_requirement": "torch==2.6.0"})


def lint(script: str, tmp_path: Path) -> None:
    p = tmp_path / "s.sh"
    p.write_text(script)
    subprocess.run(["bash", "-n", str(p)], check=True)
    sc = shutil.which("shellcheck")
    if sc:
        r = subprocess.run([sc, "-s", "bash", str(p)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout


def test_driver_upgrade_ubuntu_open_modules() -> None:
    p = plan_for("driver.upgrade", make_snapshot(**BLACKWELL_UBUNTU))
    argvs = [s.argv for s in p.steps if not s.advisory]
    assert ["apt-get", "install", "-y", "nvidia-driver-580-open"] in argvs
    assert all(s.needs_root for s in p.steps if not s.advisory)
    assert all(s.check for s in p.steps if not s.advisory)


def test_driver_upgrade_rhel_and_container() -> None:
    rhel = dict(BLACKWELL_UBUNTU, host__os={"id": "rocky", "id_like": "rhel centos fedora", "version": "9.4"})
    p = plan_for("driver.upgrade", make_snapshot(**rhel))
    assert ["dnf", "module", "install", "-y", "nvidia-driver:580-open"] in [s.argv for s in p.steps]
    ctr = dict(BLACKWELL_UBUNTU, host__container="docker")
    p = plan_for("driver.upgrade", make_snapshot(**ctr))
    assert all(s.advisory for s in p.steps) and "HOST" in p.steps[0].description


def test_torch_reinstall_picks_variant_the_driver_runs() -> None:
    # vLLM 0.8.5 has no Blackwell kernels: the fix moves vLLM to a release whose pinned torch has a
    # default build for the GPU, so no torch step is planned (and none for 0.8.5's torch 2.6.0)
    assert plan_for("torch.reinstall-cuda-variant", make_snapshot(**BLACKWELL_UBUNTU)) is None
    # a release the fix keeps, whose torch has no build for the GPU: the plan says so instead of guessing
    old = dict(BLACKWELL_UBUNTU, gpu__0={"name": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0"},
               driver__version="450.80.02", vllm={"version": "0.6.2", "torch_requirement": "torch==2.4.0"})
    p = plan_for("torch.reinstall-cuda-variant", make_snapshot(**old))
    assert p is not None
    s = dict(BLACKWELL_UBUNTU, driver__version="570.133.07", vllm={"version": "0.10.1", "torch_requirement": "torch==2.7.1"})
    p = plan_for("torch.reinstall-cuda-variant", make_snapshot(**s))
    argv = p.steps[0].argv
    assert "https://download.pytorch.org/whl/cu128" in argv and "torch==2.7.1+cu128" in argv
    assert "torchvision==0.22.1+cu128" in argv
    s = dict(s, driver__version="580.95.05", vllm={"version": "0.14.0", "torch_requirement": "torch==2.9.1"})
    p = plan_for("torch.reinstall-cuda-variant", make_snapshot(**s))
    assert "torch==2.9.1+cu130" in p.steps[0].argv


def test_align_companions_install_or_uninstall() -> None:
    s = make_snapshot(packages={"torch": {"version": "2.9.1+cu128"}, "torchvision": {"version": "0.23.0+cu128"},
                       "vllm": {"version": "0.14.0", "requires": ["torchvision==0.24.1"]}},
             torch={"version": "2.9.1+cu128"})
    p = plan_for("torch.align-companions", s)
    assert p.steps[0].argv[-1] == "torchvision==0.24.1+cu128"
    s = make_snapshot(packages={"torch": {"version": "2.13.0+cpu"}, "torchaudio": {"version": "2.9.0"}}, torch={"version": "2.13.0+cpu"})
    p = plan_for("torch.align-companions", s)
    assert p.steps[0].argv[-3:] == ["uninstall", "-y", "torchaudio"]


def test_vllm_install_respects_driver() -> None:
    p = plan_for("vllm.install-supported", make_snapshot(**dict(BLACKWELL_UBUNTU, driver__version="570.133.07")))
    ver = p.steps[0].argv[-1].split("==")[1]
    from packaging.version import Version
    assert Version(kb.arch_requirements("12.0").vllm_min) <= Version(ver) < Version("0.20.0")
    p = plan_for("vllm.install-supported", make_snapshot(**dict(BLACKWELL_UBUNTU, driver__version="580.95.05")))
    assert p.steps[0].argv[-1] == f"vllm=={kb.vllm.latest_version()}"


def test_persistence_mode_is_checked_and_root() -> None:
    p = plan_for("gpu.persistence-mode", make_snapshot(**BLACKWELL_UBUNTU))
    step = p.steps[0]
    assert step.argv == ["nvidia-smi", "-pm", "1"] and step.needs_root and step.check


@pytest.mark.parametrize("rid", sorted(BY_ID))
def test_every_remedy_renders_lint_clean(rid: str, tmp_path: Path) -> None:
    s = make_snapshot(**dict(BLACKWELL_UBUNTU, host__env={"NCCL_SOCKET_IFNAME": "$(touch /tmp/x)", "VLLM_ENABLE_FP8": "1"},
                    toolkit__nvcc={"version": "12.4", "path": "/usr/local/cuda-12.4/bin/nvcc"},
                    flashinfer={"packages": {"flashinfer-python": "0.2.5", "flashinfer-jit-cache": "0.2.4"}},
                    packages={"torch": {"version": "2.6.0+cu124"}, "vllm": {"version": "0.8.5"},
                              "torchvision": {"version": "0.20.0+cu124", "requires": ["torch==2.5.0"]}}))
    if rid in ("torch.reinstall-cuda-variant", "vllm.rebuild-for-torch"):
        # with vLLM 0.8.5 the fix moves vLLM and its torch comes with it: keep a release with Blackwell kernels
        s.set("vllm", {"version": "0.10.1", "torch_requirement": "torch==2.7.1"}, "test")
    p = plan_for(rid, s)
    assert p is not None, f"{rid} built no plan for a machine where it applies"
    assert p.steps and all(st.description for st in p.steps)
    for st in p.steps:
        if not st.advisory and st.argv:
            assert st.check or st.argv[:3] == ["apt-get", "update"] or rid.startswith("gpu."), (rid, st.argv)
        if any(w in (st.argv or []) for w in ("-r", "-pl", "-lgc", "-mig", "rmmod", "reboot")):
            assert st.advisory, (rid, st.argv)  # resets, clocks and power are advice only
    lint(render_script([p], [finding(rid)], "test"), tmp_path)
