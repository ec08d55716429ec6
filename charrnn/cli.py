"""The command line: a thin shell over the library.

Every command parses options, calls the Python API, and renders results. Library errors
(CharrnnError) become one-line messages with exit status 1 here, in one place (CharrnnGroup);
Ctrl-C exits with 130 and a closed stdout pipe ends quietly. stdout carries only a command's
result (generated text for `sample`); tables, progress and warnings go to stderr.
"""

from __future__ import annotations

import os
import sys
import time

import click
from rich.console import Console
from rich.table import Table

from . import __version__
from .cells import CELLS
from .errors import CharrnnError

out = Console(highlight=False)  # results
err = Console(stderr=True, highlight=False)  # tables, progress, warnings


class CharrnnGroup(click.Group):
    """Turns the library's errors into one-line messages instead of tracebacks."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CharrnnError as e:
            raise click.ClickException(str(e)) from None
        except MemoryError:
            raise click.ClickException("out of memory: try a smaller --batch, --seq or --hidden") from None
        except BrokenPipeError:  # e.g. `charrnn sample | head`
            _silence_stdout()
            ctx.exit(0)
        except KeyboardInterrupt:  # Click would print "Aborted!" and exit 1
            err.print("interrupted")
            ctx.exit(130)


def _silence_stdout():
    """After a broken pipe, point stdout at /dev/null so Python's exit-time flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


CELL_CHOICE = click.Choice(list(CELLS), case_sensitive=False)

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
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--tol", type=click.FloatRange(0, min_open=True), default=1e-6, show_default=True,
              help="Largest relative error that passes.")
def gradcheck(cell, layers, hidden, seq, batch, vocab, seed, tol):
    """Check the hand-written gradients against finite differences, in float64.

    For each cell and depth, the analytic gradient of the loss (plus a random linear function of
    the final state) with respect to every parameter and the initial state is compared with a
    five-point central difference. The error shown is the worst element's difference divided by
    the largest gradient element of that parameter. Exits 0 if all pass, 1 otherwise.
    """
    from . import gradcheck as G

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


# --- train -------------------------------------------------------------------------------------

def _train_defaults():
    from dataclasses import fields

    from .train import TrainConfig
    return {f.name: f.default for f in fields(TrainConfig)}


_TD = _train_defaults()
_POS = click.IntRange(1)


def _duration(seconds):
    if seconds is None or seconds != seconds:
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def _train_line(e, total):
    r = e.record
    steps = f"{e.step}/{total}" if total else str(e.step)
    parts = [f"step {steps}", f"epoch {e.epoch:.2f}"]
    if "train_bpc" in r:
        parts.append(f"train {r['train_bpc']:.3f}")
    if r.get("val_bpc") is not None:
        parts.append(f"val {r['val_bpc']:.3f} bpc")
    if "grad_norm" in r:
        parts.append(f"grad {r['grad_norm']:.2f}")
    if "chars_per_sec" in r:
        parts.append(f"{r['chars_per_sec']:,.0f} chars/s")
    parts.append(f"{_duration(e.left)} left")
    return "  ".join(parts)


class _TrainDisplay:
    """A Rich progress bar on a terminal; otherwise one plain stderr line per evaluation."""

    def __init__(self, live: bool):
        self.live, self.total, self.last, self.progress = live, None, {}, None

    def __call__(self, e):
        if e.kind == "start":
            self.total = e.info["total_steps"]
            err.print(f"training {e.info['params']:,} parameters on {e.info['train_chars']:,} "
                      f"characters (validation {e.info['val_chars']:,}, vocabulary "
                      f"{e.info['vocab']}) into {e.info['run_dir']}"
                      + (f", resuming at step {e.info['resumed_at']}" if e.info["resumed_at"]
                         else ""))
            if self.live:
                from rich.progress import BarColumn, Progress, TextColumn
                self.progress = Progress(BarColumn(bar_width=20),
                                         TextColumn("{task.percentage:>3.0f}%"),
                                         TextColumn("{task.description}"), console=err)
                self.progress.start()
                self.task = self.progress.add_task("starting", total=1.0)
            return
        if e.kind == "eval":
            self.last["val_bpc"] = e.record["val_bpc"]
        else:
            self.last.update(e.record)
        shown = type(e)(e.kind, e.step, e.epoch, e.progress, e.elapsed, e.left, self.last)
        if self.progress is not None:
            self.progress.update(self.task, completed=e.progress,
                                 description=_train_line(shown, self.total))
        elif e.kind == "eval":
            err.print(_train_line(shown, self.total), soft_wrap=True)

    def close(self):
        if self.progress is not None:
            self.progress.stop()


