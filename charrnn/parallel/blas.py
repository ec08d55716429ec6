"""Run-time control of the BLAS thread count, through ctypes on the OpenBLAS NumPy loaded.

Only OpenBLAS (what NumPy's wheels ship) is found here; with any other BLAS `openblas()` is None
and charrnn leaves the thread count alone (and does not split work across processes). No package
is needed for this (threadpoolctl, which does the same for every BLAS, is only a test tool).

Single-stream work (sampling one character at a time, scoring one text) runs its multiplies on
one row: a (1, H) state times (H, 3H) or (H, V) weights, a few microseconds each. Splitting such
a multiply over OpenBLAS's threads gains nothing, and the threads spin while they wait; when
another process holds a core, each multiply waits for a thread that is not running. So
`single_stream()` runs such work at SINGLE_STREAM_THREADS threads, restoring the count after
(measured with bench/blas_threads.py; the figures are in docs/en/explanation/kernels.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import os

import numpy as np

_SET = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
        "openblas_set_num_threads64_", "openblas_set_num_threads")


class _OpenBLAS:
    """Get and set the thread count of the OpenBLAS that NumPy loaded."""

    def __init__(self, lib: ctypes.CDLL, suffix_set: str):
        self._lib = lib
        self._set = getattr(lib, suffix_set)
        self._set.argtypes, self._set.restype = [ctypes.c_int], None
        self._get = getattr(lib, suffix_set.replace("set_num", "get_num"))
        self._get.argtypes, self._get.restype = [], ctypes.c_int

    def get(self) -> int:
        return int(self._get())

    def kernel(self) -> str:
        """The kernel family OpenBLAS picked for this CPU at load time (its "core name", e.g.
        SkylakeX or Haswell), which decides the speed of every multiply; '' when not exported."""
        name = self._set.__name__.replace("set_num_threads", "get_corename")
        fn = getattr(self._lib, name, None)
        if fn is None:
            return ""
        fn.argtypes, fn.restype = [], ctypes.c_char_p
        return (fn() or b"").decode(errors="replace")

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


@functools.cache  # found once per process
def openblas() -> _OpenBLAS | None:
    return _find_openblas()


def default_threads() -> int:
    """As many workers as BLAS would use threads (OPENBLAS_NUM_THREADS is respected), at most
    the CPUs this process may run on; 1 when BLAS threads cannot be controlled."""
    blas = openblas()
    if blas is None:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(blas.get(), cpus or 1))


def describe() -> str:
    """The BLAS NumPy uses, for benchmark headings: 'OpenBLAS, SkylakeX kernels' or NumPy's own
    name for a BLAS this module cannot control."""
    blas = openblas()
    if blas is None:
        try:
            info = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        except (TypeError, KeyError, AttributeError):  # older NumPy: no mode="dicts"
            return "unknown BLAS"
        return str(info.get("name", "unknown BLAS"))
    kernel = blas.kernel()
    return f"OpenBLAS, {kernel} kernels" if kernel else "OpenBLAS"


# BLAS threads for single-stream work: 1 was fastest for sampling and for scoring, with the cores
# idle and with one held by another process (bench/blas_threads.py)
SINGLE_STREAM_THREADS = 1


@contextlib.contextmanager
def threads(n: int):
    """Run the block with OpenBLAS at `n` threads, then restore the count it had; does nothing
    when the BLAS is not an OpenBLAS this module can control."""
    blas = openblas()
    prev = blas.get() if blas is not None else n
    if prev == n:
        yield
        return
    blas.set(n)
    try:
        yield
    finally:
        blas.set(prev)


def single_stream():
    """threads(SINGLE_STREAM_THREADS): for work whose multiplies have one row (see above)."""
    return threads(SINGLE_STREAM_THREADS)
