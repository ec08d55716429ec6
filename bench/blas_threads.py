"""Single-stream work (sampling, scoring one text) at each BLAS thread count, with every core free
and with another process holding one: the measurement behind charrnn.parallel.blas.single_stream.

Run by hand (never a timed test), on a trained checkpoint:

    python bench/blas_threads.py -c runs/zh --text held_out.txt [--chars 1000] [--repeats 3]

Each workload runs at 1 thread and at every count up to the CPUs this process may use, first with
the cores idle and then with a busy loop (`python -c 'while True: pass'`) holding one of them,
which is what a shared machine or a second job looks like. OpenBLAS's threads spin while they
wait for work; with a core taken the spinning thread and the busy one share it and each
multiply waits for its slice. The times are the best of --repeats; the ratios are against
1 thread in the same run. (The thread count is set through SINGLE_STREAM_THREADS, which
sampling and scoring switch to.)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
from common import cpu_model

from charrnn import checkpoint as C
from charrnn.data.text import read_corpus
from charrnn.infer.sample import SampleConfig, generate
from charrnn.infer.scoring import score_text
from charrnn.parallel import blas as B
from charrnn.parallel.blas import describe, openblas
from charrnn.runs import find_checkpoint


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-c", "--checkpoint", required=True)
    ap.add_argument("--text", required=True, help="a text to score (its first --eval-chars)")
    ap.add_argument("--chars", type=int, default=1000, help="characters to sample")
    ap.add_argument("--eval-chars", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    blas = openblas()
    if blas is None:
        sys.exit("this NumPy's BLAS is not OpenBLAS: nothing to measure")
    ck = C.load(find_checkpoint(args.checkpoint))
    text = read_corpus(args.text)[: args.eval_chars]
    cpus = len(os.sched_getaffinity(0))
    print(f"{cpu_model()}, {cpus} CPUs, {describe()}; {ck.model.cell} {ck.model.hidden}x"
          f"{ck.model.layers}, vocabulary {len(ck.vocab)}; load {os.getloadavg()[0]:.2f}")

    def sample():
        rng = np.random.default_rng(1)
        for _ in generate(ck.params, ck.model, ck.vocab, "", SampleConfig(length=args.chars), rng):
            pass

    def evaluate():
        score_text(ck.params, ck.model, ck.vocab, text)

    counts = sorted({1, *range(2, cpus + 1)})
    for busy in (False, True):
        proc = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            time.sleep(0.5 if busy else 0)
            for name, fn in ((f"sample -n {args.chars}", sample),
                             (f"eval {len(text):,} chars", evaluate)):
                row = {}
                for n in counts:
                    blas.set(n)
                    B.SINGLE_STREAM_THREADS = n  # what sampling and scoring switch to
                    fn()  # warm up
                    row[n] = best(fn, args.repeats)
                base = row[1]
                cells = "  ".join(f"{n} thread{'s' if n > 1 else ''} {t:6.2f} s "
                                  f"({t / base:4.1f}x)" for n, t in row.items())
                print(f"{'one core busy' if busy else 'idle':<14}{name:<20}{cells}")
        finally:
            if proc is not None:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    main()
