"""What a labelled data set holds: copies, conflicting labels, and the accuracy they allow.

Read as a user should before trusting a figure (`charrnn train` prints it first, `info` keeps
it, `eval` reports it for the file it scores):

    examples            lines (examples) read
    distinct_texts      different input texts among them
    duplicated_texts    distinct texts that occur more than once
    conflicting_texts   distinct texts that occur with more than one target (label, tag string;
                        for seq2seq: several references, which is normal there)
    conflicts           up to three of those, the most divided first: {"text", "targets":
                        {target: count}}

and for a classifier, whose prediction is one function of the text:

    accuracy_ceiling    the best accuracy any classifier can reach on these examples: each
                        distinct text predicted as its most frequent label, so it scores that
                        label's count of its copies; sum over texts / examples
    classes_without_own_text
                        classes that are not the sole most frequent label of any of their
                        texts (each of their texts carries another label as often or more):
                        the ceiling's classifier never predicts them, so their recall is 0
                        there, and a low recall measures the data, not the model

On the bundled names (corpora/names): 20,050 examples, 17,456 distinct surnames, 465 under two
or more languages, a ceiling of 0.972 over the whole set; 99 of the 100 Scottish surnames are
also English ones (tests/data/test_summary.py checks these against a count of its own).
"""

from __future__ import annotations

from collections import Counter


def _by_text(texts, targets) -> dict:
    """{text: Counter of its targets}, texts in first-seen order."""
    out: dict = {}
    for t, y in zip(texts, targets):
        out.setdefault(t, Counter())[y] += 1
    return out


def summarize(texts, targets, kind: str = "classify", shown: int = 3) -> dict:
    """The figures of the module docstring (JSON-ready) for the examples (texts, targets)."""
    by = _by_text(texts, targets)
    conflicted = [(t, c) for t, c in by.items() if len(c) > 1]
    conflicted.sort(key=lambda tc: (-len(tc[1]), -sum(tc[1].values())))  # stable: file order
    out = {"examples": len(texts), "distinct_texts": len(by),
           "duplicated_texts": sum(sum(c.values()) > 1 for c in by.values()),
           "conflicting_texts": len(conflicted),
           "conflicts": [{"text": t, "targets": dict(c.most_common())}
                         for t, c in conflicted[:shown]]}
    if kind == "classify":
        out["accuracy_ceiling"] = (sum(max(c.values()) for c in by.values()) / len(texts)
                                   if texts else None)
        own = set()
        for c in by.values():
            (first, n1), *rest = c.most_common(2)
            if not rest or rest[0][1] < n1:
                own.add(first)
        out["classes_without_own_text"] = sorted(set(targets) - own)
    return out


def overlap(train_texts, val_texts) -> dict:
    """How much of a validation set the training set holds: validation examples, and distinct
    validation texts, whose text is also a training text."""
    seen = set(train_texts)
    return {"examples": sum(t in seen for t in val_texts),
            "distinct_texts": len({t for t in val_texts if t in seen}),
            "of_examples": len(val_texts)}


def _short(text: str, width: int = 24) -> str:
    return repr(text if len(text) <= width else text[: width - 1] + "…")


def conflict_text(s: dict, kind: str = "classify") -> str:
    """The conflicts named, e.g. "'Abel': French 1, English 1; 'Adam': ...", or ""."""
    parts = []
    for c in s["conflicts"]:
        if kind == "classify":
            parts.append(f"{_short(c['text'])}: "
                         + ", ".join(f"{y} {n}" for y, n in c["targets"].items()))
        else:
            parts.append(f"{_short(c['text'])} ({len(c['targets'])} "
                         f"{'tag strings' if kind == 'tag' else 'references'})")
    return "; ".join(parts)


def line(s: dict, kind: str = "classify") -> str:
    """One line for a person: the examples, distinct, duplicated and conflicting texts, with the
    conflicts named."""
    what = {"classify": "labels", "tag": "tags", "seq2seq": "targets (references)"}[kind]
    text = (f"{s['examples']:,} examples, {s['distinct_texts']:,} distinct texts, "
            f"{s['duplicated_texts']:,} with copies, {s['conflicting_texts']:,} with more than "
            f"one of their {what}")
    named = conflict_text(s, kind)
    return text + (f" (e.g. {named})" if named else "")


def ceiling_text(s: dict) -> str:
    """ "accuracy ceiling 0.972 (each text's most frequent label)", with the classes that have
    no text of their own."""
    text = f"accuracy ceiling {s['accuracy_ceiling']:.3f} (each text as its most frequent label)"
    none = s["classes_without_own_text"]
    if none:
        text += f"; no text of their own: {', '.join(none)}"
    return text


def report(corpus, train, val, kind: str, val_file: bool) -> tuple[dict, list[str]]:
    """What `charrnn train` says of its data (Examples of the corpus, and the training and
    validation parts): ({"data", "validation", "val_overlap"} summaries, lines to print)."""
    data = summarize(corpus.texts, corpus.targets, kind)
    held = summarize(val.texts, val.targets, kind)
    lines = [f"data: {line(data, kind)}"]
    what = "validation file" if val_file else "validation part"
    ceiling = f", {ceiling_text(held)}" if kind == "classify" else ""
    lines.append(f"{what}: {held['examples']:,} examples, {held['distinct_texts']:,} distinct "
                 f"texts{ceiling}")
    shared = overlap(train.texts, val.texts) if val_file else None
    if shared:
        lines.append(f"warning: {shared['examples']:,} of the {shared['of_examples']:,} "
                     f"validation examples ({shared['distinct_texts']:,} distinct texts) are "
                     f"also in the training data: validation partly measures memory"
                     if shared["examples"] else
                     "the validation file shares no text with the training data")
    return {"data": data, "validation": held, "val_overlap": shared}, lines
