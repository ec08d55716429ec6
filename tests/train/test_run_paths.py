"""A run directory finds its corpus from any directory: new runs record its absolute path, and
older runs' relative paths are found from the directory `train` ran in (checkpoint.recorded_corpus).
"""

import os
import shutil
from pathlib import Path

from click.testing import CliRunner

from charrnn import checkpoint as C
from charrnn.cli import cli

V1 = Path(__file__).parents[1] / "fixtures" / "v1"
TEXT = "It is a truth universally acknowledged, that a single man... " * 25
TINY = ["--hidden", "8", "--batch", "4", "--seq", "8", "--schedule", "constant", "--warmup", "2",
        "--eval-every", "5", "-q"]
GRADFLOW = ["--length", "6", "--samples", "2", "--warmup", "5"]


def invoke(*args):
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert r.exit_code == 0, (r.stderr, r.exception)
    return r


def dirs(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    monkeypatch.chdir(a)
    return a, b


def test_a_run_trained_on_a_relative_name_resumes_and_gradflows_from_another_directory(
        tmp_path, monkeypatch):
    a, b = dirs(tmp_path, monkeypatch)
    (a / "notes.txt").write_text(TEXT)
    invoke("train", "notes.txt", "--steps", 5, *TINY)  # into runs/notes, relative to a
    meta = C.load(a / "runs" / "notes" / "last.npz").meta
    assert meta["corpus"] == meta["train"]["corpus"] == str(a / "notes.txt")
    monkeypatch.chdir(b)
    invoke("train", "--resume", "--out", "../a/runs/notes", "--steps", 10, "-q")
    assert C.load(a / "runs" / "notes" / "last.npz").meta["step"] == 10
    invoke("gradflow", "--checkpoint", "../a/runs/notes", *GRADFLOW)
    invoke("sample", "-c", "../a/runs/notes", "--length", 5)


def test_an_old_run_recording_a_relative_path_still_works_from_another_directory(
        tmp_path, monkeypatch):
    a, b = dirs(tmp_path, monkeypatch)  # the v1 run recorded corpus v1corpus.txt, --out v1run
    shutil.copytree(V1 / "v1run", a / "v1run")
    shutil.copy(V1 / "v1corpus.txt", a)
    assert C.load(a / "v1run" / "last.npz").meta["corpus"] == "v1corpus.txt"
    monkeypatch.chdir(b)
    invoke("gradflow", "--checkpoint", "../a/v1run", *GRADFLOW)
    invoke("train", "--resume", "--out", "../a/v1run", "--steps", 10, "-q")
    assert C.load(a / "v1run" / "last.npz").meta["corpus"] == str(a / "v1corpus.txt")


def test_recorded_corpus_tries_the_current_directory_then_the_one_train_ran_in(
        tmp_path, monkeypatch):
    a, b = dirs(tmp_path, monkeypatch)
    (a / "notes.txt").write_text(TEXT)
    run = os.path.join("..", "a", "runs", "notes")
    monkeypatch.chdir(b)
    # default --out (runs/<stem>), and an explicit one
    assert C.recorded_corpus("notes.txt", run) == str(a / "notes.txt")
    assert C.recorded_corpus("notes.txt", run, "runs/notes") == str(a / "notes.txt")
    (b / "notes.txt").write_text(TEXT)  # a file of that name here is what it always meant
    assert C.recorded_corpus("notes.txt", run) == "notes.txt"
    # unknowable or absent: as recorded, for the reader's "corpus not found"
    assert C.recorded_corpus("gone.txt", run, "runs/notes") == "gone.txt"
    assert C.recorded_corpus("x.txt", run, "elsewhere/notes") == "x.txt"
    assert C.recorded_corpus("x.txt", run, str(a / "runs" / "notes")) == "x.txt"
