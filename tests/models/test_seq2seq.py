"""The sequence-to-sequence family (charrnn.models.seq2seq): every gradient against finite
differences, padding invariance, the step path against the teacher-forced chunk, decoding,
learning a copy task through the trainer, loading data, the exact resume, translate/eval."""

import time

import numpy as np
import pytest

from charrnn import checkpoint as C
from charrnn.checks.gradcheck import check_family
from charrnn.data import pairs as P
from charrnn.errors import ConfigError, CorpusError
from charrnn.infer import translate as TR
from charrnn.models import FAMILIES
from charrnn.models import seq2seq as S
from charrnn.train.trainer import TrainConfig, resume_config, train

V, K, H = 4, 6, 5  # all different, so a swapped axis fails


def config(cell="gru", layers=1, bidirectional=True, attention="additive", dropout=None):
    return S.Config(vocab_size=V, target_size=K, cell=cell, hidden=H, layers=layers,
                    bidirectional=bidirectional, attention=attention, dtype="float64",
                    dropout=(0.3 if layers > 1 else 0.0) if dropout is None else dropout)


CASES = [("gru", 1, True, "additive"), ("lstm", 1, True, "dot"), ("rnn", 1, False, "none"),
         ("lstm", 2, True, "additive"), ("gru", 2, False, "dot"), ("rnn", 2, True, "additive"),
         ("gru", 1, True, "none")]


@pytest.mark.parametrize("cell, layers, bidir, attention", CASES)
def test_every_gradient_matches_finite_differences(cell, layers, bidir, attention):
    cfg = config(cell, layers, bidir, attention)
    results = check_family(S, cfg, f"seq2seq/{cell}", layers, rows=3, steps=5, seed=2)
    assert {r.name for r in results} == set(S.param_shapes(cfg))  # every parameter checked
    bad = [f"{r.name} {r.rel_error:.1e} at {r.worst_index}" for r in results if not r.passed]
    assert not bad, bad


def test_registered_with_the_whole_contract():
    assert FAMILIES["seq2seq"] is S
    for name in ("NAME", "Config", "DEFAULT", "METRIC", "TRAIN_DEFAULTS", "param_shapes",
                 "count_params", "init_params", "init_state", "state_names", "width",
                 "draw_masks", "slice_masks", "loss_and_grads", "gradients", "loss",
                 "example_batch", "score_rows", "load_data", "complete", "data_meta",
                 "evaluate", "train_figures", "batch_chars", "memory_needed", "describe",
                 "describe_metric"):
        assert hasattr(S, name), name


def test_loss_is_the_weighted_mean_computed_independently(rng):
    cfg = config("lstm", 1, True, "dot")
    params = S.init_params(cfg, rng)
    batch = S.example_batch(cfg, rng, 4, 6)
    src, src_len, tgt_in, tgt_out, w = batch
    loss, _ = S.loss(params, cfg, batch)
    total = 0.0
    for n in range(len(src)):  # each row alone, unpadded, stepping the decoder
        L = int(np.count_nonzero(w[n]))
        memory, state = S.start(params, cfg, src[n : n + 1, : src_len[n]], src_len[n : n + 1])
        for t in range(L):
            z, _, state = S.step(params, cfg, memory, state, tgt_in[n, t : t + 1])
            z = z[0]
            total += w[n, t] * (np.log(np.exp(z - z.max()).sum()) + z.max() - z[tgt_out[n, t]])
    assert loss == pytest.approx(total / len(src), rel=1e-12)


@pytest.mark.parametrize("attention", S.ATTENTION)
def test_the_step_path_equals_the_teacher_forced_chunk(attention, rng):
    cfg = config("lstm", 2, True, attention, dropout=0.0)
    params = S.init_params(cfg, rng)
    src, src_len, tgt_in, _, w = S.example_batch(cfg, rng, 3, 6)
    tin = np.where(w != 0, tgt_in, 0).T  # (T, N)
    logits, cache = S.forward(params, cfg, src, src_len, tin)
    memory, state = S.start(params, cfg, src, src_len)
    for t in range(tin.shape[0]):
        z, a, state = S.step(params, cfg, memory, state, tin[t])
        np.testing.assert_allclose(z, logits[t], rtol=1e-11, atol=1e-13, err_msg=f"step {t}")
        np.testing.assert_allclose(a, cache.weights[t], rtol=1e-11, atol=1e-14)


