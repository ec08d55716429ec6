"""`charrnn export` and `import`: a model as a PyTorch state_dict (charrnn.interop.lm)."""

from __future__ import annotations

import os

import click

from .console import CONTEXT, PATH, err


@click.command(context_settings=CONTEXT)
@click.argument("out", metavar="OUT.safetensors", type=PATH)
@click.option("--checkpoint", "-c", type=PATH, metavar="PATH",
              help="Checkpoint file or run directory (its best.npz, else last.npz). Default: the "
              "most recently written run under runs/.")
def export(out, checkpoint):
    """Write a trained model as a PyTorch state_dict in a .safetensors file.

    \b
    A language model's tensors fit this module (the same numbers as the CharRNN class of
    docs/en/guides/pytorch.md):
      rnn  = nn.LSTM/GRU/RNN(input_size=V, hidden_size=H, num_layers=L, dropout=p)
             fed one-hot characters (time-major, batch_first=False)
      head = nn.Linear(H, V), after dropout p
    A classifier's or tagger's fit that page's CharEncoder: the same rnn with
    bidirectional=True (names with _reverse for the backward direction), batch_first, run over
    each text's own length, and head = nn.Linear(2H, K) on the pooled states (classify) or on
    every character (tag).
    Names: rnn.weight_ih_l{k}, rnn.weight_hh_l{k}, rnn.bias_ih_l{k}, rnn.bias_hh_l{k},
    head.weight, head.bias. The file's metadata holds the model configuration ("model") and the
    vocabulary ("vocab", character v = one-hot index v) as JSON strings, and for a classifier or
    tagger "labels" (output k's name) and "pooling". Optimizer state and training history stay
    behind. A seq2seq model is refused (no standard PyTorch module holds it). Needs the
    safetensors package (pip install 'charrnn[safetensors]').

    \b
    Examples:
      charrnn export -c runs/tinyshakespeare shakespeare.safetensors
      charrnn export model.safetensors          the most recent run
    """
    from ..interop import lm as I
    from ..runs import find_checkpoint

    if not out.endswith(I.SUFFIX):
        raise click.ClickException(f"OUT must end in {I.SUFFIX}, not {out!r} (a safeguard "
                                   "against overwriting a checkpoint by a swapped argument)")
    if os.path.isdir(out):
        raise click.ClickException(f"{out} is a directory")
    from .. import checkpoint as C

    file = find_checkpoint(checkpoint)
    ckpt = C.load(file)
    I.save(out, ckpt)
    err.print(f"exported {file} as {I.describe(ckpt)}", markup=False, soft_wrap=True)
    click.echo(os.fsencode(out))


@click.command("import", context_settings=CONTEXT)
@click.argument("source", metavar="IN.safetensors", type=PATH)
@click.argument("run_dir", metavar="OUT_RUN", type=PATH)
def import_(source, run_dir):
    """Make a run directory from a PyTorch state_dict in a .safetensors file.

    IN.safetensors holds the tensors of the CharRNN module (see `charrnn export --help` and
    docs/en/guides/pytorch.md): `charrnn export`'s output, or a state_dict trained in PyTorch and saved with
    safetensors' save_file(model.state_dict(), path, metadata={"vocab": json.dumps(chars)}).
    A CharEncoder's (classifier, tagger) needs metadata "family" ("classify" or "tag"), "vocab"
    and "labels" too.
    The cell, sizes and dtype are read from the tensors' shapes; any split of each bias between
    bias_ih and bias_hh is accepted. OUT_RUN gets best.npz only (no last.npz: there is no
    optimizer state to resume), so `charrnn sample`, `eval` and `info` work on it. OUT_RUN must
    not already hold a run. Needs the safetensors package (pip install 'charrnn[safetensors]').

    \b
    Examples:
      charrnn import shakespeare.safetensors runs/from-torch
      charrnn sample -c runs/from-torch --prime "ROMEO:"
    """
    from .. import checkpoint as C
    from ..interop import lm as I
    from ..models import family

    target = I.import_run(source, run_dir)
    use = "predict" if hasattr(family(C.load(target).family), "ANSWERS") else "sample"
    err.print(f"imported {source} into {target}; try: charrnn {use} -c {run_dir}",
              markup=False, soft_wrap=True)
    click.echo(os.fsencode(target))
