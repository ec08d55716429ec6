"""Measuring a conditioned generator (charrnn.models.generate, `charrnn eval`): held-out bits per
character overall and per label, the novelty of what it generates, and how often a classifier
of ours assigns a generated text to the label it was generated for.

    r = evaluate_file(ckpt, "test.tsv")                  {"bpc": ..., "per_label": {...}, ...}
    names(ckpt, "Russian", 10, seed=0)                   ten generated texts
    novelty(ckpt, training_texts, ["Russian"], 100, 0)   share of distinct texts not in training
    judge(ckpt, classifier_ckpt, ["Russian"], 100, 0)    share the classifier labels "Russian"

Texts for a label are drawn from a generator seeded with (seed, the label's index), so a label's
texts do not depend on which other labels are asked for, and novelty and judge of one seed look
at the very same texts. Unless told otherwise they are drawn at temperature 1 from each step's
nucleus of probability TOP_P (`sample_config`), as `charrnn sample --label` draws them.
"""

from __future__ import annotations

import math

import numpy as np

from ..data import labelled as L
from ..data import pairs as P
from ..errors import CheckpointError, ConfigError
from ..models import family
from ..models import generate as G
from .sample import SampleConfig, generate_conditioned, label_condition

LN2 = math.log(2.0)
MAX_LENGTH = 50  # characters at most per generated text, unless told
# A generator draws each character from the smallest set of most likely characters whose
# probability reaches TOP_P, unless told otherwise (--top-p; 1 draws from all): nucleus sampling's
# usual setting (Holtzman et al., 2020), the model's own probabilities within the nucleus. A
# model's rarest choices are where it is least right: on the names, texts drawn from every
# character were further from their language, both for our classifier and for an n-gram one,
# than the real names it had not seen (docs/en/guides/generate.md: agreement and novelty over
# temperature and top-p).
TOP_P = 0.9


def sample_config(temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None, greedy: bool = False,
                  length: int = MAX_LENGTH) -> SampleConfig:
    """A generator's sampling settings: SampleConfig's, with top_p TOP_P unless given or
    greedy (which takes the most likely character, no nucleus)."""
    if top_p is None and not greedy:
        top_p = TOP_P
    return SampleConfig(length=length, temperature=temperature, greedy=greedy, top_k=top_k,
                        top_p=top_p)


def labels_of(ckpt) -> list:
    """The run's labels (CheckpointError when it is not a generator or they are missing)."""
    if not hasattr(family(ckpt.family), "conditioned_lm"):
        raise CheckpointError(f"this checkpoint holds a {ckpt.family} model, not a generator "
                              f"(--task generate)")
    labels = ckpt.meta.get("labels")
    if not isinstance(labels, list) or len(labels) != ckpt.model.cond_size:
        raise CheckpointError(f"the checkpoint's labels are missing or not "
                              f"{ckpt.model.cond_size} of them")
    return labels


def evaluate_file(ckpt, path, encoding: str = "utf-8", workers=None) -> dict:
    """Bits per character (END included) of a labelled file (the classifier's formats), overall
    and per label; characters outside the vocabulary read as UNKNOWN and counted."""
    labels = labels_of(ckpt)
    ex = L.read(path, "classify", encoding)
    y = G.label_ids(labels, ex.targets, ex.where)
    texts, unknown = P.encode_targets(ckpt.vocab, ex.texts, ex.where)
    nats = G.text_nll(ckpt.params, ckpt.model, texts, G.one_hot(y, len(labels), ckpt.model.dtype),
                      workers)
    chars = np.array([len(t) + 1 for t in texts])
    per = {}
    for k, name in enumerate(labels):
        sel = y == k
        if sel.any():
            per[name] = {"bpc": float(nats[sel].sum() / chars[sel].sum() / LN2),
                         "examples": int(sel.sum()), "chars": int(chars[sel].sum())}
    return {"task": G.NAME, "file": str(path), "bpc": float(nats.sum() / chars.sum() / LN2),
            "nats": float(nats.sum() / chars.sum()), "chars": int(chars.sum()),
            "examples": len(texts), "unknown_characters": unknown, "per_label": per}


def names(ckpt, label: str, n: int, seed: int = 0, config: SampleConfig | None = None,
          prime: str = "") -> list[str]:
    """n texts generated for `label` (the prime included), from a generator seeded with (seed,
    the label's index); config None: `sample_config()`."""
    labels = labels_of(ckpt)
    cond = label_condition(labels, label, ckpt.model.dtype)
    config = config or sample_config()
    rng = np.random.default_rng([seed, labels.index(label)])
    return ["".join(generate_conditioned(ckpt.params, ckpt.model, ckpt.vocab, cond, prime,
                                         config, rng)) for _ in range(n)]


def _each(ckpt, which, n, seed, config):
    labels = labels_of(ckpt)
    which = list(labels if which is None else which)
    return {y: names(ckpt, y, n, seed, config) for y in which}


def novelty(ckpt, training_texts, which=None, n: int = 100, seed: int = 0,
            config: SampleConfig | None = None) -> dict:
    """For n texts generated per label in `which` (None: every label): the share of the distinct
    generated texts that are not among `training_texts`, overall and per label."""
    seen = set(training_texts)
    made = _each(ckpt, which, n, seed, config)

    def figure(texts):
        distinct = set(texts)
        new = len(distinct - seen)
        return {"novelty": new / len(distinct) if distinct else None,
                "distinct": len(distinct), "novel": new, "generated": len(texts)}

    return {**figure([t for ts in made.values() for t in ts]),
            "per_label": {y: figure(ts) for y, ts in made.items()}}


def judge(ckpt, classifier, which=None, n: int = 100, seed: int = 0,
          config: SampleConfig | None = None) -> dict:
    """For n texts generated per label in `which` (None: every label): how often `classifier`
    (a classify checkpoint) gives each its label, overall and per label. An empty text counts
    as a disagreement (there is nothing to classify)."""
    from .predict import classify

    if getattr(family(classifier.family), "ANSWERS", None) != "label":
        raise CheckpointError(f"the judge holds a {classifier.family} model; it must be a "
                              f"classifier (--task classify)")
    known = set(classifier.meta.get("labels") or [])
    made = _each(ckpt, which, n, seed, config)
    missing = [y for y in made if y not in known]
    if missing:
        raise ConfigError(f"the judge does not know the label {missing[0]!r}; its labels are: "
                          f"{', '.join(sorted(known))}")
    per, agree_all, total = {}, 0, 0
    for y, texts in made.items():
        real = [t for t in texts if t]
        got = [r[0][0] for r in classify(classifier, real)[0]] if real else []
        agree = sum(g == y for g in got)
        confused: dict = {}
        for g in got:
            if g != y:
                confused[g] = confused.get(g, 0) + 1
        per[y] = {"agreement": agree / len(texts), "agree": agree, "generated": len(texts),
                  "empty": len(texts) - len(real),
                  "taken_for": dict(sorted(confused.items(), key=lambda kv: -kv[1])[:3])}
        agree_all, total = agree_all + agree, total + len(texts)
    return {"agreement": agree_all / total, "agree": agree_all, "generated": total,
            "per_label": per}
