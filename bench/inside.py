"""How fast `charrnn inside` looks inside a model: recording every series of an LSTM 512x2 over
100,000 characters of tiny Shakespeare, then correlating every unit with the built-in features
(`--find`) and counting gate saturation. The weights are random (the speed does not depend on
them). Each setting is timed `--repeats` times, best kept, settings alternating so that ratios
compare runs made under the same load.

    python bench/inside.py                       LSTM 512x2, 100,000 characters
    python bench/inside.py --chars 20000 --hidden 128 --repeats 1

Settings: BLAS on one thread in the time loop (what charrnn.inside.record.record does) against
BLAS's own thread count, and the fused kernels against NumPy's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np
from common import cpu_model

from charrnn.checkpoint import Checkpoint
from charrnn.data.vocab import Vocab
from charrnn.errors import ConfigError
from charrnn.inside import record as I
from charrnn.models import lm
from charrnn.nn import cells
from charrnn.parallel.blas import openblas


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chars", type=int, default=100_000, help="characters to record")
    ap.add_argument("--hidden", type=int, default=512, help="units per layer")
    ap.add_argument("--layers", type=int, default=2, help="LSTM layers")
    ap.add_argument("--repeats", type=int, default=2, help="timings per setting; the best kept")
    args = ap.parse_args(argv)
    text = (ROOT / "corpora" / "tinyshakespeare.txt").read_text()[: args.chars]
    vocab = Vocab.from_text(text)
    cfg = lm.ModelConfig(vocab_size=len(vocab), cell="lstm", hidden=args.hidden,
                         layers=args.layers)
    ckpt = Checkpoint(cfg, vocab, lm.init_params(cfg, np.random.default_rng(0)))
    blas = openblas()
    threads = blas.get() if blas else 1
    settings = [("one BLAS thread, numpy kernels", "numpy", True),
                ("one BLAS thread, fused kernels", "fused", True),
                (f"BLAS's {threads} threads, numpy kernels", "numpy", False)]
    try:
        cells.cell("lstm", "fused")  # built at first use; ConfigError where it cannot be
    except ConfigError as e:
        print(f"fused kernels left out: {e}")
        settings.pop(1)
    best: dict = {}
    for _ in range(args.repeats):
        for name, kernels, one in settings:
            real = I.one_blas_thread
            if not one:  # leave BLAS's thread count alone
                I.one_blas_thread = lambda: _nothing()
            try:
                t0 = time.perf_counter()
                rec = I.record(ckpt.running(kernels), text)
                t1 = time.perf_counter()
                found = I.find(rec)
                t2 = time.perf_counter()
                I.saturation(rec)
                t3 = time.perf_counter()
            finally:
                I.one_blas_thread = real
            times = (t1 - t0, t2 - t1, t3 - t2)
            best[name] = [min(a, b) for a, b in zip(best.get(name, times), times)]
            del rec, found
    units = 6 * args.hidden * args.layers
    print(f"LSTM {args.hidden}x{args.layers}, {len(text):,} characters, {units:,} units "
          f"(every series), {cpu_model()}, load {os.getloadavg()[0]:.2f}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; best of {args.repeats}")
    print(f"{'setting':40} {'record s':>9} {'find s':>8} {'saturation s':>13} {'chars/s':>9}")
    base = best[settings[0][0]][0]
    for name, _, _ in settings:
        r, f, s = best[name]
        print(f"{name:40} {r:9.2f} {f:8.2f} {s:13.2f} {len(text) / r:9,.0f}"
              f"   record x{base / r:.2f} of the first")


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    main()
