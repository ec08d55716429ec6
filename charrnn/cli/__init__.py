"""The command line: a thin shell over the library.

Every command parses options, calls the Python API, and renders results. Library errors
(CharrnnError) become one-line messages with exit status 1 here, in one place (CharrnnGroup);
Ctrl-C exits with 130, a closed stdout pipe ends quietly, and output that cannot be written (a full
disk) is a one-line error too. stdout carries only a command's
result (generated text for `sample`); tables, progress and warnings go to stderr.
"""

from __future__ import annotations

import math
import os
import sys
import time

import click
from rich.console import Console
from rich.table import Table

from .. import __version__
from ..errors import CharrnnError
from ..nn.cells import CELLS


class _Console(Console):
    """Rich's Console, but a reader that goes away is not fatal. On stdout a BrokenPipeError
    reaches CharrnnGroup, which ends quietly as for `charrnn sample | head`; on stderr the
    console just goes quiet, so a training run whose log reader has gone (`2>&1 | head`) keeps
    going and saves as usual. (Rich's own handler exits with status 1 at once.)"""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        if not self.stderr:
            raise BrokenPipeError
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stderr.fileno())
        except (OSError, ValueError):
            pass


out = _Console(highlight=False)  # results
err = _Console(stderr=True, highlight=False)  # tables, progress, warnings


class CharrnnGroup(click.Group):
    """Turns the library's errors into one-line messages instead of tracebacks."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CharrnnError as e:
            raise click.ClickException(str(e)) from None
        except MemoryError:
            hint = ": try a smaller --batch, --seq or --hidden" if ctx.invoked_subcommand in (
                "train", "gradcheck", "gradflow") else ""
            raise click.ClickException(f"out of memory{hint}") from None
        except BrokenPipeError:  # e.g. `charrnn sample | head`
            _silence_stdout()
            ctx.exit(0)
        except KeyboardInterrupt:  # Click would print "Aborted!" and exit 1
            err.print("interrupted")
            ctx.exit(130)
        except OSError as e:  # e.g. stdout on a full disk (`> /dev/full`)
            _silence_stdout()
            what = f"{e.filename}: " if e.filename else "cannot write output: "
            raise click.ClickException(f"{what}{e.strerror or e}") from None


def _silence_stdout():
    """After a broken pipe, point stdout at /dev/null so Python's exit-time flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


CELL_CHOICE = click.Choice(list(CELLS), case_sensitive=False)


def _finite(value: float) -> float:
    """Click's FloatRange lets nan (and inf, when unbounded above) through."""
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=CharrnnGroup, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="charrnn")
def cli():
    """Character-level language models (vanilla RNN, GRU, LSTM) in NumPy, with hand-written
    backpropagation through time that you can check against finite differences.

    \b
    Typical use:
      charrnn train corpus.txt          train a model on your text (default: tiny Shakespeare)
      charrnn sample --prime "hel"      generate text from the most recent run
      charrnn gradcheck                 verify every gradient against finite differences

    Run `charrnn COMMAND --help` for each command's options.
    """


@cli.command(context_settings=CONTEXT)
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
def gradcheck(cell, layers, hidden, seq, batch, vocab, seed, tol):
    """Check the hand-written gradients against finite differences, in float64.

    For each cell and depth, the analytic gradient of the loss (plus a random linear function of
    the final state) with respect to every parameter and the initial state is compared with a
    five-point central difference. The error shown is the worst element's difference divided by
    the largest gradient element of that parameter. Exits 0 if all pass, 1 otherwise.
    """
    from ..tools import gradcheck as G

    cells = tuple(CELLS) if cell == "all" else (cell.lower(),)
    start = time.perf_counter()
    results = G.run(cells, tuple(sorted(set(layers))), tol=tol, hidden=hidden, seq=seq,
                    batch=batch, vocab=vocab, seed=seed)
    elapsed = time.perf_counter() - start

    table = Table(title=f"gradient check (N={batch}, T={seq}, V={vocab}, H={hidden}, float64)")
    for col in ("cell", "layers", "parameter", "max rel. error", "result"):
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


def main():
    if sys.stdout is None:  # started with stdout closed (`>&-`): results go nowhere, quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    try:
        cli(prog_name="charrnn")
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


# The commands live in their own modules; importing them registers them on the group.
from . import inspect as cli_inspect
from . import train as cli_train  # noqa: F401
