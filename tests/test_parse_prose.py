"""Environment facts from prose, markdown, printed versions and paths (``parsers.prose``), their
rank below a tool's output, the disagreements kept in the snapshot, and the stack a pasted install
command or image tag implies (``parsers.config``). Inputs are written for these tests."""

from __future__ import annotations

from pathlib import Path

from bwdoctor import INFERRED, STATED, Fact, Snapshot, runner
from bwdoctor.manager import PluginManager
from bwdoctor.types import Evidence
from bwdoctor_checks.parsers import prose

DATA = Path(__file__).parent / "data" / "evidence"


def ev_text(tmp_path: Path, text: str, name: str = "paste.txt") -> Evidence:
    p = tmp_path / name
    p.write_text(text)
    return Evidence(path=str(p), name=name, head=text, size=len(text))


def run(tmp_path: Path, text: str) -> dict:
    out: dict = {}
    for f in prose.bwdoctor_parsers()[0].func(ev_text(tmp_path, text)):
        assert f.rank in (STATED, INFERRED)
        if f.rank == INFERRED and isinstance(out.get(f.key), dict):
            out[f.key] = {**f.value, **out[f.key]}  # fills only what the statements leave open
        else:
            out[f.key] = f.value if not isinstance(out.get(f.key), dict) else {**out[f.key], **f.value}
        out.setdefault("_sources", {})[f.key] = f.source
    return out


def analyze(tmp_path: Path, files: dict[str, str]) -> tuple[Snapshot, list]:
    paths = []
    for name, text in files.items():
        p = tmp_path / name
        p.write_text(text)
        paths.append(str(p))
    reg = PluginManager().registry()
    snap, findings = runner.parse(reg, paths)
    findings += runner.run_checks(runner.select_checks(reg.checks, "full"), snap)
    return snap, findings


def test_markdown_bullets(tmp_path):
    f = run(tmp_path, (DATA / "issue-report.md").read_text())
    assert f["gpu.count"] == 2
    assert f["gpu.0"]["name"] == "NVIDIA GeForce RTX 5090" and f["gpu.0"]["compute_capability"] == "12.0"
    assert f["torch"]["variant"] == "cu124"
    assert f["vllm"]["version"] == "0.8.5"
    assert f["driver.version"] == "570.86.16"


def test_table_and_full_width_colon(tmp_path):
    text = ("| Component | Version |\n|---|---|\n| vLLM | v0.13.0 |\n| PyTorch | 2.9.0+cu129 |\n"
            "| Driver | 575.57.08 |\n| NCCL | 2.27.3 |\n\nCUDA：12.9\n")
    f = run(tmp_path, text)
    assert f["vllm"]["version"] == "0.13.0"
    assert f["torch"] == {"version": "2.9.0+cu129", "cuda": "12.9", "variant": "cu129"}
    assert f["driver.version"] == "575.57.08"
    assert f["nccl.version"] == "2.27.3"
    assert f["log.cuda_runtime"] == "12.9"


def test_labelled_statement_beats_a_passing_mention(tmp_path):
    text = "Earlier it worked with vllm 0.6.3 on another box.\n\nvLLM version: 0.10.1\n"
    assert run(tmp_path, text)["vllm"]["version"] == "0.10.1"


def test_gpu_count_words_and_compute_capability_forms(tmp_path):
    f = run(tmp_path, "The box has two RTX 5090 cards.\ntorch.cuda.get_device_capability() -> Compute Capability: "
                      "(12, 0)\n")
    assert f["gpu.count"] == 2 and f["gpu.1"]["compute_capability"] == "12.0"
    f = run(tmp_path, "GPU: some Blackwell workstation card (SM120a)\n")
    assert f["gpu.0"] == {"compute_capability": "12.0", "cc_source": "issue-text"}


def test_variant_names_are_not_their_base_product(tmp_path):
    f = run(tmp_path, "My card is a GeForce RTX 4080 SUPER.\n")
    assert "gpu.0" not in f or f["gpu.0"].get("name") != "NVIDIA GeForce RTX 4080"


