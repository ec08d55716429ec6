"""What the sequence-task benches share: a timed loop, the CPU's name, KEY=VALUE settings."""

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
