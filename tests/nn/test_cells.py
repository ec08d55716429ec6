"""The fused, time-major, chunked implementation against naive per-gate references."""

import numpy as np
import pytest

from charrnn.models import lm as M
from charrnn.nn.cells import CELLS
from tests.helpers import assert_close

N, T, V, H = 2, 3, 4, 5  # all different, so a swapped axis cannot pass


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def naive_layer(cell, x, h, c, Wx, Wh, b, bhn):
    """One layer over time with one-hot or dense input x (N, T, D); every gate separately."""
    outs = []
    for t in range(x.shape[1]):
        xt = x[:, t]
        if cell == "rnn":
            h = np.tanh(xt @ Wx + h @ Wh + b)
        elif cell == "lstm":
            blk = [slice(k * H, (k + 1) * H) for k in range(4)]  # i, f, o, g
            i = sigmoid(xt @ Wx[:, blk[0]] + h @ Wh[:, blk[0]] + b[blk[0]])
            f = sigmoid(xt @ Wx[:, blk[1]] + h @ Wh[:, blk[1]] + b[blk[1]])
            o = sigmoid(xt @ Wx[:, blk[2]] + h @ Wh[:, blk[2]] + b[blk[2]])
            g = np.tanh(xt @ Wx[:, blk[3]] + h @ Wh[:, blk[3]] + b[blk[3]])
            c = f * c + i * g
            h = o * np.tanh(c)
        else:  # gru, PyTorch's equations
            blk = [slice(k * H, (k + 1) * H) for k in range(3)]  # r, z, n
            r = sigmoid(xt @ Wx[:, blk[0]] + b[blk[0]] + h @ Wh[:, blk[0]])
            z = sigmoid(xt @ Wx[:, blk[1]] + b[blk[1]] + h @ Wh[:, blk[1]])
            n = np.tanh(xt @ Wx[:, blk[2]] + b[blk[2]] + r * (h @ Wh[:, blk[2]] + bhn))
            h = (1 - z) * n + z * h
        outs.append(h)
    return np.stack(outs, axis=1), h, c


def naive_model(cfg, p, ids, state):
    x = np.eye(cfg.vocab_size)[ids]  # (N, T, V) one-hot
    final = []
    for k in range(cfg.layers):
        h = state[k][0]
        c = state[k][1] if cfg.cell == "lstm" else None
        x, h, c = naive_layer(cfg.cell, x, h, c, p[f"l{k}.Wx"], p[f"l{k}.Wh"], p[f"l{k}.b"],
                              p.get(f"l{k}.bhn"))
        final.append((h, c) if cfg.cell == "lstm" else (h,))
    logits = x @ p["Wy"] + p["by"]  # (N, T, V)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return logits, final, logp


def random_setup(cell, layers, rng):
    cfg = M.ModelConfig(vocab_size=V, cell=cell, hidden=H, layers=layers, dtype="float64")
    p = M.init_params(cfg, rng)
    for k in p:
        p[k] = p[k] + 0.3 * rng.standard_normal(p[k].shape)
    state = tuple(tuple(rng.standard_normal((N, H)) for _ in s) for s in M.init_state(cfg, N))
    ids = rng.integers(0, V, size=(N, T))
    return cfg, p, state, ids


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", list(CELLS))
def test_fused_forward_matches_naive(cell, layers, rng):
    cfg, p, state, ids = random_setup(cell, layers, rng)
    logits, final, _ = M.forward(p, cfg, ids, state)
    ref_logits, ref_final, logp = naive_model(cfg, p, ids, state)
    assert_close(logits.transpose(1, 0, 2), ref_logits, what=f"{cell} logits")
    for k in range(layers):
        for a, b in zip(final[k], ref_final[k]):
            assert_close(a, b, what=f"{cell} final state of layer {k}")
    targets = rng.integers(0, V, size=(N, T))
    loss, _ = M.cross_entropy(logits, targets)
    ref_loss = -np.take_along_axis(logp, targets[..., None], -1).mean()
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    per_char = M.cross_entropy(logits, targets, reduce=False)
    assert_close(per_char, -np.take_along_axis(logp, targets[..., None], -1)[..., 0])


