"""A language model's whole sampling step and the sampler's draw, on the compiled kernels
(charrnn.nn.fused builds and loads them; fused.c holds the C).

`stack_stepper` is charrnn.models.lm.stepper's step for LSTM and GRU stacks on the fused kernels;
`drawer` is the draw of charrnn.infer.sample for float32 logits. Both are made once per sample
and called once per character, so what they cost beyond the matrix-vector products is
per-call overhead: they check what they are given once, when made, and keep their buffers.
"""

from __future__ import annotations

import numpy as np

from . import fused

# A model's whole step (charrnn.models.lm.stepper with the fused kernels): per layer one NumPy
# multiply (two above layer 0) and one C call, which also gathers layer 0's input rows by id and
# adds each layer's bias; then the output layer. The parameters are checked once, here; the ids
# and state once each time they are not what the step itself was given or returned last (a
# sampler hands each step's state straight back), so a sampled character costs a few NumPy
# calls beyond its multiplies rather than a few per layer.

_LAYER_STEPS = {"lstm": ("lstm_layer_step", 4, 2), "gru": ("gru_layer_step", 3, 1)}


def _float32(*arrays) -> bool:
    return all(isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous
               for a in arrays)


def stack_stepper(cell: str, layers, head, fallback):
    """`step(ids, state) -> (logits (N, V), state)` for a stack of `cell` layers fed ids, then
    an affine output, as charrnn.models.lm.stepper computes it (the same sums in the same order,
    so the same numbers as the fused single steps): layers [(Wx, b, p)], Wx (V, G) for layer 0
    and (H, G) above, b (G,), p the cell's recurrent parameters ({"Wh"}, and "bhn" for the GRU);
    head (Wy (H, V), by (V,)). A call this step cannot take (a float64 or strided state, ids
    that are not integers) goes to `fallback(ids, state)`, NumPy's step. Returns None when the
    kernels have no such step (the RNN's, see cells.FUSED) or the parameters are not C-contiguous
    float32; ValueError when their shapes do not fit together. Every call returns new state
    arrays: the ones passed in are never written. Not for two threads at once (the multiplies'
    scratch buffers are its own): make a step per thread."""
    if cell not in _LAYER_STEPS or fused.available():
        return None
    name, gates, n_states = _LAYER_STEPS[cell]
    Wy, by = head
    recs = [tuple(p[k] for k in ("Wh", "bhn") if k in p) for _, _, p in layers]
    if not _float32(Wy, by, *(a for (Wx, b, _), r in zip(layers, recs) for a in (Wx, b, *r))):
        return None
    H = Wy.shape[0]
    G = gates * H
    V0 = layers[0][0].shape[0]
    for k, ((Wx, b, _), rec) in enumerate(zip(layers, recs)):
        want = [(V0 if k == 0 else H, G), (G,), (H, G), (H,)][: 2 + len(rec)]
        if [Wx.shape, b.shape, *(r.shape for r in rec)] != want:
            raise ValueError(f"{cell} layer {k}: Wx {Wx.shape}, b {b.shape} and "
                             f"{', '.join(str(r.shape) for r in rec)} do not fit H = {H}")
    if by.shape != Wy.shape[1:]:
        raise ValueError(f"output layer: Wy {Wy.shape} and by {by.shape} do not fit")
    kernel = getattr(fused.library(), name)
    lstm = cell == "lstm"
    empty, matmul, f32 = np.empty, np.matmul, np.float32
    seen = [None, None]  # the ids and the state last taken: known to fit, not checked again
    scratch = {}  # N -> per layer (h Wh, x Wx) buffers, (N, G) each; never handed out

    def fits(ids, state):
        """The stream count N if `ids` (N,) and `state` can go to the kernels, else None."""
        if not (isinstance(ids, np.ndarray) and ids.dtype == np.intp and ids.ndim == 1
                and ids.flags.c_contiguous) or not ids.shape[0]:
            return None
        N = ids.shape[0]
        if len(state) != len(layers) or any(len(s) != n_states for s in state):
            return None
        arrays = [a for s in state for a in s]
        if not _float32(*arrays) or any(a.shape != (N, H) for a in arrays):
            return None
        if N not in scratch:
            scratch[N] = [(empty((N, G), f32), empty((N, G), f32)) for _ in layers]
        return N

    def step(ids, state):
        if (ids is not seen[0] or state is not seen[1]) and fits(ids, state) is None:
            return fallback(ids, state)
        N = ids.shape[0]
        shape = (N, H)
        new, below = [], None
        for (Wx, b, _), rec, s, (a, xp) in zip(layers, recs, state, scratch[N]):
            matmul(s[0], rec[0], out=a)  # h_{t-1} Wh
            if below is None:  # layer 0: rows of Wx by id
                x, rows = Wx, V0
            else:
                x, rows = matmul(below, Wx, out=xp), 0
            h = empty(shape, f32)
            if lstm:
                c = empty(shape, f32)
                bad = kernel(N, H, rows, a, x, ids, b, s[1], h, c)
                new.append((h, c))
            else:
                bad = kernel(N, H, rows, a, x, ids, b, rec[1], s[0], h)
                new.append((h,))
            if bad:
                raise IndexError(f"index {ids[bad - 1]} is out of bounds for the {V0} rows "
                                 f"of the input layer")
            below = h
        logits = matmul(below, Wy)
        logits += by
        out = tuple(new)
        seen[0], seen[1] = ids, out
        return logits, out

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
