"""`charrnn eval`: score a file with a trained model (bits per character, or a labelled
file's accuracy, F1 or exact match; a generator's bits per character per label, the novelty of
what it generates and a classifier's agreement with it)."""

from __future__ import annotations

import json
import math
import time

import click
from rich.table import Table

from .console import (
    CONTEXT,
    PATH,
    FiniteFloat,
    err,
    is_generator,
    kernels_option,
    open_checkpoint,
    out,
)


@click.command("eval", context_settings=CONTEXT)
@click.argument("file", metavar="[FILE]", type=PATH, required=False)
@click.option("--checkpoint", "-c", type=PATH, metavar="PATH",
              help="Checkpoint file or run directory. Default: the most recently written run "
              "under runs/.")
@click.option("--strict", is_flag=True,
              help="Fail on characters outside the model's vocabulary instead of skipping them.")
@click.option("--show", is_flag=True,
              help="Print the text coloured by the model's surprise at each character (with "
              "NO_COLOR set: a row of digits, 0-7 bits, under each line).")
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of FILE.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result as one JSON object: task, file, checkpoint, bpc, nats, "
              "perplexity (null if beyond float range), chars_scored, chars_read, unknown_chars "
              "(count), unknown (the distinct characters) and seconds; for classifiers, taggers "
              "and encoder-decoders their own figures (see docs/en/guides/labelled-data.md, pairs.md and generate.md).")
@click.option("--novelty", is_flag=True,
              help="A generator (--task generate): also generate -n texts per label and report "
              "the share of the distinct ones that are not in the run's training data.")
@click.option("--judge", type=PATH, metavar="CLASSIFIER_RUN", default=None,
              help="A generator: generate -n texts per label and report how often this "
              "classifier run (--task classify) assigns each to the label it was generated for. "
              "FILE may then be left out.")
@click.option("-n", "per_label", type=click.IntRange(1), default=100, show_default=True,
              help="A generator: texts generated per label for --novelty and --judge.")
@click.option("--label", "-l", "labels", multiple=True, metavar="LABEL",
              help="A generator: generate for this label only (repeat for several)  [default: "
              "every label]")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="A generator: seed of the texts generated for --novelty and --judge.")
@click.option("--temperature", "-t", type=FiniteFloat(1e-100), default=1.0, show_default=True,
              help="A generator: the sampling temperature of the texts generated for --novelty "
              "and --judge (below 1: more typical texts).")
@click.option("--top-p", type=FiniteFloat(0, 1, min_open=True), default=None, metavar="P",
              help="A generator: draw the texts for --novelty and --judge from the smallest set "
              "of most likely characters whose probability reaches P (1: from all), as `charrnn "
              "sample` does.  [default: 0.9]")
