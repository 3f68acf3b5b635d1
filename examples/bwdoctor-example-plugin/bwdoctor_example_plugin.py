"""A minimal third-party bwdoctor plugin.

It contributes one collector (the number of open file descriptors allowed, which vLLM's API
server needs plenty of under load) and one check on that fact. Install it with
``pip install examples/bwdoctor-example-plugin`` and it appears in ``bwdoctor plugins``.
"""

from __future__ import annotations

import resource

from bwdoctor import CheckSpec, CollectorSpec, Fact, hookimpl, passed, warned

MIN_NOFILE = 65536


def collect_limits(options):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield Fact("example.nofile", {"soft": soft, "hard": hard}, "getrlimit(RLIMIT_NOFILE)")


def check_nofile(snapshot):
    lim = snapshot.value("example.nofile")
    soft = lim["soft"]
    if soft != resource.RLIM_INFINITY and soft < MIN_NOFILE:
        return warned(f"open-files limit is {soft} (< {MIN_NOFILE}): a busy vLLM API server can run out of "
                      f"sockets; raise it with `ulimit -n {MIN_NOFILE}` or the container's --ulimit nofile",
                      evidence=["example.nofile"])
    return passed(f"open-files limit is {soft}", evidence=["example.nofile"])


@hookimpl
def bwdoctor_collectors():
    return [CollectorSpec(name="example.limits", func=collect_limits, provides=["example.*"])]


@hookimpl
def bwdoctor_checks():
    return [CheckSpec(id="BWD-EXAMPLE-001", title="Open-files limit is high enough for a vLLM server",
                      func=check_nofile, needs=["example.nofile"],
                      doc="vLLM's OpenAI server holds one socket per connection. A soft RLIMIT_NOFILE below "
                          f"{MIN_NOFILE} can make it refuse connections under load. No automatic remedy: the "
                          "limit is set by the shell, systemd unit or container runtime that starts the server.")]
