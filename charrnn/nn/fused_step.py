"""A language model's whole sampling step and the sampler's draw, on the compiled kernels
(charrnn.nn.fused builds and loads them; fused.c holds the C).

`stack_stepper` is charrnn.models.lm.stepper's step for LSTM and GRU stacks on the fused kernels;
`drawer` is the draw of charrnn.infer.sample for float32 logits. Both are made once per sample
and called once per character, so they check what they are given once, when made, and keep
their buffers.

Sampling one stream is a chain of matrix-vector products (an LSTM 512x2 reads 12.6 MB of weights
per character) and little else, so the step is one C call per character (fused.c, stack_step):
every layer's products, its gates and state, layer 0's input row by id, the biases and the
output layer, with no Python between the products. The products run off copies of the weight
matrices packed when the step is made (`step_panels`: one contiguous stream per panel of
columns, read front to back), about as much memory again as the weights; so a step made before
the parameters change keeps computing with the old ones: make a new one.

Its numbers are not NumPy's bit for bit. Each product sums over k in order 0..K-1 (with fused
multiply-adds where the CPU has them), as the time loops' multiply does, where NumPy's OpenBLAS
sums in its own order: h_{t-1} Wh, x Wx and h Wy differ in the last bits (about 1e-7 relative;
tests/nn/test_fused.py compares the step with NumPy's and with float64), and once in a long
while a sample draws another character than NumPy's step would. The gates' and the state's
formulas are the fused single steps' (fused.c, lstm_row_ and gru_row_), and the draw (`drawer`)
does the NumPy draw's float64 operations bit for bit. A stream's numbers do not depend on how
many streams share the step, and the same seed samples the same text, run to run, on one
machine (its CPU's instructions decide the multiply-adds).
"""

from __future__ import annotations

import ctypes

import numpy as np

from . import fused

# cell -> (gates, state arrays per layer)
_STACKS = {"lstm": (4, 2), "gru": (3, 1)}
_SLOTS = 4  # fused.c's STEP_SLOTS: a layer's Wh panels, Wx (layer 0's itself), b, bhn


def _float32(*arrays) -> bool:
    return all(isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous
               for a in arrays)