@cli.command(context_settings=CONTEXT)
@click.argument("corpus", required=False, type=click.Path(dir_okay=True, path_type=str))
@click.option("--cell", type=CELL_CHOICE, default=_TD["cell"], show_default=True,
              help="Recurrent cell.")
@click.option("--hidden", type=_POS, default=_TD["hidden"], show_default=True,
              help="Hidden units H per layer.")
@click.option("--layers", type=_POS, default=_TD["layers"], show_default=True,
              help="Stacked recurrent layers.")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=_TD["dropout"],
              show_default=True, help="Dropout between layers and before the output, in [0, 1).")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default=_TD["dtype"],
              show_default=True, help="Floating-point type (float64 for exact checks).")
@click.option("--seed", type=click.IntRange(0), default=_TD["seed"], show_default=True,
              help="Seed of the one random generator (initial weights and dropout).")
@click.option("--batch", type=_POS, default=_TD["batch"], show_default=True,
              help="Parallel streams N over the training text.")
@click.option("--seq", type=_POS, default=_TD["seq"], show_default=True,
              help="Time steps T per chunk (truncated BPTT length).")
@click.option("--optimizer", type=click.Choice(["adam", "rmsprop", "adagrad", "sgd"]),
              default=_TD["optimizer"], show_default=True, help="Update rule (sgd has momentum 0.9).")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=_TD["lr"],
              show_default=True, help="Peak learning rate.")
@click.option("--schedule", type=click.Choice(["cosine", "constant"]), default=_TD["schedule"],
              show_default=True, help="Learning rate after warm-up: cosine decay to 10% over the "
              "budget, or constant.")
@click.option("--warmup", type=click.IntRange(0), default=_TD["warmup"], show_default=True,
              help="Steps of linear learning-rate warm-up.")
@click.option("--clip", type=click.FloatRange(0), default=_TD["clip"], show_default=True,
              help="Clip gradients to this global norm; 0 turns clipping off.")
@click.option("--steps", type=_POS, default=None, help="Stop after this many optimizer steps.")
@click.option("--epochs", type=click.FloatRange(0, min_open=True), default=None,
              help="Stop after this many passes over the training text.")
@click.option("--minutes", type=click.FloatRange(0, min_open=True), default=None,
              help="Stop after this much training time (default 5 when no budget is given).")
@click.option("--eval-every", type=_POS, default=_TD["eval_every"], show_default=True,
              help="Steps between validation passes (and checkpoints).")
@click.option("--patience", type=click.IntRange(0), default=_TD["patience"], show_default=True,
              help="Stop after this many evaluations without a new best; 0: never.")
@click.option("--val-frac", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=_TD["val_frac"], show_default=True,
              help="Fraction of the text, at its end, kept for validation.")
