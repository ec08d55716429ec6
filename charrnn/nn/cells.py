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

from collections.abc import Callable
from typing import NamedTuple

import numpy as np


def _sigmoid_(a: np.ndarray) -> np.ndarray:
    """In-place logistic function, as 0.5 * tanh(0.5 a) + 0.5: exact, and never overflows."""
    a *= 0.5
    np.tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a


def _gate_scale(G: int, n_sigmoid: int, dtype) -> np.ndarray:
    """(G,): -1 for the first n_sigmoid (sigmoid) gate columns, -2 for the tanh columns.

    The cells multiply Wh (a copy, once per chunk) and the input projection by this, so the time
    loop gets u = -a for sigmoid gates and u = -2a for tanh gates, and then ONE pass of
    s = 1 / (1 + exp(u)) serves every gate: sigmoid(a) = s, tanh(a) = 2 s - 1 (two cheap passes
    over the tanh columns). np.exp is the costliest operation in the loop, yet cheaper than
    np.tanh in float32 NumPy, and it never runs twice over the same data. The scale factors are
    powers of two, so scaling is exact; exp overflows harmlessly to inf (1 / inf = 0)."""
    scale = np.full(G, -2.0, dtype=dtype)
    scale[:n_sigmoid] = -1.0
    return scale


def _sigmoid_of_negated_(u: np.ndarray) -> np.ndarray:
    """In place: u = -a -> sigmoid(a) = 1 / (1 + exp(u)). exp may overflow to inf, harmlessly
    (1 / inf = 0): callers run it under np.errstate(over="ignore")."""
    np.exp(u, out=u)
    u += 1
    np.reciprocal(u, out=u)
    return u


def _gates_(u: np.ndarray, n_sigmoid: int) -> np.ndarray:
    """In place: u (N, G) pre-scaled by _gate_scale -> [sigmoid gates, tanh gates]."""
    _sigmoid_of_negated_(u)
    t = u[:, n_sigmoid:]
    t *= 2
    t -= 1
    return u


def _weight_grad(h0: np.ndarray, hs: np.ndarray, d: np.ndarray) -> np.ndarray:
    """sum_t h_{t-1}^T d_t, as two matrix multiplies over all steps (no concatenated copy)."""
    T, _N, H = hs.shape
    G = d.shape[-1]
    dW = h0.T @ d[0]
    if T > 1:
        dW += hs[:-1].reshape(-1, H).T @ d[1:].reshape(-1, G)
    return dW


# Design of the time loops (keep it when editing): the loop body holds only what the recurrence
# needs (one matmul, and the fewest elementwise passes, each in place with out=); everything that
# can be computed for all T steps at once (derivatives of the nonlinearities, products of cached
# activations) is computed before or after the loop in a few large vectorised passes.

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
        ht = hs[t]
        np.matmul(h, Wh, out=buf)
        ht += buf
        np.tanh(ht, out=ht)
        h = ht
    return hs, (h.copy(),), RNNCache(Wh, state[0], hs)


def rnn_backward(dhs, dstate, cache):
    Wh, h0, hs = cache
    dxp = np.multiply(hs, hs)  # d tanh(a)/da = 1 - h^2, for all steps at once
    np.subtract(1, dxp, out=dxp)
    dh = dstate[0].copy()
    WhT = np.ascontiguousarray(Wh.T)  # a transposed view multiplies 1.2-1.4x slower
    for t in range(hs.shape[0] - 1, -1, -1):
        dh += dhs[t]
        da = dxp[t]
        da *= dh
        np.matmul(da, WhT, out=dh)  # dh_prev
    return dxp, (dh,), {"Wh": _weight_grad(h0, hs, dxp)}


