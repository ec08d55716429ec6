"""The group in charrnn/cli/__init__.py: library errors and output errors (a full, closed or
vanished stdout, out of memory) become one line, or a quiet exit, for every command."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import invoke, one_line_error


@pytest.mark.parametrize("command, target, hint", [
    (["info"], "charrnn.checkpoint.load", False),
    (["train", "--steps", "1"], "charrnn.train.trainer.train", True),
])
def test_out_of_memory_is_one_line_with_a_hint_only_where_it_helps(trained, monkeypatch,
                                                                   command, target, hint):
    def oom(*a, **k):
        raise MemoryError
    monkeypatch.setattr(target, oom)
    args = [*command, trained / "run"] if command == ["info"] else \
        [command[0], trained / "austen.txt", *command[1:], "--out", trained / "oom"]
    line = one_line_error(invoke(*args), "out of memory")
    assert ("--batch" in line) == hint


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_stdout_is_a_one_line_error(trained):
    with open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, "-c", "from charrnn.cli import main; main()", "info",
                            str(trained / "run")], stdout=full, stderr=subprocess.PIPE, text=True,
                           check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1] == "Error: cannot write output: No space left on " \
        "device"


def test_a_closed_stdout_is_not_a_crash(trained):
    cmd = (f'"{sys.executable}" -c "from charrnn.cli import main; main()" '
           f'sample -c "{trained / "run"}" --length 5 >&-')
    p = subprocess.run(["bash", "-c", cmd], stderr=subprocess.PIPE, text=True, check=False)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr


def test_info_into_a_closed_pipe_ends_quietly(trained):
    """`charrnn info RUN | head -c1`: as for sample, a reader that goes away is not an error."""
    proc = subprocess.Popen([sys.executable, "-c", "from charrnn.cli import main; main()", "info",
                             str(trained / "run")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # gone before the first line
    assert proc.wait(timeout=60) == 0
    assert b"Traceback" not in proc.stderr.read()

