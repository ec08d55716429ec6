"""The conditioned generator (charrnn.models.generate): forward against a naive loop, padding,
gradients, learning a tiny set, sampling per label, exact resume."""

import numpy as np
import pytest

from charrnn import checkpoint as C
from charrnn.checks import gradcheck
from charrnn.data import pairs as P
from charrnn.errors import ConfigError, CorpusError
from charrnn.infer import generated as GT
from charrnn.infer.sample import SampleConfig, generate_conditioned, label_condition
from charrnn.models import generate as G
from charrnn.models import lm
from charrnn.train.config import resume_config
from charrnn.train.trainer import TrainConfig, train
from tests.helpers import assert_close, assert_same_params

CELLS = ("rnn", "gru", "lstm")


def sig(x):
    return 1 / (1 + np.exp(-x))


def naive_cell(cell, pre, h, c, p, k):
    """One step of a cell written out gate by gate (charrnn.nn.cells's conventions)."""
    H = h.shape[-1]
    Wh = p[f"l{k}.Wh"]
    if cell == "rnn":
        return np.tanh(pre + h @ Wh), c
    if cell == "gru":
        r = sig(pre[:H] + h @ Wh[:, :H])
        z = sig(pre[H : 2 * H] + h @ Wh[:, H : 2 * H])
        n = np.tanh(pre[2 * H :] + r * (h @ Wh[:, 2 * H :] + p[f"l{k}.bhn"]))
        return (1 - z) * n + z * h, c
    a = pre + h @ Wh
    i, f, o, g = sig(a[:H]), sig(a[H : 2 * H]), sig(a[2 * H : 3 * H]), np.tanh(a[3 * H :])
    c = f * c + i * g
    return o * np.tanh(c), c


def naive_logits(p, cfg, ids, length, cond):
    """Logits (length, V) of one row, step by step, from the equations in the docstring."""
    H, K = cfg.hidden, cfg.layers
    if cfg.condition == "init":
        hs = [np.tanh(cond @ p[f"init.l{k}.W"] + p[f"init.l{k}.b"]) for k in range(K)]
    else:
        hs = [np.zeros(H) for _ in range(K)]
    cs = [np.zeros(H) for _ in range(K)]
    out = []
    for t in range(length):
        x = None
        for k in range(K):
            if k == 0:
                pre = p["l0.Wx"][ids[t]] + p["l0.b"]
                if cfg.condition == "input":
                    pre = pre + cond @ p["cond.W"]
            else:
                pre = x @ p[f"l{k}.Wx"] + p[f"l{k}.b"]
            hs[k], cs[k] = naive_cell(cfg.cell, pre, hs[k], cs[k], p, k)
            x = hs[k]
        out.append(x @ p["Wy"] + p["by"])
    return np.array(out)


def model(cell, way, layers=2, rng=None, V=7, C_=3, H=5):
    cfg = G.Config(vocab_size=V, cond_size=C_, cell=cell, hidden=H, layers=layers,
                   condition=way, dropout=0.0, dtype="float64")
    rng = rng or np.random.default_rng(1)
    params = G.init_params(cfg, rng)
    for k in params:  # off the special initial values
        params[k] += 0.3 * rng.standard_normal(params[k].shape)
    return cfg, params


@pytest.mark.parametrize("way", ("init", "input", "none"))
@pytest.mark.parametrize("cell", CELLS)
def test_forward_and_loss_equal_a_naive_loop(cell, way):
    rng = np.random.default_rng(2)
    cfg, p = model(cell, way, rng=rng)
    ids, targets, weights, cond = G.example_batch(cfg, rng, 3, 6)
    logits, _ = G.forward(p, cfg, np.where(weights > 0, ids, 0), cond)
    lengths = (weights > 0).sum(axis=1)
    total = 0.0
    for n in range(3):
        want = naive_logits(p, cfg, ids[n], lengths[n], cond[n])
        assert_close(logits[: lengths[n], n], want, what=f"row {n} logits")
        z = want - want.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        total += -sum(weights[n, t] * logp[t, targets[n, t]] for t in range(lengths[n]))
    loss, _ = G.loss(p, cfg, (ids, targets, weights, cond))
    assert loss == pytest.approx(total / 3, rel=1e-12)