def rnn_step(xp, state, p):
    a = np.matmul(state[0], p["Wh"])
    a += xp
    return (np.tanh(a, out=a),)


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
    T, N, G = xp.shape
    H = G // 4
    scale = _gate_scale(G, 3 * H, xp.dtype)
    Whs = p["Wh"] * scale  # see _gate_scale
    acts = xp  # activations overwrite the pre-activations
    acts *= scale
    cs = np.empty((T, N, H), dtype=xp.dtype)
    tcs = np.empty_like(cs)
    hs = np.empty_like(cs)
    buf = np.empty((N, G), dtype=xp.dtype)
    ig = np.empty((N, H), dtype=xp.dtype)
    with np.errstate(over="ignore"):  # exp may overflow to inf, harmlessly: see _gate_scale
        for t in range(T):
            a = acts[t]
            np.matmul(h, Whs, out=buf)
            a += buf
            _gates_(a, 3 * H)
            i, f, o, g = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
            ct, tc = cs[t], tcs[t]
            np.multiply(f, c, out=ct)
            np.multiply(i, g, out=ig)
            ct += ig
            np.tanh(ct, out=tc)
            np.multiply(o, tc, out=hs[t])
            h, c = hs[t], ct
    return hs, (h.copy(), c.copy()), LSTMCache(p["Wh"], state[0], state[1], acts, cs, tcs, hs)


def lstm_backward(dhs, dstate, cache):
    """Per step only dh and dc are carried: with dc_t = dc + dh * o (1 - tanh(c)^2), the gate
    gradients are da = [dc K_i, dc K_f, dh K_o, dc K_g], where the factors K (products of cached
    activations and nonlinearity derivatives) are computed for all T steps before the loop:
    K_i = g i(1-i), K_f = c_prev f(1-f), K_o = tanh(c) o(1-o), K_g = i (1-g^2)."""
    Wh, h0, c0, acts, cs, tcs, hs = cache
    T, N, G = acts.shape
    H = G // 4
    A = acts.reshape(T, N, 4, H)
    i, f, o, g = A[:, :, 0], A[:, :, 1], A[:, :, 2], A[:, :, 3]
    dxp = np.subtract(1, acts)  # K, then da in place: (T, N, 4, H)
    K = dxp.reshape(T, N, 4, H)
    K[:, :, :3] *= A[:, :, :3]  # s (1 - s)
    np.multiply(g, g, out=K[:, :, 3])  # 1 - g^2
    np.subtract(1, K[:, :, 3], out=K[:, :, 3])
    K[:, :, 0] *= g
    K[0, :, 1] *= c0
    K[1:, :, 1] *= cs[:-1]
    K[:, :, 2] *= tcs
    K[:, :, 3] *= i
    ot = np.multiply(tcs, tcs)  # o (1 - tanh(c)^2): dh's path into dc
    np.subtract(1, ot, out=ot)
    ot *= o
    dh = dstate[0].copy()
    dc = dstate[1].copy()
    tmp = np.empty((N, H), dtype=acts.dtype)
    WhT = np.ascontiguousarray(Wh.T)  # a transposed view multiplies 1.2-1.4x slower
    for t in range(T - 1, -1, -1):
        Kt = K[t]
        dh += dhs[t]
        np.multiply(dh, ot[t], out=tmp)
        dc += tmp
        Kt[:, :2] *= dc[:, None]  # di, df
        Kt[:, 2] *= dh  # do
        Kt[:, 3] *= dc  # dg
        dc *= f[t]  # dc_prev
        np.matmul(dxp[t], WhT, out=dh)  # dh_prev
    return dxp, (dh, dc), {"Wh": _weight_grad(h0, hs, dxp)}


def lstm_step(xp, state, p):
    """One step with the fewest NumPy calls (sampling is per-call overhead plus the matvec)."""
    h, c = state
    H = h.shape[-1]
    a = np.matmul(h, p["Wh"])
    a += xp
    s = a[:, : 3 * H]
    s *= 0.5  # one tanh pass for all four gates: sigmoid(a) = 0.5 tanh(a / 2) + 0.5
    np.tanh(a, out=a)
    s *= 0.5
    s += 0.5
    c = a[:, H : 2 * H] * c
    g = a[:, 3 * H :]
    g *= a[:, :H]
    c += g
    h = np.tanh(c)
    h *= a[:, 2 * H : 3 * H]
    return h, c


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
    bhn = p["bhn"]
    T, N, G = xp.shape
    H = G // 3
    Whs = p["Wh"].copy()  # r, z columns negated: see _gate_scale
    Whs[:, : 2 * H] *= -1
    acts = xp
    acts[..., : 2 * H] *= -1
    hns = np.empty((T, N, H), dtype=xp.dtype)
    hs = np.empty_like(hns)
    gh = np.empty((N, G), dtype=xp.dtype)
    rh = np.empty((N, H), dtype=xp.dtype)
    with np.errstate(over="ignore"):  # see _sigmoid_of_negated_
        for t in range(T):
            a = acts[t]
            np.matmul(h, Whs, out=gh)
            rz = a[:, : 2 * H]
            rz += gh[:, : 2 * H]
            _sigmoid_of_negated_(rz)
            r, z, n = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
            hn = hns[t]
            np.add(gh[:, 2 * H :], bhn, out=hn)
            np.multiply(r, hn, out=rh)
            n += rh
            np.tanh(n, out=n)
            ht = hs[t]  # h = n + z * (h_prev - n)
            np.subtract(h, n, out=ht)
            ht *= z
            ht += n
            h = ht
    return hs, (h.copy(),), GRUCache(p["Wh"], state[0], acts, hns, hs)


