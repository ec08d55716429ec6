"""`charrnn gradcheck`: the hand-written gradients against finite differences."""

from __future__ import annotations

import sys
import time

import click
from rich.table import Table

from ..nn.cells import CELLS
from ..tools.gradcheck import TASKS
from .console import CONTEXT, _finite, err


@click.command(context_settings=CONTEXT)
@click.option("--task", type=click.Choice(["all", *TASKS]), default="all", show_default=True,
              help="Model family to check: the language model (lm), the classifier, the tagger "
              "or the encoder-decoder (a bidirectional encoder over padded sequences of "
              "different lengths), the conditioned generator (both ways in), or all of them.")
@click.option("--cell", type=click.Choice(["all", *CELLS], case_sensitive=False), default="all",
              show_default=True, help="Cell type to check, or all of them.")
@click.option("--layers", type=click.IntRange(1), multiple=True, default=(1, 2),
              show_default=True, help="Stacked layers to check; repeat for several (dropout is "
              "on for 2 or more).")
@click.option("--hidden", type=click.IntRange(1), default=5, show_default=True,
              help="Hidden units H.")
@click.option("--seq", type=click.IntRange(1), default=7, show_default=True,
              help="Time steps T in the chunk.")
@click.option("--batch", type=click.IntRange(1), default=2, show_default=True,
              help="Parallel streams N.")
@click.option("--vocab", type=click.IntRange(2), default=4, show_default=True,
              help="Vocabulary size V of the random test text.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Random seed.")
@click.option("--tol", type=click.FloatRange(0, min_open=True), default=1e-6, show_default=True,
              callback=lambda ctx, param, v: _finite(v), help="Largest relative error that passes.")
def gradcheck(task, cell, layers, hidden, seq, batch, vocab, seed, tol):
    """Check the hand-written gradients against finite differences, in float64.

    For each model family (--task), cell and depth, the analytic gradient of the loss (plus a
    random linear function of the final state, for the language model) with respect to every
    parameter and the initial state is compared with a five-point central difference. The
    classifier and the tagger are checked with a bidirectional encoder over sequences of
    different lengths, padding included, and so is the encoder-decoder (seq2seq); the
    classifier pools, and the encoder-decoder attends, as the rnn: last/none, gru:
    mean/additive, lstm: max/dot rows say. The generator is checked with its condition (random
    vectors) entering each way: the initial state and every step's input. The error shown is the worst element's difference
    divided by the largest gradient element of that parameter. Exits 0 if all pass, 1
    otherwise.
    """
    from ..tools import gradcheck as G

    cells = tuple(CELLS) if cell == "all" else (cell.lower(),)
    start = time.perf_counter()
    tasks = G.TASKS if task == "all" else (task,)
    results = G.run(cells, tuple(sorted(set(layers))), tol=tol, tasks=tasks, hidden=hidden,
                    seq=seq, batch=batch, vocab=vocab, seed=seed)
    elapsed = time.perf_counter() - start

    table = Table(title=f"gradient check (N={batch}, T={seq}, V={vocab}, H={hidden}, float64)")
    for col in ("model", "layers", "parameter", "max rel. error", "result"):
        table.add_column(col, justify="right" if col in ("layers", "max rel. error") else "left")
    for r in results:
        verdict = "[green]pass[/]" if r.passed else f"[red]FAIL[/] at {r.worst_index}"
        table.add_row(r.cell, str(r.layers), r.name, f"{r.rel_error:.2e}", verdict)
    err.print(table)

    failed = [r for r in results if not r.passed]
    worst = max(results, key=lambda r: r.rel_error)
    summary = (f"{len(results)} gradients, worst relative error {worst.rel_error:.2e} "
               f"({worst.cell} {worst.layers}-layer {worst.name}), tolerance {tol:g}, "
               f"{elapsed:.1f} s")
    if failed:
        click.echo(f"gradcheck FAILED: {len(failed)} of {summary}")
        sys.exit(1)
    click.echo(f"gradcheck passed: {summary}")
