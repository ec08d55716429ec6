"""The trainer through its Python API: learning, determinism, exact resume, stopping, locking."""

import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from charrnn import checkpoint as C
from charrnn.data import text as D
from charrnn.errors import CharrnnError, ConfigError, CorpusError, TrainingDiverged
from charrnn.models import lm as M
from charrnn.parallel import workers as P
from charrnn.train.trainer import TrainConfig, resume_config, train
from tests.helpers import assert_close, assert_same_params, tiny

FOX = "a quick brown fox jumps over the lazy dog; " * 30


@pytest.fixture
def corpus_text():
    return FOX


def tiny_fox(corpus, out, **kw):
    """tiny() in the shape this module's numbers were measured in (1161 training characters of
    FOX in 8 streams of 16: 9 chunks per epoch): a 2-layer GRU."""
    return tiny(corpus, out, **{"cell": "gru", "layers": 2, "batch": 8, "seq": 16, **kw})


def params_of(path):
    return C.load(path).params


def test_learns_a_repeated_sentence(tmp_path, corpus):
    cfg = tiny_fox(corpus, tmp_path / "r", hidden=32, layers=1, batch=4, steps=300, eval_every=100,
               lr=5e-2, schedule="cosine", warmup=10, dtype="float32")
    res = train(cfg)
    # measured 0.118 bits/char on validation (seed 0), most of it the first characters of each
    # validation stream, which start from the zero state; a model that learned nothing: ~4.3
    assert res.best_val_bpc < 0.3
    assert res.history[0]["train_bpc"] > 4.0


def test_same_seed_same_history_and_eval_does_not_disturb_training(tmp_path, corpus):
    a = train(tiny_fox(corpus, tmp_path / "a", dropout=0.2))
    b = train(tiny_fox(corpus, tmp_path / "b", dropout=0.2))
    c = train(tiny_fox(corpus, tmp_path / "c", dropout=0.2, eval_every=1))
    losses = lambda r: [h["train_bpc"] for h in r.history if h["kind"] == "train"]
    assert losses(a) == losses(b) == losses(c)
    assert_same_params(params_of(tmp_path / "a" / "last.npz"),
                       params_of(tmp_path / "c" / "last.npz"))
    d = train(tiny_fox(corpus, tmp_path / "d", dropout=0.2, seed=1))
    assert losses(d) != losses(a)


def test_a_resume_on_other_machine_code_says_it_is_not_bit_exact(tmp_path, corpus):
    """A run records NumPy's version, its BLAS and the compiled kernels' build ("numerics"); a
    resume where any of them changed says, in one line, that it continues to rounding only."""
    from charrnn.parallel import blas
    from tests.helpers import edit_npz, set_meta

    train(tiny_fox(corpus, tmp_path / "r", steps=6, eval_every=3))
    saved = C.load(tmp_path / "r" / "last.npz").meta["numerics"]
    assert saved == {"numpy": np.__version__, "blas": blas.describe(), "kernels_build": None}

    def notes(steps):
        starts = []
        train(resume_config(tmp_path / "r", steps=steps), resume=True,
              on_event=lambda e: starts.append(e.info) if e.kind == "start" else None)
        return [info["resume_note"] for info in starts]

    assert notes(9) == [None]  # the same machine code: nothing to say
    last = tmp_path / "r" / "last.npz"
    edit_npz(last, last, lambda m: set_meta(m, numerics={**saved, "numpy": "1.26.0"}))
    assert notes(12) == [(f"this run was trained with other numerics (NumPy 1.26.0 -> "
                         f"{np.__version__}): it continues to rounding, not bit for bit")]
    edit_npz(last, last, lambda m: set_meta(m, numerics=None))  # saved before it was recorded
    assert notes(15) == [None]


@pytest.mark.parametrize("opt", ["adam", "rmsprop", "adagrad", "sgd"])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, corpus, opt):
    # 1161 training chars in 8 streams of 16: 9 chunks per epoch, so 23 steps cross two epoch
    # wraps (state resets) and the interruption at 13 falls mid-epoch (state carried)
    kw = {"optimizer": opt, "dropout": 0.3, "steps": 23, "eval_every": 6}
    train(tiny_fox(corpus, tmp_path / "full", **kw))
    train(tiny_fox(corpus, tmp_path / "part", **{**kw, "steps": 13}))  # stops mid-epoch
    res = train(resume_config(tmp_path / "part", steps=23), resume=True)
    assert res.step == 23
    full, part = C.load(tmp_path / "full" / "last.npz"), C.load(tmp_path / "part" / "last.npz")
    assert_same_params(part.params, full.params)
    assert_same_params(part.arrays, full.arrays, what="arrays")
    assert part.meta["rng"] == full.meta["rng"] and part.meta["data"] == full.meta["data"]


