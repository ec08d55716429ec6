"""The data-set generators' command lines, run as `python -m charrnn.data.segmentation` and
`python -m charrnn.data.synthetic` (those modules hold the library functions and hand their
`__main__` to these commands). They are not `charrnn` subcommands; like them, they write their
result (TSV) to stdout and turn the library's errors into one line and a non-zero exit."""

from __future__ import annotations

import click

from ..data import segmentation as S
from ..data import synthetic as Y
from ..data.text import read_corpus
from .console import CONTEXT, PATH, CharrnnCommand


@click.command(cls=CharrnnCommand, context_settings=CONTEXT)
@click.argument("text", type=PATH)
@click.option("--part", type=click.Choice(S.PARTS), default="all", show_default=True,
              help="Which lines: all, the first 90% (train) or the last 10% (test); train and "
                   "test never share a line.")
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of TEXT.")
def segmentation(text, part, encoding):
    """Write word segmentation as tagging: each non-blank line of TEXT with its spaces removed,
    a TAB, and a tag per character, B where a word starts and I inside one. A tagger trained on
    it (`charrnn train --task tag`) puts the spaces back.

    \b
    Examples:
      python -m charrnn.data.segmentation corpora/tinyshakespeare.txt --part train > seg.tsv
      python -m charrnn.data.segmentation corpora/tinyshakespeare.txt --part test > test.tsv
    """
    rows = S.examples(read_corpus(text, encoding), part)
    click.echo("".join(f"{t}\t{g}\n" for t, g in rows), nl=False)


@click.command(cls=CharrnnCommand, context_settings=CONTEXT)
@click.argument("kind", type=click.Choice(sorted(Y.KINDS)))
@click.option("--count", type=click.IntRange(1), default=1000, show_default=True,
              help="Pairs to write.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="Seed of the random generator: the same seed gives the same pairs.")
@click.option("--exclude", type=PATH, metavar="FILE", default=None,
              help="A TSV file whose sources (first column) are left out, e.g. the training "
                   "set, for a held-out set disjoint from it.")
def synthetic(kind, count, seed, exclude):
    """Write synthetic pairs for sequence to sequence, a source, a TAB and its target per line:
    addition ("535+61" -> "596") or dates (a date written one of a dozen ways -> ISO 8601),
    every source different.

    \b
    Examples:
      python -m charrnn.data.synthetic dates --count 3000 --seed 1 > dates.tsv
      python -m charrnn.data.synthetic dates --count 200 --seed 2 --exclude dates.tsv > test.tsv
    """
    leave_out = Y.read_sources(exclude) if exclude else set()
    pairs = Y.generate(kind, count, seed, leave_out)
    click.echo("".join(f"{s}\t{t}\n" for s, t in pairs), nl=False)
