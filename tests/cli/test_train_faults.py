"""`charrnn train` when things go wrong around it: signals, a kill mid-write, a full disk, a
reader that goes away, a second trainer on the same run directory. No fault loses saved work."""

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from charrnn import checkpoint as C
from charrnn.train.trainer import TrainConfig, train
from tests.helpers import (
    TINY_QUIET,
    assert_same_params,
    invoke,
    one_line_error,
    stalling_trainer,
    train_argv,
    wait_for,
)


def assert_same_as_one_straight_run(run_dir, ref_dir, **changes):
    """The run in run_dir, stopped and resumed, ends in the parameters of one uninterrupted run
    (in ref_dir) of the configuration its last.npz records, with `changes`."""
    meta = C.load(run_dir / "last.npz").meta
    train(TrainConfig.from_dict({**meta["train"], "out": str(ref_dir), **changes}))
    assert_same_params(C.load(run_dir / "last.npz").params, C.load(ref_dir / "last.npz").params)


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, b"interrupted"),
                                                   (signal.SIGTERM, 143, b"terminated"),
                                                   (signal.SIGHUP, 129, b"hung up")])
def test_ctrl_c_or_sigterm_saves_last_and_resume_is_exact(tmp_path, corpus, sig, code, word):
    out = tmp_path / "r"
    proc = subprocess.Popen(train_argv(corpus, out, "--steps", 100000, "--dropout", 0.2,
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
    r = invoke("train", corpus, "--out", out, "--resume", "--steps", k + 6)
    assert r.exit_code == 0, r.stderr
    assert_same_as_one_straight_run(out, tmp_path / "ref", steps=k + 6)


def test_killed_mid_write_leaves_previous_checkpoint_and_resume_works(tmp_path, corpus):
    out = tmp_path / "r"
    cmd = train_argv(corpus, out, "--steps", 20)
    cmd[2] = stalling_trainer("saves[0] == 2")  # the second save of last.npz
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"WRITING\n", proc.communicate()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert C.load(out / "last.npz").meta["step"] == 5  # the previous checkpoint, intact
    assert (out / "train.lock").exists()  # left behind by the killed trainer: stale
    r = invoke("train", corpus, "--out", out, "--resume")
    assert r.exit_code == 0, r.stderr
    assert C.load(out / "last.npz").meta["step"] == 20
    assert_same_as_one_straight_run(out, tmp_path / "ref")


def test_training_goes_on_and_saves_when_its_log_reader_goes_away(corpus, tmp_path):
    """`charrnn train ... 2>&1 | head -1`: Rich used to exit at once, skipping the save."""
    run = tmp_path / "r"
    proc = subprocess.Popen(train_argv(corpus, run, "--steps", 40),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout.readline().startswith(b"training ")
    proc.stdout.close()  # the reader is gone
    assert proc.wait(timeout=60) == 0
    assert C.load(run / "last.npz").meta["step"] == 40


def test_disk_full_while_saving_keeps_saved_checkpoints(corpus, tmp_path, monkeypatch):
    """The third checkpoint write (at step 10) fills the disk half-way through its temp file."""
    run = tmp_path / "r"
    real, calls, snapshot = C.atomic_write, [], {}

    def filling(path, write):
        if path.suffix == ".npz":
            calls.append(path.name)
            if len(calls) == 3:
                snapshot.update({n: (run / n).read_bytes() for n in ("best.npz", "last.npz")})

                def half(f):
                    f.write(b"PK\x03\x04" + b"\0" * 1000)
                    raise OSError(28, "No space left on device")
                return real(path, half)
        return real(path, write)

    monkeypatch.setattr(C, "atomic_write", filling)
    r = invoke("train", corpus, "--out", run, *TINY_QUIET, "--steps", 20)
    line = one_line_error(r, "No space left on device", "step 10", "intact", "--resume")
    assert "cannot write checkpoint" in line and r.exit_code == 1
    assert calls[:2] == ["best.npz", "last.npz"] and len(calls) == 3
    monkeypatch.undo()
    assert sorted(p.name for p in run.iterdir()) == ["best.npz", "last.npz", "metrics.jsonl"]
    for name, data in snapshot.items():
        assert (run / name).read_bytes() == data, name
        assert C.load(run / name).meta["step"] == 5
    r = invoke("train", corpus, "--out", run, "--resume")  # the disk has room again
    assert r.exit_code == 0, r.stderr
    ref = TrainConfig.from_dict({**C.load(run / "last.npz").meta["train"], "out": str(tmp_path / "ref")})
    train(ref)
    a, b = C.load(run / "last.npz"), C.load(tmp_path / "ref" / "last.npz")
    assert a.meta["step"] == b.meta["step"] == 20
    assert_same_params(a.params, b.params)


def test_disk_full_at_the_first_last_npz_says_how_to_start_again(corpus, tmp_path, monkeypatch):
    """best.npz was written at step 5, last.npz was not: nothing to resume, and a fresh run must
    not overwrite the best model, so every message says what to do instead."""
    run, real = tmp_path / "r", C.atomic_write

    def full(path, write):
        if path.name == "last.npz":
            raise OSError(28, "No space left on device")
        return real(path, write)

    monkeypatch.setattr(C, "atomic_write", full)
    r = invoke("train", corpus, "--out", run, *TINY_QUIET, "--steps", 20)
    one_line_error(r, "No space left on device", "step 5", "no last.npz was saved",
                   "choose another --out")
    assert "--resume continues" not in r.stderr
    monkeypatch.undo()
    assert sorted(p.name for p in run.iterdir()) == ["best.npz", "metrics.jsonl"]
    one_line_error(invoke("train", corpus, "--out", run, "--resume"), "nothing to resume",
                   "best.npz holds a model")
    one_line_error(invoke("train", corpus, "--out", run, *TINY_QUIET),
                   "holds best.npz but no last.npz", "choose another --out")
    assert C.load(run / "best.npz").meta["step"] == 5  # untouched


def test_metrics_file_unwritable_mid_run(corpus, tmp_path, monkeypatch):
    run, appends = tmp_path / "r", []

    def failing_open(path, mode="r", *a, **k):
        if Path(path).name == "metrics.jsonl" and "a" in mode:
            appends.append(1)
            if len(appends) == 3:  # eval at 5, train at 10, eval at 10: before its checkpoints
                raise OSError(28, "No space left on device")
        return open(path, mode, *a, **k)

    monkeypatch.setattr("charrnn.train.session.open", failing_open, raising=False)
    r = invoke("train", corpus, "--out", run, *TINY_QUIET, "--steps", 20)
    one_line_error(r, "cannot write", "metrics.jsonl", "No space left on device", "intact")
    monkeypatch.undo()
    assert C.load(run / "last.npz").meta["step"] == 5 and not (run / "train.lock").exists()


def test_a_second_ctrl_c_during_the_save_keeps_the_previous_last(corpus, tmp_path):
    out = tmp_path / "r"
    cmd = train_argv(corpus, out, "--quiet", "--steps", 100000)
    # after the first Ctrl-C the trainer's handler has given way to Python's default one
    cmd[2] = stalling_trainer("signal.getsignal(signal.SIGINT) is signal.default_int_handler")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(out / "last.npz", proc)
        proc.send_signal(signal.SIGINT)  # stop at the next step and save last.npz ...
        assert proc.stdout.readline() == b"WRITING\n"
        before = (out / "last.npz").read_bytes()  # the file that save is replacing
        proc.send_signal(signal.SIGINT)  # ... and interrupt that save half-way
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and b"Traceback" not in stderr, stderr.decode()
    assert (out / "last.npz").read_bytes() == before
    assert C.load(out / "last.npz").meta["step"] % 5 == 0  # an evaluation's checkpoint
    assert sorted(p.name for p in out.iterdir()) == ["best.npz", "last.npz", "metrics.jsonl"]


def test_a_second_trainer_on_a_busy_run_directory_is_refused(corpus, tmp_path):
    out = tmp_path / "r"
    proc = subprocess.Popen(train_argv(corpus, out, "--quiet", "--steps", 100000),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(out / "last.npz", proc)
        for extra in ([], ["--resume"]):
            one_line_error(invoke("train", corpus, "--out", out, *TINY_QUIET, *extra),
                           "in use by another trainer", f"pid {proc.pid}")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr.decode()
    last = C.load(out / "last.npz")
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines == last.meta["history"] and not (out / "train.lock").exists()


def test_two_trainers_started_together_one_runs(corpus, tmp_path):
    out = tmp_path / "r"
    procs = [subprocess.Popen(train_argv(corpus, out, "--quiet", "--steps", 30),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read().decode()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    refused = next(err for code, err in results if code == 1)
    assert "in use by another trainer" in refused or "already holds a run" in refused
    assert "Traceback" not in refused
    assert C.load(out / "last.npz").meta["step"] == 30

