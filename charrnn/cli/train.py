"""`charrnn train`: options, live progress and the summary table (see charrnn.train)."""

from __future__ import annotations

import math
import os
import sys

import click
from rich.table import Table
from rich.text import Text

from .. import checkpoint as C
from ..models import FAMILIES
from ..models.lm import DTYPES
from ..nn.cells import KERNEL_CHOICES
from ..nn.optim import OPTIMIZERS, SCHEDULES
from .console import CELL_CHOICE, CONTEXT, PATH, FiniteFloat, alias, err

# --- train -------------------------------------------------------------------------------------

def _train_defaults():
    from ..train.config import TrainConfig
    return TrainConfig().to_dict() | TrainConfig().model.to_dict()


_TD = _train_defaults()
_POS = click.IntRange(1)


TASKS = tuple(FAMILIES)
POOLING = FAMILIES["classify"].POOLING


def _applies(F, name: str) -> bool:
    """Whether option `name` means anything to family F: a setting of its Config, or a training
    setting it does not ignore (the contract's IGNORES)."""
    model = {n for G in FAMILIES.values() for n in G.Config.__dataclass_fields__}
    return name not in F.IGNORES and (name not in model or name in F.Config.__dataclass_fields__)


def _check_applies(task: str, given: dict) -> None:
    for name in given:
        if not _applies(FAMILIES[task], name):
            flag = "--" + name.replace("_", "-")
            tasks = [t for t, F in FAMILIES.items() if _applies(F, name)]
            raise click.UsageError(f"{flag} applies to --task {' and '.join(tasks)} only")


