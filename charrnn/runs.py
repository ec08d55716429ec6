"""Finding checkpoints and describing them: the latest run, a summary, a text chart of the curves.

Used by `charrnn sample`, `eval`, `info`, `predict` and `runs`. A *run* is a directory holding
`best.npz` and/or `last.npz` (see charrnn.train); without an explicit checkpoint the commands use
the run under `runs/` whose checkpoint was written most recently, among those of a family the
command can use (`find_checkpoint(families=...)`). Nothing here prints: the chart is returned as
lines of plain text (no plotting library), so it works in any terminal, pipe or log file.

Checkpoints written by hand (model, vocabulary and parameters only) are described too: every
`meta` key is optional.
"""

from __future__ import annotations

import math
import os
import unicodedata
from pathlib import Path
from typing import NamedTuple

from . import checkpoint as C
from .errors import CharrnnError, CheckpointError
from .models import family

RUNS = Path("runs")
NAMES = (f"best{C.SUFFIX}", f"last{C.SUFFIX}")


def latest_run(root: str | os.PathLike = RUNS) -> Path | None:
    """The run directory under `root` whose best/last checkpoint is newest, or None."""
    root = Path(root)
    newest, when = None, -math.inf
    try:
        dirs = [d for d in root.iterdir() if d.is_dir()]
    except OSError:
        return None
    for d in dirs:
        for name in NAMES:
            f = d / name
            try:
                t = f.stat().st_mtime if f.is_file() else None
            except OSError:
                t = None
            if t is not None and t > when:
                newest, when = d, t
    return newest


class Run(NamedTuple):
    """A run directory as `charrnn runs` lists it. Fields the checkpoint lacks are None; a
    checkpoint that cannot be read has family None and `error` saying why."""

    path: Path  # the run directory
    checkpoint: Path  # its best.npz, else last.npz
    modified: float  # when its newest checkpoint was written (seconds since the epoch)
    family: str | None  # lm, classify, tag, seq2seq
    model: str | None  # the family's description of the model
    metric: str | None  # the name of the best validation figure, e.g. val_bpc
    best: float | None
    step: int | None
    error: str | None = None


def runs(root: str | os.PathLike = RUNS) -> list[Run]:
    """Every run directory under `root` (one holding best.npz or last.npz), newest first (by
    its newest checkpoint's time). Only each checkpoint's metadata is read."""
    root = Path(root)
    try:
        dirs = [d for d in root.iterdir() if d.is_dir()]
    except OSError:
        return []
    found = []
    for d in dirs:
        times = []
        for name in NAMES:
            try:
                if (d / name).is_file():
                    times.append((d / name).stat().st_mtime)
            except OSError:
                pass
        if times:
            found.append(_describe_run(d, max(times)))
    return sorted(found, key=lambda r: (-r.modified, str(r.path)))


def _describe_run(d: Path, modified: float) -> Run:
    file = C.resolve(d)
    try:
        meta = C.read_meta(file)
        F = family(meta["family"])
        metric, best = F.METRIC, meta.get(f"best_{F.METRIC}")
        best = best if isinstance(best, (int, float)) and math.isfinite(best) else None
        step = meta.get("step") if isinstance(meta.get("step"), int) else None
        model = F.describe(F.Config.from_dict(meta["model"]))
    except (CharrnnError, KeyError, TypeError, ValueError) as e:
        return Run(d, file, modified, None, None, None, None, None, str(e))
    return Run(d, file, modified, F.NAME, model, metric, best, step)


def find_checkpoint(path: str | os.PathLike | None, root: str | os.PathLike = RUNS,
                    families: tuple[str, ...] | None = None) -> Path:
    """The checkpoint file meant by `path` (a file or a run directory), or, when `path` is None,
    by the most recent run under `root` of one of `families` (any family when None): a command
    that needs a language model skips a newer classifier. CheckpointError when there is none."""
    if path is None:
        if families is None:
            run = latest_run(root)
        else:
            listed = runs(root)
            run = next((r.path for r in listed if r.family in families), None)
            if run is None and listed:
                newest = listed[0]
                kinds = " or ".join(families)
                raise CheckpointError(
                    f"no {kinds} run under {Path(root)}/ (the newest, {newest.path}, holds "
                    f"{'a ' + newest.family if newest.family else 'no readable'} model): train "
                    f"one, or give -c/--checkpoint")
        if run is None:
            raise CheckpointError(f"no trained model found under {Path(root)}/: run `charrnn "
                                  f"train` first, or give -c/--checkpoint")
        path = run
    return C.resolve(path)


