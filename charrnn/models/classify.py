"""Many to one: a sequence classifier on a (bidirectional) recurrent encoder.

Shapes: N sequences, T padded length, V characters (with the unknown symbol), H hidden units per
direction, R directions, D = R * H, K classes.

    ids'  = ids, each character replaced by the unknown symbol (id 0) with probability
            input_dropout (training only; the same draw for every layer and direction)
    y, finals = encoder(ids', lengths)                    charrnn.nn.encoder; y (T, N, D)
    z_n = [f_{L_n - 1} ; g_0]                              pooling "last": both directions' finals
        = (1 / L_n) sum_{t < L_n} y_t                      pooling "mean"
        = max_{t < L_n} y_t   (per unit)                   pooling "max"
        = [z_last ; z_mean] etc.                           pooling "last+mean", "mean+max", ...:
                                                           the parts side by side, (N, P*D)
    logits = dropout(z) Wy + by                            (N, K)
    a = tau log(pi)                                        tau = logit_adjust, pi (K,) the training
                                                           part's class frequencies; 0 when off
    q_n = (1 - eps) onehot(label_n) + eps / K              eps = label_smoothing
    loss = (1 / N) sum_n w_n (-sum_k q_nk log softmax(logits_n + a)_k)
    dlogits_n = (w_n / N) (softmax(logits_n + a) - q_n)

The logit-adjusted loss (Menon et al. 2021, "Long-tail learning via logit adjustment") adds the
offsets a in training only: the model learns logits with the prior's share taken out, so at
prediction softmax(logits) favours no class for being frequent (tau = 1 aims at every class
alike, like class_weights 1, without weighting any example up). The batch carries a as a fifth
(N, K) array when tau > 0 (charrnn.models.encoded.load).

with the weights w of the batch summing to N (see charrnn.models.encoded): 1 each, or inverse
class frequencies raised to the power `class_weights` (1: each class counts alike however
unbalanced the data; 0: each example alike; the default 0.6 is between). Parameters: the encoder's `enc.l{k}.{fw,bw}.*` and the head's `Wy` (P*D, K), `by` (K,), P the number of
pooled parts.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError
from ..nn import encoder as E
from ..nn.metrics import figures
from . import encoded as B
from .encoded import (  # noqa: F401 (the family contract)
    IGNORES,
    batch_chars,
    inside,
    width,
)

NAME = "classify"
# the weighted error rate (see evaluate): with class_weights 1 it is 1 - macro accuracy, with 0
# 1 - accuracy
METRIC = "val_error"
POOLS = ("last", "mean", "max")
# a pooling is one of POOLS or several joined by "+" in POOLS' order, their results side by side
POOLING = (*POOLS, "last+mean", "last+max", "mean+max", "last+mean+max")
ANSWERS = "label"  # `charrnn predict` answers a text with its label (charrnn.infer.predict)


@dataclass(frozen=True)
class Config(B.DictConfig):
    """Everything that rebuilds a classifier. vocab_size and classes 0: from the data."""

    vocab_size: int = 0
    classes: int = 0
    # the defaults: the best measured on the names in 2 minutes (docs/en/explanation/findings.md)
    cell: str = "gru"
    hidden: int = 256
    layers: int = 2
    bidirectional: bool = True
    # the outputs' mean and maximum side by side: +2.3 points of macro accuracy over "last" at
    # a fixed 8 epochs on four names splits (accuracy -0.7), level with it in 2 minutes
    # (docs/en/explanation/findings.md)
    pooling: str = "mean+max"
    dropout: float = 0.4
    # training only: each character read as the unknown symbol with this probability (word
    # dropout, on characters), so the model cannot lean on any one of them; off by default: 0.1
    # on the names split by distinct surname was no reliable gain (docs/en/explanation/findings.md)
    input_dropout: float = 0.0
    # weight the loss by (inverse class frequency) ** class_weights: 0 weighs every example
    # alike, 1 every class alike (training only)
    class_weights: float = 0.6
    # training only: the logit-adjusted loss, softmax(logits + logit_adjust * log(class
    # frequency)); 0 off, 1 every class alike at prediction (with class_weights 0: the highest
    # macro accuracy measured on the names, docs/en/explanation/findings.md)
    logit_adjust: float = 0.0
    # training only: the target puts 1 - label_smoothing on the label and spreads the rest
    # evenly over the K classes (0: the plain negative log-likelihood)
    label_smoothing: float = 0.0
    dtype: str = "float32"
    kernels: str = "numpy"  # the cells' kernels (see lm.ModelConfig); not saved when "numpy"

    def __post_init__(self):
        B.check_config(self, ("vocab_size", "classes"))
        if self.pooling not in POOLING:
            raise ConfigError(f"pooling must be one of {', '.join(POOLS)} or several joined by "
                              f"'+' in that order ({', '.join(POOLING[3:])}), not "
                              f"{self.pooling!r}")
        d = self.input_dropout
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 <= d < 1:
            raise ConfigError(f"input_dropout must be in [0, 1), not {d!r}")
        e = self.label_smoothing
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not 0 <= e < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), not {e!r}")
        w = self.class_weights
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 1:
            raise ConfigError(f"class_weights must be a number in [0, 1], not {w!r}")
        a = self.logit_adjust
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 <= a <= 1:
            raise ConfigError(f"logit_adjust must be a number in [0, 1], not {a!r}")

    @classmethod
    def from_dict(cls, d: dict):
        # a checkpoint saved before input_dropout, label_smoothing or logit_adjust existed was
        # trained without them, and resumes so
        return super().from_dict({"input_dropout": 0.0, "label_smoothing": 0.0,
                                  "logit_adjust": 0.0, **d})


# `charrnn train --task classify`'s training settings where they differ from TrainConfig's;
# ema: the weights evaluated and saved are their moving average over about the last 200 steps
# (+0.3 points of accuracy and +1.3 of macro accuracy at a fixed 8 epochs on three names
# splits, docs/en/explanation/findings.md)
TRAIN_DEFAULTS = {"batch": 64, "lr": 5e-3, "warmup": 50, "eval_every": 200, "ema": 0.995}


def parts(cfg: Config) -> list[str]:
    """The pooled parts, in the order the head reads them side by side."""
    return cfg.pooling.split("+")


def head_width(cfg: Config) -> int:
    """P*D: the head's input, D = R*H per pooled part."""
    return len(parts(cfg)) * B.width(cfg)