def _duration(seconds):
    if seconds is None or math.isnan(seconds):
        return "?"
    m, s = divmod(round(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def _train_line(e, total, width=None):
    """The figures of event `e` on one line, each named and with its unit: the language model's
    bits per character; the others' losses in nats, a classifier's validation error weighted as
    in training (the figure its best checkpoint is chosen by, as the summary says) with its
    accuracy, a tagger's accuracy, an encoder-decoder's exact match. With `width`, the least
    needed are left out until the line fits: the epoch, the gradient norm, the units, a space
    of each gap, the training loss, the accuracy (an 80-column terminal keeps step, train, val,
    chars/s and time left up to ~10k steps; a classifier's val error and accuracy)."""
    r = e.record
    parts = {"step": f"step {e.step}/{total}" if total else f"step {e.step}",
             "epoch": f"epoch {e.epoch:.2f}"}
    units = {}
    if "train_bpc" in r:
        parts["train"] = f"train {r['train_bpc']:.3f}"
    if "train_loss" in r:
        parts["train"], units["train"] = f"train {r['train_loss']:.3f}", " nats"
    if r.get("val_bpc") is not None:
        parts["val"], units["val"] = f"val {r['val_bpc']:.3f}", " bpc"
    elif r.get("val_error") is not None:
        parts["val"], units["val"] = f"val error {r['val_error']:.3f}", " weighted"
    elif r.get("val_loss") is not None:
        parts["val"], units["val"] = f"val {r['val_loss']:.3f}", " nats"
    if r.get("val_acc") is not None:
        parts["acc"] = f"acc {r['val_acc']:.1%}"
    if r.get("val_exact") is not None:
        parts["acc"] = f"exact {r['val_exact']:.1%}"
    if "grad_norm" in r:
        parts["grad"] = f"grad {r['grad_norm']:.2f}"
    if "chars_per_sec" in r:
        parts["rate"] = f"{r['chars_per_sec']:,.0f} chars/s"
    parts["left"] = f"{_duration(e.left)} left"
    gap = "  "

    def line():
        return gap.join(v + units.get(k, "") for k, v in parts.items())

    text = line()
    for drop in ("epoch", "grad", "units", "gap", "train", "acc"):
        if width is None or len(text) <= width:
            break
        if drop == "units":
            units.clear()
        elif drop == "gap":
            gap = " "
        else:
            parts.pop(drop, None)
        text = line()
    return text


BAR = 10  # the live bar's width; with "100%" and the spaces between, 16 columns before the line


class _TrainDisplay:
    """A Rich progress bar on a terminal, its line fitted to the terminal's width; otherwise one
    plain stderr line per evaluation; nothing at all when quiet."""

    def __init__(self, live: bool, quiet: bool = False, warmup: int = 0):
        self.live, self.quiet, self.warmup = live and not quiet, quiet, warmup
        self.total, self.last, self.progress = None, {}, None

    def __call__(self, e):
        if e.kind == "start":
            self.total = e.info["total_steps"]
            if self.total and self.warmup > self.total:  # a warning: shown even when quiet
                err.print(f"warning: --warmup {self.warmup} is longer than the budget of "
                          f"{self.total:,} steps; the learning rate never reaches --lr",
                          markup=False, soft_wrap=True)
            if self.quiet:
                return
            k = e.info["processes"]
            err.print(f"training {e.info['params']:,} parameters on {e.info['data']} into "
                      f"{e.info['run_dir']}, {k} process"
                      f"{'es' if k > 1 else ''}, {e.info['kernels']} kernels"
                      + (f" ({e.info['kernels_note']})" if e.info.get("kernels_note") else "")
                      + (f", resuming at step {e.info['resumed_at']}" if e.info["resumed_at"]
                         else ""), markup=False, soft_wrap=True)
            for line in e.info.get("summary_lines", ()):  # what the labelled data holds
                err.print(line, markup=False, soft_wrap=True)
            if e.info.get("resume_note"):
                err.print(f"note: {e.info['resume_note']}", markup=False, soft_wrap=True)
            if e.info["processes_failed"]:
                err.print(f"note: training in one process ({e.info['processes_failed']})",
                          markup=False, soft_wrap=True)
            if self.live:
                from rich.progress import BarColumn, Progress, TextColumn
                self.progress = Progress(BarColumn(bar_width=BAR),
                                         TextColumn("{task.percentage:>3.0f}%"),
                                         TextColumn("{task.description}", markup=False),
                                         console=err)
                self.progress.start()
                self.task = self.progress.add_task("starting", total=1.0)
            return
        if self.quiet:
            return
        if e.kind == "eval":
            self.last.update((k, v) for k, v in e.record.items() if k.startswith("val_"))
        else:
            self.last.update(e.record)
        shown = type(e)(e.kind, e.step, e.epoch, e.progress, e.elapsed, e.left, self.last)
        if self.progress is not None:
            self.progress.update(self.task, completed=e.progress, description=_train_line(
                shown, self.total, err.width - BAR - len(" 100% ") - 1))
        elif e.kind == "eval":
            err.print(_train_line(shown, self.total), soft_wrap=True, markup=False)

    def close(self):
        if self.progress is not None:
            self.progress.stop()


@click.command(context_settings=CONTEXT)
@click.argument("corpus", required=False, type=PATH)
@click.option("--cell", type=CELL_CHOICE, default=_TD["cell"], show_default=True,
              help="Recurrent cell.")
@click.option("--hidden", type=_POS, default=_TD["hidden"], show_default=True,
              help="Hidden units H per layer.")
@click.option("--layers", type=_POS, default=_TD["layers"], show_default=True,
              help="Stacked recurrent layers.")
@click.option("--dropout", type=FiniteFloat(0, 1, max_open=True), default=_TD["dropout"],
              show_default=True, help="Dropout between layers and before the output, in [0, 1).")
@click.option("--dtype", type=click.Choice(DTYPES), default=_TD["dtype"],
              show_default=True, help="Floating-point type (float64 for exact checks).")
@click.option("--seed", type=click.IntRange(0), default=_TD["seed"], show_default=True,
              help="Seed of the one random generator (initial weights and dropout).")
@click.option("--batch", type=_POS, default=_TD["batch"], show_default=True,
              help="Parallel streams N over the training text.")
@click.option("--seq", type=_POS, default=_TD["seq"], show_default=True,
              help="Time steps T per chunk (truncated BPTT length).")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS),
              default=_TD["optimizer"], show_default=True, help="Update rule (sgd has momentum 0.9).")
@click.option("--lr", type=FiniteFloat(0, min_open=True), default=_TD["lr"],
              show_default=True, help="Peak learning rate.")
@click.option("--schedule", type=click.Choice(SCHEDULES), default=_TD["schedule"],
              show_default=True, help="Learning rate after warm-up: cosine decay to 10% over the "
              "budget, or constant.")
