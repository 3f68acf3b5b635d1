"""Property-based tests: the config parsers never raise, whatever the input."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bwdoctor_checks.parsers.config as pc
from bwdoctor import Fact
from bwdoctor.kb import vllm as V
from bwdoctor.runner import load_evidence

PARSERS = [(pc.detect_dockerfile, pc.parse_dockerfile), (pc.detect_compose, pc.parse_compose),
           (pc.detect_dotenv, pc.parse_dotenv), (pc.detect_cmdline, pc.parse_cmdline)]

# fragments that steer random text into each parser's code paths
FRAGMENTS = ["FROM ", "nvidia/cuda:12.4.1-runtime", "RUN pip install ", "vllm==", "ENV ", "ARG X=", "${X}",
             "services:\n", "  vllm:\n", "    environment:\n", "      - ", "    ipc: ", "shm_size: ", "deploy:",
             "VLLM_ENABLE_FP8=", "export ", "docker run ", "--gpus ", "vllm serve ", "-tp ", "--shm-size=",
             "\\\n", "> ", "'", "\"", "[", "]", "{", "}", ":", "=", "\n", "```", "\t", "\x00", "é", "\ud7ff"]

text_st = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=20)), max_size=40).map("".join)
name_st = st.sampled_from(["Dockerfile", "docker-compose.yml", ".env", "notes.txt", "blob"])


def _run_all(path: Path) -> None:
    ev = load_evidence(path)
    for detect, parse in PARSERS:
        detect(ev)  # must not raise
        facts = list(parse(ev))  # parse runs even when detection says no: still must not raise
        assert all(isinstance(f, Fact) for f in facts)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=2048), name=name_st)
def test_binary_garbage_never_raises(data, name):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_bytes(data)
        _run_all(p)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=text_st, name=name_st)
def test_structured_noise_never_raises(text, name):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_bytes(text.encode("utf-8", errors="surrogatepass"))
        _run_all(p)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=15), max_size=12))
def test_arg_parsers_total(tokens):
    pc.parse_serve_args(tokens)
    pc.requested_from_args(pc.parse_serve_args(tokens))
    pc.parse_docker_run(["docker", "run", *tokens])
    pc.parse_pip_install(tokens)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_kb_lookups_total(s):
    V.resolve_version(s)
    V.vllm_min_for_cc(s)
    V.supports_native_fp8(s)
    V.env_var_replacement(s, s)
    V.read_envs_text(s)
    pc.parse_size(s)
    pc.image_info(s)
