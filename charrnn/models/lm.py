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
import sys
import zlib
from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError, CorpusError
from ..nn import cells
from ..nn.cells import CELLS, KERNELS
from ..nn.ops import cross_entropy, dropout_mask, scatter_rows
from ..nn.state import State, flat_state, nest_state, state_concat, state_slice

DTYPES = ("float32", "float64")

@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model's parameters. Saved in every checkpoint.

    vocab_size 0 means "not known yet": a TrainConfig's model, which the trainer completes with
    the size of the corpus's vocabulary."""

    vocab_size: int = 0
    # the defaults are what `charrnn train` trains: the measured best for a 5-minute budget on
    # 2 cores (docs/en/explanation/findings.md, "The language model's defaults")
    cell: str = "gru"
    hidden: int = 384
    layers: int = 1
    dropout: float = 0.2
    dtype: str = "float32"
    # the kernels the cell's loops run (charrnn.nn.cells.KERNELS): how the numbers are computed,
    # not what they are, so to_dict leaves NumPy's, the reference, unsaid (and a checkpoint keeps
    # none: meta["train"]["kernels"] records what trained it)
    kernels: str = "numpy"

    def __post_init__(self):
        if not isinstance(self.cell, str) or self.cell not in CELLS:
            raise ConfigError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        if self.kernels not in KERNELS:
            raise ConfigError(f"kernels must be one of {', '.join(KERNELS)}, not "
                              f"{self.kernels!r}")
        for name in ("vocab_size", "hidden", "layers"):
            value = getattr(self, name)
            least = 0 if name == "vocab_size" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ConfigError(f"{name} must be a positive whole number, not {value!r}")
        d = self.dropout
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 <= d < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), not {self.dropout!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["kernels"] == "numpy":
            del d["kernels"]
        return d

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


def init_state(cfg: ModelConfig, rows: int) -> State:
    """The zero state for `rows` streams: per layer, (h,) or (h, c), each (N, H)."""
    dtype = np.dtype(cfg.dtype)
    n = CELLS[cfg.cell].n_states
    return tuple(
        tuple(np.zeros((rows, cfg.hidden), dtype=dtype) for _ in range(n))
        for _ in range(cfg.layers)
    )


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
    rows: bool = False  # whether forward added `rows` to layer 0's input projection


def _recurrent(params, k, cell):
    return {name: params[f"l{k}.{name}"] for name in cell.recurrent}


def dropout_masks(cfg: ModelConfig, rng: np.random.Generator | None, T: int, N: int):
    """The masks a training chunk of N streams and T steps uses: per layer a (T, N, H) array, or
    None when there is no dropout (no `rng`, or cfg.dropout == 0). Drawn layer by layer in this
    order, so a chunk split across threads (charrnn.parallel) uses the very same masks."""
    if rng is None or cfg.dropout == 0:
        return None
    dtype = np.dtype(cfg.dtype)
    return [dropout_mask(rng, cfg.dropout, (T, N, cfg.hidden), dtype) for _ in range(cfg.layers)]


def forward(params, cfg: ModelConfig, ids, state: State, rng: np.random.Generator | None = None,
            masks=None, rows=None):
    """Run a chunk. ids: (N, T) integer ids; state: from init_state or a previous chunk.

    Returns (logits (T, N, V), final state, cache). Dropout masks are drawn from `rng` when one
    is given and cfg.dropout > 0 (training), or given ready-made as `masks` (see dropout_masks;
    views of a bigger batch's masks will do); without either the model is deterministic.
    `rows` (N, G), if given, is added to layer 0's input projection at every step: a per-row
    constant input (charrnn.models.generate's condition); backward then returns its gradient.
    """
    cell = cells.cell(cfg.cell, cfg.kernels)
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
            if rows is not None:
                xp += rows  # (N, G), the same at every step
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
    return logits, tuple(final), ForwardCache(cfg, params, ids_t, caches, out, rows is not None)


def backward(dlogits: np.ndarray, dstate: State | None, cache: ForwardCache):
    """Gradients of the loss given dlogits (T, N, V) and dstate, the gradient with respect to
    the final state (None: zero, as in truncated BPTT). Returns (grads, dstate_0), grads having
    the same keys as params, and "rows" (N, G) if forward was given `rows`."""
    cfg, params, ids_t, layers, out, rows = cache
    cell = cells.cell(cfg.cell, cfg.kernels)
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
            grads["l0.Wx"] = scatter_rows(ids_t.reshape(-1), dxp2, params["l0.Wx"].shape[0])
            grads["l0.b"] = grads["l0.Wx"].sum(axis=0)  # V rows to add instead of T*N
            if rows:
                grads["rows"] = dxp.sum(axis=0)  # (N, G)
        else:
            grads[f"l{k}.b"] = dxp2.sum(axis=0)
            grads[f"l{k}.Wx"] = x.reshape(T * N, -1).T @ dxp2
            dx = (dxp2 @ params[f"l{k}.Wx"].T).reshape(T, N, -1)  # into layer k-1's mask
    keep = (*param_shapes(cfg), "rows") if rows else param_shapes(cfg)  # lm's own names
    return {name: grads[name] for name in keep}, tuple(dstate0)


def gradients(params, cfg: ModelConfig, batch, state: State, masks=None, dfinal=None,
              scale: float = 1.0):
    """Loss and every gradient of one chunk: (mean loss in nats, grads, final state, dstate_0).
    batch = (ids, targets), each (N, T); `dfinal` is the gradient arriving at the final state
    (None: zero, as in truncated BPTT); `scale` multiplies the loss and the gradients."""
    ids, targets = batch
    logits, final, cache = forward(params, cfg, ids, state, masks=masks)
    loss, dlogits = cross_entropy(logits, targets)
    if scale != 1:
        dlogits *= scale
    grads, dstate0 = backward(dlogits, dfinal, cache)
    return loss * scale, grads, final, dstate0


def loss(params, cfg: ModelConfig, batch, state: State, masks=None):
    """The forward half of `gradients`: (mean loss in nats, final state)."""
    logits, final, _ = forward(params, cfg, batch[0], state, masks=masks)
    return cross_entropy(logits, batch[1])[0], final


def stepper(params, cfg: ModelConfig):
    """`step(ids, state)` for this model, with every per-layer lookup done once here rather than
    on every character: what a sampler calls. With NumPy's kernels (and the RNN's) making it
    copies nothing. With the fused kernels, the LSTM's and GRU's whole step is
    charrnn.nn.fused_step.stack_stepper: one C call per step, its products off copies of the
    weights packed when it is made (so make a new step after the parameters change), agreeing
    with the NumPy step below to float32 rounding (its products sum in another order)."""
    cell = cells.cell(cfg.cell, cfg.kernels)
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

    if cfg.kernels == "fused":
        from ..nn import fused_step

        fast = fused_step.stack_stepper(cfg.cell, [(Wx0, b0, rec0), *upper], (Wy, by), step_)
        if fast is not None:
            return fast
    return step_


def step(params, cfg: ModelConfig, ids, state: State):
    """One time step without caches, for sampling. ids: (N,) ints. Returns (logits (N, V), state).
    A loop over many steps should make its step function once with `stepper`."""
    return stepper(params, cfg)(ids, state)


# --------------------------------------------------------------------------------------------
# Scoring text: per-character losses over a long sequence, the state carried throughout. Used by
# validation and by `charrnn eval`. Character j+1 is predicted from characters 0..j. With S > 1
# `streams` the prediction positions are cut into S contiguous pieces of equal length m, run side
# by side as a batch (much faster than one stream), each piece starting from the zero state; the
# few positions left over at the end (fewer than S) continue the last piece's state, so every
# character after the first is scored exactly once. With S = 1 the whole text is one stream with
# the state carried from its first character to its last.

LN2 = math.log(2.0)


class Score(NamedTuple):
    nats: float  # mean loss per scored character, in nats
    chars: int  # characters scored

    @property
    def bpc(self) -> float:
        """Bits per character."""
        return self.nats / LN2

    @property
    def perplexity(self) -> float:
        """exp(nats); inf beyond float range (a model that diverged without NaNs gets there)."""
        return math.exp(self.nats) if self.nats < 709.0 else math.inf


def run_streams(params, cfg, inputs, targets, state, seq, out):
    """Per-character losses of (N, L) inputs/targets in chunks of `seq`, into out (N, L)."""
    L = inputs.shape[1]
    for lo in range(0, L, seq):
        hi = min(lo + seq, L)
        logits, state, _ = forward(params, cfg, inputs[:, lo:hi], state)
        out[:, lo:hi] = cross_entropy(logits, targets[:, lo:hi], reduce=False)
    return state


def score_rows(params, cfg: ModelConfig, inputs, targets, seq: int) -> list:
    """One slice's evaluation work (in this process or a worker): the per-character losses
    (n, L) of n streams scored from the zero state, then the arrays of their final state."""
    out = np.empty(inputs.shape)
    state = run_streams(params, cfg, inputs, targets, init_state(cfg, len(inputs)), seq, out)
    return [out, *flat_state(state)]


def char_losses(params, cfg: ModelConfig, ids: np.ndarray, streams: int = 1,
                seq: int = 256, workers=None) -> np.ndarray:
    """Loss in nats of each of ids[1:], in text order: shape (len(ids) - 1,), float64.

    `workers` (a charrnn.parallel.Workers) runs the streams in slices on several cores; the
    streams never meet, so each slice runs all its chunks without waiting for the others."""
    ids = np.asarray(ids)
    P = len(ids) - 1  # prediction positions
    out = np.empty(max(P, 0), dtype=np.float64)
    if P <= 0:
        return out
    S = max(1, min(streams, P))
    m = P // S
    inputs = ids[: S * m].reshape(S, m)
    targets = ids[1 : S * m + 1].reshape(S, m)
    if workers is None:
        parts = [(slice(0, S), score_rows(params, cfg, inputs, targets, seq))]
    else:
        parts = workers.map_rows(sys.modules[__name__], params, cfg, [inputs, targets],
                                 {"seq": seq})
    piece = np.empty((S, m))
    like = init_state(cfg, 0)
    for s, (losses, *arrays) in parts:
        piece[s] = losses
    state = state_concat([nest_state(arrays, like) for _, (_, *arrays) in parts])
    out[: S * m] = piece.reshape(-1)
    rest = P - S * m
    if rest:  # continue the last stream, which ends exactly where the rest begins
        last = state_slice(state, slice(-1, None))
        tail = np.empty((1, rest))
        run_streams(params, cfg, ids[S * m : P][None], ids[S * m + 1 :][None], last, seq, tail)
        out[S * m :] = tail[0]
    return out


def score(params, cfg: ModelConfig, ids: np.ndarray, streams: int = 1, seq: int = 256,
          workers=None) -> Score:
    """Mean loss over every character of ids after the first."""
    losses = char_losses(params, cfg, ids, streams, seq, workers)
    return Score(float(losses.mean()) if losses.size else float("nan"), int(losses.size))


# --------------------------------------------------------------------------------------------
# Looking inside: what every layer computes per character (charrnn.inside.record)

INSIDE_CHUNK = 512  # steps per forward call: the caches of one chunk are all that is held


def inside(params, cfg: ModelConfig, vocab, text: str, keep=None, meta=None, state=None):
    """Read `text` as one stream, the state carried from its first character to its last (as
    `charrnn eval` does), and record what each layer computed at each character, read from the
    cells' own forward caches. Characters outside the vocabulary are skipped. `state`: the
    initial state (one row; default zeros).

    Returns (read, spans, arrays, skipped): the characters read, [(0, len(read))] (one stream),
    {"l{k}.{s}": (len(read), H) array} for every layer k and series s of the cell
    (charrnn.nn.cells: LSTM i f o g c h, GRU r z n h, RNN h), only the names in `keep` if given,
    and how many characters were skipped."""
    cell = CELLS[cfg.cell]
    read = "".join(c for c in text if c in vocab) if vocab.unknown(text) else text
    ids = vocab.encode(read)
    names = [f"l{k}.{s}" for k in range(cfg.layers) for s in cell.series_names]
    arrays = {n: np.empty((len(ids), cfg.hidden), dtype=cfg.dtype)
              for n in names if keep is None or n in keep}
    state = init_state(cfg, 1) if state is None else state
    for lo in range(0, len(ids), INSIDE_CHUNK):
        hi = min(lo + INSIDE_CHUNK, len(ids))
        _, state, cache = forward(params, cfg, ids[None, lo:hi], state)
        for k, layer in enumerate(cache.layers):
            for s, a in cell.series(layer.cell).items():  # (T, 1, H) each
                if f"l{k}.{s}" in arrays:
                    arrays[f"l{k}.{s}"][lo:hi] = a[:, 0]
    return read, [(0, len(read))], arrays, len(text) - len(read)


# --------------------------------------------------------------------------------------------
# The family contract (see charrnn.models): what the trainer, the workers, checkpoints,
# gradcheck and `info` call.

NAME = "lm"
Config = ModelConfig
METRIC = "val_bpc"  # the validation figure the trainer keeps the best (lowest) of
OUT_OF_VOCABULARY = "skipped"  # by scoring and inside; sampling refuses them in a prime
IGNORES = ("val",)  # it validates on the last val_frac of its text


def state_names(cfg: ModelConfig) -> list[str]:
    """A name per array of flat_state(init_state(cfg, N)): l0.h, (l0.c for the LSTM), l1.h..."""
    n = CELLS[cfg.cell].n_states
    return [f"l{k}.{'hc'[j]}" for k in range(cfg.layers) for j in range(n)]


def width(cfg: ModelConfig) -> int:
    """Hidden values per row (stream) and step: what decides whether splitting rows pays."""
    return cfg.hidden


def draw_masks(cfg: ModelConfig, rng, batch):
    """The dropout masks of a training batch, drawn for all its rows at once (see
    dropout_masks), or None."""
    N, T = np.shape(batch[0])
    return dropout_masks(cfg, rng, T, N)


def check_configs(cell: str, layers: int, hidden: int, vocab: int, classes: int) -> list:
    """[(label, Config)]: the small float64 models gradcheck and the contract test check for
    `cell` and `layers`, dropout on from 2 layers (`classes` is for the labelled families)."""
    return [(cell, ModelConfig(vocab, cell, hidden, layers, 0.3 if layers > 1 else 0.0,
                               "float64"))]


def example_batch(cfg: ModelConfig, rng: np.random.Generator, rows: int, steps: int):
    """A random batch (ids, targets) for gradient checks."""
    ids = rng.integers(0, cfg.vocab_size, size=(rows, steps))
    return ids, rng.integers(0, cfg.vocab_size, size=(rows, steps))


def batch_chars(batch) -> int:
    """Characters a training batch predicts (for chars/s)."""
    return int(np.size(batch[1]))


def train_figures(mean_loss: float) -> dict:
    """A training step's loss as the history records it."""
    return {"train_bpc": mean_loss / LN2}


def describe(cfg: ModelConfig) -> str:
    return f"{cfg.cell} {cfg.hidden}x{cfg.layers}, dropout {cfg.dropout:g}, {cfg.dtype}"


def describe_metric(value: float) -> str:
    return f"{value:.4f} bits per character"


class Data(NamedTuple):
    """A corpus ready to train on (see charrnn.data.text)."""

    vocab: object  # charrnn.data.vocab.Vocab
    batches: object  # charrnn.data.text.Batches: .chunks per epoch, .chunk(c) -> (ids, targets)
    val: np.ndarray  # (n_val,) validation ids
    fingerprint: dict  # characters and crc32 of train and val: --resume checks the text is the same
    info: dict  # train_chars, val_chars, vocab: for the trainer's first line


def min_val_chars(seq: int) -> int:
    """The shortest validation split whose score means anything: two chunks, and 50 characters."""
    return max(2 * seq, 50)


def load_data(tcfg, saved=None) -> Data:
    """The corpus tcfg.corpus read, split (tcfg.val_frac at its end) and cut into tcfg.batch
    streams of tcfg.seq chunks. Resuming (`saved`, the run's checkpoint) the text must fit its
    vocabulary."""
    from ..data import text as D

    if getattr(tcfg, "val", None):
        raise ConfigError("a validation file (--val) is for the classify, tag and seq2seq tasks; "
                          "the language model validates on the last --val-frac of its text")
    corpus = D.load(tcfg.corpus, tcfg.val_frac, tcfg.encoding, saved.vocab if saved else None)
    n = len(corpus.train) + len(corpus.val)
    batches = D.batches(corpus.train, tcfg.batch, tcfg.seq)  # first: a too short training split
    need = min_val_chars(tcfg.seq)
    if len(corpus.val) < need:
        raise CorpusError(f"the validation split is {len(corpus.val):,} characters "
                          f"(--val-frac {tcfg.val_frac:g} of {n:,}); at least {need:,} are needed "
                          f"to mean anything: raise --val-frac or use a longer text")
    crc = zlib.crc32(corpus.val, zlib.crc32(corpus.train))
    info = {"train_chars": len(corpus.train), "val_chars": len(corpus.val),
            "vocab": len(corpus.vocab),
            "data": f"{len(corpus.train):,} characters (validation {len(corpus.val):,}, "
                    f"vocabulary {len(corpus.vocab)})"}
    return Data(corpus.vocab, batches, corpus.val,
                {"corpus_chars": n, "corpus_crc32": crc}, info)


def complete(cfg: ModelConfig, data: Data) -> ModelConfig:
    """The model's configuration with the sizes only the data knows: the vocabulary's."""
    return replace(cfg, vocab_size=len(data.vocab))


def evaluate(params, cfg: ModelConfig, data: Data, tcfg, workers=None) -> dict:
    """The validation figures: bits (and nats) per character over the whole validation text,
    scored as tcfg.batch streams with the state carried in chunks of tcfg.seq."""
    sc = score(params, cfg, data.val, streams=tcfg.batch, seq=tcfg.seq, workers=workers)
    return {"val_bpc": sc.bpc, "val_nats": sc.nats}


def memory_needed(cfg: ModelConfig, batch: int, seq: int, processes: int = 1) -> int:
    """Bytes a training step needs at its peak, about: the output layer's (T, N, V) logits, their
    gradient and a temporary (3 arrays of N*T*V; measured: 2.2 to 2.7), the layers' caches (16
    arrays of N*T*H per layer; measured: up to 15), the parameters, their gradients and two
    optimizer moments (4 copies), and the backward pass's contiguous copy of one layer's
    transposed recurrent weights (H x G). With tens of thousands of distinct characters the first
    term dominates. The tests check this against the measured peak. Split across `processes`
    (charrnn.parallel), the streams' arrays are shared out; the shared memory adds a copy of the
    parameters, and each worker its gradients (computed, then copied to shared memory) and its
    own copy of the transposed weights."""
    N, T, item = batch, seq, np.dtype(cfg.dtype).itemsize
    H, G = cfg.hidden, CELLS[cfg.cell].gates * cfg.hidden
    n_params = sum(math.prod(s) for s in param_shapes(cfg).values())
    split = (processes > 1) * n_params + (processes - 1) * (2 * n_params + H * G)
    return item * (3 * N * T * cfg.vocab_size + 16 * N * T * H * cfg.layers
                   + 4 * n_params + H * G + split)