@click.option("--out", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Run directory  [default: runs/<corpus name>]")
@click.option("--resume", is_flag=True,
              help="Continue the run in the run directory exactly where last.npz left it.")
@click.option("--encoding", default=_TD["encoding"], show_default=True,
              help="Text encoding of CORPUS.")
@click.option("--quiet", "-q", is_flag=True,
              help="No progress bar: one plain line per evaluation.")
def train(corpus, resume, quiet, **opts):
    """Train a character model on CORPUS (a text file; default: the bundled tiny Shakespeare).

    The last --val-frac of the text is held out for validation. Training runs --batch streams over
    the rest in chunks of --seq characters, carrying the hidden state between chunks, until the
    first of --steps, --epochs and --minutes is reached (5 minutes if none is given) or
    --patience evaluations pass without improvement. Every --eval-every steps the model is scored
    on the validation text in bits per character, and the run directory gets best.npz, last.npz
    and metrics.jsonl. Ctrl-C stops at the next step boundary, saves last.npz and exits with 130;
    `--resume` continues it bit for bit. Prints the best checkpoint's path on stdout.

    \b
    Examples:
      charrnn train                                  tiny Shakespeare, defaults, 5 minutes
      charrnn train notes.txt --hidden 128 --steps 2000
      charrnn train notes.txt --resume --steps 4000  continue the run in runs/notes
    """
    from click.core import ParameterSource

    from . import train as T

    ctx = click.get_current_context()
    opts = {k: (v.lower() if k == "cell" else v) for k, v in opts.items()}
    if resume:
        given = {k: v for k, v in opts.items()
                 if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE}
        if corpus is not None:
            given["corpus"] = corpus
        run_dir = opts["out"] or os.path.join("runs", os.path.splitext(
            os.path.basename(corpus or T.BUNDLED.name))[0])
        cfg = T.resume_config(run_dir, **given)
    else:
        if corpus is None and not T.BUNDLED.is_file():
            raise click.UsageError(f"no CORPUS given and the bundled corpus is missing "
                                   f"({T.BUNDLED})")
        cfg = T.TrainConfig(corpus=corpus or str(T.BUNDLED), **opts)
    display = _TrainDisplay(live=err.is_terminal and not quiet)
    try:
        try:
            result = T.train(cfg, on_event=display, resume=resume)
        finally:
            display.close()
    except KeyboardInterrupt:  # a second Ctrl-C (left alone, Click says "Aborted!" and exits 1)
        err.print(f"interrupted at once; the checkpoints already in {cfg.run_dir} are intact",
                  markup=False)
        sys.exit(130)

    table = Table(title=f"training {'interrupted' if result.reason == 'interrupted' else 'done'}",
                  show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    rate = [r["chars_per_sec"] for r in result.history if r["kind"] == "train"]
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    for name, value in (("stopped by", result.reason), ("steps", f"{result.step:,}"),
                        ("epochs", f"{result.epoch:.2f}"),
                        ("training time", _duration(result.elapsed)),
                        ("chars/s (latest)", f"{rate[-1]:,.0f}" if rate else "-"),
                        ("best val bits/char", fmt(result.best_val_bpc)),
                        ("last val bits/char", fmt(result.last_val_bpc)),
                        ("run directory", str(result.run_dir))):
        table.add_row(name, value)
    err.print(table)
    click.echo(str(result.run_dir / "best.npz"))
    if result.reason == "interrupted":
        sys.exit(130)


# --- gradflow ----------------------------------------------------------------------------------

@cli.command(context_settings=CONTEXT)
@click.option("--checkpoint", "checkpoints", multiple=True, metavar="PATH",
              help="A checkpoint file or run directory to measure; repeat to compare several. "
              "Without it, fresh lstm, gru and rnn models are compared.")
@click.option("--corpus", default=None, metavar="PATH",
              help="Text to cut the windows from. Default: the bundled tiny Shakespeare for fresh "
              "models, the corpus recorded in each checkpoint otherwise.")
@click.option("--cell", "cells", type=CELL_CHOICE, multiple=True,
              help="Fresh models only: cell type to include; repeat for several. Default: all.")
@click.option("--length", "-K", type=int, default=100, show_default=True,
              help="K: measure the gradient k = 0..K steps before the last step.")
@click.option("--samples", type=int, default=16, show_default=True,
              help="Windows of text to average the gradient norms over.")
@click.option("--hidden", type=int, default=128, show_default=True,
              help="Fresh models only: hidden units H.")
@click.option("--layers", type=int, default=1, show_default=True,
              help="Fresh models only: stacked layers.")
@click.option("--scale", type=float, default=1.0, show_default=True,
              help="Multiply every layer's recurrent weights Wh by this before measuring.")
@click.option("--warmup", type=int, default=100, show_default=True,
              help="Characters each window reads first, from the zero state, to reach a "
              "realistic state.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed for the windows and the fresh models.")
@click.option("--json", "json_path", default=None, metavar="PATH",
              help="Also write the raw series (every k, h and c, per layer) as JSON here.")
def gradflow(checkpoints, corpus, cells, length, samples, hidden, layers, scale, warmup, seed,
             json_path):
    """Show vanishing and exploding gradients: how much the loss at the last step of a window
    depends on the hidden state k steps earlier, for k = 0..K.

    The measure is the mean over windows of |dL/dh| at k steps back (every layer's h together;
    for the LSTM also its cell state c), computed by the trainer's own backward pass, in float64.
    A chart with a logarithmic axis and a table go to stderr; stdout gets one line: the k at
    which each model's gradient falls below 1e-3 of its k = 0 value.

    \b
    Examples:
      charrnn gradflow                         fresh lstm, gru, rnn on tiny Shakespeare
      charrnn gradflow --cell rnn --scale 0.5  a vanilla RNN whose gradient vanishes
      charrnn gradflow --cell rnn --scale 2    ... and one whose gradient explodes
      charrnn gradflow --checkpoint runs/tinyshakespeare     a trained model on its own text
    """
    import re

    from rich import box
    from rich.text import Text

    from . import gradflow as GF
    from .data import read_corpus

    start = time.perf_counter()
    GF.check_settings(length, samples, warmup, scale)
    sizes = dict(length=length, samples=samples, seed=seed, warmup=warmup, scale=scale)
    if checkpoints:
        ctx = click.get_current_context()
        ignored = [option for name, option in (("cells", "--cell"), ("hidden", "--hidden"),
                                                ("layers", "--layers"))
                   if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT]
        if ignored:
            err.print(f"note: {', '.join(ignored)} apply to fresh models only; ignored with "
                      "--checkpoint")
        flows = [GF.from_checkpoint(c, corpus, **sizes) for c in checkpoints]
    else:
        path = corpus or str(GF.BUNDLED)
        flows = GF.compare_fresh(read_corpus(path), tuple(c.lower() for c in cells) or
                                 tuple(CELLS), hidden, layers, corpus=path, **sizes)
    elapsed = time.perf_counter() - start
    if json_path:
        GF.write_json(json_path, GF.to_json(flows, dict(sizes, hidden=hidden, layers=layers,
                                                        corpus=corpus, checkpoints=checkpoints)))

    chart = Text(GF.chart(flows))
    for marker, style in zip(GF.MARKERS, ("red", "green", "blue", "magenta", "cyan", "yellow")):
        chart.highlight_regex(re.escape(marker), style)
    err.print(chart)

    ks = [k for k in GF.TABLE_KS if k <= length]
    table = Table(title=f"mean |dL/dstate| k steps before the last step ({samples} windows, "
                  f"scale {scale:g}, {elapsed:.1f} s)", box=box.SIMPLE_HEAD,
                  caption=f"vanish k: the first k where the norm is below {GF.RATIO:g} of its "
                  "k=0 value", pad_edge=False, collapse_padding=True)
    for col in ("model", "state", "k=0", *(f"k={k}" for k in ks), "vanish k"):
        table.add_column(col, justify="left" if col in ("model", "state") else "right")
    for f in flows:
        for name, series in (("h", f.h), ("c", f.c)):
            if series is not None:
                k = GF.vanish_k(series)
                table.add_row(Text(f.label), name, *(f"{series[j]:.1e}" for j in (0, *ks)),
                              f"> {length}" if k is None else str(k))
    err.print(table)

    below = [(f.label, GF.vanish_k(f.h)) for f in flows]
    click.echo(f"|dL/dh| below {GF.RATIO:g} of its k=0 value at: " + ", ".join(
        f"{label} k={k}" if k is not None else f"{label} k>{length}" for label, k in below))


# --- sample, eval, info ------------------------------------------------------------------------

def _open_checkpoint(path):
    """(file, Checkpoint) for a --checkpoint value, or for the latest run under runs/ if None."""
    from . import checkpoint as C
    from .info import find_checkpoint

    file = find_checkpoint(path)
    return file, C.load(file)


def _read_prime(path: str) -> str:
    from pathlib import Path

    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise click.ClickException(f"cannot read prime file {path}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise click.ClickException(f"prime file {path} is not valid UTF-8 at byte offset "
                                   f"{e.start}") from None
    text = text.removeprefix("\ufeff")
    if not text:
        raise click.ClickException(f"prime file {path} is empty")
    return text


@cli.command(context_settings=CONTEXT)
@click.option("--checkpoint", "-c", metavar="PATH",
              help="Checkpoint file or run directory (its best.npz, else last.npz). Default: the "
              "most recently written run under runs/.")
@click.option("--prime", "-p", default="", metavar="TEXT",
              help="Text to start from: fed through the model to warm its state, printed first.")
@click.option("--prime-file", metavar="PATH", help="Read the prime from this UTF-8 file.")
@click.option("--length", "-n", type=int, default=500, show_default=True,
              help="Characters to generate after the prime (per sample).")
@click.option("--temperature", "-t", type=float, default=None,
              help="Divide the logits by this before the softmax: below 1 is safer, above 1 "
              "wilder. Must be > 0.  [default: 1.0]")
@click.option("--greedy", is_flag=True,
              help="Always take the most likely character (no temperature, top-k or top-p).")
@click.option("--top-k", type=int, default=None, metavar="K",
              help="Draw only from the K most likely characters.")
@click.option("--top-p", type=float, default=None, metavar="P",
              help="Draw only from the smallest set of most likely characters whose probability "
              "reaches P, in (0, 1].")
@click.option("--seed", type=int, default=None,
              help="Random seed; the same seed gives the same text. Default: a fresh one, shown "
              "on stderr.")
@click.option("--num-samples", "-m", type=int, default=1, show_default=True,
              help="Independent samples to draw, separated by a blank line.")
@click.option("--stop", default=None, metavar="TEXT",
              help="End a sample as soon as it ends with this text (e.g. a blank line).")
def sample(checkpoint, prime, prime_file, length, temperature, greedy, top_k, top_p, seed,
           num_samples, stop):
    """Generate text from a trained model, streaming it to stdout as it is made.

    The prime is printed first, then each character as it is drawn. Only generated text goes to
    stdout (the checkpoint used and the seed go to stderr), so the output can be piped or
    redirected; `charrnn sample | head -c 100` stops quietly. Without a prime the model starts
    after a newline. The logits are divided by --temperature, then --top-k and --top-p (if
    given) trim the distribution before each draw.

    \b
    Examples:
      charrnn sample --prime "ROMEO:" --length 300 --temperature 0.8
      charrnn sample -c runs/tinyshakespeare --top-p 0.9 --seed 7 --num-samples 3
      charrnn sample --greedy --stop $'\\n\\n'
    """
    import numpy as np

    from . import sample as S

    if prime and prime_file is not None:
        raise click.ClickException("give --prime or --prime-file, not both")
    if prime_file is not None:
        prime = _read_prime(prime_file)
    if num_samples < 1:
        raise click.ClickException(f"--num-samples must be at least 1, not {num_samples}")
    if seed is not None and seed < 0:
        raise click.ClickException(f"--seed must be a whole number >= 0, not {seed}")
    knobs = [n for n, v in (("--temperature", temperature), ("--top-k", top_k),
                            ("--top-p", top_p)) if v is not None]
    if greedy and knobs:
        raise click.ClickException(f"--greedy always takes the most likely character; it "
                                   f"cannot be combined with {', '.join(knobs)}")
    config = S.SampleConfig(length=length, temperature=1.0 if temperature is None else temperature,
                            greedy=greedy, top_k=top_k, top_p=top_p, stop=stop or None)
    file, ckpt = _open_checkpoint(checkpoint)
    S.check_prime(ckpt.vocab, prime)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % 2**32)
    step = ckpt.meta.get("step")
    err.print(f"sampling from {file}" + (f" (step {step})" if step is not None else "")
              + ("" if greedy else f", seed {seed}"), markup=False)
    rng = np.random.default_rng(seed)
    stream = getattr(sys.stdout, "buffer", None)

    def write(text):  # UTF-8 whatever the locale, flushed at once
        if stream is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            stream.write(text.encode("utf-8"))
            stream.flush()

    last = ""
    for k in range(num_samples):
        if k:
            write("\n\n")
        for piece in S.generate(ckpt.params, ckpt.model, ckpt.vocab, prime, config, rng):
            write(piece)
            last = piece
    if sys.stdout.isatty() and not last.endswith("\n"):
        write("\n")  # so the shell prompt starts on its own line


@cli.command("eval", context_settings=CONTEXT)
@click.argument("file", metavar="FILE")
@click.option("--checkpoint", "-c", metavar="PATH",
              help="Checkpoint file or run directory. Default: the most recently written run "
              "under runs/.")
@click.option("--strict", is_flag=True,
              help="Fail on characters outside the model's vocabulary instead of skipping them.")
@click.option("--show", is_flag=True,
              help="Print the text coloured by the model's surprise at each character.")
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of FILE.")
def eval_(file, checkpoint, strict, show, encoding):
    """Score a text file: bits and nats per character, and perplexity, over the whole file.

    The state is carried from the first character to the last; every character after the first
    is predicted from all before it. Characters outside the vocabulary are skipped and counted
    (--strict makes them an error). The result is one line on stdout; with --show the text comes
    first, each character's background coloured by -log2 p (a key goes to stderr).

    \b
    Examples:
      charrnn eval held_out.txt
      charrnn eval --show --checkpoint runs/tinyshakespeare poem.txt
    """
    from .data import read_corpus
    from .scoring import heat_map, legend, perplexity_text, score_text

    text = read_corpus(file, encoding)
    path, ckpt = _open_checkpoint(checkpoint)
    err.print(f"scoring {file} with {path}", markup=False)
    start = time.perf_counter()
    result = score_text(ckpt.params, ckpt.model, ckpt.vocab, text, strict=strict)
    elapsed = time.perf_counter() - start
    if show:
        out.print(heat_map(text, result), soft_wrap=True, end="" if text.endswith("\n") else "\n")
        err.print(legend())
    click.echo(perplexity_text(result))
    err.print(f"{result.score.chars + 1:,} characters in {elapsed:.2f} s "
              f"({(result.score.chars + 1) / max(elapsed, 1e-9):,.0f} characters/s)")


@cli.command(context_settings=CONTEXT)
@click.argument("checkpoint", required=False, metavar="[CHECKPOINT]")
def info(checkpoint):
    """Describe a checkpoint: model, training settings, vocabulary and learning curves.

    CHECKPOINT is a checkpoint file or a run directory; default: the most recently written run
    under runs/. The chart plots train (·) and validation (●) bits per character by step from
    the run's history.
    """
    from rich.text import Text

    from . import info as I

    file, ckpt = _open_checkpoint(checkpoint)
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in I.summary(file, ckpt):
        table.add_row(label, Text(value))
    out.print(table)
    out.print(Text(I.vocab_text(ckpt.vocab.chars)), soft_wrap=True)
    train = ckpt.meta.get("train")
    if isinstance(train, dict) and train:
        out.print()
        out.print(Text("training settings", style="bold"))
        out.print(Text(", ".join(f"{k}={v}" for k, v in train.items())), soft_wrap=False)
    lines = I.chart(I.curves(ckpt.meta.get("history")))
    out.print()
    if lines:
        for line in lines:
            out.print(Text(line), soft_wrap=True)
    else:
        out.print("no training history in this checkpoint")


def main():
    try:
        cli(prog_name="charrnn")
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
