"""The speed tricks in charrnn.nn.cells and charrnn.models.lm keep the exact maths: saturated
gates, the scatter-add behind layer 0's dWx, and float32 all the way through."""

import warnings

import numpy as np
import pytest

from charrnn.models import lm as M
from charrnn.nn import ops
from charrnn.nn.cells import CELLS
from tests.helpers import assert_close


def sig(x):
    return 0.5 * np.tanh(0.5 * x) + 0.5  # never overflows, unlike 1 / (1 + exp(-x))


def naive_cell(cell, xp, h, c, Wh, bhn):
    """Per-step reference on precomputed input projections xp (T, N, G)."""
    H = h.shape[1]
    hs = []
    for x in xp:
        a = x + h @ Wh
        if cell == "lstm":
            i, f, o, g = sig(a[:, :H]), sig(a[:, H:2 * H]), sig(a[:, 2 * H:3 * H]), np.tanh(a[:, 3 * H:])
            c = f * c + i * g
            h = o * np.tanh(c)
        elif cell == "gru":
            r, z = sig(a[:, :H]), sig(a[:, H:2 * H])
            n = np.tanh(x[:, 2 * H:] + r * ((h @ Wh)[:, 2 * H:] + bhn))
            h = (1 - z) * n + z * h
        else:
            h = np.tanh(a)
        hs.append(h)
    return np.stack(hs), h, c


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_saturated_gates_are_exact_and_silent(cell, dtype, rng):
    T, N, H = 3, 2, 5
    G = CELLS[cell].gates * H
    xp = (rng.standard_normal((T, N, G)) * 400).astype(dtype)  # exp(-a) overflows for many
    p = {"Wh": (rng.standard_normal((H, G)) * 0.3).astype(dtype)}
    if cell == "gru":
        p["bhn"] = rng.standard_normal(H).astype(dtype)
    state = tuple(rng.standard_normal((N, H)).astype(dtype) for _ in range(CELLS[cell].n_states))
    ref, _, _ = naive_cell(cell, xp.astype(np.float64), state[0].astype(np.float64),
                           state[-1].astype(np.float64),
                           p["Wh"].astype(np.float64), p.get("bhn"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings leak out
        hs, _, _ = CELLS[cell].forward(xp.copy(), state, p)
    assert hs.dtype == np.dtype(dtype)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == "float32" else {}
    assert_close(hs, ref, what=f"{cell} {dtype} saturated outputs", **tol)


@pytest.mark.parametrize("V", [7, ops.ONE_HOT_MAX_V + 1])
def test_scatter_rows_both_paths(V, rng):
    ids = rng.integers(0, V, size=50)
    ids[:5] = 3  # repeated ids must add up
    d = rng.standard_normal((50, 4))
    expected = np.zeros((V, 4))
    for j, v in enumerate(ids):
        expected[v] += d[j]
    assert_close(ops.scatter_rows(ids, d, V), expected, what=f"scatter V={V}")


def test_training_step_stays_float32(rng):
    cfg = M.ModelConfig(vocab_size=6, cell="lstm", hidden=4, layers=2, dtype="float32")
    p = M.init_params(cfg, rng)
    ids = rng.integers(0, 6, size=(3, 5))
    logits, final, cache = M.forward(p, cfg, ids, M.init_state(cfg, 3))
    arrays = [logits, *[a for s in final for a in s]]
    arrays += [a for layer in cache.layers for a in layer.cell if isinstance(a, np.ndarray)]
    assert all(a.dtype == np.float32 for a in arrays)
    _, dlogits = M.cross_entropy(logits, rng.integers(0, 6, size=(3, 5)))
    grads, dstate = M.backward(dlogits, None, cache)
    assert dlogits.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())
    assert all(a.dtype == np.float32 for s in dstate for a in s)
