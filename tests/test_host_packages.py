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


def test_one_finder_serves_the_package_list_and_the_stack_collectors(tmp_path: Path):
    """The package list and the stack collectors read the same metadata folders: versions with a
    local part from the folder name, files from RECORD relative to the site folder."""
    from bwdoctor import RunOptions
    from bwdoctor_checks._lib import dists

    site = tmp_path / "site"
    info = site / "torch-2.9.0+cu130.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.9.0+cu130\n"
                                   "Requires-Dist: triton==3.5.0; platform_system == \"Linux\"\n")
    (site / "torch").mkdir()
    (site / "torch" / "version.py").write_text("__version__ = '2.9.0+cu130'\ncuda = '13.0'\n")
    (info / "RECORD").write_text("torch/version.py,,\ntorch-2.9.0+cu130.dist-info/METADATA,,\n")
    opts = RunOptions(extra={"site_packages": [str(site)]})
    found = dists.distributions(opts)
    assert set(found) == {"torch"}
    torch = found["torch"]
    assert torch.version == "2.9.0+cu130" and torch.requires == ['triton==3.5.0; platform_system == "Linux"']
    assert [str(f) for f in torch.files] == ["torch/version.py", "torch-2.9.0+cu130.dist-info/METADATA"]
    assert torch.locate_file("torch/version.py") == site / "torch" / "version.py"
    [fact] = list(collect_packages(opts))
    assert fact.value["torch"]["version"] == torch.version
