"""`charrnn gradcheck`: the hand-written gradients against finite differences."""

from __future__ import annotations

import sys
import time

import click
from rich.table import Table

from ..checks.gradcheck import TASKS
from ..nn.cells import CELLS
from .console import CONTEXT, _finite, err


@click.command(context_settings=CONTEXT)
@click.option("--task", type=click.Choice(["all", *TASKS]), default="all", show_default=True,
              help="Task (model family) to check: the language model (lm), the classifier, the tagger "
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
    otherwise. Progress goes to stderr as it runs: a bar on a terminal, else one line per
    family and cell when its checks are done.
    """
    from ..checks import gradcheck as G

    cells = tuple(CELLS) if cell == "all" else (cell.lower(),)
    start = time.perf_counter()
    tasks = G.TASKS if task == "all" else (task,)
    checks = G.plan(cells, tuple(sorted(set(layers))), tasks)
    results = []
    with _Progress(len(checks)) as progress:
        for task_, cell_, n in checks:
            progress.starting(task_, cell_, n)
            got = G.check(task_, cell_, n, tol=tol, hidden=hidden, seq=seq, batch=batch,
                          vocab=vocab, seed=seed)
            results += got
            progress.done(got)
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


class _Progress:
    """What gradcheck is doing, on stderr: a bar naming the current family, cell and depth on a
    terminal; otherwise one line per family and cell when its depths are done (e.g. "lm gru:
    24 gradients, worst 3.1e-11, 2.0 s")."""

    def __init__(self, total: int):
        self.total, self.count, self.key, self.group, self.since = total, 0, None, [], 0.0
        self.bar = None

    def __enter__(self):
        if err.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                MofNCompleteColumn(), console=err, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("gradcheck", total=self.total)
        return self

    def starting(self, task: str, cell: str, layers: int) -> None:
        if (task, cell) != self.key:
            self._flush()
            self.key, self.since = (task, cell), time.perf_counter()
        if self.bar is not None:
            self.bar.update(self.task, description=f"{task} {cell} {layers}-layer")

    def done(self, results) -> None:
        self.count += 1
        self.group += results
        if self.bar is not None:
            self.bar.update(self.task, completed=self.count)

    def _flush(self) -> None:
        if self.key is None or self.bar is not None:
            return
        worst = max((r.rel_error for r in self.group), default=0.0)
        failed = sum(not r.passed for r in self.group)
        err.print(f"{' '.join(self.key)}: {len(self.group)} gradients, worst {worst:.1e}"
                  + (f", {failed} FAILED" if failed else "")
                  + f", {time.perf_counter() - self.since:.1f} s ({self.count}/{self.total} "
                  f"checks)", markup=False)
        self.group = []

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        elif exc[0] is None:
            self._flush()
        return False
