"""Reading a run as it is on disk: its metrics, its checkpoint, whether it is still training.

A run is a directory `charrnn train` wrote (charrnn.train.session: metrics.jsonl, best.npz,
last.npz, train.lock while training), or one checkpoint file, whose own history then stands in
for metrics.jsonl. A run still training is read as it is: a metrics line half-written, or any
line that is not a JSON object, is skipped and counted (`Run.skipped`), never an error; a run with
no checkpoint yet still has its curves.

The curves of each family: the training loss, and the validation figures (`FAMILY_FIGURES`: the
one each family is judged by, bits per character, accuracy, F1 or exact match), the learning rate
and the gradient norm before clipping, by step or by training time.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import checkpoint as C
from ..errors import CharrnnError, CheckpointError

METRICS = "metrics.jsonl"
LOCK = "train.lock"  # charrnn.train.runlock.NAME


@dataclass(frozen=True)
class Figure:
    """One validation figure of a family: its record key, what to call it, and whether higher
    is better."""

    key: str
    label: str
    higher_is_better: bool


# name: (training loss key, validation loss key, loss unit, the family's own validation figures)
FAMILY_FIGURES = {
    "lm": ("train_bpc", "val_bpc", "bits per character",
           (Figure("val_bpc", "bits per character", False),)),
    "classify": ("train_loss", "val_loss", "nats per example",
                 (Figure("val_acc", "accuracy", True),
                  Figure("val_macro_acc", "macro accuracy", True))),
    "tag": ("train_loss", "val_loss", "nats per character",
            (Figure("val_f1", "F1", True), Figure("val_acc", "accuracy", True))),
    "seq2seq": ("train_loss", "val_loss", "nats per output character",
                (Figure("val_exact", "exact match", True),)),
    "generate": ("train_bpc", "val_bpc", "bits per character (end marker included)",
                 (Figure("val_bpc", "bits per character", False),)),
}


@dataclass
class Run:
    path: Path  # the run directory (for a checkpoint file: the file)
    name: str  # the label in legends and headings
    records: list  # the metrics records, in order
    skipped: int  # lines of metrics.jsonl that could not be read
    checkpoint: Path | None  # best.npz, else last.npz (None: not written yet)
    ckpt: C.Checkpoint | None
    family: str | None  # None: no checkpoint, and the records do not tell
    training: bool  # train.lock exists: a trainer is running (or was killed)
    problem: str | None = None  # why the checkpoint could not be read, if it could not

    def has(self, hook: str) -> bool:
        """Whether the run's family has the contract's optional `hook` (charrnn.models:
        "stepper", "conditioned_lm", "ANSWERS"); False when the family is unknown."""
        from ..models import FAMILIES

        return hasattr(FAMILIES.get(self.family), hook)

    @property
    def answers(self) -> str | None:
        """The family's ANSWERS ("label", "tags", "text"), None when it has none."""
        from ..models import FAMILIES

        return getattr(FAMILIES.get(self.family), "ANSWERS", None)

    def series(self, key: str, x: str = "step") -> tuple[np.ndarray, np.ndarray]:
        """(xs, ys) of every record with a finite `key`; x is "step" or "minutes" (elapsed)."""
        xs, ys = [], []
        for r in self.records:
            y = r.get(key)
            at = r.get("step") if x == "step" else r.get("elapsed")
            if _number(y) and _number(at):
                xs.append(at if x == "step" else at / 60)
                ys.append(y)
        return np.array(xs, dtype=float), np.array(ys, dtype=float)

    @property
    def last_step(self) -> int | None:
        steps = [r["step"] for r in self.records if _number(r.get("step"))]
        return int(max(steps)) if steps else None

    @property
    def figures(self):
        """(train key, validation loss key, loss unit, validation figures) of the family."""
        return FAMILY_FIGURES.get(self.family, ("train_loss", "val_loss", "loss", ()))


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_metrics(path: str | os.PathLike) -> tuple[list[dict], int]:
    """(records, lines skipped) of a metrics.jsonl: every line that is a JSON object, in order.
    Blank lines are ignored; anything else (a line cut short by a crash or still being written,
    stray bytes) is skipped and counted."""
    records, skipped = [], 0
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                skipped += 1
                continue
            if isinstance(rec, dict):
                records.append(rec)
            else:
                skipped += 1
    return records, skipped


def guess_family(records) -> str | None:
    """The family whose figures the records carry (for a run with no checkpoint yet)."""
    keys = {k for r in records for k in r}
    for name, (train, _, _, figs) in FAMILY_FIGURES.items():
        if train in keys and all(f.key in keys for f in figs):
            return name
    return None


def read(path: str | os.PathLike, name: str | None = None) -> Run:
    """The run at `path`: a run directory or a checkpoint file. CharrnnError when it is neither;
    an unreadable checkpoint in a run that has metrics is kept as `Run.problem` instead."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"run not found: {path}")
    if path.is_file():
        ckpt = C.load(path)
        history = ckpt.meta.get("history")
        records = [r for r in history if isinstance(r, dict)] if isinstance(history, list) else []
        return Run(path, name or path.stem, records, 0, path, ckpt, ckpt.family, False)
    metrics = path / METRICS
    records, skipped = read_metrics(metrics) if metrics.is_file() else ([], 0)
    try:
        checkpoint = C.resolve(path)
    except CheckpointError:
        checkpoint = None
    if checkpoint is None and not metrics.is_file():
        raise CharrnnError(f"{path} is not a run directory: it has no {METRICS}, best.npz or "
                           f"last.npz")
    ckpt, problem = None, None
    if checkpoint is not None:
        try:
            ckpt = C.load(checkpoint)
        except CheckpointError as e:
            if not records:
                raise
            problem = str(e)
    if ckpt is not None and not records:  # metrics.jsonl lost: the checkpoint's own history
        history = ckpt.meta.get("history")
        records = [r for r in history if isinstance(r, dict)] if isinstance(history, list) else []
    family = ckpt.family if ckpt is not None else guess_family(records)
    return Run(path, name or path.name, records, skipped, checkpoint, ckpt, family,
               (path / LOCK).exists(), problem)


def read_all(paths) -> list[Run]:
    """read() each path, naming each run by its directory, with enough of its path to tell
    runs of the same name apart."""
    paths = [Path(p) for p in paths]
    names = [p.name if p.is_dir() or not p.exists() else p.stem for p in paths]
    names = [str(p) if names.count(n) > 1 else n for p, n in zip(paths, names)]
    return [read(p, n) for p, n in zip(paths, names)]
