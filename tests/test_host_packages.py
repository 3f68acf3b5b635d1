"""The package collector reads dist-info folder names (fast) and must agree with importlib.metadata."""

import sys
from importlib.metadata import distributions
from pathlib import Path

from packaging.utils import canonicalize_name

from bwdoctor_checks.collectors.host import STACK_PACKAGES, collect_packages, detect_container


def test_agrees_with_importlib_metadata_on_this_environment():
    [fact] = list(collect_packages(None))
    fast = fact.value
    slow = {}
    for d in distributions():
        name = d.metadata["Name"]
        if name:
            slow.setdefault(canonicalize_name(name), d)
    assert set(fast) == set(slow)
    for name, dist in slow.items():
        assert fast[name]["version"] == dist.version, name
        if STACK_PACKAGES.match(name):
            assert sorted(fast[name]["requires"]) == sorted(dist.requires or []), name


def test_reads_dist_info_and_egg_info_first_copy_wins(tmp_path: Path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
    (a / "torchvision-0.22.0.dist-info").mkdir()
    (a / "torchvision-0.22.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: torchvision\nVersion: 0.22.0\nRequires-Dist: torch==2.7.0\n"
        "Requires-Dist: numpy\n\nRequires-Dist: not-a-header\n")
    (b / "torchvision-0.21.0.dist-info").mkdir()
    (b / "torchvision-0.21.0.dist-info" / "METADATA").write_text("Name: torchvision\nVersion: 0.21.0\n\n")
    (b / "Old_Pkg.egg-info").mkdir()
    (b / "Old_Pkg.egg-info" / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: Old_Pkg\nVersion: 1.2\n")
    monkeypatch.setattr(sys, "path", [str(a), str(b), str(tmp_path / "missing")])
    [fact] = list(collect_packages(None))
    assert fact.value["torchvision"] == {"version": "0.22.0", "requires": ["torch==2.7.0", "numpy"]}
    assert fact.value["old-pkg"] == {"version": "1.2"}


def test_container_detection_markers():
    assert detect_container({}, "", False, True) == "podman"
    assert detect_container({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "", True, False) == "kubernetes"
    assert detect_container({}, "0::/", True, False) == "docker"
    assert detect_container({}, "12:cpu:/docker/abc", False, False) == "docker"
    assert detect_container({}, "0::/init.scope", False, False) is None
