"""One to many: a sequence generated from a condition (issue 23), e.g. a surname for a language.

A stacked unidirectional language model (charrnn.models.lm's forward and backward, reused)
over each example's text framed by markers, conditioned on a vector c per example (for the CLI
the one-hot of the example's label; through the Python API any features at all).

Shapes: N texts, T steps (the longest text + 1), V characters (START, END, UNKNOWN first, as
charrnn.data.pairs's target vocabulary), C condition size, H hidden units, G = gates * H.

    ids_t     = START, y_1, ..., y_L                  the inputs (the text shifted right)
    targets_t = y_1, ..., y_L, END                    the outputs: L + 1 predictions per text

The condition enters one of two ways (`condition`), or not at all:

    init   h^k_0 = tanh(c W0_k + b0_k)  for every layer k     the course's one-to-many and the
           (an LSTM's cell c^k_0 = 0);  xp^0_t = x_t Wx + b    captioning model's initial state
    input  h^k_0 = 0;  xp^0_t = x_t Wx + b + c Wc              the PyTorch tutorial's: c joins
                                                               every step's input projection
    none   h^k_0 = 0;  xp^0_t = x_t Wx + b                     the unconditioned baseline

then, as in lm: h^k = cell(xp^k), xp^{k+1} = dropout(h^k) Wx_{k+1} + b_{k+1},
logits_t = dropout(h^{L-1}_t) Wy + by (T, N, V), and

    loss = (1 / N) sum_n sum_t w_nt (-log softmax(logits_nt)[targets_nt])

with w = N / (the batch's predicted characters, END included) at real steps and 0 after, so the
loss is the mean over the batch's characters. The network is causal, so padding (any ids after a
text's END) changes no real step. Parameters: lm's (`l{k}.Wx`, `l{k}.Wh`, `l{k}.b`, `.bhn`, `Wy`,
`by`), and for init `init.l{k}.W` (C, H), `init.l{k}.b` (H,), for input `cond.W` (C, G).

A batch is (ids (N, T), targets (N, T), weights (N, T), cond (N, C)), rows independent. Nothing
is carried between batches. For sampling, `conditioned_lm` turns the model and one condition into a plain
language model and its initial state: the input way's c Wc is then a constant added to b.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from ..data import labelled as L
from ..data import pairs as P
from ..errors import ConfigError, CorpusError
from ..nn.cells import CELLS
from . import encoded as B
from . import lm
from .seq2seq import _sanitize

NAME = "generate"
METRIC = "val_bpc"
CONDITIONS = ("init", "input", "none")
OUT_OF_VOCABULARY = "skipped"  # by inside: the texts are read as generated
IGNORES = B.IGNORES  # whole texts, batched by length
LN2 = math.log(2.0)


@dataclass(frozen=True)
class Config(B.DictConfig):
    """Everything that rebuilds the model. vocab_size and cond_size 0: from the data."""

    vocab_size: int = 0
    cond_size: int = 0
    cell: str = "gru"
    hidden: int = 256
    layers: int = 1
    # where c enters: the initial state (init), every step's input projection (input), nowhere
    # (none); the default is the better of the two on the names (docs/en/guides/generate.md)
    condition: str = "init"
    dropout: float = 0.2
    dtype: str = "float32"
    kernels: str = "numpy"  # the cells' kernels (see lm.ModelConfig); not saved when "numpy"

    def __post_init__(self):
        lm.ModelConfig(self.vocab_size, self.cell, self.hidden, self.layers, self.dropout,
                       self.dtype, self.kernels)  # the language model's checks
        c = self.cond_size
        if not isinstance(c, int) or isinstance(c, bool) or c < 0:
            raise ConfigError(f"cond_size must be a whole number >= 0, not {c!r}")
        if self.condition not in CONDITIONS:
            raise ConfigError(f"condition must be one of {', '.join(CONDITIONS)}, not "
                              f"{self.condition!r}")


# `charrnn train --task generate`'s training settings where they differ from TrainConfig's
TRAIN_DEFAULTS = {"batch": 64, "lr": 5e-3, "warmup": 50, "eval_every": 200}


def param_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    shapes = lm.param_shapes(cfg)
    C, H = cfg.cond_size, cfg.hidden
    if cfg.condition == "init":
        for k in range(cfg.layers):
            shapes[f"init.l{k}.W"], shapes[f"init.l{k}.b"] = (C, H), (H,)
    elif cfg.condition == "input":
        shapes["cond.W"] = (C, CELLS[cfg.cell].gates * H)
    return shapes


def init_params(cfg: Config, rng: np.random.Generator) -> dict:
    """lm's initialisation, then the condition's weights uniform in +-1/sqrt(C), biases zero."""
    params = lm.init_params(cfg, rng)
    for name, shape in param_shapes(cfg).items():
        if name not in params:
            bound = 1.0 / math.sqrt(max(shape[0], 1))
            w = rng.uniform(-bound, bound, size=shape) if len(shape) == 2 else np.zeros(shape)
            params[name] = w.astype(cfg.dtype)
    return params


def width(cfg: Config) -> int:
    return cfg.hidden


def draw_masks(cfg: Config, rng, batch):
    """lm's dropout masks: per layer (T, N, H), or None."""
    N, T = np.shape(batch[0])
    return lm.dropout_masks(cfg, rng, T, N)


