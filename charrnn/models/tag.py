"""Many to many in step: a tagger, one label per character, on a (bidirectional) encoder.

Shapes: N sequences, T padded length, V characters (with the unknown symbol), H hidden units per
direction, R directions, D = R * H, K tags.

    y = encoder(ids, lengths)                                   charrnn.nn.encoder; (T, N, D)
    logits_t = dropout(y_t) Wy + by                             (T, N, K)
    loss = (1 / N) sum_n sum_{t < L_n} w_nt (-log softmax(logits_nt)[tag_nt])

with w = N / sum(L) at the real characters (and 0 at padding), so the loss is the mean over the
batch's real characters (see charrnn.models.encoded). With the backward direction each tag sees
the whole text on both sides: whether a character starts a word depends on the next ones.
Parameters: the encoder's `enc.l{k}.{fw,bw}.*` and the head's `Wy` (D, K), `by` (K,).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..nn import encoder as E
from ..nn.metrics import figures
from . import encoded as B
from .encoded import (  # noqa: F401 (the family contract)
    IGNORES,
    batch_chars,
    describe_metric,
    inside,
    width,
)

NAME = "tag"
METRIC = "val_loss"
ANSWERS = "tags"  # `charrnn predict` answers a text with a tag per character


@dataclass(frozen=True)
class Config(B.DictConfig):
    """Everything that rebuilds a tagger. vocab_size and tags 0: from the data."""

    vocab_size: int = 0
    tags: int = 0
    # the defaults: word segmentation of tiny Shakespeare, F1 0.977 in 5 minutes (docs/en/guides/
    # labelled-data.md)
    cell: str = "gru"
    hidden: int = 256
    layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.2
    dtype: str = "float32"
    kernels: str = "numpy"  # the cells' kernels (see lm.ModelConfig); not saved when "numpy"

    def __post_init__(self):
        B.check_config(self, ("vocab_size", "tags"))


# `charrnn train --task tag`'s training settings where they differ from TrainConfig's
TRAIN_DEFAULTS = {"batch": 32, "lr": 5e-3, "warmup": 50, "eval_every": 200}


def param_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    D = B.directions(cfg) * cfg.hidden
    return {**B.encoder_shapes(cfg), "Wy": (D, cfg.tags), "by": (cfg.tags,)}


def init_params(cfg: Config, rng: np.random.Generator) -> dict:
    return B.init_params(cfg, param_shapes(cfg), rng)


def draw_masks(cfg: Config, rng, batch):
    return B.draw_masks(cfg, rng, batch, head_steps=True)


class Cache(NamedTuple):
    enc: object  # the encoder's cache
    y: np.ndarray  # (T*N, D) the head's input, after dropout
    head_mask: np.ndarray | None  # (T, N, D)


def forward(params, cfg: Config, ids, lengths, masks=None):
    """logits (T, N, K), time-major, and the cache."""
    outs, _, enc, head = B.encode(params, cfg, ids, lengths, masks)
    if head is not None:
        outs = outs * head
    T, N, D = outs.shape
    y = outs.reshape(T * N, D)
    logits = (y @ params["Wy"]).reshape(T, N, -1)
    logits += params["by"]
    return logits, Cache(enc, y, head)


def gradients(params, cfg: Config, batch, state=(), masks=None, dfinal=None, scale=1.0):
    """(loss, grads, (), ()) of a batch (ids, lengths, tags, weights), tags and weights (N, T):
    the loss is the mean over the rows of sum_t weight * nll, times `scale`."""
    ids, lengths, tags, weights = batch
    logits, cache = forward(params, cfg, ids, lengths, masks)
    T, N, K = logits.shape
    p, nll = B.softmax_nll(logits, np.asarray(tags).T)  # (T, N, K), (T, N)
    loss, dlogits = B.weighted_nll(p, nll, np.asarray(tags).T, weights, scale)
    dl = dlogits.reshape(T * N, K)
    grads = {"Wy": cache.y.T @ dl, "by": dl.sum(axis=0)}
    douts = (dl @ params["Wy"].T).reshape(T, N, -1)
    if cache.head_mask is not None:
        douts *= cache.head_mask
    grads.update(E.backward(douts, None, cache.enc))
    return loss, {k: grads[k] for k in params}, (), ()


def loss(params, cfg: Config, batch, state=(), masks=None):
    ids, lengths, tags, weights = batch
    logits, _ = forward(params, cfg, ids, lengths, masks)
    _, nll = B.softmax_nll(logits, np.asarray(tags).T)
    return B.weighted_loss(nll, weights), ()


def check_configs(cell: str, layers: int, hidden: int, vocab: int, classes: int) -> list:
    """[(label, Config)] for gradcheck."""
    return [(f"{NAME} {cell}", B.small_config(Config, cell, layers, hidden, vocab,
                                              tags=classes))]


def example_batch(cfg: Config, rng, rows: int, steps: int):
    return B.example_batch(rng, rows, steps, cfg.vocab_size, cfg.tags, per_step=True)


def probabilities(params, cfg: Config, ids, lengths) -> np.ndarray:
    """(N, T, K) tag probabilities of a padded batch (no dropout); padded rows are meaningless."""
    logits, _ = forward(params, cfg, ids, lengths)
    p, _ = B.softmax_nll(logits, np.zeros(logits.shape[:2], dtype=np.intp))
    return np.ascontiguousarray(p.transpose(1, 0, 2))


def score_rows(params, cfg: Config, ids, lengths) -> list:
    """One slice's evaluation work: the tag probabilities (n, T, K)."""
    return [probabilities(params, cfg, ids, lengths)]


def describe(cfg: Config) -> str:
    way = "bidirectional" if cfg.bidirectional else "unidirectional"
    return (f"{way} {cfg.cell} {cfg.hidden}x{cfg.layers}, {cfg.tags} tags, "
            f"dropout {cfg.dropout:g}, {cfg.dtype}")


def memory_needed(cfg: Config, batch: int, seq: int, processes: int = 1) -> int:
    return B.memory_needed(cfg, param_shapes(cfg), batch, seq, processes, cfg.tags)


def load_data(tcfg, saved=None) -> B.Data:
    """Texts with one tag per character (charrnn.data.labelled: a TSV of text<TAB>tags), with
    a seeded validation part, batched by length."""
    return B.load(tcfg, saved, per_step=True, power=0)


def complete(cfg: Config, data: B.Data) -> Config:
    return B.complete(cfg, data, "tags")


data_meta = B.data_meta


def evaluate(params, cfg: Config, data: B.Data, tcfg=None, workers=None) -> dict:
    """Validation figures: the loss per character, per-character accuracy and the mean F1 over
    the tags."""
    ids, y = data.val
    p = B.predict_rows(sys.modules[__name__], params, cfg, ids, workers)
    truth, probs = np.concatenate(y), np.concatenate(p)
    nll = -np.log(np.maximum(probs[np.arange(len(truth)), truth], 1e-300))
    f = figures(truth, probs.argmax(axis=1), cfg.tags)
    return {"val_loss": float(nll.mean()), "val_acc": f["accuracy"],
            "val_f1": float(np.nanmean(f["f1"][f["support"] > 0]))}