@pytest.mark.parametrize("way", ("init", "input"))
def test_padding_changes_nothing(way):
    """Longer padding, with any ids and targets in it, gives the same loss and gradients, and a
    row's loss does not depend on the rows beside it."""
    rng = np.random.default_rng(3)
    cfg, p = model("lstm", way, rng=rng)
    texts = [np.array([3, 4, 5]), np.array([6]), np.array([3, 3, 4, 5, 6])]
    cond = rng.standard_normal((3, cfg.cond_size))
    batch = G.make_batch(texts, cond)
    loss, grads, _, _ = G.gradients(p, cfg, batch)
    ids, tgt, w, c = batch
    pad = 4
    wide = (np.concatenate([ids, rng.integers(-99, 99, (3, pad))], axis=1),
            np.concatenate([tgt, rng.integers(-99, 99, (3, pad))], axis=1),
            np.concatenate([w, np.zeros((3, pad))], axis=1), c)
    loss2, grads2, _, _ = G.gradients(p, cfg, wide)
    assert loss2 == pytest.approx(loss, rel=1e-13)
    for k in grads:
        assert_close(grads2[k], grads[k], rtol=1e-11, atol=1e-14, what=k)
    rows = G.score_rows(p, cfg, *batch)[0]
    for n in range(3):
        alone = G.score_rows(p, cfg, *G.make_batch([texts[n]], cond[n : n + 1]))[0]
        assert alone[0] == pytest.approx(rows[n], rel=1e-12)


@pytest.mark.parametrize("layers", (1, 2))
@pytest.mark.parametrize("cell", CELLS)
def test_every_gradient_matches_finite_differences_both_ways_in(cell, layers):
    results = gradcheck.check("generate", cell, layers)
    names = {r.name for r in results}
    assert {"init.l0.W", "init.l0.b", "cond.W", "l0.Wx", "Wy"} <= names
    if layers == 2:
        assert {"init.l1.W", "l1.Wx"} <= names
    bad = [r for r in results if not r.passed]
    assert not bad, bad


@pytest.mark.parametrize("way", ("init", "input"))
def test_the_sampling_start_gives_the_forward_logits(way):
    """conditioned_lm() folds the condition into a plain language model: stepping it gives forward's
    logits row by row."""
    rng = np.random.default_rng(4)
    cfg, p = model("gru", way, rng=rng)
    texts = [np.array([3, 4, 5, 6])]
    cond = rng.standard_normal((1, cfg.cond_size))
    ids = G.make_batch(texts, cond)[0]
    logits, _ = G.forward(p, cfg, ids, cond)
    q, state = G.conditioned_lm(p, cfg, cond[0])
    step = lm.stepper(q, cfg)
    for t in range(ids.shape[1]):
        out, state = step(ids[:, t], state)
        assert_close(out[0], logits[t, 0], what=f"step {t}")


def test_config_is_checked():
    with pytest.raises(ConfigError, match="condition must be one of"):
        G.Config(condition="sideways")
    with pytest.raises(ConfigError, match="unknown cell"):
        G.Config(cell="transformer")
    with pytest.raises(ConfigError, match="cond_size"):
        G.Config(cond_size=-1)


# --- a tiny set, learned ----------------------------------------------------------------------

WORDS = {"Alpha": "bonito", "Beta": "kurama"}


def tiny_set(path, n=20):
    """Each label with its own word, repeated. One distinct text per label leaves no split by
    distinct text a validation part, so the tests validate on the set itself (val=data)."""
    path.mkdir()
    for label, word in WORDS.items():
        (path / f"{label}.txt").write_text(f"{word}\n" * n)
    return path


def tiny_cfg(data, out, **kw):
    base = {"task": "generate", "corpus": str(data), "out": str(out), "hidden": 16,
            "batch": 8, "steps": 120, "eval_every": 40, "lr": 2e-2, "warmup": 5,
            "dropout": 0.0, "dtype": "float64", "schedule": "constant"}
    return TrainConfig.from_dict({**base, **kw})