@pytest.mark.parametrize("cell", list(CELLS))
def test_step_path_matches_chunk_path(cell, rng):
    cfg, p, state, ids = random_setup(cell, 2, rng)
    logits, final, _ = M.forward(p, cfg, ids, state)
    s = state
    for t in range(T):
        step_logits, s = M.step(p, cfg, ids[:, t], s)
        assert_close(step_logits, logits[t], what=f"{cell} step {t}")
    for a, b in zip(s, final):
        for x, y in zip(a, b):
            assert_close(x, y)


@pytest.mark.parametrize("cell", list(CELLS))
def test_chunks_with_carried_state_equal_one_pass(cell, rng):
    cfg, p, state, _ = random_setup(cell, 2, rng)
    ids = rng.integers(0, V, size=(N, 12))
    whole, final, _ = M.forward(p, cfg, ids, state)
    pieces, s = [], state
    for lo, hi in [(0, 5), (5, 6), (6, 12)]:
        logits, s, _ = M.forward(p, cfg, ids[:, lo:hi], s)
        pieces.append(logits)
    np.testing.assert_array_equal(np.concatenate(pieces, axis=0), whole)
    for a, b in zip(s, final):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("cell", list(CELLS))
def test_float32_agrees_with_float64(cell, rng):
    cfg, p, state, ids = random_setup(cell, 2, rng)
    cfg32 = M.ModelConfig(**{**cfg.to_dict(), "dtype": "float32"})
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    s32 = tuple(tuple(a.astype(np.float32) for a in s) for s in state)
    l64, _, _ = M.forward(p, cfg, ids, state)
    l32, f32, _ = M.forward(p32, cfg32, ids, s32)
    assert l32.dtype == np.float32 and f32[0][0].dtype == np.float32
    assert_close(l32, l64, rtol=1e-4, atol=1e-5)
    targets = rng.integers(0, V, size=(N, T))
    _, g32, _ = M.loss_and_grads(p32, cfg32, (ids, targets), s32)
    assert all(g.dtype == np.float32 for g in g32.values())


def test_lstm_forget_bias_starts_at_one(rng):
    cfg = M.ModelConfig(vocab_size=V, cell="lstm", hidden=H)
    b = M.init_params(cfg, rng)["l0.b"]
    assert_close(b[H:2 * H], np.ones(H))
    assert_close(np.delete(b, np.s_[H:2 * H]), np.zeros(3 * H))


def test_dropout_only_when_training(rng):
    cfg = M.ModelConfig(vocab_size=V, cell="lstm", hidden=H, layers=2, dropout=0.5,
                        dtype="float64")
    p = M.init_params(cfg, rng)
    ids = rng.integers(0, V, size=(N, T))
    s = M.init_state(cfg, N)
    a, _, _ = M.forward(p, cfg, ids, s)
    b, _, _ = M.forward(p, cfg, ids, s)
    c, _, _ = M.forward(p, cfg, ids, s, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("kwargs", [{"cell": "cnn"}, {"hidden": 0}, {"layers": -1},
                                    {"dropout": 1.0}, {"dtype": "float16"}])
def test_bad_model_config(kwargs):
    from charrnn.errors import ConfigError
    with pytest.raises(ConfigError):
        M.ModelConfig(vocab_size=V, **kwargs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_loop_copies_are_padded_and_multiply_bit_for_bit(dtype, rng):
    from charrnn.nn.cells import LOOP_PAD, _loop_copy, _loop_copy_T

    W = rng.standard_normal((64, 256)).astype(dtype)  # power-of-two rows: the case padding is for
    scale = np.where(np.arange(256) < 192, -1.0, -2.0).astype(dtype)
    h = rng.standard_normal((16, 64)).astype(dtype)
    d = rng.standard_normal((16, 256)).astype(dtype)
    for copy, expected in ((_loop_copy(W), W), (_loop_copy(W, scale), W * scale),
                           (_loop_copy_T(W), W.T)):
        assert copy.strides[0] == (copy.shape[1] + LOOP_PAD) * copy.itemsize
        assert np.array_equal(copy, expected)
    assert np.array_equal(h @ _loop_copy(W), h @ np.ascontiguousarray(W))
    assert np.array_equal(d @ _loop_copy_T(W), d @ np.ascontiguousarray(W.T))
