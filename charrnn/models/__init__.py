"""Model families: every shape of recurrent network charrnn trains, behind one contract.

A family is a module exposing the names below; `FAMILIES` maps its name to it, and the trainer,
the worker processes, checkpoints, gradcheck and `info` look it up there and never special-case
one (as makemore gives every model `forward(idx, targets)`). The language model,
charrnn.models.lm, is the first.

    NAME                  registry key, saved in checkpoints and run configurations
    Config                frozen dataclass: everything that rebuilds the parameters (to_dict,
                          from_dict); a vocabulary size of 0 means "taken from the data"; last,
                          `kernels` ("numpy", "fused"): the kernels its cells run, passed to
                          charrnn.nn.cells.cell (to_dict omits "numpy"; checkpoints omit it)
    DEFAULT               the Config `charrnn train` uses for this family (measured defaults)
    METRIC                the validation figure the trainer keeps the best (lowest) of
    param_shapes(cfg)     {name: shape} in a fixed order: parameters, gradients, optimizer
                          state, shared memory and checkpoints all walk it
    count_params(cfg), init_params(cfg, rng)
    init_state(cfg, rows) the state carried from one batch to the next, nested tuples of
                          (rows, ...) arrays (charrnn.nn.state); () when nothing is carried
    state_names(cfg)      a name per array of that state, for checkpoints and gradcheck
    width(cfg)            values per row and step: splitting rows across processes pays only
                          when each slice keeps enough of them (charrnn.parallel.MIN_SLICE)
    draw_masks(cfg, rng, batch), slice_masks(masks, rows)
                          a batch's randomness (dropout), drawn for all rows before they are
                          split across processes, so results do not depend on the split
    loss_and_grads(params, cfg, batch, state, rng=None, masks=None, scale=1.0)
                          -> (mean loss, grads, final state); batch is a tuple of arrays whose
                          rows (axis 0) are independent, so any slice of rows is a batch
    gradients(params, cfg, batch, state, masks, dfinal, scale=1.0)
                          -> (loss, grads, final state, d initial state), for gradcheck
    loss(params, cfg, batch, state, masks) -> (loss, final state), forward only
    example_batch(cfg, rng, rows, steps)   a random batch, for gradcheck
    score_rows(params, cfg, *arrays, **opts) -> [arrays]: one slice of the evaluation work
    load_data(tcfg, saved=None) -> data with .vocab, .batches (.chunks per epoch,
                          .chunk(c, epoch) -> batch), .fingerprint (a dict saved in the
                          checkpoint's meta, which --resume compares),
                          .info (for the first line); `saved`: the checkpoint being resumed
    complete(cfg, data)   the Config with the sizes only the data knows (vocabulary, classes)
    data_meta(data)       what a checkpoint keeps of the data besides the vocabulary (labels)
    evaluate(params, cfg, data, tcfg, workers) -> {METRIC: ..., ...} validation figures
    train_figures(mean_loss) -> {...}      how a training step's loss is recorded
    batch_chars(batch)    characters a batch trains on (chars/s)
    memory_needed(cfg, batch, seq, processes)   bytes a training step needs, about
    inside(params, cfg, vocab, text, keep=None, meta=None) -> (read, spans, arrays, skipped)
                          a forward pass over `text` that records, per character read, what each
                          recurrent layer computed (read from the cells' forward caches, see
                          charrnn.nn.cells' *_series): `read` the characters the model read, one
                          per step; `spans` the (start, stop) of each independently read sequence
                          in it (the language model: one, the whole text; the encoder families:
                          one per line); `arrays` {name: (len(read), H)} named "l{k}.{s}" (layer,
                          series: LSTM i f o g c h, GRU r z n h, RNN h) or, for an encoder,
                          "l{k}.{fw,bw}.{s}"; only the names in `keep` when given; `skipped` the
                          characters outside the vocabulary (dropped, or read as the unknown
                          symbol). `meta`: the checkpoint's (a generator reads its
                          label names there: it records `text<TAB>label` lines, each read
                          afresh under its label). charrnn.tools.inside builds on it.
    describe(cfg), describe_metric(value)   one line each, for `info`

Families that generate from a condition (generate) add `conditioned_lm(params, cfg, cond)`:
the plain language model (lm's parameters) and initial state that generate under one condition
vector, for the sampler; the CLI tells such a family by this hook.
"""

from __future__ import annotations

from ..errors import ConfigError
from . import classify, generate, lm, seq2seq, tag

FAMILIES = {F.NAME: F for F in (lm, classify, tag, seq2seq, generate)}


def family(name: str):
    """The family module registered as `name`; ConfigError naming the choices otherwise."""
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown model family {name!r}; choose one of "
                          f"{', '.join(FAMILIES)}") from None