# --------------------------------------------------------------------------------------------
# Forward and backward: the condition's way in, around lm's forward and backward


def _start(params, cfg: Config, cond):
    """(initial state, the rows added to layer 0's input projection or None, h0 per layer)."""
    N = len(cond)
    if cfg.condition != "init":
        rows = cond @ params["cond.W"] if cfg.condition == "input" else None  # (N, G)
        return lm.init_state(cfg, N), rows, None
    h0s = [np.tanh(cond @ params[f"init.l{k}.W"] + params[f"init.l{k}.b"])  # (N, H)
           for k in range(cfg.layers)]
    extra = CELLS[cfg.cell].n_states - 1  # an LSTM's c_0 = 0
    return tuple((h, *(np.zeros_like(h),) * extra) for h in h0s), None, h0s


class Cache(NamedTuple):
    lm: object  # lm.forward's cache
    cond: np.ndarray  # (N, C)
    h0s: list | None  # per layer (N, H), the init way's initial states


def forward(params, cfg: Config, ids, cond, masks=None):
    """Logits (T, N, V) of ids (N, T) under conditions cond (N, C), and the cache."""
    cond = np.asarray(cond, dtype=cfg.dtype)
    state, rows, h0s = _start(params, cfg, cond)
    logits, _, cache = lm.forward(params, cfg, ids, state, masks=masks, rows=rows)
    return logits, Cache(cache, cond, h0s)


def backward(dlogits, params, cfg: Config, cache: Cache) -> dict:
    grads, dstate0 = lm.backward(dlogits, None, cache.lm)
    if cfg.condition == "input":
        grads["cond.W"] = cache.cond.T @ grads.pop("rows")
    elif cfg.condition == "init":
        for k, h0 in enumerate(cache.h0s):  # h0 = tanh(c W0 + b0)
            dpre = dstate0[k][0] * (1 - h0 * h0)
            grads[f"init.l{k}.W"], grads[f"init.l{k}.b"] = cache.cond.T @ dpre, dpre.sum(axis=0)
    return grads


def _nll(params, cfg, batch, masks):
    ids, targets, weights, cond = batch
    ids_t, tgt_t = _sanitize(ids, targets, weights)  # (T, N), 0 at padding
    logits, cache = forward(params, cfg, ids_t.T, cond, masks)
    p, nll = B.softmax_nll(logits, tgt_t)  # (T, N, V), (T, N)
    return p, nll, tgt_t, cache


def gradients(params, cfg: Config, batch, state=(), masks=None, dfinal=None, scale=1.0):
    """(loss, grads, (), ()): the loss is the mean over the rows of sum_t weight * nll, times
    `scale`."""
    p, nll, tgt_t, cache = _nll(params, cfg, batch, masks)
    loss, dlogits = B.weighted_nll(p, nll, tgt_t, batch[2], scale)
    grads = backward(dlogits, params, cfg, cache)
    return loss, {k: grads[k] for k in params}, (), ()


def loss(params, cfg: Config, batch, state=(), masks=None):
    _, nll, _, _ = _nll(params, cfg, batch, masks)
    return B.weighted_loss(nll, batch[2]), ()


def check_configs(cell: str, layers: int, hidden: int, vocab: int, classes: int) -> list:
    """[(label, Config)] for gradcheck: the condition entering both ways (the initial state,
    every step's input), `classes` values in it, `vocab` characters besides the markers."""
    return [(f"{NAME}/{way} {cell}",
             Config(vocab_size=vocab + 3, cond_size=classes, cell=cell, hidden=hidden,
                    layers=layers, condition=way, dropout=0.3 if layers > 1 else 0.0,
                    dtype="float64"))
            for way in ("init", "input")]


def example_batch(cfg: Config, rng, rows: int, steps: int):
    """A random batch: lengths all different where possible (the longest `steps`), garbage ids
    at every padding, weights summing to N, conditions standard normal (any vector will do)."""
    ids, _, targets, weights = B.example_batch(rng, rows, steps, cfg.vocab_size,
                                                     cfg.vocab_size, per_step=True)
    targets = np.where(weights > 0, targets, rng.integers(-10**6, 10**6, targets.shape))
    cond = rng.standard_normal((rows, cfg.cond_size))
    return ids, targets, weights, cond


