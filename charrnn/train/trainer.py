"""Training: truncated BPTT over the batches of any model family, clipping, validation, budgets.

`train(cfg, on_event)` runs one training session and returns a TrainResult; it never prints.
Progress goes to `on_event(Event)` after every step and evaluation; a truthy return asks the
trainer to stop at the step boundary (as Ctrl-C does), saving `last` first. The run directory,
the checkpoints and the exact resume are charrnn.train.session's; the settings
charrnn.train.config's.

The loop (`_run`), once per step: stop if a budget is spent or a stop was asked for; take the
next batch; compute the loss and gradients (split across processes, charrnn.parallel); clip and
step the optimizer; advance the data position (the carried state resets when an epoch wraps);
log, report and, every eval_every steps, evaluate and save.

The cosine decay is measured against the budget: x = max((step - warmup) / (total_steps -
warmup), elapsed / (minutes * 60)) over the budgets given; a --minutes budget makes the schedule
follow the clock, so only runs bounded by --steps/--epochs are reproducible.
"""

from __future__ import annotations

import math
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.text import BUNDLED  # noqa: F401 (the default corpus, for the CLI)
from ..errors import CharrnnError, TrainingDiverged
from ..nn.optim import learning_rate
from ..parallel import workers as P
from .config import TrainConfig, resume_config  # noqa: F401 (this module's API)
from .runlock import lock
from .session import Session

LOG_EVERY = 10  # steps per "train" record in the history


@dataclass
class Event:
    kind: str  # "start" (info filled), "step" (after each update) or "eval"
    step: int
    epoch: float  # epochs done, fractional
    progress: float  # fraction of the budget used, [0, 1]
    elapsed: float  # seconds of training, resumed runs included
    left: float | None  # estimated seconds to the end of the budget
    record: dict  # the latest train-step figures or the eval record
    info: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    epoch: float
    elapsed: float
    # "steps", "epochs", "minutes", "patience", "interrupted" (Ctrl-C, or on_event returned
    # True), "terminated" (SIGTERM) or "hung up" (SIGHUP)
    reason: str
    best: float | None  # best and last validation figure (the family's METRIC)
    last: float | None
    history: list
    metric: str = "val_bpc"
    already_done: bool = False  # resumed with its budget already spent: nothing was done

    @property
    def best_val_bpc(self) -> float | None:
        return self.best if self.metric == "val_bpc" else None

    @property
    def last_val_bpc(self) -> float | None:
        return self.last if self.metric == "val_bpc" else None


# the signals a run stops at a step boundary for (with its save), and the reason each gives
STOP_SIGNALS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}
AFTER_STOP = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
if hasattr(signal, "SIGHUP"):  # the terminal closed, or the ssh connection dropped (not Windows)
    STOP_SIGNALS[signal.SIGHUP] = "hung up"
    AFTER_STOP[signal.SIGHUP] = signal.SIG_DFL


@contextmanager
def _deferred_stop(stop: list, signals):
    """In the main thread, turn the first of `signals` (SIGINT: Ctrl-C; SIGTERM) into a stop
    request: `stop` gets the reason, and the loop saves last.npz at the next step boundary. After
    that a second Ctrl-C interrupts at once (KeyboardInterrupt) and a SIGTERM ends the process;
    the checkpoints are written atomically either way."""
    def handler(signum, frame):
        stop.append(STOP_SIGNALS[signum])
        for s in signals:
            signal.signal(s, AFTER_STOP[s])
    try:
        old = {s: signal.signal(s, handler) for s in signals}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def train(cfg: TrainConfig, on_event=None, resume: bool = False,
          threads: int | None = None, sigterm: bool = False) -> TrainResult:
    """Train per `cfg` (continuing cfg.run_dir/last.npz when `resume`), return the result.

    `threads`: how many cores share each batch's rows: this process and threads - 1 worker
    processes, each single-threaded (charrnn.parallel); None uses as many as BLAS would, or, on
    resume, as many as the run used before (saved in the checkpoint), which keeps the resume
    bit-exact. The random stream does not depend on it; results differ with it only in the last
    bits of floating-point sums.

    The first Ctrl-C (SIGINT, in the main thread) stops the run at the next step boundary and
    saves last.npz (reason "interrupted"). With `sigterm`, SIGTERM and SIGHUP do the same
    (reasons "terminated" and "hung up"; `charrnn train` turns it on); otherwise they keep their
    own handling.

    Raises CorpusError, ConfigError, CheckpointError, TrainingDiverged (the checkpoints of the run
    stay as they were) or CharrnnError (run directory in use or already holding a run).
    """
    run_dir = cfg.run_dir
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CharrnnError(f"cannot create run directory {run_dir}: {e.strerror or e}") from None
    try:
        with lock(run_dir):
            signals = tuple(STOP_SIGNALS) if sigterm else (signal.SIGINT,)
            session = Session(cfg, run_dir, resume, threads)
            try:
                return _Loop(session, on_event or (lambda e: None)).run(signals)
            finally:
                session.workers.close()
    finally:
        if created:  # a run that failed before writing anything leaves no empty directory
            try:
                run_dir.rmdir()  # only if empty
            except OSError:
                pass