@click.option("--warmup", type=click.IntRange(0), default=_TD["warmup"], show_default=True,
              help="Steps of linear learning-rate warm-up.")
@click.option("--clip", type=FiniteFloat(0), default=_TD["clip"], show_default=True,
              help="Clip gradients to this global norm; 0 turns clipping off.")
@click.option("--weight-decay", type=FiniteFloat(0), default=_TD["weight_decay"],
              show_default=True, metavar="WD", help="Shrink every weight matrix (not the "
              "biases) by lr * WD each step, apart from the gradient (AdamW's decoupled decay); "
              "0 turns it off.")
@click.option("--ema", type=FiniteFloat(0, 1, max_open=True), default=None, metavar="DECAY",
              help="Evaluate and save (best.npz, last.npz) an exponential moving average of the "
              "weights instead of the weights as trained: after each step the average moves "
              "(1 - DECAY) of the way to them, so it reaches back about 1/(1 - DECAY) steps "
              "(in a run's first steps, the last tenth of them), which smooths the noise of the "
              "last steps away; 0 turns it off  [default: 0; classify: 0.995]")
@click.option("--steps", type=_POS, default=None, help="Stop after this many optimizer steps.")
@click.option("--epochs", type=FiniteFloat(0, min_open=True), default=None,
              help="Stop after this many passes over the training text.")
@click.option("--minutes", type=FiniteFloat(0, min_open=True), default=None,
              help="Stop after this much training time (default 5 when no budget is given).")
@click.option("--eval-every", type=_POS, default=_TD["eval_every"], show_default=True,
              help="Steps between validation passes (and checkpoints).")
@click.option("--patience", type=click.IntRange(0), default=_TD["patience"], show_default=True,
              help="Stop after this many evaluations without a new best; 0: never.")
@click.option("--val-frac", type=FiniteFloat(0, 1, min_open=True, max_open=True),
              default=_TD["val_frac"], show_default=True,
              help="Fraction kept for validation: the text's end (lm), or a seeded share of the "
              "distinct texts, every copy of a text on one side (classify, tag, seq2seq).")