def age(seconds: float) -> str:
    """A duration as people say it: '40 s', '12 min', '5 h', '3 days'."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def vocab_text(chars) -> str:
    """The vocabulary as one readable line: printable characters as they are, others escaped
    (newline as \\n, space as ␣)."""
    shown = []
    for c in chars:
        if c == " ":
            shown.append("␣")
        elif c.isprintable():
            shown.append(c)
        else:
            shown.append(repr(c)[1:-1])
    return " ".join(shown)


FULL_VOCAB = 200  # larger vocabularies are summarised (vocab_summary), not printed whole

# classes of characters, in the order a summary lists them: (name, test of one character)
_CLASSES = (
    ("CJK ideographs", lambda c: "\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf"
     or "\uf900" <= c <= "\ufaff" or "\U00020000" <= c <= "\U0003134f"),
    ("kana", lambda c: "\u3040" <= c <= "\u30ff" or "\uff66" <= c <= "\uff9f"),
    ("Hangul", lambda c: "\uac00" <= c <= "\ud7af" or "\u1100" <= c <= "\u11ff"),
    ("ASCII letters", lambda c: c.isascii() and c.isalpha()),
    ("other letters", str.isalpha),
    ("digits", str.isdigit),
    ("whitespace", str.isspace),
    ("punctuation", lambda c: unicodedata.category(c).startswith("P")),
    ("symbols", lambda c: unicodedata.category(c).startswith("S")),
)


def char_classes(chars) -> dict[str, int]:
    """How many of `chars` fall in each class (the first class a character fits, in the order
    of _CLASSES; "other" for the rest), classes without any left out."""
    counts: dict[str, int] = {}
    for c in chars:
        name = next((n for n, test in _CLASSES if test(c)), "other")
        counts[name] = counts.get(name, 0) + 1
    order = [n for n, _ in _CLASSES] + ["other"]
    return {n: counts[n] for n in order if n in counts}


def vocab_summary(chars, shown: int = 40) -> str:
    """A large vocabulary in one short paragraph: its size, how many characters of each class,
    and `shown` of them spread evenly over it (every character: vocab_text, or info --json)."""
    chars = list(chars)
    classes = ", ".join(f"{n:,} {name}" for name, n in char_classes(chars).items())
    step = len(chars) / shown
    sample = [chars[int(i * step)] for i in range(shown)] if len(chars) > shown else chars
    return (f"{len(chars):,} characters: {classes}; a sample: {vocab_text(sample)} ... "
            f"(all of them: charrnn info --json)")


def curves(history) -> dict[str, tuple[list[float], list[float]]]:
    """{"train": (steps, train_bpc), "val": (steps, val_bpc)} from meta["history"] records (the
    loss, train_loss and val_loss, for the families that record no bits per character); records
    lacking the fields (or not finite, or beyond 1e15) are skipped."""
    out = {"train": ([], []), "val": ([], [])}
    for rec in history if isinstance(history, list) else []:
        if not isinstance(rec, dict):
            continue
        kind = rec.get("kind")
        keys = {"train": ("train_bpc", "train_loss"), "eval": ("val_bpc", "val_loss")}.get(kind)
        key = next((k for k in keys if k in rec), None) if keys else None
        x, y = rec.get("step"), rec.get(key) if key else None
        if (isinstance(x, (int, float)) and isinstance(y, (int, float)) and abs(x) < 1e15
                and abs(y) < 1e15):  # hand-edited extremes would break the chart's arithmetic
            xs, ys = out["train" if kind == "train" else "val"]
            xs.append(float(x))
            ys.append(float(y))
    return out


MARKS = {"train": "·", "val": "●"}


def chart(series: dict[str, tuple[list[float], list[float]]], width: int = 60,
          height: int = 12, label: str = "bpc") -> list[str]:
    """A text chart of y against x for each series, later series drawn over earlier ones.

    Each series is averaged per column (many train points share a column). Returns the lines:
    a y axis with the top, middle and bottom values, the plot, an x axis with the first and
    last step, and a legend. An empty list when no series has a point.
    """
    pts = [(x, y) for xs, ys in series.values() for x, y in zip(xs, ys)]
    if not pts:
        return []
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.5, y1 + 0.5
    grid = [[" "] * width for _ in range(height)]
    for name, (xs, ys) in series.items():
        cols: dict[int, list[float]] = {}
        for x, y in zip(xs, ys):
            c = 0 if x1 == x0 else round((x - x0) / (x1 - x0) * (width - 1))
            cols.setdefault(c, []).append(y)
        for c, yl in cols.items():
            y = sum(yl) / len(yl)
            r = round((y1 - y) / (y1 - y0) * (height - 1))
            grid[r][c] = MARKS.get(name, "*")
    labels = {0: y1, (height - 1) // 2: (y0 + y1) / 2, height - 1: y0}
    lines = []
    for r, row in enumerate(grid):
        tick = f"{labels[r]:7.3f} ┤" if r in labels else " " * 8 + "│"
        lines.append(tick + "".join(row))
    lines.append(" " * 8 + "└" + "─" * width)
    left, right = f"step {x0:g}", f"{x1:g}"
    lines.append(" " * 9 + left + right.rjust(width - len(left)))
    legend = "   ".join(f"{MARKS.get(n, '*')} {n} {label}" for n, (xs, _) in series.items() if xs)
    lines.append(" " * 9 + legend)
    return lines


def summary(path: Path, ckpt: C.Checkpoint) -> list[tuple[str, str]]:
    """(label, value) rows describing a checkpoint; missing meta keys are left out."""
    F, meta = family(ckpt.family), ckpt.meta
    rows = [("checkpoint", str(path)),
            ("task", F.NAME),
            ("model", F.describe(ckpt.model)),
            ("parameters", f"{F.count_params(ckpt.model):,}"),
            ("vocabulary", f"{len(ckpt.vocab)} characters" if target_vocab(ckpt) is None else
             f"{len(ckpt.vocab)} source characters, {len(target_vocab(ckpt))} target "
             f"characters")]
    if "corpus" in meta:
        rows.append(("corpus", str(meta["corpus"])))
    if "step" in meta:
        rows.append(("steps", f"{meta['step']:,}" if isinstance(meta["step"], int)
                     else str(meta["step"])))
    if isinstance(meta.get("elapsed"), (int, float)):
        rows.append(("training time", f"{meta['elapsed'] / 60:.1f} min"))
    rows.append(("kernels", kernels_text(ckpt)))
    if isinstance(meta.get("numerics"), dict):  # what did the sums (runs saved since 2026-12)
        n = meta["numerics"]
        rows.append(("numerics", f"NumPy {n.get('numpy')}, {n.get('blas')}"
                     + (f", compiled kernels {n['kernels_build']}" if n.get("kernels_build")
                        else "")))
    held = meta.get("data_summary")
    if isinstance(held, dict) and isinstance(held.get("data"), dict):
        rows.extend(data_rows(held, ckpt.family))
    key = f"best_{F.METRIC}"
    best = meta.get(key)
    if isinstance(best, (int, float)):
        rows.append(("best validation", F.describe_metric(best)))
    elif key in meta:
        rows.append(("best validation", "not evaluated yet"))
    return rows


def kernels_text(ckpt: C.Checkpoint) -> str:
    """The kernels that trained the model (when the checkpoint records them) and those that
    sample, eval and predict run it with here by default (charrnn.nn.cells.DEFAULT_KERNELS)."""
    from .nn import cells
    from .train.config import as_run

    m = ckpt.model
    here = cells.choose_kernels(cells.DEFAULT_KERNELS, m.cell, m.dtype)
    why = cells.fused_unavailable(m.cell, m.dtype) if here == "numpy" else None
    train = ckpt.meta.get("train")
    trained = as_run(train).get("kernels") if isinstance(train, dict) else None
    return ((f"{trained} in training; " if isinstance(trained, str) else "")
            + f"{here} here by default" + (f" ({why})" if why else ""))


def data_rows(held: dict, kind: str) -> list[tuple[str, str]]:
    """The rows of what a labelled run's data held (charrnn.data.summary), as saved by train."""
    from .data import summary as S

    rows = []
    try:
        rows.append(("data", S.line(held["data"], kind)))
        v = held.get("validation")
        if isinstance(v, dict):
            rows.append(("validation", f"{v['examples']:,} examples, {v['distinct_texts']:,} "
                         f"distinct texts" + (f", {S.ceiling_text(v)}" if kind == "classify"
                                              else "")))
        o = held.get("val_overlap")
        if isinstance(o, dict):
            shared = (f"{o['examples']:,} of {o['of_examples']:,} examples "
                      f"({o['distinct_texts']:,} distinct texts) also in training")
            rows.append(("validation overlap", shared))
    except (KeyError, TypeError, ValueError):  # a hand-edited summary: show what was readable
        pass
    return rows