def test_ema_saves_the_average_of_every_step_and_trains_as_without(tmp_path, corpus):
    """The run with --ema 0.6 steps exactly the weights of the run without it (saved as
    train/<param>), and its checkpoint's model is the average of those weights after each of its
    5 steps, each step's share from the documented rule (tests/nn/test_optim.py's unrolling),
    the weights of each step read from a run of that many steps."""
    from tests.nn.test_optim import step_weights

    kw = {"dropout": 0.3, "eval_every": 5}
    for k in range(1, 6):
        train(tiny_fox(corpus, tmp_path / f"k{k}", steps=k, **kw))
    train(tiny_fox(corpus, tmp_path / "ema", steps=5, ema=0.6, **kw))
    ck = C.load(tmp_path / "ema" / "last.npz")
    raw = [params_of(tmp_path / f"k{k}" / "last.npz") for k in range(1, 6)]
    trained = {k[6:]: v for k, v in ck.arrays.items() if k.startswith("train/")}
    assert_same_params(trained, raw[-1], what="the weights as trained")
    w = step_weights(0.6, 5)
    for name in raw[0]:
        assert_close(ck.params[name], sum(wi * r[name] for wi, r in zip(w, raw)), what=name)
    val = lambda run: [h["val_bpc"] for h in C.load(tmp_path / run / "last.npz").meta["history"]
                       if h["kind"] == "eval"]
    assert val("ema") != val("k5")  # evaluated on the average, not the weights as trained
    assert_same_params(params_of(tmp_path / "ema" / "best.npz"), ck.params)  # the one evaluation


def test_ema_resumes_exactly(tmp_path, corpus):
    kw = {"dropout": 0.3, "steps": 23, "eval_every": 6, "ema": 0.9}
    train(tiny_fox(corpus, tmp_path / "full", **kw))
    train(tiny_fox(corpus, tmp_path / "part", **{**kw, "steps": 13}))
    train(resume_config(tmp_path / "part", steps=23), resume=True)
    full, part = C.load(tmp_path / "full" / "last.npz"), C.load(tmp_path / "part" / "last.npz")
    assert_same_params(part.params, full.params)
    assert_same_params(part.arrays, full.arrays, what="arrays")
    assert any(k.startswith("train/") for k in full.arrays)
    with pytest.raises(ConfigError, match="ema"):  # the average is the run's, as the model is
        train(resume_config(tmp_path / "part", steps=30, ema=0.5), resume=True)


def test_cosine_resume_after_a_stop_request(tmp_path, corpus):
    kw = {"dropout": 0.3, "steps": 17, "schedule": "cosine", "warmup": 3}
    train(tiny_fox(corpus, tmp_path / "full", **kw))
    first = train(tiny_fox(corpus, tmp_path / "part", **kw), on_event=lambda e: e.step >= 7)
    assert first.reason == "interrupted" and first.step == 7
    train(tiny_fox(corpus, tmp_path / "part", **kw), resume=True)
    full, part = params_of(tmp_path / "full" / "last.npz"), params_of(tmp_path / "part" / "last.npz")
    assert_same_params(part, full)


def test_checkpoint_contract_and_metrics(tmp_path, corpus):
    res = train(tiny_fox(corpus, tmp_path / "r"))
    ck = C.load(tmp_path / "r" / "last.npz")
    m = ck.meta
    assert m["step"] == 10 and m["corpus"] == str(corpus) and m["elapsed"] > 0
    assert tiny_fox(corpus, tmp_path / "r").kernels == "auto"  # saved as what it chose:
    assert TrainConfig.from_dict(m["train"]) == tiny_fox(corpus, tmp_path / "r", kernels="numpy")
    assert m["best_val_bpc"] == min(h["val_bpc"] for h in m["history"] if h["kind"] == "eval")
    lines = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert lines == m["history"] == res.history
    for h in lines:
        keys = {"train": {"train_bpc", "grad_norm", "lr", "chars_per_sec"},
                "eval": {"val_bpc", "val_nats"}}[h["kind"]]
        assert keys <= set(h) and "step" in h
    evals = [h for h in lines if h["kind"] == "eval"]
    assert [h["step"] for h in evals] == [5, 10]
    assert math.isclose(evals[-1]["val_bpc"], evals[-1]["val_nats"] / math.log(2))
    best = C.load(tmp_path / "r" / "best.npz")
    assert best.meta["best_val_bpc"] == m["best_val_bpc"]
    assert not (tmp_path / "r" / "train.lock").exists()