def test_versions_in_paths_and_nccl_build(tmp_path):
    text = ('  File "/opt/conda/lib/python3.11/site-packages/torch-2.6.0+cu124.dist-info/METADATA"\n'
            "ptxas at /nix/store/abc-cuda_nvcc-12.8.93/bin/ptxas\nNCCL version 2.21.5+cuda12.4\n")
    f = run(tmp_path, text)
    assert f["torch"]["variant"] == "cu124"
    assert f["toolkit.nvcc"]["version"] == "12.8"
    assert f["nccl.version"] == "2.21.5" and f["nccl.cuda"] == "12.4"


def test_install_commands_are_left_to_the_config_parser(tmp_path):
    text = "We tried:\npip install torch==2.8.0+cu128 --index-url https://download.pytorch.org/whl/cu128\n" \
           "RUN pip install vllm==0.10.0\nGPU: NVIDIA B200\n"
    f = run(tmp_path, text)
    assert "torch" not in f and "vllm" not in f
    assert f["gpu.0"]["compute_capability"] == "10.0"


def test_tool_output_outranks_prose_and_the_conflict_is_kept(tmp_path):
    smi = (DATA / "h100-nvidia-smi.txt").read_text()
    snap, _ = analyze(tmp_path, {"smi.txt": smi, "note.txt": "It also fails on my RTX 4090 at home, driver 550.54.14\n"})
    assert snap.value("gpu.0")["compute_capability"] == "9.0"
    assert snap.value("driver.version") != "550.54.14"
    assert any(c["key"] == "driver.version" and c["other"] == "550.54.14" for c in snap.meta["conflicts"])


def test_snapshot_rank_rules():
    snap = Snapshot()
    snap.add(Fact("driver.version", "570.1", "prose", STATED))
    snap.add(Fact("driver.version", "580.2", "nvidia-smi"))
    snap.add(Fact("driver.version", "575.3", "guess", INFERRED))
    assert snap.value("driver.version") == "580.2"
    snap.add(Fact("torch", {"version": "2.7.0", "variant": "cu126"}, "inferred", INFERRED))
    snap.add(Fact("torch", {"version": "2.7.1+cu128", "variant": "cu128", "cuda": "12.8"}, "pip list"))
    snap.add(Fact("torch", {"variant": "cu124", "arch_list": ["sm_90"]}, "prose", STATED))
    assert snap.value("torch") == {"version": "2.7.1+cu128", "variant": "cu128", "cuda": "12.8", "arch_list": ["sm_90"]}
    keys = {c["key"] for c in snap.meta["conflicts"]}
    assert {"driver.version", "torch.version", "torch.variant"} <= keys


def test_pip_install_implies_torch_and_cuda(tmp_path):
    snap, findings = analyze(tmp_path, {"ticket.md": "Driver Version: 510.47.03 on the notebook host.\n\n"
                                                     "```\npip install vllm==0.7.3\n```\n"})
    torch = snap.get("torch")
    assert torch.rank == INFERRED and torch.value["version"] == "2.5.1+cu124"
    assert snap.value("vllm")["cuda_major"] == 12
    drv = [f for f in findings if f.id == "BWD-DRV-003" and f.status == "fail"]
    assert drv and drv[0].details["basis"] == "inferred" and drv[0].confidence < 0.95


def test_pip_wheel_of_old_vllm_on_blackwell_without_an_error_line(tmp_path):
    from bwdoctor.diagnosis import diagnose

    snap, findings = analyze(tmp_path, {"ticket.md": "GPU: NVIDIA GeForce RTX 5090\n"
                                                     "Installed with `pip install vllm==0.9.1`, the server never "
                                                     "becomes ready.\n"})
    diag = diagnose(findings)
    assert diag and diag[0]["root_cause"] == "arch_not_in_torch_wheel"
    assert "torch 2.7.0" in diag[0]["summary"] and "CUDA 12.6" in diag[0]["summary"]
    assert any(d["root_cause"] == "arch_not_in_vllm_wheel" for d in diag)