def target_vocab(ckpt: C.Checkpoint) -> list[str] | None:
    """An encoder-decoder's target vocabulary (its markers first), None for other families."""
    chars = ckpt.meta.get("target_vocab")
    return list(chars) if isinstance(chars, list) else None


def settings(ckpt: C.Checkpoint) -> dict:
    """The run's settings as `charrnn info` lists them: the model's as the checkpoint holds it
    (sizes that came from the data, such as classes or target_size, are recorded as 0 in the
    training settings, which were written before the data was read), then the training
    settings; the vocabulary size (shown elsewhere) and the settings left at None (not given:
    no --val, no --minutes, ...) are left out."""
    train = ckpt.meta.get("train")
    if not isinstance(train, dict) or not train:
        return {}
    train = {k: v for k, v in train.items() if k != "model"}
    flat = {**ckpt.model.to_dict(), **train}
    flat.pop("vocab_size", None)
    return {k: v for k, v in flat.items() if v is not None}


def to_json(path: Path, ckpt: C.Checkpoint) -> dict:
    """The checkpoint described for other programs (`charrnn info --json`): JSON-ready, keys the
    checkpoint lacks are None, numbers that are not finite become None."""
    F, meta = family(ckpt.family), ckpt.meta

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    best = meta.get(f"best_{F.METRIC}")
    return clean({
        "checkpoint": str(path), "task": F.NAME, "model": ckpt.model.to_dict(),
        "parameters": F.count_params(ckpt.model), "vocabulary": list(ckpt.vocab.chars),
        "corpus": meta.get("corpus"), "step": meta.get("step"), "elapsed": meta.get("elapsed"),
        "best": {F.METRIC: best if isinstance(best, (int, float)) else None},
        "train": meta.get("train"), "history": meta.get("history"),
        "data": meta.get("data_summary")})
