"""Using a classifier or a tagger: predictions for texts, and scoring a labelled file
(`charrnn predict` and `charrnn eval` on those checkpoints).

A checkpoint of these families holds its vocabulary (the unknown symbol first, see
charrnn.data.labelled) and, in meta["labels"], the class names or tag characters in id order.
Characters the vocabulary lacks are read as the unknown symbol and counted.
"""

from __future__ import annotations

import numpy as np

from ..data import labelled as L
from ..data.summary import summarize
from ..errors import CheckpointError, CorpusError
from ..models import family
from ..models.encoded import predict_rows
from ..nn.metrics import figures

# the contract's ANSWERS these read (a label per text, a tag per character), and the kind of
# labelled file each reads (charrnn.data.labelled.read, charrnn.data.summary)
KINDS = {"label": "classify", "tags": "tag"}


def _setup(ckpt):
    F = family(ckpt.family)
    if getattr(F, "ANSWERS", None) not in ("label", "tags"):
        raise CheckpointError(f"this checkpoint holds a {ckpt.family} model; predict and this "
                              f"eval are for models that label texts or characters (--task "
                              f"classify, tag)")
    labels = ckpt.meta.get("labels")
    K = F.param_shapes(ckpt.model)["by"][0]  # the head's outputs: one per label
    if not isinstance(labels, list) or len(labels) != K:
        raise CheckpointError(f"the checkpoint's labels are missing or not {K} of them")
    return F, labels


def probabilities(ckpt, texts: list[str], workers=None) -> tuple[list, int]:
    """(per text its probabilities: (K,) for a classifier, (len, K) for a tagger; the number of
    characters outside the vocabulary)."""
    F, _ = _setup(ckpt)
    empty = [i for i, t in enumerate(texts) if not t]
    if empty:
        raise CorpusError(f"text {empty[0] + 1} is empty; there is nothing to predict from")
    ids, unknown = L.encode(ckpt.vocab, texts)
    return predict_rows(F, ckpt.params, ckpt.model, ids, workers), unknown


def classify(ckpt, texts: list[str], top: int = 1) -> tuple[list, int]:
    """(per text its `top` most likely (label, probability) pairs, best first; unknown count)."""
    _, labels = _setup(ckpt)
    probs, unknown = probabilities(ckpt, texts)
    out = []
    for p in probs:
        best = np.argsort(-p, kind="stable")[:top]
        out.append([(labels[k], float(p[k])) for k in best])
    return out, unknown


def tag(ckpt, texts: list[str]) -> tuple[list[str], int]:
    """(per text its tag string, one tag per character; unknown count)."""
    _, labels = _setup(ckpt)
    probs, unknown = probabilities(ckpt, texts)
    return ["".join(labels[k] for k in p.argmax(axis=1)) for p in probs], unknown


def segment(text: str, tags: str, start: str = "B") -> str:
    """`text` with a space before every character tagged `start` (but the first)."""
    return "".join((" " + c) if t == start and i else c for i, (c, t) in enumerate(zip(text, tags)))


def evaluate_file(ckpt, path, encoding: str = "utf-8") -> dict:
    """Score a labelled file of the checkpoint's kind. A classifier: accuracy, macro accuracy
    (the mean per-class recall; macro_accuracy_own over the classes with a text of their own),
    per class recall/precision/support and the confusion matrix; a tagger: per-character
    accuracy and per tag precision, recall and F1. Both: what the file holds
    (charrnn.data.summary: examples, distinct, duplicated and conflicting texts, and for a
    classifier accuracy_ceiling and classes_without_own_text), how many characters, and how
    many were outside the vocabulary."""
    F, labels = _setup(ckpt)
    per_char = F.ANSWERS == "tags"
    kind = KINDS[F.ANSWERS]
    ex = L.read(path, kind, encoding)
    index = {y: i for i, y in enumerate(labels)}
    for y, at in zip(ex.targets, ex.where):
        bad = [c for c in y if c not in index] if per_char else ([] if y in index else [y])
        if bad:
            raise CorpusError(f"{at}: {'tag' if per_char else 'label'} {bad[0]!r} "
                              f"is not one the model knows ({', '.join(map(repr, labels))})")
    probs, unknown = probabilities(ckpt, ex.texts)
    result = {"task": ckpt.family, **summarize(ex.texts, ex.targets, kind),
              "characters": sum(len(t) for t in ex.texts), "unknown_characters": unknown}
    if not per_char:
        truth = np.array([index[y] for y in ex.targets])
        pred = np.array([int(p.argmax()) for p in probs])
        f = figures(truth, pred, len(labels))
        result.update(accuracy=f["accuracy"], macro_accuracy=f["macro_accuracy"],
                      per_class={labels[k]: {"recall": _num(f["recall"][k]),
                                             "precision": _num(f["precision"][k]),
                                             "support": int(f["support"][k])}
                                 for k in range(len(labels))},
                      labels=list(labels), confusion=f["confusion"].tolist())
        # the macro accuracy over the classes that have a text of their own (see
        # charrnn.data.summary): the ones a perfect model of these data can recall at all
        none = set(result["classes_without_own_text"])
        own = [k for k in range(len(labels)) if labels[k] not in none and f["support"][k]]
        result["macro_accuracy_own"] = (float(np.mean([f["recall"][k] for k in own]))
                                        if own else None)
    else:
        truth = np.array([index[c] for y in ex.targets for c in y])
        pred = np.concatenate([p.argmax(axis=1) for p in probs])
        f = figures(truth, pred, len(labels))
        result.update(accuracy=f["accuracy"],
                      per_tag_f1={labels[k]: _num(f["f1"][k]) for k in range(len(labels))},
                      per_tag={labels[k]: {"precision": _num(f["precision"][k]),
                                           "recall": _num(f["recall"][k]),
                                           "f1": _num(f["f1"][k]),
                                           "support": int(f["support"][k])}
                               for k in range(len(labels))})
    return result


def _num(x) -> float | None:
    """A float for JSON; None for nan (a class never predicted, or absent)."""
    x = float(x)
    return None if np.isnan(x) else x
