"""Hostile input through the real entry point: documented exit codes, one clear line on
standard error, no traceback, no partial or misplaced output file, bounded time."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DATA, ROOT, clean_env, run_cli

LOG = DATA / "evidence" / "engine-gpu-v0.log"


def cli(args, timeout=60, **kw):
    start = time.monotonic()
    code, out, err = run_cli(args, env=kw.pop("env", clean_env()), timeout=timeout, **kw)
    elapsed = time.monotonic() - start
    assert "Traceback" not in err, err
    return code, out, err, elapsed


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("Usage:", "Try '"))]
    assert len(lines) == 1, err
    return lines[0]


def minimal_report(**over) -> dict:
    rep = {"schema_version": 1, "snapshot": {"schema_version": 1, "facts": [], "missing": {}}}
    rep.update(over)
    return rep


BAD_REPORTS = {
    "nested": ("[" * 100000 + "]" * 100000, "nested too deeply"),
    "facts-object": (json.dumps({"schema_version": 1, "snapshot": {"schema_version": 1, "facts": {"a": 1}}}),
                     "'facts' must be a list"),
    "finding-no-id": (json.dumps(minimal_report(findings=[{"title": "x"}])), "findings[0]"),
    "findings-string": (json.dumps(minimal_report(findings="abc")), "'findings' must be a list"),
    "finding-int": (json.dumps(minimal_report(findings=[1])), "findings[0]: expected an object"),
    "schema-string": (json.dumps({"schema_version": "1", "snapshot": minimal_report()["snapshot"]}), "schema_version"),
    "schema-bool": (json.dumps({"schema_version": True, "snapshot": minimal_report()["snapshot"]}), "schema_version"),
    "plan-steps-string": (json.dumps(minimal_report(plans=[{"remedy_id": "x", "title": "t", "steps": "abc"}])),
                          "plans[0]"),
    "argv-string": (json.dumps(minimal_report(plans=[{"remedy_id": "x", "title": "t",
                                                      "steps": [{"description": "d", "argv": "rm -rf /"}]}])),
                    "list of strings"),
    "meta-list": (json.dumps({"schema_version": 1, "snapshot": {"schema_version": 1, "facts": [], "meta": [1]}}),
                  "'meta' must be an object"),
    "duration-object": (json.dumps(minimal_report(duration_s={"a": 1})), "duration_s"),
    "utf16": (None, "not UTF-8"),
    "huge-int": ('{"schema_version":1,"snapshot":{"schema_version":1,"facts":[{"key":"x","value":'
                 + "9" * 5000 + "}]}}", "not a valid bwdoctor report"),
}


@pytest.mark.parametrize("name", sorted(BAD_REPORTS))
def test_malformed_reports_exit_2_with_one_clear_line(tmp_path: Path, name: str):
    text, expect = BAD_REPORTS[name]
    path = tmp_path / "r.json"
    if text is None:
        path.write_bytes(json.dumps(minimal_report()).encode("utf-16"))
    else:
        path.write_text(text)
    code, out, err, _ = cli(["run", "--from", str(path), "--format", "json"])
    assert code == 2, err
    assert expect in one_error_line(err)
    assert out == ""


def test_report_with_a_utf8_bom_and_lone_surrogates_is_read_and_rendered(tmp_path: Path):
    path = tmp_path / "r.json"
    body = ('{"schema_version":1,"snapshot":{"schema_version":1,"facts":'
            '[{"key":"host.note","value":"bad \\ud800 text","source":"x"}]}}')
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    for fmt in ("json", "console", "markdown", "sarif"):
        code, out, err, _ = cli(["run", "--from", str(path), "--format", fmt])
        assert code in (0, 1), err
    code, out, err, _ = cli(["run", "--from", str(path), "--format", "json", "-v"])
    json.loads(out)


def test_too_many_facts_is_refused_quickly(tmp_path: Path):
    path = tmp_path / "r.json"
    facts = ",".join('{"key":"k' + str(i) + '","value":1}' for i in range(200_001))
    path.write_text('{"schema_version":1,"snapshot":{"schema_version":1,"facts":[' + facts + "]}}")
    code, out, err, elapsed = cli(["run", "--from", str(path)])
    assert code == 2 and "200001 facts" in one_error_line(err)
    assert elapsed < 15


def test_special_files_as_report(tmp_path: Path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "dangling").symlink_to(tmp_path / "absent")
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    for name, expect in (("fifo", "not a JSON bwdoctor report"), ("dangling", "No such file"),
                         ("loop1", "symbolic links"), ("/dev/zero", "not a regular file")):
        path = name if name.startswith("/") else str(tmp_path / name)
        code, out, err, elapsed = cli(["run", "--from", path], timeout=30)
        assert code == 2 and expect in one_error_line(err), (name, err)
        assert elapsed < 10


def test_report_through_a_pipe(tmp_path: Path):
    report = tmp_path / "r.json"
    report.write_text(json.dumps(minimal_report()))
    proc = subprocess.run(["bash", "-c", f'"{sys.executable}" -m bwdoctor.cli run --from <(cat "{report}") '
                           "--format json"], capture_output=True, text=True, timeout=60, cwd=str(ROOT),
                          env=clean_env())
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["mode"] == "from"


def test_analyze_special_files_and_folders_finish(tmp_path: Path):
    folder = tmp_path / "evidence"
    folder.mkdir()
    shutil.copy(LOG, folder / "vllm.log")
    os.mkfifo(folder / "a-fifo")
    (folder / "dangling").symlink_to(tmp_path / "absent")
    (folder / "garbage.bin").write_bytes(bytes(range(256)) * 4000 + b"\x00" * 1000)
    code, out, err, elapsed = cli(["analyze", str(folder), "--format", "json"], timeout=60)
    assert code in (0, 1), err
    assert elapsed < 20
    report = json.loads(out)
    msgs = " | ".join(f["message"] for f in report["findings"] if f["id"] == "BWD-CORE-006")
    assert "a-fifo: not a regular file" in msgs and "dangling: not a regular file" in msgs
    assert any(i.endswith("vllm.log") for i in report["inputs"])
    assert report["snapshot"]["facts"], "the readable log still gave facts"
    # named on the command line, a device or a pipe that brings nothing is a usage error naming it
    named_fifo = tmp_path / "fifo"
    os.mkfifo(named_fifo)
    for named in ("/dev/zero", str(named_fifo)):
        code, out, err, elapsed = cli(["analyze", str(folder), named, "--format", "json"], timeout=60)
        assert code == 2 and named in err and out == "" and elapsed < 20, (named, err)


def test_analyze_reads_a_pipe(tmp_path: Path):
    proc = subprocess.run(["bash", "-c", f'"{sys.executable}" -m bwdoctor.cli analyze <(cat "{LOG}") '
                           "--format json"], capture_output=True, text=True, timeout=60, cwd=str(ROOT),
                          env=clean_env())
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    keys = {f["key"] for f in report["snapshot"]["facts"]}
    assert "vllm.config" in keys, keys
    assert not any("pipe-" in json.dumps(f) for f in report["snapshot"]["facts"]), "the spool file leaked"


def test_a_folder_of_many_files_is_capped_and_says_so(tmp_path: Path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(520):
        (folder / f"f{i:04d}.txt").write_text(f"line {i}\n")
    code, out, err, elapsed = cli(["analyze", str(folder), "--format", "json"])
    assert code == 0, err
    report = json.loads(out)
    assert len(report["inputs"]) == 500
    assert any("only the first 500 were read" in f["message"] for f in report["findings"])


def test_unicode_and_undecodable_file_names(tmp_path: Path):
    folder = tmp_path / "üñí cødé ☃"
    folder.mkdir()
    shutil.copy(LOG, folder / "lög.log")
    odd = os.fsencode(tmp_path) + b"/bad\xffname.log"
    with open(odd, "wb") as fh:
        fh.write(LOG.read_bytes())
    odd_arg = os.fsdecode(odd)
    for fmt in ("json", "console", "markdown", "junit", "sarif"):
        code, out, err, _ = cli(["analyze", str(folder), odd_arg, "--format", fmt])
        assert code in (0, 1), err
        assert out
    out_file = tmp_path / "out ☃.json"
    code, out, err, _ = cli(["analyze", odd_arg, "--format", "json", "-o", str(out_file)])
    assert code in (0, 1), err
    assert "bad" in json.loads(out_file.read_text(encoding="utf-8"))["inputs"][0]


def test_output_targets(tmp_path: Path):
    args = ["analyze", str(LOG), "--format", "json"]
    # a FIFO nobody reads: an error, and the FIFO is left in place
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code, out, err, elapsed = cli([*args, "-o", str(fifo)])
    assert code == 3 and "nothing is reading" in one_error_line(err) and elapsed < 10
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    # a symlink: the file it names is replaced, the link stays a link
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    code, out, err, _ = cli([*args, "-o", str(link)])
    assert code in (0, 1), err
    assert link.is_symlink() and json.loads(real.read_text())["mode"] == "analyze"
    # a dangling link into a missing folder: exit 3, nothing created
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "no" / "where.json")
    code, out, err, _ = cli([*args, "-o", str(dangling)])
    assert code == 3 and "cannot write" in one_error_line(err)
    assert dangling.is_symlink() and not (tmp_path / "no").exists()
    # a directory, a missing directory, /dev/full
    code, out, err, _ = cli([*args, "-o", str(tmp_path)])
    assert code == 2
    code, out, err, _ = cli([*args, "-o", str(tmp_path / "missing" / "r.json")])
    assert code == 3 and "cannot write" in one_error_line(err)
    if os.path.exists("/dev/full"):
        code, out, err, _ = cli([*args, "-o", "/dev/full"])
        assert code == 3 and "No space left" in one_error_line(err)
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode), "the device must never be replaced"
    # /dev/stdout into a pipe
    code, out, err, _ = cli([*args, "-o", "/dev/stdout"])
    assert code in (0, 1) and json.loads(out)["mode"] == "analyze"
    assert not [p for p in tmp_path.rglob(".bwdoctor-*")], "no temporary file left behind"


def test_fix_script_output_targets(tmp_path: Path):
    code, out, err, _ = cli(["fix", str(DATA / "evidence" / "crash-torch-arch.log"), "-o",
                             str(tmp_path / "missing" / "fix.sh")])
    assert code == 3 and "cannot write" in one_error_line(err)
    code, out, err, _ = cli(["fix", str(DATA / "evidence" / "crash-torch-arch.log"), "--apply", "--dry-run"])
    assert code == 0, err


def test_usage_errors(tmp_path: Path):
    for args, expect in ((["run", "--format", "nonsense"], "unknown format"),
                         (["analyze", str(LOG), "--format", ""], "unknown format"),
                         (["run", "--target", "sm_999"], "unknown compute capability"),
                         (["fix", "--target", "☃"], "unknown target"),
                         (["analyze", str(tmp_path / "absent.log")], "No such file or directory")):
        code, out, err, elapsed = cli(args)
        assert code == 2 and expect in one_error_line(err), (args, err)
        assert elapsed < 10


def test_select_that_matches_nothing_is_a_usage_error(tmp_path: Path):
    code, out, err, _ = cli(["analyze", str(LOG), "--select", "BWD-TYPO-999", "--format", "json"])
    assert code == 2 and out == ""
    assert "--select: 'BWD-TYPO-999' matches no check" in err
    code, out, err, _ = cli(["analyze", str(LOG), "--select", "BWD-CORE-006", "--format", "json"])
    assert "matches no check" not in err
