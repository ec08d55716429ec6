"""`charrnn sample`, `eval`, `info` and `gradflow`: using and looking inside a trained model."""

from __future__ import annotations

import json
import math
import sys
import time

import click
from rich.table import Table

from ..errors import CharrnnError
from ..nn.cells import CELLS
from ..tools.sample import MIN_TEMPERATURE as S_MIN_TEMPERATURE
from .console import CELL_CHOICE, CONTEXT, PATH, FiniteFloat, HiddenArgument, alias, err, out

# --- gradflow ----------------------------------------------------------------------------------

@click.command(context_settings=CONTEXT)
@click.option("--checkpoint", "-c", "checkpoints", type=PATH, multiple=True, metavar="PATH",
              help="A checkpoint file or run directory to measure; repeat to compare several. "
              "Without it, fresh lstm, gru and rnn models are compared.")
@click.option("--corpus", type=PATH, default=None, metavar="PATH",
              help="Text to cut the windows from. Default: the bundled tiny Shakespeare for fresh "
              "models, the corpus recorded in each checkpoint otherwise.")
@click.option("--encoding", default=None, metavar="NAME",
              help="Text encoding of --corpus (default utf-8); a checkpoint's recorded corpus is "
              "read with the encoding it was trained with.")
@click.option("--cell", "cells", type=CELL_CHOICE, multiple=True,
              help="Fresh models only: cell type to include; repeat for several. Default: all.")
@click.option("--length", "-n", "length", type=click.IntRange(1), default=100, show_default=True,
              help="K: measure the gradient k = 0..K steps before the last step.")
@alias("-K", "length", type=click.IntRange(1))
@click.option("--samples", type=click.IntRange(1), default=16, show_default=True,
              help="Windows of text to average the gradient norms over.")
@click.option("--hidden", type=click.IntRange(1), default=128, show_default=True,
              help="Fresh models only: hidden units H.")
@click.option("--layers", type=click.IntRange(1), default=1, show_default=True,
              help="Fresh models only: stacked layers.")
@click.option("--scale", type=FiniteFloat(0), default=1.0, show_default=True,
              help="Multiply every layer's recurrent weights Wh by this before measuring.")
@click.option("--warm-chars", "warm_chars", type=click.IntRange(0), default=100,
              show_default=True, help="Characters each window reads first, from the zero state, "
              "to reach a realistic state (not train's --warmup, which counts steps).")
@alias("--warmup", "warm_chars", type=click.IntRange(0))
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="Random seed for the windows and the fresh models.")
@click.option("--json", "json_path", type=PATH, default=None, metavar="PATH",
              help="Also write the raw series (every k, h and c, per layer) as JSON here: "
              "\"settings\" (the options; hidden and layers are null with --checkpoint) and "
              "\"models\", one per model with its label, cell, hidden, layers, corpus, k, h, c, "
              "h_layers, c_layers, vanish_k and vanish_ratio.")