@click.option("--out", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Run directory  [default: runs/<corpus name>]")
@click.option("--resume", is_flag=True,
              help="Continue the run in the run directory exactly where last.npz left it.")
@click.option("--encoding", default=_TD["encoding"], show_default=True,
              help="Text encoding of CORPUS.")
@click.option("--processes", type=_POS, default=None,
              help="Processes sharing each chunk's streams: this one and PROCESSES-1 workers, "
              "each with single-threaded BLAS. Results differ only in the last bits  [default: "
              "as many as BLAS uses, usually one per core; with --resume, as many as the run "
              "used]")
@alias("--threads", "processes", type=_POS)
@click.option("--kernels", type=click.Choice(KERNEL_CHOICES), default=_TD["kernels"],
              show_default=True,
              help="The time loops' elementwise work (LSTM, GRU and RNN): fused, one compiled C "
              "call per step (built at first use with the system's C compiler, $CC or cc; "
              "float32; agrees with NumPy to rounding); numpy, NumPy's (the reference); auto, "
              "fused where it can be had (float32 and a working C compiler) and numpy otherwise, "
              "never an error. The first line names the kernels chosen (and why numpy, when "
              "auto chose it); --resume keeps the run's.")
@click.option("--quiet", "-q", is_flag=True,
              help="Print only the checkpoint's path (on stdout); errors still go to stderr.")
@click.option("--task", type=click.Choice(TASKS), default="lm", show_default=True,
              help="What to train: lm, a language model of CORPUS (a text file); classify, a "
              "label per text (CORPUS a TSV of text<TAB>label, or a folder of <label>.txt "
              "files); tag, a label per character (a TSV of text<TAB>tags); seq2seq, an "
              "encoder-decoder (a TSV of source<TAB>target); generate, texts generated from "
              "their label (the classifier's files).")
@click.option("--bidirectional/--unidirectional", default=None,
              help="classify, tag, seq2seq: read each text (source) both ways (the default) or "
              "left to right only.")
@click.option("--pooling", type=click.Choice(POOLING), default=None,
              help="classify: what the head reads: both directions' final states (last), or the "
              "outputs' mean or maximum over the text, or several of these side by side  "
              "[default: mean+max, the outputs' mean and maximum]")
@click.option("--class-weights", type=click.FloatRange(0, 1), default=None, metavar="POWER",
              help="classify: weight each example by (1 / its class's frequency) ** POWER: 1 "
              "makes every class count alike however rare, 0 every example  [default: 0.6]")
@click.option("--logit-adjust", type=click.FloatRange(0, 1), default=None, metavar="TAU",
              help="classify: in training, add TAU * log(class frequency) to the logits (the "
              "logit-adjusted loss), so the trained model favours no class for being frequent: 1 "
              "aims at every class alike (best with --class-weights 0: on the names more of both "
              "accuracy and macro accuracy than --class-weights 1), 0 off  [default: 0]")
@click.option("--input-dropout", type=FiniteFloat(0, 1, max_open=True), default=None,
              metavar="P", help="classify: in training, read each character as the unknown "
              "symbol with probability P, so the model cannot lean on any single one  [default: "
              "0, off]")
@click.option("--label-smoothing", type=FiniteFloat(0, 1, max_open=True), default=None,
              metavar="EPS", help="classify: in training, aim at 1 - EPS on the label and EPS "
              "spread evenly over all the classes instead of all on the label, so the model is "
              "never pushed to certainty  [default: 0, off]")
@click.option("--val", type=click.Path(path_type=str), default=None,
              help="classify, tag, seq2seq, generate: validate on this file instead of a "
              "--val-frac of CORPUS (how many of its texts CORPUS also holds is reported).")
@click.option("--attention", type=click.Choice(("additive", "dot", "none")), default=None,
              help="seq2seq: how each decoder step looks back at the encoder's outputs: "
              "additive (Bahdanau, the default), dot (Luong's general s W h), or none.")
@click.option("--condition", type=click.Choice(("init", "input", "none")), default=None,
              help="generate: where the label's one-hot c enters: init, every layer's initial "
              "state h0 = tanh(c W0 + b0) (the default, measured better); input, every step's "
              "input projection (+ c Wc); none, nowhere (an unconditioned baseline).")
def train(corpus, resume, quiet, processes, task, **opts):
    """Train a model on CORPUS: a language model of a text file (default: the bundled tiny
    Shakespeare); with --task classify or tag a classifier or tagger of labelled examples; with
    --task seq2seq an encoder-decoder with attention on source<TAB>target pairs.

    The last --val-frac of the text is held out for validation. Training runs --batch streams over
    the rest in chunks of --seq characters, carrying the hidden state between chunks, until the
    first of --steps, --epochs and --minutes is reached (5 minutes if none is given) or
    --patience evaluations pass without improvement. Every --eval-every steps the model is scored
    on the validation text in bits per character, and the run directory gets best.npz, last.npz
    and metrics.jsonl. Ctrl-C (or SIGTERM, SIGHUP) stops at the next step boundary, saves
    last.npz and exits with 130 (143, 129); `--resume` continues it bit for bit. Prints the best
    checkpoint's path on stdout (last.npz's if stopped before the first evaluation).

    \b
    Examples:
      charrnn train                                  tiny Shakespeare, defaults, 5 minutes
      charrnn train notes.txt --hidden 128 --steps 2000
      charrnn train notes.txt --resume --steps 4000  continue the run in runs/notes
      charrnn train --task classify corpora/names --minutes 2     surname -> language
      charrnn train --task tag seg.tsv --val seg_test.tsv         text<TAB>tags lines
      charrnn train --task seq2seq pairs.tsv --minutes 5         source<TAB>target lines
      charrnn train --task generate corpora/names --minutes 2     language -> surnames

    For classify, tag, seq2seq and generate, the options not given take that task's own
    defaults (classify: a bidirectional GRU 256x2, dropout 0.4, batch 64, lr 5e-3, mean+max
    pooling, the weights' moving average evaluated and saved (--ema 0.995); tag: a
    bidirectional GRU 256x1, dropout 0.2, batch 32; seq2seq: a bidirectional GRU 128x1 encoder,
    a GRU decoder with additive attention, batch 32; generate: a GRU 256x1, dropout 0.2, batch
    64, lr 5e-3; eval every 200 steps), batches hold texts of nearly one length, and the
    validation figure is the loss in nats per target character (tag, seq2seq), bits per
    character with the end marker (generate, which reads the classifier's files and learns each
    text from its label) or the error rate weighted as in training (classify).
    """
    from click.core import ParameterSource

    from ..data.text import DEFAULT_CORPUS, bundled
    from ..errors import CorpusError
    from ..train import trainer as T

    ctx = click.get_current_context()
    opts = {k: (v.lower() if k == "cell" else v) for k, v in opts.items()}
    given = {k: v for k, v in opts.items()
             if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE}
    _check_applies(task, given)
    if resume:
        if corpus is not None:
            given["corpus"] = corpus
        run_dir = opts["out"] or os.path.join("runs", os.path.splitext(
            os.path.basename(corpus or DEFAULT_CORPUS))[0])
        cfg = T.resume_config(run_dir, **given)
    elif task == "lm":
        if corpus is None:
            try:
                corpus = str(bundled())
            except CorpusError as e:
                raise click.UsageError(f"no CORPUS given and the bundled corpus is missing "
                                       f"({e})") from None
        # the options that default to the task's own value (None here) take TrainConfig's
        cfg = T.TrainConfig.from_dict({**{k: v for k, v in opts.items() if v is not None},
                                       "corpus": corpus})
    elif corpus is None:
        raise click.UsageError(f"--task {task} needs DATA: a TSV file"
                               + (" or a folder of <label>.txt files" if task == "classify"
                                  else ""))
    else:  # another task: its own defaults, and the options given
        cfg = T.TrainConfig.for_task(task, **given, corpus=corpus)
    display = _TrainDisplay(live=err.is_terminal, quiet=quiet, warmup=cfg.warmup)
    try:
        try:
            result = T.train(cfg, on_event=display, resume=resume, threads=processes,
                             sigterm=True)
        finally:
            display.close()
    except KeyboardInterrupt:  # a second Ctrl-C (left alone, Click says "Aborted!" and exits 1)
        err.print(f"interrupted at once; the checkpoints already in {cfg.run_dir} are intact",
                  markup=False)
        sys.exit(130)

    if result.already_done:
        err.print(f"{result.run_dir} already reached its budget ({result.reason}) at step "
                  f"{result.step:,}; nothing to do (give a larger --steps, --epochs or "
                  f"--minutes to go on)", markup=False, soft_wrap=True)
        click.echo(os.fsencode(C.resolve(result.run_dir)))
        return
    # a stop by a signal exits as the shell reports death by it: 128 + its number
    code = {"interrupted": 130, "terminated": 143, "hung up": 129}.get(result.reason)
    if not quiet:
        _summary(result, code)
    # last.npz if stopped before any evaluation; as bytes, so a name that is not UTF-8 comes out
    # as the file system has it
    click.echo(os.fsencode(C.resolve(result.run_dir)))
    if code:
        sys.exit(code)


def _summary(result, code):
    """The table of how training went, on stderr."""
    table = Table(title=f"training {result.reason if code else 'done'}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    rate = [r["chars_per_sec"] for r in result.history if r["kind"] == "train"]
    fmt = lambda v: "-" if v is None else f"{v:.4f}"
    metric = {"val_bpc": "val bits/char", "val_loss": "val loss (nats/char)",
              "val_error": "val error (weighted)"}.get(result.metric, result.metric)
    rows = [("stopped by", result.reason), ("steps", f"{result.step:,}"),
            ("epochs", f"{result.epoch:.2f}"), ("training time", _duration(result.elapsed)),
            ("chars/s (latest)", f"{rate[-1]:,.0f}" if rate else "-"),
            (f"best {metric}", fmt(result.best))]
    # the figures a person reads beside it, from the evaluation that gave the best
    best = next((r for r in result.history if r.get("kind") == "eval"
                 and r.get(result.metric) == result.best), None) if result.best is not None \
        else None
    for key, name in (("val_acc", "accuracy"), ("val_macro_acc", "macro accuracy"),
                      ("val_exact", "exact match")):
        if best is not None and best.get(key) is not None:
            rows.append((f"  {name} at best", f"{best[key]:.1%}"))
    rows += [(f"last {metric}", fmt(result.last)), ("run directory", str(result.run_dir))]
    for name, value in rows:
        table.add_row(name, Text(value))  # not markup: a run directory may hold "[" and "]"
    err.print(table)
