"""A training session's state and its run directory: what is saved, and how --resume restores it.

Run directory (cfg.out, default runs/<corpus stem>), the contract other commands read:
    best.npz       checkpoint at the best validation figure so far (the family's METRIC)
    last.npz       checkpoint at the latest evaluation or stop (what --resume continues)
    metrics.jsonl  one JSON record per line: {"kind": "train", ...} every LOG_EVERY steps and at a
                   stop, {"kind": "eval", ...} per evaluation (the same dicts as meta["history"])
    train.lock     exists while a trainer runs; holds its pid (charrnn.train.runlock)

Checkpoint meta (besides the model, family and vocabulary, see charrnn.checkpoint): "train"
(TrainConfig.to_dict), "step", "history", "best_<METRIC>" (e.g. "best_val_bpc"), "corpus"
(an absolute path, in "train" too, so a run reads from any directory; older runs' relative
paths: see checkpoint.recorded_corpus),
"elapsed", and for the exact resume "rng" (the Generator's bit_generator.state), "data" (epoch,
chunk), "bad_evals", the data's fingerprint (for "lm" "corpus_chars" and "corpus_crc32"),
"threads" (the processes the batches were split across, see charrnn.parallel; --resume uses as
many unless told otherwise), "numerics" (what the sums' last bits depend on beyond the
settings: NumPy's version, its BLAS and the compiled kernels' build, see `numerics`); arrays
"opt/<slot>.<param>", "opt/t" and "state/<name>" for each array of the state carried into the
next batch (the family's state_names: "state/l0.h", "state/l0.c", ...).

With --ema (TrainConfig.ema > 0) the model that is evaluated and saved as a checkpoint's
parameters is the moving average of the weights (charrnn.nn.optim.Average), so best.npz is
the best average and every command reads it as any model; the weights the optimizer steps are
saved beside it as arrays "train/<param>", which --resume continues from.

Exactness: everything a step depends on (parameters, optimizer state, RNG, data position, carried
state, step) is in the checkpoint, and evaluation touches none of it, so a run stopped at step k
and resumed reaches bit-identical parameters at step n, provided the learning rate of each step is
the same (true for `--schedule constant`, and for `cosine` when the budget (--steps/--epochs) is
unchanged on resume) and the batches are split across as many processes (the order of the
floating-point sums depends on it; --resume reuses the saved count unless --processes is given),
and the same machine code does the sums: another NumPy, BLAS kernel family or build of the
compiled kernels (a new version, another CPU) continues the run to rounding, not bit for bit, and
the resume says so on its first lines (`resume_note`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace

import numpy as np

from .. import checkpoint as C
from ..errors import CharrnnError, CheckpointError, ConfigError, CorpusError
from ..models import family
from ..nn import cells
from ..nn.optim import Average, Optimizer
from ..nn.state import flat_state, nest_state
from ..parallel import workers as P
from .config import RUN_ONLY, TrainConfig, _whole, as_run, check_memory, nothing_to_resume


def numerics(kernels: str) -> dict:
    """What a run's last bits depend on beyond its settings: NumPy's version, the BLAS it uses
    (with OpenBLAS, the kernel family picked for this CPU) and, for fused kernels, their build."""
    from ..nn import fused
    from ..parallel import blas

    return {"numpy": np.__version__, "blas": blas.describe(),
            "kernels_build": fused.build_id() if kernels == "fused" else None}


class Session:
    """One trainer's mutable state; `checkpoint()` and `_restore()` must mirror each other."""

    def __init__(self, cfg: TrainConfig, run_dir, resume: bool, threads):
        self.cfg, self.run_dir = cfg, run_dir
        self.F = F = family(cfg.task)
        last = run_dir / f"last{C.SUFFIX}"
        ckpt = None
        if resume:
            if not last.is_file():
                raise nothing_to_resume(run_dir)
            ckpt = C.load(last)
        elif last.exists():
            raise CharrnnError(f"{run_dir} already holds a run; continue it with --resume or "
                               f"choose another --out")
        elif (run_dir / f"best{C.SUFFIX}").exists():  # its first last.npz was never written
            raise CharrnnError(f"{run_dir} holds best.npz but no last.npz to resume from; "
                               f"move it away or choose another --out")
        self.data = F.load_data(cfg, ckpt)
        self.batches = self.data.batches
        # the kernels the cells run, "auto" made concrete: the TrainConfig saves that choice,
        # and the model's Config carries it to every forward and backward, here and in workers
        model = F.complete(cfg.model, self.data)
        kernels = cells.choose_kernels(cfg.kernels, model.cell, model.dtype)
        # why "auto" chose NumPy's, for the first line (None: it did not, or was not asked)
        self.kernels_note = (cells.fused_unavailable(model.cell, model.dtype)
                             if cfg.kernels == cells.AUTO and kernels == "numpy" else None)
        if kernels != cfg.kernels:
            self.cfg = cfg = cfg.replace(kernels=kernels)
        self.model = replace(model, kernels=kernels)
        self.numerics = numerics(kernels)
        # the run was trained by other machine code: said on the first lines (None: the same)
        self.resume_note = _other_numerics(ckpt.meta.get("numerics"), self.numerics) if ckpt \
            else None
        if ckpt is not None and threads is None and isinstance(ckpt.meta.get("threads"), int):
            threads = max(1, ckpt.meta["threads"])  # the same sums, for a bit-exact resume
        self.workers = P.Workers(threads)  # its processes start in run()
        check_memory(F, self.model, cfg.batch, cfg.seq,
                     len(self.workers.slices(cfg.batch, F.width(self.model))))
        self.rng = np.random.default_rng(cfg.seed)
        self.params = F.init_params(self.model, self.rng)
        self.opt = Optimizer(cfg.optimizer, self.params, cfg.weight_decay)
        self.average = Average(self.params, cfg.ema) if cfg.ema else None
        self.state = F.init_state(self.model, cfg.batch)
        self.step, self.epoch, self.chunk, self.bad_evals, self.elapsed0 = 0, 0, 0, 0, 0.0
        self.history, self.best = [], None
        if ckpt is not None:
            self._restore(ckpt)
        self.metrics = run_dir / "metrics.jsonl"
        lines = "".join(json.dumps(r) + "\n" for r in self.history)
        try:
            C.atomic_write(self.metrics, lambda f: f.write(lines.encode()))
        except OSError as e:
            raise self.unwritable(self.metrics, e) from None

    @property
    def weights(self) -> dict:
        """The model that is evaluated and saved: the moving average with --ema, else the
        weights as trained."""
        return self.average.params if self.average else self.params

    def stepped(self) -> None:
        """After each optimizer step: fold the new weights into the average."""
        if self.average:
            self.average.update(self.params, self.opt.t)

    @property
    def epoch_f(self) -> float:
        return self.epoch + self.chunk / self.batches.chunks

    def _intact(self) -> str:
        """The end of the message of a failed write (disk full, directory not writable): what was
        saved before is untouched, since each checkpoint is replaced atomically or not at all."""
        then = ("--resume continues from last.npz" if (self.run_dir / f"last{C.SUFFIX}").exists()
                else f"no last.npz was saved: to start again, move {self.run_dir} away or choose "
                     f"another --out")
        return (f"training stopped at step {self.step}; the checkpoints already in {self.run_dir} "
                f"are intact ({then})")

    def unwritable(self, path, e: OSError) -> CharrnnError:
        return CharrnnError(f"cannot write {path}: {e.strerror or e}; {self._intact()}")

    def _restore(self, ckpt):
        m, cfg, where = ckpt.meta, self.cfg, self.run_dir / "last.npz"
        if not isinstance(m.get("train"), dict):
            raise CheckpointError(f"{where} holds no training state to resume")
        saved = TrainConfig.from_dict(as_run(m["train"]))
        a, b = saved.to_dict(), cfg.to_dict()
        a.update(a.pop("model")), b.update(b.pop("model"))
        diff = [f"--{k.replace('_', '-')} {a[k]} (now {b[k]})" for k in a
                if k not in RUN_ONLY + ("corpus", "out") and a[k] != b.get(k)]
        if diff or ckpt.family != self.F.NAME or ckpt.model != replace(self.model,
                                                                        kernels="numpy"):
            raise ConfigError("cannot resume with different settings; the run used "
                              + ", ".join(diff or ["another model"]))
        if {k: m.get(k) for k in self.data.fingerprint} != self.data.fingerprint:
            raise CorpusError(f"{cfg.corpus} is not the text this run was trained on")
        try:
            for k in self.params:
                if self.average:  # the checkpoint's model is the average
                    self.params[k][...] = ckpt.arrays[f"train/{k}"]
                    self.average.params[k][...] = ckpt.params[k]
                else:
                    self.params[k][...] = ckpt.params[k]
            self.opt.load_state({k[4:]: v for k, v in ckpt.arrays.items() if k.startswith("opt/")})
            want = flat_state(self.state)
            got = [ckpt.arrays[f"state/{n}"] for n in self.F.state_names(self.model)]
            if any(g.shape != w.shape for g, w in zip(got, want)):
                raise ValueError(f"carried state is not {want[0].shape}")
            self.state = nest_state([g.astype(w.dtype) for g, w in zip(got, want)], self.state)
            self.rng.bit_generator.state = m["rng"]
            step, data, bad, elapsed = m["step"], m["data"], m["bad_evals"], m["elapsed"]
            history, best = m["history"], m[f"best_{self.F.METRIC}"]
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
            raise CheckpointError(f"{where} lacks training state to resume ({e})") from None

    def checkpoint(self, name: str, elapsed: float) -> None:
        F = self.F
        train = self.cfg.to_dict()
        train["corpus"] = corpus = os.path.abspath(self.cfg.corpus)  # readable from anywhere
        meta = {"train": train, "step": self.step, "history": self.history,
                f"best_{F.METRIC}": self.best, "corpus": corpus, "elapsed": elapsed,
                "rng": self.rng.bit_generator.state, "data": [self.epoch, self.chunk],
                "bad_evals": self.bad_evals, **self.data.fingerprint,
                "threads": self.workers.n, "numerics": self.numerics, **F.data_meta(self.data)}
        arrays = {f"opt/{k}": v for k, v in self.opt.state.items()}
        names = F.state_names(self.model)
        arrays.update({f"state/{n}": a for n, a in zip(names, flat_state(self.state))})
        if self.average:
            arrays.update({f"train/{k}": v for k, v in self.params.items()})
        try:
            C.save(self.run_dir / f"{name}{C.SUFFIX}",
                   C.Checkpoint(self.model, self.data.vocab, self.weights, meta, arrays, F.NAME))
        except CheckpointError as e:  # "cannot write checkpoint <path>: <reason>"
            raise CheckpointError(f"{e}; {self._intact()}") from None

    def log(self, record: dict) -> None:
        self.history.append(record)
        try:
            with open(self.metrics, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            raise self.unwritable(self.metrics, e) from None

    def evaluate(self, elapsed: float) -> dict:
        """Score the validation data (F.evaluate); save best and last; return the record."""
        figures = self.F.evaluate(self.weights, self.model, self.data, self.cfg, self.workers)
        rec = {"kind": "eval", "step": self.step, "epoch": self.epoch_f, **figures,
               "elapsed": elapsed}
        self.log(rec)
        value = figures[self.F.METRIC]
        if self.best is None or value < self.best:
            self.best, self.bad_evals = value, 0
            self.checkpoint("best", elapsed)
        else:
            self.bad_evals += 1
        self.checkpoint("last", elapsed)
        return rec


def _other_numerics(saved, now: dict) -> str | None:
    """How the machine code differs from the one that trained the run, in one line, or None when
    it is the same or the checkpoint does not say (runs saved before it was recorded)."""
    if not isinstance(saved, dict):
        return None
    names = {"numpy": "NumPy", "blas": "BLAS", "kernels_build": "compiled kernels"}
    diff = [f"{names[k]} {saved.get(k)} -> {now[k]}" for k in names if saved.get(k) != now[k]]
    if not diff:
        return None
    return (f"this run was trained with other numerics ({'; '.join(diff)}): it continues to "
            f"rounding, not bit for bit")
