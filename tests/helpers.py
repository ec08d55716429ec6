"""Helpers the tests share (fixtures are in conftest.py): import them as
`from tests.helpers import assert_close`."""

import numpy as np


def assert_close(actual, expected, rtol=1e-10, atol=1e-12, what="array"):
    """One comparison helper: names what differs, where, and by how much."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    diff = np.abs(actual - expected)
    bad = diff > atol + rtol * np.abs(expected)
    if bad.any():
        idx = np.unravel_index(int(np.argmax(np.where(bad, diff, -1))), diff.shape)
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} elements differ; worst at "
                             f"{idx}: {actual[idx]!r} vs {expected[idx]!r} (diff {diff[idx]:.3g})")


_STALLING_TRAINER = """
import signal, sys, time
from charrnn import checkpoint as C
real, saves = C.atomic_write, [0]
def stalling(path, write):
    def w(f):
        if path.name == "last.npz":
            saves[0] += 1
            if {when}:  # stall half-way through this save, for the test to kill us
                f.write(b"PK\\x03\\x04 half a zip")
                f.flush()
                print("WRITING", flush=True)
                time.sleep(120)
        write(f)
    real(path, w)
C.atomic_write = stalling
from charrnn.cli import main
sys.argv[0] = "charrnn"
main()
"""


def stalling_trainer(when: str) -> str:
    """`python -c` source of `charrnn` whose save of last.npz prints WRITING and stalls half-way
    when the expression `when` is true (`saves[0]` counts the saves of last.npz)."""
    return _STALLING_TRAINER.format(when=when)
