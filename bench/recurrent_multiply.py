"""The time loops' recurrent multiply: OpenBLAS's sgemm per step against Wh packed once per chunk.

Run by hand (never a timed test; Linux):

    python bench/recurrent_multiply.py [--hidden 256,512] [--rows 16,32,64] [--rounds 7]

Inside an LSTM's time loop each step multiplies a few rows by the whole recurrent matrix:
h_{t-1} (n, H) by Wh (H, 4H) forward, da_t (n, 4H) by Wh^T (4H, H) backward, n = 16 when
charrnn.parallel splits a batch of 32 over two processes. OpenBLAS's sgemm copies ("packs") the
weight matrix into its kernel's layout at every call: py-spy put a fifth of an LSTM 512x2
training run in that copy (sgemm_itcopy). The compiled kernels (charrnn/nn/fused.c, "The
recurrent multiply") pack Wh once per chunk and run a register-blocked kernel off the packed
copy at every step. This times one step's multiply both ways, float32, one thread:

    blas     np.matmul(h, W, out=...) with W the time loop's padded copy (cells._loop_copy, or
             _loop_copy_T backward), as NumPy's loops run it
    packed   the kernel on fused.panels(Wh) (backward: transposed), called through ctypes with
             the pointers computed once, as the C time loops call it per step
    blas2    np.matmul at two OpenBLAS threads (what `--processes 1` runs on two cores), where
             OpenBLAS allows it

and prints microseconds per multiply, best of --rounds (each round as many calls as make about
0.2 GFLOP), with "x" the ratio blas / packed (best and median). Every product is first checked
against np.matmul to float32 rounding.

Figures (`python bench/recurrent_multiply.py --rounds 9` under flock /tmp/charrnn-timing.lock,
2026-12-05 23:23 UTC; AMD EPYC with AVX-512, 2 cores, OpenBLAS 0.3.31 SkylakeX kernels, panel
width 32; load average 6.9 from other engineers' niced jobs, so single figures are noisy, the
ratios less so). Issue 27's go/no-go gate was >= 1.15x at n = 16 for H = 256 and 512, forward and
backward: passed (1.29-1.50x best, 1.31-1.47x median). Two earlier runs the same evening (load
2.2-2.4, the prototype in /tmp and this script) gave 1.40-1.45x and 1.41-1.67x at n = 16.

       H  pass   n   blas us  packed us  x best (median)  blas2 us
     256   fwd  16     119.6       80.5    1.48 (1.47)        73.6
     256   fwd  32     196.8      158.4    1.24 (1.25)       107.5
     256   fwd  64     362.2      318.4    1.14 (1.14)       195.6
     256   bwd  16     103.9       80.4    1.29 (1.31)        71.1
     256   bwd  32     187.0      159.3    1.17 (1.11)       110.0
     256   bwd  64     341.5      328.9    1.04 (0.98)       187.1
     512   fwd  16     480.2      321.0    1.50 (1.38)       263.9
     512   fwd  32     839.5      655.2    1.28 (1.21)       475.2
     512   fwd  64    1467.0     1257.9    1.17 (1.30)       807.9
     512   bwd  16     410.5      315.0    1.30 (1.32)       308.1
     512   bwd  32     746.9      631.0    1.18 (1.18)       512.3
     512   bwd  64    1373.5     1274.9    1.08 (1.09)       912.0

The packed kernel runs at 102-107 GFLOP/s, about the core's peak (OpenBLAS: 70-95); its gain
shrinks as n grows, because OpenBLAS's repacking is then spread over more rows. It is one
thread: at two OpenBLAS threads (blas2, what `--processes 1` gets on two cores) OpenBLAS is
ahead, 1.1-1.6x, so a one-process run's time loops are slower than they were; the default, one
process per core each with one BLAS thread, is what the kernel is for.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial
from pathlib import Path

if __name__ == "__main__":  # one thread, set before NumPy loads OpenBLAS
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import cpu_model

from charrnn.nn import fused
from charrnn.nn.cells import _gate_scale, _loop_copy, _loop_copy_T
from charrnn.parallel import blas


def timed(f, calls: int, rounds: int) -> tuple[float, float]:
    """Best and median seconds per call of f over `rounds` rounds of `calls` calls."""
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(calls):
            f()
        times.append((time.perf_counter() - t) / calls)
    return min(times), float(np.median(times))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", default="256,512", help="hidden sizes H, comma-separated")
    ap.add_argument("--rows", default="16,32,64", help="row counts n, comma-separated")
    ap.add_argument("--rounds", type=int, default=7, help="rounds; best and median reported")
    args = ap.parse_args(argv)
    lib = fused.library()
    ob = blas.openblas()
    print(f"{cpu_model()}; {blas.describe()}; panel width {lib.panel_width()}; "
          f"load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    print(f"{'H':>4} {'pass':>4} {'n':>3} {'blas us':>9} {'packed us':>10} {'x best':>7} "
          f"{'(median)':>9} {'blas2 us':>9}")
    rng = np.random.default_rng(0)
    for H in map(int, args.hidden.split(",")):
        G = 4 * H
        Wh = (rng.standard_normal((H, G)) * H ** -0.5).astype(np.float32)
        scale = _gate_scale(G, 3 * H, np.float32)
        for name in ("fwd", "bwd"):
            if name == "fwd":  # h_{t-1} Wh, scaled, as lstm_forward's loop
                W, P, K, M = _loop_copy(Wh, scale), fused.panels(Wh, scale), H, G
            else:  # da_t Wh^T, as lstm_backward's loop
                W, P, K, M = _loop_copy_T(Wh), fused.panels(Wh, transpose=True), G, H
            for n in map(int, args.rows.split(",")):
                A = rng.standard_normal((n, K)).astype(np.float32)
                want, got = np.empty((n, M), np.float32), np.empty((n, M), np.float32)
                np.matmul(A, W, out=want)
                pa, pp, pg, mm = A.ctypes.data, P.ctypes.data, got.ctypes.data, lib.panel_matmul
                mm(n, K, M, pa, pp, pg)
                err = np.max(np.abs(got - want)) / np.max(np.abs(want))
                if not err < 1e-5:
                    raise SystemExit(f"the packed product differs from np.matmul's: {err:.1e}")
                calls = max(10, int(2e8 / (2 * n * K * M)))
                by_blas = partial(np.matmul, A, W, out=want)
                tb = timed(by_blas, calls, args.rounds)
                tp = timed(partial(mm, n, K, M, pa, pp, pg), calls, args.rounds)
                b2 = ""
                if ob is not None:
                    with blas.threads(2):
                        b2 = f"{timed(by_blas, calls, args.rounds)[0] * 1e6:9.1f}"
                print(f"{H:4d} {name:>4} {n:3d} {tb[0] * 1e6:9.1f} {tp[0] * 1e6:10.1f} "
                      f"{tb[0] / tp[0]:7.2f} {tb[1] / tp[1]:9.2f} {b2:>9}", flush=True)


if __name__ == "__main__":
    main()
