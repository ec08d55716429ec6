"""Reading runs as they are: damaged metrics lines skipped and counted, runs without a
checkpoint yet, runs still training, checkpoint files, and what is not a run."""

import json
import shutil

import numpy as np
import pytest

from charrnn.errors import CharrnnError
from charrnn.report import runs as R


def test_damaged_metrics_lines_are_skipped_and_counted(tmp_path):
    good = [{"kind": "train", "step": 10, "train_bpc": 3.0, "elapsed": 6.0},
            {"kind": "eval", "step": 10, "val_bpc": 3.5, "elapsed": 7.5}]
    lines = [json.dumps(good[0]).encode(), b"", b'{"kind": "train", "st', b"[1, 2]",
             b"\xff\xfe not text", json.dumps(good[1]).encode(), b'{"kind": "eval", "step": 2']
    (tmp_path / "metrics.jsonl").write_bytes(b"\n".join(lines))  # the last line cut short
    records, skipped = R.read_metrics(tmp_path / "metrics.jsonl")
    assert records == good and skipped == 4
    run = R.read(tmp_path)
    assert run.skipped == 4 and run.ckpt is None and run.family == "lm"
    steps, minutes = run.series("val_bpc", "minutes")
    assert steps.tolist() == [7.5 / 60] and minutes.tolist() == [3.5]


def test_series_keep_only_finite_numbers_in_order(tmp_path):
    recs = [{"step": 1, "lr": 0.1}, {"step": 2, "lr": float("nan")}, {"step": 3},
            {"step": True, "lr": 0.3}, {"step": 4, "lr": "x"}, {"step": 5, "lr": 0.5}]
    run = R.Run(tmp_path, "r", recs, 0, None, None, None, False)
    xs, ys = run.series("lr")
    assert xs.tolist() == [1, 5] and ys.tolist() == [0.1, 0.5]
    assert run.last_step == 5


@pytest.mark.parametrize("keys, family", [
    ({"train_bpc", "val_bpc"}, "lm"), ({"train_loss", "val_acc", "val_macro_acc"}, "classify"),
    ({"train_loss", "val_f1", "val_acc"}, "tag"), ({"train_loss", "val_exact"}, "seq2seq"),
    ({"grad_norm"}, None)])
def test_the_family_of_a_run_without_checkpoint_is_read_from_its_records(keys, family):
    assert R.guess_family([dict.fromkeys(keys, 1.0)]) == family


def test_a_run_directory_a_checkpoint_file_and_what_is_neither(family_runs, tmp_path):
    run = R.read(family_runs["cls"])
    assert run.family == "classify" and run.checkpoint.name == "best.npz" and not run.training
    assert run.records == [json.loads(x) for x in
                           (family_runs["cls"] / "metrics.jsonl").read_text().splitlines()]
    file = R.read(family_runs["lstm"] / "last.npz")
    assert file.name == "last" and file.records == run_history(family_runs["lstm"] / "last.npz")
    with pytest.raises(CharrnnError, match="run not found"):
        R.read(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CharrnnError, match="not a run directory"):
        R.read(tmp_path / "empty")


def run_history(path):
    with np.load(path) as z:
        return json.loads(z["meta"].tobytes())["history"]


def test_a_damaged_checkpoint_beside_readable_metrics_is_a_problem_not_an_error(family_runs,
                                                                               tmp_path):
    d = tmp_path / "run"
    shutil.copytree(family_runs["gru"], d)
    (d / "best.npz").write_bytes(b"PK\x03\x04 half a zip")
    (d / "train.lock").write_text("12345")
    run = R.read(d)
    assert run.ckpt is None and "cannot read checkpoint" in run.problem
    assert run.training and run.family == "lm" and len(run.records) > 3


def test_runs_of_the_same_name_are_told_apart_by_their_paths(family_runs, tmp_path):
    shutil.copytree(family_runs["gru"], tmp_path / "x" / "lstm")
    a, b, c = R.read_all([family_runs["lstm"], tmp_path / "x" / "lstm", family_runs["gru"]])
    assert (a.name, b.name, c.name) == (str(family_runs["lstm"]), str(tmp_path / "x" / "lstm"),
                                        "gru")


def test_every_task_has_its_curves_and_a_heading(tmp_path):
    """The report draws each task's curves from the keys its runs record: a run of every task in
    FAMILIES finds its training and validation series (a task missing from the tables would be
    drawn with none), and the page has a heading for it."""
    from charrnn.models import FAMILIES
    from charrnn.report import page
    from charrnn.train.trainer import train
    from tests.helpers import tiny
    from tests.report.conftest import labelled_files

    for name, F in FAMILIES.items():
        assert name in R.FAMILY_FIGURES and name in page.KINDS, name
        assert R.FAMILY_FIGURES[name][0] in F.train_figures(1.0), name
    labelled_files(tmp_path)  # cls.tsv: text<TAB>label, what a generator reads too
    train(tiny(tmp_path / "cls.tsv", tmp_path / "gen", task="generate", hidden=8, batch=8,
               steps=4, eval_every=2, dtype="float64", warmup=1))
    run = R.read(tmp_path / "gen")
    assert run.family == "generate"
    train_key, val_key, _, figures = run.figures
    for key in (train_key, val_key, *(f.key for f in figures)):
        xs, ys = run.series(key)
        assert len(xs) >= 1 and np.all(np.isfinite(ys)), key
