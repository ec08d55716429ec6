"""Decoding a sequence-to-sequence model one character at a time: greedy, beam search and
sampling, all on charrnn.models.seq2seq's step API (the source encoded once, its attention keys
precomputed, the decoder state carried from step to step).

Every function returns, per source, the output ids (END dropped) and the attention weights of
each output step, (M, L) with M the outputs including the END step when it was reached and L the
source's own length: row i says where output i looked (for a heat map).

Beam search keeps the `beam` best unfinished hypotheses by total log-probability; a hypothesis
ends at END (or at max_length), and the finished ones are compared by length-normalised score,
log p / (output steps, END included). With beam 1 it is greedy decoding.
"""

from __future__ import annotations

import numpy as np

from ..data import labelled as L
from ..data.pairs import END_ID, START_ID
from ..models import seq2seq as S


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def greedy(params, cfg, sources: list, max_length: int) -> list:
    """[(ids, attention (M, L))] for source id arrays, decoded together."""
    src, src_len = L.pad(sources)
    ids, lengths, att = S.greedy(params, cfg, src, src_len, max_length)
    out = []
    for n, (m, ln) in enumerate(zip(lengths, src_len)):
        row = ids[n, :m].tolist()
        out.append((row[:-1] if row and row[-1] == END_ID else row, att[n, :m, :ln]))
    return out


def beam_search(params, cfg, source, beam: int, max_length: int):
    """(ids, attention (M, L), normalised log-probability) of the best hypothesis for one source
    (an id array)."""
    src, src_len = L.pad([source])
    memory, state = S.start(params, cfg, src, src_len)  # row b: live hypothesis b
    toks, atts = [[]], [[]]  # live hypotheses: tokens, attention rows, total log p
    scores = np.zeros(1)
    prev = np.array([START_ID])
    finished = []
    for t in range(max_length):
        logits, w, state = S.step(params, cfg, memory, state, prev)
        total = scores[:, None] + _log_softmax(logits)  # (B, K)
        keep = []
        for f in np.argsort(-total, axis=None, kind="stable")[:beam]:
            b, k = divmod(int(f), total.shape[1])
            hyp = (toks[b] + [k], atts[b] + [w[b]], float(total[b, k]))
            if k == END_ID or t == max_length - 1:
                finished.append((hyp[2] / (t + 1), hyp))
            else:
                keep.append((b, hyp))
        if not keep or len(finished) >= beam:
            break
        # every row holds the same source, so the memory's rows are selected like the state's
        memory, state = S.select(memory, state, np.array([b for b, _ in keep]))
        toks, atts = [h[0] for _, h in keep], [h[1] for _, h in keep]
        scores = np.array([h[2] for _, h in keep])
        prev = np.array([h[0][-1] for _, h in keep])
    score, (ids, att, _) = max(finished, key=lambda x: x[0])
    if ids and ids[-1] == END_ID:
        ids = ids[:-1]
    return ids, np.array(att)[:, : int(src_len[0])], score


def sample(params, cfg, sources: list, max_length: int, temperature: float,
           rng: np.random.Generator) -> list:
    """[(ids, attention (M, L))]: each next character drawn from softmax(logits / temperature)."""
    src, src_len = L.pad(sources)
    memory, state = S.start(params, cfg, src, src_len)
    N = len(sources)
    prev = np.full(N, START_ID)
    done = np.zeros(N, dtype=bool)
    lengths = np.full(N, max_length)
    out, att = [], []
    for t in range(max_length):
        logits, w, state = S.step(params, cfg, memory, state, prev)
        z = logits / temperature
        p = np.exp(z - z.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        u = rng.random(N)[:, None]
        prev = np.minimum((np.cumsum(p, axis=-1) < u).sum(axis=-1), p.shape[1] - 1)
        out.append(prev)
        att.append(w)
        ended = (prev == END_ID) & ~done
        lengths[ended] = t + 1
        done |= ended
        if done.all():
            break
    ids, att = np.stack(out, axis=1), np.stack(att, axis=1)
    res = []
    for n, (m, ln) in enumerate(zip(lengths, src_len)):
        row = ids[n, :m].tolist()
        res.append((row[:-1] if row and row[-1] == END_ID else row, att[n, :m, :ln]))
    return res