def gru_backward(dhs, dstate, cache):
    """Per step only dh is carried. With dh_t the total gradient at h_t and k = (1-z)(1-n^2)
    (the factor of dn's path), the gradient with respect to [h_prev Wh_r, h_prev Wh_z,
    h_prev Wh_n + bhn] is dh_t * [K_r, K_z, K_n] with K_r = hn k r(1-r), K_z = (h_prev - n)
    z(1-z), K_n = k r, all computed for every step before the loop. dxp equals that gradient in
    the r and z columns and dh_t k in the n columns, written over dgh's n columns after the
    loop (once dWh and dbhn have been taken from them)."""
    Wh, h0, acts, hns, hs = cache
    T, N, G = acts.shape
    H = G // 3
    A = acts.reshape(T, N, 3, H)
    r, z, n = A[:, :, 0], A[:, :, 1], A[:, :, 2]
    k = np.multiply(n, n)  # (1 - z)(1 - n^2)
    np.subtract(1, k, out=k)
    tmp = np.subtract(1, z)
    k *= tmp
    dgh = np.empty_like(acts)  # K, then dh_t K in place
    K = dgh.reshape(T, N, 3, H)
    np.subtract(1, r, out=K[:, :, 0])  # hn k r (1 - r)
    K[:, :, 0] *= r
    K[:, :, 0] *= hns
    K[:, :, 0] *= k
    np.subtract(h0, n[0], out=K[0, :, 1])  # (h_prev - n) z (1 - z)
    np.subtract(hs[:-1], n[1:], out=K[1:, :, 1])
    tmp *= z
    K[:, :, 1] *= tmp
    np.multiply(k, r, out=K[:, :, 2])
    DH = np.empty_like(hs)  # dh_t, total gradient at h_t
    dh = dstate[0].copy()
    buf = np.empty_like(dh)
    WhT = np.ascontiguousarray(Wh.T)  # a transposed view multiplies 1.2-1.4x slower
    for t in range(T - 1, -1, -1):
        dht = DH[t]
        np.add(dh, dhs[t], out=dht)
        K[t] *= dht[:, None]
        np.multiply(dht, z[t], out=dh)  # the direct path h_prev -> h
        np.matmul(dgh[t], WhT, out=buf)  # and the path through Wh
        dh += buf
    grads = {"Wh": _weight_grad(h0, hs, dgh), "bhn": dgh[:, :, 2 * H :].sum(axis=(0, 1))}
    dxp = dgh  # r and z columns as they are; n columns replaced, now that dgh is used up
    np.multiply(DH, k, out=dxp[..., 2 * H :])
    return dxp, (dh,), grads


def gru_step(xp, state, p):
    (h,) = state
    H = h.shape[-1]
    gh = np.matmul(h, p["Wh"])
    rz = _sigmoid_(np.add(xp[:, : 2 * H], gh[:, : 2 * H]))
    r, z = rz[:, :H], rz[:, H:]
    hn = gh[:, 2 * H :]
    hn += p["bhn"]
    hn *= r
    n = np.add(xp[:, 2 * H :], hn)
    np.tanh(n, out=n)
    hnew = np.subtract(h, n)
    hnew *= z
    hnew += n
    return (hnew,)


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
