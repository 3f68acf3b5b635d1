"""Inputs and Unix habits through the real entry point: standard input, bwdoctor's own reports and
snapshots, inputs that cannot be used (exit 2 naming them), evidence of different machines,
truncated GPU names, facts read from prose; pipes, Ctrl-C, locales, width, NO_COLOR, --output."""

import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

LOCAL_SMI = ROOT / "tests" / "data" / "evidence" / "h200-nvidia-smi.txt"


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BWDOCTOR_") and k not in ("COLUMNS", "NO_COLOR")}
    env["PATH"] = "/usr/bin:/bin"
    env.update(extra)
    return env


def smi_text(name: str | None = None) -> str:
    text = LOCAL_SMI.read_text()
    if name is not None:
        old = "NVIDIA H200                    On"
        assert old in text
        text = text.replace(old, name.ljust(len(old) - 2) + "On")
    return text


def analyze_json(args, **kw):
    code, out, err = run_cli(["analyze", *args, "--format", "json"], env=clean_env(), **kw)
    assert "Traceback" not in err, err
    return code, (json.loads(out) if out.strip() else None), err


def gpu0(report):
    return next(f["value"] for f in report["snapshot"]["facts"] if f["key"] == "gpu.0")


def test_analyze_reads_standard_input():
    code, rep, _ = analyze_json(["-"], input=smi_text())
    assert code == 0 and gpu0(rep)["name"] == "NVIDIA H200"
    assert rep["inputs"] == ["/dev/stdin"]


@pytest.mark.parametrize("case", ["device", "missing", "unrecognised", "empty-folder", "unrecognised-stdin"])
def test_unusable_named_inputs_exit_2_with_their_name(case, tmp_path):
    stdin = None
    if case == "device":
        path = "/dev/zero"
    elif case == "missing":
        path = str(tmp_path / "absent.log")
    elif case == "unrecognised":
        path = str(tmp_path / "notes.txt")
        Path(path).write_text("lunch at noon, then the quarterly planning meeting\n")
    elif case == "empty-folder":
        path = str(tmp_path / "empty")
        Path(path).mkdir()
    else:
        path, stdin = "-", "nothing anybody would recognise\n"
    code, out, err = run_cli(["analyze", path], env=clean_env(), input=stdin)
    assert code == 2 and out == "" and "Traceback" not in err
    assert (path if path != "-" else "standard input") in err


def test_snapshot_feeds_run_from_and_analyze(tmp_path):
    snap = tmp_path / "snap.json"
    code, _, err = run_cli(["snapshot", "-o", str(snap)], env=clean_env())
    assert code == 0 and f"to {snap}" in err
    facts = json.loads(snap.read_text())["facts"]
    code, out, err = run_cli(["run", "--from", str(snap), "--format", "json"], env=clean_env())
    rep = json.loads(out)
    assert code == 1 and rep["mode"] == "from" and rep["snapshot"]["facts"] == facts
    assert rep["verdict"]["status"] == "not ready"  # this environment has no vLLM, as recorded
    code, rep, _ = analyze_json([str(snap)])
    assert rep["inputs"] == [str(snap)] and {f["key"] for f in rep["snapshot"]["facts"]} >= {f["key"] for f in facts}


def test_a_report_and_evidence_of_the_same_machine_are_analyzed_together(tmp_path):
    code, rep, _ = analyze_json([str(LOCAL_SMI)])
    stored = tmp_path / "report.json"
    stored.write_text(json.dumps(rep))
    log = tmp_path / "pip.txt"
    log.write_text("Package Version\n------- -------\ntorch 2.8.0+cu128\nvllm 0.11.0\n")
    code, rep, _ = analyze_json([str(stored), str(log)])
    assert gpu0(rep)["name"] == "NVIDIA H200"
    facts = {f["key"]: f["value"] for f in rep["snapshot"]["facts"]}
    assert facts["vllm"]["version"] == "0.11.0"


def test_evidence_of_two_machines_is_refused_with_the_groups(tmp_path):
    a, b = tmp_path / "a-smi.txt", tmp_path / "b-smi.txt"
    a.write_text(smi_text())
    b.write_text(smi_text("NVIDIA RTX 6000 Ada Generation").replace("580.159.04", "550.120"))
    code, out, err = run_cli(["analyze", str(a), str(b)], env=clean_env())
    assert code == 2 and out == ""
    assert "different machines" in err and str(a) in err and str(b) in err and "NVIDIA H200" in err


