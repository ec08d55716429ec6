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

Kernels: a loop's elementwise work runs NumPy's code (the reference) or the compiled kernels of
charrnn.nn.fused. The choice is a value passed in, never process state: a model's Config carries
it (`cfg.kernels`), and the model looks its cell up with `cell(cfg.cell, cfg.kernels)`, which
returns the same Cell with `kernels=` bound into the functions that have compiled code. The
Config is what the trainer already hands to every forward and backward and sends to its worker
processes, so they run the same kernels without being told twice, and a sampler or `eval`
chooses by replacing the field on the Config it loaded. The functions keep a `kernels` keyword
(default "numpy") so a test can call either path directly.

Weight layouts (hard to change later: checkpoints store them):
- rnn:  Wh (H, H).          h = tanh(xp + h_prev Wh)
- lstm: Wh (H, 4H), gate columns in the order i, f, o, g (the three sigmoid gates first, so one
  sigmoid pass covers them, then the tanh candidate), the torch-rnn packing.
- gru:  Wh (H, 3H), columns r, z, n (PyTorch's order), plus bhn (H,), the recurrent bias of the
  candidate, which sits inside the reset gate's product and so cannot be folded into b.
  Written out, with xp = [xp_r, xp_z, xp_n]:
      r = sigmoid(xp_r + h_prev Wh_r),  z = sigmoid(xp_z + h_prev Wh_z)
      n = tanh(xp_n + r * (h_prev Wh_n + bhn))   r multiplies the recurrent term, bhn included
      h = (1 - z) * n + z * h_prev               z weights the OLD state (z = 1 keeps h_prev);
                                                 computed as h = n + z * (h_prev - n)

Comments in the kernels name the term each in-place operation computes: a_t is a pre-activation
(xp_t + h_{t-1} Wh), dX is dL/dX, and a suffix names gate columns (a_i, Wh_n, ...). Figures
behind the speed choices are in docs/en/explanation/findings.md, "The cell kernels".
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError

# The kernels a cell's time loops can run: "numpy", the reference, or "fused", the compiled
# elementwise kernels of charrnn.nn.fused (float32 only; they agree with NumPy to float32
# rounding, not bit for bit). A model's Config names its kernels, and every forward, backward and
# step looks its cell up with them: cell(cfg.cell, cfg.kernels). "auto", a user's default, is
# made one of the two by choose_kernels before anything runs.
KERNELS = ("numpy", "fused")
AUTO = "auto"
KERNEL_CHOICES = (AUTO, *KERNELS)  # what a user may ask for (charrnn train --kernels)
# what training and the commands that run a model ask for by default: the compiled kernels
# where they serve and build, NumPy's otherwise (issue 27: fast by default, never an error)
DEFAULT_KERNELS = AUTO
# what "fused" has compiled code for, per cell: these of its functions take kernels=
FUSED = {"lstm": ("forward", "backward", "step"), "gru": ("forward", "backward", "step"),
         "rnn": ("forward", "backward")}  # the RNN's step: NumPy's two calls beat a C call
FUSED_CELLS = tuple(FUSED)  # the cells whose time loops "fused" has kernels for
_F32 = np.dtype(np.float32)


def fused_unavailable(cell: str, dtype) -> str | None:
    """Why the compiled kernels cannot serve a model of `cell` in `dtype` here (one line), or
    None when they can: they are float32 only, cover FUSED_CELLS, and must build here."""
    if np.dtype(dtype) != np.float32:
        return "the compiled kernels are float32 only"
    if cell not in FUSED_CELLS:
        return f"the compiled kernels have none for the {cell} cell"
    from . import fused

    return fused.available()


def choose_kernels(kernels: str, cell: str, dtype) -> str:
    """The kernels a model of `cell` in `dtype` runs when `kernels` is asked for: "numpy" and
    "fused" as they are ("fused" raises ConfigError, saying why, where it cannot be built: no C
    compiler, say); AUTO the compiled kernels where they can serve (see fused_unavailable), else
    NumPy's, never an error. So float64, which gradient checks use, gets NumPy's from AUTO."""
    if kernels == AUTO:
        return "numpy" if fused_unavailable(cell, dtype) else "fused"
    if kernels not in KERNELS:
        raise ConfigError(f"kernels must be one of {', '.join(KERNEL_CHOICES)}, not {kernels!r}")
    if kernels == "fused":
        from . import fused

        why = fused.available()
        if why:
            raise ConfigError(f"the fused kernels are not available: {why}")
    return kernels


def cell(name: str, kernels: str = "numpy") -> Cell:
    """The cell `name` (a key of CELLS) whose time loops run `kernels`' code (see KERNELS);
    ConfigError if "fused" cannot be built here. The NumPy cells are CELLS' own."""
    if kernels == "numpy":
        return CELLS[name]
    if kernels != "fused":  # AUTO included: a model runs the kernels chosen for it
        raise ConfigError(f"kernels must be one of {', '.join(KERNELS)}, not {kernels!r}")
    choose_kernels(kernels, name, np.float32)  # ConfigError if they cannot be built here
    return _FUSED_CELLS[name]


def _fused(kernels: str, *arrays: np.ndarray):
    """charrnn.nn.fused if `kernels` is "fused" and the kernels can take these arrays (and the
    chunk has a step), else None: the loops below then run NumPy's code."""
    if kernels != "fused" or not arrays[0].shape[0]:
        return None
    for a in arrays:  # a loop, not all(...): the single steps ask once per layer and character
        if a.dtype != _F32 or not a.flags.c_contiguous:
            return None
    from . import fused

    return fused


def _sigmoid_(a: np.ndarray, negated: bool = False) -> np.ndarray:
    """In place: the logistic function sigmoid(x) = 1 / (1 + exp(-x)); returns `a`.

    Two formulas, both exact in real arithmetic, which round differently in floating point; the
    flag picks one, so every path keeps the values it has always computed (merging them would
    change results in the last bits):

    - negated=False: `a` holds x -> 0.5 * tanh(0.5 x) + 0.5. Never overflows. For inputs that are
      not pre-scaled (gru_step; lstm_step inlines the same formula so that a single np.tanh call
      also covers its tanh gate).
    - negated=True: `a` holds u = -x (pre-scaled by _gate_scale) -> 1 / (1 + exp(u)). For the
      forward time loops, where np.exp is cheaper than np.tanh (docs/en/explanation/
      findings.md). exp may overflow to inf, harmlessly (1 / inf = 0): callers run it under
      np.errstate(over="ignore").
    """
    if negated:
        np.exp(a, out=a)  # exp(-x)
        a += 1  # 1 + exp(-x)
        np.reciprocal(a, out=a)  # 1 / (1 + exp(-x))
    else:
        a *= 0.5  # x / 2
        np.tanh(a, out=a)  # tanh(x / 2)
        a *= 0.5
        a += 0.5  # 0.5 tanh(x / 2) + 0.5
    return a


def _gate_scale(G: int, n_sigmoid: int, dtype) -> np.ndarray:
    """(G,): -1 for the first n_sigmoid (sigmoid) gate columns, -2 for the tanh columns.

    The cells multiply Wh (a copy, once per chunk) and the input projection by this, so the time
    loop gets u = -a for sigmoid gates and u = -2a for tanh gates, and then ONE pass of
    s = 1 / (1 + exp(u)) (_sigmoid_(u, negated=True)) serves every gate: sigmoid(a) = s,
    tanh(a) = 2 s - 1 (two cheap passes over the tanh columns). np.exp is the costliest
    elementwise operation in the loop, yet cheaper than np.tanh in float32 NumPy (docs/en/
    explanation/findings.md), and it never runs twice over the same data. The scale factors are
    powers of two, so scaling is exact; exp overflows harmlessly to inf (1 / inf = 0)."""
    scale = np.full(G, -2.0, dtype=dtype)
    scale[:n_sigmoid] = -1.0
    return scale


# Row padding of the matrices the time loops multiply by, in elements: a cache line of float32.
LOOP_PAD = 16


def _loop_copy(W: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """A copy of W (times `scale`, broadcast over the columns, when given) for the time loop:
    the same values, in rows LOOP_PAD elements longer than W's width (a view of a wider buffer).

    Why: at the widths the cells use (4H, 3H, H with H a power of two) a row is a multiple of
    4 KiB, so every row of W maps to the same few cache sets and OpenBLAS's reads of its column
    panels evict each other: on AVX-512 kernels the LSTM's (16 x 256)(256 x 1024) multiply ran at
    44 GFLOP/s against 65 with padded rows (docs/en/explanation/findings.md). BLAS takes the row
    stride as its leading dimension, so the products are the same, bit for bit."""
    R, C = W.shape
    out = np.empty((R, C + LOOP_PAD), dtype=W.dtype)[:, :C]
    if scale is None:
        np.copyto(out, W)
    else:
        np.multiply(W, scale, out=out)
    return out


def _loop_copy_T(W: np.ndarray) -> np.ndarray:
    """_loop_copy(W.T), for the backward loops (a transposed view multiplies slower than a
    contiguous copy). Made through a padded copy of W, because a transposing copy reads W's
    columns and meets the same cache aliasing: 881 us straight from a (256, 1024) float32 matrix,
    31 + 147 us this way."""
    return _loop_copy(_loop_copy(W).T)


def _weight_grad(h0: np.ndarray, hs: np.ndarray, d: np.ndarray) -> np.ndarray:
    """dWh = sum_t h_{t-1}^T d_t, as two matrix multiplies over all steps (no concatenated copy).

    h0 (N, H): h_0; hs (T, N, H): h_1 .. h_T; d (T, N, G): gradient at h_{t-1} Wh. Returns (H, G).
    """
    T, _N, H = hs.shape
    G = d.shape[-1]
    dW = h0.T @ d[0]  # h_0^T d_1
    if T > 1:
        dW += hs[:-1].reshape(-1, H).T @ d[1:].reshape(-1, G)  # + sum_{t>1} h_{t-1}^T d_t
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


def rnn_forward(xp, state, p, kernels: str = "numpy"):
    """Forward over a chunk: h_t = tanh(a_t), a_t = xp_t + h_{t-1} Wh.

    xp (T, N, H): input projection x Wx + b, overwritten (it becomes hs); state: (h0,) (N, H);
    p: {'Wh': (H, H)}. Returns hs (T, N, H), (h_T,) (N, H), cache (RNNCache)."""
    (h,) = state
    hs = xp  # h_t overwrites xp_t
    if fused := _fused(kernels, hs):  # the same loop in one C call, its multiply on packed Wh
        fused.rnn_forward_loop(hs, p["Wh"], h)
        return hs, (hs[-1].copy(),), RNNCache(p["Wh"], state[0], hs)
    Wh = _loop_copy(p["Wh"])  # padded rows: see _loop_copy
    buf = np.empty_like(h)
    for t in range(xp.shape[0]):
        ht = hs[t]
        np.matmul(h, Wh, out=buf)  # h_{t-1} Wh
        ht += buf  # a_t = xp_t + h_{t-1} Wh
        np.tanh(ht, out=ht)  # h_t = tanh(a_t)
        h = ht
    return hs, (h.copy(),), RNNCache(p["Wh"], state[0], hs)


def rnn_backward(dhs, dstate, cache, kernels: str = "numpy"):
    """Backward over a chunk.

    dhs (T, N, H): dL/dh_t from above (output layer or next layer); dstate: (dh_T,) (N, H), the
    gradient at the final state; cache: RNNCache from rnn_forward. Returns dxp (T, N, H) = da_t,
    (dh_0,) (N, H), grads {'Wh': (H, H)}."""
    Wh, h0, hs = cache
    if fused := _fused(kernels, hs, dhs, *dstate):  # the same loop, 1 - h_t^2 computed in it, in C
        dh = dstate[0].copy()
        dxp = fused.rnn_backward_loop(hs, dhs, Wh, dh)
        return dxp, (dh,), {"Wh": _weight_grad(h0, hs, dxp)}
    dxp = np.multiply(hs, hs)  # h_t^2, for all steps at once
    np.subtract(1, dxp, out=dxp)  # tanh'(a_t) = 1 - h_t^2
    dh = dstate[0].copy()  # dh_T
    WhT = _loop_copy_T(Wh)  # Wh^T, contiguous rows: see _loop_copy_T
    for t in range(hs.shape[0] - 1, -1, -1):
        dh += dhs[t]  # dh_t = dhs_t + da_{t+1} Wh^T
        da = dxp[t]
        da *= dh  # da_t = dh_t * (1 - h_t^2)
        np.matmul(da, WhT, out=dh)  # dh_{t-1} = da_t Wh^T
    return dxp, (dh,), {"Wh": _weight_grad(h0, hs, dxp)}  # dWh = sum_t h_{t-1}^T da_t


def rnn_step(xp, state, p):
    """One time step. xp (N, H): input projection, not modified; state: (h,) (N, H);
    p: {'Wh': (H, H)}. Returns (h_next,) (N, H).

    NumPy's even with the fused kernels: its two elementwise calls cost no more than one call
    into C through ctypes (bench/kernels.py), so there is nothing to fuse."""
    a = np.matmul(state[0], p["Wh"])  # h_{t-1} Wh
    a += xp  # a_t = xp_t + h_{t-1} Wh
    return (np.tanh(a, out=a),)  # h_t = tanh(a_t)


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


def lstm_forward(xp, state, p, kernels: str = "numpy"):
    """Forward over a chunk (gates i, f, o, g; equations above).

    xp (T, N, 4H): input projection x Wx + b, overwritten (it becomes the cached activations);
    state: (h0, c0), each (N, H); p: {'Wh': (H, 4H)}. Returns hs (T, N, H), (h_T, c_T), each
    (N, H), cache (LSTMCache)."""
    h, c = state
    T, N, G = xp.shape
    H = G // 4
    scale = _gate_scale(G, 3 * H, xp.dtype)  # [-1 (i f o), -2 (g)]
    acts = xp  # activations overwrite the pre-activations
    cs = np.empty((T, N, H), dtype=xp.dtype)
    tcs = np.empty_like(cs)
    hs = np.empty_like(cs)
    if fused := _fused(kernels, acts):  # the same loop in one C call, its multiply on packed Wh
        fused.lstm_forward_loop(acts, p["Wh"], scale, h, c, cs, tcs, hs)  # scales xp itself
        return hs, (hs[-1].copy(), cs[-1].copy()), LSTMCache(p["Wh"], state[0], state[1], acts,
                                                             cs, tcs, hs)
    Whs = _loop_copy(p["Wh"], scale)  # see _gate_scale and _loop_copy
    acts *= scale  # u = [-xp_i, -xp_f, -xp_o, -2 xp_g], for all steps at once
    buf = np.empty((N, G), dtype=xp.dtype)
    ig = np.empty((N, H), dtype=xp.dtype)
    with np.errstate(over="ignore"):  # exp may overflow to inf, harmlessly: see _gate_scale
        for t in range(T):
            a = acts[t]
            np.matmul(h, Whs, out=buf)  # h_{t-1} Wh, scaled
            a += buf  # u_t = scale * a_t, a_t = xp_t + h_{t-1} Wh
            _sigmoid_(a, negated=True)  # [i f o] = sigmoid(a_ifo); g columns: sigmoid(2 a_g)
            i, f, o, g = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
            g *= 2
            g -= 1  # g = 2 sigmoid(2 a_g) - 1 = tanh(a_g)
            ct, tc = cs[t], tcs[t]
            np.multiply(f, c, out=ct)  # f * c_{t-1}
            np.multiply(i, g, out=ig)  # i * g
            ct += ig  # c_t = f * c_{t-1} + i * g
            np.tanh(ct, out=tc)  # tanh(c_t)
            np.multiply(o, tc, out=hs[t])  # h_t = o * tanh(c_t)
            h, c = hs[t], ct
    return hs, (h.copy(), c.copy()), LSTMCache(p["Wh"], state[0], state[1], acts, cs, tcs, hs)


def lstm_backward(dhs, dstate, cache, kernels: str = "numpy"):
    """Backward over a chunk.

    dhs (T, N, H): dL/dh_t from above (output layer or next layer); dstate: (dh_T, dc_T), each
    (N, H), the gradients at the final state; cache: LSTMCache from lstm_forward. Returns
    dxp (T, N, 4H) = da_t (unscaled pre-activations, columns i, f, o, g), (dh_0, dc_0), each
    (N, H), grads {'Wh': (H, 4H)}.

    Per step only dh and dc are carried: with dc_t = dc + dh * o (1 - tanh(c)^2), the gate
    gradients are da = [dc K_i, dc K_f, dh K_o, dc K_g], where the factors K (products of cached
    activations and nonlinearity derivatives) are computed for all T steps before the loop:
    K_i = g i(1-i), K_f = c_prev f(1-f), K_o = tanh(c) o(1-o), K_g = i (1-g^2)."""
    Wh, h0, c0, acts, cs, tcs, hs = cache
    T, N, G = acts.shape
    H = G // 4
    if fused := _fused(kernels, acts, dhs, *dstate):  # the same loop, K computed in it, in C
        dh, dc = dstate[0].copy(), dstate[1].copy()
        dxp = fused.lstm_backward_loop(acts, c0, cs, tcs, dhs, Wh, dh, dc)
        return dxp, (dh, dc), {"Wh": _weight_grad(h0, hs, dxp)}
    A = acts.reshape(T, N, 4, H)
    i, f, o, g = A[:, :, 0], A[:, :, 1], A[:, :, 2], A[:, :, 3]
    dxp = np.subtract(1, acts)  # 1 - s; becomes K, then da in place: (T, N, 4, H)
    K = dxp.reshape(T, N, 4, H)
    K[:, :, :3] *= A[:, :, :3]  # s (1 - s) = sigmoid'(a) for i, f, o
    np.multiply(g, g, out=K[:, :, 3])  # g^2
    np.subtract(1, K[:, :, 3], out=K[:, :, 3])  # 1 - g^2 = tanh'(a_g)
    K[:, :, 0] *= g  # K_i = g i(1-i)
    K[0, :, 1] *= c0  # K_f = c_{t-1} f(1-f), first step (c_0)
    K[1:, :, 1] *= cs[:-1]  # K_f = c_{t-1} f(1-f), later steps
    K[:, :, 2] *= tcs  # K_o = tanh(c_t) o(1-o)
    K[:, :, 3] *= i  # K_g = i (1-g^2)
    ot = np.multiply(tcs, tcs)  # tanh(c_t)^2
    np.subtract(1, ot, out=ot)  # 1 - tanh(c_t)^2
    ot *= o  # o (1 - tanh(c_t)^2): dh's path into dc
    dh = dstate[0].copy()  # dh_T
    dc = dstate[1].copy()  # dc_T
    tmp = np.empty((N, H), dtype=acts.dtype)
    WhT = _loop_copy_T(Wh)  # Wh^T, contiguous rows: see _loop_copy_T
    for t in range(T - 1, -1, -1):
        Kt = K[t]
        dh += dhs[t]  # dh_t = dhs_t + da_{t+1} Wh^T
        np.multiply(dh, ot[t], out=tmp)  # dh_t o (1 - tanh(c_t)^2)
        dc += tmp  # dc_t = f_{t+1} dc_{t+1} + dh_t o (1 - tanh(c_t)^2)
        Kt[:, :2] *= dc[:, None]  # da_i = dc_t K_i, da_f = dc_t K_f
        Kt[:, 2] *= dh  # da_o = dh_t K_o
        Kt[:, 3] *= dc  # da_g = dc_t K_g
        dc *= f[t]  # f * dc_t: the path c_{t-1} -> c_t, the first part of dc_{t-1}
        np.matmul(dxp[t], WhT, out=dh)  # dh_{t-1} = da_t Wh^T
    return dxp, (dh, dc), {"Wh": _weight_grad(h0, hs, dxp)}  # dWh = sum_t h_{t-1}^T da_t


def lstm_step(xp, state, p, kernels: str = "numpy"):
    """One step with the fewest NumPy calls (sampling is per-call overhead plus the matvec).

    xp (N, 4H): input projection, not modified; state: (h, c), each (N, H); p: {'Wh': (H, 4H)}.
    Returns (h_next, c_next), each (N, H)."""
    h, c = state
    if fused := _fused(kernels, xp, h, c, p["Wh"]):  # the gates and the state update in one C call
        return fused.lstm_step(xp, h, c, p["Wh"])
    H = h.shape[-1]
    a = np.matmul(h, p["Wh"])  # h_{t-1} Wh
    a += xp  # a_t = xp_t + h_{t-1} Wh
    s = a[:, : 3 * H]
    # _sigmoid_'s tanh formula, inlined: one tanh pass for all four gates,
    # sigmoid(a) = 0.5 tanh(a / 2) + 0.5 on i, f, o and tanh(a) on g
    s *= 0.5  # a_ifo / 2
    np.tanh(a, out=a)  # [tanh(a_ifo / 2), g = tanh(a_g)]
    s *= 0.5
    s += 0.5  # [i f o] = 0.5 tanh(a_ifo / 2) + 0.5
    c = a[:, H : 2 * H] * c  # f * c_{t-1}
    g = a[:, 3 * H :]
    g *= a[:, :H]  # i * g
    c += g  # c_t = f * c_{t-1} + i * g
    h = np.tanh(c)  # tanh(c_t)
    h *= a[:, 2 * H : 3 * H]  # h_t = o * tanh(c_t)
    return h, c


# --------------------------------------------------------------------------------------------
# GRU, PyTorch's convention (so models compare with torch.nn.GRU):
#   r = sigmoid(x Wx_r + b_r + h_prev Wh_r)
#   z = sigmoid(x Wx_z + b_z + h_prev Wh_z)
#   n = tanh(x Wx_n + b_n + r * (h_prev Wh_n + bhn))     reset gate applied after the multiply
#   h = (1 - z) * n + z * h_prev                          z = 1 keeps the old state
# computed as h = n + z * (h_prev - n); with xp = x Wx + b, the terms are xp_r, xp_z, xp_n.
# --------------------------------------------------------------------------------------------


class GRUCache(NamedTuple):
    Wh: np.ndarray  # (H, 3H)
    h0: np.ndarray  # (N, H)
    acts: np.ndarray  # (T, N, 3H) r, z, n
    hns: np.ndarray  # (T, N, H) h_prev Wh_n + bhn
    hs: np.ndarray  # (T, N, H)


def gru_forward(xp, state, p, kernels: str = "numpy"):
    """Forward over a chunk (PyTorch's GRU; equations above).

    xp (T, N, 3H): input projection x Wx + b, columns r, z, n, overwritten (it becomes the cached
    activations r, z, n); state: (h0,) (N, H); p: {'Wh': (H, 3H), 'bhn': (H,)}. Returns
    hs (T, N, H), (h_T,) (N, H), cache (GRUCache)."""
    (h,) = state
    bhn = p["bhn"]
    T, N, G = xp.shape
    H = G // 3
    acts = xp
    if fused := _fused(kernels, acts):  # the same loop in one C call, its multiply on packed Wh
        hns, hs = np.empty((T, N, H), dtype=xp.dtype), np.empty((T, N, H), dtype=xp.dtype)
        fused.gru_forward_loop(acts, p["Wh"], bhn, h, hns, hs)
        return hs, (hs[-1].copy(),), GRUCache(p["Wh"], state[0], acts, hns, hs)
    negate_rz = np.ones(G, dtype=xp.dtype)
    negate_rz[: 2 * H] = -1
    Whs = _loop_copy(p["Wh"], negate_rz)  # [-Wh_r, -Wh_z, Wh_n] (see _gate_scale, _loop_copy)
    acts[..., : 2 * H] *= -1  # u = [-xp_r, -xp_z], for all steps at once
    hns = np.empty((T, N, H), dtype=xp.dtype)
    hs = np.empty_like(hns)
    gh = np.empty((N, G), dtype=xp.dtype)
    rh = np.empty((N, H), dtype=xp.dtype)
    with np.errstate(over="ignore"):  # see _sigmoid_
        for t in range(T):
            a = acts[t]
            np.matmul(h, Whs, out=gh)  # [-h_{t-1} Wh_r, -h_{t-1} Wh_z, h_{t-1} Wh_n]
            rz = a[:, : 2 * H]
            rz += gh[:, : 2 * H]  # u = -(xp_rz + h_{t-1} Wh_rz)
            _sigmoid_(rz, negated=True)  # r = sigmoid(xp_r + h Wh_r), z = sigmoid(xp_z + h Wh_z)
            r, z, n = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
            hn = hns[t]
            np.add(gh[:, 2 * H :], bhn, out=hn)  # hn = h_{t-1} Wh_n + bhn
            np.multiply(r, hn, out=rh)  # r * (h_{t-1} Wh_n + bhn)
            n += rh  # xp_n + r * (h_{t-1} Wh_n + bhn)
            np.tanh(n, out=n)  # n = tanh(xp_n + r * (h_{t-1} Wh_n + bhn))
            ht = hs[t]
            np.subtract(h, n, out=ht)  # h_{t-1} - n
            ht *= z  # z * (h_{t-1} - n)
            ht += n  # h_t = n + z * (h_{t-1} - n) = (1 - z) * n + z * h_{t-1}
            h = ht
    return hs, (h.copy(),), GRUCache(p["Wh"], state[0], acts, hns, hs)


def gru_backward(dhs, dstate, cache, kernels: str = "numpy"):
    """Backward over a chunk.

    dhs (T, N, H): dL/dh_t from above (output layer or next layer); dstate: (dh_T,) (N, H), the
    gradient at the final state; cache: GRUCache from gru_forward. Returns dxp (T, N, 3H) (columns
    r, z, n), (dh_0,) (N, H), grads {'Wh': (H, 3H), 'bhn': (H,)}.

    Per step only dh is carried. With dh_t the total gradient at h_t and k = (1-z)(1-n^2)
    (the factor of dn's path), the gradient with respect to [h_prev Wh_r, h_prev Wh_z,
    h_prev Wh_n + bhn] is dh_t * [K_r, K_z, K_n] with K_r = hn k r(1-r), K_z = (h_prev - n)
    z(1-z), K_n = k r, all computed for every step before the loop. dxp equals that gradient in
    the r and z columns and dh_t k in the n columns, written over dgh's n columns after the
    loop (once dWh and dbhn have been taken from them)."""
    Wh, h0, acts, hns, hs = cache
    T, N, G = acts.shape
    H = G // 3
    if fused := _fused(kernels, acts, hns, hs, dhs, *dstate):  # the loop, K computed in it, in C
        dh = dstate[0].copy()
        dgh, dxn = fused.gru_backward_loop(acts, h0, hns, hs, dhs, Wh, dh)
        grads = {"Wh": _weight_grad(h0, hs, dgh), "bhn": dgh[:, :, 2 * H :].sum(axis=(0, 1))}
        dgh[..., 2 * H :] = dxn  # dxp: r and z columns as they are, n columns dh_t k
        return dgh, (dh,), grads
    A = acts.reshape(T, N, 3, H)
    r, z, n = A[:, :, 0], A[:, :, 1], A[:, :, 2]
    k = np.multiply(n, n)  # n^2
    np.subtract(1, k, out=k)  # 1 - n^2 = tanh'
    tmp = np.subtract(1, z)  # 1 - z
    k *= tmp  # k = (1 - z)(1 - n^2)
    dgh = np.empty_like(acts)  # K, then dh_t K in place
    K = dgh.reshape(T, N, 3, H)
    np.subtract(1, r, out=K[:, :, 0])  # 1 - r
    K[:, :, 0] *= r  # r (1 - r)
    K[:, :, 0] *= hns  # hn r (1 - r)
    K[:, :, 0] *= k  # K_r = hn k r (1 - r)
    np.subtract(h0, n[0], out=K[0, :, 1])  # h_{t-1} - n, first step (h_0)
    np.subtract(hs[:-1], n[1:], out=K[1:, :, 1])  # h_{t-1} - n, later steps
    tmp *= z  # z (1 - z)
    K[:, :, 1] *= tmp  # K_z = (h_{t-1} - n) z (1 - z)
    np.multiply(k, r, out=K[:, :, 2])  # K_n = k r
    DH = np.empty_like(hs)  # dh_t, total gradient at h_t
    dh = dstate[0].copy()  # dh_T
    buf = np.empty_like(dh)
    WhT = _loop_copy_T(Wh)  # Wh^T, contiguous rows: see _loop_copy_T
    for t in range(T - 1, -1, -1):
        dht = DH[t]
        np.add(dh, dhs[t], out=dht)  # dh_t = dhs_t + (recurrent part from step t+1)
        K[t] *= dht[:, None]  # dgh_t = dh_t [K_r, K_z, K_n]
        np.multiply(dht, z[t], out=dh)  # dh_{t-1} = dh_t z: the direct path h_prev -> h
        np.matmul(dgh[t], WhT, out=buf)  # dgh_t Wh^T: the path through Wh
        dh += buf  # dh_{t-1} = dh_t z + dgh_t Wh^T
    # dWh = sum_t h_{t-1}^T dgh_t; dbhn = dgh_n summed over steps and streams
    grads = {"Wh": _weight_grad(h0, hs, dgh), "bhn": dgh[:, :, 2 * H :].sum(axis=(0, 1))}
    dxp = dgh  # r and z columns as they are; n columns replaced, now that dgh is used up
    np.multiply(DH, k, out=dxp[..., 2 * H :])  # dxp_n = dh_t (1 - z)(1 - n^2)
    return dxp, (dh,), grads


def gru_step(xp, state, p, kernels: str = "numpy"):
    """One time step. xp (N, 3H): input projection, not modified; state: (h,) (N, H);
    p: {'Wh': (H, 3H), 'bhn': (H,)}. Returns (h_next,) (N, H)."""
    (h,) = state
    if fused := _fused(kernels, xp, h, p["Wh"], p["bhn"]):  # the gates and the update in one C call
        return (fused.gru_step(xp, h, p["Wh"], p["bhn"]),)
    H = h.shape[-1]
    gh = np.matmul(h, p["Wh"])  # h_{t-1} Wh
    rz = _sigmoid_(np.add(xp[:, : 2 * H], gh[:, : 2 * H]))  # [r z] = sigmoid(xp_rz + h Wh_rz)
    r, z = rz[:, :H], rz[:, H:]
    hn = gh[:, 2 * H :]
    hn += p["bhn"]  # h_{t-1} Wh_n + bhn
    hn *= r  # r * (h_{t-1} Wh_n + bhn)
    n = np.add(xp[:, 2 * H :], hn)  # xp_n + r * (h_{t-1} Wh_n + bhn)
    np.tanh(n, out=n)  # n = tanh(xp_n + r * (h_{t-1} Wh_n + bhn))
    hnew = np.subtract(h, n)  # h_{t-1} - n
    hnew *= z  # z * (h_{t-1} - n)
    hnew += n  # h_t = n + z * (h_{t-1} - n) = (1 - z) * n + z * h_{t-1}
    return (hnew,)


# --------------------------------------------------------------------------------------------
# What a forward pass computed, by name: views of a forward cache's arrays (nothing is computed
# again), for looking inside a model (charrnn.inside.record). Each maps a cache to
# {series: (T, N, H) array}, in the cell's equation order; SERIES_BOUNDS gives each series'
# range: the sigmoid gates (0, 1), the tanh values (-1, 1). The LSTM's c is not bounded
# (|c_t| <= t); (-1, 1) is the range a picture of it uses, as for tanh(c).


def rnn_series(cache: RNNCache) -> dict[str, np.ndarray]:
    return {"h": cache.hs}


def lstm_series(cache: LSTMCache) -> dict[str, np.ndarray]:
    T, N, G = cache.acts.shape
    A = cache.acts.reshape(T, N, 4, G // 4)
    return {"i": A[:, :, 0], "f": A[:, :, 1], "o": A[:, :, 2], "g": A[:, :, 3], "c": cache.cs,
            "h": cache.hs}


def gru_series(cache: GRUCache) -> dict[str, np.ndarray]:
    T, N, G = cache.acts.shape
    A = cache.acts.reshape(T, N, 3, G // 3)
    return {"r": A[:, :, 0], "z": A[:, :, 1], "n": A[:, :, 2], "h": cache.hs}


SERIES_BOUNDS = {"i": (0.0, 1.0), "f": (0.0, 1.0), "o": (0.0, 1.0), "r": (0.0, 1.0),
                 "z": (0.0, 1.0), "g": (-1.0, 1.0), "n": (-1.0, 1.0), "c": (-1.0, 1.0),
                 "h": (-1.0, 1.0)}


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
    series: Callable  # forward cache -> {name: (T, N, H) view}, names as in `series_names`
    series_names: tuple[str, ...]  # what a forward pass computes per step, in equation order


CELLS: dict[str, Cell] = {
    "lstm": Cell("lstm", 4, 2, ("Wh",), lstm_forward, lstm_backward, lstm_step,
                 "long short-term memory: gated additive cell state",
                 lstm_series, ("i", "f", "o", "g", "c", "h")),
    "gru": Cell("gru", 3, 1, ("Wh", "bhn"), gru_forward, gru_backward, gru_step,
                "gated recurrent unit, PyTorch's convention", gru_series, ("r", "z", "n", "h")),
    "rnn": Cell("rnn", 1, 1, ("Wh",), rnn_forward, rnn_backward, rnn_step,
                "vanilla tanh RNN", rnn_series, ("h",)),
}

# the cells with their compiled kernels bound (see cell()): the functions FUSED names take
# kernels="fused", the rest are NumPy's
_FUSED_CELLS: dict[str, Cell] = {
    name: c._replace(**{f: partial(getattr(c, f), kernels="fused") for f in FUSED.get(name, ())})
    for name, c in CELLS.items()}
