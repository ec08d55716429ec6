"""How fast one core multiplies the recurrent step's shapes: what bounds the LSTM time loop.

Run by hand (never a timed test):

    python bench/gemm_rows.py [--hidden 512] [--mkl VENV/lib/libmkl_rt.so.3]

Inside the time loop each process multiplies (n x H) by (H x 4H), n being its share of the
batch's streams (16 of 32 on two processes). BLAS rates fall with n, so this prints, on one
thread, GFLOP/s for n = 16, 32, 64, 128 against a 2048^3 multiply; and the two ways of sharing
one step of a 32-stream batch between two processes: by streams, (16 x H)(H x 4H) each, as
charrnn.parallel does, or by hidden units, (32 x H)(H x 2H) each (not built; see docs/en/explanation/kernels.md).

With --mkl (e.g. from a scratch venv: `pip install mkl`, never a dependency of charrnn) the same
shapes also run through MKL's sgemm and its pack-once GEMM (cblas_sgemm_pack + compute), the
kind of kernel PyTorch's oneDNN LSTM uses; each MKL result is checked against NumPy's.

The right-hand matrix has padded rows, as the cells' time loops use (charrnn.nn.cells._loop_copy).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import time

if __name__ == "__main__":  # one thread, set before NumPy loads OpenBLAS (not when imported)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from charrnn.nn.cells import _loop_copy

ROW_MAJOR, NO_TRANS, PACKED, B_MATRIX = 101, 111, 151, 162  # MKL's CBLAS enum values


def seconds(fn, calls: int, repeats: int = 5) -> float:
    """Best time per call over `repeats` rounds of `calls` calls."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t) / calls)
    return best


class MKL:
    def __init__(self, path: str):
        lib = ctypes.CDLL(path)
        lib.MKL_Set_Num_Threads(1)
        i, f, p = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
        lib.cblas_sgemm_pack_get_size.restype = ctypes.c_size_t
        lib.cblas_sgemm_pack_get_size.argtypes = [i, i, i, i]
        lib.cblas_sgemm_pack.argtypes = [i, i, i, i, i, i, f, p, i, p]
        lib.cblas_sgemm_compute.argtypes = [i, i, i, i, i, i, p, i, p, i, f, p, i]
        lib.cblas_sgemm.argtypes = [i, i, i, i, i, i, f, p, i, p, i, f, p, i]
        self.lib = lib

    def rates(self, A, B, C, calls):
        """(sgemm, packed) GFLOP/s for C = A @ B, each result checked against NumPy."""
        (M, K), N = A.shape, B.shape[1]
        ldb = B.strides[0] // B.itemsize  # B's rows are padded (cells._loop_copy)
        lib, flop = self.lib, 2 * M * K * N
        packed = np.empty(lib.cblas_sgemm_pack_get_size(B_MATRIX, M, N, K) // 4 + 16, np.float32)
        lib.cblas_sgemm_pack(ROW_MAJOR, B_MATRIX, NO_TRANS, M, N, K, 1.0, B.ctypes.data, ldb,
                             packed.ctypes.data)
        plain = lambda: lib.cblas_sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, M, N, K, 1.0,
                                        A.ctypes.data, K, B.ctypes.data, ldb, 0.0, C.ctypes.data, N)
        pack = lambda: lib.cblas_sgemm_compute(ROW_MAJOR, NO_TRANS, PACKED, M, N, K,
                                               A.ctypes.data, K, packed.ctypes.data, N, 0.0,
                                               C.ctypes.data, N)
        want = A @ B
        out = []
        for fn in (plain, pack):
            C[...] = 0
            fn()
            np.testing.assert_allclose(C, want, rtol=1e-4, atol=1e-3)
            out.append(flop / seconds(fn, calls) / 1e9)
        return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--calls", type=int, default=200, help="calls per timing round")
    ap.add_argument("--square", type=int, default=2048, help="size of the reference multiply")
    ap.add_argument("--mkl", help="path of libmkl_rt.so, to time MKL too")
    a = ap.parse_args(argv)
    mkl = MKL(a.mkl) if a.mkl else None
    rng = np.random.default_rng(0)
    H = a.hidden

    def rate(M, K, N):
        A = rng.standard_normal((M, K), dtype=np.float32)
        B = _loop_copy(rng.standard_normal((K, N), dtype=np.float32))  # as the time loops do
        C = np.empty((M, N), np.float32)
        t = seconds(lambda: np.matmul(A, B, out=C), a.calls)
        extra = mkl.rates(A, B, C, a.calls) if mkl else []
        return t, [2 * M * K * N / t / 1e9, *extra]

    S = a.square
    sq = rng.standard_normal((S, S), dtype=np.float32)
    big = 2 * S**3 / seconds(lambda: sq @ sq, 3) / 1e9
    print(f"one thread; NumPy {np.__version__}; {S}^3 multiply: {big:.1f} GFLOP/s")
    head = f"rows  shape                 OpenBLAS GFLOP/s  of {S}^3"
    print(head + ("   MKL sgemm  MKL packed" if mkl else ""))
    for n in (16, 32, 64, 128):
        _, r = rate(n, H, 4 * H)
        shape = f"({n}x{H})({H}x{4 * H})"
        print(f"{n:>4}  {shape:<22}{r[0]:>12.1f}{r[0] / big:>11.0%}"
              + (f"{r[1]:>12.1f}{r[2]:>12.1f}" if mkl else ""))
    t_streams, _ = rate(16, H, 4 * H)
    t_units, _ = rate(32, H, 2 * H)
    print(f"one step of 32 streams on two processes: by streams (16x{H})({H}x{4 * H}) "
          f"{t_streams * 1e6:.1f} us, by hidden units (32x{H})({H}x{2 * H}) {t_units * 1e6:.1f} us "
          f"({1 - t_units / t_streams:.0%} less)")


if __name__ == "__main__":
    main()