def test_truncated_gpu_names_are_expanded_or_given_their_candidates(tmp_path):
    one = tmp_path / "one.txt"
    one.write_text(smi_text("NVIDIA RTX 6000 Ada Gener..."))
    code, rep, _ = analyze_json([str(one)])
    g = gpu0(rep)
    assert g["name"] == "NVIDIA RTX 6000 Ada Generation" and g["name_expanded"] is True
    assert g["name_as_seen"] == "NVIDIA RTX 6000 Ada Gener..."
    code, out, _ = run_cli(["analyze", str(one)], env=clean_env())
    assert "GPU 0: NVIDIA RTX 6000 Ada Generation (expanded from 'NVIDIA RTX 6000 Ada Gener...')" in out
    several = tmp_path / "several.txt"
    several.write_text(smi_text("NVIDIA RTX PRO 6000 Blac..."))
    code, rep, _ = analyze_json([str(several)])
    g = gpu0(rep)
    assert g["name"] == "NVIDIA RTX PRO 6000 Blac..." and len(g["name_candidates"]) >= 2
    assert all(c.startswith("NVIDIA RTX PRO 6000 Blac") for c in g["name_candidates"])


def test_facts_read_from_prose_are_marked_and_machine_output_wins(tmp_path):
    prose = tmp_path / "README.md"
    prose.write_text("# Our server\n\nWe serve Llama on an NVIDIA B200 with vLLM 0.9.0 and driver 570.86.\n")
    code, rep, _ = analyze_json([str(prose)])
    guessed = rep["snapshot"]["meta"].get("guessed") or {}
    assert "gpu.0" in guessed and gpu0(rep)["name"].endswith("B200")
    code, md, _ = run_cli(["analyze", str(prose), "--format", "markdown"], env=clean_env())
    assert "read from prose" in md
    smi = tmp_path / "smi.txt"
    smi.write_text(smi_text())
    code, rep, _ = analyze_json([str(prose), str(smi)])
    assert gpu0(rep)["name"] == "NVIDIA H200"  # the sentence does not replace the machine's GPU
    assert "gpu.0" not in (rep["snapshot"]["meta"].get("guessed") or {})


# ----------------------------------------------------------------------------- Unix habits


def _cli_cmd():
    return [sys.executable, "-m", "bwdoctor.cli"]


def test_broken_pipe_is_a_quiet_exit():
    for args in (["kb"], ["list"], ["run"]):
        proc = subprocess.Popen(_cli_cmd() + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(),
                                cwd=str(ROOT))
        proc.stdout.readline()
        proc.stdout.close()  # the reader goes away, as `| head -1` does
        err = proc.stderr.read().decode()
        rc = proc.wait(timeout=60)
        assert rc in (0, 1) and "error" not in err.lower() and "Traceback" not in err, (args, rc, err)


