import numpy as np
import pytest


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


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
