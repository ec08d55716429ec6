"""`charrnn runs`: the run directories under runs/, newest first."""

from __future__ import annotations

import json
import time

import click
from rich.table import Table
from rich.text import Text

from .console import CONTEXT, PATH, err, out


@click.command(context_settings=CONTEXT)
@click.option("--root", type=PATH, default="runs", show_default=True, metavar="DIR",
              help="The folder whose run directories to list.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON array, newest first, of objects: run (the directory), "
              "checkpoint (best.npz, else last.npz), task, model (its description), metric (the "
              "name of the validation figure), best (its best value), step, modified (seconds "
              "since the epoch), age_seconds and error (why the checkpoint could not be read, or "
              "null); unknown values are null.")
def runs(root, as_json):
    """List the runs under runs/ (or --root), newest first: task, model, best validation figure,
    steps and age.

    A run is a directory holding best.npz or last.npz (what `charrnn train` writes). Without
    -c, `sample` uses the newest language-model run listed here, `predict` the newest
    classifier, tagger or encoder-decoder, and `eval` and `info` the newest of any kind.

    \b
    Examples:
      charrnn runs
      charrnn runs --json | jq -r '.[] | select(.task == "lm") | .run'
    """
    from .. import runs as I

    listed = I.runs(root)
    now = time.time()
    if as_json:
        click.echo(json.dumps([{
            "run": str(r.path), "checkpoint": str(r.checkpoint), "task": r.family,
            "model": r.model, "metric": r.metric, "best": r.best, "step": r.step,
            "modified": r.modified, "age_seconds": round(now - r.modified, 3),
            "error": r.error} for r in listed], ensure_ascii=False))
        return
    if not listed:
        err.print(f"no runs under {root}/ (`charrnn train` makes them)", markup=False)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("run", "task", "model", "best validation", "steps", "age"):
        table.add_column(col, justify="right" if col in ("steps", "age") else "left",
                         no_wrap=col != "model", overflow="fold")
    for r in listed:
        best = "-" if r.best is None else f"{r.best:.4f} {UNITS.get(r.metric, r.metric)}"
        table.add_row(Text(str(r.path)), r.family or "?",
                      Text(r.model or f"unreadable: {r.error}"), best,
                      "-" if r.step is None else f"{r.step:,}", I.age(now - r.modified))
    if out.is_terminal:
        out.print(table)
        return
    width = out.width  # a pipe or a file gets whole lines, not the table folded to 80 columns
    try:
        out.width = 10_000
        out.print(table)
    finally:
        out.width = width


UNITS = {"val_bpc": "bits/char", "val_error": "error (weighted)", "val_loss": "nats/char"}