def gradflow(checkpoints, corpus, encoding, cells, length, samples, hidden, layers, scale,
             warm_chars, seed, json_path):
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
      charrnn gradflow -c runs/tinyshakespeare  a trained model on its own text
    """
    import re

    from rich import box
    from rich.text import Text

    from ..data.text import bundled, read_corpus
    from ..tools import gradflow as GF

    start = time.perf_counter()
    warmup = warm_chars
    GF.check_settings(length, samples, warmup, scale)
    sizes = {"length": length, "samples": samples, "seed": seed, "warmup": warmup, "scale": scale}
    if checkpoints:
        ctx = click.get_current_context()
        ignored = [option for name, option in (("cells", "--cell"), ("hidden", "--hidden"),
                                                ("layers", "--layers"))
                   if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT]
        if ignored:
            err.print(f"note: {', '.join(ignored)} appl{'y' if len(ignored) > 1 else 'ies'} to "
                      "fresh models only; ignored with --checkpoint")
        flows = [GF.from_checkpoint(c, corpus, **sizes, encoding=encoding) for c in checkpoints]
    else:
        path = corpus or str(bundled())
        flows = GF.compare_fresh(read_corpus(path, encoding or "utf-8"),
                                 tuple(c.lower() for c in cells) or
                                 tuple(CELLS), hidden, layers, corpus=path, **sizes)
    elapsed = time.perf_counter() - start
    if json_path:
        fresh = not checkpoints  # a checkpoint's own sizes are in its "models" entry
        GF.write_json(json_path, GF.to_json(flows, dict(
            sizes, hidden=hidden if fresh else None, layers=layers if fresh else None,
            corpus=corpus, checkpoints=list(checkpoints))))

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
    from .. import checkpoint as C
    from ..tools.info import find_checkpoint

    file = find_checkpoint(path)
    return file, C.load(file)


def _open_lm(path, command: str):
    """_open_checkpoint for the commands that need a language model."""
    file, ckpt = _open_checkpoint(path)
    if ckpt.family != "lm":
        raise click.UsageError(f"{file} holds a {ckpt.family} model; {command} needs a language "
                               f"model (use `charrnn predict` or `charrnn eval` with it)")
    return file, ckpt


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
    from ..data.text import normalise

    text = normalise(text)  # as the corpus was read: no byte-order marks, \n line endings
    if not text:
        raise click.ClickException(f"prime file {path} is empty")
    return text


@click.command(context_settings=CONTEXT)
@click.option("--checkpoint", "-c", type=PATH, metavar="PATH",
              help="Checkpoint file or run directory (its best.npz, else last.npz). Default: the "
              "most recently written run under runs/.")
@click.option("--prime", "-p", default="", metavar="TEXT",
              help="Text to start from: fed through the model to warm its state, printed first.")
@click.option("--prime-file", type=PATH, metavar="PATH",
              help="Read the prime from this UTF-8 file.")
@click.option("--length", "-n", type=click.IntRange(0), default=500, show_default=True,
              help="Characters to generate after the prime (per sample).")
@click.option("--temperature", "-t", type=FiniteFloat(S_MIN_TEMPERATURE), default=None,
              help="Divide the logits by this before the softmax: below 1 is safer, above 1 "
              "wilder. At least 1e-100 (--greedy is the limit of 0).  [default: 1.0]")
@click.option("--greedy", is_flag=True,
              help="Always take the most likely character (no temperature, top-k or top-p).")
@click.option("--top-k", type=click.IntRange(1), default=None, metavar="K",
              help="Draw only from the K most likely characters.")
@click.option("--top-p", type=FiniteFloat(0, 1, min_open=True), default=None, metavar="P",
              help="Draw only from the smallest set of most likely characters whose probability "
              "reaches P, in (0, 1].")
@click.option("--seed", type=click.IntRange(0), default=None,
              help="Random seed; the same seed gives the same text. Default: a fresh one, shown "
              "on stderr.")
@click.option("--num-samples", "-m", type=click.IntRange(1), default=1, show_default=True,
              help="Independent samples to draw, separated by --separator.")
@click.option("--separator", default="\n\n", show_default="a blank line", metavar="TEXT",
              help="Written between samples (after a sample that ends with newlines a blank line "
              "is ambiguous: give e.g. $'\\n---\\n').")
@click.option("--stop", multiple=True, metavar="TEXT",
              help="End a sample as soon as it ends with this text (e.g. a blank line); repeat "
              "to stop at the first of several.")
@click.option("--json", "as_json", is_flag=True,
              help="Write one JSON object per sample, one per line (JSON Lines), each when its "
              "sample is done: index (0, 1, ... within this command), prime, text (generated "
              "after the prime), seed (this command's; with the same -m and settings it repeats "
              "every sample), checkpoint, chars (characters generated) and stop (the --stop text "
              "that ended it, or null).")
@click.option("--interactive", "-i", is_flag=True,
              help="Read primes from stdin, one per line (prompt on stderr), and stream each "
              "continuation to stdout, until end of input (Ctrl-D).")
def sample(checkpoint, prime, prime_file, length, temperature, greedy, top_k, top_p, seed,
           num_samples, separator, stop, as_json, interactive):
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
      charrnn sample --greedy --stop $'\\n\\n' --stop "."
      charrnn sample -m 5 --json | jq -r .text
      charrnn sample -i -n 200                 type a prime, read the continuation
    """
    import numpy as np

    from ..data.text import normalise
    from ..tools import sample as S

    if prime and prime_file is not None:
        raise click.UsageError("give --prime or --prime-file, not both")
    if interactive and (prime or prime_file is not None):
        raise click.UsageError("--interactive reads each prime from stdin; it takes no --prime "
                               "or --prime-file")
    if prime_file is not None:
        prime = _read_prime(prime_file)
    prime = normalise(prime)  # as a prime file and the corpus are read: \n line endings
    knobs = [n for n, v in (("--temperature", temperature), ("--top-k", top_k),
                            ("--top-p", top_p)) if v is not None]
    if greedy and knobs:
        raise click.UsageError(f"--greedy always takes the most likely character; it "
                               f"cannot be combined with {', '.join(knobs)}")
    config = S.SampleConfig(length=length, temperature=1.0 if temperature is None else temperature,
                            greedy=greedy, top_k=top_k, top_p=top_p, stop=tuple(stop) or None)
    file, ckpt = _open_lm(checkpoint, "sample")
    if not interactive:
        S.check_prime(ckpt.vocab, prime)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % 2**32)
    step = ckpt.meta.get("step")
    err.print(f"sampling from {file}" + (f" (step {step})" if step is not None else "")
              + ("" if greedy else f", seed {seed}"), markup=False)
    rng = np.random.default_rng(seed)
    write = _stdout_writer()
    index = 0

    def draw(prime, echo_prime):
        """Write num_samples samples after `prime`; the text written last."""
        nonlocal index
        last, warmed = "", None
        for k in range(num_samples):
            if k and not as_json:
                write(separator)
            if k:  # the first sample showed the prime at once; the others start from its state
                warmed = warmed or S.warm(ckpt.params, ckpt.model,
                                          S.start_ids(ckpt.vocab, prime))
            pieces = S.generate(ckpt.params, ckpt.model, ckpt.vocab, prime, config, rng, warmed)
            if prime and (as_json or not echo_prime):
                next(pieces)  # the prime itself: a field of its own, or already on the screen
            if as_json:
                text = "".join(pieces)
                ended = next((t for t in config.stops if (prime + text).endswith(t)), None)
                write(json.dumps({"index": index, "prime": prime, "text": text, "seed": seed,
                                  "checkpoint": str(file), "chars": len(text), "stop": ended},
                                 ensure_ascii=False) + "\n")
                last = "\n"
            else:
                for piece in pieces:
                    write(piece)
                    last = piece
            index += 1
        return last

    if not interactive:
        last = draw(prime, echo_prime=True)
        if sys.stdout.isatty() and not last.endswith("\n"):
            write("\n")  # so the shell prompt starts on its own line
        return
    stdin = sys.stdin
    while True:
        click.echo("> ", nl=False, err=True)
        line = stdin.readline()
        if not line:  # end of input (Ctrl-D)
            click.echo(err=True)
            return
        typed = normalise(line.rstrip("\r\n"))
        try:
            S.check_prime(ckpt.vocab, typed)
        except CharrnnError as e:
            click.echo(f"Error: {e}", err=True)  # a typo ends nothing: ask again
            continue
        last = draw(typed, echo_prime=False)
        if not last.endswith("\n"):
            write("\n")


