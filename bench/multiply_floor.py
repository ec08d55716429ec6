"""What a training chunk would cost if its elementwise work were free: the multiplies alone.

Run by hand (never a timed test; Linux, two cores):

    python bench/multiply_floor.py [--configs lstm:128x1,lstm:256x2,lstm:512x2] [--rounds 20]

Issue 16 asks what would close the LSTM's gap to PyTorch. Two changes were proposed: a compiled
kernel fusing the gates' elementwise work (which would leave little but the multiplies), and a
split of the work across the processes by hidden units instead of by streams. This measures the
floor of each, in the same run as charrnn's real chunk and PyTorch's training step:

    chunk    charrnn's forward and backward of one chunk (charrnn.models.lm.gradients), 16 of
             the 32 streams in each of two processes, as charrnn.parallel splits a batch (no
             optimizer step, no parameter copies)
    streams  the same chunk's matrix multiplies and nothing else: the same shapes, the same
             padded loop weights (cells._loop_copy), the same order. The split by streams with
             elementwise work that costs nothing.
    units    the same multiplies split by hidden units: each process all 32 streams and the gate
             columns of half the units (the time loop's (32 x H)(H x G/2) per step), the
             per-chunk multiplies split the same way. The exchanges the split needs (h_t's
             halves and dh's partial sums every step) are not counted, so this is a lower
             bound for the split by units with free elementwise work.

The three run on two forked processes with one BLAS thread each, alternating within every
round, both processes starting each measurement together; a round's time is the slower
process's. PyTorch (if installed) and charrnn's full training step (bench/bench.py's, with clip
and Adam) run in fresh processes with two threads, as in bench/bench.py. Rates are characters
per second, best of --rounds (PyTorch and charrnn's step: of --repeats), and the column
"x torch" divides by PyTorch's rate. A floor below 1.0 x torch means that change alone cannot
reach PyTorch, however well it is done.

The floor is OpenBLAS's: the fused loops (issue 27) no longer call it for the recurrent multiply
but multiply by Wh packed once per chunk (charrnn.nn.fused.panel_matmul, gated by
bench/recurrent_multiply.py), so their real chunk can run below this "floor"; it still measures
what the multiplies cost through OpenBLAS, which the NumPy kernels use.

Before timing, the multiplies of `streams` are checked to be exactly those of the real chunk:
their count of floating-point operations equals bench.py's formula (3 F per character).
"""

from __future__ import annotations

import argparse
import importlib.util
import mmap
import os
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # one BLAS thread per forked process, set before NumPy loads OpenBLAS
    os.environ["OPENBLAS_NUM_THREADS"] = "1"

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import cpu_model

import bench as BENCH  # bench/bench.py: its PyTorch and charrnn steps, in fresh processes
from charrnn.data import text as D
from charrnn.models import lm as M
from charrnn.nn.cells import CELLS, _loop_copy, _loop_copy_T
from charrnn.parallel import blas

N, T, PROCS = 32, 64, 2
KINDS = ("chunk", "streams", "units")


class Counting:
    """np.matmul with out=, counting the FLOPs it is asked for (for the check above)."""

    def __init__(self):
        self.flops = 0

    def __call__(self, a, b, out):
        self.flops += 2 * a.shape[0] * a.shape[1] * b.shape[1]
        return np.matmul(a, b, out=out)


