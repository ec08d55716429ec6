"""Gradient flow through time: how much the loss at the last step depends on the state k steps back.

For S windows of text (each `warmup + K + 2` characters, cut at random places), the model first
reads `warmup` characters from the zero state (so the state is a realistic one), then the last
K + 1 input characters; the loss L is the cross-entropy of the last step's prediction only. With
s_k the state the model carries *into* the last k + 1 steps, this module measures

    g_k = dL/ds_k,   k = 0..K        (k = 0: the state entering the last step)

so each k adds one recurrent transition between the state and the loss. The series reported is
the mean over the S windows of ||g_k||, where the norm is taken over **every layer's h
concatenated** (sqrt of the sum of the layers' squared norms): the whole carried state, because
the gradient into the past flows through every layer's recurrence and stacked layers hand it to
each other. For the LSTM the cell state c is measured the same way, separately. Per-layer norms
are kept too (`h_layers`, `c_layers`).

How it is computed (design choice to keep): with the trainer's own backward pass, not a second
implementation. The last K + 1 steps are run as K + 1 one-step chunks with the state carried
(exactly equal to one pass over the K + 1 steps; tests/test_cells checks this), and the chunks are
then differentiated last to first with `charrnn.model.backward`: the last chunk gets the loss
gradient and returns g_0 as its `dstate_0`; every earlier chunk gets zero `dlogits` and g_{k-1}
as the gradient of its final state, and returns g_k. That is the chain rule, so g_k is exactly
the gradient the trainer would compute, at O(K) cost. The loss is a sum over windows, not a mean,
so each window's g_k is its own loss's gradient.

Everything runs in float64 (checkpoints are cast): a vanishing gradient reaches 1e-30 and below
within 100 steps, which float32 would flush to zero.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from typing import NamedTuple

import numpy as np

from .. import checkpoint as C
from ..data.text import read_corpus, vocab_of
from ..errors import ConfigError, CorpusError, VocabularyError
from ..models import family
from ..models import lm as M
from ..nn.cells import CELLS

RATIO = 1e-3  # "vanished": the norm fell below this fraction of its k = 0 value
GROWTH = 10.0  # "exploded": the norm rose above this multiple of its k = 0 value
TABLE_KS = (1, 10, 25, 50, 100)  # distances shown in the summary table
MARKERS = "●▲■◆▼○"


class Flow(NamedTuple):
    """One model's series. Arrays are indexed by k = 0..K."""

    label: str
    cell: str
    hidden: int
    layers: int
    h: np.ndarray  # (K+1,) mean over windows of ||dL/dh|| over all layers concatenated
    c: np.ndarray | None  # (K+1,) the same for the LSTM cell state; None for rnn and gru
    h_layers: np.ndarray  # (K+1, layers) mean over windows of each layer's ||dL/dh||
    c_layers: np.ndarray | None  # (K+1, layers) LSTM only
    corpus: str  # the text the windows were cut from


