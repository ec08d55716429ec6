"""What the families built on a (bidirectional) encoder share: the classifier (charrnn.models.
classify) and the tagger (charrnn.models.tag) read a whole padded sequence with
charrnn.nn.encoder and put a softmax head on it.

A batch of such a family is a tuple of row-major arrays, rows = sequences:

    ids      (N, T) int     characters, padded (any id at padding)
    lengths  (N,)   int     real characters per sequence, 1 <= L_n <= T
    targets  (N,) or (N, T) int     the class of each sequence, or the tag of each character
    weights  (N,) or (N, T) float   each row's (or character's) share of the batch's loss

The weights of a whole batch sum to N (the number of rows), so that the loss, the mean over the
rows of sum(weights * losses), is an average over the batch, and slices of rows (the worker
processes' share) add up: a slice's loss scaled by n_s / N is its part of the batch's. The data
layer sets them: 1 per sequence for a plain classifier, inverse class frequency (normalised) with
class weights, N * [t < L_n] / sum(L) for the tagger (the mean over the real characters).

Nothing is carried from one batch to the next (the state is `()`), and dropout masks are drawn
for the whole batch, time-major (T or 1, N, D), so slices of rows are slices of axis 1.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import NamedTuple

import numpy as np

from ..data import labelled as L
from ..data import summary as S
from ..errors import ConfigError, CorpusError
from ..nn import encoder as E
from ..nn.cells import CELLS, KERNELS
from ..nn.ops import dropout_mask

DTYPES = ("float32", "float64")
# the training setting the families of whole sequences do not read: they batch whole texts
IGNORES = ("seq",)


def check_config(cfg, sizes: tuple[str, ...]) -> None:
    """The checks every encoder family's Config runs in __post_init__; `sizes` are the fields
    that may be 0 ("from the data") or more, the rest of hidden/layers must be >= 1."""
    if not isinstance(cfg.cell, str) or cfg.cell not in CELLS:
        raise ConfigError(f"unknown cell {cfg.cell!r}; choose one of {', '.join(CELLS)}")
    for name in (*sizes, "hidden", "layers"):
        v = getattr(cfg, name)
        least = 0 if name in sizes else 1
        if not isinstance(v, int) or isinstance(v, bool) or v < least:
            raise ConfigError(f"{name} must be a positive whole number, not {v!r}")
    d = cfg.dropout
    if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 <= d < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), not {d!r}")
    if not isinstance(cfg.bidirectional, bool):
        raise ConfigError(f"bidirectional must be true or false, not {cfg.bidirectional!r}")
    if cfg.dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, not {cfg.dtype!r}")
    if cfg.kernels not in KERNELS:
        raise ConfigError(f"kernels must be one of {', '.join(KERNELS)}, not {cfg.kernels!r}")


class DictConfig:
    """to_dict / from_dict for a family's frozen dataclass Config (mixed in). Every Config ends
    with `kernels` (charrnn.nn.cells.KERNELS; see lm.ModelConfig), which to_dict leaves out when
    it is NumPy's, the reference."""

    def to_dict(self) -> dict:
        d = asdict(self)
        if d.get("kernels") == "numpy":
            del d["kernels"]
        return d

    @classmethod
    def from_dict(cls, d: dict):
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown model settings: {', '.join(sorted(unknown))}")
        return cls(**d)


def small_config(Config, cell: str, layers: int, hidden: int, vocab: int, **sizes):
    """A family's small float64 model for gradient checks: bidirectional, dropout on from 2
    layers."""
    return Config(vocab_size=vocab, cell=cell, hidden=hidden, layers=layers, bidirectional=True,
                  dropout=0.3 if layers > 1 else 0.0, dtype="float64", **sizes)


def directions(cfg) -> int:
    return 2 if cfg.bidirectional else 1


def encoder_shapes(cfg) -> dict:
    return E.param_shapes(cfg.cell, cfg.vocab_size, cfg.hidden, cfg.layers, cfg.bidirectional)


def init_params(cfg, shapes: dict, rng: np.random.Generator) -> dict:
    """The encoder's parameters as nn.encoder initialises them, then the head's: weights uniform
    in +-1/sqrt(fan in), biases zero."""
    params = E.init_params(cfg.cell, cfg.vocab_size, cfg.hidden, cfg.layers, cfg.bidirectional,
                           rng, dtype=cfg.dtype)
    for name, shape in shapes.items():
        if name in params:
            continue
        if len(shape) == 2:
            bound = 1.0 / np.sqrt(shape[0])
            params[name] = rng.uniform(-bound, bound, size=shape).astype(cfg.dtype)
        else:
            params[name] = np.zeros(shape, dtype=cfg.dtype)
    return {name: params[name] for name in shapes}


