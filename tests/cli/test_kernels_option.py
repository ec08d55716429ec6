"""--kernels on the commands that run a saved model (sample, eval, predict, inside): the model
runs the kernels asked for, and the answer is the library's with those kernels."""

import json
from dataclasses import replace

import numpy as np
import pytest

from charrnn import checkpoint as C
from charrnn.data.vocab import Vocab
from charrnn.infer.sample import SampleConfig, generate
from charrnn.infer.scoring import score_text
from charrnn.models import lm as M
from charrnn.nn import cells, fused
from tests.helpers import AUSTEN, invoke, one_line_error

VOCAB = Vocab("\n abcdefghij")
KERNELS = ["numpy", "fused"] if fused.available() is None else ["numpy"]


@pytest.fixture
def lm_run(tmp_path):
    """runs/lstm/best.npz: a random float32 LSTM 16x2 (the kernels' kind), and a text."""
    cfg = M.ModelConfig(vocab_size=len(VOCAB), cell="lstm", hidden=16, layers=2)
    params = M.init_params(cfg, np.random.default_rng(0))
    params["Wy"] *= 10.0  # a peaked distribution: samples that differ show it
    path = tmp_path / "runs" / "lstm" / "best.npz"
    path.parent.mkdir(parents=True)
    C.save(path, C.Checkpoint(cfg, VOCAB, params, {"step": 1}))
    text = tmp_path / "text.txt"
    text.write_text("a bad cafe\nfed a big jade\n" * 20)
    return path, cfg, params, text


@pytest.fixture
def ran(monkeypatch):
    """The kernels every cell the commands look up runs (charrnn.nn.cells.cell's argument)."""
    seen = set()
    real = cells.cell
    monkeypatch.setattr(cells, "cell", lambda name, kernels="numpy": seen.add(kernels)
                        or real(name, kernels))
    return seen


@pytest.mark.parametrize("kernels", KERNELS)
def test_sample_runs_the_kernels_asked_for_and_samples_what_the_library_does(lm_run, ran,
                                                                             kernels):
    path, cfg, params, _ = lm_run
    r = invoke("sample", "-c", path, "--kernels", kernels, "--seed", 5, "--length", 300)
    assert r.exit_code == 0, r.stderr
    want = "".join(generate(params, replace(cfg, kernels=kernels), VOCAB,
                            config=SampleConfig(length=300), rng=np.random.default_rng(5)))
    assert r.stdout == want and len(want) == 300
    assert ran == {kernels}


@pytest.mark.parametrize("kernels", KERNELS)
def test_eval_runs_the_kernels_asked_for_and_scores_what_the_library_does(lm_run, ran, kernels):
    path, cfg, params, text = lm_run
    r = invoke("eval", "-c", path, text, "--kernels", kernels, "--json")
    assert r.exit_code == 0, r.stderr
    want = score_text(params, replace(cfg, kernels=kernels), VOCAB, text.read_text())
    got = json.loads(r.stdout)
    assert got["bpc"] == want.score.bpc
    assert ran == {kernels}


def test_auto_is_the_default_and_chooses_as_train_does(lm_run, ran):
    path, _, _, text = lm_run
    for args in (["sample", "-c", path, "--length", 5], ["eval", "-c", path, text]):
        assert invoke(*args).exit_code == 0
    assert ran == {cells.choose_kernels("auto", "lstm", "float32")}


@pytest.mark.parametrize("kernels", KERNELS)
def test_predict_runs_the_kernels_asked_for(tmp_path, ran, kernels):
    rows = [f"{w}\t{'short' if len(w) < 5 else 'long'}" for w in AUSTEN.split()[:120]]
    (tmp_path / "words.tsv").write_text("\n".join(rows) + "\n")
    r = invoke("train", "--task", "classify", tmp_path / "words.tsv", "--out", tmp_path / "cls",
               "--steps", 2, "--hidden", 8, "--batch", 8, "--dtype", "float32", "--cell", "gru",
               "-q")
    assert r.exit_code == 0, r.stderr
    ran.clear()
    r = invoke("predict", "-c", tmp_path / "cls", "--kernels", kernels, "house", "a")
    assert r.exit_code == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2 and ran == {kernels}


def test_an_unknown_choice_is_a_usage_error(lm_run):
    path, _, _, text = lm_run
    for args in (["sample", "-c", path], ["eval", "-c", path, text], ["predict", "-c", path]):
        r = invoke(*args, "--kernels", "fast")
        assert r.exit_code == 2 and "'fast' is not one of 'auto', 'numpy', 'fused'" in r.stderr


def test_fused_where_it_cannot_be_built_is_one_line_saying_why(lm_run, tmp_path, monkeypatch):
    path, _, _, text = lm_run
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))
    fused.reset()
    try:
        for args in (["sample", "-c", path], ["eval", "-c", path, text]):
            one_line_error(invoke(*args, "--kernels", "fused"),
                           "fused kernels are not available: no working C compiler")
            assert invoke(*args, "--length" if args[0] == "sample" else "--json",
                          *(["5"] if args[0] == "sample" else [])).exit_code == 0  # auto: numpy
    finally:
        fused.reset()
