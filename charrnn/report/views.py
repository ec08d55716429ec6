"""What each model family shows of itself, computed from its checkpoint and its own validation data.

The validation data is rebuilt exactly as the trainer built it (the family's load_data with the
run's saved settings: the same file, split and seed), so a classifier's confusion matrix or a
seq2seq model's attention maps are of examples the model never trained on. Every function here
returns plain data (numbers, strings, arrays); charrnn.report.figures draws them.

    settings(run)            (label, value) rows: the model and how it was trained
    validation_data(run)     the family's Data, the corpus found where the run recorded it
    sample(run)              a language model's text
    class_scores(run, data)  a classifier's or tagger's confusion matrix and per-class figures
    attention_examples(...)  a seq2seq model's outputs and attention on validation sources
    gradient_flow(runs)      charrnn.checks.gradflow's series of each language model
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import checkpoint as C
from ..errors import CharrnnError, ConfigError
from ..models import family
from ..runs import summary
from .runs import Run

SAMPLE_LENGTH = 400
ATTENTION_EXAMPLES = 4
LONGEST_SOURCE = 40  # attention maps of longer sources are unreadable on a page


def settings(run: Run) -> tuple[list, list]:
    """(the checkpoint's summary: charrnn info's rows; the training settings, those the summary
    already gives left out)."""
    if run.ckpt is None:
        return [], []
    rows = summary(run.checkpoint, run.ckpt)
    train = run.ckpt.meta.get("train")
    shown = {"task", "model", "corpus", "fused_cells", "out"}  # in the summary, or the path
    rows2 = [(k, _text(v)) for k, v in train.items() if k not in shown] \
        if isinstance(train, dict) else []
    return rows, rows2


def _text(v) -> str:
    return "—" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def training_config(run: Run):
    """The run's TrainConfig as saved, its corpus path made to work from here."""
    from ..train.config import TrainConfig, as_run

    saved = run.ckpt.meta.get("train") if run.ckpt is not None else None
    if not isinstance(saved, dict):
        raise CharrnnError(f"{run.checkpoint} records no training settings, so its validation "
                           f"data cannot be rebuilt")
    saved = as_run(dict(saved))
    where = run.path if run.path.is_dir() else run.path.parent
    for key in ("corpus", "val"):
        if isinstance(saved.get(key), str):
            saved[key] = C.recorded_corpus(saved[key], where, saved.get("out"))
    return TrainConfig.from_dict(saved)


def validation_data(run: Run):
    """The family's Data for this run (vocabulary, validation split, data summary in .info)."""
    return family(run.family).load_data(training_config(run), run.ckpt)


def sample(run: Run, length: int = SAMPLE_LENGTH, seed: int = 1, temperature: float = 0.8,
           prime: str = "") -> str:
    """`length` characters of a language model's text (charrnn sample's generator, seeded)."""
    from ..infer.sample import SampleConfig, generate

    ck = run.ckpt
    pieces = generate(ck.params, ck.model, ck.vocab, prime,
                      SampleConfig(length=length, temperature=temperature),
                      np.random.default_rng(seed))
    return "".join(pieces)


class Scores(NamedTuple):
    """A classifier's (per example) or tagger's (per character) figures on validation data."""

    labels: list  # class names or tag characters, in id order
    confusion: np.ndarray  # (K, K) counts: row = true, column = predicted
    precision: np.ndarray  # (K,) nan where never predicted
    recall: np.ndarray  # (K,) nan where absent
    f1: np.ndarray  # (K,)
    support: np.ndarray  # (K,) true count
    accuracy: float
    unit: str  # "examples" or "characters"


def class_scores(run: Run, data) -> Scores:
    """Predict every validation example (the most likely class, or tag per character)."""
    from ..models.encoded import predict_rows
    from ..nn.metrics import figures

    if run.answers not in ("label", "tags"):
        raise ConfigError(f"{run.name} is a {run.family} model; scores per class are for "
                          f"classifiers and taggers")
    ck = run.ckpt
    ids, truth = data.val
    probs = predict_rows(family(run.family), ck.params, ck.model, ids)
    if run.answers == "label":
        pred = np.array([int(p.argmax()) for p in probs])
        truth = np.asarray(truth)
    else:
        pred = np.concatenate([p.argmax(axis=1) for p in probs])
        truth = np.concatenate(truth)
    f = figures(truth, pred, len(data.labels))
    return Scores(list(data.labels), f["confusion"], f["precision"], f["recall"], f["f1"],
                  f["support"], f["accuracy"],
                  "examples" if run.answers == "label" else "characters")


class Attention(NamedTuple):
    source: str
    output: str  # the greedy output (END dropped)
    references: list  # the validation targets of this source
    weights: np.ndarray  # (M, len(source)): M outputs, the end marker's row included if reached


def attention_examples(run: Run, data, n: int = ATTENTION_EXAMPLES) -> list[Attention]:
    """The first `n` distinct validation sources no longer than LONGEST_SOURCE (else the
    shortest), greedily decoded, with where each output character looked."""
    from ..infer.translate import translate

    if run.answers != "text":
        raise ConfigError(f"{run.name} is a {run.family} model; attention maps are for seq2seq "
                          f"models")
    chars = run.ckpt.vocab.chars
    groups = [("".join(chars[i] for i in ids), refs) for ids, refs in data.val_groups]
    short = [g for g in groups if len(g[0]) <= LONGEST_SOURCE]
    chosen = (short or sorted(groups, key=lambda g: len(g[0])))[:n]
    if not chosen:
        return []
    outs, weights, _ = translate(run.ckpt, [s for s, _ in chosen])
    return [Attention(s, o, refs, w) for (s, refs), o, w in zip(chosen, outs, weights)]


def gradient_flow(runs: list[Run], length: int = 100, samples: int = 16, seed: int = 0):
    """charrnn.checks.gradflow's Flow of each language model among `runs` (the others skipped),
    measured on the corpus each recorded, labelled with the run's name."""
    from ..checks.gradflow import from_checkpoint

    flows = []
    for run in runs:
        if run.has("stepper") and run.checkpoint is not None:
            flow = from_checkpoint(run.checkpoint, length=length, samples=samples, seed=seed)
            flows.append(flow._replace(label=run.name))
    return flows