def draw_masks(cfg, rng, batch, head_steps: bool, head_width: int | None = None):
    """Dropout for a batch: the encoder's masks between layers, (T, N, R*H) each, then the
    head's input mask, (T, N, R*H) for a tagger (`head_steps`) or (1, N, head_width) for a
    classifier (head_width: R*H unless given); None without rng or dropout."""
    if rng is None or cfg.dropout == 0:
        return None
    N, T = np.shape(batch[0])
    D = directions(cfg) * cfg.hidden
    masks = E.dropout_masks(rng, cfg.dropout, cfg.layers, T, N, D, cfg.dtype) or []
    masks.append(dropout_mask(rng, cfg.dropout, (T if head_steps else 1, N, head_width or D),
                              np.dtype(cfg.dtype)))
    return masks


def encode(params, cfg, ids, lengths, masks):
    """The encoder's forward: (outputs (T, N, R*H), finals, cache, the head's mask or None)."""
    enc, head = (masks[:-1] or None, masks[-1]) if masks else (None, None)
    outs, finals, cache = E.forward(params, cfg.cell, cfg.layers, cfg.bidirectional, ids,
                                    lengths, enc, kernels=cfg.kernels)
    return outs, finals, cache, head


def softmax_nll(logits: np.ndarray, targets: np.ndarray):
    """Row-wise softmax (..., K) and the negative log-likelihood of each target (...)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=-1, keepdims=True)
    t = np.asarray(targets, dtype=np.intp)[..., None]
    nll = (np.log(s) - np.take_along_axis(z, t, axis=-1))[..., 0]
    e /= s
    return e, nll


def weighted_nll(p: np.ndarray, nll: np.ndarray, targets_t, weights, scale: float = 1.0):
    """(loss, dlogits) of a per-step loss, the mean over the N rows of sum_t w_nt * nll_nt, times
    `scale`: p (T, N, K) the softmax and nll (T, N) from softmax_nll, targets_t (T, N), weights
    (N, T), zero at padding. dlogits = w * (p - onehot(targets)), (T, N, K), in p's dtype."""
    N = nll.shape[1]
    w = np.asarray(weights, dtype=p.dtype).T * (scale / N)  # (T, N); zero at padding
    loss = float(np.sum(w.astype(np.float64) * nll))
    dlogits = p * w[..., None]
    t = np.asarray(targets_t, dtype=np.intp)[..., None]
    np.put_along_axis(dlogits, t, np.take_along_axis(dlogits, t, axis=-1) - w[..., None],
                      axis=-1)
    return loss, dlogits


def weighted_loss(nll: np.ndarray, weights) -> float:
    """weighted_nll's loss alone, in float64 (scale 1)."""
    w = np.asarray(weights, dtype=np.float64).T
    return float(np.sum(w * nll) / nll.shape[1])


def example_batch(rng: np.random.Generator, rows: int, steps: int, V: int, K: int,
                  per_step: bool):
    """A random batch for gradient checks: lengths all different where possible (the longest
    exactly `steps`), random padding ids, random targets and weights summing to N."""
    lengths = np.maximum(1, steps - rng.permutation(rows) % steps)
    lengths[0] = steps
    ids = rng.integers(0, V, size=(rows, steps))
    real = np.arange(steps)[None, :] < lengths[:, None]
    ids[~real] = rng.integers(0, 10**6, size=int((~real).sum()))  # padding: any id at all
    if per_step:
        targets = rng.integers(0, K, size=(rows, steps))
        weights = rng.uniform(0.5, 1.5, size=(rows, steps)) * real
    else:
        targets = rng.integers(0, K, size=rows)
        weights = rng.uniform(0.5, 1.5, size=rows)
    weights *= rows / weights.sum()
    return ids, lengths, targets, weights