def test_ctrl_c_exits_130():
    proc = subprocess.Popen(_cli_cmd() + ["analyze", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=clean_env(), cwd=str(ROOT))
    time.sleep(3)  # it waits for evidence on the pipe
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    proc.stdin.close() if proc.stdin else None
    assert proc.returncode == 130 and b"interrupted" in err and b"Traceback" not in err


def test_shell_completion_answers():
    env = clean_env(_BWDOCTOR_COMPLETE="bash_complete", COMP_WORDS="bwdoctor ru", COMP_CWORD="1")
    proc = subprocess.run(_cli_cmd(), env=env, capture_output=True, text=True, cwd=str(ROOT), timeout=60)
    assert proc.returncode == 0 and "run" in proc.stdout and "error" not in proc.stderr
    # a GPU for --target comes from the knowledge base
    env.update(COMP_WORDS="bwdoctor run --target rtx-pro-6", COMP_CWORD="3")
    proc = subprocess.run(_cli_cmd(), env=env, capture_output=True, text=True, cwd=str(ROOT), timeout=60)
    offered = [line.split(",", 1)[1] for line in proc.stdout.splitlines()]
    assert proc.returncode == 0 and "rtx-pro-6000" in offered and all(o.startswith("rtx-pro-6") for o in offered)
    env.update(COMP_WORDS="bwdoctor fix --target sm_1", COMP_CWORD="3")
    proc = subprocess.run(_cli_cmd(), env=env, capture_output=True, text=True, cwd=str(ROOT), timeout=60)
    assert "plain,sm_120" in proc.stdout.splitlines()
    # check ids and areas for --select / --skip, GPU keys for kb --gpu
    env.update(COMP_WORDS="bwdoctor run --select BWD-STACK-00", COMP_CWORD="3")
    proc = subprocess.run(_cli_cmd(), env=env, capture_output=True, text=True, cwd=str(ROOT), timeout=60)
    offered = [line.split(",", 1)[1] for line in proc.stdout.splitlines()]
    assert "BWD-STACK-001" in offered and all(o.startswith("BWD-STACK-00") for o in offered), proc.stderr
    env.update(COMP_WORDS="bwdoctor analyze --skip bwd-fi", COMP_CWORD="3")
    proc = subprocess.run(_cli_cmd(), env=env, capture_output=True, text=True, cwd=str(ROOT), timeout=60)
    assert "plain,BWD-FIT" in proc.stdout.splitlines(), proc.stdout
    env.update(COMP_WORDS="bwdoctor kb --gpu b2", COMP_CWORD="3")
    proc = subprocess.run(_cli_cmd(), env=env, capture_output=True, text=True, cwd=str(ROOT), timeout=60)
    assert "plain,b200" in proc.stdout.splitlines(), proc.stdout


@pytest.mark.parametrize("encoding", ["latin-1", "ascii"])
def test_any_locale_works(encoding):
    env = clean_env(PYTHONIOENCODING=encoding, LANG="C", LC_ALL="C")
    seed = str(ROOT / "tests" / "data" / "config" / "seed-config")
    for args in (["run", "--target", "b200"], ["list"], ["kb"], ["explain", "BWD-STACK-001"], ["--help"],
                 ["analyze", seed], ["kb", "--gpu", "nonsense"]):
        proc = subprocess.run(_cli_cmd() + args, env=env, capture_output=True, cwd=str(ROOT), timeout=120)
        assert proc.returncode in (0, 1, 2), (args, proc.stderr.decode(errors="replace"))
        assert b"Traceback" not in proc.stderr and b"internal error" not in proc.stderr
        proc.stdout.decode(encoding)  # what was written fits the encoding (click writes UTF-8 to an
        proc.stderr.decode(encoding)  # ASCII stream it is handed as is)
        if args[0] == "analyze":
            assert b">= 12.8" in proc.stdout  # the stand-in for the sign the encoding lacks


def test_piped_output_is_one_finding_per_line():
    code, out, _ = run_cli(["run", "--select", "STACK"], env=clean_env(COLUMNS="40"))
    fails = [line for line in out.splitlines() if "FAIL" in line]
    assert fails and all(line.rstrip().endswith("or install vLLM there") or "vllm" not in line for line in fails)
    assert any(len(line) > 120 for line in fails)  # never wrapped at COLUMNS when piped


def test_piped_kb_is_one_row_per_line():
    code, out, _ = run_cli(["kb"], env=clean_env())
    lines = out.splitlines()
    assert code == 0 and lines[0] == "# GPUs" and lines[1].startswith("GPU\tCC\t")
    rows = [line.split("\t") for line in lines[1: lines.index("")]]
    assert len(rows) > 10 and {len(r) for r in rows} == {13}  # every GPU row whole, on its own line
    h200 = next(r for r in rows if r[0] == "h200")  # grep finds a whole row, never a wrapped half
    assert h200[1] == "9.0" and "HBM3e" in h200[2]
    assert "# Requirements per architecture" in lines


def test_list_follows_columns_and_no_color_on_a_terminal():
    code, out, _ = run_cli(["list"], env=clean_env(COLUMNS="60"))
    assert code == 0 and max(len(line) for line in out.splitlines()) <= 60
    assert "BWD-STACK-001" in out  # ids are never cut
    code, out, _ = run_cli(["list"], env=clean_env())
    assert all("\t" in line for line in out.splitlines())  # piped: one tab-separated line per check
    for env_extra in ({"NO_COLOR": "1"}, {}):
        pid, fd = pty.fork()
        if pid == 0:  # the child: bwdoctor list on a terminal
            os.chdir(str(ROOT))
            os.execve(sys.executable, _cli_cmd() + ["list"], clean_env(TERM="xterm-256color", COLUMNS="150",
                                                                       **env_extra))
        chunks = []
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        os.waitpid(pid, 0)
        text = b"".join(chunks)
        assert b"BWD-GPU-001" in text
        assert (b"\x1b[" in text) is (not env_extra), env_extra


def test_output_file_format_from_its_extension_and_one_summary_line(tmp_path):
    for name, check in (("r.json", lambda t: json.loads(t)["verdict"]["status"] == "not ready"),
                        ("r.md", lambda t: t.startswith("## bwdoctor: **NOT READY**")),
                        ("r.xml", lambda t: t.startswith("<?xml") and "<testsuites" in t),
                        ("r.sarif", lambda t: json.loads(t)["version"] == "2.1.0")):
        path = tmp_path / name
        code, out, err = run_cli(["run", "-o", str(path)], env=clean_env())
        assert code == 1 and out == "" and check(path.read_text()), name
        assert len(err.strip().splitlines()) == 1 and err.startswith("NOT READY:") and str(path) in err
    path = tmp_path / "f.xml"
    code, out, err = run_cli(["run", "--format", "junit", "-o", str(path)], env=clean_env())
    assert "fail" in err and str(path) in err
