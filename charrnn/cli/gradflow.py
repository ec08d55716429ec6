"""`charrnn gradflow`: how far back the gradient reaches, per cell."""

from __future__ import annotations

import time

import click
from rich.table import Table

from ..nn.cells import CELLS
from .console import CELL_CHOICE, CONTEXT, PATH, FiniteFloat, alias, err


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
              "h_layers, c_layers, vanish_k, vanish_ratio, explode_k and explode_growth.")
def gradflow(checkpoints, corpus, encoding, cells, length, samples, hidden, layers, scale,
             warm_chars, seed, json_path):
    """Show vanishing and exploding gradients: how much the loss at the last step of a window
    depends on the hidden state k steps earlier, for k = 0..K.

    The measure is the mean over windows of |dL/dh| at k steps back (every layer's h together;
    for the LSTM also its cell state c), computed by the trainer's own backward pass, in float64.
    A chart with a logarithmic axis and a table go to stderr; stdout gets one line saying, per
    model, whether the gradient vanishes (falls below 1e-3 of its k = 0 value) or explodes
    (rises above 10 times it), and at which k; or that it does neither up to K.

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

    from ..checks import gradflow as GF
    from ..data.text import bundled, read_corpus

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
    title = (f"mean |dL/dstate| k steps before the last step ({samples} windows, scale "
             f"{scale:g}, {elapsed:.1f} s)")
    caption = (f"vanish k: first k below {GF.RATIO:g} x the k=0 norm; explode k: above "
               f"{GF.GROWTH:g} x")
    # as wide as its title and caption (up to the terminal's width), so neither wraps into a
    # stray line when few k columns make the table narrow
    table = Table(title=title, box=box.SIMPLE_HEAD, caption=caption, pad_edge=False,
                  collapse_padding=True, min_width=min(max(len(title), len(caption)), err.width))
    for col in ("model", "state", "k=0", *(f"k={k}" for k in ks), "vanish k", "explode k"):
        table.add_column(col, justify="left" if col in ("model", "state") else "right")
    for f in flows:
        for name, series in (("h", f.h), ("c", f.c)):
            if series is not None:
                k, up = GF.vanish_k(series), GF.explode_k(series)
                table.add_row(Text(f.label), name, *(f"{series[j]:.1e}" for j in (0, *ks)),
                              f"> {length}" if k is None else str(k),
                              f"> {length}" if up is None else str(up))
    err.print(table)

    click.echo(f"|dL/dh| against its k=0 value (vanishes: below {GF.RATIO:g}; explodes: above "
               f"{GF.GROWTH:g} times): " + ", ".join(f"{f.label} {GF.verdict(f.h)}"
                                                    for f in flows))
