"""The command line: a thin shell over the library.

Every command parses options, calls the Python API, and renders results. Library errors
(CharrnnError) become one-line messages with exit status 1 here, in one place (CharrnnGroup);
Ctrl-C exits with 130, a closed stdout pipe ends quietly, and output that cannot be written (a full
disk) is a one-line error too. stdout carries only a command's
result (generated text for `sample`); tables, progress and warnings go to stderr.
"""

from __future__ import annotations

import os
import sys

import click

from .. import __version__
from . import check, evaluate, gradflow, info, inside, interop, predict, report, runs, sample, train
from .console import CONTEXT, CharrnnGroup


@click.group(cls=CharrnnGroup, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="charrnn")
def cli():
    """Character-level recurrent networks (vanilla RNN, GRU, LSTM) in NumPy, with hand-written
    backpropagation through time that you can check against finite differences: language
    models; classifiers (a label per text) and taggers (a label per character) on a
    bidirectional encoder; encoder-decoders with attention (seq2seq: a text in, a text out); and
    generators (one to many: a text from a label).

    \b
    Typical use:
      charrnn train corpus.txt          train a model on your text (default: tiny Shakespeare)
      charrnn sample --prime "hel"      generate text with the most recent language model
      charrnn train --task classify corpora/names    a label per text (here: a surname's language)
      charrnn predict -c runs/names Nakamura         label texts with a classifier or a tagger
      charrnn train --task seq2seq pairs.tsv         source<TAB>target lines: text to text
      charrnn predict -c runs/pairs "some text"      translate with an encoder-decoder
      charrnn train --task generate corpora/names --out runs/gen    a text from a label
      charrnn sample -c runs/gen --label Russian -n 10              ten Russian surnames
      charrnn runs                      list your runs: task, model, best figure, age
      charrnn gradcheck                 verify every gradient against finite differences
      charrnn inside -f notes.txt --find    which units track quotes, brackets, line position
      charrnn report runs/a runs/b -o report.html    curves, settings, samples as one web page

    Run `charrnn COMMAND --help` for each command's options.
    """



for _command in (train.train, sample.sample, evaluate.eval_, info.info, check.gradcheck,
                 gradflow.gradflow, interop.export, interop.import_, predict.predict,
                 runs.runs, inside.inside, report.report, report.plot):
    cli.add_command(_command)


def main():
    if sys.stdout is None:  # started with stdout closed (`>&-`): results go nowhere, quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    try:
        cli(prog_name="charrnn")
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
