"""The classifier and the tagger (charrnn.models.classify, .tag): gradients against finite
differences with masks and dropout, the heads against an independent computation, padding
invariance, and the row slices the worker processes take adding up to the whole batch."""

import numpy as np
import pytest

from charrnn.checks.gradcheck import check_family
from charrnn.models import classify as Cl
from charrnn.models import tag as Tg
from charrnn.nn import encoder as E

V, K, H = 4, 3, 5  # all different, so a swapped axis fails


def config(F, cell="gru", layers=1, bidirectional=True, **kw):
    sizes = {"classes": K} if F is Cl else {"tags": K}
    return F.Config(vocab_size=V, cell=cell, hidden=H, layers=layers, bidirectional=bidirectional,
                    dropout=0.3 if layers > 1 else 0.0, dtype="float64", **sizes, **kw)


CASES = [(Cl, "gru", 1, True, {"pooling": "last"}), (Cl, "gru", 1, True, {"pooling": "mean"}),
         (Cl, "gru", 1, True, {"pooling": "max"}), (Cl, "lstm", 2, True, {"pooling": "last"}),
         (Cl, "rnn", 2, False, {"pooling": "max"}), (Cl, "lstm", 1, False, {"pooling": "mean"}),
         (Cl, "gru", 2, True, {"pooling": "mean+max"}), (Cl, "lstm", 1, True, {"pooling": "last+mean"}),
         (Cl, "rnn", 2, False, {"pooling": "last+mean+max"}),
         (Cl, "gru", 2, True, {"input_dropout": 0.3}), (Cl, "gru", 1, True, {"input_dropout": 0.3}),
         (Cl, "lstm", 2, True, {"label_smoothing": 0.2, "pooling": "mean"}),
         (Cl, "gru", 1, False, {"label_smoothing": 0.5}),
         (Cl, "gru", 2, True, {"logit_adjust": 1.0, "pooling": "mean+max"}),
         (Cl, "lstm", 1, False, {"logit_adjust": 0.5, "label_smoothing": 0.2}),
         (Tg, "gru", 2, True, {}), (Tg, "lstm", 1, True, {}), (Tg, "rnn", 2, False, {})]


@pytest.mark.parametrize("F, cell, layers, bidir, kw", CASES)
def test_every_gradient_matches_finite_differences(F, cell, layers, bidir, kw):
    cfg = config(F, cell, layers, bidir, **kw)
    results = check_family(F, cfg, f"{F.NAME}/{cell}", layers, rows=3, steps=5, seed=2)
    assert {r.name for r in results} == set(F.param_shapes(cfg))  # every parameter checked
    bad = [f"{r.name} {r.rel_error:.1e} at {r.worst_index}" for r in results if not r.passed]
    assert not bad, bad


def batch_for(F, cfg, rng, rows=4, steps=6):
    return F.example_batch(cfg, rng, rows, steps)


def test_classifier_head_equals_an_independent_pooling(rng):
    """logits from the encoder's outputs, pooled by a loop over each sequence's real steps."""
    for pooling in Cl.POOLING:
        cfg = config(Cl, "lstm", 2, True, pooling=pooling)
        params = Cl.init_params(cfg, rng)
        ids, lengths, *_ = batch_for(Cl, cfg, rng)
        outs, _, _ = E.forward(params, cfg.cell, cfg.layers, True, ids, lengths)
        want = []
        for n, L in enumerate(lengths):
            y = outs[:L, n]  # (L, 2H) the real steps of sequence n
            each = {"last": np.concatenate([y[L - 1, :H], y[0, H:]]), "mean": y.mean(axis=0),
                    "max": y.max(axis=0)}
            z = np.concatenate([each[p] for p in pooling.split("+")])
            want.append(z @ params["Wy"] + params["by"])
        got, _ = Cl.forward(params, cfg, ids, lengths)
        np.testing.assert_allclose(got, np.array(want), rtol=1e-12, atol=1e-12, err_msg=pooling)


def test_losses_are_weighted_means_computed_independently(rng):
    for F in (Cl, Tg):
        cfg = config(F, "gru", 1, True)
        params = F.init_params(cfg, rng)
        ids, lengths, targets, weights = batch_for(F, cfg, rng)
        loss, _ = F.loss(params, cfg, (ids, lengths, targets, weights))
        logits, _ = F.forward(params, cfg, ids, lengths)
        total = 0.0
        for n, L in enumerate(lengths):
            if F is Cl:
                z = logits[n]
                total += weights[n] * (np.log(np.exp(z).sum()) - z[targets[n]])
            else:
                for t in range(L):
                    z = logits[t, n]
                    total += weights[n, t] * (np.log(np.exp(z).sum()) - z[targets[n, t]])
        assert loss == pytest.approx(total / len(ids), rel=1e-12), F.NAME