def test_image_tag_in_prose_gives_vllm_and_its_cuda(tmp_path):
    f = run(tmp_path, "Running the vllm/vllm-openai:v0.9.0 image on the host.\n")
    assert f["vllm"]["version"] == "0.9.0" and f["vllm"]["install"] == "image" and f["vllm"]["cuda_major"] == 12


def test_garbage_never_raises(tmp_path):
    for text in ("\x00\xff" * 100, "|" * 5000, "vllm " * 3000, "GPU:" + "x" * 10000):
        run(tmp_path, text)


def test_evidence_says_what_is_missing_and_what_disagrees(tmp_path):
    _, findings = analyze(tmp_path, {"a.txt": "vLLM version: 0.10.1\ntorch 2.7.1+cu128\n",
                                     "b.txt": "Package    Version\n---------- -------\ntorch      2.7.0\nvllm       0.10.1\n"})
    miss = next(f for f in findings if f.id == "BWD-EVID-001")
    assert miss.status == "warn" and miss.root_cause is None and "nvidia-smi" in miss.message
    assert "no GPU model" in miss.details["missing"] and "no vLLM version" not in miss.details["missing"]
    conf = next(f for f in findings if f.id == "BWD-EVID-002")
    assert conf.status == "warn" and "torch.version" in conf.message


def test_torch_release_without_the_architecture_in_any_build(tmp_path):
    from bwdoctor.diagnosis import diagnose

    _, findings = analyze(tmp_path, {"t.md": "GPU: NVIDIA GeForce RTX 5080\n- PyTorch: 2.6.0\n"})
    st = next(f for f in findings if f.id == "BWD-STACK-001" and f.status == "fail")
    assert "2.7.0" in st.message and st.details["basis"] == "stated"
    assert diagnose(findings)[0]["root_cause"] == "arch_not_in_torch_wheel"


def test_old_nccl_on_one_gpu_is_not_blamed(tmp_path):
    _, findings = analyze(tmp_path, {"n.md": "GPU: NVIDIA GeForce RTX 5090\nNCCL version 2.21.5+cuda12.4\n"})
    assert not [f for f in findings if f.id == "BWD-STACK-009" and f.status == "fail"]
    _, findings = analyze(tmp_path, {"n.md": "GPU: 2x NVIDIA GeForce RTX 5090\nNCCL version 2.21.5+cuda12.4\n"})
    assert [f for f in findings if f.id == "BWD-STACK-009" and f.status == "fail"]


def test_architectures_named_by_an_error_are_not_the_gpu(tmp_path):
    f = run(tmp_path, "RuntimeError: FlashInfer requires GPUs with sm75 or higher\n")
    assert "gpu.0" not in f


def test_nccl_built_for_an_old_cuda_with_tensor_parallelism(tmp_path):
    from bwdoctor.diagnosis import diagnose

    text = ("Two cards, serving with `vllm serve some/model --tensor-parallel-size 2`.\n"
            "NCCL INFO NCCL version 2.18.1+cuda11.0\n")
    _, findings = analyze(tmp_path, {"t.md": text})
    f = next(f for f in findings if f.id == "BWD-STACK-012")
    assert f.status == "fail" and "11.0" in f.message
    assert diagnose(findings)[0]["root_cause"] == "nccl_version_mismatch"
    _, findings = analyze(tmp_path, {"t.md": "GPU: NVIDIA A10\nNCCL version 2.18.1+cuda11.0\n"})
    assert next(f for f in findings if f.id == "BWD-STACK-012").status == "pass"


def test_a_released_vllm_named_in_prose_does_not_fix_its_wheel_cuda(tmp_path):
    # releases ship wheels for several CUDA majors: which one was installed shows in torch, not in the version
    snap, findings = analyze(tmp_path, {"t.md": "vLLM version: 0.12.0\n",
                                        "pip.txt": "torch==2.9.0+cu130\nnumpy==2.2.6\ntransformers==5.0.0\n"})
    assert "cuda_major" not in snap.value("vllm")
    assert next(f for f in findings if f.id == "BWD-STACK-004").status == "skip"