def test_epochs_and_patience_stop(tmp_path, corpus):
    res = train(tiny_fox(corpus, tmp_path / "e", steps=None, epochs=1.5))
    assert (res.reason, res.step) == ("epochs", 14)  # ceil(1.5 * 9 chunks)
    res = train(tiny_fox(corpus, tmp_path / "m", steps=None, minutes=1e-4))  # 6 ms
    assert res.reason == "minutes" and res.step < 1000 and res.elapsed >= 0.006
    # sgd with a vanishing rate: validation never improves after the first evaluation
    res = train(tiny_fox(corpus, tmp_path / "p", optimizer="sgd", lr=1e-300, steps=50, eval_every=1,
                     patience=2))
    assert (res.reason, res.step) == ("patience", 3)


def test_divergence_raises_and_keeps_checkpoints(tmp_path, corpus, monkeypatch):
    train(tiny_fox(corpus, tmp_path / "r"))
    before = {n: (tmp_path / "r" / n).read_bytes() for n in ("best.npz", "last.npz")}
    real = P.loss_and_grads
    calls = []

    def poisoned(*a, **k):
        loss, g, s = real(*a, **k)
        calls.append(1)
        return (float("nan") if len(calls) == 3 else loss), g, s

    monkeypatch.setattr(P, "loss_and_grads", poisoned)
    with pytest.raises(TrainingDiverged, match="step 13.*lower --lr"):
        train(resume_config(tmp_path / "r", steps=20), resume=True)
    after = {n: (tmp_path / "r" / n).read_bytes() for n in before}
    assert after == before


def test_refusals(tmp_path, corpus):
    cfg = tiny_fox(corpus, tmp_path / "r")
    train(cfg)
    with pytest.raises(CharrnnError, match="already holds a run.*--resume"):
        train(cfg)
    with pytest.raises(ConfigError, match="--hidden 8 \\(now 9\\)"):
        train(tiny_fox(corpus, tmp_path / "r", hidden=9, steps=20), resume=True)
    other = tmp_path / "other.txt"
    other.write_text(FOX.replace("dog", "cat").replace("c", "d"))
    with pytest.raises((CorpusError, CharrnnError)):
        train(tiny_fox(other, tmp_path / "r", steps=20), resume=True)
    with pytest.raises(CharrnnError, match="nothing to resume"):
        train(tiny_fox(corpus, tmp_path / "none"), resume=True)


def test_lock_refuses_a_live_owner_and_takes_a_stale_one(tmp_path, corpus):
    run = tmp_path / "r"
    run.mkdir()
    (run / "train.lock").write_text(str(os.getppid()))  # alive: the process that started us
    with pytest.raises(CharrnnError, match="in use by another trainer"):
        train(tiny_fox(corpus, run))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / "train.lock").write_text(str(dead.pid))
    assert train(tiny_fox(corpus, run)).step == 10


def test_a_lock_left_with_our_own_pid_is_stale(tmp_path, corpus):
    """In a container a trainer killed as pid 1 leaves "1" for the next trainer, also pid 1."""
    run = tmp_path / "r"
    run.mkdir()
    (run / "train.lock").write_text(str(os.getpid()))
    assert train(tiny_fox(corpus, run)).step == 10


@pytest.mark.parametrize("bad", [{"hidden": 0}, {"batch": -1}, {"val_frac": 1.0},
                                 {"val_frac": 0}, {"lr": 0}, {"clip": -1}, {"steps": 0},
                                 {"dropout": 1.0}, {"optimizer": "lion"}, {"cell": "tree"},
                                 {"encoding": "nope"}, {"minutes": -1}, {"hidden": True},
                                 {"batch": 2.0}, {"steps": True}, {"lr": "0.1"},
                                 {"dtype": "float16"}, {"layers": 0}, {"clip": None},
                                 {"dropout": "0.1"}, {"cell": ["lstm"]}, {"ema": 1.0},
                                 {"ema": -0.1}, {"ema": True}])
