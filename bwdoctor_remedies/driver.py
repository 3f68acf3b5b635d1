"""Remedies for the NVIDIA driver stack: driver upgrade (distribution-aware; advice inside a
container or WSL), removing a forward-compatibility package that cannot work, reloading the
driver after a library mismatch, Fabric Manager, the NVIDIA container toolkit and WSL2.

Remedy ids: ``driver.upgrade``, ``driver.remove-compat``, ``driver.reload``,
``fabric-manager.install``, ``container.toolkit``, ``wsl.guidance``.
Facts read: ``host.os``, ``host.container``, ``host.wsl``, ``host.env``, ``driver.version``,
``gpu.<i>``, ``target``, ``torch``, ``vllm``, ``packages``.
"""

from __future__ import annotations

from bwdoctor import Finding, FixPlan, FixStep, RemedySpec, Snapshot, hookimpl, kb, resolve

from . import _common as c

# NVIDIA's branch-specific packages. Ubuntu ships nvidia-driver-<branch>-open in restricted
# (packages.ubuntu.com: nvidia-driver-580, nvidia-dkms-580-open for jammy and noble). RHEL-family
# systems with NVIDIA's CUDA repository use the DNF module stream <branch>-open (NVIDIA driver
# installation guide). Open kernel modules: required for Blackwell data-centre GPUs, the default
# from R560 (facts.md 2a).
_DPKG_INSTALLED = 'dpkg-query -W -f="\\${Status}" "$1" 2>/dev/null | grep -q "install ok installed"'
_DNF_STREAM = 'dnf module list --installed nvidia-driver 2>/dev/null | grep -q -- "$1"'
_NO_COMPAT_DEB = ('! dpkg-query -W -f="\\${db:Status-Abbrev} \\${Package}\\n" "cuda-compat-*" 2>/dev/null '
                  '| grep -q "^ii"')
_REMOVE_COMPAT_DEB = ('pkgs=$(dpkg-query -W -f="\\${db:Status-Abbrev} \\${Package}\\n" "cuda-compat-*" 2>/dev/null '
                      '| awk \'$1=="ii"{print $2}\'); if [ -n "$pkgs" ]; then apt-get remove -y $pkgs; fi')
_NO_COMPAT_RPM = '! rpm -qa "cuda-compat-*" 2>/dev/null | grep -q .'
_REMOVE_COMPAT_RPM = 'pkgs=$(rpm -qa "cuda-compat-*"); if [ -n "$pkgs" ]; then dnf remove -y $pkgs; fi'


def _needed_cuda(snap: Snapshot, finding: Finding) -> str | None:
    """The CUDA runtime the installed stack needs: finding details, torch's variant, vLLM's build."""
    d = c.details(finding)
    for key in ("required_cuda", "cuda", "needs_cuda"):
        if isinstance(d.get(key), str) and c.vparse(d[key]):
            return d[key]
    cands = []
    t = snap.value("torch")
    if isinstance(t, dict) and t.get("cuda"):
        cands.append(str(t["cuda"]))
    kbv = c.kb_vllm()
    vv = c.vllm_version(snap)
    if kbv is not None and vv:
        try:
            bc = kbv.build_cuda_for(vv)
        except Exception:
            bc = None
        if bc:
            cands.append(str(bc))
    best = None
    for cu in cands:
        pv, pbest = c.vparse(cu), c.vparse(best)
        if pv and (best is None or (pbest is not None and pv > pbest)):
            best = cu
    return best


def required_driver(snap: Snapshot, finding: Finding) -> tuple[str | None, list[str]]:
    """The minimum driver version and the reasons for it."""
    reasons: list[str] = []
    best: str | None = None

    def consider(ver: str | None, why: str) -> None:
        nonlocal best
        pv, pbest = c.vparse(ver), c.vparse(best)
        if ver and pv and (best is None or (pbest is not None and pv > pbest)):
            best = ver
        if ver:
            reasons.append(f"{why} needs driver >= {ver}")

    d = c.details(finding)
    for key in ("required_driver", "min_driver"):
        if isinstance(d.get(key), str):
            consider(d[key], "the finding")
    for cc, req in c.requirements(snap):
        consider(c.attr(req, "min_driver"), f"compute capability {cc}")
    for j in resolve.judged_gpus(snap, usable_only=False, need_cc=False):
        if j.spec is not None:
            first = j.spec.first_listed_for(j.fact.get("pci_device_id"))
            if first:
                consider(first, j.spec.name)
                reasons[-1] = f"{j.spec.name} is first listed in driver {first}"
    cuda = _needed_cuda(snap, finding)
    if cuda:
        consider(c.kb_cuda_compat_driver(cuda), f"the CUDA {cuda} runtime")
    return best, reasons


