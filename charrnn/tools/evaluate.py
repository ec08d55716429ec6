"""Scoring text with a model: per-character losses over a long sequence, state carried throughout.

Used by training (validation loss) and by `charrnn eval`. Character j+1 is predicted from
characters 0..j. With `streams` S > 1 the prediction positions are cut into S contiguous pieces of
equal length m, run side by side as a batch (much faster than one stream), each piece starting
from the zero state; the few positions left over at the end (fewer than S) continue the last
piece's state, so every character after the first is scored exactly once. With S = 1 the whole
text is one stream with the state carried from its first character to its last.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..models import lm as M
from ..parallel.workers import score_streams

LN2 = math.log(2.0)


class Score(NamedTuple):
    nats: float  # mean loss per scored character, in nats
    chars: int  # characters scored

    @property
    def bpc(self) -> float:
        """Bits per character."""
        return self.nats / LN2

    @property
    def perplexity(self) -> float:
        """exp(nats); inf beyond float range (a model that diverged without NaNs gets there)."""
        return math.exp(self.nats) if self.nats < 709.0 else math.inf


def run_streams(params, cfg, inputs, targets, state, seq, out):
    """Per-character losses of (N, L) inputs/targets in chunks of `seq`, into out (N, L)."""
    L = inputs.shape[1]
    for lo in range(0, L, seq):
        hi = min(lo + seq, L)
        logits, state, _ = M.forward(params, cfg, inputs[:, lo:hi], state)
        out[:, lo:hi] = M.cross_entropy(logits, targets[:, lo:hi], reduce=False)
    return state


def char_losses(params, cfg: M.ModelConfig, ids: np.ndarray, streams: int = 1,
                seq: int = 256, workers=None) -> np.ndarray:
    """Loss in nats of each of ids[1:], in text order: shape (len(ids) - 1,), float64.

    `workers` (a charrnn.parallel.Workers) runs the streams in slices on several cores; the
    streams never meet, so each slice runs all its chunks without waiting for the others."""
    ids = np.asarray(ids)
    P = len(ids) - 1  # prediction positions
    out = np.empty(max(P, 0), dtype=np.float64)
    if P <= 0:
        return out
    S = max(1, min(streams, P))
    m = P // S
    inputs = ids[: S * m].reshape(S, m)
    targets = ids[1 : S * m + 1].reshape(S, m)
    piece = np.empty((S, m))
    state = score_streams(params, cfg, inputs, targets, seq, workers, piece)
    out[: S * m] = piece.reshape(-1)
    rest = P - S * m
    if rest:  # continue the last stream, which ends exactly where the rest begins
        last = M.state_slice(state, slice(-1, None))
        tail = np.empty((1, rest))
        run_streams(params, cfg, ids[S * m : P][None], ids[S * m + 1 :][None], last, seq, tail)
        out[S * m :] = tail[0]
    return out


def score(params, cfg: M.ModelConfig, ids: np.ndarray, streams: int = 1, seq: int = 256,
          workers=None) -> Score:
    """Mean loss over every character of ids after the first."""
    losses = char_losses(params, cfg, ids, streams, seq, workers)
    return Score(float(losses.mean()) if losses.size else float("nan"), int(losses.size))