def test_config_validation(bad):
    with pytest.raises(ConfigError):
        TrainConfig.from_dict(bad)


def test_no_budget_means_default_minutes():
    assert TrainConfig().minutes == 5.0 and TrainConfig(steps=3).minutes is None


def test_sigterm_stops_and_saves_only_when_asked(tmp_path, corpus):
    seen, before = [], signal.getsignal(signal.SIGTERM)

    def on_event(e):  # SIGTERM to ourselves at step 3
        seen.append(signal.getsignal(signal.SIGTERM))
        if e.kind == "step" and e.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    r = train(tiny_fox(corpus, tmp_path / "a", steps=10**6), on_event=on_event, sigterm=True)
    assert r.reason == "terminated" and r.step == 3
    assert C.load(tmp_path / "a" / "last.npz").meta["step"] == 3  # saved by the stop
    assert signal.getsignal(signal.SIGTERM) == before  # given back
    # without sigterm=True the library leaves SIGTERM to its caller
    seen.clear()
    train(tiny_fox(corpus, tmp_path / "b", steps=2), on_event=lambda e: seen.append(
        signal.getsignal(signal.SIGTERM)))
    assert seen and all(h == before for h in seen)


# --- edge cases: the memory estimate, a tiny validation part, each chunk once an epoch --------

@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("V, N, T, H, L, dtype", [(3000, 16, 32, 32, 2, "float32"),
                                                  (30000, 8, 16, 16, 1, "float64"),
                                                  (65, 8, 16, 128, 2, "float32")])
def test_memory_estimate_bounds_the_measured_peak_of_a_step(cell, V, N, T, H, L, dtype):
    import tracemalloc
    cfg = M.ModelConfig(vocab_size=V, cell=cell, hidden=H, layers=L, dropout=0.1, dtype=dtype)
    params = M.init_params(cfg, np.random.default_rng(0))
    ids = np.random.default_rng(1).integers(0, V, (N, T + 1))
    tracemalloc.start()
    try:
        M.loss_and_grads(params, cfg, (ids[:, :-1], ids[:, 1:]), M.init_state(cfg, N),
                         np.random.default_rng(0))
        peak = tracemalloc.get_traced_memory()[1]  # includes the gradients
    finally:
        tracemalloc.stop()
    measured = peak + 3 * sum(a.nbytes for a in params.values())  # + params, 2 adam moments
    assert measured <= M.memory_needed(cfg, N, T) <= 4 * measured


def test_validation_part_shorter_than_one_chunk_still_scores(corpus, tmp_path):
    res = train(tiny(corpus, tmp_path / "r", val_frac=0.06, batch=16, seq=16, steps=2))
    assert math.isfinite(res.best_val_bpc)  # ~54 validation characters, less than 16 x 16


def test_a_validation_split_too_small_to_mean_anything_is_refused(corpus, tmp_path):
    """--val-frac 0.0001 would leave 2 characters, too few to pick a best checkpoint by."""
    with pytest.raises(CorpusError, match="the validation split is 2 characters"):
        train(tiny(corpus, tmp_path / "r", val_frac=1e-9, batch=16, seq=16, steps=2))
    assert not (tmp_path / "r").exists()


def test_the_trainer_takes_each_chunk_once_per_epoch(corpus, tmp_path, monkeypatch):
    real, targets = P.loss_and_grads, []

    def spy(F, params, cfg, batch, state, rng=None, workers=None):
        targets.append(np.array(batch[1]))
        return real(F, params, cfg, batch, state, rng, workers)

    monkeypatch.setattr(P, "loss_and_grads", spy)
    cfg = tiny(corpus, tmp_path / "r", steps=None, epochs=2.0, eval_every=1000)
    corpus_ids = D.load(corpus, cfg.val_frac)
    b = D.batches(corpus_ids.train, cfg.batch, cfg.seq)
    train(cfg)
    assert len(targets) == 2 * b.chunks
    for step, got in enumerate(targets):  # chunks 0..C-1, in order, in each epoch
        np.testing.assert_array_equal(got, b.chunk(step % b.chunks)[1], err_msg=str(step))