def inside(params, cfg, vocab, text: str, keep=None, meta=None):
    """Read each non-empty line of `text` as its own sequence, as `charrnn predict` reads texts,
    and record what the encoder computed at each character, both directions, read from the
    cells' own forward caches. Characters outside the vocabulary are read as the unknown symbol.

    Returns (read, spans, arrays, unknown): the lines' characters one after the other (no line
    breaks: the encoder reads none), each line's (start, stop) in it, {"l{k}.{d}.{s}":
    (len(read), H) array} for every layer k, direction d (fw, bw) and series s of the cell
    (charrnn.nn.cells), only the names in `keep` if given, and how many characters were read as
    the unknown symbol."""
    lines = [line for line in text.split("\n") if line]
    ids, unknown = L.encode(vocab, lines)
    stops = np.cumsum([len(t) for t in lines], dtype=np.int64)
    spans = [(int(b - len(t)), int(b)) for t, b in zip(lines, stops)]
    names = [f"l{k}.{d}.{s}" for k in range(cfg.layers) for d in ("fw", "bw")[:directions(cfg)]
             for s in CELLS[cfg.cell].series_names]
    total = int(stops[-1]) if lines else 0
    arrays = {n: np.empty((total, cfg.hidden), dtype=cfg.dtype)
              for n in names if keep is None or n in keep}
    for lo in range(0, len(lines), EVAL_BATCH):
        batch, lens = L.pad(ids[lo : lo + EVAL_BATCH])
        _, _, cache = E.forward(params, cfg.cell, cfg.layers, cfg.bidirectional, batch, lens,
                                kernels=cfg.kernels)
        for name, a in E.series(cache).items():  # (T, N, H) each
            if name in arrays:
                for n, (start, stop) in enumerate(spans[lo : lo + EVAL_BATCH]):
                    arrays[name][start:stop] = a[: stop - start, n]
    return "".join(lines), spans, arrays, unknown


def width(cfg) -> int:
    return directions(cfg) * cfg.hidden


def batch_chars(batch) -> int:
    return int(np.sum(batch[1]))


def describe_metric(value: float) -> str:
    return f"{value:.4f} nats per character (loss)"


def n_params(shapes: dict) -> int:
    """How many numbers arrays of these shapes ({name: shape}) hold."""
    return sum(int(np.prod(s)) for s in shapes.values())


def memory_needed(cfg, shapes: dict, batch: int, seq: int, processes: int, K: int) -> int:
    """Bytes a step needs, about: the encoder's caches (per layer and direction ~16 arrays of
    N*T*H), the head's N*T*K (tagger) or N*K, and the parameters (`shapes`) with gradients and
    two optimizer moments; `seq` is the longest sequence a batch may hold."""
    item = np.dtype(cfg.dtype).itemsize
    R = directions(cfg)
    return item * (16 * batch * seq * cfg.hidden * R * cfg.layers + 3 * batch * seq * K
                   + (4 + 2 * (processes > 1)) * n_params(shapes))


# --------------------------------------------------------------------------------------------
# Data: labelled examples (charrnn.data.labelled) as batches of this layout.

EVAL_BATCH = 256  # validation examples scored at a time


class Data(NamedTuple):
    vocab: object  # Vocab, UNKNOWN first
    labels: list  # the class names (classify) or tag characters (tag), in id order
    batches: object  # labelled.Buckets
    val: tuple  # (ids list, targets list): the validation examples, encoded
    val_unknown: int  # characters of the validation text outside the vocabulary
    class_weights: np.ndarray | None  # (K,) applied to the loss, or None
    fingerprint: dict  # labelled.split_fingerprint: [examples, crc32] of train, then val; split
    info: dict


