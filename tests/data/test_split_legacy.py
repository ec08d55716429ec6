"""A labelled run saved before the split by distinct text resumes on the split it was trained
with, to the bit (tests/fixtures/split-by-line/README.md says how the fixture was made)."""

import shutil
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from charrnn import checkpoint as C
from charrnn.cli import cli
from charrnn.data import labelled as L

FIXTURE = Path(__file__).parent.parent / "fixtures" / "split-by-line"


def test_a_run_split_by_line_resumes_as_the_old_code_resumed_it(tmp_path, monkeypatch):
    shutil.copytree(FIXTURE / "run", tmp_path / "run")
    shutil.copy(FIXTURE / "corpus.tsv", tmp_path)
    monkeypatch.chdir(tmp_path)
    assert L.SPLIT not in C.load(tmp_path / "run" / "last.npz").meta  # really an old run
    r = CliRunner().invoke(cli, ["train", "--task", "classify", "corpus.tsv", "--steps", "10",
                                 "--resume", "--out", "run", "-q"])
    assert r.exit_code == 0, r.output
    ck = C.load(tmp_path / "run" / "last.npz")
    assert ck.meta["step"] == 10 and L.SPLIT not in ck.meta  # still the old split
    with np.load(FIXTURE / "resumed-step10.npz") as ref:
        assert sorted(ref.files) == sorted(ck.params)
        for k in ref.files:
            np.testing.assert_array_equal(ck.params[k], ref[k], err_msg=k)


def test_the_old_split_put_copies_on_both_sides_and_the_new_one_does_not():
    ex = L.read(FIXTURE / "corpus.tsv", "classify", "utf-8")
    for saved, leaks in ((type("Old", (), {"meta": {}})(), True), (None, False)):
        tr, va = L.split_examples(ex, 0.3, 2, stratify=True, saved=saved)
        assert bool(set(tr.texts) & set(va.texts)) == leaks


def test_new_runs_record_their_split(tmp_path):
    r = CliRunner().invoke(cli, ["train", "--task", "classify", str(FIXTURE / "corpus.tsv"),
                                 "--hidden", "6", "--steps", "2", "--batch", "4", "--val-frac",
                                 "0.3", "--processes", "1", "--out", str(tmp_path / "r"), "-q"])
    assert r.exit_code == 0, r.output
    assert C.load(tmp_path / "r" / "last.npz").meta[L.SPLIT] == "text"
