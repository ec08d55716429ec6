"""Training settings: `TrainConfig` (one field per `charrnn train` option) and reading them back
for --resume.

A TrainConfig holds the model family's name (`task`) and its model `Config`, whose vocabulary
size is left 0 and taken from the data. Saved in every checkpoint as meta["train"]:
{"corpus", "task", "model": {...}, "out", ...}. Checkpoints of format version 1 saved the
language model's settings (cell, hidden, layers, dropout, dtype) at the top level instead, and
`TrainConfig.from_dict` reads that form too.
"""

from __future__ import annotations

import codecs
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path

from .. import checkpoint as C
from ..data.text import BUNDLED
from ..errors import CheckpointError, ConfigError
from ..models import family
from ..nn.cells import DEFAULT_KERNELS, FUSED_CELLS, KERNEL_CHOICES
from ..nn.optim import OPTIMIZERS, SCHEDULES

DEFAULT_MINUTES = 5.0  # the budget when none of steps, epochs, minutes is given
BUDGET = ("steps", "epochs", "minutes")
RUN_ONLY = BUDGET + ("eval_every", "patience")  # fields a resumed run may change


def _whole(v, least: int = 0) -> bool:
    """A whole number >= least; bool is an int to Python, not to us."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= least


@dataclass(frozen=True)
class TrainConfig:
    """Every training setting; with the model's own (`model`) they are the CLI options of
    `charrnn train` one to one.

    The defaults (those here and the family's DEFAULT model: for the language model GRU 384x1,
    dropout 0.2) are the measured best for a 5-minute budget on a 2-core CPU over three corpora
    (tiny Shakespeare, Debian's fortunes, Python's standard library; validation = each one's
    last 10%; `python bench/defaults.py`), by the mean gap to the best per corpus; the runs
    behind them are in docs/en/explanation/findings.md, "The language model's defaults".
    """

    corpus: str = str(BUNDLED)
    task: str = "lm"  # the model family (charrnn.models.FAMILIES)
    model: object = None  # the family's Config; None: its DEFAULT
    out: str | None = None  # run directory; None: runs/<corpus stem>
    encoding: str = "utf-8"
    val_frac: float = 0.1
    val: str | None = None  # a file of validation examples instead of val_frac (not for lm)
    seed: int = 0
    batch: int = 32
    seq: int = 64
    optimizer: str = "adam"
    lr: float = 8e-3
    schedule: str = "cosine"
    warmup: int = 100
    clip: float = 5.0
    weight_decay: float = 0.0  # decoupled: weight matrices shrink by lr * weight_decay per step
    # > 0: evaluate and save an exponential moving average of the weights with this decay per
    # step (charrnn.nn.optim.Average) instead of the weights as trained; 0: off
    ema: float = 0.0
    steps: int | None = None
    epochs: float | None = None
    minutes: float | None = None  # with no budget at all, DEFAULT_MINUTES
    eval_every: int = 500
    patience: int = 0  # evaluations without improvement before stopping; 0: never
    # the cells' kernels (charrnn.nn.cells.KERNEL_CHOICES): "auto", the compiled "fused" ones
    # where they serve and build here, else NumPy's; or either by name. The trainer makes "auto"
    # concrete before the first step and saves that, which --resume keeps, since the two agree
    # only to float32 rounding. The model's Config carries the concrete choice to the cells.
    kernels: str = DEFAULT_KERNELS

    def __post_init__(self):
        def need(ok, msg):
            if not ok:
                raise ConfigError(msg)

        F = family(self.task)
        if self.model is None:
            object.__setattr__(self, "model", F.DEFAULT)
        need(isinstance(self.model, F.Config),
             f"model must be a {F.__name__}.Config, not {type(self.model).__name__}")
        for name in ("batch", "seq", "eval_every"):
            v = getattr(self, name)
            need(_whole(v, 1), f"{name} must be a positive whole number, not {v!r}")
        for name in ("warmup", "patience", "seed"):
            v = getattr(self, name)
            need(_whole(v, 0), f"{name} must be a whole number >= 0, not {v!r}")
        need(self.steps is None or _whole(self.steps, 1),
             f"steps must be a positive whole number, not {self.steps!r}")
        for name in ("epochs", "minutes", "val_frac", "lr", "clip"):
            v = getattr(self, name)
            need((v is None and name in BUDGET) or
                 (isinstance(v, (int, float)) and not isinstance(v, bool)),
                 f"{name} must be a number, not {v!r}")
        for name in ("epochs", "minutes"):
            v = getattr(self, name)
            need(v is None or 0 < v < math.inf, f"{name} must be positive and finite, not {v!r}")
        need(0 < self.val_frac < 1, f"val_frac must be between 0 and 1, not {self.val_frac!r}")
        need(self.lr > 0 and math.isfinite(self.lr), f"lr must be positive, not {self.lr!r}")
        need(self.clip >= 0, f"clip must be >= 0 (0 turns clipping off), not {self.clip!r}")
        wd = self.weight_decay
        need(isinstance(wd, (int, float)) and not isinstance(wd, bool) and 0 <= wd < math.inf,
             f"weight_decay must be a number >= 0, not {wd!r}")
        need(isinstance(self.ema, (int, float)) and not isinstance(self.ema, bool)
             and 0 <= self.ema < 1, f"ema must be a number in [0, 1), not {self.ema!r}")
        for name, choices in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES),
                              ("kernels", KERNEL_CHOICES)):
            need(getattr(self, name) in choices,
                 f"{name} must be one of {', '.join(choices)}, not {getattr(self, name)!r}")
        cell = getattr(self.model, "cell", "lstm")
        need(self.kernels != "fused" or cell in FUSED_CELLS,
             f"the fused kernels speed up {' and '.join(c.upper() for c in FUSED_CELLS)} cells "
             f"only, and this model's cell is {cell}: leave kernels at auto or numpy")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ConfigError(f"unknown text encoding {self.encoding!r}") from None
        if self.steps is None and self.epochs is None and self.minutes is None:
            object.__setattr__(self, "minutes", DEFAULT_MINUTES)

    @property
    def run_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / Path(self.corpus).stem

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["model"] = self.model.to_dict()
        d["fused_cells"] = list(FUSED_CELLS)  # what "fused" covered when this was written
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The inverse of to_dict. Model settings may also stand at the top level (as in
        format-version-1 checkpoints, and as the CLI's options come), where they replace those
        in d["model"]; unknown keys are ignored."""
        F = family(d.get("task", "lm"))
        mine = {f.name for f in fields(cls)} - {"model"}
        theirs = set(F.Config.__dataclass_fields__) - {"vocab_size", "kernels"}  # ours
        model = d.get("model")
        model = dict(model) if isinstance(model, dict) else F.DEFAULT.to_dict()
        model.update({k: v for k, v in d.items() if k in theirs})
        model["vocab_size"] = 0
        return cls(model=F.Config.from_dict(model), **{k: v for k, v in d.items() if k in mine})

    @classmethod
    def for_task(cls, task: str = "lm", **settings) -> TrainConfig:
        """What `charrnn train --task TASK` trains with `settings` (training and model settings
        by name, as from_dict takes them): the family's TRAIN_DEFAULTS, the settings given over
        them, and TrainConfig's defaults for the rest."""
        return cls.from_dict({**family(task).TRAIN_DEFAULTS, **settings, "task": task})

    def replace(self, **changes) -> TrainConfig:
        """A copy with `changes`, model settings (cell=..., hidden=...) included."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})


def resume_config(run_dir: str | os.PathLike, **given) -> TrainConfig:
    """The configuration saved in run_dir/last.npz, with the settings in `given` replacing it
    (model settings such as cell= or hidden= too). Giving any of steps/epochs/minutes replaces
    the whole budget (the others become None)."""
    path = Path(run_dir) / f"last{C.SUFFIX}"
    if not path.is_file():
        raise nothing_to_resume(run_dir)
    saved = C.load(path).meta.get("train")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path} holds no training configuration to resume from")
    saved = as_run(saved)
    if isinstance(saved.get("corpus"), str):
        saved["corpus"] = C.recorded_corpus(saved["corpus"], run_dir, saved.get("out"))
    if any(k in given for k in BUDGET):
        saved.update(dict.fromkeys(BUDGET))
    saved.update(given, out=str(run_dir))
    return TrainConfig.from_dict(saved)


def as_run(saved: dict) -> dict:
    """A checkpoint's training settings as the run really trained: "fused" kernels on a cell they
    did not cover then (before "fused_cells" was recorded they covered the LSTM only) ran NumPy's
    loops, and a run saved before the kernels were recorded ran NumPy's, so the run resumes with
    those, exactly."""
    model = saved.get("model") if isinstance(saved.get("model"), dict) else {}
    cell = saved.get("cell", model.get("cell"))
    covered = saved.get("fused_cells", ["lstm"])
    if "kernels" not in saved or (saved["kernels"] == "fused" and isinstance(covered, list)
                                  and cell not in covered):
        return {**saved, "kernels": "numpy"}
    return saved


def nothing_to_resume(run_dir) -> CheckpointError:
    last, best = Path(run_dir) / f"last{C.SUFFIX}", Path(run_dir) / f"best{C.SUFFIX}"
    return CheckpointError(f"nothing to resume: {last} does not exist" + (
        " (best.npz holds a model, but not the state to train on from)" if best.exists() else ""))


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(F, model, batch: int, seq: int, processes: int = 1) -> None:
    """ConfigError when a step would need more memory than the machine has (F.memory_needed),
    instead of a machine that swaps itself to a halt or a trainer killed by the system."""
    need, have = F.memory_needed(model, batch, seq, processes), _physical_memory()
    if have and need > have:
        raise ConfigError(
            f"training would need about {need / 2**30:.1f} GiB per step (--batch {batch} x --seq "
            f"{seq} x {model.vocab_size} characters of vocabulary, hidden {model.hidden}), more "
            f"than this machine's {have / 2**30:.1f} GiB; use a smaller --batch, --seq or --hidden"
            + (" (or --processes 1)" if processes > 1 else ""))