def conditioned_lm(params, cfg: Config, cond):
    """(params, state) of the plain language model (charrnn.models.lm, one row) that generates
    under the condition cond (C,): the init way's initial state, or the input way's c Wc folded
    into layer 0's bias. Feed it START_ID first."""
    cond = np.asarray(cond, dtype=cfg.dtype)[None]  # (1, C)
    state, rows, _ = _start(params, cfg, cond)
    if rows is not None:
        params = {**params, "l0.b": params["l0.b"] + rows[0]}
    return params, state


def inside(params, cfg: Config, vocab, text: str, keep=None, meta=None):
    """The family contract's recording (charrnn.inside.record): each non-empty line of `text` is
    `text<TAB>label` (as the training files), read afresh from START under that label's
    condition, as the model generates it; lm.inside records each. Characters outside the
    vocabulary are skipped. Returns (read, spans, arrays, skipped), the lines' texts one after
    the other (the START step not shown: row i is after reading character i)."""
    labels = list((meta or {}).get("labels") or [])
    read, spans, parts, skipped = "", [], [], 0
    names = lm.inside(params, cfg, vocab, "", keep)[2]
    for n, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        body, tab, label = line.rpartition("\t")
        if not tab:
            raise CorpusError(f"line {n}: a generator reads text<TAB>label lines, the text as "
                              f"generated for the label ({_label_list(labels)})")
        if label not in labels:
            raise CorpusError(f"line {n}: unknown label {label!r} ({_label_list(labels)})")
        p, state = conditioned_lm(params, cfg, one_hot([labels.index(label)], len(labels),
                                                        cfg.dtype)[0])
        r, _, arrays, sk = lm.inside(p, cfg, vocab, P.START + body, keep, state=state)
        skipped += sk
        spans.append((len(read), len(read) + len(r) - 1))
        read += r[1:]
        parts.append({k: a[1:] for k, a in arrays.items()})
    arrays = {k: (np.concatenate([part[k] for part in parts]) if parts else a)
              for k, a in names.items()}
    return read, spans, arrays, skipped


def _label_list(labels) -> str:
    return "labels: " + ", ".join(labels[:12]) + (" ..." if len(labels) > 12 else "")


# --------------------------------------------------------------------------------------------
# Data: the classifier's labelled files; each example's text is generated from its label


class Data(NamedTuple):
    vocab: object  # START, END, UNKNOWN, the training characters (charrnn.data.pairs)
    labels: list  # the label names, in id order (the one-hot's order)
    batches: object  # labelled.Buckets
    val: tuple  # (text ids list, label ids (n,)): the validation examples
    val_unknown: int  # characters of the validation texts outside the vocabulary
    fingerprint: dict
    info: dict


def make_batch(text_ids: list, cond: np.ndarray) -> tuple:
    """The batch tuple (module docstring) of texts (id arrays) under conditions cond (n, C)."""
    return (*P.shifted(text_ids), np.asarray(cond))


def one_hot(label_ids, K: int, dtype="float32") -> np.ndarray:
    return np.eye(K, dtype=dtype)[np.asarray(label_ids, dtype=np.intp)]


def load_data(tcfg, saved=None) -> Data:
    """Labelled examples exactly as the classifier reads them (charrnn.data.labelled: a TSV of
    text<TAB>label, or a folder of <label>.txt), the validation part split off by the same
    function (stratified by label) or read from tcfg.val; batches by text length."""
    ex = L.read(tcfg.corpus, "classify", tcfg.encoding)
    if tcfg.val:
        train_ex, val_ex = ex, L.read(tcfg.val, "classify", tcfg.encoding)
    else:
        train_ex, val_ex = L.split_examples(ex, tcfg.val_frac, tcfg.seed, stratify=True,
                                            saved=saved)
    if saved is not None:
        vocab, labels = saved.vocab, list(saved.meta.get("labels") or [])
    else:
        vocab = P.target_vocab(train_ex.texts, train_ex.where)
        labels = sorted(set(train_ex.targets))
    train_ids, _ = P.encode_targets(vocab, train_ex.texts, train_ex.where)
    val_ids, val_unknown = P.encode_targets(vocab, val_ex.texts, val_ex.where)
    train_y, val_y = (label_ids(labels, e.targets, e.where) for e in (train_ex, val_ex))
    K = len(labels)
    if tcfg.batch > len(train_ids):
        raise CorpusError(f"--batch {tcfg.batch} is more than the {len(train_ids)} training "
                          f"examples; use a smaller --batch")
    dtype = tcfg.model.dtype

    def make(idx):
        return make_batch([train_ids[i] for i in idx], one_hot(train_y[idx], K, dtype))

    chars = int(sum(len(t) + 1 for t in train_ids))
    val_chars = int(sum(len(t) + 1 for t in val_ids))
    info = {"train_chars": chars, "val_chars": val_chars, "vocab": len(vocab),
            "data": f"{len(train_ids):,} examples, {chars:,} characters with END (validation "
                    f"{len(val_ids):,}; vocabulary {len(vocab)}, {K} labels)"}
    lengths = np.array([len(t) + 1 for t in train_ids])
    return Data(vocab, labels, L.Buckets(lengths, tcfg.batch, tcfg.seed, make),
                (val_ids, val_y), val_unknown,
                L.split_fingerprint(train_ex, val_ex, saved), info)