def recommended_branch(required: str | None) -> int:
    branches = kb.recommended_driver_branches()
    need = c.driver_branch(required) or branches[0]
    for b in branches:
        if b >= need:
            return b
    return need


def _reboot_advice() -> FixStep:
    return c.advice("Reboot so that the new kernel module is loaded, then run bwdoctor again "
                    "(nvidia-smi must show the new driver version).", ["reboot"])


def driver_upgrade(finding: Finding, snap: Snapshot) -> FixPlan | None:
    required, reasons = required_driver(snap, finding)
    branch = recommended_branch(required)
    why = "; ".join(reasons) or "the installed stack needs a newer driver"
    title = f"Install NVIDIA driver branch R{branch} (open kernel modules)"
    notes = f"{why}. R{branch} is the oldest NVIDIA-supported branch that satisfies this."
    ctr = c.container(snap)
    if ctr or snap.value("host.wsl") is True:
        where = "the Windows host (WSL2 uses the Windows driver)" if snap.value("host.wsl") is True else \
            f"the HOST, not inside the {ctr} container (a container uses the host's kernel module)"
        return c.plan("driver.upgrade", title, finding, [
            c.advice(f"Upgrade the NVIDIA driver on {where} to R{branch} or newer"
                     f"{' (>= ' + required + ')' if required else ''}; then restart the container/WSL session."),
        ], notes)
    fam, ident, ver = c.os_info(snap)
    steps: list[FixStep] = []
    if fam == "debian" and ident == "ubuntu":
        pkg = f"nvidia-driver-{branch}-open"
        steps = [
            FixStep("Refresh the package lists", argv=["apt-get", "update"], needs_root=True,
                    check=["sh", "-c", _DPKG_INSTALLED, "sh", pkg], undo="nothing to undo"),
            FixStep(f"Install {pkg} (Ubuntu restricted archive, open kernel modules)",
                    argv=["apt-get", "install", "-y", pkg], check=["sh", "-c", _DPKG_INSTALLED, "sh", pkg],
                    needs_root=True, undo=f"apt-get remove {pkg} and reinstall the previous driver package"),
            _reboot_advice(),
        ]
    elif fam == "debian":
        steps = [
            c.advice("Debian's own archive carries an older branch: add NVIDIA's CUDA network repository "
                     "(cuda-keyring, see the NVIDIA driver installation guide) before the next step."),
            FixStep("Refresh the package lists", argv=["apt-get", "update"], needs_root=True,
                    check=["sh", "-c", _DPKG_INSTALLED, "sh", "nvidia-open"], undo="nothing to undo"),
            FixStep("Install the NVIDIA open-kernel-module driver from NVIDIA's repository",
                    argv=["apt-get", "install", "-y", "nvidia-open"], check=["sh", "-c", _DPKG_INSTALLED, "sh", "nvidia-open"],
                    needs_root=True, undo="apt-get remove nvidia-open"),
            _reboot_advice(),
        ]
    elif fam == "rhel":
        stream = f"{branch}-open"
        steps = [
            c.advice("This uses NVIDIA's CUDA repository for your release (dnf config-manager --add-repo, see "
                     "the NVIDIA driver installation guide)."),
            FixStep(f"Install the nvidia-driver:{stream} DNF module stream",
                    argv=["dnf", "module", "install", "-y", f"nvidia-driver:{stream}"],
                    check=["sh", "-c", _DNF_STREAM, "sh", stream], needs_root=True,
                    undo=f"dnf module remove nvidia-driver:{stream}"),
            _reboot_advice(),
        ]
    else:
        steps = [c.advice(f"Install NVIDIA driver R{branch} or newer with the open kernel modules using your "
                          f"distribution's method ({ident or 'unknown distribution'} {ver}).")]
    return c.plan("driver.upgrade", title, finding, steps, notes)


