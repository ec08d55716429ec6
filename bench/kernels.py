"""One layer's time loops and one single step, NumPy kernels against the fused ones (charrnn.nn.fused).

Run by hand (never a timed test):
    OPENBLAS_NUM_THREADS=1 python bench/kernels.py [--cells rnn,lstm,gru] [--hidden 128,256,512]

For each cell and hidden size H, in one process: one layer's forward and backward over a chunk
(N streams, T steps, float32, `cells.<cell>_forward` then `_backward`, what a training process does
per layer) and one single step of one stream (`cells.<cell>_step`, what sampling, predict and beam
search run per layer and character), each with `--kernels numpy` and `fused` in alternating
rounds, so both see the same load; the figure is the best round. The step's own multiply
(h Wh, one row) is timed alone beside them: the step's floor. The fused results are checked
against NumPy's first (to float32 rounding). The RNN's single step is NumPy's with either kernel
(cells.rnn_step says why), so its two step columns time the same code.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from charrnn.nn import cells


def chunk_args(cell: str, T: int, N: int, H: int, seed: int = 0):
    """xp, state, params, dhs, dstate of one layer's float32 chunk."""
    rng = np.random.default_rng(seed)
    r = lambda *s, k=1.0: (rng.standard_normal(s) * k).astype(np.float32)
    spec = cells.CELLS[cell]
    G = spec.gates * H
    p = {"Wh": r(H, G, k=H ** -0.5), **({"bhn": r(H, k=0.5)} if cell == "gru" else {})}
    return (r(T, N, G), tuple(r(N, H, k=0.5) for _ in range(spec.n_states)), p, r(T, N, H),
            tuple(r(N, H) for _ in range(spec.n_states)))


def layer(cell, xp, state, p, dhs, dstate, kernels="numpy"):
    spec = cells.cell(cell, kernels)
    hs, _, cache = spec.forward(xp.copy(), state, p)
    return hs, spec.backward(dhs, dstate, cache)[0]


def best_per_call(fn, seconds: float, rounds: int, kernels) -> dict[str, float]:
    """Seconds per call of fn(kernels), the best of `rounds` rounds of about `seconds` each for
    each kernel, the rounds alternating between the kernels."""
    best = dict.fromkeys(kernels, float("inf"))
    for _ in range(rounds):
        for k in kernels:
            fn(k)  # warm up
            calls, t = 0, time.perf_counter()
            while (el := time.perf_counter() - t) < seconds or calls < 3:
                fn(k)
                calls += 1
            best[k] = min(best[k], el / calls)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", default="rnn,lstm,gru", help="comma-separated cells")
    ap.add_argument("--hidden", default="128,256,512", help="comma-separated hidden sizes")
    ap.add_argument("--streams", type=int, default=16, help="N: a training process's streams")
    ap.add_argument("--seq", type=int, default=64, help="T: steps per chunk")
    ap.add_argument("--rounds", type=int, default=7, help="alternating rounds (best is kept)")
    ap.add_argument("--seconds", type=float, default=0.3, help="time per round")
    a = ap.parse_args()
    print(f"# cpu: {_cpu()}; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '-')}; "
          f"load {os.getloadavg()[0]:.2f}; N={a.streams}, T={a.seq}, best of {a.rounds}")
    print(f"{'cell':<6}{'H':>5}{'layer numpy ms':>16}{'fused ms':>10}{'speed-up':>10}"
          f"{'step numpy us':>15}{'fused us':>10}{'h Wh us':>9}")
    for cell in a.cells.split(","):
        for H in map(int, a.hidden.split(",")):
            r = measure(cell, H, a)
            print(f"{cell:<6}{H:>5}{r['layer numpy'] * 1e3:>16.2f}{r['layer fused'] * 1e3:>10.2f}"
                  f"{r['layer numpy'] / r['layer fused']:>10.2f}{r['step numpy'] * 1e6:>15.2f}"
                  f"{r['step fused'] * 1e6:>10.2f}{r['h Wh'] * 1e6:>9.2f}", flush=True)


def measure(cell: str, H: int, a) -> dict[str, float]:
    """Seconds per call: the layer's chunk and the single step with each kernel, and h Wh."""
    args = chunk_args(cell, a.seq, a.streams, H)
    want = layer(cell, *args)
    for w, g in zip(want, layer(cell, *args, kernels="fused")):
        assert np.allclose(g, w, rtol=1e-3, atol=1e-4 * np.abs(w).max()), cell
    both = ("numpy", "fused")
    lay = best_per_call(lambda k: layer(cell, *args, kernels=k), a.seconds, a.rounds, both)
    xp, state, p = args[0][0, :1].copy(), tuple(s[:1].copy() for s in args[1]), args[2]
    st = best_per_call(lambda k: cells.cell(cell, k).step(xp, state, p), a.seconds, a.rounds,
                       both)
    mm = best_per_call(lambda k: np.matmul(state[0], p["Wh"]), a.seconds, a.rounds, ("numpy",))
    return {"layer numpy": lay["numpy"], "layer fused": lay["fused"], "step numpy": st["numpy"],
            "step fused": st["fused"], "h Wh": mm["numpy"]}


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


if __name__ == "__main__":
    main()