def label_ids(labels: list, names, where=None) -> np.ndarray:
    """The ids of label names; CorpusError (naming file:line when given) for one the training
    data lacks, listing the labels."""
    index = {y: i for i, y in enumerate(labels)}
    for i, y in enumerate(names):
        if y not in index:
            at = f"{where[i]}: " if where else ""
            raise CorpusError(f"{at}label {y!r} does not occur in the training data "
                              f"({len(labels)} labels: {', '.join(map(repr, labels[:8]))}"
                              f"{' ...' if len(labels) > 8 else ''})")
    return np.array([index[y] for y in names], dtype=np.int64)


def complete(cfg: Config, data: Data) -> Config:
    return replace(cfg, vocab_size=len(data.vocab), cond_size=len(data.labels))


def data_meta(data: Data) -> dict:
    return {"labels": list(data.labels)}


# --------------------------------------------------------------------------------------------
# Evaluation


def score_rows(params, cfg: Config, ids, targets, weights, cond) -> list:
    """One slice's evaluation work: each row's summed nll in nats (n,) over its real steps."""
    _, nll, _, _ = _nll(params, cfg, (ids, targets, weights, cond), None)
    real = (np.asarray(weights) != 0).T
    return [np.where(real, nll, 0.0).sum(axis=0)]


def text_nll(params, cfg: Config, texts: list, cond: np.ndarray, workers=None) -> np.ndarray:
    """Nats of each text (id arrays, END included) under its condition cond[i], (n,) float64;
    scored B.EVAL_BATCH at a time, sorted by length, rows shared among `workers`."""
    out = np.empty(len(texts))
    order = np.argsort([len(t) for t in texts], kind="stable")
    F = sys.modules[__name__]
    for lo in range(0, len(order), B.EVAL_BATCH):
        idx = order[lo : lo + B.EVAL_BATCH]
        ids, targets, weights, c = make_batch([texts[i] for i in idx], cond[idx])
        weights = (weights != 0).astype(np.float64)
        arrays = [ids, targets, weights, c.astype(cfg.dtype)]
        if workers is None:
            parts = [(slice(0, len(idx)), score_rows(params, cfg, *arrays))]
        else:
            parts = workers.map_rows(F, params, cfg, arrays, {})
        for s, (nll,) in parts:
            out[idx[s]] = nll
    return out


def evaluate(params, cfg: Config, data: Data, tcfg=None, workers=None) -> dict:
    """Validation figures: bits (and nats) per character of the held-out texts, END included."""
    texts, y = data.val
    nats = text_nll(params, cfg, texts, one_hot(y, cfg.cond_size, cfg.dtype), workers)
    chars = sum(len(t) + 1 for t in texts)
    return {"val_bpc": float(nats.sum() / chars / LN2), "val_nats": float(nats.sum() / chars)}


def train_figures(mean_loss: float) -> dict:
    return {"train_bpc": mean_loss / LN2}


def batch_chars(batch) -> int:
    return int(np.count_nonzero(batch[2]))


def describe_metric(value: float) -> str:
    return f"{value:.4f} bits per character (END included)"


def describe(cfg: Config) -> str:
    way = {"init": "the initial state", "input": "every step's input",
           "none": "nothing (unconditioned)"}[cfg.condition]
    return (f"{cfg.cell} {cfg.hidden}x{cfg.layers} generator, condition ({cfg.cond_size}) "
            f"into {way}, dropout {cfg.dropout:g}, {cfg.dtype}")


def memory_needed(cfg: Config, batch: int, seq: int, processes: int = 1) -> int:
    """Bytes a step needs, about: lm's caches and logits for `seq` steps, the parameters with
    gradients and two optimizer moments."""
    item = np.dtype(cfg.dtype).itemsize
    return item * (16 * batch * seq * cfg.hidden * cfg.layers + 3 * batch * seq * cfg.vocab_size
                   + (4 + 2 * (processes > 1)) * B.n_params(param_shapes(cfg)))
