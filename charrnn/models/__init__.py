"""Model families: every shape of recurrent network charrnn trains, behind one contract.

A family is a module; `FAMILIES` maps its NAME to it, and the trainer, the worker processes,
checkpoints, gradcheck, the commands and the report look it up there and never special-case
one (as makemore gives every model `forward(idx, targets)`). A family writes the essential
names; the registry derives the others once, below (`_derive`), for any the family leaves out,
so `F.count_params(cfg)` and the like work on every family. A family may still write a derived
name itself when it has a better one (lm's `init_state`: it carries a state).

Essential: every family writes these.

    NAME                  registry key ("lm"): the --task value, saved in checkpoints as "family"
    Config                frozen dataclass of what rebuilds the parameters (to_dict, from_dict);
                          a size of 0 means "taken from the data"; last, `kernels` ("numpy",
                          "fused"): the kernels its cells run, passed to charrnn.nn.cells.cell
                          (to_dict omits "numpy"; checkpoints omit it)
    METRIC                the validation figure the trainer keeps the best (lowest) of
    param_shapes(cfg)     {name: shape} in a fixed order: parameters, gradients, optimizer
                          state, shared memory and checkpoints all walk it
    init_params(cfg, rng) {name: array} of those shapes
    gradients(params, cfg, batch, state, masks, dfinal, scale=1.0)
                          -> (loss, grads, final state, d initial state); batch is a tuple of
                          arrays whose rows (axis 0) are independent, so a slice of rows is a batch
    draw_masks(cfg, rng, batch)   the batch's randomness (dropout) for all rows at once, before
                          they are split across processes (None: none); time-major (T, N, ...)
    example_batch(cfg, rng, rows, steps)   a random batch, for gradcheck and the contract test
    check_configs(cell, layers, hidden, vocab, classes) -> [(label, Config)]   the small
                          float64 models `charrnn gradcheck` checks (every variant: poolings,
                          attention kinds, ways in), sizes from its options
    width(cfg)            values per row and step: splitting rows across processes pays only
                          when each slice keeps enough of them (charrnn.parallel.MIN_SLICE)
    score_rows(params, cfg, *arrays, **opts) -> [arrays]   one slice of the evaluation work
                          (what a worker process runs for evaluate)
    load_data(tcfg, saved=None) -> data with .vocab, .batches (.chunks per epoch,
                          .chunk(c, epoch) -> batch), .fingerprint (a dict --resume compares),
                          .info (train_chars, val_chars, vocab, data: the first line's text)
    complete(cfg, data)   the Config with the sizes only the data knows (vocabulary, classes)
    evaluate(params, cfg, data, tcfg, workers) -> {METRIC: ..., ...}  validation figures
    batch_chars(batch)    characters a batch trains on (chars/s)
    memory_needed(cfg, batch, seq, processes)   bytes a training step needs, about
    describe(cfg), describe_metric(value)   one line each, for `info`, `runs` and the report
    inside(params, cfg, vocab, text, keep=None, meta=None) -> (read, spans, arrays, skipped)
                          a forward pass over `text` recording, per character read, what each
                          recurrent layer computed (from the cells' forward caches, see
                          charrnn.nn.cells' *_series): `read` the characters read, one per
                          step; `spans` the (start, stop) of each independently read sequence in
                          it (lm: one, the whole text; the encoder families: one per line);
                          `arrays` {name: (len(read), H)} named "l{k}.{s}" (layer, series: LSTM
                          i f o g c h, GRU r z n h, RNN h) or "l{k}.{fw,bw}.{s}" for an encoder;
                          only the names in `keep` when given; `skipped` the characters outside
                          the vocabulary; `meta` the checkpoint's (a generator reads its label
                          names there). charrnn.inside.record builds on it.

Derived with a default: written by the registry unless the family writes its own.

    DEFAULT               Config(): the model `charrnn train` trains (the measured defaults)
    TRAIN_DEFAULTS        {} : the training settings (charrnn.train.config.TrainConfig fields)
                          where this task's differ from TrainConfig's, e.g. {"batch": 32};
                          TrainConfig.for_task applies them, under the settings given
    count_params(cfg)     the sum of param_shapes' sizes
    init_state(cfg, rows) () : the state carried from batch to batch, nested tuples of (rows,
                          ...) arrays (charrnn.nn.state); lm writes its own
    state_names(cfg)      [] : a name per array of that state, for checkpoints and gradcheck
    slice_masks(masks, rows)   [m[:, rows] for m in masks]: the masks of the rows `rows` (a
                          slice), for draw_masks' time-major masks
    loss_and_grads(params, cfg, batch, state=(), rng=None, masks=None, scale=1.0)
                          -> (loss, grads, final state): draw_masks from `rng` unless `masks`
                          are given, then gradients without the final state's gradient
    loss(params, cfg, batch, state=(), masks=None) -> (loss, final state)   gradients' loss;
                          a family writes a forward-only one when it is cheaper
    train_figures(mean_loss) {"train_loss": mean_loss}: how a training step's loss is recorded
    data_meta(data)       {} : what a checkpoint keeps of the data besides the vocabulary
    OUT_OF_VOCABULARY     "read as the unknown symbol": what becomes of characters outside the
                          vocabulary when the model reads a text (lm, generate: "skipped")
    IGNORES               () : the TrainConfig settings the family does not read, which
                          `charrnn train --task NAME` refuses (lm: "val"; the others: "seq");
                          a Config field applies to the families whose Config has it

Optional: what a trained model is used for. A command asks for the hook or attribute, never for
a family by name, so a new family with one of them is served at once.

    stepper(params, cfg) -> step(ids, state) -> (logits, state)   the family is a plain language
                          model (lm): `charrnn sample` continues a prime with it one character
                          at a time, `charrnn eval` scores plain text, `gradflow` measures it
    conditioned_lm(params, cfg, cond) -> (lm params, initial state)   the family generates from
                          a condition (generate): the plain language model that generates under
                          one condition vector, for `charrnn sample --label` and `charrnn eval`
    ANSWERS               what `charrnn predict` answers each text with, which also says how
                          `charrnn eval` scores a file of examples: "label" (one per text, a
                          classifier), "tags" (one per character, a tagger) or "text" (an output
                          text decoded step by step, seq2seq: see its decoding section)

Checkpoints keep NAME under the key "family" (its name since checkpoint format version 2, kept so
that files written before and the readers of them stay as they are); everything a person reads,
--task first, calls it the task.
"""

