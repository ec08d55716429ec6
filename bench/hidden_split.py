"""What splitting the LSTM's time loop by hidden units would gain: a measured prototype.

Run by hand (never a timed test; Linux, two cores):

    python bench/hidden_split.py [--hidden 128,256,512] [--rounds 60]

charrnn.parallel splits a batch of 32 streams between two processes by streams: each process
runs its 16 rows through the whole model, with no exchange until the chunk's gradients are
summed. The alternative (issue 16) splits by hidden units: each process computes the gates of
half the units for all 32 rows, (32 x H)(H x 2H) per step instead of (16 x H)(H x 4H), and the
two halves of h_t must meet before step t + 1 can start: one cross-process barrier per step
(forward; the backward loop needs a sum of the two partial dh as well).

This times one layer's forward time loop (T = 64 steps, float32, one BLAS thread per process)
both ways on two forked processes, the barrier a spin on a shared counter with h double-buffered
in shared memory, and prints the time per step (best and median of --rounds). The hidden-unit
and stream-split results are checked against charrnn.nn.cells.lstm_forward on the whole batch
(the same h_T to float32 rounding) before any figure is printed. It measures the loop only: the cell's elementwise work is the same either
way, and the backward loop is not built here.
"""

from __future__ import annotations

import argparse
import mmap
import os
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # one thread per process, set before NumPy loads OpenBLAS
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import cpu_model

from charrnn.nn.cells import _loop_copy, lstm_forward

N, T = 32, 64


def lstm_cell(a: np.ndarray, c: np.ndarray, tmp: np.ndarray, h_out: np.ndarray) -> None:
    """In place: a (n, 4u) pre-activations [i f o g] -> gates; c (n, u) -> c_t; h_out = h_t.

    The same elementwise work as cells.lstm_forward's loop body, for u of the H units: the cells'
    kernels slice the gates by the full H and write h_t to their own arrays, and here each
    process writes its half of h_t into shared memory. Checked against lstm_forward in main()."""
    u = c.shape[1]
    s = a[:, : 3 * u]
    np.negative(s, out=s)
    np.exp(s, out=s)
    s += 1
    np.reciprocal(s, out=s)  # i, f, o = sigmoid
    g = a[:, 3 * u :]
    np.tanh(g, out=g)
    c *= a[:, u : 2 * u]  # f * c_{t-1}
    np.multiply(a[:, :u], g, out=tmp)
    c += tmp  # c_t = f * c_{t-1} + i * g
    np.tanh(c, out=tmp)
    np.multiply(a[:, 2 * u : 3 * u], tmp, out=h_out)  # h_t = o * tanh(c_t)


class Shared:
    """Anonymous shared memory, made before fork: two h buffers, counters, timings, results."""

    def __init__(self, H: int, rounds: int):
        self.mem = mmap.mmap(-1, (2 * N * H + N * H) * 4 + 64 * 8 + rounds * 2 * 8)
        off = 0
        self.h = np.frombuffer(self.mem, np.float32, 2 * N * H, off).reshape(2, N, H)
        off += 2 * N * H * 4
        self.out = np.frombuffer(self.mem, np.float32, N * H, off).reshape(N, H)
        off += N * H * 4
        self.step = np.frombuffer(self.mem, np.int64, 2, off)
        self.ready = np.frombuffer(self.mem, np.int64, 2, off + 8 * 8)
        off += 64 * 8
        self.secs = np.frombuffer(self.mem, np.float64, rounds * 2, off).reshape(rounds, 2)

    def start_round(self, k: int, r: int) -> None:
        """Both processes begin round r together (so a round's time is the pair's)."""
        self.ready[k] = r + 1
        while self.ready[1 - k] < r + 1:
            pass


def by_streams(k: int, sh: Shared, Wh, xp, rounds: int) -> None:
    """Process k: rows 16k..16k+15, all 4H gate columns; no exchange."""
    H = Wh.shape[0]
    rows = slice(16 * k, 16 * k + 16)
    W, xk = _loop_copy(Wh), np.ascontiguousarray(xp[:, rows])
    a, tmp = np.empty((16, 4 * H), np.float32), np.empty((16, H), np.float32)
    for r in range(rounds):
        h, c = np.zeros((16, H), np.float32), np.zeros((16, H), np.float32)
        sh.start_round(k, r)
        t0 = time.perf_counter()
        for t in range(T):
            np.matmul(h, W, out=a)
            a += xk[t]
            lstm_cell(a, c, tmp, h)
        sh.secs[r, k] = time.perf_counter() - t0
    sh.out[rows] = h


