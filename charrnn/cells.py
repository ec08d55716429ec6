"""Recurrent cells: forward and backward over a whole chunk, and a single step for sampling.

Shapes: T time steps, N parallel streams, H hidden units, G = gates * H.
Inside the cells everything is **time-major**: `xp` is (T, N, G), so the slice a time step reads
(`xp[t]`, (N, G)) is contiguous.

Every cell works on the *input projection* `xp = x Wx + b`, computed by the model for all T steps
at once before the time loop (for one-hot input it is the row gather `Wx[ids] + b`). Only the
recurrent multiply `h_prev Wh` stays inside the loop. Backward returns `dxp`, from which the model
gets `dWx`, `db` and the gradient for the layer below with one multiply each over all T steps, and
`dWh` is likewise one multiply after the backward loop.

API of every cell (pure functions, no hidden state):

    hs, state_T, cache = forward(xp, state_0, p)       # xp is consumed: overwritten in place
    dxp, dstate_0, grads = backward(dhs, dstate_T, cache)
    state_next = step(xp_t, state, p)                  # one time step, no cache (sampling)

`state` is a tuple of (N, H) arrays: `(h,)` for rnn and gru, `(h, c)` for lstm. `p` holds the
recurrent parameters (`Wh`, and `bhn` for the GRU); `grads` has the same keys.

Weight layouts (hard to change later: checkpoints store them):
- rnn:  Wh (H, H).          h = tanh(xp + h_prev Wh)
- lstm: Wh (H, 4H), gate columns in the order i, f, o, g (the three sigmoid gates first, so one
  sigmoid pass covers them, then the tanh candidate), the torch-rnn packing.
- gru:  Wh (H, 3H), columns r, z, n (PyTorch's order), plus bhn (H,), the recurrent bias of the
  candidate, which sits inside the reset gate's product and so cannot be folded into b.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np


def _sigmoid_(a: np.ndarray) -> np.ndarray:
    """In-place logistic function, as 0.5 * tanh(0.5 a) + 0.5: exact, and never overflows."""
    a *= 0.5
    np.tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a


def _prev(seq: np.ndarray, first: np.ndarray, t: int) -> np.ndarray:
    """seq[t - 1], or the initial value at t = 0."""
    return seq[t - 1] if t else first


def _weight_grad(h0: np.ndarray, hs: np.ndarray, d: np.ndarray) -> np.ndarray:
    """sum_t h_{t-1}^T d_t, as two matrix multiplies over all steps (no concatenated copy)."""
    T, N, H = hs.shape
    G = d.shape[-1]
    dW = h0.T @ d[0]
    if T > 1:
        dW += hs[:-1].reshape(-1, H).T @ d[1:].reshape(-1, G)
    return dW


# --------------------------------------------------------------------------------------------
# Vanilla RNN:  h_t = tanh(x_t Wx + h_{t-1} Wh + b)
# --------------------------------------------------------------------------------------------


class RNNCache(NamedTuple):
    Wh: np.ndarray  # (H, H)
    h0: np.ndarray  # (N, H)
    hs: np.ndarray  # (T, N, H) outputs h_t


def rnn_forward(xp, state, p):
    (h,) = state
    Wh = p["Wh"]
    hs = xp  # h_t overwrites xp_t
    buf = np.empty_like(h)
    for t in range(xp.shape[0]):
        np.matmul(h, Wh, out=buf)
        hs[t] += buf
        np.tanh(hs[t], out=hs[t])
        h = hs[t]
    return hs, (h.copy(),), RNNCache(Wh, state[0], hs)


def rnn_backward(dhs, dstate, cache):
    Wh, h0, hs = cache
    dxp = np.empty_like(hs)
    dh = dstate[0].copy()
    for t in range(hs.shape[0] - 1, -1, -1):
        dh += dhs[t]
        da = dxp[t]
        np.multiply(hs[t], hs[t], out=da)  # d tanh(a)/da = 1 - h^2
        np.subtract(1, da, out=da)
        da *= dh
        np.matmul(da, Wh.T, out=dh)  # dh_prev
    return dxp, (dh,), {"Wh": _weight_grad(h0, hs, dxp)}


def rnn_step(xp, state, p):
    return (np.tanh(xp + state[0] @ p["Wh"]),)


# --------------------------------------------------------------------------------------------
# LSTM:  [i f o g] = [sigmoid sigmoid sigmoid tanh](x_t Wx + h_{t-1} Wh + b)
#        c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)
# --------------------------------------------------------------------------------------------


class LSTMCache(NamedTuple):
    Wh: np.ndarray  # (H, 4H)
    h0: np.ndarray  # (N, H)
    c0: np.ndarray  # (N, H)
    acts: np.ndarray  # (T, N, 4H) gate activations i, f, o, g
    cs: np.ndarray  # (T, N, H) cell states c_t
    tcs: np.ndarray  # (T, N, H) tanh(c_t)
    hs: np.ndarray  # (T, N, H) outputs h_t


def lstm_forward(xp, state, p):
    h, c = state
    Wh = p["Wh"]
    T, N, G = xp.shape
    H = G // 4
    acts = xp  # activations overwrite the pre-activations
    cs = np.empty((T, N, H), dtype=xp.dtype)
    tcs = np.empty_like(cs)
    hs = np.empty_like(cs)
    buf = np.empty((N, G), dtype=xp.dtype)
    ig = np.empty((N, H), dtype=xp.dtype)
    for t in range(T):
        a = acts[t]
        np.matmul(h, Wh, out=buf)
        a += buf
        _sigmoid_(a[:, : 3 * H])
        np.tanh(a[:, 3 * H :], out=a[:, 3 * H :])
        i, f, o, g = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        np.multiply(f, c, out=cs[t])
        np.multiply(i, g, out=ig)
        cs[t] += ig
        np.tanh(cs[t], out=tcs[t])
        np.multiply(o, tcs[t], out=hs[t])
        h, c = hs[t], cs[t]
    return hs, (h.copy(), c.copy()), LSTMCache(Wh, state[0], state[1], acts, cs, tcs, hs)


def lstm_backward(dhs, dstate, cache):
    Wh, h0, c0, acts, cs, tcs, hs = cache
    T, N, G = acts.shape
    H = G // 4
    dxp = np.empty_like(acts)
    dh = dstate[0].copy()
    dc = dstate[1].copy()
    tmp = np.empty((N, H), dtype=acts.dtype)
    for t in range(T - 1, -1, -1):
        a = acts[t]
        i, f, o, g = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        tc = tcs[t]
        da = dxp[t]
        di, df, do, dg = da[:, :H], da[:, H : 2 * H], da[:, 2 * H : 3 * H], da[:, 3 * H :]
        dh += dhs[t]
        np.multiply(dh, tc, out=do)  # dL/do
        np.multiply(tc, tc, out=tmp)  # dc += dh * o * (1 - tanh(c)^2)
        np.subtract(1, tmp, out=tmp)
        tmp *= o
        tmp *= dh
        dc += tmp
        np.multiply(dc, g, out=di)  # dL/di
        np.multiply(dc, _prev(cs, c0, t), out=df)  # dL/df
        np.multiply(dc, i, out=dg)  # dL/dg
        dc *= f  # dc_prev
        # Through the nonlinearities: sigmoid' = s (1 - s), tanh' = 1 - g^2.
        s = a[:, : 3 * H]
        ds = da[:, : 3 * H]
        ds *= s
        ds *= 1 - s
        dg *= 1 - g * g
        np.matmul(da, Wh.T, out=dh)  # dh_prev
    return dxp, (dh, dc), {"Wh": _weight_grad(h0, hs, dxp)}


def lstm_step(xp, state, p):
    h, c = state
    H = h.shape[-1]
    a = xp + h @ p["Wh"]
    _sigmoid_(a[:, : 3 * H])
    np.tanh(a[:, 3 * H :], out=a[:, 3 * H :])
    c = a[:, H : 2 * H] * c + a[:, :H] * a[:, 3 * H :]
    return a[:, 2 * H : 3 * H] * np.tanh(c), c


# --------------------------------------------------------------------------------------------
# GRU, PyTorch's convention (so models compare with torch.nn.GRU):
#   r = sigmoid(x Wx_r + b_r + h_prev Wh_r)
#   z = sigmoid(x Wx_z + b_z + h_prev Wh_z)
#   n = tanh(x Wx_n + b_n + r * (h_prev Wh_n + bhn))     reset gate applied after the multiply
#   h = (1 - z) * n + z * h_prev                          z = 1 keeps the old state
# --------------------------------------------------------------------------------------------


class GRUCache(NamedTuple):
    Wh: np.ndarray  # (H, 3H)
    h0: np.ndarray  # (N, H)
    acts: np.ndarray  # (T, N, 3H) r, z, n
    hns: np.ndarray  # (T, N, H) h_prev Wh_n + bhn
    hs: np.ndarray  # (T, N, H)


def gru_forward(xp, state, p):
    (h,) = state
    Wh, bhn = p["Wh"], p["bhn"]
    T, N, G = xp.shape
    H = G // 3
    acts = xp
    hns = np.empty((T, N, H), dtype=xp.dtype)
    hs = np.empty_like(hns)
    gh = np.empty((N, G), dtype=xp.dtype)
    for t in range(T):
        a = acts[t]
        np.matmul(h, Wh, out=gh)
        rz = a[:, : 2 * H]
        rz += gh[:, : 2 * H]
        _sigmoid_(rz)
        r, z, n = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
        hn = hns[t]
        np.add(gh[:, 2 * H :], bhn, out=hn)
        np.multiply(r, hn, out=gh[:, :H])
        n += gh[:, :H]
        np.tanh(n, out=n)
        ht = hs[t]  # h = n + z * (h_prev - n)
        np.subtract(h, n, out=ht)
        ht *= z
        ht += n
        h = ht
    return hs, (h.copy(),), GRUCache(Wh, state[0], acts, hns, hs)


def gru_backward(dhs, dstate, cache):
    Wh, h0, acts, hns, hs = cache
    T, N, G = acts.shape
    H = G // 3
    dxp = np.empty_like(acts)
    dgh = np.empty_like(acts)  # gradient wrt h_prev Wh (+ bhn), per step
    dh = dstate[0].copy()
    for t in range(T - 1, -1, -1):
        a = acts[t]
        r, z, n = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
        hp = _prev(hs, h0, t)
        da = dxp[t]
        dar, daz, dan = da[:, :H], da[:, H : 2 * H], da[:, 2 * H :]
        dh += dhs[t]
        np.subtract(hp, n, out=daz)  # dz = dh * (h_prev - n)
        daz *= dh
        daz *= z * (1 - z)
        np.subtract(1, z, out=dan)  # dn = dh * (1 - z), then through tanh
        dan *= dh
        dan *= 1 - n * n
        np.multiply(dan, hns[t], out=dar)  # dr = dan * hn, then through sigmoid
        dar *= r * (1 - r)
        g = dgh[t]
        g[:, : 2 * H] = da[:, : 2 * H]
        np.multiply(dan, r, out=g[:, 2 * H :])  # d(hn) = dan * r
        dh *= z  # the direct path h_prev -> h, plus the path through Wh
        dh += g @ Wh.T
    grads = {"Wh": _weight_grad(h0, hs, dgh), "bhn": dgh[:, :, 2 * H :].sum(axis=(0, 1))}
    return dxp, (dh,), grads


def gru_step(xp, state, p):
    (h,) = state
    H = h.shape[-1]
    gh = h @ p["Wh"]
    rz = _sigmoid_(xp[:, : 2 * H] + gh[:, : 2 * H])
    r, z = rz[:, :H], rz[:, H:]
    n = np.tanh(xp[:, 2 * H :] + r * (gh[:, 2 * H :] + p["bhn"]))
    return (n + z * (h - n),)


# --------------------------------------------------------------------------------------------


class Cell(NamedTuple):
    name: str
    gates: int  # G = gates * H
    n_states: int  # 1: (h,), 2: (h, c)
    recurrent: tuple[str, ...]  # names of the recurrent parameters in `p` and `grads`
    forward: Callable
    backward: Callable
    step: Callable
    description: str


CELLS: dict[str, Cell] = {
    "lstm": Cell("lstm", 4, 2, ("Wh",), lstm_forward, lstm_backward, lstm_step,
                 "long short-term memory: gated additive cell state"),
    "gru": Cell("gru", 3, 1, ("Wh", "bhn"), gru_forward, gru_backward, gru_step,
                "gated recurrent unit, PyTorch's convention"),
    "rnn": Cell("rnn", 1, 1, ("Wh",), rnn_forward, rnn_backward, rnn_step,
                "vanilla tanh RNN"),
}