from __future__ import annotations

import math

from ..errors import ConfigError
from . import classify, generate, lm, seq2seq, tag

ESSENTIAL = ("NAME", "Config", "METRIC", "param_shapes", "init_params", "gradients",
             "draw_masks", "example_batch", "check_configs", "width", "score_rows", "load_data",
             "complete", "evaluate", "batch_chars", "memory_needed", "describe",
             "describe_metric", "inside")


def slice_masks(masks, rows: slice):
    """The masks of the rows `rows`: views of time-major (T, N, ...) masks."""
    return None if masks is None else [m[:, rows] for m in masks]


def _derive(F):
    """Write into family module F the derived names it leaves out; F itself, ready."""
    missing = [name for name in ESSENTIAL if not hasattr(F, name)]
    if missing:
        raise TypeError(f"model family {F.__name__} lacks {', '.join(missing)}")

    def count_params(cfg) -> int:
        return sum(math.prod(s) for s in F.param_shapes(cfg).values())

    def init_state(cfg, rows: int) -> tuple:
        return ()  # nothing is carried from batch to batch

    def state_names(cfg) -> list[str]:
        return []

    def loss_and_grads(params, cfg, batch, state=(), rng=None, masks=None, scale=1.0):
        if masks is None:
            masks = F.draw_masks(cfg, rng, batch)
        loss, grads, final, _ = F.gradients(params, cfg, batch, state, masks, None, scale)
        return loss, grads, final

    def loss(params, cfg, batch, state=(), masks=None):
        value, _, final, _ = F.gradients(params, cfg, batch, state, masks, None)
        return value, final

    def train_figures(mean_loss: float) -> dict:
        return {"train_loss": mean_loss}

    def data_meta(data) -> dict:
        return {}

    derived = {"DEFAULT": F.Config(), "TRAIN_DEFAULTS": {},
               "OUT_OF_VOCABULARY": "read as the unknown symbol", "IGNORES": (),
               "count_params": count_params,
               "init_state": init_state, "state_names": state_names, "slice_masks": slice_masks,
               "loss_and_grads": loss_and_grads, "loss": loss, "train_figures": train_figures,
               "data_meta": data_meta}
    for name, value in derived.items():
        if not hasattr(F, name):
            setattr(F, name, value)
    return F


FAMILIES = {F.NAME: _derive(F) for F in (lm, classify, tag, seq2seq, generate)}


def family(name: str):
    """The family module registered as `name`; ConfigError naming the choices otherwise."""
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown task (model family) {name!r}; choose one of "
                          f"{', '.join(FAMILIES)}") from None
