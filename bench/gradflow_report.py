"""For the issue 7 closing note: the k at which each cell's |dL/dh| falls below 1e-3 of its k = 0
value on tiny Shakespeare, at initialisation, with `charrnn gradflow`'s defaults (H = 128, one
layer, K = 100, 16 windows, seed 0), with the trainer's default sizes (H = 256, one layer) and
with a deeper H = 256, two layers.
Checkpoints or run directories given as arguments are measured too (on their recorded corpus),
e.g. after a 5-minute `charrnn train`:

    python bench/gradflow_report.py                      # at initialisation
    python bench/gradflow_report.py runs/tinyshakespeare # ... and a trained model
    python bench/gradflow_report.py --length 400         # look further back than K = 100
"""

import sys
import time

from charrnn.data.text import bundled, read_corpus
from charrnn.tools import gradflow as G


def line(label, flow, K):
    def fmt(series):
        k = G.vanish_k(series)
        return f"> {K}" if k is None else str(k)

    c = f"   c: {fmt(flow.c):>5}" if flow.c is not None else ""
    return (f"{label:<34} h: {fmt(flow.h):>5}{c}   "
            f"|dL/dh| at k=0 {flow.h[0]:.2e}, k={K} {flow.h[K]:.2e}")


def main(args):
    K = 100
    if args[:1] == ["--length"]:
        K, args = int(args[1]), args[2:]
    paths = args
    corpus = bundled()
    text = read_corpus(corpus)
    print(f"k where |dL/dstate| < {G.RATIO:g} x its k=0 value, tiny Shakespeare, K = {K}")
    for hidden, layers in ((128, 1), (256, 1), (256, 2)):
        start = time.perf_counter()
        flows = G.compare_fresh(text, hidden=hidden, layers=layers, length=K, corpus=str(corpus))
        took = time.perf_counter() - start
        for f in flows:
            print(line(f"{f.cell} init H={hidden} layers={layers}", f, K))
        print(f"  ({took:.1f} s)")
    for p in paths:
        print(line(p, G.from_checkpoint(p, length=K), K))


if __name__ == "__main__":
    main(sys.argv[1:])
