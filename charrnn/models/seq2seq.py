"""Sequence to sequence: an encoder-decoder with attention (issue 14).

Shapes: N pairs, S source length (padded), T target steps (padded), V source characters (with
the unknown symbol), K target characters (with START, END, UNKNOWN: charrnn.data.pairs),
H hidden units (per encoder direction, and the decoder's), R encoder directions, E = R * H.
The batch layout is charrnn.data.pairs's: (src, src_len, tgt_in, tgt_out, weights).

    y, finals = encoder(src, src_len)                     charrnn.nn.encoder; y (S, N, E)
    d0_k = tanh([f_k ; g_k] Wb_k + bb_k)                  the bridge, per layer k (N, H);
                                                           an LSTM's c starts at 0
    s = decoder(onehot(tgt_in), d0)                       stacked unidirectional cells (T, N, H)
    c, a = attention(s, y, src_len)                       charrnn.nn.attention (T, N, E), (T, N, S)
    o_t = tanh([s_t ; c_t] Wc + bc)                       (T, N, H); o_t = s_t with attention none
    logits_t = dropout(o_t) Wo + bo                       (T, N, K)
    loss = (1 / N) sum_n sum_t w_nt (-log softmax(logits_nt)[tgt_out_nt])

The weights are N / (target characters of the batch) at real steps, so the loss is the mean
over the predicted characters (END included). A step t is padding when it comes after row n's
last step of nonzero weight; the target ids there are replaced by 0 (their values do not
matter), and, the decoder being causal, padding changes no real step.

Parameters: the encoder's `enc.l{k}.{fw,bw}.*`; the decoder's `dec.l{k}.Wx` (K or H, G),
`dec.l{k}.Wh`, `dec.l{k}.b` (and `.bhn` for the GRU); `bridge.l{k}.W` (E, H), `bridge.l{k}.b`;
the attention's `att.*` (additive size A = H); `Wc` (H + E, H), `bc`; `Wo` (H, K), `bo`.

Dropout (inverted, masks drawn per batch): between encoder layers, between decoder layers, and
on o_t; masks are time-major, (S or T, N, .), so slices of rows are slices of axis 1.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from ..data import pairs as P
from ..errors import ConfigError
from ..nn import attention as A
from ..nn import cells
from ..nn import encoder as E
from ..nn.cells import CELLS
from ..nn.ops import dropout_mask, scatter_rows
from . import encoded as B
from .encoded import (
    IGNORES,  # noqa: F401 (the family contract)
    inside,  # noqa: F401 (the encoder's: the decoder needs a target to read)
)

NAME = "seq2seq"
METRIC = "val_loss"
ATTENTION = ("additive", "dot", "none")
ANSWERS = "text"  # `charrnn predict` answers a source with its decoded output


@dataclass(frozen=True)
class Config(B.DictConfig):
    """Everything that rebuilds the model. vocab_size and target_size 0: from the data."""

    vocab_size: int = 0
    target_size: int = 0
    cell: str = "gru"
    hidden: int = 128
    layers: int = 1
    bidirectional: bool = True
    attention: str = "additive"
    dropout: float = 0.0
    dtype: str = "float32"
    kernels: str = "numpy"  # the cells' kernels (see lm.ModelConfig); not saved when "numpy"

    def __post_init__(self):
        B.check_config(self, ("vocab_size", "target_size"))
        if self.attention not in ATTENTION:
            raise ConfigError(f"attention must be one of {', '.join(ATTENTION)}, not "
                              f"{self.attention!r}")


# `charrnn train --task seq2seq`'s training settings where they differ from TrainConfig's
TRAIN_DEFAULTS = {"batch": 32, "lr": 5e-3, "warmup": 50, "eval_every": 200}


def _dec(k: int) -> str:
    return f"dec.l{k}."


def param_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    H, K, Ed = cfg.hidden, cfg.target_size, B.directions(cfg) * cfg.hidden
    shapes = dict(B.encoder_shapes(cfg))
    dec = E.param_shapes(cfg.cell, max(K, 1), H, cfg.layers, False, prefix="dec.")
    shapes.update({n.replace(".fw.", "."): (K if n.endswith("l0.fw.Wx") else s[0],) + s[1:]
                   if len(s) == 2 else s for n, s in dec.items()})
    for k in range(cfg.layers):
        shapes[f"bridge.l{k}.W"], shapes[f"bridge.l{k}.b"] = (Ed, H), (H,)
    if cfg.attention != "none":
        shapes.update(A.param_shapes(cfg.attention, H, Ed, H))
        shapes["Wc"], shapes["bc"] = (H + Ed, H), (H,)
    shapes["Wo"], shapes["bo"] = (H, K), (K,)
    return shapes


def init_params(cfg: Config, rng: np.random.Generator) -> dict:
    """The encoder's and the decoder's cells as nn.encoder initialises them; the other matrices
    (and the additive score's v) uniform in +-1/sqrt(fan in), biases zero."""
    params = E.init_params(cfg.cell, cfg.vocab_size, cfg.hidden, cfg.layers, cfg.bidirectional,
                           rng, dtype=cfg.dtype)
    dec = E.init_params(cfg.cell, cfg.target_size, cfg.hidden, cfg.layers, False, rng,
                        prefix="dec.", dtype=cfg.dtype)
    params.update({n.replace(".fw.", "."): v for n, v in dec.items()})
    for name, shape in param_shapes(cfg).items():
        if name in params:
            continue
        if len(shape) == 2 or name == "att.v":
            bound = 1.0 / np.sqrt(shape[0])
            params[name] = rng.uniform(-bound, bound, size=shape).astype(cfg.dtype)
        else:
            params[name] = np.zeros(shape, dtype=cfg.dtype)
    return {name: params[name] for name in param_shapes(cfg)}


def width(cfg: Config) -> int:
    return (B.directions(cfg) + 1) * cfg.hidden


def draw_masks(cfg: Config, rng, batch):
    """Encoder masks (layers - 1, (S, N, E) each), decoder masks (layers - 1, (T, N, H) each),
    then the output's (T, N, H); None without rng or dropout."""
    if rng is None or cfg.dropout == 0:
        return None
    N, S = np.shape(batch[0])
    T = np.shape(batch[2])[1]
    Ed, dt = B.directions(cfg) * cfg.hidden, np.dtype(cfg.dtype)
    masks = E.dropout_masks(rng, cfg.dropout, cfg.layers, S, N, Ed, cfg.dtype) or []
    masks += [dropout_mask(rng, cfg.dropout, (T, N, cfg.hidden), dt)
              for _ in range(cfg.layers)]
    return masks


def _split_masks(cfg: Config, masks):
    if masks is None:
        return None, [None] * cfg.layers, None
    n = cfg.layers - 1
    return masks[:n] or None, [None, *masks[n : 2 * n]], masks[-1]


def _recurrent(params, cfg, k):
    return {r: params[_dec(k) + r] for r in CELLS[cfg.cell].recurrent}


# --------------------------------------------------------------------------------------------
# The bridge and the decoder stack


def _bridge(params, cfg: Config, finals):
    """Per layer the decoder's initial state, and the bridge's inputs and outputs."""
    states, cache = [], []
    for k, fin in enumerate(finals):
        f = np.concatenate(fin, axis=-1)  # (N, E) [f ; g]
        h0 = np.tanh(f @ params[f"bridge.l{k}.W"] + params[f"bridge.l{k}.b"])  # (N, H)
        extra = (np.zeros_like(h0),) * (CELLS[cfg.cell].n_states - 1)  # an LSTM's c_0 = 0
        states.append((h0, *extra))
        cache.append((f, h0))
    return states, cache


def _sanitize(tgt_in, tgt_out, weights):
    """Target ids with 0 after each row's last weighted step (padding), as (T, N)."""
    w = np.asarray(weights)
    nz = w != 0
    T = w.shape[1]
    tlen = np.where(nz.any(axis=1), T - np.argmax(nz[:, ::-1], axis=1), 0)
    real = np.arange(T)[None, :] < tlen[:, None]
    return np.where(real, tgt_in, 0).T, np.where(real, tgt_out, 0).T


class Cache(NamedTuple):
    enc: object  # the encoder's cache
    bridge: list  # per layer (f (N, E), h0 (N, H))
    ids: np.ndarray  # (T, N) decoder input ids
    xs: list  # per layer its input (T, N, H) after dropout; None for layer 0
    cells: list  # per layer the cell's cache
    masks: list  # per layer the mask of its input, or None
    s: np.ndarray  # (T, N, H) the top decoder layer's outputs
    att: object  # the attention's cache, or None
    z: np.ndarray | None  # (T*N, H + E) [s ; c]
    o: np.ndarray  # (T*N, H) o_t, before dropout
    out_mask: np.ndarray | None  # (T, N, H)
    y: np.ndarray  # (T*N, H) the output layer's input, after dropout
    weights: np.ndarray  # (T, N, S) the attention weights, or an empty array


def forward(params, cfg: Config, src, src_len, tgt_in, masks=None):
    """Teacher-forced logits (T, N, K) for decoder inputs tgt_in (T, N), and the cache."""
    c = cells.cell(cfg.cell, cfg.kernels)
    enc_masks, dec_masks, out_mask = _split_masks(cfg, masks)
    src_len = np.asarray(src_len)
    outs, finals, enc = E.forward(params, cfg.cell, cfg.layers, cfg.bidirectional, src,
                                  src_len, enc_masks, kernels=cfg.kernels)
    state0, bridge = _bridge(params, cfg, finals)
    T, N = tgt_in.shape
    xs, ccs, hs = [], [], None
    for k in range(cfg.layers):
        name = _dec(k)
        Wx, b = params[name + "Wx"], params[name + "b"]
        if k == 0:
            x, xp = None, (Wx + b)[tgt_in]  # (T, N, G): a one-hot row times Wx
        else:
            x = hs * dec_masks[k] if dec_masks[k] is not None else hs
            xp = (x.reshape(T * N, -1) @ Wx).reshape(T, N, -1)
            xp += b
        hs, _, cc = c.forward(xp, state0[k], _recurrent(params, cfg, k))  # (T, N, H)
        xs.append(x)
        ccs.append(cc)
    s = hs
    H = cfg.hidden
    if cfg.attention == "none":
        att, z, o, weights = None, None, s.reshape(T * N, H), np.zeros((T, N, 0))
    else:
        ctx, weights, att = A.forward(params, cfg.attention, s, outs, src_len)  # (T, N, E)
        z = np.concatenate([s, ctx], axis=-1).reshape(T * N, -1)  # [s_t ; c_t]
        o = np.tanh(z @ params["Wc"] + params["bc"])  # (T*N, H)
    y = o * out_mask.reshape(T * N, H) if out_mask is not None else o
    logits = (y @ params["Wo"]).reshape(T, N, -1)
    logits += params["bo"]
    return logits, Cache(enc, bridge, tgt_in, xs, ccs, dec_masks, s, att, z, o, out_mask, y,
                         weights)


def backward(dlogits, params, cfg: Config, cache: Cache) -> dict:
    c = cells.cell(cfg.cell, cfg.kernels)
    T, N, K = dlogits.shape
    H = cfg.hidden
    dl = dlogits.reshape(T * N, K)
    grads = {"Wo": cache.y.T @ dl, "bo": dl.sum(axis=0)}
    do = dl @ params["Wo"].T  # (T*N, H)
    if cache.out_mask is not None:
        do *= cache.out_mask.reshape(T * N, H)
    douts = None
    if cfg.attention == "none":
        ds = do.reshape(T, N, H)
    else:
        dpre = do * (1 - cache.o * cache.o)  # through tanh
        grads["Wc"], grads["bc"] = cache.z.T @ dpre, dpre.sum(axis=0)
        dz = (dpre @ params["Wc"].T).reshape(T, N, -1)  # (T, N, H + E)
        ds_att, douts, g = A.backward(dz[..., H:], cache.att)
        grads.update(g)
        ds = dz[..., :H] + ds_att
    dfinals = []
    dhs = ds
    for k in range(cfg.layers - 1, -1, -1):
        name = _dec(k)
        dstate = tuple(np.zeros((N, H), ds.dtype) for _ in range(c.n_states))
        dxp, dstate0, g = c.backward(dhs, dstate, cache.cells[k])
        for r, v in g.items():
            grads[name + r] = v
        dxp2 = dxp.reshape(T * N, -1)
        Wx = params[name + "Wx"]
        if k == 0:
            grads[name + "Wx"] = scatter_rows(cache.ids.reshape(-1), dxp2, Wx.shape[0])
            grads[name + "b"] = grads[name + "Wx"].sum(axis=0)
        else:
            grads[name + "Wx"] = cache.xs[k].reshape(T * N, -1).T @ dxp2
            grads[name + "b"] = dxp2.sum(axis=0)
            dhs = (dxp2 @ Wx.T).reshape(T, N, -1)
            if cache.masks[k] is not None:
                dhs *= cache.masks[k]
        f, h0 = cache.bridge[k]  # d0 = tanh(f Wb + bb)
        dpre = dstate0[0] * (1 - h0 * h0)
        grads[f"bridge.l{k}.W"], grads[f"bridge.l{k}.b"] = f.T @ dpre, dpre.sum(axis=0)
        df = dpre @ params[f"bridge.l{k}.W"].T  # (N, E)
        dfinals.insert(0, (df[:, :H], df[:, H:]) if cfg.bidirectional else (df,))
    if douts is None:
        S = cache.enc.rev.shape[0]
        douts = np.zeros((S, N, B.directions(cfg) * H), dtype=ds.dtype)
    grads.update(E.backward(douts, dfinals, cache.enc))
    return grads


def _nll(params, cfg, batch, masks):
    src, src_len, tgt_in, tgt_out, weights = batch
    tin, tout = _sanitize(tgt_in, tgt_out, weights)
    logits, cache = forward(params, cfg, src, src_len, tin, masks)
    p, nll = B.softmax_nll(logits, tout)  # (T, N, K), (T, N)
    return p, nll, tout, cache


def gradients(params, cfg: Config, batch, state=(), masks=None, dfinal=None, scale=1.0):
    """(loss, grads, (), ()): the loss is the mean over the rows of sum_t weight * nll, times
    `scale`."""
    p, nll, tout, cache = _nll(params, cfg, batch, masks)
    loss, dlogits = B.weighted_nll(p, nll, tout, batch[4], scale)
    grads = backward(dlogits, params, cfg, cache)
    return loss, {k: grads[k] for k in params}, (), ()


def loss(params, cfg: Config, batch, state=(), masks=None):
    _, nll, _, _ = _nll(params, cfg, batch, masks)
    return B.weighted_loss(nll, batch[4]), ()


ATTENTION_BY_CELL = {"rnn": "none", "gru": "additive", "lstm": "dot"}  # every kind checked


def check_configs(cell: str, layers: int, hidden: int, vocab: int, classes: int) -> list:
    """[(label, Config)] for gradcheck: attention as ATTENTION_BY_CELL says, `classes` target
    characters besides the three markers."""
    return [(f"{NAME} {cell}", B.small_config(Config, cell, layers, hidden, vocab,
                                              target_size=classes + 3,
                                              attention=ATTENTION_BY_CELL[cell]))]


def example_batch(cfg: Config, rng, rows: int, steps: int):
    """A random batch: source lengths all different where possible (the longest `steps`),
    target lengths too (the longest max(2, steps - 2)), garbage ids at every padding."""
    src, src_len, _, _ = B.example_batch(rng, rows, steps, cfg.vocab_size, 1, per_step=False)
    T = max(2, steps - 2)
    tlen = np.maximum(1, T - rng.permutation(rows) % T)
    tlen[0] = T
    real = np.arange(T)[None, :] < tlen[:, None]
    K = cfg.target_size
    tgt_in, tgt_out = (np.where(real, rng.integers(0, K, (rows, T)),
                                rng.integers(-10**6, 10**6, (rows, T))) for _ in range(2))
    weights = rng.uniform(0.5, 1.5, size=(rows, T)) * real
    weights *= rows / weights.sum()
    return src, src_len, tgt_in, tgt_out, weights


# --------------------------------------------------------------------------------------------
# Decoding, all of it: the source encoded once (its attention keys precomputed), then one
# character at a time with the decoder state carried: greedy, sampled, beam search


class Memory(NamedTuple):
    outs: np.ndarray  # (S, N, E) encoder outputs
    keys: np.ndarray | None  # (S, N, X) the attention's source-side projection
    lengths: np.ndarray  # (N,)


def start(params, cfg: Config, src, src_len):
    """(Memory, the decoder's initial state) for a padded batch of sources."""
    src_len = np.asarray(src_len)
    outs, finals, _ = E.forward(params, cfg.cell, cfg.layers, cfg.bidirectional, src, src_len,
                                kernels=cfg.kernels)
    keys = None if cfg.attention == "none" else A.keys(params, cfg.attention, outs)
    state, _ = _bridge(params, cfg, finals)
    return Memory(outs, keys, src_len), tuple(state)


def select(memory: Memory, state, rows):
    """The memory and state of `rows` (an index array), for beam search."""
    m = Memory(memory.outs[:, rows], None if memory.keys is None else memory.keys[:, rows],
               memory.lengths[rows])
    return m, tuple(tuple(a[rows] for a in layer) for layer in state)


def step(params, cfg: Config, memory: Memory, state, prev):
    """One decoder step: (logits (N, K), attention weights (N, S), next state) after the
    previous characters `prev` (N,) (START_ID first)."""
    c = cells.cell(cfg.cell, cfg.kernels)
    new = []
    x = None
    for k in range(cfg.layers):
        name = _dec(k)
        if k == 0:
            xp = params[name + "Wx"][prev] + params[name + "b"]
        else:
            xp = x @ params[name + "Wx"] + params[name + "b"]
        st = c.step(xp, state[k], _recurrent(params, cfg, k))
        new.append(tuple(st))
        x = st[0]
    if cfg.attention == "none":
        o, w = x, np.zeros((len(x), 0))
    else:
        ctx, w, _ = A.forward(params, cfg.attention, x[None], memory.outs, memory.lengths,
                              memory.keys)
        o = np.tanh(np.concatenate([x, ctx[0]], axis=-1) @ params["Wc"] + params["bc"])
        w = w[0]
    return o @ params["Wo"] + params["bo"], w, tuple(new)


def greedy(params, cfg: Config, src, src_len, max_length: int, temperature=None, rng=None):
    """Decoding of a padded batch, all rows together: (ids (N, M) ending in END_ID where it was
    reached, lengths (N,) counting END, attention (N, M, S)), M <= max_length. Each next
    character is the most likely one, or with a `temperature` drawn from softmax(logits /
    temperature) by `rng`."""
    memory, state = start(params, cfg, src, src_len)
    N = len(src_len)
    prev = np.full(N, P.START_ID)
    done = np.zeros(N, dtype=bool)
    lengths = np.full(N, max_length)
    out, att = [], []
    for t in range(max_length):
        logits, w, state = step(params, cfg, memory, state, prev)
        if temperature is None:
            prev = logits.argmax(axis=-1)
        else:
            z = logits / temperature
            p = np.exp(z - z.max(axis=-1, keepdims=True))
            p /= p.sum(axis=-1, keepdims=True)
            u = rng.random(N)[:, None]
            prev = np.minimum((np.cumsum(p, axis=-1) < u).sum(axis=-1), p.shape[1] - 1)
        out.append(prev)
        att.append(w)
        ended = (prev == P.END_ID) & ~done
        lengths[ended] = t + 1
        done |= ended
        if done.all():
            break
    return np.stack(out, axis=1), lengths, np.stack(att, axis=1)


def decode(params, cfg: Config, sources: list, max_length: int, temperature=None,
           rng=None) -> list:
    """[(ids, attention (M, L))] per source id array, decoded together by `greedy` (sampled
    with a `temperature`): the output ids with END dropped, and where each output step looked,
    M the steps (END's included when it was reached), L the source's own length."""
    src, src_len = P.L.pad(sources)
    ids, lengths, att = greedy(params, cfg, src, src_len, max_length, temperature, rng)
    out = []
    for n, (m, ln) in enumerate(zip(lengths, src_len)):
        row = ids[n, :m].tolist()
        out.append((row[:-1] if row and row[-1] == P.END_ID else row, att[n, :m, :ln]))
    return out


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def beam_search(params, cfg: Config, source, beam: int, max_length: int):
    """(ids, attention (M, L), normalised log-probability) of the best hypothesis for one source
    (an id array). The `beam` best unfinished hypotheses are kept by total log-probability; a
    hypothesis ends at END (or at max_length), and the finished ones are compared by
    length-normalised score, log p / (output steps, END included). Beam 1 is greedy decoding."""
    src, src_len = P.L.pad([source])
    memory, state = start(params, cfg, src, src_len)  # row b: live hypothesis b
    toks, atts = [[]], [[]]  # live hypotheses: tokens, attention rows, total log p
    scores = np.zeros(1)
    prev = np.array([P.START_ID])
    finished = []
    for t in range(max_length):
        logits, w, state = step(params, cfg, memory, state, prev)
        total = scores[:, None] + _log_softmax(logits)  # (B, K)
        keep = []
        for f in np.argsort(-total, axis=None, kind="stable")[:beam]:
            b, k = divmod(int(f), total.shape[1])
            hyp = (toks[b] + [k], atts[b] + [w[b]], float(total[b, k]))
            if k == P.END_ID or t == max_length - 1:
                finished.append((hyp[2] / (t + 1), hyp))
            else:
                keep.append((b, hyp))
        if not keep or len(finished) >= beam:
            break
        # every row holds the same source, so the memory's rows are selected like the state's
        memory, state = select(memory, state, np.array([b for b, _ in keep]))
        toks, atts = [h[0] for _, h in keep], [h[1] for _, h in keep]
        scores = np.array([h[2] for _, h in keep])
        prev = np.array([h[0][-1] for _, h in keep])
    score, (ids, att, _) = max(finished, key=lambda x: x[0])
    if ids and ids[-1] == P.END_ID:
        ids = ids[:-1]
    return ids, np.array(att)[:, : int(src_len[0])], score


# --------------------------------------------------------------------------------------------
# Data and evaluation


def score_rows(params, cfg: Config, *arrays, op: str = "nll", max_length: int = 1) -> list:
    """One slice's evaluation work: op "nll" on (src, src_len, tgt_in, tgt_out, weights) gives
    each row's summed nll (n,); op "greedy" on (src, src_len) gives greedy's ids and lengths."""
    if op == "greedy":
        ids, lengths, _ = greedy(params, cfg, arrays[0], arrays[1], max_length)
        return [ids, lengths]
    _, nll, _, _ = _nll(params, cfg, arrays, None)
    real = (np.asarray(arrays[4]) != 0).T
    return [np.where(real, nll, 0.0).sum(axis=0)]


def batch_chars(batch) -> int:
    return int(np.count_nonzero(batch[4]))


def describe_metric(value: float) -> str:
    return f"{value:.4f} nats per target character (loss)"


def describe(cfg: Config) -> str:
    way = "bidirectional" if cfg.bidirectional else "unidirectional"
    return (f"{way} {cfg.cell} {cfg.hidden}x{cfg.layers} encoder, {cfg.cell} decoder, "
            f"{cfg.attention} attention, {cfg.vocab_size} source and {cfg.target_size} target "
            f"characters, dropout {cfg.dropout:g}, {cfg.dtype}")


def memory_needed(cfg: Config, batch: int, seq: int, processes: int = 1) -> int:
    """Bytes a step needs, about: `seq` stands for both the source and the target length;
    the encoder's and decoder's caches, the additive score's N*T*S*H, the logits."""
    item = np.dtype(cfg.dtype).itemsize
    R, H, K = B.directions(cfg), cfg.hidden, cfg.target_size
    att = 3 * batch * seq * seq * (H if cfg.attention == "additive" else 1)
    return item * (16 * batch * seq * H * (R + 1) * cfg.layers + att + 3 * batch * seq * K
                   + (4 + 2 * (processes > 1)) * B.n_params(param_shapes(cfg)))


def load_data(tcfg, saved=None) -> P.Data:
    """source<TAB>target pairs (charrnn.data.pairs), validation split by source."""
    return P.load(tcfg, saved)


def complete(cfg: Config, data: P.Data) -> Config:
    return replace(cfg, vocab_size=len(data.vocab), target_size=len(data.target_vocab))


def data_meta(data: P.Data) -> dict:
    return {"target_vocab": list(data.target_vocab.chars), "data_summary": data.info["summary"]}


def _batches(n_rows: list, size: int = B.EVAL_BATCH):
    order = np.argsort(n_rows, kind="stable")
    return [order[i : i + size] for i in range(0, len(order), size)]


def _map(params, cfg, arrays, opts, workers):
    F = sys.modules[__name__]
    if workers is None:
        return [(slice(0, len(arrays[0])), score_rows(params, cfg, *arrays, **opts))]
    return workers.map_rows(F, params, cfg, arrays, opts)


def translate_ids(params, cfg: Config, sources: list, max_length: int, workers=None) -> list:
    """Greedy outputs (lists of target ids, END dropped) of source id arrays, in order."""
    out = [None] * len(sources)
    for idx in _batches([len(s) for s in sources]):
        src, src_len = P.L.pad([sources[i] for i in idx])
        for s, (ids, lengths) in _map(params, cfg, [src, src_len],
                                      {"op": "greedy", "max_length": max_length}, workers):
            for j, i in enumerate(idx[s]):
                row = ids[j, : lengths[j]].tolist()
                out[i] = row[:-1] if row and row[-1] == P.END_ID else row
    return out


def evaluate(params, cfg: Config, data: P.Data, tcfg=None, workers=None) -> dict:
    """Validation figures: the loss per target character (END included), and the share of
    distinct validation sources whose greedy output equals one of their references."""
    src, tgt = data.val
    total = 0.0
    for idx in _batches([len(s) for s in src]):
        batch = P.make_batch([src[i] for i in idx], [tgt[i] for i in idx])
        batch = batch[:4] + (np.ones_like(batch[4]) * (batch[4] != 0),)
        total += sum(float(r[0].sum()) for _, r in _map(params, cfg, list(batch), {}, workers))
    chars = sum(len(t) + 1 for t in tgt)
    longest = max(len(r) for _, refs in data.val_groups for r in refs) + 1
    outs = translate_ids(params, cfg, [s for s, _ in data.val_groups], longest, workers)
    tv = data.target_vocab
    hits = sum(tv.decode(o) in refs for o, (_, refs) in zip(outs, data.val_groups))
    return {"val_loss": total / chars, "val_exact": hits / len(data.val_groups)}
