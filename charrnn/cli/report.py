"""`charrnn report` (one web page of one or more runs) and `charrnn plot` (one figure as a file)."""

from __future__ import annotations

import time

import click

from .console import CONTEXT, PATH, err, out

RUNS = click.argument("runs", nargs=-1, required=True, type=PATH, metavar="RUN...")


@click.command(context_settings=CONTEXT)
@RUNS
@click.option("--output", "-o", type=PATH, default="report.html", show_default=True,
              help="The HTML file to write (replaced if it exists).")
@click.option("--gradflow", is_flag=True,
              help="Also measure and draw the gradient flow of each language model (as "
              "`charrnn gradflow -c RUN`: 16 windows of its corpus, 100 steps back).")
@click.option("--sample-length", type=click.IntRange(0), default=400, show_default=True,
              help="Characters of a language model's sample on the page (0: none).")
@click.option("--examples", type=click.IntRange(1, 4), default=4, show_default=True,
              help="Validation examples whose attention maps a seq2seq run shows.")
@click.option("--inside-chars", type=click.IntRange(0), default=300, show_default=True,
              help="Characters of validation text in each run's activation view, the text "
              "coloured by one unit of the model's (chosen on the page); 0: no view. Each "
              "character adds a byte per unit of every series (a GRU of 384 units: 1.5 KB).")
@click.option("--seed", type=click.IntRange(0), default=1, show_default=True,
              help="Seed of the sample's draws.")
@click.option("--title", help="The page's title. Default: the runs' names.")
def report(runs, output, gradflow, sample_length, examples, inside_chars, seed, title):
    """Write one self-contained web page about one or more runs.

    Each RUN is a run directory (as `charrnn train --out` made it) or a checkpoint file. The page
    has the training curves of all runs on shared plots (loss, the validation figure, learning
    rate, gradient norm; by step and by training time), each run's settings and data, and what
    its model does: a language model's sample, a classifier's confusion matrix and recall per
    class, a tagger's precision, recall and F1 per tag, a seq2seq model's attention maps; and
    its validation text coloured by any one unit of the model, chosen on the page. The
    figures are inline SVG and the page fetches nothing, so it opens anywhere without a network.
    A run still training is read as it is. Needs matplotlib: pip install 'charrnn[plot]'.

    \b
    Examples:
      charrnn report runs/tinyshakespeare -o report.html
      charrnn report runs/gru runs/lstm --gradflow -o compare.html
    """
    from ..report import figures as G
    from ..report import page
    from ..report import runs as R

    G.require()
    start = time.perf_counter()
    found = R.read_all(runs)
    text, notes = page.build(found, page.Options(gradflow=gradflow, sample_length=sample_length,
                                                 examples=examples, inside_chars=inside_chars,
                                                 seed=seed, title=title))
    page.write(output, text)
    for _, message in notes:
        err.print(f"note: {message}", markup=False, highlight=False)
    err.print(f"wrote {output}: {len(text.encode()) / 1024:,.0f} KiB in "
              f"{time.perf_counter() - start:.1f} s", markup=False, highlight=False)
    out.print(str(output), markup=False, highlight=False, soft_wrap=True)


WHAT = ("curves", "attention", "confusion", "scores", "gradflow")


@click.command(context_settings=CONTEXT)
@RUNS
@click.option("--what", "-w", type=click.Choice(WHAT), default="curves", show_default=True,
              help="curves: training curves of the runs (of one kind) on shared plots; "
              "attention: a seq2seq run's attention maps on validation examples; confusion: a "
              "classifier's or tagger's confusion matrix (counts and by row) and recall per "
              "class; scores: a tagger's precision, recall and F1 per tag; gradflow: the "
              "language models' gradient flow.")
@click.option("--output", "-o", type=PATH, required=True,
              help="The image file: .png, .svg or .pdf (the suffix decides).")
@click.option("--x", "x", type=click.Choice(["step", "minutes"]), default="step",
              show_default=True, help="curves: against steps or training time.")
@click.option("--dpi", type=click.IntRange(30, 1200), default=150, show_default=True,
              help="Pixels per inch of a PNG; figures are 12.8 inches wide (curves 12.8 x 7.2), so "
              "150 gives 1920 pixels across, a full slide.")
@click.option("--examples", type=click.IntRange(1, 4), default=4, show_default=True,
              help="attention: how many validation examples.")
def plot(runs, what, output, x, dpi, examples):
    """Draw one figure of one or more runs as an image file, at a slide's resolution.

    Each RUN is a run directory or a checkpoint file. Needs matplotlib:
    pip install 'charrnn[plot]'.

    \b
    Examples:
      charrnn plot runs/tinyshakespeare -o curves.png
      charrnn plot runs/gru runs/lstm --x minutes -o compare.svg
      charrnn plot runs/dates --what attention -o attention.png
      charrnn plot runs/names --what confusion -o confusion.pdf
    """
    from ..models import FAMILIES
    from ..report import figures as G
    from ..report import runs as R
    from ..report import views as V

    G.require()
    found = R.read_all(runs)
    if what == "curves":
        fig = G.curves(found, x)
    elif what == "gradflow":
        fig = G.gradflow(V.gradient_flow(found))
    else:
        if len(found) > 1:
            raise click.UsageError(f"--what {what} draws one run; give one RUN")
        run = found[0]
        need = {"attention": ("text",), "confusion": ("label", "tags"),
                "scores": ("tags",)}[what]  # the contract's ANSWERS each draws from
        if run.answers not in need:
            kinds = [n for n, F in FAMILIES.items() if getattr(F, "ANSWERS", None) in need]
            raise click.UsageError(f"--what {what} is for {' and '.join(kinds)} runs; "
                                   f"{run.name} is {run.family or 'of an unknown kind'}")
        if run.ckpt is None:
            raise click.ClickException(f"{run.name} has no checkpoint yet")
        data = V.validation_data(run)
        if what == "attention":
            shown = V.attention_examples(run, data, examples)
            fig = G.attention(shown, G.attention_size(shown, G.SLIDE[0]))
        elif what == "confusion":
            fig = G.confusion(V.class_scores(run, data))
        else:
            fig = G.tag_scores(V.class_scores(run, data))
    G.save(fig, output, dpi)
    for run in found:
        if run.skipped:
            err.print(f"note: {run.skipped} damaged line(s) of {run.path / 'metrics.jsonl'} "
                      f"skipped", markup=False, highlight=False)
    out.print(str(output), markup=False, highlight=False, soft_wrap=True)
