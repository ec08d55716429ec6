"""Look inside a trained model: what each unit and gate computes, character by character.

After Karpathy, Johnson and Fei-Fei, "Visualizing and Understanding Recurrent Networks" (2015):
record every layer's hidden state, gates and cell state over a text, rank the units by how well
they follow features of the text a person can name (inside quotes, bracket depth, position in
the line, ...), and measure how often each gate is saturated.

    from charrnn import checkpoint
    from charrnn.inside.record import record, find, saturation

    rec = record(checkpoint.load("runs/tinyshakespeare/best.npz"), text)
    rec.unit("l1.c.17")            # (len(rec.text),) that unit's values, one per character
    find(rec)                      # per built-in feature, the units that follow it best
    saturation(rec)                # per layer and gate, how often it is below 0.1 / above 0.9

Names read like the equations: a series is "l{k}.{s}" (layer k, series s of the cell: LSTM
i f o g c h, GRU r z n h, RNN h; charrnn.nn.cells), a unit "l{k}.{s}.{j}". An encoder (the
classify, tag and seq2seq families) has two directions: "l{k}.fw.{s}" read left to right,
"l{k}.bw.{s}" right to left, as the parameters are named. The recording comes from the cells'
own forward caches (each family's `inside`, charrnn.models): nothing is computed a second time.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError, CorpusError
from ..models import family
from ..nn.cells import SERIES_BOUNDS
from ..parallel.blas import openblas


@dataclass(frozen=True)
class Recording:
    """What a model computed over a text, one row per character read."""

    text: str  # the characters read, one per step
    arrays: dict  # {series name: (len(text), H) float array}
    spans: tuple = ()  # (start, stop) of each independently read sequence (LM: the whole text)
    family: str = "lm"
    cell: str = "lstm"
    skipped: int = 0  # characters outside the vocabulary: skipped (LM), unknown symbol (encoders)
    units_per_series: int = field(init=False, default=0)

    def __post_init__(self):
        widths = {a.shape[1] for a in self.arrays.values()}
        object.__setattr__(self, "units_per_series", widths.pop() if len(widths) == 1 else 0)

    def series(self) -> list[str]:
        return list(self.arrays)

    def split(self, name: str) -> tuple[str, int]:
        """("l1.f", 17) for "l1.f.17"; ConfigError, naming what exists, for anything else."""
        return split_unit(name, list(self.arrays), self.units_per_series, self.cell)

    def unit(self, name: str) -> np.ndarray:
        """(len(text),) the values of unit `name`, e.g. "l1.f.17"."""
        series, j = self.split(name)
        return self.arrays[series][:, j]

    def bounds(self, name: str) -> tuple[float, float]:
        """The range of a series or unit: (0, 1) for the sigmoid gates, (-1, 1) otherwise."""
        series = name if name in self.arrays else self.split(name)[0]
        return SERIES_BOUNDS[series.rpartition(".")[2]]


def split_unit(name: str, series: list, H: int, cell: str) -> tuple[str, int]:
    """("l1.f", 17) for the unit "l1.f.17" of a model with these series of H units each;
    ConfigError, in one line naming what exists, for anything else."""
    head, _, index = name.rpartition(".")
    if head in series and index.isdigit() and int(index) < H:
        return head, int(index)
    if name in series:
        raise ConfigError(f"{name!r} is a series of {H} units; name one, e.g. {name}.0")
    raise ConfigError(f"unknown unit {name!r}; this {cell} model has {', '.join(series)}, "
                      f"units 0-{H - 1} each (e.g. {series[0] if series else 'l0.h'}.0)")


def check_names(ckpt, units=(), series=()) -> None:
    """ConfigError for the first unit or series name this model does not have (before the
    work of recording)."""
    known = series_names(ckpt)
    for name in units:
        split_unit(name, known, ckpt.model.hidden, ckpt.model.cell)
    bad = [s for s in series if s not in known]
    if bad:
        raise ConfigError(f"unknown series {bad[0]!r}; this {ckpt.model.cell} model has "
                          f"{', '.join(known)}")


@contextmanager
def one_blas_thread():
    """BLAS on one thread for the duration: a language model reads its one stream a character
    at a time, and a (1, H) x (H, G) product is too small to share between threads. On 2 quiet
    cores it ran as fast either way; at load 3.3 from other processes BLAS's 2 threads made it
    4.7 times slower (bench/inside.py; docs/en/explanation/inside.md)."""
    blas = openblas()
    prev = blas.get() if blas is not None else None
    if blas is not None:
        blas.set(1)
    try:
        yield
    finally:
        if blas is not None:
            blas.set(prev)


def series_names(ckpt) -> list[str]:
    """Every series a recording of this model has, in order (layer, direction, equation)."""
    return list(family(ckpt.family).inside(ckpt.params, ckpt.model, ckpt.vocab, "",
                                          meta=ckpt.meta)[2])


def record(ckpt, text: str, series=None) -> Recording:
    """Run the model of `ckpt` (a charrnn.checkpoint.Checkpoint) over `text` and record every
    layer's series at every character (only the names in `series`, if given: saves memory on
    long texts). CorpusError for a text with nothing the model can read; ConfigError for an
    unknown series name."""
    if not text:
        raise CorpusError("the text is empty: give some characters to look at")
    F = family(ckpt.family)
    if series is not None:
        check_names(ckpt, series=series)
    with one_blas_thread():
        read, spans, arrays, skipped = F.inside(ckpt.params, ckpt.model, ckpt.vocab, text,
                                                None if series is None else set(series),
                                                meta=ckpt.meta)
    if not read:
        raise CorpusError(f"none of the text's {len(text):,} characters is one the model can "
                          f"read (its vocabulary has {len(ckpt.vocab)})")
    return Recording(read, arrays, tuple(spans), ckpt.family, ckpt.model.cell, skipped)


# --------------------------------------------------------------------------------------------
# Features of the text: per character a value (after reading that character, as a recurrent
# unit sees it) and whether it counts (vowel vs consonant: letters only). Each independently read
# sequence (Recording.spans) starts afresh.

FEATURES = {
    "quote": "inside double quotes: 1 from an opening \" to the character before its closing one",
    "round": "depth of round brackets ( ), after reading the character",
    "square": "depth of square brackets [ ]",
    "curly": "depth of curly brackets { }",
    "line": "position in the line: characters since the last line break",
    "word": "start of a word: 1 on a word's first letter or digit",
    "vowel": "vowel (1) or consonant (0); letters only",
    "digit": "a digit (1) or not (0)",
}
VOWELS = set("aeiouAEIOUàáâäèéêëìíîïòóôöùúûüÀÁÂÄÈÉÊËÌÍÎÏÒÓÔÖÙÚÛÜ")


def _depth(text: str, opening: str, closing: str) -> np.ndarray:
    """Bracket depth after each character, never below 0 (a stray closing bracket is ignored):
    the running sum of +1/-1 reflected at 0, d_t - min(0, min_{s<=t} d_s)."""
    c = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    d = np.cumsum((c == ord(opening)).astype(np.int64) - (c == ord(closing)))
    return (d - np.minimum(np.minimum.accumulate(d), 0)).astype(np.float64)


def _one(text: str, name: str):
    """(values, mask or None) of feature `name` over one sequence."""
    c = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    if name == "quote":
        return (np.cumsum(c == ord('"')) % 2).astype(np.float64), None
    if name in ("round", "square", "curly"):
        return _depth(text, *{"round": "()", "square": "[]", "curly": "{}"}[name]), None
    if name == "line":
        t = np.arange(len(c))
        last = np.maximum.accumulate(np.where(c == ord("\n"), t, -1))
        return (t - last).astype(np.float64), None  # 0 on a line break, 1 on the next character
    alnum = np.array([ch.isalnum() for ch in text], dtype=bool)
    if name == "word":
        return (alnum & ~np.concatenate([[False], alnum[:-1]])).astype(np.float64), None
    if name == "vowel":
        letters = np.array([ch.isalpha() for ch in text], dtype=bool)
        return np.array([ch in VOWELS for ch in text], dtype=np.float64), letters
    if name == "digit":
        return np.array([ch.isdigit() for ch in text], dtype=np.float64), None
    raise ConfigError(f"unknown feature {name!r}; choose from {', '.join(FEATURES)}")


def _matches(text: str, pattern: re.Pattern):
    v = np.zeros(len(text))
    for m in pattern.finditer(text):
        v[m.start() : m.end()] = 1
    return v, None


def feature(rec: Recording, name: str, regex: bool = False):
    """(values (L,) float64, mask (L,) bool or None) of a built-in feature, or with `regex` of
    the characters inside matches of the pattern `name` (1) against the rest (0)."""
    if regex:
        try:
            pattern = re.compile(name)
        except re.error as e:
            raise ConfigError(f"--find-regex {name!r} is not a regular expression: {e}") from None
        one = lambda t: _matches(t, pattern)
    else:
        if name not in FEATURES:
            raise ConfigError(f"unknown feature {name!r}; choose from {', '.join(FEATURES)}")
        one = lambda t: _one(t, name)
    parts = [one(rec.text[a:b]) for a, b in rec.spans]
    values = np.concatenate([v for v, _ in parts])
    masks = [m for _, m in parts]
    if all(m is None for m in masks):
        return values, None
    return values, np.concatenate([np.ones(b - a, bool) if m is None else m
                                   for m, (a, b) in zip(masks, rec.spans)])


# --------------------------------------------------------------------------------------------
# Correlation of every unit with features

BLOCK = 4096  # rows at a time: what the temporaries of one series hold


def correlations(rec: Recording, feats: list, series=None) -> list[tuple[list, np.ndarray]]:
    """Pearson's r of every unit of `series` (default: all) with each feature (values, mask):
    per feature (unit names, r (units,)), over the steps the feature's mask keeps. A unit or a
    feature constant over those steps gets r = 0.

    One pass over each series, in blocks of rows, as three skinny matrix multiplies in the
    recording's dtype (sums over a block; the blocks' sums are added in float64): the features
    centred (within their masks) times X gives the covariances; the masks times X and X^2 the
    units' means and variances. X is shifted by a per-unit constant first (its mean over the first
    block), so a nearly constant unit (a saturated gate) keeps its small variance."""
    names = list(rec.arrays) if series is None else list(series)
    L = len(rec.text)
    masks = [np.ones(L, bool) if m is None else m for _, m in feats]
    unique = list({m.tobytes(): m for m in masks}.values())  # usually 1 or 2 distinct masks
    which = [next(u for u, m2 in enumerate(unique) if np.array_equal(m, m2)) for m in masks]
    M64 = np.stack(unique, axis=1).astype(np.float64)  # (L, U)
    n = M64.sum(axis=0)[which]  # (F,) steps each feature counts
    V = np.stack([v for v, _ in feats], axis=1)  # (L, F)
    Mf = M64[:, which]
    Fc64 = (V - (V * Mf).sum(axis=0) / np.maximum(n, 1)) * Mf  # centred within the mask, 0 off
    var_f = (Fc64 * Fc64).sum(axis=0) / np.maximum(n, 1)
    k = np.maximum(n, 1)[:, None]
    out = [([], []) for _ in feats]
    for name in names:
        X = rec.arrays[name]
        dt = X.dtype if X.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        Mx, Fc = M64.astype(dt), Fc64.astype(dt)
        shift = X[:BLOCK].mean(axis=0, dtype=np.float64).astype(dt)
        H = X.shape[1]
        Sx, Sxx = np.zeros((len(unique), H)), np.zeros((len(unique), H))
        Sxf = np.zeros((len(feats), H))
        for lo in range(0, L, BLOCK):
            Xs = np.subtract(X[lo : lo + BLOCK], shift, dtype=dt)  # (B, H)
            Sx += Mx[lo : lo + BLOCK].T @ Xs
            Sxf += Fc[lo : lo + BLOCK].T @ Xs
            Xs *= Xs
            Sxx += Mx[lo : lo + BLOCK].T @ Xs
        mean_x = Sx[which] / k  # of the shifted values
        sq = Sxx[which] / k
        var_x = np.maximum(sq - mean_x * mean_x, 0)
        flat = var_x <= 1e-10 * np.maximum(sq, np.finfo(dt).tiny)  # constant up to rounding
        denom = np.sqrt(var_x * var_f[:, None])
        r = np.where(flat | (denom == 0), 0.0, (Sxf / k) / np.where(denom == 0, 1, denom))
        for j in range(len(feats)):
            out[j][0].extend(f"{name}.{u}" for u in range(H))
            out[j][1].append(np.clip(r[j], -1, 1))
    return [(units, np.concatenate(rs)) for units, rs in out]


class Found(NamedTuple):
    feature: str  # a built-in feature's name, or the regular expression
    description: str
    units: list  # [(unit name, r)], the best first (by |r|)
    steps: int  # characters the feature was measured over
    constant: bool  # the feature does not vary in this text: nothing to find
    regex: bool = False  # `feature` is a regular expression


def find(rec: Recording, features=None, regexes=(), top: int = 3, series=None) -> list[Found]:
    """The `top` units that follow each feature best (by |r|, sign kept: a unit that is low
    inside quotes follows them as well as one that is high), for the built-in `features`
    (default: all of FEATURES) and the regular expressions `regexes`."""
    wanted = [(f, False) for f in (FEATURES if features is None else features)]
    wanted += [(p, True) for p in regexes]
    feats = [feature(rec, f, regex) for f, regex in wanted]
    found = []
    for (f, regex), (values, mask), (units, r) in zip(wanted, feats,
                                                      correlations(rec, feats, series)):
        kept = values if mask is None else values[mask]
        constant = kept.size == 0 or bool(np.all(kept == kept[0]))
        order = np.argsort(-np.abs(r), kind="stable")[:top]
        desc = f"characters matching /{f}/" if regex else FEATURES[f]
        found.append(Found(f, desc, [(units[i], float(r[i])) for i in order] if not constant
                           else [], int(kept.size), constant, regex))
    return found


def excerpt(values: np.ndarray, mask, width: int) -> tuple[int, int]:
    """(start, stop) of the `width` characters over which the feature varies most (its variance
    there, the characters outside the mask counting as its mean): the stretch that shows best
    whether a unit follows it."""
    L = len(values)
    if L <= width:
        return 0, L
    v = values.astype(np.float64)
    if mask is not None:
        v = np.where(mask, v, v[mask].mean() if mask.any() else 0)
    s1 = np.concatenate([[0], np.cumsum(v)])
    s2 = np.concatenate([[0], np.cumsum(v * v)])
    sums, squares = s1[width:] - s1[:-width], s2[width:] - s2[:-width]
    var = squares / width - (sums / width) ** 2
    start = int(np.argmax(var + 1e-9 * np.arange(len(var))[::-1]))  # ties: the earliest
    return start, start + width


# --------------------------------------------------------------------------------------------
# Gate saturation: how often a gate is nearly shut (below 0.1) or fully open (above 0.9)

LEFT, RIGHT = 0.1, 0.9


class Saturation(NamedTuple):
    series: str  # "l1.f"
    left: np.ndarray  # (H,) per unit, the fraction of steps below LEFT
    right: np.ndarray  # (H,) the fraction of steps above RIGHT


def saturation(rec: Recording) -> list[Saturation]:
    """For every gate series (bounds (0, 1): LSTM i f o, GRU r z), each unit's fraction of steps
    left-saturated (< 0.1) and right-saturated (> 0.9), as Karpathy et al. (2015, figure 3)
    plot them."""
    out = []
    for name, X in rec.arrays.items():
        if rec.bounds(name) == (0.0, 1.0):
            out.append(Saturation(name, (X < LEFT).mean(axis=0), (X > RIGHT).mean(axis=0)))
    return out