def param_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    return {**B.encoder_shapes(cfg), "Wy": (head_width(cfg), cfg.classes),
            "by": (cfg.classes,)}


def init_params(cfg: Config, rng: np.random.Generator) -> dict:
    return B.init_params(cfg, param_shapes(cfg), rng)


def draw_masks(cfg: Config, rng, batch):
    """The encoder's and the head's dropout masks (charrnn.models.encoded.draw_masks), and with
    input_dropout last a (T, N, 1) array, 0 where the character is read as the unknown symbol
    and 1 where it is kept (not rescaled: it selects ids, it does not multiply activations)."""
    masks = B.draw_masks(cfg, rng, batch, head_steps=False, head_width=head_width(cfg))
    if rng is None or cfg.input_dropout == 0:
        return masks
    N, T = np.shape(batch[0])
    keep = (rng.random((T, N, 1)) >= cfg.input_dropout).astype(cfg.dtype)
    if masks is None:  # no dropout: the head's mask is all ones
        masks = [np.ones((1, N, head_width(cfg)), dtype=cfg.dtype)]
    return [*masks, keep]


class Cache(NamedTuple):
    enc: object  # the encoder's cache
    outs: np.ndarray  # (T, N, D)
    lengths: np.ndarray  # (N,)
    z: np.ndarray  # (N, P*D) the head's input, after dropout
    head_mask: np.ndarray | None  # (N, P*D)
    argmax: np.ndarray | None  # (N, D) time of each unit's maximum ("max" pooling)


def _pool(cfg: Config, outs, finals, lengths):
    """z (N, P*D), the parts side by side, and, with "max", the time index of each unit's
    maximum."""
    zs, arg = [], None
    for part in parts(cfg):
        if part == "last":
            zs.append(np.concatenate(finals[-1], axis=-1))
        elif part == "mean":  # the encoder's outputs are exactly zero at padding
            zs.append(outs.sum(axis=0) / lengths[:, None].astype(outs.dtype))
        else:
            T = outs.shape[0]
            pad = np.arange(T)[:, None] >= lengths[None, :]  # (T, N)
            masked = np.where(pad[..., None], -np.inf, outs)
            arg = masked.argmax(axis=0)  # (N, D)
            zs.append(np.take_along_axis(masked, arg[None], axis=0)[0])
    return (zs[0] if len(zs) == 1 else np.concatenate(zs, axis=-1)), arg