def test_label_smoothing_is_the_cross_entropy_against_the_smoothed_target(rng):
    """The loss with label smoothing eps, computed with an explicit target q = (1 - eps) onehot
    + eps / K and log-probabilities from scratch; eps 0 is the plain loss."""
    for eps in (0.0, 0.1, 0.6):
        cfg = config(Cl, "gru", 1, True, label_smoothing=eps)
        params = Cl.init_params(cfg, rng)
        ids, lengths, targets, weights = batch_for(Cl, cfg, rng)
        logits, _ = Cl.forward(params, cfg, ids, lengths)
        total = 0.0
        for n in range(len(ids)):
            logp = logits[n] - np.log(np.exp(logits[n]).sum())
            q = np.full(K, eps / K)
            q[targets[n]] += 1 - eps
            total += weights[n] * -(q * logp).sum()
        got, _ = Cl.loss(params, cfg, (ids, lengths, targets, weights))
        assert got == pytest.approx(total / len(ids), rel=1e-12), eps
        loss, _, _, _ = Cl.gradients(params, cfg, (ids, lengths, targets, weights))
        assert loss == pytest.approx(total / len(ids), rel=1e-12), eps


def test_the_logit_adjusted_loss_is_the_cross_entropy_of_the_offset_logits(rng):
    """With a fifth batch array of offsets a (the logit-adjusted loss), the loss is the weighted
    cross-entropy of softmax(logits + a) computed from scratch; prediction (forward) keeps the
    plain logits."""
    cfg = config(Cl, "gru", 1, True, logit_adjust=1.0)
    params = Cl.init_params(cfg, rng)
    ids, lengths, targets, weights, _ = batch_for(Cl, cfg, rng)  # example_batch's offsets
    prior = np.array([0.7, 0.2, 0.1])
    offsets = np.tile(np.log(prior), (len(ids), 1))
    logits, _ = Cl.forward(params, cfg, ids, lengths)
    total = 0.0
    for n in range(len(ids)):
        z = logits[n] + np.log(prior)
        total += weights[n] * -(z[targets[n]] - np.log(np.exp(z).sum()))
    batch = (ids, lengths, targets, weights, offsets)
    assert Cl.loss(params, cfg, batch)[0] == pytest.approx(total / len(ids), rel=1e-12)
    assert Cl.gradients(params, cfg, batch)[0] == pytest.approx(total / len(ids), rel=1e-12)
    plain = Cl.loss(params, cfg, batch[:4])[0]
    assert abs(plain - total / len(ids)) > 1e-3  # the offsets change the loss


def test_the_classifier_batches_carry_the_training_priors_log_as_offsets(tmp_path):
    """load_data with logit_adjust tau: each batch's fifth array is tau * log(the training
    part's class frequency) in every row, counted here from the file."""
    from charrnn.models import FAMILIES
    from charrnn.train.config import TrainConfig

    lines = [f"{w}\t{c}" for c, words, n in (("a", "ab ba aab", 30), ("b", "bb", 8), ("c", "cc", 2))
             for i in range(n) for w in [words.split()[i % len(words.split())] + "x" * (i % 5)]]
    path = tmp_path / "toy.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tcfg = TrainConfig.for_task("classify", corpus=str(path), batch=4, logit_adjust=0.5,
                                val_frac=0.2)
    data = FAMILIES["classify"].load_data(tcfg)
    counts = np.bincount([data.labels.index(y) for y in
                          [line.split("\t")[1] for line in lines]], minlength=3)
    batches = [data.batches.make(np.arange(i, i + 4)) for i in (0, 5)]
    for b in batches:
        assert len(b) == 5 and b[4].shape == (4, 3)
        freq = np.exp(b[4][0] / 0.5)  # the training part's frequencies, near the file's
        assert freq.sum() == pytest.approx(1.0)
        assert np.all(np.abs(freq - counts / counts.sum()) < 0.03)
        assert np.all(b[4] == b[4][0])
    plain = FAMILIES["classify"].load_data(TrainConfig.for_task("classify", corpus=str(path),
                                                                batch=4, val_frac=0.2))
    assert len(plain.batches.make(np.arange(4))) == 4  # off: the batch keeps four arrays


@pytest.mark.parametrize("F", [Cl, Tg])
def test_padding_changes_neither_the_loss_nor_any_gradient(F, rng):
    cfg = config(F, "lstm", 2, True)
    params = F.init_params(cfg, rng)
    ids, lengths, targets, weights = batch_for(F, cfg, rng)
    masks = F.draw_masks(cfg, np.random.default_rng(7), (ids,))
    base = F.gradients(params, cfg, (ids, lengths, targets, weights), (), masks)
    extra = 3  # more padded steps, with garbage ids, targets, mask values
    N = len(ids)
    ids2 = np.concatenate([ids, rng.integers(0, 10**6, (N, extra))], axis=1)
    masks2 = [np.concatenate([m, rng.uniform(0, 2, (extra if m.shape[0] > 1 else 0,)
                                              + m.shape[1:])]) for m in masks]
    if F is Tg:
        targets = np.concatenate([targets, rng.integers(0, K, (N, extra))], axis=1)
        weights = np.concatenate([weights, np.zeros((N, extra))], axis=1)
    padded = F.gradients(params, cfg, (ids2, lengths, targets, weights), (), masks2)
    assert padded[0] == pytest.approx(base[0], rel=1e-13)
    for name in params:
        np.testing.assert_allclose(padded[1][name], base[1][name], rtol=1e-11, atol=1e-13,
                                   err_msg=name)


