"""What the sequence-task benches share: a timed loop, rounds against PyTorch, one family's
training step, the CPU's name, KEY=VALUE settings."""

from __future__ import annotations

import platform
import time
from pathlib import Path


def rate(step, seconds: float) -> float:
    """Characters per second of `step()` (which returns the characters it handled), timed for
    `seconds` after a warm-up of half that."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds / 2:  # warm-up
        step()
    chars, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        chars += step()
    return chars / (time.perf_counter() - t0)


def rounds(ours, torch_step, threads: int, repeats: int, seconds: float):
    """([ours' characters/s], [PyTorch's]) over `repeats` rounds, the two alternating so that
    both see the same load; `torch_step(torch)` makes PyTorch's step (not called, and [] for it,
    when torch is not installed)."""
    try:
        import torch

        torch.set_num_threads(threads)
        theirs = torch_step(torch)
    except ImportError:
        theirs = None
    a, b = [], []
    for _ in range(repeats):
        a.append(rate(ours, seconds))
        if theirs:
            b.append(rate(theirs, seconds))
    return a, b


def family_step(F, cfg, data, workers):
    """step() for `rate`: one Adam step of family F (lr 1e-3, clip 5) on the next batch of `data`
    (cycled), its rows split across `workers` as charrnn train does; returns the batch's
    characters (F.batch_chars). Parameters start from F.init_params with seed 0."""
    import numpy as np

    from charrnn.nn.optim import Optimizer
    from charrnn.parallel import workers as W

    params = F.init_params(cfg, np.random.default_rng(0))
    opt, box = Optimizer("adam", params), [0]

    def step():
        batch = data[box[0] % len(data)]
        box[0] += 1
        _, grads, _ = W.loss_and_grads(F, params, cfg, batch, (), None, workers)
        opt.clip_and_step(params, grads, 1e-3, 5.0)
        return F.batch_chars(batch)
    return step


def cpu_model() -> str:
    """The CPU's model name (as lscpu shows it), for every table's heading."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    return next((line.split(":", 1)[1].strip() for line in lines
                 if line.startswith("model name")), platform.processor() or platform.machine())


def value(text: str):
    """A --set KEY=VALUE value: an int, a float, true/false, or the text itself."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_settings(pairs: list[str]) -> dict:
    """{KEY: value} of --set KEY=VALUE arguments."""
    return {k: value(v) for k, v in (kv.split("=", 1) for kv in pairs)}