@kernels_option
def eval_(file, checkpoint, strict, show, encoding, as_json, novelty, judge, per_label, labels,
          seed, temperature, top_p, kernels):
    """Score a text file: bits and nats per character, and perplexity, over the whole file.

    The state is carried from the first character to the last; every character after the first
    is predicted from all before it. Characters outside the vocabulary are skipped and counted
    (--strict makes them an error). The result is one line on stdout; with --show the text comes
    first, each character's background coloured by -log2 p (a key goes to stderr).

    \b
    Examples:
      charrnn eval held_out.txt
      charrnn eval --show -c runs/tinyshakespeare poem.txt
      charrnn eval --json held_out.txt | jq .bpc
      charrnn eval -c runs/gen test.tsv --novelty         a generator: bpc per label, novelty
      charrnn eval -c runs/gen --judge runs/names -l Russian -l Japanese
    """
    import os

    from ..data.text import read_corpus
    from ..infer.scoring import digit_map, heat_map, legend, perplexity_text, score_text
    from ..models import family

    if show and as_json:
        raise click.UsageError("--show and --json both write to stdout; give one of them")
    if file is not None:  # the file's own errors first, then the checkpoint's
        if not os.path.lexists(file):
            raise click.ClickException(f"file not found: {file}")
        text = None if os.path.isdir(file) else read_corpus(file, encoding)
    path, ckpt = open_checkpoint(checkpoint, kernels=kernels)
    gen = {"novelty": novelty, "judge": judge, "labels": labels, "temperature": temperature,
           "top_p": top_p, "kernels": kernels}
    if not is_generator(ckpt) and (novelty or judge or labels or top_p is not None):
        raise click.UsageError(f"--novelty, --judge, --label and --top-p are for a generator "
                               f"(--task generate); {path} holds a {ckpt.family} model")
    if is_generator(ckpt):
        if strict or show:
            raise click.UsageError("--strict and --show are for language models; a generator "
                                   "reads unknown characters as the unknown symbol")
        if file is None and not (novelty or judge):
            raise click.UsageError("give FILE (labelled examples to score), --novelty or --judge")
        return eval_labelled(path, ckpt, file, encoding, as_json=as_json, generated=gen,
                             per_label=per_label, seed=seed)
    if file is None:
        raise click.UsageError("missing argument FILE")
    if text is None:
        text = read_corpus(file, encoding)  # a directory: the reader's own message
    err.print(f"scoring {file} with {path}", markup=False)
    if not hasattr(family(ckpt.family), "stepper"):  # not a plain language model: examples
        return eval_labelled(path, ckpt, file, encoding, as_json=as_json)
    start = time.perf_counter()
    result = score_text(ckpt.params, ckpt.model, ckpt.vocab, text, strict=strict)
    elapsed = time.perf_counter() - start
    if result.oov * 2 > len(text):
        err.print(f"warning: {result.oov / len(text):.0%} of {file} is characters the model "
                  f"has never seen; the score covers only the rest", markup=False, soft_wrap=True)
    if show:
        if out.no_color or os.environ.get("NO_COLOR"):  # https://no-color.org: digits instead
            out.file.write(digit_map(text, result))
            out.file.flush()
            err.print(legend(colour=False))
        else:
            out.print(heat_map(text, result), soft_wrap=True,
                      end="" if text.endswith("\n") else "\n")
            err.print(legend())
    s = result.score
    if as_json:
        finite = lambda v: v if math.isfinite(v) else None
        click.echo(json.dumps({
            "task": ckpt.family, "file": file, "checkpoint": str(path), "bpc": finite(s.bpc), "nats": finite(s.nats),
            "perplexity": finite(s.perplexity), "chars_scored": s.chars,
            "chars_read": len(text), "unknown_chars": result.oov, "unknown": result.unknown,
            "seconds": elapsed}, ensure_ascii=False))
    else:
        click.echo(perplexity_text(result))
    # the same count as the result line's, then what else was read
    err.print(f"scored {s.chars:,} of {len(text):,} characters read (the first is not predicted"
              + (f", {result.oov:,} unknown skipped" if result.oov else "")
              + f") in {elapsed:.2f} s ({s.chars / max(elapsed, 1e-9):,.0f} characters/s)",
              markup=False, soft_wrap=True)


def eval_labelled(path, ckpt, file: str, encoding: str, as_json: bool, **generated) -> None:
    """`charrnn eval` of a classifier, a tagger, an encoder-decoder or a generator on a labelled
    file: a table on stderr, the figures on stdout (one JSON object with --json)."""
    from ..models import family

    if is_generator(ckpt):
        return _eval_generated(path, ckpt, file, encoding, as_json, **generated)
    if getattr(family(ckpt.family), "ANSWERS", None) == "text":
        from ..infer.translate import evaluate_file as translate_file

        r = translate_file(ckpt, file, encoding)
        if as_json:
            click.echo(json.dumps({"task": ckpt.family, **r}))
        else:
            click.echo(f"exact match {r['exact_match']:.4f}  character error rate "
                       f"{r['char_error_rate']:.4f}  ({r['examples']:,} sources, {r['pairs']:,} "
                       f"pairs; an output equal to any reference matches)")
        if r["unknown_characters"] and not as_json:
            err.print(f"note: {r['unknown_characters']:,} source characters outside the model's "
                      f"vocabulary, read as the unknown symbol", markup=False)
        return
    from ..infer.predict import evaluate_file

    r = evaluate_file(ckpt, file, encoding)
    if as_json:
        click.echo(json.dumps(r))
        return
    from ..data import summary as S

    if "confusion" in r:  # a label per text
        labels, none = r["labels"], set(r["classes_without_own_text"])
        table = Table(title=f"{file}: true label (rows) against predicted (columns)",
                      caption="* no text of its own: each of its texts carries another label as "
                      "often or more, so a model at the accuracy ceiling recalls none of it" if none else None)
        table.add_column("")
        for y in labels:
            table.add_column(y[:4], justify="right")
        table.add_column("recall", justify="right")
        for k, y in enumerate(labels):
            rec = r["per_class"][y]["recall"]
            table.add_row(y, *[str(v) if v else "·" for v in r["confusion"][k]],
                          ("-" if rec is None else f"{rec:.2f}") + (" *" if y in none else ""))
        err.print(table)
        err.print(f"data: {S.line(r, 'classify')}", markup=False, soft_wrap=True)
        own = r["macro_accuracy_own"]
        click.echo(f"accuracy {r['accuracy']:.4f} of a possible {r['accuracy_ceiling']:.4f}  "
                   f"macro accuracy {r['macro_accuracy']:.4f}"
                   + (f" ({own:.4f} over the classes with texts of their own)"
                      if none and own is not None else "")
                   + f"  ({r['examples']:,} examples, {r['distinct_texts']:,} distinct texts)")
    else:
        table = Table(title=f"{file}: per tag")
        for col in ("tag", "precision", "recall", "F1", "support"):
            table.add_column(col, justify="left" if col == "tag" else "right")
        fmt = lambda v: "-" if v is None else f"{v:.4f}"
        for t, f in r["per_tag"].items():
            table.add_row(repr(t), fmt(f["precision"]), fmt(f["recall"]), fmt(f["f1"]),
                          f"{f['support']:,}")
        err.print(table)
        err.print(f"data: {S.line(r, 'tag')}", markup=False, soft_wrap=True)
        f1 = "  ".join(f"F1 {t} {fmt(v)}" for t, v in r["per_tag_f1"].items())
        click.echo(f"accuracy {r['accuracy']:.4f}  {f1}  ({r['characters']:,} characters)")
    if r["unknown_characters"]:
        err.print(f"note: {r['unknown_characters']:,} characters outside the model's "
                  f"vocabulary, read as the unknown symbol", markup=False)


