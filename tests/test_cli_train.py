"""`charrnn train` through CliRunner and real subprocesses (Ctrl-C, kill during a write)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import stalling_trainer

from charrnn import checkpoint as C
from charrnn.cli import cli
from charrnn.train.trainer import BUNDLED, TrainConfig, train

TEXT = "It is a truth universally acknowledged, that a single man... " * 25
TINY = ["--hidden", "8", "--layers", "1", "--batch", "4", "--seq", "8", "--dtype", "float64",
        "--schedule", "constant", "--warmup", "2", "--eval-every", "5"]


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "austen.txt"
    p.write_text(TEXT)
    return str(p)


def run(*args):
    return CliRunner().invoke(cli, ["train", *map(str, args)])


def one_line_error(result, code, *needles):
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    assert "Traceback" not in result.stderr and result.stdout == ""
    for n in needles:
        assert n in result.stderr, result.stderr


def test_trains_prints_best_path_and_summary(tmp_path, corpus):
    r = run(corpus, "--out", tmp_path / "r", "--steps", 10, *TINY)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == f"{tmp_path / 'r' / 'best.npz'}\n"
    assert "step 5/10" in r.stderr and "step 10/10" in r.stderr and "val" in r.stderr
    assert "training done" in r.stderr and "best val bits/char" in r.stderr
    assert {p.name for p in (tmp_path / "r").iterdir()} == {"best.npz", "last.npz",
                                                           "metrics.jsonl"}


def test_default_run_directory_is_named_after_the_corpus(tmp_path, corpus, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run(corpus, "--steps", 5, *TINY)
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "runs" / "austen" / "last.npz").is_file()
    r = run(corpus, "--resume", "--steps", 7)  # finds runs/austen again
    assert r.exit_code == 0, r.stderr
    assert C.load(tmp_path / "runs" / "austen" / "last.npz").meta["step"] == 7


def test_bundled_corpus_is_the_default():
    assert BUNDLED.is_file() and TrainConfig().corpus == str(BUNDLED)


def test_invalid_utf8_names_the_byte_offset(tmp_path):
    p = tmp_path / "latin.txt"
    p.write_bytes("naïve café ".encode("latin-1") * 50)
    one_line_error(run(p, "--out", tmp_path / "r", *TINY), 1, "latin.txt", "byte offset 2",
                   "--encoding")
    r = run(p, "--out", tmp_path / "r", "--encoding", "latin-1", "--steps", 2, *TINY)
    assert r.exit_code == 0, r.stderr


@pytest.mark.parametrize("kind,needle", [("empty", "is empty"), ("dir", "is a directory"),
                                         ("missing", "not found"), ("short", "too few")])
def test_unusable_corpus(tmp_path, kind, needle):
    p = tmp_path / "c.txt"
    if kind == "empty":
        p.write_text("")
    elif kind == "dir":
        p.mkdir()
    elif kind == "short":
        p.write_text("a short text, shorter than one chunk of 4 x 16 characters")
    one_line_error(run(p, "--out", tmp_path / "r", *TINY, "--batch", 4, "--seq", 16,
                       "--steps", 1), 1, needle)


@pytest.mark.parametrize("args", [["--hidden", "0"], ["--batch", "-3"], ["--seq", "0"],
                                  ["--val-frac", "1.5"], ["--val-frac", "0"], ["--lr", "-1"],
                                  ["--dropout", "1"], ["--steps", "0"], ["--clip", "-1"],
                                  ["--optimizer", "lion"], ["--cell", "tree"]])
def test_bad_option_values(tmp_path, corpus, args):
    r = run(corpus, "--out", tmp_path / "r", *args)
    assert r.exit_code == 2 and "Invalid value" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists()


def test_resume_errors(tmp_path, corpus):
    one_line_error(run(corpus, "--out", tmp_path / "none", "--resume"), 1, "nothing to resume")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "last.npz").write_bytes(b"not a checkpoint")
    one_line_error(run(corpus, "--out", tmp_path / "r", "--resume"), 1, "last.npz")
    one_line_error(run(corpus, "--out", tmp_path / "r", *TINY), 1, "already holds a run")


def child(corpus, out, *extra):
    return [sys.executable, "-c", "from charrnn.cli import main; main()", "train", corpus,
            "--out", str(out), *TINY, *map(str, extra)]


def wait_for(path, proc, timeout=60):
    end = time.time() + timeout
    while not Path(path).exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < end, "timed out"
        time.sleep(0.05)


def params_at(run_dir):
    return C.load(Path(run_dir) / "last.npz").params


def assert_same_params(a, b):
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, b"interrupted"),
                                                   (signal.SIGTERM, 143, b"terminated"),
                                                   (signal.SIGHUP, 129, b"hung up")])
def test_ctrl_c_or_sigterm_saves_last_and_resume_is_exact(tmp_path, corpus, sig, code, word):
    out = tmp_path / "r"
    proc = subprocess.Popen(child(corpus, out, "--steps", 100000, "--dropout", 0.2,
                                  "--layers", 2), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(out / "last.npz", proc)
    proc.send_signal(sig)
    _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr.decode()
    assert word in stderr and b"Traceback" not in stderr
    meta = C.load(out / "last.npz").meta
    k, evals = meta["step"], [r["step"] for r in meta["history"] if r["kind"] == "eval"]
    assert k >= 5
    assert k % 5 == 0 or k not in evals  # saved by the stop, with no validation pass
    r = run(corpus, "--out", out, "--resume", "--steps", k + 6)
    assert r.exit_code == 0, r.stderr
    ref = TrainConfig.from_dict({**C.load(out / "last.npz").meta["train"], "out": str(tmp_path / "ref"),
                         "steps": k + 6})
    train(ref)
    assert_same_params(params_at(out), params_at(tmp_path / "ref"))




def test_killed_mid_write_leaves_previous_checkpoint_and_resume_works(tmp_path, corpus):
    out = tmp_path / "r"
    cmd = child(corpus, out, "--steps", 20)
    cmd[2] = stalling_trainer("saves[0] == 2")  # the second save of last.npz
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"WRITING\n", proc.communicate()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert C.load(out / "last.npz").meta["step"] == 5  # the previous checkpoint, intact
    assert (out / "train.lock").exists()  # left behind by the killed trainer: stale
    r = run(corpus, "--out", out, "--resume")
    assert r.exit_code == 0, r.stderr
    assert C.load(out / "last.npz").meta["step"] == 20
    ref = TrainConfig.from_dict({**C.load(out / "last.npz").meta["train"], "out": str(tmp_path / "ref")})
    train(ref)
    assert_same_params(params_at(out), params_at(tmp_path / "ref"))


def test_a_run_stopped_before_any_evaluation_prints_the_checkpoint_it_has(tmp_path, corpus,
                                                                          monkeypatch):
    from charrnn.train import trainer as T

    out = tmp_path / "r"

    def stopped_at_once(cfg, **kw):  # Ctrl-C before the first evaluation: last.npz only
        out.mkdir()
        (out / "last.npz").write_bytes(b"")
        return T.TrainResult(out, 3, 0.01, 1.0, "interrupted", None, None, [])

    monkeypatch.setattr(T, "train", stopped_at_once)
    r = CliRunner().invoke(cli, ["train", str(corpus), "--out", str(out), "-q"])
    assert r.exit_code == 130 and r.stdout == f"{out / 'last.npz'}\n"


# --- issue 15: quiet means quiet, a progress line that fits, warnings and refusals ------------

def test_quiet_prints_only_the_path(tmp_path, corpus):
    r = run(corpus, "--out", tmp_path / "r", "--steps", 10, *TINY, "-q")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == f"{tmp_path / 'r' / 'best.npz'}\n" and r.stderr == ""


def test_the_live_progress_line_fits_80_columns(monkeypatch):
    import io

    from rich.console import Console

    from charrnn.cli import train as CT
    from charrnn.train.trainer import Event

    screen = Console(file=io.StringIO(), width=80, force_terminal=True, record=True)
    monkeypatch.setattr(CT, "err", screen)
    show = CT._TrainDisplay(live=True)
    show(Event("start", 0, 0.0, 0.0, 0.0, None, {}, {
        "params": 1_000_000, "train_chars": 10**6, "val_chars": 10**5, "vocab": 65,
        "run_dir": "runs/x", "processes": 2, "processes_failed": None, "total_steps": 100_000,
        "resumed_at": 0}))
    record = {"train_bpc": 2.3456, "grad_norm": 0.53, "chars_per_sec": 22_000.0}
    show(Event("step", 12_345, 12.41, 0.12345, 600.0, 4252.0, record))
    show(Event("eval", 12_345, 12.41, 0.12345, 600.0, 4252.0, {"val_bpc": 2.41}))
    frame = Console(file=io.StringIO(), width=80, record=True)
    frame.print(show.progress.get_renderable())  # what the terminal shows now
    show.close()
    (line,) = frame.export_text().splitlines()
    assert len(line) <= 80 and "22,000 chars/s" in line and "1:10:52 left" in line, line
    assert "step 12345/100000" in line and "val 2.410" in line and "12%" in line, line
    # a typical run keeps every figure but the epoch and the gradient norm
    typical = CT._train_line(Event("step", 1_234, 1.41, 0.4, 60.0, 90.0, show.last), 3_225, 63)
    assert typical == "step 1234/3225 train 2.346 val 2.410 22,000 chars/s 1:30 left"


def test_a_warmup_longer_than_the_budget_is_a_warning(tmp_path, corpus):
    r = run(corpus, "--out", tmp_path / "r", "--steps", 10, *TINY, "--warmup", 50, "-q")
    assert r.exit_code == 0 and r.stdout.endswith("best.npz\n")
    assert r.stderr == ("warning: --warmup 50 is longer than the budget of 10 steps; the "
                        "learning rate never reaches --lr\n")


def test_resume_with_the_budget_reached_says_so_and_changes_nothing(tmp_path, corpus):
    out = tmp_path / "r"
    assert run(corpus, "--out", out, "--steps", 10, *TINY).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = run(corpus, "--out", out, "--resume")
    assert r.exit_code == 0 and r.stdout == f"{out / 'best.npz'}\n"
    assert r.stderr == (f"{out} already reached its budget (steps) at step 10; nothing to do "
                        "(give a larger --steps, --epochs or --minutes to go on)\n")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # not even re-saved


def test_processes_names_what_it_counts_and_threads_still_works(tmp_path, corpus):
    for option in ("--processes", "--threads"):
        out = tmp_path / option.strip("-")
        r = run(corpus, "--out", out, "--steps", 5, *TINY, option, 1)
        assert r.exit_code == 0 and ", 1 process" in r.stderr, r.stderr
        assert C.load(out / "last.npz").meta["threads"] == 1
    shown = CliRunner().invoke(cli, ["train", "--help"]).stdout
    assert "--processes" in shown and "--threads" not in shown
    r = run(corpus, "--out", tmp_path / "x", "--processes", 0)
    assert r.exit_code == 2 and "Invalid value for '--processes'" in r.stderr