def step_panels(W: np.ndarray) -> np.ndarray:
    """W (K, M) float32 packed for the step's multiply (fused.c, pack_step_panels): a flat array
    of ceil(M / width) panels of `width` columns, each K rows of `width` contiguous floats."""
    W = np.ascontiguousarray(W, np.float32)
    K, M = W.shape
    lib = fused.library()
    width = lib.step_panel_width()
    P = np.empty(-(-M // width) * width * K, np.float32)
    lib.pack_step_panels(K, M, W.ctypes.data, P.ctypes.data)
    return P


def step_multiply(a: np.ndarray, P: np.ndarray, M: int) -> np.ndarray:
    """a (n, K) times the (K, M) matrix packed in P (step_panels()), by the step's kernel."""
    a = np.ascontiguousarray(a, np.float32)
    n, K = a.shape
    lib = fused.library()
    width = lib.step_panel_width()
    if P.dtype != np.float32 or P.size != -(-M // width) * width * K:
        raise ValueError(f"step_multiply: {P.size} packed values do not fit ({K}, {M})")
    out = np.empty((n, M), np.float32)
    lib.step_multiply(n, K, M, a.ctypes.data, P.ctypes.data, out.ctypes.data)
    return out


def stack_stepper(cell: str, layers, head, fallback):
    """`step(ids, state) -> (logits (N, V), state)` for a stack of `cell` layers fed ids, then
    an affine output, as charrnn.models.lm.stepper computes it, in one C call (see above):
    layers [(Wx, b, p)], Wx (V, G) for layer 0 and (H, G) above, b (G,), p the cell's recurrent
    parameters ({"Wh"}, and "bhn" for the GRU); head (Wy (H, V), by (V,)). A call this step
    cannot take (a float64 or strided state, ids that are not integers) goes to
    `fallback(ids, state)`, NumPy's step. Returns None when the kernels have no such step (the
    RNN's, see cells.FUSED) or the parameters are not C-contiguous float32; ValueError when
    their shapes do not fit together. Every call returns new state arrays (views of one new
    block): the ones passed in are never written. The ids and the state are checked only when
    they are not the ones the step was given or returned last (a sampler hands each step's state
    straight back). Not for two threads at once (the products' scratch buffers are its own):
    make a step per thread."""
    if cell not in _STACKS or fused.available():
        return None
    gates, S = _STACKS[cell]
    Wy, by = head
    L = len(layers)
    recs = [tuple(p[k] for k in ("Wh", "bhn") if k in p) for _, _, p in layers]
    if not _float32(Wy, by, *(a for (Wx, b, _), r in zip(layers, recs) for a in (Wx, b, *r))):
        return None
    H, V = Wy.shape
    G = gates * H
    V0 = layers[0][0].shape[0]
    for k, ((Wx, b, _), rec) in enumerate(zip(layers, recs)):
        want = [(V0 if k == 0 else H, G), (G,), (H, G), (H,)][: 2 + len(rec)]
        if [Wx.shape, b.shape, *(r.shape for r in rec)] != want:
            raise ValueError(f"{cell} layer {k}: Wx {Wx.shape}, b {b.shape} and "
                             f"{', '.join(str(r.shape) for r in rec)} do not fit H = {H}")
    if by.shape != (V,):
        raise ValueError(f"output layer: Wy {Wy.shape} and by {by.shape} do not fit")
    # the table of parameters fused.c's stack_step reads (STEP_* there), and what it points to
    kept = []
    for k, ((Wx, b, _), rec) in enumerate(zip(layers, recs)):
        kept += [step_panels(rec[0]), Wx if k == 0 else step_panels(Wx), b,
                 rec[1] if cell == "gru" else None]
    kept += [step_panels(Wy), by]
    table = (ctypes.c_void_p * len(kept))(*(None if a is None else a.ctypes.data for a in kept))
    assert len(kept) == _SLOTS * L + 2
    kernel, where = fused.library().stack_step, ctypes.addressof(table)
    empty, f32 = np.empty, np.float32
    seen = [None, None, None]  # the ids, the state and its block last taken: known to fit
    scratch = {}  # N -> the products' buffer (2, N, G): h Wh, x Wx; never handed out

    def adopt(ids, state):
        """The (L, S, N, H) block of `state` if it and `ids` (N,) can go to the kernels, else
        None: the step's own last block, or a new one the state is copied into."""
        if not (isinstance(ids, np.ndarray) and ids.dtype == np.intp and ids.ndim == 1
                and ids.flags.c_contiguous) or not ids.shape[0]:
            return None
        N = ids.shape[0]
        if state is seen[1] and seen[2].shape[2] == N:
            block = seen[2]
        else:
            if len(state) != L or any(len(s) != S for s in state):
                return None
            arrays = [a for s in state for a in s]
            if not _float32(*arrays) or any(a.shape != (N, H) for a in arrays):
                return None
            block = empty((L, S, N, H), f32)
            for k, s in enumerate(state):
                for j, a in enumerate(s):
                    block[k, j] = a
        if N not in scratch:
            scratch[N] = empty((2, N, G), f32)
        return block

    def step(ids, state):
        if ids is seen[0] and state is seen[1]:
            block = seen[2]
        elif (block := adopt(ids, state)) is None:
            return fallback(ids, state)
        N = ids.shape[0]
        new, logits = empty((L, S, N, H), f32), empty((N, V), f32)
        bad = kernel(gates, N, H, L, V0, V, where, ids, block, new, logits, scratch[N])
        if bad:
            raise IndexError(f"index {ids[bad - 1]} is out of bounds for the {V0} rows "
                             f"of the input layer")
        out = tuple(map(tuple, new))  # per layer (h, c) or (h,), views of the new block
        seen[0], seen[1], seen[2] = ids, out, new
        return logits, out

    step.kept = (kept, table)  # what the table points to lives as long as the step
    return step


def drawer(V: int):
    """`draw(logits, inv_t, u) -> i` for a sampler (charrnn.infer.sample): the character drawn
    by the uniform u from softmax(logits * inv_t) of float32 logits (V,), with the very float64
    operations of the sampler's NumPy draw (NumPy's exp included, called between the two C
    calls), in three calls instead of seven; -1 when the weights are not finite, None for logits
    it cannot take (not C-contiguous (V,) float32: the caller then draws with NumPy). None when
    the kernels cannot be had. Not for use by two threads at once (its buffers are its own)."""
    if fused.available():
        return None
    lib = fused.library()
    shift, search, exp = lib.softmax_shift, lib.cumulative_search, np.exp
    w, cum = np.empty(V), np.empty(V)
    f32, shape, strides = np.dtype(np.float32), (V,), (4,)

    def draw(logits, inv_t, u):
        if logits.dtype is not f32 or logits.shape != shape or logits.strides != strides:
            return None
        shift(V, logits, inv_t, w)
        exp(w, out=w)
        return search(V, w, cum, u)

    draw.cum = cum  # the last draw's running sum of the weights, for the tests
    return draw