def _eval_generated(path, ckpt, file, encoding, as_json, generated, per_label, seed) -> None:
    """A generator: FILE's bits per character overall and per label; --novelty, --judge."""
    from .. import checkpoint as C
    from ..data import labelled as L
    from ..errors import CheckpointError
    from ..infer import generated as G

    labels = G.labels_of(ckpt)
    which = list(generated["labels"]) or None
    config = G.sample_config(generated["temperature"], top_p=generated["top_p"])
    if which:
        for y in which:
            G.label_condition(labels, y)  # a one-line error listing the labels
    r = {"task": ckpt.family, "checkpoint": str(path)}
    if generated["novelty"] or generated["judge"]:
        r.update(per_label_generated=per_label, seed=seed, temperature=config.temperature,
                 top_p=config.top_p)
    if file is not None:
        err.print(f"scoring {file} with {path}", markup=False)
        r.update(G.evaluate_file(ckpt, file, encoding))
    if generated["novelty"]:
        train = ckpt.meta.get("train") or {}
        if not isinstance(train.get("corpus"), str):
            raise CheckpointError(f"{path} does not record its training data, which --novelty "
                                  f"compares with")
        corpus = C.recorded_corpus(train["corpus"], path.parent, train.get("out"))
        r["novelty"] = G.novelty(ckpt, L.read(corpus, "classify").texts, which, per_label, seed,
                                 config)
        r["novelty"]["training_data"] = corpus
    if generated["judge"]:
        from .console import open_checkpoint

        jpath, judge = open_checkpoint(generated["judge"], kernels=generated["kernels"])
        r["judge"] = {"checkpoint": str(jpath), **G.judge(ckpt, judge, which, per_label, seed, config)}
    if as_json:
        click.echo(json.dumps(r, ensure_ascii=False))
        return
    table = Table(title="per label")
    rows = sorted(set(r.get("per_label", {})) | set(r.get("novelty", {}).get("per_label", {}))
                  | set(r.get("judge", {}).get("per_label", {})), key=labels.index)
    cols = [("bits/char", "per_label", "bpc", "{:.3f}"), ("novelty", "novelty", "novelty",
            "{:.1%}"), ("agreement", "judge", "agreement", "{:.1%}")]
    cols = [c for c in cols if c[1] in r]
    table.add_column("label")
    for name, *_ in cols:
        table.add_column(name, justify="right")
    for y in rows:
        cells = []
        for _, part, key, fmt in cols:
            v = (r[part] if part == "per_label" else r[part]["per_label"]).get(y, {}).get(key)
            cells.append("-" if v is None else fmt.format(v))
        table.add_row(y, *cells)
    err.print(table)
    line = []
    if "bpc" in r:
        line.append(f"bits per character {r['bpc']:.4f} ({r['chars']:,} characters with END, "
                    f"{r['examples']:,} texts)")
    if "novelty" in r:
        nv = r["novelty"]
        line.append(f"novelty {nv['novelty']:.1%} ({nv['novel']:,} of {nv['distinct']:,} "
                    f"distinct texts)")
    if "judge" in r:
        j = r["judge"]
        line.append(f"agreement {j['agreement']:.1%} ({j['agree']:,} of {j['generated']:,})")
    click.echo("  ".join(line))
    if r.get("unknown_characters"):
        err.print(f"note: {r['unknown_characters']:,} characters outside the model's "
                  f"vocabulary, read as the unknown symbol", markup=False)
