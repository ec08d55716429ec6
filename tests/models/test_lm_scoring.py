"""Scoring against an independent step-by-step computation."""

import math

import numpy as np
import pytest

from charrnn.models import lm as M
from charrnn.models.lm import char_losses, score
from tests.helpers import assert_close


def stepwise_losses(p, cfg, ids):
    """Independent reference: one stream, one step at a time, softmax written out."""
    state = M.init_state(cfg, 1)
    out = []
    for j in range(len(ids) - 1):
        logits, state = M.step(p, cfg, ids[j : j + 1], state)
        z = logits[0] - logits[0].max()
        out.append(np.log(np.exp(z).sum()) - z[ids[j + 1]])
    return np.array(out)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_single_stream_equals_stepwise(cell, rng):
    cfg = M.ModelConfig(vocab_size=6, cell=cell, hidden=7, layers=2, dtype="float64")
    p = M.init_params(cfg, rng)
    ids = rng.integers(0, 6, size=50)
    assert_close(char_losses(p, cfg, ids, streams=1, seq=8), stepwise_losses(p, cfg, ids))


def test_streams_score_each_position_once_and_the_tail_continues(rng):
    cfg = M.ModelConfig(vocab_size=5, cell="lstm", hidden=6, layers=1, dtype="float64")
    p = M.init_params(cfg, rng)
    ids = rng.integers(0, 5, size=48)  # 47 positions: 3 streams of 15, then 2 continuing
    got = char_losses(p, cfg, ids, streams=3, seq=4)
    assert got.shape == (47,)
    for s in range(3):  # each piece is its own stream starting from zero
        piece = ids[15 * s : 15 * s + 16]
        ref = stepwise_losses(p, cfg, piece)
        if s == 2:  # the last piece carries on to the end of the text
            ref = stepwise_losses(p, cfg, ids[30:])
            assert_close(got[30:], ref)
        else:
            assert_close(got[15 * s : 15 * s + 15], ref)
    sc = score(p, cfg, ids, streams=3, seq=4)
    assert sc.chars == 47 and sc.nats == pytest.approx(got.mean())
    assert sc.bpc == pytest.approx(sc.nats / np.log(2))


# --- edge cases: a perplexity beyond the float range ------------------------------------------

def test_perplexity_beyond_float_range_is_inf():
    from charrnn.models.lm import Score
    assert Score(1e4, 10).perplexity == math.inf and Score(1.0, 10).perplexity == math.e