def test_padding_changes_neither_the_loss_nor_any_gradient(rng):
    cfg = config("lstm", 2, True, "additive")
    params = S.init_params(cfg, rng)
    batch = S.example_batch(cfg, rng, 4, 6)
    masks = S.draw_masks(cfg, np.random.default_rng(7), batch)
    base = S.gradients(params, cfg, batch, (), masks)
    src, src_len, tgt_in, tgt_out, w = batch
    N, es, et = len(src), 3, 2  # more padded source and target steps, garbage everywhere
    more = (np.concatenate([src, rng.integers(0, 10**6, (N, es))], axis=1), src_len,
            *(np.concatenate([a, rng.integers(-99, 99, (N, et))], axis=1)
              for a in (tgt_in, tgt_out)), np.concatenate([w, np.zeros((N, et))], axis=1))
    n_enc = cfg.layers - 1
    masks2 = [np.concatenate([m, rng.uniform(0, 2, ((es if i < n_enc else et),) + m.shape[1:])])
              for i, m in enumerate(masks)]
    padded = S.gradients(params, cfg, more, (), masks2)
    assert padded[0] == pytest.approx(base[0], rel=1e-13)
    for name in params:
        np.testing.assert_allclose(padded[1][name], base[1][name], rtol=1e-11, atol=1e-13,
                                   err_msg=name)


def test_row_slices_scaled_by_their_share_add_up_to_the_batch(rng):
    cfg = config("gru", 2, True, "dot")
    params = S.init_params(cfg, rng)
    batch = S.example_batch(cfg, rng, 5, 6)
    masks = S.draw_masks(cfg, np.random.default_rng(3), batch)
    loss, grads, _ = S.loss_and_grads(params, cfg, batch, (), masks=masks)
    total, summed = 0.0, {k: np.zeros_like(v) for k, v in params.items()}
    for s in (slice(0, 2), slice(2, 5)):
        part = tuple(a[s] for a in batch)
        l, g, _ = S.loss_and_grads(params, cfg, part, (), masks=S.slice_masks(masks, s),
                                   scale=(s.stop - s.start) / 5)
        total += l
        for k in g:
            summed[k] += g[k]
    assert total == pytest.approx(loss, rel=1e-12)
    for k in params:
        np.testing.assert_allclose(summed[k], grads[k], rtol=1e-10, atol=1e-13, err_msg=k)


@pytest.mark.parametrize("attention", S.ATTENTION)
def test_beam_search_of_width_one_is_greedy(attention, rng):
    cfg = config("gru", 2, True, attention, dropout=0.0)
    params = S.init_params(cfg, rng)
    for p in params.values():
        p *= 3  # peaked distributions, so outputs vary and END is met
    sources = [rng.integers(0, V, n) for n in (1, 4, 7, 3)]
    greedy = S.decode(params, cfg, sources, max_length=9)
    for src, (ids, att) in zip(sources, greedy):
        b_ids, b_att, _ = S.beam_search(params, cfg, src, 1, max_length=9)
        assert b_ids == ids
        np.testing.assert_allclose(b_att, att, rtol=1e-12, atol=1e-15)
        assert att.shape[1] == (len(src) if attention != "none" else 0)
    wide = S.beam_search(params, cfg, sources[1], 4, max_length=9)  # finds one at least as good
    assert wide[2] >= S.beam_search(params, cfg, sources[1], 1, max_length=9)[2] - 1e-12


def test_sampling_is_seeded_and_cold_sampling_is_greedy(rng):
    cfg = config("gru", 1, True, "additive")
    params = S.init_params(cfg, rng)
    sources = [rng.integers(0, V, n) for n in (2, 5)]
    a = S.decode(params, cfg, sources, 8, 1.0, np.random.default_rng(5))
    b = S.decode(params, cfg, sources, 8, 1.0, np.random.default_rng(5))
    assert [x[0] for x in a] == [x[0] for x in b]
    cold = S.decode(params, cfg, sources, 8, 1e-6, np.random.default_rng(5))
    assert [x[0] for x in cold] == [x[0] for x in S.decode(params, cfg, sources, 8)]


def copy_corpus(path, n=600, seed=0):
    rng = np.random.default_rng(seed)
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(list("abcde"), size=int(rng.integers(3, 6)))))
    path.write_text("".join(f"{w}\t{w[::-1]}\n" for w in sorted(words)))
    return path


def tiny(corpus, out, **kw):
    d = {"task": "seq2seq", "corpus": str(corpus), "out": str(out), "hidden": 32,
         "attention": "additive", "cell": "gru", "batch": 32, "lr": 0.01, "steps": 300,
         "eval_every": 100, "warmup": 20, "dtype": "float64", "seed": 0, **kw}
    return TrainConfig.from_dict(d)


def test_a_reversal_task_is_learned_to_every_held_out_word(tmp_path):
    corpus = copy_corpus(tmp_path / "rev.tsv")
    t = time.perf_counter()
    res = train(tiny(corpus, tmp_path / "run"), threads=1)
    assert time.perf_counter() - t < 30
    evals = [r for r in res.history if r["kind"] == "eval"]
    assert evals[-1]["val_exact"] == 1.0 and evals[-1]["val_loss"] < 0.05
    ckpt = C.load(tmp_path / "run" / "best.npz")
    outs, att, unknown = TR.translate(ckpt, ["abcde", "ba", "eedd?"], beam=3)
    assert outs[:2] == ["edcba", "ab"] and unknown == 1
    assert att[0].shape == (6, 5)  # five characters and END, over five source positions
    np.testing.assert_allclose(att[0].sum(axis=1), 1.0)
    test = tmp_path / "test.tsv"
    test.write_text("abc\tcba\nabc\txyz\nddea\taedd\nbb\tbbb\n")  # bb: one edit off
    f = TR.evaluate_file(ckpt, test)
    assert f["examples"] == 3 and f["exact_match"] == pytest.approx(2 / 3)
    assert f["char_error_rate"] == pytest.approx(1 / 10) and f["unknown_characters"] == 0


