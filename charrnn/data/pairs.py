"""Source/target pairs for the sequence-to-sequence family: vocabularies with markers, a
validation split by source, and batches by source length.

A TSV file of `source<TAB>target` lines (charrnn.data.labelled.read(path, "seq2seq")). One source
may have several references (several lines with the same source); they stay together: the
seeded validation split draws distinct sources, so every reference of a source lands on one side.

Vocabularies. The source vocabulary is labelled's: UNKNOWN (id 0), then the sorted characters of
the training sources. The target vocabulary reserves its first ids:

    0 START   U+0002, the decoder's first input (the target shifted right)
    1 END     U+0003, the decoder's last output: a target of L characters is L + 1 predictions
    2 UNKNOWN U+FFFD, a validation or test target character the training targets lack
    3 ...     the sorted characters of the training targets

A batch (rows = pairs, source ids batch-major):

    src      (N, S) int    source ids, 0 after each source
    src_len  (N,)   int    source lengths, 1 <= L_n <= S
    tgt_in   (N, T) int    START, target ids      (0 after)
    tgt_out  (N, T) int    target ids, END        (0 after)
    weights  (N, T) float  N / (the batch's target characters, END included) at real steps, 0
                           after: the loss is the mean over the batch's predicted characters
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import CorpusError
from . import labelled as L
from . import summary as S
from .vocab import Vocab

START, END, UNKNOWN = "\u0002", "\u0003", L.UNKNOWN
RESERVED = (START, END, UNKNOWN)
START_ID, END_ID, UNKNOWN_ID = 0, 1, 2


def target_vocab(targets, where=None) -> Vocab:
    """START, END, UNKNOWN, then the sorted characters of `targets` (CorpusError for a target
    holding a marker character)."""
    _check_markers(targets, where)
    chars = set()
    for t in targets:
        chars.update(t)
    chars.discard(UNKNOWN)
    return Vocab([*RESERVED, *sorted(chars)])


def _check_markers(targets, where=None) -> None:
    for i, t in enumerate(targets):
        if START in t or END in t:
            at = f"{where[i]}: " if where else ""
            raise CorpusError(f"{at}a target holds U+0002 or U+0003, which mark the start and "
                              f"end of every target")


def encode_targets(vocab: Vocab, targets, where=None) -> tuple[list, int]:
    """Each target's ids (no markers), unknown characters as UNKNOWN_ID; how many there were.
    CorpusError for a target holding a marker character."""
    _check_markers(targets, where)
    out, unknown = [], 0
    for t in targets:
        ids, n = vocab.encode_lenient(t, UNKNOWN)
        out.append(np.asarray(ids, dtype=np.int64))
        unknown += n
    return out, unknown


def make_batch(src_ids: list, tgt_ids: list) -> tuple:
    """The batch tuple (module docstring) of the pairs (src_ids[i], tgt_ids[i])."""
    src, src_len = L.pad(src_ids)
    return (src, src_len, *shifted(tgt_ids))


def shifted(tgt_ids: list) -> tuple:
    """(tgt_in, tgt_out, weights) of target id sequences: START then each target as the inputs,
    each target then END as the outputs, 0 after; weights as in the module docstring."""
    n = len(tgt_ids)
    lens = np.array([len(t) + 1 for t in tgt_ids])
    T = int(lens.max())
    tgt_in = np.zeros((n, T), dtype=np.int64)
    tgt_out = np.zeros((n, T), dtype=np.int64)
    for i, t in enumerate(tgt_ids):
        tgt_in[i, 0], tgt_in[i, 1 : len(t) + 1] = START_ID, t
        tgt_out[i, : len(t)], tgt_out[i, len(t)] = t, END_ID
    weights = (np.arange(T)[None, :] < lens[:, None]) * (n / lens.sum())
    return tgt_in, tgt_out, weights


class Data(NamedTuple):
    vocab: Vocab  # the source vocabulary, UNKNOWN first
    target_vocab: Vocab  # START, END, UNKNOWN, ...
    batches: object  # labelled.Buckets, by source length
    val: tuple  # (source ids list, target ids list): the validation pairs
    val_groups: list  # [(source ids, [reference strings])]: each distinct validation source
    val_unknown: int  # characters of the validation sources and targets outside the vocabularies
    fingerprint: dict
    info: dict


def groups(sources: list, targets: list) -> list:
    """[(source, [its references in order])] for each distinct source, in first-seen order."""
    refs: dict = {}
    for s, t in zip(sources, targets):
        refs.setdefault(s, []).append(t)
    return list(refs.items())


def load(tcfg, saved=None) -> Data:
    """Read tcfg.corpus (and tcfg.val, or split off tcfg.val_frac of the distinct sources),
    build or (resuming) reuse both vocabularies, and batch by source length."""
    ex = L.read(tcfg.corpus, "seq2seq", tcfg.encoding)
    if tcfg.val:
        train_ex, val_ex = ex, L.read(tcfg.val, "seq2seq", tcfg.encoding)
    else:
        train_ex, val_ex = L.split_examples(ex, tcfg.val_frac, tcfg.seed, stratify=False,
                                            saved=saved, by_source=True)
    if saved is not None:
        vocab, tvocab = saved.vocab, Vocab(saved.meta.get("target_vocab") or [])
    else:
        vocab = L.vocab_with_unknown(train_ex.texts)
        tvocab = target_vocab(train_ex.targets, train_ex.where)
    train_src, _ = L.encode(vocab, train_ex.texts)
    train_tgt, _ = encode_targets(tvocab, train_ex.targets, train_ex.where)
    val_src, unk_s = L.encode(vocab, val_ex.texts)
    val_tgt, unk_t = encode_targets(tvocab, val_ex.targets, val_ex.where)
    src_of = {t: ids for t, ids in zip(val_ex.texts, val_src)}
    val_groups = [(src_of[s], refs) for s, refs in groups(val_ex.texts, val_ex.targets)]
    lengths = np.array([len(s) for s in train_src])
    if tcfg.batch > len(train_src):
        raise CorpusError(f"--batch {tcfg.batch} is more than the {len(train_src)} training "
                          f"pairs; use a smaller --batch")

    def make(idx):
        return make_batch([train_src[i] for i in idx], [train_tgt[i] for i in idx])

    chars = int(sum(len(t) + 1 for t in train_tgt))
    summary, lines = S.report(ex, train_ex, val_ex, "seq2seq", bool(tcfg.val))
    info = {"train_chars": chars, "val_chars": int(sum(len(t) + 1 for t in val_tgt)),
            "vocab": len(vocab), "summary": summary, "summary_lines": lines,
            "data": f"{len(train_src):,} pairs, {chars:,} target characters (validation "
                    f"{len(val_src):,} pairs, {len(val_groups):,} sources; vocabularies "
                    f"{len(vocab)} source, {len(tvocab)} target)"}
    return Data(vocab, tvocab, L.Buckets(lengths, tcfg.batch, tcfg.seed, make),
                (val_src, val_tgt), val_groups, unk_s + unk_t,
                L.split_fingerprint(train_ex, val_ex, saved), info)