def test_a_merged_fact_is_as_direct_as_its_weakest_part():
    snap = Snapshot()
    snap.add(Fact("vllm", {"version": "0.9.1"}, "pip list"))
    snap.add(Fact("vllm", {"version": "0.9.1", "cuda_major": 12, "cuda_inferred": "wheel"}, "install line", INFERRED))
    assert snap.value("vllm")["cuda_major"] == 12 and snap.get("vllm").rank == INFERRED
    snap.add(Fact("torch", {"version": "2.7.0"}, "pip list"))
    snap.add(Fact("torch", {"version": "2.7.0"}, "prose", STATED))
    assert snap.get("torch").rank == 0


def test_torch_backend_index_without_versions(tmp_path):
    from bwdoctor.diagnosis import diagnose

    snap, findings = analyze(tmp_path, {"c.txt": "uv pip install vllm --torch-backend=cu126\nCard: RTX 5070 Ti\n"
                                                 "nvidia-smi says Driver Version: 575.57.08\n"})
    assert snap.value("torch")["variant"] == "cu126" and snap.get("torch").rank == INFERRED
    assert snap.value("driver.version") == "575.57.08"
    assert diagnose(findings)[0]["root_cause"] == "arch_not_in_torch_wheel"


def test_pytorch_image_tag_names_torch_and_its_cuda(tmp_path):
    snap, _ = analyze(tmp_path, {"Dockerfile": "FROM pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime\n"
                                               "RUN pip install transformers\n"})
    assert snap.value("torch") == {"version": "2.6.0+cu124", "cuda": "12.4", "variant": "cu124"}


def test_vllm_release_pin_judges_torch_of_the_same_package_list(tmp_path):
    _, findings = analyze(tmp_path, {"pip.txt": "vllm==0.9.1\ntorch==2.6.0\ntransformers==4.52.0\n"})
    f = next(f for f in findings if f.id == "BWD-STACK-003")
    assert f.status == "fail" and "torch==2.7.0" in f.message and f.confidence == 0.8
    _, findings = analyze(tmp_path, {"pip.txt": "vllm==0.9.1\ntorch==2.7.0\ntransformers==4.52.0\n"})
    assert next(f for f in findings if f.id == "BWD-STACK-003").status == "pass"


def test_labelled_gpu_names_the_mention_list_lacks(tmp_path):
    f = run(tmp_path, "OS: CentOS 7, GPU: P40*4\n")
    assert f["gpu.count"] == 4 and f["gpu.3"]["compute_capability"] == "6.1"
    f = run(tmp_path, "- GPU: NVIDIA GeForce RTX 3060 Ti (8 GB)\n")
    assert f["gpu.0"]["compute_capability"] == "8.6"


def test_bare_cuda_major_and_the_libnccl_package_form(tmp_path):
    f = run(tmp_path, "- CUDA: 13\n- Libraries: `2.25.1-1+cuda12.8`\n")
    assert f["log.cuda_runtime"] == "13"
    assert f["nccl.version"] == "2.25.1" and f["nccl.cuda"] == "12.8"


def test_driver_named_by_its_branch(tmp_path):
    from bwdoctor.diagnosis import diagnose

    f = run(tmp_path, "Host: Driver 570, RTX 5090\n")
    assert f["driver.branch"] == 570 and f["driver.cuda_version"] == "12.8" and "driver.version" not in f
    snap, findings = analyze(tmp_path, {"t.md": "Host has the R570 driver, GPU: RTX 5090\n"
                                                "pip install vllm==0.20.1\n"})
    assert snap.get("driver.cuda_version").rank == INFERRED
    drv = [f for f in findings if f.id == "BWD-DRV-003" and f.status == "fail"]
    assert drv and "CUDA 13" in drv[0].message and "inferred" in drv[0].message
    assert diagnose(findings)[0]["root_cause"] == "driver_too_old_for_cuda"
    assert "driver.branch" not in run(tmp_path, "Driver Version: 570.133.20\n")