def forward(params, cfg: Config, ids, lengths, masks=None):
    """logits (N, K) and the cache."""
    lengths = np.asarray(lengths)
    if masks is not None and cfg.input_dropout > 0:
        ids = np.where(masks[-1][..., 0].T > 0, ids, 0)  # (N, T); 0 is the unknown symbol
        masks = masks[:-1]
    outs, finals, enc, head = B.encode(params, cfg, ids, lengths, masks)
    z, arg = _pool(cfg, outs, finals, lengths)
    hm = head[0] if head is not None else None
    if hm is not None:
        z = z * hm
    logits = z @ params["Wy"] + params["by"]
    return logits, Cache(enc, outs, lengths, z, hm, arg)


def backward(dlogits, params, cfg: Config, cache: Cache) -> dict:
    grads = {"Wy": cache.z.T @ dlogits, "by": dlogits.sum(axis=0)}
    dzs = dlogits @ params["Wy"].T  # (N, P*D)
    if cache.head_mask is not None:
        dzs *= cache.head_mask
    T, N, D = cache.outs.shape
    H = cfg.hidden
    douts = np.zeros((T, N, D), dtype=dzs.dtype)
    dfinals = None
    for j, part in enumerate(parts(cfg)):
        dz = dzs[:, j * D : (j + 1) * D]  # (N, D)
        if part == "last":
            top = (dz[:, :H], dz[:, H:]) if cfg.bidirectional else (dz,)
            dfinals = [None] * (cfg.layers - 1) + [top]
        elif part == "mean":
            real = np.arange(T)[:, None] < cache.lengths[None, :]  # (T, N)
            douts += (dz / cache.lengths[:, None].astype(dz.dtype))[None] * real[..., None]
        else:  # max: each unit's gradient goes to the step it was taken from (one per unit)
            at = cache.argmax[None]
            np.put_along_axis(douts, at, np.take_along_axis(douts, at, axis=0) + dz[None], axis=0)
    grads.update(E.backward(douts, dfinals, cache.enc))
    return grads


def _adjusted(logits, batch):
    """The logits the loss reads: with a fifth batch array, the logit adjustment's offsets
    (N, K), added to them."""
    return logits + batch[4].astype(logits.dtype, copy=False) if len(batch) > 4 else logits


def _smoothed(cfg: Config, logits, labels):
    """The softmax (N, K) and each row's loss against its smoothed target (N,): with
    eps = label_smoothing, (1 - eps) nll + eps mean_k(-log p_k), where -log p_k is
    logsumexp(logits) - logits_k and logsumexp = nll + logits[label]."""
    p, nll = B.softmax_nll(logits, labels)
    eps = cfg.label_smoothing
    if eps:
        rows = np.arange(len(nll))
        nll = nll + eps * (logits[rows, np.asarray(labels, dtype=np.intp)]
                           - logits.mean(axis=1))
    return p, nll


def gradients(params, cfg: Config, batch, state=(), masks=None, dfinal=None, scale=1.0):
    """(loss, grads, (), ()) of a batch (ids, lengths, labels, weights[, offsets]): the loss is
    the mean over the rows of weight * (the smoothed target's cross-entropy against
    softmax(logits + offsets)), times `scale`."""
    ids, lengths, labels, weights = batch[:4]
    logits, cache = forward(params, cfg, ids, lengths, masks)
    p, nll = _smoothed(cfg, _adjusted(logits, batch), labels)
    N, K = p.shape
    w = np.asarray(weights, dtype=p.dtype) * (scale / N)
    loss = float(np.dot(w.astype(np.float64), nll))
    eps = cfg.label_smoothing
    dlogits = (p - eps / K) * w[:, None] if eps else p * w[:, None]
    dlogits[np.arange(N), np.asarray(labels, dtype=np.intp)] -= (1 - eps) * w
    grads = backward(dlogits, params, cfg, cache)
    return loss, {k: grads[k] for k in params}, (), ()


def loss(params, cfg: Config, batch, state=(), masks=None):
    ids, lengths, labels, weights = batch[:4]
    logits, _ = forward(params, cfg, ids, lengths, masks)
    _, nll = _smoothed(cfg, _adjusted(logits, batch), labels)
    return float(np.dot(np.asarray(weights, dtype=np.float64), nll) / len(nll)), ()


