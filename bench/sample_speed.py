"""Characters per second of `charrnn.sample.generate` and of `charrnn.models.lm.score`.

Run by hand (never a timed test):  python bench/sample_speed.py [--chars 3000] [--kernels fused]
Random float32 models with a 65-character vocabulary (GRU 384x1 is `charrnn train`'s default),
their cells running the kernels `charrnn sample` would choose here (--kernels: another choice).
The sampler's per-character overhead shows against the bare loop of the step function it calls
(`model.stepper`), so it is clear where the time goes.
"""

from __future__ import annotations

import argparse
import string
import time

import numpy as np

from charrnn.data.vocab import Vocab
from charrnn.infer.sample import SampleConfig, generate
from charrnn.models import lm as M
from charrnn.models.lm import score
from charrnn.nn import cells


def rate(fn, n, repeats=5):
    """Characters per second, best of `repeats` (the machine is shared; the best is the cost)."""
    fn(min(n, 200))  # warm up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - t)
    return n / best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chars", type=int, default=3000)
    ap.add_argument("--kernels", choices=cells.KERNEL_CHOICES, default=cells.DEFAULT_KERNELS)
    args = ap.parse_args()
    chars = sorted(set(string.printable[:62] + "\n .,;:!?"))[:65]
    vocab = Vocab(chars)
    rng = np.random.default_rng(0)
    print(f"{'model':<16}{'kernels':>8}{'sample chars/s':>16}{'bare step/s':>14}"
          f"{'eval chars/s':>14}")
    for cell, hidden, layers in (("lstm", 512, 2), ("lstm", 256, 2), ("gru", 384, 1),
                                 ("lstm", 128, 2)):
        kernels = cells.choose_kernels(args.kernels, cell, "float32")
        cfg = M.ModelConfig(vocab_size=len(vocab), cell=cell, hidden=hidden, layers=layers,
                            kernels=kernels)
        p = M.init_params(cfg, rng)

        def sample(n, p=p, cfg=cfg):
            for _ in generate(p, cfg, vocab, "", SampleConfig(length=n), rng):
                pass

        def bare(n, p=p, cfg=cfg):
            s, x, step = M.init_state(cfg, 1), np.zeros(1, dtype=np.intp), M.stepper(p, cfg)
            for _ in range(n):
                _, s = step(x, s)

        ids = rng.integers(0, len(vocab), size=args.chars + 1)

        def evaluate(n, p=p, cfg=cfg, ids=ids):
            score(p, cfg, ids[: n + 1], streams=1)

        print(f"{f'{cell} {hidden}x{layers}':<16}{kernels:>8}{rate(sample, args.chars):>16,.0f}"
              f"{rate(bare, args.chars):>14,.0f}{rate(evaluate, args.chars):>14,.0f}")


if __name__ == "__main__":
    main()
