"""Data parallelism on the CPU: the streams of a batch split across threads.

Why: the time loop is one small matrix multiply per step ((N, H) by (H, G)) plus elementwise
gate work. Multi-threaded BLAS splits each small multiply across the cores and pays a thread
hand-off on every one of them, and NumPy's elementwise passes run on one core only. Splitting
the N streams instead, into one slice per core, runs every part of a chunk (multiplies, gates,
softmax, weight gradients) on all cores at once, with one hand-off per chunk. Each thread then
must call single-threaded BLAS, or the threads fight over the cores: while a split call runs,
OpenBLAS is set to one thread, and set back afterwards. NumPy releases the GIL inside its
multiplies and its elementwise loops, so plain Python threads are enough.

Measured on the 2-core development machine (bench/README.md has the full table): LSTM 256x2
training went from 10.9k to about 15.5k characters per second.

Exactness: the streams are independent, so a split chunk computes the same loss, gradients and
final state as the whole chunk, up to the order of floating-point sums (the gradients are the
weighted sum of the slices' gradients; they differ from one thread's in the last bits). Dropout
masks are drawn once for the whole batch, in the caller's thread, before the split, so the random
stream -- and with it resuming a run -- does not depend on the number of threads.

Only OpenBLAS (what NumPy's wheels ship) can be told its thread count at run time here, through
ctypes; with any other BLAS, or none found, `Workers` falls back to one thread: never slower than
before, never oversubscribed.
"""

from __future__ import annotations

import ctypes
import glob
import os
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from . import model as M
from .errors import ConfigError

# A slice needs at least this many hidden values per step (streams x H) to pay for its threads:
# below it the per-step NumPy calls are so short that the threads spend their time handing the
# GIL to each other. Measured on 2 cores, batch 32 (python bench/bench.py, alternating rounds):
# LSTM 128x1 ran at 53-73k chars/s split in two (16 x 128 = 2048 each) against 75-81k in one
# thread; from H = 256 (4096 each) splitting wins (LSTM 256x2 10.3-12.0k against 9.9-10.6k).
MIN_SLICE = 4096

_SET = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
        "openblas_set_num_threads64_", "openblas_set_num_threads")


class _OpenBLAS:
    """Get and set the thread count of the OpenBLAS that NumPy loaded."""

    def __init__(self, lib: ctypes.CDLL, suffix_set: str):
        self._set = getattr(lib, suffix_set)
        self._set.argtypes, self._set.restype = [ctypes.c_int], None
        self._get = getattr(lib, suffix_set.replace("set_num", "get_num"))
        self._get.argtypes, self._get.restype = [], ctypes.c_int

    def get(self) -> int:
        return int(self._get())

    def set(self, n: int) -> None:
        self._set(n)


def _loaded_libraries() -> list[str]:
    """Paths of the OpenBLAS libraries this process may have loaded: those mapped into it
    (Linux), then those shipped inside NumPy's wheel (the other platforms)."""
    paths = []
    try:
        with open("/proc/self/maps") as f:
            paths = [line.split()[-1] for line in f if "openblas" in line.lower()]
    except OSError:
        pass
    root = os.path.dirname(np.__file__)
    for pattern in (root + ".libs/*openblas*", root + "/.dylibs/*openblas*"):
        paths += glob.glob(pattern)
    return list(dict.fromkeys(p for p in paths if os.path.isfile(p)))


def _find_openblas() -> _OpenBLAS | None:
    np.ones((2, 2)) @ np.ones((2, 2))  # make sure BLAS is loaded
    for path in _loaded_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SET:
            if hasattr(lib, name) and hasattr(lib, name.replace("set_num", "get_num")):
                return _OpenBLAS(lib, name)
    return None


_BLAS: list = []  # found once per process: [_OpenBLAS or None]


def openblas() -> _OpenBLAS | None:
    if not _BLAS:
        _BLAS.append(_find_openblas())
    return _BLAS[0]


def default_threads() -> int:
    """As many threads as BLAS would use (OPENBLAS_NUM_THREADS is respected), at most the CPUs
    this process may run on; 1 when BLAS threads cannot be controlled."""
    blas = openblas()
    if blas is None:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(blas.get(), cpus or 1))


class Workers:
    """n threads to run slices of a batch: the calling thread and n - 1 pool threads.

    With n = 1 everything runs in the calling thread and BLAS keeps its own threads. Use as a
    context manager, or call close(), to end the pool threads.
    """

    def __init__(self, threads: int | None = None):
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads must be a positive whole number, not {threads!r}")
        self.blas = openblas()
        n = default_threads() if threads is None else threads
        self.n = n if self.blas is not None else 1
        self._pool = ThreadPoolExecutor(self.n - 1, "charrnn") if self.n > 1 else None

    def run(self, fn, slices: list[slice]) -> list:
        """[fn(s) for s in slices], at the same time, one slice per thread, BLAS at 1 thread."""
        if len(slices) == 1 or self._pool is None:
            return [fn(s) for s in slices]
        prev = self.blas.get()
        self.blas.set(1)
        futures = []
        try:
            futures = [self._pool.submit(fn, s) for s in slices[1:]]
            first = fn(slices[0])
            return [first] + [f.result() for f in futures]
        finally:
            wait(futures)  # no thread may still be multiplying when BLAS gets its threads back
            self.blas.set(prev)

    def slices(self, N: int, width: int = MIN_SLICE) -> list[slice]:
        """N streams of `width` hidden units cut into contiguous slices whose sizes differ by at
        most one: n of them, or fewer, so that each slice keeps at least MIN_SLICE values."""
        k = max(1, min(self.n, N, N * width // MIN_SLICE))
        bounds = [N * j // k for j in range(k + 1)]
        return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
            self.n = 1

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def state_slice(state: M.State, s: slice) -> M.State:
    return tuple(tuple(a[s] for a in layer) for layer in state)


def state_concat(states: list) -> M.State:
    if len(states) == 1:
        return states[0]
    return tuple(tuple(np.concatenate(parts) for parts in zip(*layers)) for layers in zip(*states))


def loss_and_grads(params, cfg: M.ModelConfig, ids, targets, state: M.State, rng=None,
                   workers: Workers | None = None):
    """model.loss_and_grads with the N streams split across `workers` (None: one thread).

    Each slice of n_s streams runs forward, softmax and backward on its own; its loss and
    gradients are those of its mean, weighted by n_s / N, so their sum is the whole batch's."""
    ids, targets = np.asarray(ids), np.asarray(targets)
    N, T = ids.shape
    if workers is None or len(workers.slices(N, cfg.hidden)) == 1:
        return M.loss_and_grads(params, cfg, ids, targets, state, rng)
    masks = M.dropout_masks(cfg, rng, T, N)

    def part(s: slice):
        mk = [m[:, s] for m in masks] if masks is not None else None
        logits, final, cache = M.forward(params, cfg, ids[s], state_slice(state, s), masks=mk)
        loss, dlogits = M.cross_entropy(logits, targets[s])
        w = (s.stop - s.start) / N
        dlogits *= w
        grads, _ = M.backward(dlogits, None, cache)
        return loss * w, grads, final

    results = workers.run(part, workers.slices(N, cfg.hidden))
    grads = results[0][1]
    for _, g, _ in results[1:]:
        for name, value in g.items():
            grads[name] += value
    return sum(r[0] for r in results), grads, state_concat([r[2] for r in results])