POOLING_BY_CELL = {"rnn": "last+max", "gru": "mean", "lstm": "last+mean+max"}  # every part


def check_configs(cell: str, layers: int, hidden: int, vocab: int, classes: int) -> list:
    """[(label, Config)] for gradcheck: pooling as POOLING_BY_CELL says, characters dropped to
    the unknown symbol (input_dropout), a smoothed target (label_smoothing) and the
    logit-adjusted loss (logit_adjust)."""
    return [(f"{NAME} {cell}", B.small_config(Config, cell, layers, hidden, vocab,
                                              classes=classes, pooling=POOLING_BY_CELL[cell],
                                              input_dropout=0.3, label_smoothing=0.2,
                                              logit_adjust=0.7))]


def example_batch(cfg: Config, rng, rows: int, steps: int):
    """A random batch (charrnn.models.encoded.example_batch); with logit_adjust, the offsets of
    a random prior as its fifth array, as load_data's batches carry them."""
    batch = B.example_batch(rng, rows, steps, cfg.vocab_size, cfg.classes, per_step=False)
    if not cfg.logit_adjust:
        return batch
    # the prior from its own generator, so `rng` draws what follows (the checks' masks and
    # states) as it does without the offsets
    prior = np.random.default_rng([rows, steps, cfg.classes]).dirichlet(np.ones(cfg.classes))
    return (*batch, np.tile(cfg.logit_adjust * np.log(prior), (rows, 1)))


def probabilities(params, cfg: Config, ids, lengths) -> np.ndarray:
    """(N, K) class probabilities of a padded batch (no dropout)."""
    logits, _ = forward(params, cfg, ids, lengths)
    return B.softmax_nll(logits, np.zeros(len(logits), dtype=np.intp))[0]


def score_rows(params, cfg: Config, ids, lengths) -> list:
    """One slice's evaluation work: the class probabilities (n, K)."""
    return [probabilities(params, cfg, ids, lengths)]


def describe_metric(value: float) -> str:
    return f"{value:.4f} error rate (weighted as in training)"


def describe(cfg: Config) -> str:
    way = "bidirectional" if cfg.bidirectional else "unidirectional"
    return (f"{way} {cfg.cell} {cfg.hidden}x{cfg.layers}, {cfg.pooling} pooling, "
            f"{cfg.classes} classes, dropout {cfg.dropout:g}"
            + (f", input dropout {cfg.input_dropout:g}" if cfg.input_dropout else "")
            + (f", label smoothing {cfg.label_smoothing:g}" if cfg.label_smoothing else "")
            + (f", logit adjustment {cfg.logit_adjust:g}" if cfg.logit_adjust else "")
            + f", {cfg.dtype}")


def memory_needed(cfg: Config, batch: int, seq: int, processes: int = 1) -> int:
    return B.memory_needed(cfg, param_shapes(cfg), batch, seq, processes, cfg.classes)


def load_data(tcfg, saved=None) -> B.Data:
    """Labelled examples (charrnn.data.labelled: a TSV file of text<TAB>label, or a folder of
    <label>.txt files), with a stratified validation part, batched by length."""
    return B.load(tcfg, saved, per_step=False, power=tcfg.model.class_weights,
                  adjust=tcfg.model.logit_adjust)


def complete(cfg: Config, data: B.Data) -> Config:
    return B.complete(cfg, data, "classes")


data_meta = B.data_meta


def evaluate(params, cfg: Config, data: B.Data, tcfg=None, workers=None) -> dict:
    """Validation figures: the error rate and the loss, each weighted as in training (so that
    the best checkpoint is the best by what training optimises: with class_weights 1 the error
    is 1 - macro accuracy, with 0 it is 1 - accuracy), accuracy and macro accuracy (the mean of
    the per-class recalls)."""
    ids, y = data.val
    p = np.array(B.predict_rows(sys.modules[__name__], params, cfg, ids, workers))
    nll = -np.log(np.maximum(p[np.arange(len(y)), y], 1e-300))
    w = data.class_weights[y] if data.class_weights is not None else np.ones(len(y))
    pred = p.argmax(axis=1)
    f = figures(y, pred, cfg.classes)
    return {"val_error": float(np.dot(w, pred != y) / w.sum()),
            "val_loss": float(np.dot(w, nll) / w.sum()), "val_acc": f["accuracy"],
            "val_macro_acc": f["macro_accuracy"]}