def _stdout_writer():
    """write(text): to stdout as UTF-8 whatever the locale, flushed at once."""
    stream = getattr(sys.stdout, "buffer", None)

    def write(text):
        if stream is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            stream.write(text.encode("utf-8"))
            stream.flush()

    return write


@click.command("eval", context_settings=CONTEXT)
@click.argument("file", metavar="FILE", type=PATH)
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
              "and encoder-decoders their own figures (see README).")
def eval_(file, checkpoint, strict, show, encoding, as_json):
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
    """
    import os

    from ..data.text import read_corpus
    from ..tools.scoring import digit_map, heat_map, legend, perplexity_text, score_text

    if show and as_json:
        raise click.UsageError("--show and --json both write to stdout; give one of them")
    if not os.path.lexists(file):
        raise click.ClickException(f"file not found: {file}")
    text = read_corpus(file, encoding)
    path, ckpt = _open_checkpoint(checkpoint)
    err.print(f"scoring {file} with {path}", markup=False)
    if ckpt.family != "lm":  # a classifier or a tagger: FILE is labelled examples
        from .predict import eval_labelled

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
            "task": "lm", "file": file, "checkpoint": str(path), "bpc": finite(s.bpc), "nats": finite(s.nats),
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


@click.command(context_settings=CONTEXT)
@click.argument("positional", required=False, type=PATH, cls=HiddenArgument)
@click.option("--checkpoint", "-c", type=PATH, metavar="PATH",
              help="Checkpoint file or run directory (its best.npz, else last.npz). Default: the "
              "most recently written run under runs/.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: checkpoint, task, model (its settings), parameters, "
              "vocabulary (the characters in order), corpus, step, elapsed (seconds), best "
              "(the best validation figure, named by metric), train (the training settings) and "
              "history (the records of metrics.jsonl); keys the checkpoint lacks are null.")
def info(positional, checkpoint, as_json):
    """Describe a checkpoint: model, training settings, vocabulary and learning curves.

    -c/--checkpoint is a checkpoint file or a run directory (it may also be given as the only
    argument); default: the most recently written run under runs/. The chart plots train (·)
    and validation (●) bits per character by step from the run's history.
    """
    from rich.text import Text

    from ..tools import info as I

    if positional is not None and checkpoint is not None and positional != checkpoint:
        raise click.UsageError("give the checkpoint once: -c PATH or PATH")
    file, ckpt = _open_checkpoint(checkpoint if checkpoint is not None else positional)
    if as_json:
        click.echo(json.dumps(I.to_json(file, ckpt), ensure_ascii=False))
        return
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
        model = train.pop("model", None)  # the model's settings among the others
        flat = {**(model if isinstance(model, dict) else {}), **train}
        flat.pop("vocab_size", None)
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
