"""`charrnn predict` (classifiers and taggers) and the labelled-file side of `charrnn eval`."""

from __future__ import annotations

import json
import sys

import click
from rich.table import Table

from .console import CONTEXT, err


@click.command(context_settings=CONTEXT)
@click.argument("texts", nargs=-1, metavar="[TEXT]...")
@click.option("--checkpoint", "-c", metavar="PATH",
              help="Checkpoint file or run directory. Default: the most recently written run "
              "under runs/.")
@click.option("--top", type=click.IntRange(1), default=1, show_default=True,
              help="classify: print the TOP most likely labels, each with its probability.")
@click.option("--segment", is_flag=True,
              help="tag: print the text split into words at each B tag instead of the tags.")
def predict(texts, checkpoint, top, segment):
    """Label texts with a classifier or a tagger (`charrnn train --task classify|tag`).

    Each TEXT, or each line of stdin when none is given, gets one line on stdout: for a
    classifier its label, a tab and the label's probability (with --top K, K such pairs, best
    first, tab-separated); for a tagger its tag string, one tag per character (with --segment,
    the text with a space before every character tagged B). Characters the model never saw in
    training are read as the unknown symbol; how many there were goes to stderr.

    \b
    Examples:
      charrnn predict -c runs/names Nakamura Schmidt O'Brien
      charrnn predict -c runs/names --top 3 < surnames.txt
      charrnn predict -c runs/segment --segment "tobeornottobe"
    """
    from .. import checkpoint as C
    from ..tools import predict as P
    from ..tools.info import find_checkpoint

    path = find_checkpoint(checkpoint)
    ckpt = C.load(path)
    if ckpt.family == "lm":
        raise click.UsageError(f"{path} holds a language model: use `charrnn sample` or "
                               f"`charrnn eval`; predict is for classify and tag models")
    if not texts:
        texts = tuple(line.rstrip("\r\n") for line in sys.stdin)
        texts = tuple(t for t in texts if t)
    if not texts:
        raise click.UsageError("no TEXT given and nothing on stdin")
    if ckpt.family == "classify":
        if segment:
            raise click.UsageError("--segment is for taggers; this is a classifier")
        results, unknown = P.classify(ckpt, list(texts), top)
        lines = ["\t".join(f"{label}\t{p:.4f}" for label, p in r) for r in results]
    else:
        if top != 1:
            raise click.UsageError("--top is for classifiers; this is a tagger")
        tags, unknown = P.tag(ckpt, list(texts))
        lines = [P.segment(t, g) if segment else g for t, g in zip(texts, tags)]
    for line in lines:
        click.echo(line)
    if unknown:
        err.print(f"note: {unknown:,} character{'s' if unknown != 1 else ''} outside the "
                  f"model's vocabulary, read as the unknown symbol", markup=False)


def eval_labelled(path, ckpt, file: str, encoding: str, as_json: bool) -> None:
    """`charrnn eval` of a classifier or a tagger on a labelled file: a table on stderr, the
    figures on stdout (one JSON object with --json)."""
    from ..tools.predict import evaluate_file

    r = evaluate_file(ckpt, file, encoding)
    if as_json:
        click.echo(json.dumps(r))
        return
    if r["task"] == "classify":
        labels = r["labels"]
        table = Table(title=f"{file}: true label (rows) against predicted (columns)")
        table.add_column("")
        for y in labels:
            table.add_column(y[:4], justify="right")
        table.add_column("recall", justify="right")
        for k, y in enumerate(labels):
            rec = r["per_class"][y]["recall"]
            table.add_row(y, *[str(v) if v else "·" for v in r["confusion"][k]],
                          "-" if rec is None else f"{rec:.2f}")
        err.print(table)
        click.echo(f"accuracy {r['accuracy']:.4f}  macro accuracy {r['macro_accuracy']:.4f}  "
                   f"({r['examples']:,} examples)")
    else:
        table = Table(title=f"{file}: per tag")
        for col in ("tag", "precision", "recall", "F1", "support"):
            table.add_column(col, justify="left" if col == "tag" else "right")
        fmt = lambda v: "-" if v is None else f"{v:.4f}"
        for t, f in r["per_tag"].items():
            table.add_row(repr(t), fmt(f["precision"]), fmt(f["recall"]), fmt(f["f1"]),
                          f"{f['support']:,}")
        err.print(table)
        f1 = "  ".join(f"F1 {t} {fmt(v)}" for t, v in r["per_tag_f1"].items())
        click.echo(f"accuracy {r['accuracy']:.4f}  {f1}  ({r['characters']:,} characters)")
    if r["unknown_characters"]:
        err.print(f"note: {r['unknown_characters']:,} characters outside the model's "
                  f"vocabulary, read as the unknown symbol", markup=False)
