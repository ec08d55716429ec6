"""Training: truncated BPTT over N contiguous streams, clipping, validation, exact resume.

`train(cfg, on_event)` runs one training session and returns a TrainResult; it never prints.
Progress goes to `on_event(Event)` after every step and evaluation; a truthy return asks the
trainer to stop at the step boundary (as Ctrl-C does), saving `last` first.

Run directory (cfg.out, default runs/<corpus stem>), the contract other commands read:
    best.npz       checkpoint at the lowest validation loss so far
    last.npz       checkpoint at the latest evaluation or stop (what --resume continues)
    metrics.jsonl  one JSON record per line: {"kind": "train", ...} every LOG_EVERY steps and at a
                   stop, {"kind": "eval", ...} per evaluation (the same dicts as meta["history"])
    train.lock     exists while a trainer runs; holds its pid (a second trainer refuses to start;
                   see charrnn.runlock)

Checkpoint meta: "train" (TrainConfig), "step", "history", "best_val_bpc", "corpus", "elapsed",
and for the exact resume "rng" (the Generator's bit_generator.state), "data" (epoch, chunk),
"bad_evals", "corpus_chars", "corpus_crc32", "threads" (the processes the chunks were split
across, see charrnn.parallel; --resume uses as many unless told otherwise); arrays
"opt/<slot>.<param>", "opt/t" and "state/l<k>.h" (and ".c"), the hidden state carried into the
next chunk.

Exactness: everything a step depends on (parameters, optimizer state, RNG, data position, carried
state, step) is in the checkpoint, and evaluation touches none of it, so a run stopped at step k
and resumed reaches bit-identical parameters at step n, provided the learning rate of each step is
the same (true for `--schedule constant`, and for `cosine` when the budget (--steps/--epochs) is
unchanged on resume) and the chunks are split across as many processes (the order of the
floating-point sums depends on it; --resume reuses the saved count unless --threads is given).
The cosine decay is measured against the budget: x = max((step - warmup) / (total_steps -
warmup), elapsed / (minutes * 60)) over the budgets given; a --minutes budget makes the schedule
follow the clock, so only runs bounded by --steps/--epochs are reproducible.
"""

from __future__ import annotations

import codecs
import json
import math
import os
import signal
import time
import zlib
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from .. import checkpoint as C
from ..data import text as D
from ..data.text import BUNDLED
from ..errors import CharrnnError, CheckpointError, ConfigError, CorpusError, TrainingDiverged
from ..models import lm as M
from ..nn.cells import CELLS
from ..nn.optim import OPTIMIZERS, SCHEDULES, Optimizer, learning_rate
from ..parallel import workers as P
from ..tools.evaluate import LN2, score
from .runlock import lock

LOG_EVERY = 10  # steps per "train" record in the history
DEFAULT_MINUTES = 5.0  # the budget when none of steps, epochs, minutes is given
BUDGET = ("steps", "epochs", "minutes")
RUN_ONLY = BUDGET + ("eval_every", "patience")  # fields a resumed run may change


