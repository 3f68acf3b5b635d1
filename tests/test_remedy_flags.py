"""Unread VLLM_* variables become the real settings of the release the configuration will run."""

import json
import shlex

from bwdoctor_remedies.configfiles import fix_env_vars, merge_flags, serve_flags


def test_variable_replacement_on_releases_before_the_flag_existed():
    text = "VLLM_USE_FLASHINFER=true\nOTHER=1\n"
    new, found = fix_env_vars(text, "dotenv", "0.6.2")
    lines = new.splitlines()
    assert lines[0].startswith("# VLLM_USE_FLASHINFER=true")
    assert lines[1] == "VLLM_ATTENTION_BACKEND=FLASHINFER"
    assert lines[2] == "OTHER=1"
    assert serve_flags(found, "0.6.2") == (None, [])


def test_flag_replacement_on_newer_releases_and_no_duplicates():
    text = ("VLLM_USE_FLASHINFER=1\nVLLM_ENABLE_FP8=true\nVLLM_QUANTIZATION=fp8\nVLLM_MODEL=org/model-FP8\n"
            "VLLM_SPECULATIVE_MODEL=org/draft\nVLLM_NUM_SPECULATIVE_TOKENS=5\n")
    new, found = fix_env_vars(text, "dotenv", "0.33.0")
    assert all(line.startswith("# VLLM_") for line in new.splitlines())
    model, flags = serve_flags(found, "0.33.0")
    assert model == "org/model-FP8"
    assert flags.count("--quantization") == 1
    assert flags[flags.index("--attention-backend") + 1] == "FLASHINFER"
    spec = json.loads(flags[flags.index("--speculative-config") + 1])
    assert spec == {"model": "org/draft", "num_speculative_tokens": 5}
    assert shlex.split(shlex.join(flags)) == flags


def test_merge_flags_keeps_the_first_value_of_each_flag():
    assert merge_flags(["--a", "1"], ["--a", "2", "--b", "--c", "3"]) == ["--a", "1", "--b", "--c", "3"]
