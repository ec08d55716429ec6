"""The character model: stacked recurrent layers, dropout, an output projection and the loss.

Shapes: N streams, T steps, V vocabulary, H hidden units, D layer input size (V for layer 0,
H above), G = gates * H. The public functions take ids as (N, T), batch-major like the data;
inside, arrays are time-major (T, N, ...) so each time step's slice is contiguous.

Parameters are one flat dict of named arrays, walked alike by gradients, optimizers, clipping,
gradcheck and checkpoints (the names are part of the checkpoint format):

    l{k}.Wx  (D, G)   input weights of layer k; for layer 0 row v is the projection of character v
    l{k}.Wh  (H, G)   recurrent weights, gate columns in the cell's order (see charrnn.cells)
    l{k}.b   (G,)     bias on the input side
    l{k}.bhn (H,)     GRU only: recurrent bias of the candidate, inside the reset gate
    Wy       (H, V)   output projection
    by       (V,)

Forward: x_0 = onehot(ids); for each layer k, h^k = cell(x_k Wx + b); x_{k+1} = dropout(h^k);
logits = dropout(h^{L-1}) Wy + by; loss = mean over the N*T characters of -log softmax(logits)[target],
in nats (bits per character = nats / ln 2). Dropout is inverted (kept units scaled by 1/(1-p)),
applied between layers and before the output projection, and only when a `rng` is given.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError
from ..nn.cells import CELLS

DTYPES = ("float32", "float64")

State = tuple  # per layer, a tuple of (N, H) arrays: (h,) or (h, c)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model's parameters. Saved in every checkpoint."""

    vocab_size: int
    cell: str = "lstm"
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.0
    dtype: str = "float32"

    def __post_init__(self):
        if not isinstance(self.cell, str) or self.cell not in CELLS:
            raise ConfigError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        for name in ("vocab_size", "hidden", "layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive whole number, not {value!r}")
        d = self.dropout
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 <= d < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), not {self.dropout!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown model settings: {', '.join(sorted(unknown))}")
        return cls(**d)


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The name and shape of every parameter, in a fixed order."""
    cell, H, V = CELLS[cfg.cell], cfg.hidden, cfg.vocab_size
    G = cell.gates * H
    shapes: dict[str, tuple[int, ...]] = {}
    for k in range(cfg.layers):
        shapes[f"l{k}.Wx"] = (V if k == 0 else H, G)
        shapes[f"l{k}.Wh"] = (H, G)
        shapes[f"l{k}.b"] = (G,)
        if "bhn" in cell.recurrent:
            shapes[f"l{k}.bhn"] = (H,)
    shapes["Wy"] = (H, V)
    shapes["by"] = (V,)
    return shapes


def count_params(cfg: ModelConfig) -> int:
    return sum(math.prod(s) for s in param_shapes(cfg).values())


def init_params(cfg: ModelConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Input and output weights uniform in +-1/sqrt(H) (PyTorch's default); recurrent weights
    orthogonal per gate block, so a vanilla RNN starts neither vanishing nor exploding; biases
    zero except the LSTM forget gate's, which starts at 1 so the cell remembers by default."""
    dtype = np.dtype(cfg.dtype)
    H = cfg.hidden
    bound = 1.0 / math.sqrt(H)
    params = {}
    for name, shape in param_shapes(cfg).items():
        if name.endswith(".Wh"):
            blocks = [np.linalg.qr(rng.standard_normal((H, H)))[0] for _ in range(shape[1] // H)]
            w = np.concatenate(blocks, axis=1)
        elif name.endswith(("Wx", "Wy")):
            w = rng.uniform(-bound, bound, size=shape)
        else:
            w = np.zeros(shape)
            if cfg.cell == "lstm" and name.endswith(".b"):
                w[H : 2 * H] = 1.0  # forget gate (order i, f, o, g)
        params[name] = w.astype(dtype)
    return params


def init_state(cfg: ModelConfig, batch: int) -> State:
    """The zero state for `batch` streams: per layer, (h,) or (h, c), each (N, H)."""
    dtype = np.dtype(cfg.dtype)
    n = CELLS[cfg.cell].n_states
    return tuple(
        tuple(np.zeros((batch, cfg.hidden), dtype=dtype) for _ in range(n))
        for _ in range(cfg.layers)
    )


def state_slice(state: State, s: slice) -> State:
    """The state of the streams s (a slice of the N rows)."""
    return tuple(tuple(a[s] for a in layer) for layer in state)


def state_concat(states: list) -> State:
    """The states of consecutive groups of streams joined into one."""
    if len(states) == 1:
        return states[0]
    return tuple(tuple(np.concatenate(parts) for parts in zip(*layers)) for layers in zip(*states))


class LayerCache(NamedTuple):
    x: np.ndarray | None  # (T, N, D) input of a layer above the first (after dropout); None for 0
    cell: tuple  # the cell's own cache
    mask: np.ndarray | None  # dropout mask applied to this layer's output, or None


class ForwardCache(NamedTuple):
    cfg: ModelConfig
    params: dict
    ids: np.ndarray  # (T, N) input ids, time-major
    layers: list
    out: np.ndarray  # (T*N, H) last layer's output after dropout, the input of Wy


def _dropout_mask(rng, p, shape, dtype):
    return (rng.random(shape, dtype=np.float64) >= p).astype(dtype) / dtype.type(1.0 - p)


def _recurrent(params, k, cell):
    return {name: params[f"l{k}.{name}"] for name in cell.recurrent}


def dropout_masks(cfg: ModelConfig, rng: np.random.Generator | None, T: int, N: int):
    """The masks a training chunk of N streams and T steps uses: per layer a (T, N, H) array, or
    None when there is no dropout (no `rng`, or cfg.dropout == 0). Drawn layer by layer in this
    order, so a chunk split across threads (charrnn.parallel) uses the very same masks."""
    if rng is None or cfg.dropout == 0:
        return None
    dtype = np.dtype(cfg.dtype)
    return [_dropout_mask(rng, cfg.dropout, (T, N, cfg.hidden), dtype) for _ in range(cfg.layers)]


def forward(params, cfg: ModelConfig, ids, state: State, rng: np.random.Generator | None = None,
            masks=None):
    """Run a chunk. ids: (N, T) integer ids; state: from init_state or a previous chunk.

    Returns (logits (T, N, V), final state, cache). Dropout masks are drawn from `rng` when one
    is given and cfg.dropout > 0 (training), or given ready-made as `masks` (see dropout_masks;
    views of a bigger batch's masks will do); without either the model is deterministic.
    """
    cell = CELLS[cfg.cell]
    ids_t = np.ascontiguousarray(np.asarray(ids).T)  # (T, N)
    T, N = ids_t.shape
    if masks is None:
        masks = dropout_masks(cfg, rng, T, N)
    caches, final = [], []
    x = None
    for k in range(cfg.layers):
        Wx, b = params[f"l{k}.Wx"], params[f"l{k}.b"]
        if k == 0:
            xp = (Wx + b)[ids_t]  # (T, N, G): a one-hot row times Wx is a row of Wx
        else:
            xp = (x.reshape(T * N, -1) @ Wx).reshape(T, N, -1)
            xp += b
        hs, s, cc = cell.forward(xp, state[k], _recurrent(params, k, cell))
        final.append(s)
        mask = masks[k] if masks is not None else None
        caches.append(LayerCache(x, cc, mask))
        x = hs * mask if mask is not None else hs  # (T, N, H)
    out = x.reshape(T * N, -1)
    logits = (out @ params["Wy"]).reshape(T, N, -1)
    logits += params["by"]
    return logits, tuple(final), ForwardCache(cfg, params, ids_t, caches, out)


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
    nll = (np.log(s) - zt)[..., 0]  # (T, N)
    if not reduce:
        return nll.T
    count = nll.size
    s *= count
    e /= s  # softmax / count
    np.put_along_axis(e, tgt, np.take_along_axis(e, tgt, axis=-1) - 1 / count, axis=-1)
    return float(nll.sum(dtype=np.float64) / count), e


ONE_HOT_MAX_V = 1024  # up to this vocabulary, layer 0's dWx is a one-hot matmul (see below)


def _scatter_rows(ids: np.ndarray, d: np.ndarray, V: int) -> np.ndarray:
    """(V, G): row v is the sum of the rows d[j] with ids[j] == v; the transpose of the gather
    Wx[ids]. As a one-hot (V, M) matmul it runs at BLAS speed: np.add.at is unbuffered and about
    ten times slower at the training sizes, so it is kept only for very large vocabularies."""
    if V > ONE_HOT_MAX_V:
        out = np.zeros((V, d.shape[1]), dtype=d.dtype)
        np.add.at(out, ids, d)
        return out
    one_hot = np.zeros((V, len(ids)), dtype=d.dtype)
    one_hot[ids, np.arange(len(ids))] = 1
    return one_hot @ d


def backward(dlogits: np.ndarray, dstate: State | None, cache: ForwardCache):
    """Gradients of the loss given dlogits (T, N, V) and dstate, the gradient with respect to
    the final state (None: zero, as in truncated BPTT). Returns (grads, dstate_0), grads having
    the same keys as params."""
    cfg, params, ids_t, layers, out = cache
    cell = CELLS[cfg.cell]
    T, N, V = dlogits.shape
    dl = dlogits.reshape(T * N, V)
    grads = {"Wy": out.T @ dl, "by": dl.sum(axis=0)}
    dx = (dl @ params["Wy"].T).reshape(T, N, -1)  # gradient wrt the last layer's output
    dstate0 = [None] * cfg.layers
    for k in range(cfg.layers - 1, -1, -1):
        x, cc, mask = layers[k]
        if mask is not None:
            dx *= mask
        if dstate is not None:
            ds = dstate[k]
        else:
            ds = tuple(np.zeros((N, dx.shape[-1]), dtype=dx.dtype) for _ in range(cell.n_states))
        dxp, dstate0[k], g = cell.backward(dx, ds, cc)
        for name, value in g.items():
            grads[f"l{k}.{name}"] = value
        G = dxp.shape[-1]
        dxp2 = dxp.reshape(T * N, G)
        if k == 0:
            grads["l0.Wx"] = _scatter_rows(ids_t.reshape(-1), dxp2, params["l0.Wx"].shape[0])
            grads["l0.b"] = grads["l0.Wx"].sum(axis=0)  # V rows to add instead of T*N
        else:
            grads[f"l{k}.b"] = dxp2.sum(axis=0)
            grads[f"l{k}.Wx"] = x.reshape(T * N, -1).T @ dxp2
            dx = (dxp2 @ params[f"l{k}.Wx"].T).reshape(T, N, -1)  # into layer k-1's mask
    return {name: grads[name] for name in params}, tuple(dstate0)


def loss_and_grads(params, cfg: ModelConfig, ids, targets, state: State, rng=None, masks=None,
                   scale: float = 1.0):
    """One training chunk: (mean loss in nats, grads, final state). The final state is what the
    trainer carries into the next chunk; no gradient flows across chunks (truncated BPTT).

    `masks` as in forward. `scale` multiplies the loss and the gradients: a slice of a bigger
    batch weighted by its share of the streams, so that the slices add up (charrnn.parallel)."""
    logits, final, cache = forward(params, cfg, ids, state, rng, masks)
    loss, dlogits = cross_entropy(logits, targets)
    if scale != 1:
        dlogits *= scale
    grads, _ = backward(dlogits, None, cache)
    return loss * scale, grads, final


def stepper(params, cfg: ModelConfig):
    """`step(ids, state)` for this model, with every per-layer lookup done once here rather than
    on every character: what a sampler calls. Making it copies nothing."""
    cell = CELLS[cfg.cell]
    Wx0, b0, rec0 = params["l0.Wx"], params["l0.b"], _recurrent(params, 0, cell)
    upper = [(params[f"l{k}.Wx"], params[f"l{k}.b"], _recurrent(params, k, cell))
             for k in range(1, cfg.layers)]
    Wy, by, cell_step = params["Wy"], params["by"], cell.step

    def step_(ids, state: State):
        xp = Wx0[ids]  # few NumPy calls: sampling one stream is call overhead + matvecs
        xp += b0
        s = cell_step(xp, state[0], rec0)
        new = [s]
        for (Wx, b, rec), st in zip(upper, state[1:]):
            xp = np.matmul(s[0], Wx)
            xp += b
            s = cell_step(xp, st, rec)
            new.append(s)
        logits = np.matmul(s[0], Wy)
        logits += by
        return logits, tuple(new)

    return step_


def step(params, cfg: ModelConfig, ids, state: State):
    """One time step without caches, for sampling. ids: (N,) ints. Returns (logits (N, V), state).
    A loop over many steps should make its step function once with `stepper`."""
    return stepper(params, cfg)(ids, state)