@dataclass
class _Window:
    """The training figures since the last "train" record (every LOG_EVERY steps)."""

    t: float  # when the window opened (perf_counter)
    loss: float = 0.0  # sums over the window's steps
    norm: float = 0.0
    steps: int = 0
    chars: int = 0

    def add(self, loss: float, norm: float, chars: int) -> None:
        self.loss, self.norm = self.loss + loss, self.norm + norm
        self.steps, self.chars = self.steps + 1, self.chars + chars


class _Loop:
    """The training loop of one session, in named steps (see the module docstring)."""

    def __init__(self, s: Session, on_event):
        self.s, self.on_event, self.cfg = s, on_event, s.cfg
        cfg, B = s.cfg, s.batches
        self.total = cfg.steps
        if cfg.epochs:
            by_epochs = max(1, math.ceil(min(cfg.epochs * B.chunks, 2.0**62)))  # 1e308: no limit
            self.total = min(self.total or by_epochs, by_epochs)
        self.seconds = cfg.minutes * 60 if cfg.minutes else None
        self.t0, self.step0 = time.perf_counter(), s.step
        self.p0 = self.fraction(s.elapsed0)
        self.stop: list = []  # reasons to stop, from signals or on_event
        self.last: dict = {}  # the figures of the latest step, for events
        self.chars = 0  # characters trained on since this process started

    # -- budget and events ----------------------------------------------------------------------

    def elapsed(self) -> float:
        return self.s.elapsed0 + time.perf_counter() - self.t0

    def fraction(self, el: float, offset: int = 0) -> float:
        """Of the budget used, the largest over the budgets given."""
        p = (self.s.step - offset) / max(1, self.total - offset) if self.total else 0.0
        return min(1.0, max(p, el / self.seconds if self.seconds else 0.0))

    def spent(self, el: float) -> str | None:
        """Why the run should stop now, if it should."""
        cfg, s = self.cfg, self.s
        if self.stop:
            return self.stop[0]
        if self.total and s.step >= self.total:
            return "steps" if self.total == cfg.steps else "epochs"
        if self.seconds and el >= self.seconds:
            return "minutes"
        if cfg.patience and s.bad_evals >= cfg.patience:
            return "patience"
        return None

    def event(self, kind: str, record: dict, el: float, info=None) -> None:
        s, p = self.s, self.fraction(el)
        left = (1 - p) * (el - s.elapsed0) / (p - self.p0) if p > self.p0 else None
        if self.on_event(Event(kind, s.step, s.epoch_f, p, el, left, record, info or {})):
            self.stop.append("interrupted")

    def log_train(self, win: _Window, el: float) -> None:
        self.s.log({"kind": "train", "step": self.s.step, "epoch": self.s.epoch_f,
                    **self.s.F.train_figures(win.loss / win.steps),
                    "grad_norm": win.norm / win.steps, "lr": self.last["lr"],
                    "chars_per_sec": win.chars / (time.perf_counter() - win.t), "elapsed": el})

    # -- one step -------------------------------------------------------------------------------

    def update(self, batch, lr: float) -> tuple[float, float]:
        """Loss and gradients of one batch, clipped, and the optimizer's step: (loss, norm)."""
        s = self.s
        with np.errstate(all="ignore"):  # overflow is caught just below, as divergence
            loss, grads, state = P.loss_and_grads(s.F, s.params, s.model, batch, s.state, s.rng,
                                                  s.workers)
            norm = s.opt.clip_and_step(s.params, grads, lr, self.cfg.clip) \
                if math.isfinite(loss) else math.nan
        if not math.isfinite(norm):
            what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {norm}"
            raise TrainingDiverged(
                f"training diverged at step {s.step + 1}: {what}; try a lower --lr "
                f"(it was {self.cfg.lr:g}); the checkpoints in {s.run_dir} are unchanged")
        s.state = state
        s.stepped()
        return loss, norm

    def advance(self) -> None:
        """The next data position; the carried state resets when the epoch wraps."""
        s = self.s
        s.step, s.chunk = s.step + 1, s.chunk + 1
        if s.chunk == s.batches.chunks:  # the streams wrap to their starts: reset the state
            s.epoch, s.chunk = s.epoch + 1, 0
            s.state = s.F.init_state(s.model, self.cfg.batch)

    # -- the loop -------------------------------------------------------------------------------

    def run(self, signals) -> TrainResult:
        s, cfg = self.s, self.cfg
        reason = self.spent(self.elapsed())
        if reason and self.step0:  # resumed with the budget spent: no step, save or evaluation
            evals = [r[s.F.METRIC] for r in s.history if r["kind"] == "eval"]
            return TrainResult(s.run_dir, s.step, s.epoch_f, s.elapsed0, reason, s.best,
                               evals[-1] if evals else None, s.history, s.F.METRIC, True)
        info = {"params": s.F.count_params(s.model), **s.data.info,
                "chunks_per_epoch": s.batches.chunks, "total_steps": self.total,
                "resumed_at": self.step0, "run_dir": str(s.run_dir),
                "processes": len(s.workers.split(s.F, s.model, cfg.batch)),
                "processes_failed": s.workers.failed, "kernels": s.cfg.kernels,
                "kernels_note": s.kernels_note, "resume_note": s.resume_note}
        self.event("start", {}, s.elapsed0, info)
        win = _Window(time.perf_counter())
        with _deferred_stop(self.stop, signals):
            while not (reason := self.spent(el := self.elapsed())):
                # the batch, and the learning rate of this step
                batch = s.batches.chunk(s.chunk, s.epoch)
                lr = learning_rate(cfg.lr, cfg.schedule, cfg.warmup, s.step,
                                   self.fraction(el, cfg.warmup))
                # forward, backward, clip, step
                loss, norm = self.update(batch, lr)
                self.advance()
                # figures: the window's record every LOG_EVERY steps, an event every step
                chars = s.F.batch_chars(batch)
                win.add(loss, norm, chars)
                self.chars += chars
                el = self.elapsed()
                self.last.update(s.F.train_figures(loss), grad_norm=norm, lr=lr,
                                 chars_per_sec=self.chars / max(el - s.elapsed0, 1e-9))
                if s.step % LOG_EVERY == 0:
                    self.log_train(win, el)
                    win = _Window(time.perf_counter())
                self.event("step", dict(self.last), el)
                # evaluate and save
                if s.step % cfg.eval_every == 0:
                    rec = s.evaluate(el)
                    self.last[s.F.METRIC] = rec[s.F.METRIC]
                    self.event("eval", rec, el)
                    win.t = time.perf_counter()
            # the end: the last window's record, and a last.npz at this step
            el = self.elapsed()
            if win.steps:
                self.log_train(win, el)
            done = any(r["kind"] == "eval" and r["step"] == s.step for r in s.history)
            if done or reason in STOP_SIGNALS.values():  # save at once, no validation pass
                s.checkpoint("last", el)
            else:
                self.event("eval", s.evaluate(el), el)
        evals = [r[s.F.METRIC] for r in s.history if r["kind"] == "eval"]
        return TrainResult(s.run_dir, s.step, s.epoch_f, el, reason, s.best,
                           evals[-1] if evals else None, s.history, s.F.METRIC)