def _whole(v, least: int = 0) -> bool:
    """A whole number >= least; bool is an int to Python, not to us."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= least


@dataclass(frozen=True)
class TrainConfig:
    """Every training setting; the fields are the CLI options of `charrnn train` one to one.

    The defaults are the measured best for a 5-minute budget on a 2-core CPU on tiny Shakespeare
    (validation = its last 10%). Tried (1 BLAS thread each, two runs side by side), best
    validation bits/char after 5 minutes: LSTM 256x2 lr 3e-3 3.38 (under heavy load), LSTM 384x1
    2.54, LSTM 256x1 lr 5e-3 2.37, LSTM 256x1 lr 1e-2 2.30, GRU 256x1 lr 5e-3 2.22, GRU 256x1
    lr 1e-2 2.20 (batch 32, seq 64), the same with seq 32 2.22, seq 128 2.22, batch 64 2.21;
    with dropout 0.2: GRU 256x1 2.199, GRU 384x1 lr 8e-3 2.200 on half the steps. Run alone
    (2 threads): GRU 256x1 no dropout 2.213 at 34.7k chars/s (train 1.72: overfitting), GRU 384x1
    dropout 0.2 lr 8e-3 2.193 at 17.5k chars/s (chosen); split across two processes
    (charrnn.parallel) the same defaults reached 2.169 at 22.0k chars/s. In five minutes
    throughput rules: a one-layer GRU sees 5-10 epochs where a 256x2 LSTM sees one.
    """

    corpus: str = str(BUNDLED)
    out: str | None = None  # run directory; None: runs/<corpus stem>
    encoding: str = "utf-8"
    val_frac: float = 0.1
    cell: str = "gru"
    hidden: int = 384
    layers: int = 1
    dropout: float = 0.2
    dtype: str = "float32"
    seed: int = 0
    batch: int = 32
    seq: int = 64
    optimizer: str = "adam"
    lr: float = 8e-3
    schedule: str = "cosine"
    warmup: int = 100
    clip: float = 5.0
    steps: int | None = None
    epochs: float | None = None
    minutes: float | None = None  # with no budget at all, DEFAULT_MINUTES
    eval_every: int = 500
    patience: int = 0  # evaluations without improvement before stopping; 0: never

    def __post_init__(self):
        def need(ok, msg):
            if not ok:
                raise ConfigError(msg)

        # the model's own checks (cell, hidden, layers, dropout, dtype), with any vocabulary
        M.ModelConfig(1, self.cell, self.hidden, self.layers, self.dropout, self.dtype)
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
        for name, choices in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES)):
            need(getattr(self, name) in choices,
                 f"{name} must be one of {', '.join(choices)}, not {getattr(self, name)!r}")
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
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def resume_config(run_dir: str | os.PathLike, **given) -> TrainConfig:
    """The configuration saved in run_dir/last.npz, with the settings in `given` replacing it.
    Giving any of steps/epochs/minutes replaces the whole budget (the others become None)."""
    path = Path(run_dir) / f"last{C.SUFFIX}"
    if not path.is_file():
        raise _nothing_to_resume(run_dir)
    saved = C.load(path).meta.get("train")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path} holds no training configuration to resume from")
    if any(k in given for k in BUDGET):
        saved.update(dict.fromkeys(BUDGET))
    saved.update(given, out=str(run_dir))
    return TrainConfig.from_dict(saved)


def _nothing_to_resume(run_dir) -> CheckpointError:
    last, best = Path(run_dir) / f"last{C.SUFFIX}", Path(run_dir) / f"best{C.SUFFIX}"
    return CheckpointError(f"nothing to resume: {last} does not exist" + (
        " (best.npz holds a model, but not the state to train on from)" if best.exists() else ""))


def memory_needed(model: M.ModelConfig, batch: int, seq: int, processes: int = 1) -> int:
    """Bytes a training step needs at its peak, about: the output layer's (T, N, V) logits, their
    gradient and a temporary (3 arrays of N*T*V; measured: 2.2 to 2.7), the layers' caches (16
    arrays of N*T*H per layer; measured: up to 15), the parameters, their gradients and two
    optimizer moments (4 copies), and the backward pass's contiguous copy of one layer's
    transposed recurrent weights (H x G). With tens of thousands of distinct characters the first
    term dominates. The tests check this against the measured peak. Split across `processes`
    (charrnn.parallel), the streams' arrays are shared out; the shared memory adds a copy of the
    parameters, and each worker its gradients (computed, then copied to shared memory) and its
    own copy of the transposed weights."""
    N, T, item = batch, seq, np.dtype(model.dtype).itemsize
    H, G = model.hidden, CELLS[model.cell].gates * model.hidden
    n_params = M.count_params(model)
    split = (processes > 1) * n_params + (processes - 1) * (2 * n_params + H * G)
    return item * (3 * N * T * model.vocab_size + 16 * N * T * H * model.layers
                   + 4 * n_params + H * G + split)


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(model: M.ModelConfig, batch: int, seq: int, processes: int = 1) -> None:
    """ConfigError when a step would need more memory than the machine has, instead of a
    machine that swaps itself to a halt or a trainer killed by the system."""
    need, have = memory_needed(model, batch, seq, processes), _physical_memory()
    if have and need > have:
        raise ConfigError(
            f"training would need about {need / 2**30:.1f} GiB per step (--batch {batch} x --seq "
            f"{seq} x {model.vocab_size} characters of vocabulary, hidden {model.hidden}), more "
            f"than this machine's {have / 2**30:.1f} GiB; use a smaller --batch, --seq or --hidden"
            + (" (or --threads 1)" if processes > 1 else ""))


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
    best_val_bpc: float | None
    last_val_bpc: float | None
    history: list


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

    `threads`: how many cores share each chunk's streams: this process and threads - 1 worker
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
            session = _Session(cfg, run_dir, resume, on_event, threads, signals)
            try:
                return session.run()
            finally:
                session.workers.close()
    finally:
        if created:  # a run that failed before writing anything leaves no empty directory
            try:
                run_dir.rmdir()  # only if empty
            except OSError:
                pass


class _Session:
    """One trainer's mutable state; `checkpoint()` and `_restore()` must mirror each other."""

    def __init__(self, cfg, run_dir, resume, on_event, threads, signals):
        self.cfg, self.run_dir, self.on_event = cfg, run_dir, on_event or (lambda e: None)
        self.signals = signals  # those that stop the run at a step boundary
        last = run_dir / f"last{C.SUFFIX}"
        ckpt = None
        if resume:
            if not last.is_file():
                raise _nothing_to_resume(run_dir)
            ckpt = C.load(last)
        elif last.exists():
            raise CharrnnError(f"{run_dir} already holds a run; continue it with --resume or "
                               f"choose another --out")
        elif (run_dir / f"best{C.SUFFIX}").exists():  # its first last.npz was never written
            raise CharrnnError(f"{run_dir} holds best.npz but no last.npz to resume from; "
                               f"move it away or choose another --out")
        self.corpus = D.load(cfg.corpus, cfg.val_frac, cfg.encoding, ckpt.vocab if ckpt else None)
        self.batches = D.batches(self.corpus.train, cfg.batch, cfg.seq)
        self.model = M.ModelConfig(len(self.corpus.vocab), cfg.cell, cfg.hidden, cfg.layers,
                                   cfg.dropout, cfg.dtype)
        if ckpt is not None and threads is None and isinstance(ckpt.meta.get("threads"), int):
            threads = max(1, ckpt.meta["threads"])  # the same sums, for a bit-exact resume
        self.workers = P.Workers(threads)  # its processes start in run()
        check_memory(self.model, cfg.batch, cfg.seq,
                     len(self.workers.slices(cfg.batch, cfg.hidden)))
        self.rng = np.random.default_rng(cfg.seed)
        self.params = M.init_params(self.model, self.rng)
        self.opt = Optimizer(cfg.optimizer, self.params)
        self.state = M.init_state(self.model, cfg.batch)
        self.step, self.epoch, self.chunk, self.bad_evals, self.elapsed0 = 0, 0, 0, 0, 0.0
        self.history, self.best = [], None
        self.n_chars = len(self.corpus.train) + len(self.corpus.val)
        self.crc = zlib.crc32(self.corpus.val, zlib.crc32(self.corpus.train))
        if ckpt is not None:
            self._restore(ckpt)
        self.metrics = run_dir / "metrics.jsonl"
        lines = "".join(json.dumps(r) + "\n" for r in self.history)
        try:
            C.atomic_write(self.metrics, lambda f: f.write(lines.encode()))
        except OSError as e:
            raise self._unwritable(self.metrics, e) from None

    def _intact(self) -> str:
        """The end of the message of a failed write (disk full, directory not writable): what was
        saved before is untouched, since each checkpoint is replaced atomically or not at all."""
        then = ("--resume continues from last.npz" if (self.run_dir / f"last{C.SUFFIX}").exists()
                else f"no last.npz was saved: to start again, move {self.run_dir} away or choose "
                     f"another --out")
        return (f"training stopped at step {self.step}; the checkpoints already in {self.run_dir} "
                f"are intact ({then})")

    def _unwritable(self, path, e: OSError) -> CharrnnError:
        return CharrnnError(f"cannot write {path}: {e.strerror or e}; {self._intact()}")

    def _restore(self, ckpt):
        m, cfg = ckpt.meta, self.cfg
        if not isinstance(m.get("train"), dict):
            raise CheckpointError(f"{self.run_dir / 'last.npz'} holds no training state to resume")
        saved = TrainConfig.from_dict(m["train"])
        diff = [f"--{k.replace('_', '-')} {getattr(saved, k)} (now {getattr(cfg, k)})"
                for k in TrainConfig.__dataclass_fields__
                if k not in RUN_ONLY + ("corpus", "out") and getattr(saved, k) != getattr(cfg, k)]
        if diff or ckpt.model != self.model:
            raise ConfigError("cannot resume with different settings; the run used "
                              + ", ".join(diff or ["another model"]))
        if (m.get("corpus_chars"), m.get("corpus_crc32")) != (self.n_chars, self.crc):
            raise CorpusError(f"{cfg.corpus} is not the text this run was trained on")
        try:
            for k in self.params:
                self.params[k][...] = ckpt.params[k]
            self.opt.load_state({k[4:]: v for k, v in ckpt.arrays.items() if k.startswith("opt/")})
            shape = (cfg.batch, cfg.hidden)
            state = tuple(tuple(ckpt.arrays[f"state/l{k}.{n}"] for n in "hc"[: len(s)])
                          for k, s in enumerate(self.state))
            if any(a.shape != shape for layer in state for a in layer):
                raise ValueError(f"carried state is not {shape}")
            self.state = tuple(tuple(a.astype(self.model.dtype) for a in layer) for layer in state)
            self.rng.bit_generator.state = m["rng"]
            step, data, bad, elapsed = m["step"], m["data"], m["bad_evals"], m["elapsed"]
            history, best = m["history"], m["best_val_bpc"]
            if not (_whole(step) and _whole(bad) and isinstance(data, list) and len(data) == 2
                    and _whole(data[0]) and _whole(data[1]) and data[1] < self.batches.chunks
                    and isinstance(elapsed, (int, float)) and math.isfinite(elapsed)
                    and isinstance(history, list) and all(isinstance(r, dict) for r in history)
                    and (best is None or isinstance(best, (int, float)))):
                raise ValueError("step, data position, history or best score malformed")
            self.step, (self.epoch, self.chunk) = step, data
            self.bad_evals, self.elapsed0 = bad, float(elapsed)
            self.history, self.best = history, best
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{self.run_dir / 'last.npz'} lacks training state to resume "
                                  f"({e})") from None

    def checkpoint(self, name: str, elapsed: float) -> None:
        meta = {"train": self.cfg.to_dict(), "step": self.step, "history": self.history,
                "best_val_bpc": self.best, "corpus": self.cfg.corpus, "elapsed": elapsed,
                "rng": self.rng.bit_generator.state, "data": [self.epoch, self.chunk],
                "bad_evals": self.bad_evals, "corpus_chars": self.n_chars,
                "corpus_crc32": self.crc, "threads": self.workers.n}
        arrays = {f"opt/{k}": v for k, v in self.opt.state.items()}
        for k, s in enumerate(self.state):
            arrays.update({f"state/l{k}.{n}": a for n, a in zip("hc", s)})
        try:
            C.save(self.run_dir / f"{name}{C.SUFFIX}",
                   C.Checkpoint(self.model, self.corpus.vocab, self.params, meta, arrays))
        except CheckpointError as e:  # "cannot write checkpoint <path>: <reason>"
            raise CheckpointError(f"{e}; {self._intact()}") from None

    def log(self, record: dict) -> None:
        self.history.append(record)
        try:
            with open(self.metrics, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            raise self._unwritable(self.metrics, e) from None

    def evaluate(self, elapsed: float) -> dict:
        """Score the validation split (state carried, streams = batch); save best and last."""
        cfg = self.cfg
        sc = score(self.params, self.model, self.corpus.val, streams=cfg.batch, seq=cfg.seq,
                   workers=self.workers)
        rec = {"kind": "eval", "step": self.step, "epoch": self.epoch_f, "val_bpc": sc.bpc,
               "val_nats": sc.nats, "elapsed": elapsed}
        self.log(rec)
        if self.best is None or sc.bpc < self.best:
            self.best, self.bad_evals = sc.bpc, 0
            self.checkpoint("best", elapsed)
        else:
            self.bad_evals += 1
        self.checkpoint("last", elapsed)
        return rec

    @property
    def epoch_f(self) -> float:
        return self.epoch + self.chunk / self.batches.chunks

    def run(self) -> TrainResult:
        cfg, B = self.cfg, self.batches
        total = cfg.steps
        if cfg.epochs:
            by_epochs = max(1, math.ceil(min(cfg.epochs * B.chunks, 2.0**62)))  # 1e308: no limit
            total = min(total or by_epochs, by_epochs)
        seconds = cfg.minutes * 60 if cfg.minutes else None
        t0, step0 = time.perf_counter(), self.step

        def fraction(el: float, offset: int = 0) -> float:  # of the budget used, max over budgets
            p = (self.step - offset) / max(1, total - offset) if total else 0.0
            return min(1.0, max(p, el / seconds if seconds else 0.0))

        elapsed = lambda: self.elapsed0 + time.perf_counter() - t0
        p0, stop, reason = fraction(self.elapsed0), [], None
        win = {"loss": 0.0, "norm": 0.0, "n": 0, "t": time.perf_counter()}
        last = {}  # the figures of the latest step, for events

        def event(kind, record, el, info=None):
            p = fraction(el)
            left = (1 - p) * (el - self.elapsed0) / (p - p0) if p > p0 else None
            return self.on_event(Event(kind, self.step, self.epoch_f, p, el, left, record,
                                       info or {}))

        def log_train(el):
            dt = time.perf_counter() - win["t"]
            n = win["n"]
            self.log({"kind": "train", "step": self.step, "epoch": self.epoch_f,
                      "train_bpc": win["loss"] / n / LN2, "grad_norm": win["norm"] / n,
                      "lr": last["lr"], "chars_per_sec": n * cfg.batch * cfg.seq / dt,
                      "elapsed": el})
            win.update(loss=0.0, norm=0.0, n=0, t=time.perf_counter())

        info = {"params": M.count_params(self.model), "train_chars": len(self.corpus.train),
                "val_chars": len(self.corpus.val), "vocab": len(self.corpus.vocab),
                "chunks_per_epoch": B.chunks, "total_steps": total, "resumed_at": step0,
                "run_dir": str(self.run_dir),
                "processes": len(self.workers.split(self.model, cfg.batch)),
                "processes_failed": self.workers.failed}
        if event("start", {}, self.elapsed0, info):
            stop.append("interrupted")
        with _deferred_stop(stop, self.signals):
            while True:
                el = elapsed()
                if stop:
                    reason = stop[0]
                elif total and self.step >= total:
                    reason = "steps" if total == cfg.steps else "epochs"
                elif seconds and el >= seconds:
                    reason = "minutes"
                elif cfg.patience and self.bad_evals >= cfg.patience:
                    reason = "patience"
                if reason:
                    break
                x, y = B.chunk(self.chunk)  # (N, T) views
                lr = learning_rate(cfg.lr, cfg.schedule, cfg.warmup, self.step,
                                   fraction(el, cfg.warmup))
                with np.errstate(all="ignore"):  # overflow is caught just below, as divergence
                    loss, grads, state = P.loss_and_grads(self.params, self.model, x, y,
                                                          self.state, self.rng, self.workers)
                    norm = self.opt.clip_and_step(self.params, grads, lr, cfg.clip) \
                        if math.isfinite(loss) else math.nan
                if not math.isfinite(norm):
                    what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {norm}"
                    raise TrainingDiverged(
                        f"training diverged at step {self.step + 1}: {what}; try a lower --lr "
                        f"(it was {cfg.lr:g}); the checkpoints in {self.run_dir} are unchanged")
                self.step, self.chunk, self.state = self.step + 1, self.chunk + 1, state
                if self.chunk == B.chunks:  # the streams wrap to their starts: reset the state
                    self.epoch, self.chunk = self.epoch + 1, 0
                    self.state = M.init_state(self.model, cfg.batch)
                win["loss"] += loss
                win["norm"] += norm
                win["n"] += 1
                el = elapsed()
                last.update(train_bpc=loss / LN2, grad_norm=norm, lr=lr,
                            chars_per_sec=(self.step - step0) * cfg.batch * cfg.seq
                            / max(el - self.elapsed0, 1e-9))
                if self.step % LOG_EVERY == 0:
                    log_train(el)
                if event("step", dict(last), el):
                    stop.append("interrupted")
                if self.step % cfg.eval_every == 0:
                    rec = self.evaluate(el)
                    last["val_bpc"] = rec["val_bpc"]
                    if event("eval", rec, el):
                        stop.append("interrupted")
                    win["t"] = time.perf_counter()
            el = elapsed()
            if win["n"]:
                log_train(el)
            done = any(r["kind"] == "eval" and r["step"] == self.step for r in self.history)
            if done or reason in STOP_SIGNALS.values():  # save at once, no validation pass
                self.checkpoint("last", el)
            else:
                event("eval", self.evaluate(el), el)
        evals = [r["val_bpc"] for r in self.history if r["kind"] == "eval"]
        return TrainResult(self.run_dir, self.step, self.epoch_f, el, reason, self.best,
                           evals[-1] if evals else None, self.history)
