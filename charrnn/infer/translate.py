"""Using a sequence-to-sequence checkpoint: translating sources, and scoring a file of pairs
(what `charrnn predict` and `charrnn eval` call for seq2seq checkpoints).

The checkpoint holds the source vocabulary (its vocab, the unknown symbol first) and, in
meta["target_vocab"], the target vocabulary (START, END, UNKNOWN first: charrnn.data.pairs).
Source characters outside the vocabulary are read as the unknown symbol and counted.
"""

from __future__ import annotations

import numpy as np

from ..data import labelled as L
from ..data import pairs as P
from ..data.vocab import Vocab
from ..errors import CheckpointError, ConfigError, CorpusError
from ..models import family
from ..models import seq2seq as S


def _setup(ckpt) -> Vocab:
    if getattr(family(ckpt.family), "ANSWERS", None) != "text":
        raise CheckpointError(f"this checkpoint holds a {ckpt.family} model, not one that "
                              f"translates (--task seq2seq)")
    chars = ckpt.meta.get("target_vocab")
    if not isinstance(chars, list) or len(chars) != ckpt.model.target_size \
            or tuple(chars[:3]) != P.RESERVED:
        raise CheckpointError(f"the checkpoint's target vocabulary is missing or not "
                              f"{ckpt.model.target_size} characters starting with the markers")
    return Vocab(chars)


def translate(ckpt, sources: list[str], beam: int = 1, temperature: float | None = None,
              max_length: int | None = None, seed: int = 0) -> tuple[list, list, int]:
    """(outputs, attention weights, unknown count): per source its output text and an array
    (M, len(source)) of the attention of each output step (M counts the end marker when it
    was reached; (M, 0) with attention "none"). Greedy decoding with beam 1, beam search with
    more; `temperature` samples instead (seeded by `seed`). max_length: the most output
    characters, 2 * len(source) + 10 when None."""
    tv = _setup(ckpt)
    if not isinstance(beam, int) or isinstance(beam, bool) or beam < 1:
        raise ConfigError(f"beam must be a positive whole number, not {beam!r}")
    if temperature is not None and not temperature > 0:
        raise ConfigError(f"temperature must be positive, not {temperature!r}")
    empty = [i for i, s in enumerate(sources) if not s]
    if empty:
        raise CorpusError(f"source {empty[0] + 1} is empty; there is nothing to translate")
    ids, unknown = L.encode(ckpt.vocab, sources)
    params, cfg = ckpt.params, ckpt.model

    def limit(src):
        return max_length if max_length is not None else 2 * len(src) + 10

    results = [None] * len(ids)
    if temperature is None and beam > 1:
        for i, src in enumerate(ids):
            out, att, _ = S.beam_search(params, cfg, src, beam, limit(src))
            results[i] = (out, att)
    else:
        rng = np.random.default_rng(seed)
        order = np.argsort([len(s) for s in ids], kind="stable")
        for lo in range(0, len(order), 256):
            idx = order[lo : lo + 256]
            batch = [ids[i] for i in idx]
            m = max(limit(s) for s in batch)
            got = S.decode(params, cfg, batch, m, temperature, rng)
            for i, r in zip(idx, got):
                results[i] = r
    return [tv.decode(o) for o, _ in results], [a for _, a in results], unknown


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions of one character."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def evaluate_file(ckpt, path, encoding: str = "utf-8", beam: int = 1,
                  max_length: int | None = None) -> dict:
    """Score a file of source<TAB>target pairs (several lines may share a source: its
    references). exact_match: the share of distinct sources whose output equals any of their
    references; char_error_rate: the edit distance to the closest reference over that
    reference's length, summed over the sources (edits / reference characters); examples: the
    distinct sources; unknown_characters: source characters outside the vocabulary."""
    _setup(ckpt)
    ex = L.read(path, "seq2seq", encoding)
    grouped = P.groups(ex.texts, ex.targets)
    outs, _, unknown = translate(ckpt, [s for s, _ in grouped], beam=beam,
                                 max_length=max_length)
    hits = edits = chars = 0
    for out, (_, refs) in zip(outs, grouped):
        hits += out in refs
        d, ref = min((edit_distance(out, r), r) for r in refs)
        edits, chars = edits + d, chars + len(ref)
    return {"exact_match": hits / len(grouped), "char_error_rate": edits / max(chars, 1),
            "examples": len(grouped), "pairs": len(ex.texts), "unknown_characters": unknown}
