"""`charrnn info`: describe a checkpoint (model, settings, vocabulary, learning curves)."""

from __future__ import annotations

import json

import click
from rich.table import Table

from .console import CONTEXT, PATH, HiddenArgument, open_checkpoint, out


@click.command(context_settings=CONTEXT)
@click.argument("positional", required=False, type=PATH, cls=HiddenArgument)
@click.option("--checkpoint", "-c", type=PATH, metavar="PATH",
              help="Checkpoint file or run directory (its best.npz, else last.npz). Default: the "
              "most recently written run under runs/.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: checkpoint, task, model (its settings), parameters, "
              "vocabulary (the characters in order), corpus, step, elapsed (seconds), best "
              "(the best validation figure, named by metric), train (the training settings), "
              "history (the records of metrics.jsonl) and, for labelled data, data (what the "
              "corpus and the validation part held: examples, distinct_texts, duplicated_texts, "
              "conflicting_texts, conflicts, accuracy_ceiling, classes_without_own_text, and "
              "val_overlap with --val); keys the checkpoint lacks are null.")
def info(positional, checkpoint, as_json):
    """Describe a checkpoint: model, training settings, vocabulary and learning curves.

    -c/--checkpoint is a checkpoint file or a run directory (it may also be given as the only
    argument); default: the most recently written run under runs/. A vocabulary of more than
    200 characters is summarised: its size, how many are CJK ideographs, letters, digits,
    punctuation and so on, and a sample (--json lists every character). The chart plots train (·)
    and validation (●) bits per character by step from the run's history.
    """
    from rich.text import Text

    from .. import runs as I

    if positional is not None and checkpoint is not None and positional != checkpoint:
        raise click.UsageError("give the checkpoint once: -c PATH or PATH")
    file, ckpt = open_checkpoint(checkpoint if checkpoint is not None else positional)
    if as_json:
        click.echo(json.dumps(I.to_json(file, ckpt), ensure_ascii=False))
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in I.summary(file, ckpt):
        table.add_row(label, Text(value))
    out.print(table)
    target = I.target_vocab(ckpt)
    for name, chars in (("source: ", ckpt.vocab.chars), ("target: ", target)) if target \
            else (("", ckpt.vocab.chars),):
        out.print(Text(name + (I.vocab_text(chars) if len(chars) <= I.FULL_VOCAB
                               else I.vocab_summary(chars))), soft_wrap=len(chars) <= I.FULL_VOCAB)
    flat = I.settings(ckpt)
    if flat:
        out.print()
        out.print(Text("training settings", style="bold"))
        out.print(Text(", ".join(f"{k}={v}" for k, v in flat.items())), soft_wrap=False)
    history = ckpt.meta.get("history")
    bpc = isinstance(history, list) and any(isinstance(r, dict) and "train_bpc" in r
                                            for r in history)
    lines = I.chart(I.curves(history), label="bpc" if bpc or not history else "loss")
    out.print()
    if lines:
        for line in lines:
            out.print(Text(line), soft_wrap=True)
    else:
        out.print("no training history in this checkpoint")