def by_units(k: int, sh: Shared, Wh, xp, rounds: int) -> None:
    """Process k: units k*H/2 .. (k+1)*H/2 - 1 (their i, f, o, g columns), all 32 rows."""
    H = Wh.shape[0]
    u = H // 2
    own = slice(k * u, (k + 1) * u)
    cols = np.concatenate([np.arange(g * H + k * u, g * H + (k + 1) * u) for g in range(4)])
    W, xk = _loop_copy(Wh[:, cols]), np.ascontiguousarray(xp[:, :, cols])
    a, tmp = np.empty((N, 4 * u), np.float32), np.empty((N, u), np.float32)
    step = 0
    for r in range(rounds):
        c = np.zeros((N, u), np.float32)
        step += 1  # the loop reads h[step % 2] first: h_0, this process's half zeroed here
        sh.h[step % 2, :, own] = 0  # (both are past the last barrier: nobody reads it now)
        sh.step[k] = step
        while sh.step[1 - k] < step:
            pass
        sh.start_round(k, r)
        t0 = time.perf_counter()
        for t in range(T):
            src, dst = sh.h[step % 2], sh.h[(step + 1) % 2]
            np.matmul(src, W, out=a)
            a += xk[t]
            lstm_cell(a, c, tmp, dst[:, own])
            step += 1
            sh.step[k] = step  # this half of h_t is written
            while sh.step[1 - k] < step:  # ... and the other's
                pass
        sh.secs[r, k] = time.perf_counter() - t0
    sh.out[:, own] = sh.h[step % 2, :, own]


def run(worker, Wh, xp, rounds: int):
    sh = Shared(Wh.shape[0], rounds)
    pids = []
    for k in range(2):
        pid = os.fork()
        if pid == 0:
            try:
                worker(k, sh, Wh, xp, rounds)
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:  # the parent only waits: it takes no core
        _, status = os.waitpid(pid, 0)
        if status:
            raise SystemExit(f"{worker.__name__}: a worker failed")
    per_step = np.sort(sh.secs.max(axis=1)) / T * 1e3  # a round lasts until both are done
    return per_step[0], float(np.median(per_step)), sh.out.copy()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", default="128,256,512", help="comma-separated H")
    ap.add_argument("--rounds", type=int, default=60, help="timed rounds of T = 64 steps")
    args = ap.parse_args(argv)
    print(f"CPU: {cpu_model()}; N = {N}, T = {T}, float32, one "
          "LSTM layer's forward loop, 2 processes x 1 BLAS thread")
    print("| H | by streams ms/step (best, median) | by hidden units (best, median) | "
          "speed-up best | median |")
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for H in (int(x) for x in args.hidden.split(",")):
        Wh = (rng.standard_normal((H, 4 * H)) / np.sqrt(H)).astype(np.float32)
        xp = rng.standard_normal((T, N, 4 * H)).astype(np.float32)
        s_best, s_med, s_out = run(by_streams, Wh, xp, args.rounds)
        u_best, u_med, u_out = run(by_units, Wh, xp, args.rounds)
        zero = np.zeros((N, H), np.float32)
        _, (want, _), _ = lstm_forward(xp.copy(), (zero, zero), {"Wh": Wh})  # charrnn's own
        for name, got in (("streams", s_out), ("hidden units", u_out)):
            err = float(np.max(np.abs(got - want)))
            if not err < 1e-4:
                raise SystemExit(f"H={H}: the split by {name} is wrong (max |diff| of h_T "
                                 f"from cells.lstm_forward {err:.2e})")
        print(f"| {H} | {s_best:.3f}, {s_med:.3f} | {u_best:.3f}, {u_med:.3f} | "
              f"{s_best / u_best:.2f} | {s_med / u_med:.2f} |")


if __name__ == "__main__":
    main()
