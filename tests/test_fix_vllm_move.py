"""`bwdoctor fix` on a folder of deployment files whose vLLM has no kernels for the GPU: once the
Dockerfile's base image becomes the official image of the release the fix moves to, a
`pip install vllm` in it is dropped (the image has that vLLM), and torch advice follows the new
release instead of the old one's torch pin."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from dockerfile_parse import DockerfileParser

from bwdoctor import resolve
from bwdoctor.cli import cli
from bwdoctor_remedies.configfiles import drop_vllm_install

SEED = Path(__file__).parent / "data" / "remedy" / "seed-config"
TARGET = ["--target", "rtx-pro-6000"]


def _fix(folder: Path, *extra: str):
    return CliRunner().invoke(cli, ["fix", str(folder), *TARGET, *extra], catch_exceptions=False)


def _instructions(text: str) -> list[tuple[str, str]]:
    dfp = DockerfileParser(fileobj=io.BytesIO(text.encode()), env_replace=False)
    return [(str(i["instruction"]).upper(), str(i["value"])) for i in dfp.structure]


def _recommended() -> str:
    from bwdoctor import kb
    from bwdoctor.types import Snapshot

    snap = Snapshot()
    snap.set("target", kb.resolve_target("rtx-pro-6000"), "test")
    rec, _ = resolve.recommended_vllm(snap)
    assert rec
    return rec


def _folder(tmp_path: Path, dockerfile: str) -> Path:
    work = tmp_path / "deploy"
    shutil.copytree(SEED, work)
    (work / "README.md").unlink()
    (work / "Dockerfile").write_text(dockerfile)
    return work


def _apply_twice(work: Path) -> str:
    preview = _fix(work, "--apply", "--dry-run")
    assert preview.exit_code == 0, preview.output
    assert "torch 2.4.0" not in preview.output and "torch==2.4.0" not in preview.output
    before = (work / "Dockerfile").read_text()
    applied = _fix(work, "--apply", "--yes")
    assert applied.exit_code == 0, applied.output
    assert "torch 2.4.0" not in applied.output
    after = (work / "Dockerfile").read_text()
    assert after != before
    again = _fix(work, "--apply", "--yes")
    assert again.exit_code == 0, again.output
    assert (work / "Dockerfile").read_text() == after
    return after


def test_seed_dockerfile_pin_goes_with_the_old_base(tmp_path: Path) -> None:
    work = _folder(tmp_path, (SEED / "Dockerfile").read_text())
    rec = _recommended()
    preview = _fix(work, "--apply", "--dry-run")
    assert preview.exit_code == 0, preview.output
    assert (work / "Dockerfile").read_text() == (SEED / "Dockerfile").read_text()  # a dry run writes nothing
    assert f"Install vLLM {rec}" in preview.output
    assert "torch.reinstall-cuda-variant" not in preview.output  # the new image brings its own torch
    after = _apply_twice(work)
    parsed = _instructions(after)
    assert [v for k, v in parsed if k == "FROM"] == [f"vllm/vllm-openai:v{rec}"]
    assert not [v for k, v in parsed if k == "RUN"]
    assert "0.6.2" not in after and "vllm==" not in after


def test_other_packages_and_flags_stay_over_continued_lines(tmp_path: Path) -> None:
    text = ("FROM vllm/vllm-openai:v0.6.3.post1 AS serve\n"
            "\n"
            "# pin 0.6.3 for the scheduler fix\n"
            "RUN apt-get update && \\\n"
            "    python3 -m pip install --no-cache-dir \\\n"
            "      --extra-index-url https://example.org/simple \\\n"
            "      'vllm[audio]==0.6.3.post1' \\\n"
            "      hf_transfer==0.1.8 && \\\n"
            "    rm -rf /var/lib/apt/lists/*\n"
            "RUN pip install vllm>=0.6 && echo done\n"
            "CMD [\"vllm\", \"serve\"]\n")
    work = _folder(tmp_path, text)
    rec = _recommended()
    after = _apply_twice(work)
    parsed = _instructions(after)
    assert [k for k, _ in parsed if k != "COMMENT"] == ["FROM", "RUN", "RUN", "CMD"]
    assert parsed[0] == ("FROM", f"vllm/vllm-openai:v{rec} AS serve")
    runs = [v.split() for k, v in parsed if k == "RUN"]
    assert runs[0] == ["apt-get", "update", "&&", "python3", "-m", "pip", "install", "--no-cache-dir",
                       "--extra-index-url", "https://example.org/simple", "hf_transfer==0.1.8", "&&",
                       "rm", "-rf", "/var/lib/apt/lists/*"]
    assert runs[1] == ["echo", "done"]
    assert "0.6.3" not in after  # the comment that named the old pin was rewritten
    assert f"# vLLM {rec} comes with the base image" in after


def test_a_stage_not_moved_keeps_its_install(tmp_path: Path) -> None:
    text = ("FROM python:3.12-slim AS tools\n"
            "RUN pip install vllm==0.10.2\n"
            "FROM nvidia/cuda:12.1.1-devel-ubuntu22.04\n"
            "RUN pip3 install -U vllm==0.6.2\n")
    work = _folder(tmp_path, text)
    rec = _recommended()
    after = _apply_twice(work)
    parsed = [(k, v) for k, v in _instructions(after) if k != "COMMENT"]
    assert parsed == [("FROM", "python:3.12-slim AS tools"), ("RUN", f"pip install vllm=={rec}"),
                      ("FROM", f"vllm/vllm-openai:v{rec}")]


@pytest.mark.parametrize(("block", "new", "removed"), [
    ("RUN pip install vllm==0.5.4\n", "", ["vllm==0.5.4"]),
    ("RUN pip3 install --upgrade vllm ray==2.9.0\n", "RUN pip3 install --upgrade ray==2.9.0\n", ["vllm"]),
    ("RUN python -m pip install -r req.txt vllm==0.5.4\n", "RUN python -m pip install -r req.txt\n", ["vllm==0.5.4"]),
    ("RUN pip install \\\n  numpy \\\n  vllm==0.5.4\n", "RUN pip install \\\n  numpy\n", ["vllm==0.5.4"]),
    ("RUN echo a && pip install vllm==0.5.4\n", "RUN echo a\n", ["vllm==0.5.4"]),
    ("RUN pip install vllm-flash-attn==2.5\n", None, []),  # another project
    ("RUN [\"pip\", \"install\", \"vllm==0.5.4\"]\n", None, []),  # exec form: left as is
    ("RUN pip install -i https://x/vllm vllm==0.5.4; echo x\n", None, []),  # ';' chain: left to the user
])
def test_drop_vllm_install(block: str, new: str | None, removed: list[str]) -> None:
    assert drop_vllm_install(block) == (new, removed)


def test_an_official_image_brings_its_torch() -> None:
    from bwdoctor import kb
    from bwdoctor.types import Snapshot
    from bwdoctor_remedies.pystack import _brings_torch

    snap = Snapshot()
    snap.set("target", kb.resolve_target("rtx-pro-6000"), "test")
    # torch 2.7's default PyPI build (cu126) has no kernels for compute capability 12.0 ...
    assert _brings_torch(snap, "0.10.1", "2.7.1") is None
    # ... but a compose service's official image of the release carries the build it was made with
    snap.set("config.vllm_pin", {"version": "0.6.2", "origin": "image", "image": "vllm/vllm-openai:v0.6.2"}, "test")
    assert "vllm/vllm-openai:v0.10.1" in str(_brings_torch(snap, "0.10.1", "2.7.1"))
