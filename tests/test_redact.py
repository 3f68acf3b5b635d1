import pytest
from hypothesis import given
from hypothesis import strategies as st

from bwdoctor.redact import REDACTED, is_secret_name, redact, redact_text


@pytest.mark.parametrize("name", ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "GITHUB_TOKEN", "apiKey", "OPENAI_API_KEY",
                                  "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "authorization", "VLLM_API_KEY",
                                  "NGC_API_KEY", "client_secret"])
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["tokens", "decode_tokens_per_s", "kv_cache_token_count", "max_tokens",
                                  "TOKENIZERS_PARALLELISM", "tokenizer_mode", "VLLM_MAX_NUM_BATCHED_TOKENS", "author",
                                  "signature", "prompt_tokens", "secretary"])
def test_names_that_only_look_secret(name):
    assert not is_secret_name(name)


def test_structures_keep_numbers_and_lose_secret_strings():
    data = {"host.env": {"HF_TOKEN": "abc", "CUDA_VISIBLE_DEVICES": "0"}, "kv": {"tokens": 1048576},
            "items": [{"name": "DB_PASSWORD", "value": "hunter2"}, {"name": "MODEL", "value": "m"}]}
    out = redact(data)
    assert out["host.env"] == {"HF_TOKEN": REDACTED, "CUDA_VISIBLE_DEVICES": "0"}
    assert out["kv"] == {"tokens": 1048576}
    assert out["items"] == [{"name": "DB_PASSWORD", "value": REDACTED}, {"name": "MODEL", "value": "m"}]


def test_a_package_named_secret_keeps_its_version():
    packages = {"detect-secrets": {"version": "1.5.0"}, "vllm": {"version": "0.32.0"}}
    assert redact({"key": "packages", "value": packages})["value"] == packages
    assert redact({"client_secret": {"version": "3", "value": "s3cr3t-value"}}) == {
        "client_secret": {"version": "3", "value": REDACTED}}


def test_text_patterns():
    text = ("HF_TOKEN=hf_abcdefghijklmnopqrstuvwx and --api-key sk-proj-abcdefghijklmnop1234 to "
            "https://bob:pa55word@example.com/x; Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345 "
            "max_num_batched_tokens=8192")
    out = redact_text(text)
    for secret in ("hf_abcdefghijklmnopqrstuvwx", "sk-proj-abcdefghijklmnop1234", "pa55word",
                   "abcdefghijklmnopqrstuvwxyz012345"):
        assert secret not in out
    assert "max_num_batched_tokens=8192" in out and "https://bob:" in out


def test_detect_secrets_detectors_contribute_their_shapes():
    """The maintained detector's token shapes are really in use (a broken import or an abstract
    base class must not silently leave only the built-in shapes)."""
    from bwdoctor import redact

    assert len(redact._detect_secrets_patterns()) >= 10
    # shapes only detect-secrets knows here: a Mailchimp key, a Twilio key
    for token in ("0123456789abcdef0123456789abcdef-us12", "SK0123456789abcdef0123456789abcdef"):
        assert token not in redact.redact_text(f"key {token} here")


def test_detect_secrets_shapes_are_cached_per_detector_files(tmp_path, monkeypatch):
    """The derived shapes are written once to the cache folder and read back from it; a cache that
    is corrupt, or a folder that cannot be written, falls back to deriving them again."""
    from bwdoctor import redact

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    fresh = redact._detect_secrets_patterns()
    files = list((tmp_path / "bwdoctor").glob("detect-secrets-patterns-*.json"))
    assert len(files) == 1 and fresh
    assert not list((tmp_path / "bwdoctor").glob("*.tmp"))

    def fail() -> list[str]:
        raise AssertionError("derived again although the cache is valid")

    monkeypatch.setattr(redact, "_derive_detect_secrets", fail)
    assert redact._detect_secrets_patterns() == fresh

    files[0].write_text("{not json", encoding="utf-8")
    monkeypatch.setattr(redact, "_derive_detect_secrets", lambda: ["(?:x)"])
    assert redact._detect_secrets_patterns() == ["(?:x)"]

    blocked = tmp_path / "file-not-folder"
    blocked.write_text("", encoding="utf-8")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    assert redact._detect_secrets_patterns() == ["(?:x)"]


def test_every_token_shape_is_at_least_the_short_text_bound():
    """redact_text returns texts shorter than SHORTEST_TOKEN without white space, '=' or ':'
    unchanged; that is only sound while no token shape can match fewer characters."""
    import re._parser as sre_parse  # the engine's own parser gives a pattern's minimum width

    from bwdoctor import redact

    shapes = [*redact._BUILTIN_TOKENS, *redact._detect_secrets_patterns()]
    widths = {p: sre_parse.parse(p).getwidth()[0] for p in shapes}
    assert min(widths.values()) >= redact.SHORTEST_TOKEN, min(widths.items(), key=lambda kv: kv[1])


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=7))
def test_short_texts_take_the_fast_path_with_the_same_result(text):
    from bwdoctor import redact

    fast = redact.redact_text(text)
    slow_bound = redact.SHORTEST_TOKEN
    try:
        redact.SHORTEST_TOKEN = 0  # force the full scan
        assert redact.redact_text(text) == fast
    finally:
        redact.SHORTEST_TOKEN = slow_bound