def skeleton(cell: str, H: int, L: int, V: int, rows: int, cols: int, rng, mm=np.matmul):
    """A closure doing the multiplies of one chunk for `rows` streams and `cols` of each layer's
    G gate columns (cols = G: the split by streams; G / 2: by units), in lm.forward's and
    lm.backward's order. In the split by units the output layer's multiplies are split by rows
    instead (its V columns are too few to split): each process takes rows / PROCS of them.
    `mm` is the multiply to call (np.matmul, or a Counting one)."""
    G = CELLS[cell].gates * H
    f32 = np.float32
    R = lambda *shape: rng.standard_normal(shape).astype(f32) * 0.1
    out_rows = rows if cols == G else rows // PROCS  # units: the output layer by rows
    Whs = [_loop_copy(R(H, cols)) for _ in range(L)]  # forward loop: h_{t-1} Wh
    WhT = [_loop_copy_T(R(H, cols)) for _ in range(L)]  # backward loop: da_t Wh^T
    Wx = [R(H, cols) for _ in range(L)]
    Wy = R(H, V)
    xs = [R(T * rows, H) for _ in range(L)]  # each layer's input (layer 0's is a gather)
    hs = [R(T, rows, H) for _ in range(L)]  # outputs h_t
    ds = [R(T, rows, cols) for _ in range(L)]  # dxp: gradients at the pre-activations
    buf, dh = np.empty((rows, cols), f32), np.empty((rows, H), f32)
    xp = np.empty((T * rows, cols), f32)
    y, dl = R(T * out_rows, H), R(T * out_rows, V)
    logits, dy, dWy = np.empty((T * out_rows, V), f32), np.empty((T * out_rows, H), f32), \
        np.empty((H, V), f32)
    dWh, dWx, dx = np.empty((H, cols), f32), np.empty((H, cols), f32), \
        np.empty((T * rows, H), f32)
    WyT = Wy.T

    def run():
        for k in range(L):  # forward
            if k:
                mm(xs[k], Wx[k], out=xp)  # x Wx, all steps at once
            h = hs[k][0]
            for t in range(T):
                mm(h, Whs[k], out=buf)  # h_{t-1} Wh
                h = hs[k][t]
        mm(y, Wy, out=logits)  # h Wy
        mm(dl, WyT, out=dy)  # dlogits Wy^T
        mm(y.T, dl, out=dWy)  # dWy
        for k in range(L - 1, -1, -1):  # backward
            for t in range(T - 1, -1, -1):
                mm(ds[k][t], WhT[k], out=dh)  # dh_{t-1} = da_t Wh^T
            d2 = ds[k].reshape(T * rows, cols)
            mm(hs[k].reshape(T * rows, H).T, d2, out=dWh)  # dWh (one multiply, as _weight_grad)
            if k:
                mm(xs[k].T, d2, out=dWx)  # dWx
                mm(d2, Wx[k].T, out=dx)  # dx for the layer below

    return run


def real_chunk(cell: str, H: int, L: int, ids: np.ndarray, rows: int, k: int):
    """charrnn's forward and backward of process k's slice of one chunk."""
    V = int(ids.max()) + 1
    cfg = M.ModelConfig(vocab_size=V, cell=cell, hidden=H, layers=L, dtype="float32")
    params = M.init_params(cfg, np.random.default_rng(0))
    b = D.batches(ids, N, T)
    x, y = b.chunk(0)
    part = (x[k * rows:(k + 1) * rows], y[k * rows:(k + 1) * rows])
    state = M.init_state(cfg, rows)
    return lambda: M.gradients(params, cfg, part, state)


class Shared:
    """Anonymous shared memory made before fork: the processes' round counters and timings."""

    def __init__(self, rounds: int):
        self.mem = mmap.mmap(-1, 64 * 8 + rounds * len(KINDS) * PROCS * 8)
        self.ready = np.frombuffer(self.mem, np.int64, PROCS, 0)
        self.secs = np.frombuffer(self.mem, np.float64, rounds * len(KINDS) * PROCS,
                                  64 * 8).reshape(rounds, len(KINDS), PROCS)

    def together(self, k: int, n: int) -> None:
        """Spin until every process has reached its n-th start."""
        self.ready[k] = n
        while min(self.ready) < n:
            pass