@pytest.mark.parametrize("F", [Cl, Tg])
def test_row_slices_scaled_by_their_share_add_up_to_the_batch(F, rng):
    """What charrnn.parallel relies on: rows split n_s / N each give the batch's loss and grads
    (the classifier's batch with its fifth array, the logit adjustment's offsets)."""
    cfg = config(F, "gru", 2, True, **({"logit_adjust": 0.5} if F is Cl else {}))
    params = F.init_params(cfg, rng)
    batch = batch_for(F, cfg, rng, rows=5)
    assert len(batch) == (5 if F is Cl else 4)
    masks = F.draw_masks(cfg, np.random.default_rng(3), batch)
    loss, grads, _ = F.loss_and_grads(params, cfg, batch, (), masks=masks)
    total, summed = 0.0, {k: np.zeros_like(v) for k, v in params.items()}
    for s in (slice(0, 2), slice(2, 5)):
        part = tuple(a[s] for a in batch)
        l, g, _ = F.loss_and_grads(params, cfg, part, (), masks=F.slice_masks(masks, s),
                                   scale=(s.stop - s.start) / 5)
        total += l
        for k in g:
            summed[k] += g[k]
    assert total == pytest.approx(loss, rel=1e-12)
    for k in params:
        np.testing.assert_allclose(summed[k], grads[k], rtol=1e-10, atol=1e-13, err_msg=k)


def test_input_dropout_reads_the_dropped_characters_as_the_unknown_symbol(rng):
    """With input_dropout, training's forward equals the plain forward of the ids with the
    dropped characters replaced by 0 one by one in a loop, under the same other masks."""
    for layers in (1, 2):
        cfg = config(Cl, "gru", layers, True, input_dropout=0.4)
        params = Cl.init_params(cfg, rng)
        ids, lengths, *_ = batch_for(Cl, cfg, rng, rows=5, steps=7)
        masks = Cl.draw_masks(cfg, np.random.default_rng(5), (ids,))
        keep = masks[-1]  # (T, N, 1)
        assert keep.shape == (7, 5, 1) and set(np.unique(keep)) == {0.0, 1.0}
        replaced = ids.copy()
        for n in range(len(ids)):
            for t in range(ids.shape[1]):
                if keep[t, n, 0] == 0:
                    replaced[n, t] = 0
        got, _ = Cl.forward(params, cfg, ids, lengths, masks)
        plain = Cl.Config(**{**cfg.to_dict(), "input_dropout": 0.0})
        want, _ = Cl.forward(params, plain, replaced, lengths, masks[:-1])
        np.testing.assert_array_equal(got, want)
        # without rng (evaluation) nothing is dropped
        assert Cl.draw_masks(cfg, None, (ids,)) is None
    # dropout 0 with input dropout: only the head's all-ones mask and the characters' mask
    cfg = config(Cl, "gru", 2, True, input_dropout=0.25)
    cfg = Cl.Config(**{**cfg.to_dict(), "dropout": 0.0})
    masks = Cl.draw_masks(cfg, np.random.default_rng(0), (np.zeros((400, 50), dtype=int),))
    assert len(masks) == 2 and np.all(masks[0] == 1)
    assert abs(1 - masks[1].mean() - 0.25) < 0.01  # 20,000 draws: sd 0.003


def test_a_saved_configuration_without_input_dropout_resumes_without_it():
    """Checkpoints saved before the settings existed were trained with no input dropout and no
    label smoothing."""
    saved = Cl.Config(input_dropout=0.3).to_dict()
    del saved["input_dropout"]
    assert Cl.Config.from_dict(saved).input_dropout == 0.0
    assert Cl.Config.from_dict({**saved, "input_dropout": 0.3}).input_dropout == 0.3
    saved = Cl.Config(label_smoothing=0.1).to_dict()
    del saved["label_smoothing"]
    assert Cl.Config.from_dict(saved).label_smoothing == 0.0
    saved = Cl.Config(logit_adjust=0.5).to_dict()
    del saved["logit_adjust"]
    assert Cl.Config.from_dict(saved).logit_adjust == 0.0


def test_bad_configurations_are_config_errors():
    from charrnn.errors import ConfigError
    for F, bad in ((Cl, {"pooling": "median"}), (Cl, {"pooling": "max+mean"}),
                   (Cl, {"pooling": "mean+mean"}), (Cl, {"classes": -1}), (Tg, {"cell": "cnn"}),
                   (Tg, {"bidirectional": "yes"}), (Cl, {"dropout": 1.0}), (Tg, {"hidden": 0}),
                   (Cl, {"input_dropout": 1.0}), (Cl, {"input_dropout": -0.1}),
                   (Cl, {"input_dropout": True}),
                   (Cl, {"label_smoothing": 1.0}), (Cl, {"label_smoothing": -0.1}),
                   (Cl, {"logit_adjust": 1.5}), (Cl, {"logit_adjust": -0.1}),
                   (Cl, {"logit_adjust": True})):
        with pytest.raises(ConfigError):
            F.Config(**bad)
