"""Project-wide contracts: check ids, documentation, and what built-in plugins may import."""

import ast
import re
from pathlib import Path

from click.testing import CliRunner

from bwdoctor.cli import cli
from bwdoctor.manager import PluginManager, builtin_modules
from bwdoctor.runner import CORE_CHECKS
from bwdoctor.types import CHECK_ID_RE, LEVELS, ROOT_CAUSES

from conftest import ROOT

PUBLIC = {"bwdoctor", "bwdoctor.kb", "bwdoctor.resolve", "bwdoctor.isolation", "bwdoctor.fixscript", "bwdoctor.progress",
          "bwdoctor.redact", "bwdoctor.lazy", "bwdoctor.term", "bwdoctor.usercache"}


def registry():
    pm = PluginManager(entry_points=False)
    assert pm.problems == [], [p.message for p in pm.problems]
    reg = pm.registry()
    assert pm.problems == [], [p.message for p in pm.problems]
    return reg


def test_builtin_plugins_all_load():
    names = [name for _, name in builtin_modules()]
    assert "collectors.host" in names
    pm = PluginManager(entry_points=False)
    pm.registry()
    assert [p.message for p in pm.problems] == []
    assert all(i.status == "loaded" for i in pm.infos.values())


def test_check_ids_are_unique_and_well_formed():
    reg = registry()
    ids = [c.id for c in reg.checks]
    assert set(CORE_CHECKS) <= set(ids)
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for cid in ids:
        assert CHECK_ID_RE.match(cid), cid
    for c in reg.checks:
        assert c.level in LEVELS, c.id
        assert c.root_cause is None or c.root_cause in ROOT_CAUSES, (c.id, c.root_cause)
        assert c.area == c.id.split("-")[1]


def test_every_check_is_documented_and_explain_shows_it():
    reg = registry()
    runner = CliRunner()
    for c in list(reg.checks):
        assert c.title.strip(), c.id
        assert len(c.doc.strip()) >= 60, f"{c.id} needs a real doc (what, why, how judged, what to do)"
        res = runner.invoke(cli, ["explain", c.id], obj=None)
        assert res.exit_code == 0, (c.id, res.output)
        assert c.doc.strip().split()[0] in res.output
    for cid in CORE_CHECKS:
        res = runner.invoke(cli, ["explain", cid])
        assert res.exit_code == 0 and cid in res.output


def test_collector_parser_remedy_ids_are_unique():
    reg = registry()
    for items in (reg.collectors, reg.parsers, reg.remedies, reg.reporters):
        names = [getattr(i, "id", None) or i.name for i in items]
        assert len(names) == len(set(names)), names


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name, 0
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, node.module or "", node.level


def test_builtin_plugins_import_only_the_public_api():
    """Plugins import the public bwdoctor API and their own package's private ``_lib``/``_common``,
    never another plugin module."""
    bad = []
    for pkg in ("bwdoctor_checks", "bwdoctor_remedies"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT)
            for line, mod, level in _imports(path):
                if level:  # relative: only the package's own _helpers
                    if mod and not mod.split(".")[0].startswith("_"):
                        bad.append(f"{rel}:{line} relative import of {mod}")
                    continue
                top = mod.split(".")[0]
                if top == "bwdoctor":
                    if mod not in PUBLIC and not mod.startswith("bwdoctor.kb."):
                        bad.append(f"{rel}:{line} imports host internals {mod}")
                elif top in ("bwdoctor_checks", "bwdoctor_remedies"):
                    parts = mod.split(".")
                    if top != pkg or len(parts) < 2 or not parts[1].startswith("_"):
                        bad.append(f"{rel}:{line} imports another plugin {mod}")
    assert bad == []


# What a pure check module may not use: the outside world is read by collectors only.
IMPURE_MODULES = ("subprocess", "requests", "pynvml", "socket", "urllib.request", "http.client", "ctypes", "shutil",
                  "tempfile", "mmap")
IMPURE_CALLS = ("open", "read_text", "read_bytes", "write_text", "write_bytes", "iterdir", "glob", "rglob", "listdir",
                "scandir", "walk", "system", "popen")


def test_check_modules_are_pure():
    bad = []
    for path in sorted((ROOT / "bwdoctor_checks" / "checks").glob("*.py")):
        rel = path.relative_to(ROOT)
        for line, mod, _ in _imports(path):
            if any(mod == m or mod.startswith(m + ".") for m in IMPURE_MODULES):
                bad.append(f"{rel}:{line} imports {mod}")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
                if name in IMPURE_CALLS:
                    bad.append(f"{rel}:{node.lineno} calls {name}()")
    assert bad == []


def test_plugin_folders_are_import_names():
    for pkg in ("bwdoctor_checks", "bwdoctor_remedies"):
        assert (ROOT / pkg / "__init__.py").is_file()
    for role in ("collectors", "parsers", "checks", "commands"):
        mods = [p.stem for p in (ROOT / "bwdoctor_checks" / role).glob("*.py") if p.stem != "__init__"]
        assert mods, role
        names = {n for _, n in builtin_modules()}
        assert {f"{role}.{m}" for m in mods} <= names, f"{role} modules missing from DEFAULT_PLUGINS"


def test_builtin_plugins_never_import_torch_or_vllm_at_module_level():
    bad = []
    for folder in ("bwdoctor_checks", "bwdoctor_remedies", "bwdoctor"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text())
            for node in tree.body:
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                for n in names:
                    if re.match(r"^(torch|vllm|triton|flashinfer)(\.|$)", n):
                        bad.append(f"{path.relative_to(ROOT)}: {n}")
    assert bad == []


def test_docs_check_catalogue_lists_every_check():
    text = (ROOT / "docs" / "checks.md").read_text()
    missing = [c.id for c in registry().checks if f"## {c.id} " not in text] + \
              [cid for cid in CORE_CHECKS if f"## {cid} " not in text]
    assert missing == [], f"regenerate with: bwdoctor list --format markdown > docs/checks.md ({missing})"