def load(tcfg, saved, per_step: bool, power: float, adjust: float = 0.0) -> Data:
    """Read tcfg.corpus (and tcfg.val, or split off tcfg.val_frac, stratified by label for a
    classifier), build or (resuming) reuse the vocabulary and the labels, and batch by length.
    A classifier's batch is (ids, lengths, labels, weights): the weights from the inverse class
    frequencies ** `power`; with `adjust` > 0 a fifth array, (N, K) logit offsets, each row
    adjust * log(the training part's class frequencies) (the logit-adjusted loss, see
    charrnn.models.classify)."""
    kind = "tag" if per_step else "classify"
    ex = L.read(tcfg.corpus, kind, tcfg.encoding)
    L.require_classes(ex, kind, tcfg.corpus)
    if tcfg.val:
        val_ex = L.read(tcfg.val, kind, tcfg.encoding)
        train_ex = ex
    else:
        train_ex, val_ex = L.split_examples(ex, tcfg.val_frac, tcfg.seed,
                                            stratify=not per_step, saved=saved)
    if saved is not None:
        vocab, labels = saved.vocab, list(saved.meta.get("labels") or [])
    else:
        vocab = L.vocab_with_unknown(train_ex.texts)
        labels = sorted({c for t in train_ex.targets for c in t}) if per_step \
            else sorted(set(train_ex.targets))
    index = {y: i for i, y in enumerate(labels)}

    def label_ids(exs):
        for y, at in zip(exs.targets, exs.where):
            bad = [c for c in y if c not in index] if per_step else ([] if y in index else [y])
            if bad:
                what = "tag" if per_step else "label"
                raise CorpusError(f"{at}: {what} {bad[0]!r} does not occur in the training data "
                                  f"({len(labels)} {what}s: {', '.join(map(repr, labels[:8]))}"
                                  f"{' ...' if len(labels) > 8 else ''})")
        if per_step:
            return [np.array([index[c] for c in y], dtype=np.int64) for y in exs.targets]
        return np.array([index[y] for y in exs.targets], dtype=np.int64)

    train_ids, _ = L.encode(vocab, train_ex.texts)
    val_ids, val_unknown = L.encode(vocab, val_ex.texts)
    train_y, val_y = label_ids(train_ex), label_ids(val_ex)
    K = len(labels)
    cw = L.inverse_frequency(train_y, K) ** power if power and not per_step else None
    offsets = None
    if adjust and not per_step:  # a class without training examples counts as one
        freq = np.maximum(np.bincount(train_y, minlength=K), 1) / len(train_y)
        offsets = adjust * np.log(freq)
    lengths = np.array([len(t) for t in train_ids])

    def make(idx):
        ids, lens = L.pad([train_ids[i] for i in idx])
        n = len(idx)
        if per_step:
            tags, _ = L.pad([train_y[i] for i in idx])
            w = (np.arange(ids.shape[1])[None, :] < lens[:, None]) * (n / lens.sum())
            return ids, lens, tags, w
        y = train_y[idx]
        w = cw[y] if cw is not None else np.ones(n)
        if offsets is not None:
            return ids, lens, y, w * (n / w.sum()), np.tile(offsets, (n, 1))
        return ids, lens, y, w * (n / w.sum())

    chars = int(lengths.sum())
    val_chars = sum(len(t) for t in val_ids)
    what = "texts" if per_step else "examples"
    summary, lines = S.report(ex, train_ex, val_ex, kind, bool(tcfg.val))
    info = {"train_chars": chars, "val_chars": val_chars, "vocab": len(vocab),
            "summary": summary, "summary_lines": lines,
            "data": f"{len(train_ids):,} {what}, {chars:,} characters (validation "
                    f"{len(val_ids):,}; vocabulary {len(vocab)}, {K} "
                    f"{'tags' if per_step else 'classes'})"}
    if tcfg.batch > len(train_ids):
        raise CorpusError(f"--batch {tcfg.batch} is more than the {len(train_ids)} training "
                          f"examples; use a smaller --batch")
    return Data(vocab, labels, L.Buckets(lengths, tcfg.batch, tcfg.seed, make),
                (val_ids, val_y), val_unknown, cw,
                L.split_fingerprint(train_ex, val_ex, saved), info)


def complete(cfg, data: Data, size_field: str):
    return replace(cfg, vocab_size=len(data.vocab), **{size_field: len(data.labels)})


def data_meta(data: Data) -> dict:
    return {"labels": list(data.labels), "data_summary": data.info["summary"]}


def predict_rows(F, params, cfg, ids_list, workers=None):
    """The probabilities of every text in ids_list, in order: (n, K) for a classifier, a list of
    (L_i, K) arrays for a tagger; scored EVAL_BATCH at a time, sorted by length."""
    order = np.argsort([len(t) for t in ids_list], kind="stable")
    out = [None] * len(ids_list)
    for lo in range(0, len(order), EVAL_BATCH):
        idx = order[lo : lo + EVAL_BATCH]
        ids, lens = L.pad([ids_list[i] for i in idx])
        if workers is None:
            parts = [(slice(0, len(idx)), F.score_rows(params, cfg, ids, lens))]
        else:
            parts = workers.map_rows(F, params, cfg, [ids, lens], {})
        for s, (p,) in parts:
            for j, i in enumerate(idx[s]):
                out[i] = p[j] if p.ndim == 2 else p[j, : lens[s][j]]
    return out