@pytest.mark.parametrize("way", ("init", "input"))
def test_a_tiny_set_is_learned_and_each_label_samples_its_own_text(tmp_path, way):
    data = tiny_set(tmp_path / "words")
    res = train(tiny_cfg(data, tmp_path / "run", val=str(data), condition=way), threads=1)
    assert res.best < 0.1  # bits per character
    ckpt = C.load(C.resolve(tmp_path / "run"))
    for label, word in WORDS.items():
        cool = SampleConfig(length=20, temperature=0.5)
        assert GT.names(ckpt, label, 5, seed=1, config=cool) == [word] * 5
        greedy = SampleConfig(length=20, greedy=True)
        assert GT.names(ckpt, label, 1, config=greedy) == [word]
        assert GT.names(ckpt, label, 1, config=greedy, prime=word[:2]) == [word]
    r = GT.evaluate_file(ckpt, data)
    assert set(r["per_label"]) == set(WORDS) and r["bpc"] < 0.1
    assert r["examples"] == 40 and r["chars"] == 40 * 7
    nov = GT.novelty(ckpt, ["bonito"], None, 3, 0, SampleConfig(length=20, greedy=True))
    assert nov["per_label"]["Alpha"]["novelty"] == 0 and nov["per_label"]["Beta"]["novelty"] == 1


def test_unconditioned_cannot_tell_the_labels_apart(tmp_path):
    data = tiny_set(tmp_path / "words")
    res = train(tiny_cfg(data, tmp_path / "run", val=str(data), condition="none"), threads=1)
    assert res.best > 0.1  # one bit for the first character is left: which word


def test_generation_stops_at_length_and_checks_labels(tmp_path):
    cfg, p = model("gru", "init", V=len(P.RESERVED) + 3)
    from charrnn.data.vocab import Vocab

    vocab = Vocab([*P.RESERVED, "a", "b", "c"])
    cond = label_condition(["x", "y", "z"], "y", "float64")
    assert cond.tolist() == [0, 1, 0]
    text = "".join(generate_conditioned(p, cfg, vocab, cond, "ab", SampleConfig(length=3),
                                        np.random.default_rng(0)))
    assert text.startswith("ab") and len(text) <= 5
    with pytest.raises(ConfigError, match="unknown label 'w'; the labels are: x, y, z"):
        label_condition(["x", "y", "z"], "w")
    with pytest.raises(ConfigError, match="give one of: x, y, z"):
        label_condition(["x", "y", "z"], None)


def test_a_generators_sampling_defaults_to_the_nucleus():
    """infer.generated's texts (and charrnn sample's for a generator) are drawn at temperature 1
    from the top-p 0.9 nucleus unless told; greedy takes none; top-p 1 draws from all."""
    c = GT.sample_config()
    assert (c.temperature, c.top_p, c.top_k, c.greedy, c.length) == (1.0, 0.9, None, False, 50)
    assert GT.sample_config(greedy=True).top_p is None
    assert GT.sample_config(0.5, top_p=1.0).top_p == 1.0
    assert GT.sample_config(top_k=3).top_p == 0.9