def check_settings(length: int, samples: int, warmup: int, scale: float) -> None:
    """Raise ConfigError naming the first bad setting."""
    for name, value, low in (("length", length, 1), ("samples", samples, 1), ("warmup", warmup, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"{name} must be a whole number >= {low}, not {value!r}")
    if not (math.isfinite(scale) and scale >= 0):
        raise ConfigError(f"scale must be a finite number >= 0, not {scale!r}")


def windows(ids: np.ndarray, length: int, samples: int, warmup: int,
            rng: np.random.Generator, corpus: str = "the text") -> np.ndarray:
    """`samples` random windows of `warmup + length + 2` ids, shape (S, warmup + K + 2)."""
    need = warmup + length + 2
    if len(ids) < need:
        raise CorpusError(f"{corpus} has {len(ids)} characters; gradflow needs at least {need} "
                          f"(--warm-chars {warmup} + --length {length} + 2)")
    starts = rng.integers(0, len(ids) - need + 1, size=samples)
    return np.stack([ids[s : s + need] for s in starts]).astype(np.intp)


def state_gradients(params, cfg: M.ModelConfig, win: np.ndarray, length: int) -> list:
    """g[k] = dL/ds_k for k = 0..K (see the module docstring), each a state tuple: per layer
    (dh,) or (dh, dc), each (S, H). win: (S, warmup + K + 2) ids. Uses params as given."""
    S = win.shape[0]
    warm = win.shape[1] - length - 2
    state = M.init_state(cfg, S)
    if warm > 0:
        _, state, _ = M.forward(params, cfg, win[:, :warm], state)
    caches = []
    for j in range(warm, warm + length + 1):  # the last K + 1 steps, one chunk each
        logits, state, cache = M.forward(params, cfg, win[:, j : j + 1], state)
        caches.append(cache)
    _, dlogits = M.cross_entropy(logits, win[:, -1:])  # (1, S, V), gradient of the mean
    dlogits *= S  # of the sum: each window's gradient is its own loss's
    grads = []
    dstate = None
    zero = np.zeros_like(dlogits)
    for cache in reversed(caches):
        _, dstate = M.backward(dlogits, dstate, cache)
        grads.append(dstate)
        dlogits = zero
    return grads


def measure(params, cfg: M.ModelConfig, ids: np.ndarray, length: int = 100, samples: int = 16,
            rng: np.random.Generator | None = None, warmup: int = 100, scale: float = 1.0,
            label: str | None = None, corpus: str = "the text") -> Flow:
    """The gradient-flow series of one model on encoded text `ids` (1-D).

    The parameters are copied to float64 and each layer's recurrent weights `l{k}.Wh` are
    multiplied by `scale`; the caller's arrays are not touched.
    """
    check_settings(length, samples, warmup, scale)
    rng = rng if rng is not None else np.random.default_rng(0)
    cfg = replace(cfg, dtype="float64")
    params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    for k in range(cfg.layers):
        params[f"l{k}.Wh"] *= scale
    win = windows(np.asarray(ids), length, samples, warmup, rng, corpus)
    grads = state_gradients(params, cfg, win, length)
    # norms[k, layer, which] per window -> (K+1, L, n_states, S)
    sq = np.array([[[np.einsum("nh,nh->n", a, a) for a in layer] for layer in g] for g in grads])
    h_layers = np.sqrt(sq[:, :, 0]).mean(axis=-1)
    h = np.sqrt(sq[:, :, 0].sum(axis=1)).mean(axis=-1)
    c = c_layers = None
    if sq.shape[2] == 2:
        c_layers = np.sqrt(sq[:, :, 1]).mean(axis=-1)
        c = np.sqrt(sq[:, :, 1].sum(axis=1)).mean(axis=-1)
    return Flow(label or cfg.cell, cfg.cell, cfg.hidden, cfg.layers, h, c, h_layers, c_layers,
                corpus)


def compare_fresh(text: str, cells=tuple(CELLS), hidden: int = 128, layers: int = 1,
                  length: int = 100, samples: int = 16, seed: int = 0, warmup: int = 100,
                  scale: float = 1.0, corpus: str = "the text") -> list[Flow]:
    """Freshly initialised models of each cell, same sizes, same windows of the same text.
    Each model's init and the windows come from np.random.default_rng(seed), so a cell's
    series does not depend on which other cells are compared."""
    check_settings(length, samples, warmup, scale)
    vocab = vocab_of(text)
    ids = vocab.encode(text)
    flows = []
    for cell in cells:
        cfg = M.ModelConfig(vocab_size=len(vocab), cell=cell, hidden=hidden, layers=layers,
                            dtype="float64")
        params = M.init_params(cfg, np.random.default_rng(seed))
        flows.append(measure(params, cfg, ids, length, samples, np.random.default_rng(seed),
                             warmup, scale, cell, corpus))
    return flows


def from_checkpoint(path: str | os.PathLike, corpus: str | os.PathLike | None = None,
                    length: int = 100, samples: int = 16, seed: int = 0, warmup: int = 100,
                    scale: float = 1.0, encoding: str | None = None) -> Flow:
    """Measure a saved model (file or run directory) on `corpus`, or on the corpus recorded in
    its metadata. Text the model's vocabulary cannot encode is an error naming the characters.
    `encoding`: the text's; by default utf-8 for `corpus`, and for the recorded corpus the
    encoding the model was trained with."""
    check_settings(length, samples, warmup, scale)
    file = C.resolve(path)
    ckpt = C.load(file)
    if not hasattr(family(ckpt.family), "stepper"):
        raise ConfigError(f"{file} holds a {ckpt.family} model; gradflow measures language "
                          f"models (--task lm)")
    if corpus is not None:
        text = read_corpus(corpus, encoding or "utf-8")
    else:
        corpus = ckpt.meta.get("corpus")
        if not isinstance(corpus, str):
            raise CorpusError(f"checkpoint {file} does not record its corpus; give --corpus")
        trained = ckpt.meta.get("train")
        trained = trained if isinstance(trained, dict) else {}
        out = trained.get("out")
        corpus = C.recorded_corpus(corpus, file.parent, out if isinstance(out, str) else None)
        recorded = trained.get("encoding")
        try:
            text = read_corpus(corpus, encoding or
                               (recorded if isinstance(recorded, str) else "utf-8"))
        except CorpusError as e:
            raise CorpusError(f"the corpus recorded in {file}: {e}; give --corpus") from None
    try:
        ids = ckpt.vocab.encode(text)
    except VocabularyError as e:
        raise VocabularyError(f"corpus {corpus} does not fit the vocabulary of {file}: "
                              f"{e}") from None
    return measure(ckpt.params, ckpt.model, ids, length, samples, np.random.default_rng(seed),
                   warmup, scale, str(path), str(corpus))


def vanish_k(series: np.ndarray, ratio: float = RATIO) -> int | None:
    """The first k with series[k] < ratio * series[0]; None if there is none."""
    below = np.nonzero(np.asarray(series) < ratio * series[0])[0]
    return int(below[0]) if below.size else None


def explode_k(series: np.ndarray, growth: float = GROWTH) -> int | None:
    """The first k with series[k] > growth * series[0]; None if there is none."""
    above = np.nonzero(np.asarray(series) > growth * series[0])[0]
    return int(above[0]) if above.size else None


def verdict(series: np.ndarray) -> str:
    """What the gradient does over k = 0..K, in words: "vanishes at k=22", "explodes at k=38
    (x360 at k=100)" or "neither up to k=100 (x0.022 at k=100)"; the factor is series[K] over
    series[0]."""
    series = np.asarray(series)
    K = len(series) - 1
    factor = f"x{series[K] / series[0]:.2g} at k={K}" if series[0] > 0 else f"k={K}"
    k = vanish_k(series)
    if k is not None:
        return f"vanishes at k={k}"
    k = explode_k(series)
    if k is not None:
        return f"explodes at k={k} ({factor})"
    return f"neither up to k={K} ({factor})"


def chart(flows: list[Flow], width: int = 64, height: int = 16) -> str:
    """A text chart of each flow's h series against k, log-scaled y axis, one marker per flow
    (MARKERS, in order; a later flow overwrites an earlier one where they meet)."""
    K = len(flows[0].h) - 1
    cols = min(width, K + 1)
    ks = np.unique(np.round(np.linspace(0, K, cols)).astype(int))
    logs = [np.log10(np.where(f.h > 0, f.h, np.nan)) for f in flows]
    finite = np.concatenate([v[np.isfinite(v)] for v in logs] or [np.zeros(1)])
    lo, hi = (math.floor(finite.min()), math.ceil(finite.max())) if finite.size else (0, 1)
    hi = max(hi, lo + 1)
    grid = [[" "] * len(ks) for _ in range(height)]
    for marker, v in zip(MARKERS * len(flows), logs):
        for x, k in enumerate(ks):
            if np.isfinite(v[k]):
                grid[round((hi - v[k]) / (hi - lo) * (height - 1))][x] = marker
    step = next(d for d in (1, 2, 5, 10, 20, 50, 100, 200) if (hi - lo) / d <= height / 3)
    labels = {round((hi - e) / (hi - lo) * (height - 1)): f"1e{e:+03d}"
              for e in range(hi, lo - 1, -step)}
    lines = [(f"{labels[r]:>8} ┤" if r in labels else " " * 9 + "│") + "".join(row)
             for r, row in enumerate(grid)]
    lines.append(" " * 9 + "└" + "─" * len(ks))
    ticks = [" "] * len(ks)
    free = 0  # first column a tick may use (ticks never touch)
    for k in (0, K // 2, K):
        x, tick = int(np.argmin(np.abs(ks - k))), str(k)
        start = min(x, len(ks) - len(tick))
        if start >= free:
            ticks[start : start + len(tick)] = tick
            free = start + len(tick) + 1
    lines.append(" " * 10 + "".join(ticks) + "  k")
    lines.append(" " * 10 + "y: mean |dL/dh| (log scale) at k steps before the loss")
    legend = (f"{m} {f.label}" for m, f in zip(MARKERS * len(flows), flows))
    lines.append(" " * 10 + "   ".join(legend))
    return "\n".join(lines)


def _floats(a) -> list | None:
    """JSON-safe list: non-finite values become null."""
    if a is None:
        return None
    return [[float(x) if math.isfinite(x) else None for x in row] if np.ndim(row) else
            (float(row) if math.isfinite(row) else None) for row in np.asarray(a).tolist()]


def to_json(flows: list[Flow], settings: dict) -> dict:
    """The raw series and the settings that produced them, as a JSON-ready dict."""
    return {
        "settings": settings,
        "measured": "mean over windows of the norm of dL/dstate at k steps before the last step; "
                    "h: all layers concatenated; c: LSTM cell state, all layers concatenated",
        "models": [{
            "label": f.label, "cell": f.cell, "hidden": f.hidden, "layers": f.layers,
            "corpus": f.corpus, "k": list(range(len(f.h))), "h": _floats(f.h),
            "c": _floats(f.c), "h_layers": _floats(f.h_layers), "c_layers": _floats(f.c_layers),
            "vanish_k": vanish_k(f.h), "vanish_ratio": RATIO,
            "explode_k": explode_k(f.h), "explode_growth": GROWTH,
        } for f in flows],
    }


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Write `data` to `path` atomically; raises ConfigError if the file cannot be written."""
    text = json.dumps(data, indent=1, allow_nan=False).encode()
    try:
        C.atomic_write(path, lambda f: f.write(text))
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror or e}") from None
