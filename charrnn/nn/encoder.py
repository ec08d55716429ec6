"""Recurrent encoders: stacked, uni- or bidirectional, over padded batches of variable length.

Shapes: N sequences, T padded length, V vocabulary, H hidden units per direction, R directions
(1 or 2), D layer input size (V for layer 0, R*H above), G = gates * H. Public functions take ids
as (N, T), batch-major; everything inside, and the outputs, are time-major (T, N, ...).

Each sequence n has its own length 1 <= L_n <= T: positions t < L_n are real, the rest padding.
With x_0 = onehot(ids) and zero initial states, layer k computes

    forward:   f_t = cell(x_t Wx_fw + b_fw, f_{t-1})                  t = 0 .. L_n - 1
    backward:  g_t = cell(x_t Wx_bw + b_bw, g_{t+1})                  t = L_n - 1 .. 0
    output:    y_t = [f_t ; g_t]  (T, N, R*H),   x_{k+1} = dropout(y)   (masks given, optional)

and `forward` returns the top layer's y (zero at padded positions) and, per layer, the finals
f_{L_n - 1} and g_0: each direction's h after reading the whole sequence, at its own length.

Parameters are one flat dict; the cells give the gate order and the recurrent parameters:

    {prefix}l{k}.{fw,bw}.Wx  (D, G)   for layer 0, row v is the projection of character v
    {prefix}l{k}.{fw,bw}.Wh  (H, G)
    {prefix}l{k}.{fw,bw}.b   (G,)
    {prefix}l{k}.{fw,bw}.bhn (H,)     GRU only

Variable lengths without masks in the cells. The backward direction runs over each sequence
reversed within its own length: a per-row index rev[t, n] = L_n - 1 - t for t < L_n (t itself
for padding) gathers the inputs in and, being its own inverse, the outputs back out. Then in
both directions, as the cells see them, every sequence's real steps come first (t < L_n) and
its padding after, so:
- forward: a real step never reads a padded one, so padding cannot change a real output, and
  each direction's final is read at step L_n - 1 of its own time order, not from the cell's
  state_T (which has run on through the padding);
- backward: the cell's backward loop starts at T - 1 with a zero dstate_T and meets the padded
  steps first; their upstream gradient is zero (padded outputs are multiplied by zero, and the
  finals' gradients enter at real positions), so the carried gradient stays exactly zero
  through them (zero times the finite local derivatives) and their dxp is exactly zero: they
  add exact zeros to dWx, db and dWh, and to the layer below. The padded ids are replaced by 0,
  so their value does not matter either.
A sequence therefore gets the same outputs, finals and gradients in any padded batch as alone
(up to the summation order of the matrix multiplies, ~1e-16).

As in the cells, the input projection of all T steps is one gather (layer 0) or one matrix
multiply per direction, and dWx, db and the gradient for the layer below are one multiply each
after the cell's backward loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError
from . import cells
from .cells import CELLS, Cell
from .ops import dropout_mask, scatter_rows


def _directions(bidirectional: bool) -> tuple[str, ...]:
    return ("fw", "bw") if bidirectional else ("fw",)


def param_shapes(cell: str, V: int, H: int, layers: int, bidirectional: bool,
                 prefix: str = "enc.") -> dict[str, tuple[int, ...]]:
    """The name and shape of every parameter, in a fixed order (layer, direction, name)."""
    if cell not in CELLS:
        raise ConfigError(f"unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
    for name, value in (("V", V), ("H", H), ("layers", layers)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} must be a positive whole number, not {value!r}")
    c = CELLS[cell]
    dirs = _directions(bidirectional)
    G = c.gates * H
    shapes: dict[str, tuple[int, ...]] = {}
    for k in range(layers):
        for d in dirs:
            name = f"{prefix}l{k}.{d}."
            shapes[name + "Wx"] = (V if k == 0 else len(dirs) * H, G)
            shapes[name + "Wh"] = (H, G)
            shapes[name + "b"] = (G,)
            if "bhn" in c.recurrent:
                shapes[name + "bhn"] = (H,)
    return shapes


def init_params(cell: str, V: int, H: int, layers: int, bidirectional: bool,
                rng: np.random.Generator, prefix: str = "enc.",
                dtype="float64") -> dict[str, np.ndarray]:
    """The language model's scheme: Wx uniform in +-1/sqrt(H); Wh orthogonal per gate block;
    biases zero except the LSTM forget gate's (order i, f, o, g), which starts at 1."""
    bound = 1.0 / math.sqrt(H)
    params = {}
    for name, shape in param_shapes(cell, V, H, layers, bidirectional, prefix).items():
        if name.endswith(".Wh"):
            blocks = [np.linalg.qr(rng.standard_normal((H, H)))[0] for _ in range(shape[1] // H)]
            w = np.concatenate(blocks, axis=1)
        elif name.endswith(".Wx"):
            w = rng.uniform(-bound, bound, size=shape)
        else:
            w = np.zeros(shape)
            if cell == "lstm" and name.endswith(".b"):
                w[H : 2 * H] = 1.0
        params[name] = w.astype(np.dtype(dtype))
    return params


def dropout_masks(rng: np.random.Generator, p: float, layers: int, T: int, N: int, D: int,
                  dtype="float64") -> list[np.ndarray] | None:
    """Inverted-dropout masks between layers: layers - 1 arrays (T, N, D) with D = R*H, each
    unit kept with probability 1 - p and scaled by 1 / (1 - p); None when p == 0."""
    if p == 0:
        return None
    dtype = np.dtype(dtype)
    return [dropout_mask(rng, p, (T, N, D), dtype) for _ in range(layers - 1)]


class LayerCache(NamedTuple):
    xs: tuple  # per direction, the (T, N, D) input in the cell's time order; None for layer 0
    cells: tuple  # per direction, the cell's own cache
    mask: np.ndarray | None  # (T, N, D) dropout mask applied to this layer's input, or None


class EncoderCache(NamedTuple):
    cell: Cell  # with the kernels the forward pass ran
    prefix: str
    params: dict
    ids: tuple  # per direction, (T, N) ids in the cell's time order (padding set to 0)
    rev: np.ndarray  # (T, N) the per-row reversal index, its own inverse
    last: np.ndarray  # (N,) L_n - 1: where each direction's final sits in its own time order
    valid: np.ndarray  # (T, N, 1) 1 at real positions, 0 at padding
    layers: list


def _check_inputs(ids, lengths, V):
    ids = np.asarray(ids)
    lengths = np.asarray(lengths)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be an (N, T) integer array, not {ids.dtype} {ids.shape}")
    N, T = ids.shape
    if lengths.shape != (N,) or not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(f"lengths must be ({N},) integers, not {lengths.dtype} {lengths.shape}")
    if N and (lengths.min() < 1 or lengths.max() > T):
        raise ValueError(f"lengths must be in [1, {T}], not {lengths.min()}..{lengths.max()}")
    real = np.arange(T) < lengths[:, None]  # (N, T)
    bad = real & ((ids < 0) | (ids >= V))
    if bad.any():
        n, t = np.argwhere(bad)[0]
        raise ValueError(f"id {ids[n, t]} at sequence {n}, position {t} is outside [0, {V})")
    return ids, lengths.astype(np.intp), real


def forward(params: dict, cell: str, layers: int, bidirectional: bool, ids, lengths,
            masks: Sequence[np.ndarray] | None = None, prefix: str = "enc.",
            kernels: str = "numpy"):
    """Encode a padded batch. ids (N, T) integers (any value at padding), lengths (N,) in [1, T].

    Returns (outs (T, N, R*H), finals, cache): outs is the top layer's [f_t ; g_t] at real
    positions and 0 at padding; finals[k] is layer k's (f_{L-1}, g_0), or (f_{L-1},), each
    (N, H); finals[-1] is the top layer's. `masks` as from dropout_masks (layers - 1 arrays).
    `kernels`: the cells' (charrnn.nn.cells.KERNELS); backward runs the same.
    """
    c = cells.cell(cell, kernels)
    dirs = _directions(bidirectional)
    V = params[f"{prefix}l0.fw.Wx"].shape[0]
    ids, lengths, real = _check_inputs(ids, lengths, V)
    N, T = ids.shape
    ids_t = np.where(real, ids, 0).T  # (T, N)
    t = np.arange(T)[:, None]
    rev = np.where(t < lengths, lengths - 1 - t, t)  # (T, N)
    cols = np.arange(N)
    last = lengths - 1
    order = {"fw": ids_t}  # (T, N) ids in each direction's time order
    if bidirectional:
        order["bw"] = ids_t[rev, cols]
    if masks is not None and len(masks) != layers - 1:
        raise ValueError(f"{layers} layers take {layers - 1} dropout masks, not {len(masks)}")
    valid = real.T[..., None].astype(params[f"{prefix}l0.fw.Wx"].dtype)  # (T, N, 1)
    caches, finals = [], []
    y = None
    for k in range(layers):
        mask = masks[k - 1] if masks is not None and k > 0 else None
        x = y * mask if mask is not None else y  # (T, N, D), None for layer 0
        xs, ccs, hs_dirs, fin = [], [], [], []
        for d in dirs:
            name = f"{prefix}l{k}.{d}."
            Wx, b = params[name + "Wx"], params[name + "b"]
            if k == 0:
                xd = None
                xp = (Wx + b)[order[d]]  # (T, N, G): a one-hot row times Wx is a row of Wx
            else:
                xd = x if d == "fw" else x[rev, cols]  # (T, N, D) in this direction's order
                xp = (xd.reshape(T * N, -1) @ Wx).reshape(T, N, -1)  # (T, N, G)
                xp += b
            state0 = tuple(np.zeros((N, Wx.shape[1] // c.gates), xp.dtype)
                           for _ in range(c.n_states))
            hs, _, cc = c.forward(xp, state0, {r: params[name + r] for r in c.recurrent})
            fin.append(hs[last, cols])  # (N, H): h after the sequence's own last step
            hs_dirs.append(hs if d == "fw" else hs[rev, cols])  # (T, N, H) in the input's order
            xs.append(xd)
            ccs.append(cc)
        caches.append(LayerCache(tuple(xs), tuple(ccs), mask))
        finals.append(tuple(fin))
        y = hs_dirs[0] if len(dirs) == 1 else np.concatenate(hs_dirs, axis=-1)  # (T, N, R*H)
    outs = y * valid  # a new array: the cells' caches may hold y
    cache = EncoderCache(c, prefix, params, tuple(order[d] for d in dirs), rev, last, valid,
                         caches)
    return outs, tuple(finals), cache


def backward(douts: np.ndarray, dfinals, cache: EncoderCache) -> dict[str, np.ndarray]:
    """Gradients given douts (T, N, R*H) (its padded positions are ignored) and dfinals, the
    gradients of the finals: None, or per layer None or a tuple per direction of (N, H) arrays
    or None. Returns grads, with the keys of the encoder's params (params may hold others).

    A final's gradient is added to the output gradient of the position it was read at: f_{L-1}
    is the fw cell's output at step L - 1, and g_0 is the bw cell's output at its own step
    L - 1 (reversed order), i.e. original position 0."""
    c, prefix, params, ids, rev, last, valid, layers = cache
    T, N, _ = douts.shape
    R = len(ids)
    cols = np.arange(N)
    grads = {}
    dy = douts * valid  # (T, N, R*H)
    for k in range(len(layers) - 1, -1, -1):
        xs, ccs, mask = layers[k]
        H = dy.shape[-1] // R
        dfin = dfinals[k] if dfinals is not None and dfinals[k] is not None else (None,) * R
        dx = None
        for j, d in enumerate(("fw", "bw")[:R]):
            name = f"{prefix}l{k}.{d}."
            part = dy[..., j * H : (j + 1) * H]
            dhs = part.copy() if d == "fw" else part[rev, cols]  # (T, N, H), the cell's order
            if dfin[j] is not None:
                dhs[last, cols] += dfin[j]
            dstate = tuple(np.zeros((N, H), dhs.dtype) for _ in range(c.n_states))
            dxp, _, g = c.backward(dhs, dstate, ccs[j])
            for r, value in g.items():
                grads[name + r] = value
            dxp2 = dxp.reshape(T * N, -1)  # (T*N, G)
            Wx = params[name + "Wx"]
            if k == 0:
                grads[name + "Wx"] = scatter_rows(ids[j].reshape(-1), dxp2, Wx.shape[0])
                grads[name + "b"] = grads[name + "Wx"].sum(axis=0)  # V rows, not T*N
            else:
                grads[name + "Wx"] = xs[j].reshape(T * N, -1).T @ dxp2
                grads[name + "b"] = dxp2.sum(axis=0)
                dxd = (dxp2 @ Wx.T).reshape(T, N, -1)  # (T, N, D) in this direction's order
                if d == "bw":
                    dxd = dxd[rev, cols]
                dx = dxd if dx is None else dx + dxd
        if k > 0:
            dy = dx * mask if mask is not None else dx  # into layer k-1's output
    return {name: grads[name] for name in params if name in grads}  # params' order


def series(cache: EncoderCache) -> dict[str, np.ndarray]:
    """What the forward pass computed, per layer, direction and the cell's series
    (charrnn.nn.cells, e.g. LSTM i f o g c h), in the input's time order: {"l{k}.{fw,bw}.{s}":
    (T, N, H)}. Read from the cells' caches (the backward direction's put back in order with the
    reversal index); values at padded positions are the padding's and mean nothing."""
    c = cache.cell
    cols = np.arange(cache.rev.shape[1])
    out = {}
    for k, layer in enumerate(cache.layers):
        for d, cc in zip(("fw", "bw"), layer.cells):
            for s, a in c.series(cc).items():
                out[f"l{k}.{d}.{s}"] = a if d == "fw" else a[cache.rev, cols]
    return out
