"""`charrnn predict`: label texts with a classifier or a tagger, or translate them with an
encoder-decoder."""

from __future__ import annotations

import sys

import click

from .console import CONTEXT, PATH, err, kernels_option, tasks_with

# the options of each kind of answer (the contract's ANSWERS); the others apply to all
OPTIONS = {"label": ("--top",), "tags": ("--segment",),
           "text": ("--beam", "--temperature", "--max-length", "--show-attention")}


@click.command(context_settings=CONTEXT)
@click.argument("texts", nargs=-1, metavar="[TEXT]...")
@click.option("--checkpoint", "-c", type=PATH, metavar="PATH",
              help="Checkpoint file or run directory. Default: the most recently written run "
              "under runs/ of a classifier, tagger or encoder-decoder.")
@click.option("--top", type=click.IntRange(1), default=1, show_default=True,
              help="classify: print the TOP most likely labels, each with its probability.")
@click.option("--segment", is_flag=True,
              help="tag: print the text split into words at each B tag instead of the tags.")
@click.option("--beam", type=click.IntRange(1), default=1, show_default=True,
              help="seq2seq: beam search with this many hypotheses (1: greedy decoding); "
              "hypotheses are compared by log-probability per output character.")
@click.option("--temperature", type=click.FloatRange(0, min_open=True), default=None,
              help="seq2seq: sample each output character at this temperature instead of "
              "decoding greedily (not with --beam).")
@click.option("--max-length", type=click.IntRange(1), default=None,
              help="seq2seq: the most output characters  [default: 2 x the source's + 10]")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="seq2seq: seed of the sampling (--temperature).")
@click.option("--show-attention", is_flag=True,
              help="seq2seq: after each output, draw on stderr where each output character "
              "looked: source characters across, output characters down, darker = more weight.")
@kernels_option
def predict(texts, checkpoint, top, segment, beam, temperature, max_length, seed,
            show_attention, kernels):
    """Label texts with a classifier or a tagger, or translate them with an encoder-decoder
    (`charrnn train --task classify|tag|seq2seq`). For a language model use `charrnn sample`.

    Each TEXT, or each line of stdin when none is given, gets one line on stdout, so output
    line i always answers input line i (an empty text gets an empty line): for a
    classifier its label, a tab and the label's probability (with --top K, K such pairs, best
    first, tab-separated); for a tagger its tag string, one tag per character (with --segment,
    the text with a space before every character tagged B). Characters the model never saw in
    training are read as the unknown symbol; how many there were goes to stderr.

    For an encoder-decoder (--task seq2seq) each line is the decoded output: greedy, or with
    --beam K beam search, or sampled with --temperature; --show-attention draws the attention
    weights (stderr), the picture of what attention does.

    \b
    Examples:
      charrnn predict -c runs/names Nakamura Schmidt O'Brien
      charrnn predict -c runs/names --top 3 < surnames.txt
      charrnn predict -c runs/segment --segment "tobeornottobe"
    """
    from .. import checkpoint as C
    from ..infer import predict as P
    from ..models import FAMILIES, family
    from ..runs import find_checkpoint

    usable = tasks_with("ANSWERS")
    path = find_checkpoint(checkpoint, families=usable)
    ckpt = C.load(path).running(kernels)
    answers = getattr(family(ckpt.family), "ANSWERS", None)
    if answers is None:
        raise click.UsageError(f"{path} holds a model that generates text (--task "
                               f"{ckpt.family}): use `charrnn sample` to generate from it (or "
                               f"`charrnn eval` to score a file); predict is for "
                               f"{', '.join(usable)} models")
    if not texts:
        texts = tuple(line.rstrip("\r\n") for line in sys.stdin)
    if not texts:
        raise click.UsageError("no TEXT given and nothing on stdin")
    # an empty text gets an empty line, so output line i always answers input line i
    given = [t for t in texts if t]
    used = {"--top": top != 1, "--segment": segment, "--beam": beam != 1,
            "--temperature": temperature is not None, "--max-length": max_length is not None,
            "--show-attention": show_attention}
    for flag in (f for f, on in used.items() if on and f not in OPTIONS[answers]):
        kinds = [n for n, F in FAMILIES.items() if flag in OPTIONS.get(getattr(F, "ANSWERS",
                                                                                None), ())]
        raise click.UsageError(f"{flag} is for {' and '.join(kinds)} models; this is a "
                               f"{ckpt.family} model")
    if answers == "text":
        from ..infer.translate import translate

        if beam != 1 and temperature is not None:
            raise click.UsageError("give --beam or --temperature, not both: beam search keeps "
                                   "the most likely outputs, --temperature samples one")
        outs, attention, unknown = translate(ckpt, given, beam=beam, temperature=temperature,
                                             max_length=max_length, seed=seed) if given \
            else ([], [], 0)
        done = iter(zip(given, outs, attention))
        for text in texts:
            if not text:
                click.echo("")
                continue
            src, line, att = next(done)
            click.echo(line)
            if show_attention:
                err.print(attention_map(src, line, att))
        if unknown:
            err.print(f"note: {unknown:,} source character{'s' if unknown != 1 else ''} "
                      f"outside the model's vocabulary, read as the unknown symbol", markup=False)
        return
    if answers == "label":
        results, unknown = P.classify(ckpt, given, top) if given else ([], 0)
        lines = ["\t".join(f"{label}\t{p:.4f}" for label, p in r) for r in results]
    else:
        tags, unknown = P.tag(ckpt, given) if given else ([], 0)
        lines = [P.segment(t, g) if segment else g for t, g in zip(given, tags)]
    done = iter(lines)
    for text in texts:
        click.echo(next(done) if text else "")
    if unknown:
        err.print(f"note: {unknown:,} character{'s' if unknown != 1 else ''} outside the "
                  f"model's vocabulary, read as the unknown symbol", markup=False)


SHADES = " ░▒▓█"  # attention weight 0 .. 1, readable without colour


def attention_map(source: str, output: str, weights):
    """A heat map of attention weights (M, len(source)): a header row of source characters, then
    one row per output character (the end marker as ⏎), each cell shaded by its weight."""
    from rich.text import Text

    from ..infer.scoring import _visible

    if weights is None or weights.shape[1] == 0:
        return Text("(this model has no attention)")
    text = Text("   " + _visible(source) + "\n", style="bold")
    rows = list(output) + ["⏎"] * (len(weights) - len(output))
    for ch, w in zip(rows, weights):
        cells = "".join(SHADES[min(len(SHADES) - 1, int(x * len(SHADES)))] for x in w)
        text.append(f"{_visible(ch)}  ", style="bold")
        text.append(cells + "\n")
    return text
