import io
import os
import subprocess
import sys

from rich.console import Console

from bwdoctor.progress import PROGRESS_ENV, clean, live_progress, terminal_progress_fd


def test_clean_drops_redraw_codes_and_the_prefix():
    assert clean(b"\r\x1b[2K[bwdoctor] GPU probes: bf16 gemm ...\r\x1b[2K") == ["GPU probes: bf16 gemm ..."]
    assert clean(b"loading model\nwarming up\n") == ["loading model", "warming up"]


def test_a_child_process_reports_through_the_channel():
    seen: list[str] = []
    console = Console(file=io.StringIO(), force_terminal=True)
    assert PROGRESS_ENV not in os.environ
    with live_progress(True, "collecting", console=console, on_update=seen.append):
        fd = terminal_progress_fd()
        assert fd is not None and os.environ[PROGRESS_ENV] == str(fd)
        code = ("import os; fd = int(os.environ['BWDOCTOR_PROGRESS_FD']); "
                "os.write(fd, b'\\r\\x1b[2K[bwdoctor] probe 1 of 2'); os.write(fd, b'\\r\\x1b[2K[bwdoctor] probe 2 of 2\\n')")
        subprocess.run([sys.executable, "-c", code], pass_fds=(fd,), check=True)
    assert PROGRESS_ENV not in os.environ
    assert seen and seen[-1] == "probe 2 of 2"


def test_disabled_progress_sets_nothing():
    with live_progress(False, "x"):
        assert PROGRESS_ENV not in os.environ