def child(k: int, sh: Shared, cell: str, H: int, L: int, ids, rounds: int) -> None:
    V = int(ids.max()) + 1
    G = CELLS[cell].gates * H
    rng = np.random.default_rng(k)
    fns = [real_chunk(cell, H, L, ids, N // PROCS, k),
           skeleton(cell, H, L, V, N // PROCS, G, rng),
           skeleton(cell, H, L, V, N, G // PROCS, rng)]
    for fn in fns:  # warm-up
        fn()
    n = 0
    for r in range(rounds):
        for j, fn in enumerate(fns):
            n += 1
            sh.together(k, n)
            t0 = time.perf_counter()
            fn()
            sh.secs[r, j, k] = time.perf_counter() - t0


def forked(cell: str, H: int, L: int, ids, rounds: int) -> dict:
    """{kind: characters per second, best of the rounds}, on PROCS forked processes."""
    sh = Shared(rounds)
    pids = []
    for k in range(PROCS):
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                child(k, sh, cell, H, L, ids, rounds)
                status = 0
            finally:
                os._exit(status)
        pids.append(pid)
    for pid in pids:  # the parent only waits: it takes no core
        _, status = os.waitpid(pid, 0)
        if status:
            raise SystemExit(f"{cell} {H}x{L}: a forked process failed")
    per_round = sh.secs.max(axis=2)  # a measurement lasts until both processes are done
    return {kind: N * T / float(per_round[:, j].min()) for j, kind in enumerate(KINDS)}


def check_flops(cell: str, H: int, L: int, V: int) -> None:
    """The skeleton's multiplies add up to bench.py's count for the whole chunk, both splits."""
    G = CELLS[cell].gates * H
    want = 3 * BENCH.flops_per_char(cell, H, L, V) * N * T
    for rows, cols in ((N // PROCS, G), (N, G // PROCS)):
        mm = Counting()
        skeleton(cell, H, L, V, rows, cols, np.random.default_rng(0), mm)()
        if mm.flops * PROCS != want:
            raise SystemExit(f"{cell} {H}x{L}: the skeleton multiplies {mm.flops * PROCS} FLOPs "
                             f"a chunk, bench.py counts {want}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="lstm:128x1,lstm:256x2,lstm:512x2",
                    help="cell:HxL list, as bench/bench.py's")
    ap.add_argument("--rounds", type=int, default=20, help="timed rounds of the forked three")
    ap.add_argument("--repeats", type=int, default=3,
                    help="rounds of PyTorch's and charrnn's full training step (best is kept)")
    ap.add_argument("--seconds", type=float, default=2.0, help="timing per step round")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    args = ap.parse_args(argv)
    have_torch = not args.no_torch and importlib.util.find_spec("torch") is not None
    text = D.read_corpus(BENCH.CORPUS)
    vocab = D.vocab_of(text)
    ids = D.encode(text, vocab)
    V = len(vocab)
    print(f"CPU: {cpu_model()}; BLAS: {blas.describe()}; N = {N}, T = {T}, float32, "
          f"V = {V}; {PROCS} processes x 1 BLAS thread (PyTorch and 'step': {PROCS} threads)")
    print("| config | torch | step | chunk | streams floor | units floor | "
          "step x torch | streams x torch | units x torch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for cell, H, L in BENCH.parse_configs(args.configs):
        check_flops(cell, H, L, V)
        job = {"kind": "train", "cell": cell, "hidden": H, "layers": L, "batch": N, "seq": T,
               "seconds": args.seconds, "chars": len(text)}
        step, torch = [], []
        for _ in range(args.repeats):  # alternate, so both see the same load
            step.append(BENCH.measure({**job, "impl": "charrnn"}, PROCS))
            if have_torch:
                torch.append(BENCH.measure({**job, "impl": "torch"}, PROCS))
        rates = forked(cell, H, L, ids, args.rounds)
        tr = max(torch) if torch else float("nan")
        print(f"| {cell} {H}x{L} | {tr:,.0f} | {max(step):,.0f} | {rates['chunk']:,.0f} | "
              f"{rates['streams']:,.0f} | {rates['units']:,.0f} | {max(step) / tr:.2f} | "
              f"{rates['streams'] / tr:.2f} | {rates['units'] / tr:.2f} |", flush=True)


if __name__ == "__main__":
    main()