def test_data_reads_the_classifier_files_and_names_bad_lines(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("anna\tA\nbob\n")
    with pytest.raises(CorpusError, match="bad.tsv:2: no tab"):
        G.load_data(tiny_cfg(bad, tmp_path / "r"))
    good = tmp_path / "good.tsv"
    good.write_text("".join(f"{w}{i}\t{y}\n" for i in range(10) for y, w in WORDS.items()))
    val = tmp_path / "val.tsv"
    val.write_text("bonito\tGamma\n")
    with pytest.raises(CorpusError, match="val.tsv:1: label 'Gamma' does not occur"):
        G.load_data(tiny_cfg(good, tmp_path / "r", val=str(val)))
    data = G.load_data(tiny_cfg(good, tmp_path / "r"))
    assert data.labels == ["Alpha", "Beta"] and list(data.vocab.chars[:3]) == list(P.RESERVED)
    assert len(data.val[0]) == 2 and sorted(data.val[1].tolist()) == [0, 1]  # stratified
    ids, _, w, cond = data.batches.chunk(0)
    assert (ids[:, 0] == P.START_ID).all() and w.sum() == pytest.approx(len(ids))
    assert cond.shape == (len(ids), 2) and (cond.sum(axis=1) == 1).all()


def test_exact_resume_gives_bit_identical_parameters(tmp_path):
    data = tiny_set(tmp_path / "words")
    kw = {"steps": 14, "eval_every": 4, "dropout": 0.2, "layers": 2, "hidden": 8}
    train(tiny_cfg(data, tmp_path / "full", val=str(data), **kw), threads=1)
    train(tiny_cfg(data, tmp_path / "part", val=str(data), **{**kw, "steps": 9}), threads=1)
    res = train(resume_config(tmp_path / "part", steps=14), resume=True)
    assert res.step == 14
    full, part = C.load(tmp_path / "full" / "last.npz"), C.load(tmp_path / "part" / "last.npz")
    assert_same_params(part.params, full.params)
    assert part.meta["labels"] == full.meta["labels"] == ["Alpha", "Beta"]


def test_two_processes_train_as_one_does_to_rounding(tmp_path):
    data = tiny_set(tmp_path / "words")
    kw = {"steps": 6, "eval_every": 3, "dropout": 0.2, "hidden": 8, "batch": 16}
    one = train(tiny_cfg(data, tmp_path / "one", val=str(data), **kw), threads=1)
    two = train(tiny_cfg(data, tmp_path / "two", val=str(data), **kw), threads=2)
    a, b = C.load(tmp_path / "one" / "last.npz"), C.load(tmp_path / "two" / "last.npz")
    for k in a.params:
        assert_close(b.params[k], a.params[k], rtol=1e-9, atol=1e-12, what=k)
    assert two.best == pytest.approx(one.best, rel=1e-9)


def test_fused_kernels_train_the_generator_as_numpy_does_to_rounding(tmp_path):
    from charrnn.nn import fused

    why = fused.available()
    if why is not None:
        pytest.skip(f"fused kernels unavailable: {why}")
    data = tiny_set(tmp_path / "words")
    kw = {"steps": 6, "eval_every": 3, "dtype": "float32", "cell": "lstm", "hidden": 8}
    a = train(tiny_cfg(data, tmp_path / "numpy", val=str(data), kernels="numpy", **kw),
              threads=1)
    b = train(tiny_cfg(data, tmp_path / "fused", val=str(data), kernels="fused", **kw), threads=1)
    pa, pb = (C.load(tmp_path / d / "last.npz") for d in ("numpy", "fused"))
    assert pb.meta["train"]["kernels"] == "fused"
    for k in pa.params:
        assert_close(pb.params[k], pa.params[k], rtol=1e-3, atol=1e-5, what=k)
    assert b.best == pytest.approx(a.best, rel=1e-4)
    assert any((pb.params[k] != pa.params[k]).any() for k in pa.params)  # fused really ran


def test_the_guides_python_example_runs():
    """The "One to many" guide's Python block (docs/en/guides/generate.md), as a reader would run it."""
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "en" / "guides" / "generate.md"
    code = page.read_text().split("```python\n", 1)[1].split("```", 1)[0]
    scope = {}
    exec(compile(code, str(page), "exec"), scope)  # noqa: S102 (the guide's own code)
    assert np.isfinite(scope["loss"]) and "init.l0.W" in scope["grads"]


def test_only_the_generator_has_the_conditioned_lm_hook():
    """The CLI tells a generator by this hook (cli.console.is_generator); no other family may
    have it (seq2seq's `start` once collided with an earlier name)."""
    from charrnn.models import FAMILIES

    assert [n for n, F in FAMILIES.items() if hasattr(F, "conditioned_lm")] == ["generate"]


@pytest.mark.parametrize("way", ("init", "input"))
@pytest.mark.parametrize("cell", CELLS)
def test_inside_records_each_line_as_the_training_forward_reads_it_under_its_label(cell, way):
    from charrnn.data.vocab import Vocab
    from charrnn.nn.cells import CELLS as NNCELLS

    cfg, params = model(cell, way, V=len(P.RESERVED) + 3)
    vocab = Vocab([*P.RESERVED, "a", "b", "c"])
    meta = {"labels": ["x", "y", "z"]}
    read, spans, arrays, skipped = G.inside(params, cfg, vocab, "abca\tz\n\ncab?\tx\n", meta=meta)
    assert (read, spans, skipped) == ("abcacab", [(0, 4), (4, 7)], 1)
    for text, label, (lo, hi) in (("abca", 2, spans[0]), ("cab", 0, spans[1])):
        ids = np.array([[P.START_ID, *vocab.encode(text)]])
        _, cache = G.forward(params, cfg, ids, np.eye(3)[[label]])  # the training forward
        for k, layer in enumerate(cache.lm.layers):
            for s, a in NNCELLS[cell].series(layer.cell).items():  # (T, 1, H), START first
                assert_close(arrays[f"l{k}.{s}"][lo:hi], a[1:, 0], 1e-12)
    with pytest.raises(CorpusError, match="line 1: a generator reads text<TAB>label"):
        G.inside(params, cfg, vocab, "abc", meta=meta)
    with pytest.raises(CorpusError, match="line 2: unknown label 'w'"):
        G.inside(params, cfg, vocab, "a\tx\nb\tw", meta=meta)