def driver_remove_compat(finding: Finding, snap: Snapshot) -> FixPlan | None:
    steps: list[FixStep] = []
    env = c.host_env(snap)
    if str(env.get("VLLM_ENABLE_CUDA_COMPATIBILITY", "")).strip() not in ("", "0", "false", "False"):
        steps.append(c.advice("Unset VLLM_ENABLE_CUDA_COMPATIBILITY (and VLLM_CUDA_COMPATIBILITY_PATH): forward "
                              "compatibility works only on data-centre GPUs; elsewhere CUDA fails with error 804."))
    ld = str(env.get("LD_LIBRARY_PATH", ""))
    if "compat" in ld:
        steps.append(c.advice("Remove the cuda-compat folder (…/compat) from LD_LIBRARY_PATH in the environment "
                              "or image that sets it."))
    ctr = c.container(snap)
    fam, _, _ = c.os_info(snap)
    if ctr:
        steps.append(c.advice("The forward-compatibility libraries are part of the container image: rebuild the "
                              "image without the cuda-compat package (or without /usr/local/cuda/compat on the "
                              "library path), and upgrade the host driver instead."))
    elif fam == "debian":
        steps.append(FixStep("Remove the cuda-compat-* packages (forward compatibility cannot work on this GPU)",
                             argv=["sh", "-c", _REMOVE_COMPAT_DEB, "sh"], check=["sh", "-c", _NO_COMPAT_DEB, "sh"],
                             needs_root=True, undo="apt-get install the cuda-compat-<version> package again"))
    elif fam == "rhel":
        steps.append(FixStep("Remove the cuda-compat-* packages (forward compatibility cannot work on this GPU)",
                             argv=["sh", "-c", _REMOVE_COMPAT_RPM, "sh"], check=["sh", "-c", _NO_COMPAT_RPM, "sh"],
                             needs_root=True, undo="dnf install the cuda-compat-<version> package again"))
    else:
        steps.append(c.advice("Uninstall the cuda-compat package with your package manager."))
    steps.append(c.advice("Forward compatibility is no substitute for a new enough driver on GeForce and RTX "
                          "workstation GPUs: upgrade the driver (remedy driver.upgrade)."))
    return c.plan("driver.remove-compat", "Stop using the CUDA forward-compatibility package", finding, steps,
                  "cuda-compat works only on data-centre GPUs, selected NGC-ready RTX SKUs and Jetson "
                  "(NVIDIA CUDA forward-compatibility docs); elsewhere it raises error 804.")


def driver_reload(finding: Finding, snap: Snapshot) -> FixPlan | None:
    steps = [
        c.advice("The loaded kernel module and the user-space driver libraries differ (a driver update without a "
                 "reboot, or a half-installed driver). Stop every GPU process (vLLM, Xorg, nvidia-persistenced) "
                 "and reboot; that loads the module matching the libraries.", ["reboot"]),
        c.advice("If a reboot is impossible: stop all GPU processes, then unload and reload the modules "
                 "(this resets the GPUs, so it is never run automatically).",
                 ["sh", "-c", "rmmod nvidia_uvm nvidia_drm nvidia_modeset nvidia && modprobe nvidia"]),
    ]
    if c.container(snap):
        steps.insert(0, c.advice("Inside a container: the mismatch is on the HOST (or the image ships its own "
                                 "driver libraries such as libnvidia-ml.so); fix it there and restart the container."))
    return c.plan("driver.reload", "Reload the NVIDIA driver so that module and libraries match", finding, steps)


def fabric_manager(finding: Finding, snap: Snapshot) -> FixPlan | None:
    ver = c.driver_version(snap)
    fam, ident, _ = c.os_info(snap)
    steps: list[FixStep] = []
    if ver is None or c.container(snap):
        steps.append(c.advice("Install and start nvidia-fabricmanager matching the host driver's exact version on the "
                              "HOST (NVSwitch systems need it; CUDA otherwise fails with error 802)."))
    else:
        branch = ver.major
        if fam == "debian":
            pkg = f"nvidia-fabricmanager-{branch}"
            steps.append(FixStep(f"Install {pkg} (must match the driver version {ver})",
                                 argv=["apt-get", "install", "-y", pkg], check=["sh", "-c", _DPKG_INSTALLED, "sh", pkg],
                                 needs_root=True, undo=f"apt-get remove {pkg}"))
        elif fam == "rhel":
            steps.append(FixStep("Install nvidia-fabric-manager (must match the driver version)",
                                 argv=["dnf", "install", "-y", "nvidia-fabric-manager"],
                                 check=["rpm", "-q", "nvidia-fabric-manager"], needs_root=True,
                                 undo="dnf remove nvidia-fabric-manager"))
        else:
            steps.append(c.advice(f"Install NVIDIA Fabric Manager {ver} for {ident or 'this distribution'}."))
        steps.append(FixStep("Enable and start the Fabric Manager service",
                             argv=["systemctl", "enable", "--now", "nvidia-fabricmanager"],
                             check=["systemctl", "is-active", "--quiet", "nvidia-fabricmanager"], needs_root=True,
                             undo="systemctl disable --now nvidia-fabricmanager"))
    return c.plan("fabric-manager.install", "Install and start NVIDIA Fabric Manager", finding, steps)


