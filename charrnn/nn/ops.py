"""Operations every model family shares, knowing no model: softmax cross-entropy, the backward
of a one-hot input layer (a row scatter), and inverted-dropout masks.

Shapes: T time, N rows (streams or sequences), V classes (the vocabulary), G columns.
"""

from __future__ import annotations

import numpy as np


def cross_entropy(logits: np.ndarray, targets: np.ndarray, reduce: bool = True):
    """Softmax cross-entropy in nats. logits (T, N, V) time-major; targets (N, T) batch-major.

    reduce=True returns (mean loss, dlogits) with dlogits (T, N, V) the gradient of the mean.
    reduce=False returns the per-character losses, (N, T), and no gradient.
    """
    tgt = np.asarray(targets).T.astype(np.intp)[..., None]  # (T, N, 1)
    e = logits - logits.max(axis=-1, keepdims=True)  # z, then exp(z) in place, then dlogits
    zt = np.take_along_axis(e, tgt, axis=-1)
    np.exp(e, out=e)
    s = e.sum(axis=-1, keepdims=True)
    nll = (np.log(s) - zt)[..., 0]  # (T, N): -log softmax(z)[target] = log sum exp z - z_target
    if not reduce:
        return nll.T
    count = nll.size
    s *= count
    e /= s  # softmax / count
    # d mean / d z = (softmax - onehot(target)) / count
    np.put_along_axis(e, tgt, np.take_along_axis(e, tgt, axis=-1) - 1 / count, axis=-1)
    return float(nll.sum(dtype=np.float64) / count), e


ONE_HOT_MAX_V = 1024  # up to this vocabulary, scatter_rows is a one-hot matmul (see below)


def scatter_rows(ids: np.ndarray, d: np.ndarray, V: int) -> np.ndarray:
    """(V, G): row v is the sum of the rows d[j] with ids[j] == v; the transpose of the gather
    Wx[ids], so the gradient of a one-hot input layer. As a one-hot (V, M) matmul it runs at BLAS
    speed (np.add.at is unbuffered and much slower at the training sizes),
    so np.add.at is kept only for very large vocabularies, where the one-hot matrix is too big."""
    if V > ONE_HOT_MAX_V:
        out = np.zeros((V, d.shape[1]), dtype=d.dtype)
        np.add.at(out, ids, d)
        return out
    one_hot = np.zeros((V, len(ids)), dtype=d.dtype)
    one_hot[ids, np.arange(len(ids))] = 1
    return one_hot @ d


def dropout_mask(rng: np.random.Generator, p: float, shape, dtype) -> np.ndarray:
    """Inverted dropout: each unit kept with probability 1 - p and then scaled by 1 / (1 - p),
    so the expected activation is unchanged and inference needs no rescaling."""
    return (rng.random(shape, dtype=np.float64) >= p).astype(dtype) / dtype.type(1.0 - p)
