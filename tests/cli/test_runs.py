"""`charrnn runs` (charrnn.runs.runs) and the choice of run without -c: the newest run of a
family the command can use."""

import json
import os

import pytest

from charrnn import checkpoint as C
from charrnn import runs as I
from tests.helpers import AUSTEN, TINY_QUIET, invoke, one_line_error


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """runs/lm (a language model, written first) and runs/cls (a classifier, written last)."""
    d = tmp_path_factory.mktemp("runs")
    (d / "austen.txt").write_text(AUSTEN)
    (d / "cls.tsv").write_text("".join(f"{w}\t{'v' if w[0] in 'aeiou' else 'c'}\n"
                                       for w in ("apple", "tree", "egg", "moss", "ink", "dune",
                                                 "oak", "fig", "urn", "bat") * 4))
    r = invoke("train", d / "austen.txt", "--out", d / "runs" / "lm", *TINY_QUIET, "--steps", 10)
    assert r.exit_code == 0, r.output
    r = invoke("train", "--task", "classify", d / "cls.tsv", "--out", d / "runs" / "cls",
               "--hidden", 4, "--batch", 8, "--steps", 4, "--eval-every", 2, "--val-frac", 0.3,
               "-q")
    assert r.exit_code == 0, r.output
    for name, when in (("lm", 1_000_000), ("cls", 2_000_000)):  # cls is the newer
        for f in (d / "runs" / name).glob("*.npz"):
            os.utime(f, (when, when))
    return d


def test_runs_lists_every_run_newest_first_with_its_figures(root):
    r = invoke("runs", "--root", root / "runs", "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert [g["run"] for g in got] == [str(root / "runs" / "cls"), str(root / "runs" / "lm")]
    for g in got:
        ck = C.load(g["checkpoint"])  # every figure against the checkpoint itself
        assert g["task"] == ck.family and g["step"] == ck.meta["step"]
        assert g["best"] == ck.meta[f"best_{g['metric']}"]
        assert g["modified"] == os.stat(g["checkpoint"]).st_mtime and g["error"] is None
    assert [g["metric"] for g in got] == ["val_error", "val_bpc"]
    table = invoke("runs", "--root", root / "runs")
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["run", "task", "model", "best", "validation", "steps", "age"]
    assert " classify " in lines[1] and " lm " in lines[2] and "bits/char" in lines[2]
    assert lines[2].split()[-3:-2] == ["10"] and "days" in lines[2]  # steps, age


def test_a_run_that_cannot_be_read_is_listed_as_such(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "last.npz").write_bytes(b"not a zip")
    (run,) = I.runs(tmp_path)
    assert run.family is None and "cannot read" in run.error
    r = invoke("runs", "--root", tmp_path)
    assert r.exit_code == 0 and "unreadable" in r.stdout
    r = invoke("runs", "--root", tmp_path / "none")
    assert r.exit_code == 0 and r.stdout == "" and "no runs" in r.stderr


def test_without_c_each_command_takes_the_newest_run_it_can_use(root, monkeypatch):
    """The classifier is the newest run: sample takes the language model (it used to fail
    with exit 2), predict the classifier, info the newest of all."""
    monkeypatch.chdir(root)
    r = invoke("sample", "-n", 5, "--seed", 1)
    assert r.exit_code == 0, r.output
    assert f"sampling from {os.path.join('runs', 'lm', 'best.npz')}" in r.stderr
    r = invoke("predict", "apple")
    assert r.exit_code == 0 and r.stdout.split("\t")[0] in ("v", "c"), r.output
    r = invoke("info", "--json")
    assert json.loads(r.stdout)["task"] == "classify"
    assert I.find_checkpoint(None, families=("lm",)) == C.resolve("runs/lm")
    assert I.find_checkpoint(None) == C.resolve("runs/cls")


def test_without_a_run_of_the_family_the_error_says_what_is_there(root, tmp_path, monkeypatch):
    (tmp_path / "runs").mkdir()
    os.symlink(root / "runs" / "cls", tmp_path / "runs" / "cls")
    monkeypatch.chdir(tmp_path)
    one_line_error(invoke("sample", "-n", 5), "no lm or generate run under runs/",
                   f"{os.path.join('runs', 'cls')}, holds a classify model", code=1)