def container_toolkit(finding: Finding, snap: Snapshot) -> FixPlan | None:
    fam, _, _ = c.os_info(snap)
    steps: list[FixStep] = []
    if c.container(snap):
        steps.append(c.advice("Run the container with GPU access: docker run --gpus all (or, with CDI, "
                              "--device nvidia.com/gpu=all); in compose: deploy.resources.reservations.devices "
                              "with driver: nvidia. The NVIDIA Container Toolkit must be installed on the HOST."))
    elif fam == "debian":
        steps += [
            c.advice("The package comes from NVIDIA's libnvidia-container repository (see the NVIDIA Container "
                     "Toolkit install guide) — add it first."),
            FixStep("Install the NVIDIA Container Toolkit", argv=["apt-get", "install", "-y", "nvidia-container-toolkit"],
                    check=["sh", "-c", _DPKG_INSTALLED, "sh", "nvidia-container-toolkit"], needs_root=True,
                    undo="apt-get remove nvidia-container-toolkit"),
        ]
    elif fam == "rhel":
        steps.append(FixStep("Install the NVIDIA Container Toolkit", argv=["dnf", "install", "-y", "nvidia-container-toolkit"],
                             check=["rpm", "-q", "nvidia-container-toolkit"], needs_root=True,
                             undo="dnf remove nvidia-container-toolkit"))
    else:
        steps.append(c.advice("Install the NVIDIA Container Toolkit for your distribution."))
    if not c.container(snap):
        steps += [
            FixStep("Register the NVIDIA runtime with Docker", argv=["nvidia-ctk", "runtime", "configure", "--runtime=docker"],
                    check=["sh", "-c", 'grep -q "nvidia-container-runtime" /etc/docker/daemon.json 2>/dev/null', "sh"],
                    needs_root=True, undo="remove the nvidia runtime entry from /etc/docker/daemon.json"),
            c.advice("Restart Docker so that it picks up the runtime (interrupts running containers).",
                     ["systemctl", "restart", "docker"]),
        ]
    return c.plan("container.toolkit", "Give containers access to the GPU (NVIDIA Container Toolkit)", finding, steps)


def wsl_guidance(finding: Finding, snap: Snapshot) -> FixPlan | None:
    steps = [
        c.advice("Under WSL2 install the NVIDIA driver on Windows only; never install a Linux driver package inside "
                 "WSL (the driver is exposed through /usr/lib/wsl/lib)."),
        c.advice("WSL2 limits pinned memory and lacks CUDA virtual memory management: start vLLM with "
                 "--enforce-eager if CUDA graphs fail, and leave PYTORCH_CUDA_ALLOC_CONF expandable_segments off."),
        c.advice("Install a CUDA toolkit inside WSL (cuda-toolkit-12-8 or newer, without the driver) and set "
                 "CUDA_HOME when FlashInfer or Triton need nvcc/ptxas."),
    ]
    return c.plan("wsl.guidance", "WSL2-specific settings", finding, steps)


@hookimpl
def bwdoctor_remedies() -> list[RemedySpec]:
    return [
        RemedySpec("driver.upgrade", "Install the driver branch the GPU and the CUDA runtime need", driver_upgrade,
                   doc="Computes the minimum driver from the GPU architecture (kb.arch_requirements) and the CUDA "
                       "runtime of torch/vLLM (kb.cuda_min_driver), picks the oldest supported branch at or above it "
                       "(R580 LTSB today) and installs its open-kernel-module package: Ubuntu nvidia-driver-<branch>-"
                       "open, Debian nvidia-open from NVIDIA's repository, RHEL-family DNF module stream "
                       "<branch>-open. In a container or WSL2 it only advises upgrading on the host."),
        RemedySpec("driver.remove-compat", "Remove a CUDA forward-compatibility package that cannot work",
                   driver_remove_compat, doc="Removes cuda-compat-* packages (apt/dnf) and advises unsetting "
                   "VLLM_ENABLE_CUDA_COMPATIBILITY and compat paths on GPUs where forward compatibility is refused."),
        RemedySpec("driver.reload", "Reboot or reload the driver after a library/module mismatch", driver_reload,
                   doc="Advice only: a reboot (or module reload) interrupts every GPU user."),
        RemedySpec("fabric-manager.install", "Install and start NVIDIA Fabric Manager", fabric_manager,
                   doc="Installs nvidia-fabricmanager-<branch> (apt) or nvidia-fabric-manager (dnf) and enables the "
                       "service on NVSwitch systems."),
        RemedySpec("container.toolkit", "Install/configure the NVIDIA Container Toolkit", container_toolkit,
                   doc="Installs nvidia-container-toolkit and registers the runtime with Docker; inside a container "
                       "it advises the docker run/compose options instead."),
        RemedySpec("wsl.guidance", "WSL2 guidance", wsl_guidance, doc="Advice only."),
    ]