def test_exact_resume_gives_bit_identical_parameters(tmp_path):
    corpus = copy_corpus(tmp_path / "rev.tsv", n=200)
    kw = {"steps": 14, "eval_every": 4, "dropout": 0.2, "layers": 2, "hidden": 8,
          "schedule": "constant", "batch": 16}
    train(tiny(corpus, tmp_path / "full", **kw), threads=1)
    train(tiny(corpus, tmp_path / "part", **{**kw, "steps": 9}), threads=1)
    res = train(resume_config(tmp_path / "part", steps=14), resume=True)
    assert res.step == 14
    full, part = C.load(tmp_path / "full" / "last.npz"), C.load(tmp_path / "part" / "last.npz")
    for k in full.params:
        np.testing.assert_array_equal(part.params[k], full.params[k], err_msg=k)
    assert part.meta["target_vocab"] == full.meta["target_vocab"]


def test_load_data_splits_by_source_and_builds_both_vocabularies(tmp_path):
    lines = [f"{w}\t{w.upper()}{i}\n" for w in ("ab", "ba", "abc", "cab", "bca", "cc", "a", "b",
                                               "ca", "ac") for i in range(3)]
    (tmp_path / "d.tsv").write_text("".join(lines))
    tcfg = TrainConfig.from_dict({"task": "seq2seq", "corpus": str(tmp_path / "d.tsv"),
                                  "val_frac": 0.3, "batch": 4})
    data = S.load_data(tcfg)
    assert len(data.val_groups) == 3 and all(len(r) == 3 for _, r in data.val_groups)
    assert list(data.target_vocab.chars[:3]) == list(P.RESERVED) and data.vocab.chars[0] == "\ufffd"
    cfg = S.complete(tcfg.model, data)
    assert cfg.target_size == len(S.data_meta(data)["target_vocab"])
    src, _src_len, tgt_in, tgt_out, w = data.batches.chunk(0)
    assert w.sum() == pytest.approx(len(src)) and (tgt_in[:, 0] == P.START_ID).all()
    assert ((tgt_out == P.END_ID).sum(axis=1) == 1).all()


def test_malformed_files_are_corpus_errors_naming_the_line(tmp_path):
    (tmp_path / "bad.tsv").write_text("abc\tcba\nno tab here\n")
    tcfg = TrainConfig.from_dict({"task": "seq2seq", "corpus": str(tmp_path / "bad.tsv")})
    with pytest.raises(CorpusError, match=r"bad.tsv:2: no tab"):
        S.load_data(tcfg)
    (tmp_path / "mark.tsv").write_text("".join(f"a{i}\tb{i}\n" for i in range(9))
                                       + "abc\tc\u0003a\n")
    with pytest.raises(CorpusError, match=r"mark.tsv:10: .*U\+0003"):
        S.load_data(TrainConfig.from_dict({"task": "seq2seq",
                                           "corpus": str(tmp_path / "mark.tsv")}))


def test_bad_configurations_are_config_errors():
    for bad in ({"attention": "luong"}, {"target_size": -1}, {"cell": "cnn"}, {"hidden": 0},
                {"dropout": 1.0}):
        with pytest.raises(ConfigError):
            S.Config(**bad)


def test_evaluation_and_training_split_across_worker_processes(tmp_path):
    """score_rows through the worker processes (both ops) gives what one process gives."""
    from charrnn.parallel import workers as W
    corpus = copy_corpus(tmp_path / "rev.tsv", n=200)
    tcfg = tiny(corpus, tmp_path / "r", hidden=16)
    data = S.load_data(tcfg)
    cfg = S.complete(tcfg.model, data)
    params = S.init_params(cfg, np.random.default_rng(0))
    alone = S.evaluate(params, cfg, data)
    with W.Workers(2) as workers:
        if workers.n < 2:
            pytest.skip("no worker processes here")
        split = S.evaluate(params, cfg, data, workers=workers)
        batch = data.batches.chunk(0)
        l1, g1, _ = W.loss_and_grads(S, params, cfg, batch, (), None, workers)
    assert split["val_exact"] == alone["val_exact"]
    assert split["val_loss"] == pytest.approx(alone["val_loss"], rel=1e-12)
    l0, g0, _ = S.loss_and_grads(params, cfg, batch)
    assert l1 == pytest.approx(l0, rel=1e-12)
    for k in g0:
        np.testing.assert_allclose(g1[k], g0[k], rtol=1e-9, atol=1e-12, err_msg=k)
