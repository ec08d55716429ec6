"""Labelled examples for the sequence families: reading them, splitting off validation, encoding
with an unknown symbol, and batching by length.

Files (read with charrnn.data.text's hygiene: strict decoding, BOMs dropped, CRLF made LF, binary
files refused); every malformed line is a CorpusError naming the file and the line number:

    classify   a TSV file, one example a line, `text<TAB>label`; or a folder of `<label>.txt`
               files with one example a line (the names-by-language layout)
    tag        a TSV file, `text<TAB>tags`, one tag character per character of text (B/I for
               word starts, say)
    seq2seq    a TSV file, `source<TAB>target`; further columns (an attribution) are ignored

Blank lines are skipped. Text is taken as it is (spaces inside kept); only the line break ends it.
A header row is skipped: a first line whose two columns are both column names (HEADER_NAMES,
in any case: `text<TAB>label`, `source<TAB>target`, `sentence<TAB>sentiment`, ...), or any
first line when `header=True`; `header=False` reads every line as an example. Training needs
two classes or tags at least (`require_classes`): a model of one would be right 100% of the time
and learn nothing.

The validation split (`split`, for every labelled family) draws distinct texts, not lines: all
copies of one text fall on one side, so validation never scores a text the model trained on
(the names hold 20,050 lines but 17,456 distinct surnames). A classifier's split is stratified,
each text counting under its most frequent label.

The unknown symbol. Text met after training (predict, eval, a --val file) may hold characters the
training data never had. The vocabulary of these families therefore starts with UNKNOWN (U+FFFD,
the Unicode replacement character) at id 0, and every character outside the vocabulary is read
as it; `encode` says how many there were. (A training text that itself holds U+FFFD shares that
id.) Checkpoints store the vocabulary as its ordered list, so UNKNOWN is simply its first entry.

Batches: every epoch the examples are shuffled, sorted by length (stably, so texts of one length
stay shuffled and a batch mixes classes) and cut into batches of consecutive examples, so a
batch holds texts of nearly one length and padding costs little; then the batches are shuffled.
All of it is drawn from a generator seeded with (seed, epoch), so batch c of epoch e is always
the same (an exact resume needs no saved order).
"""

from __future__ import annotations

import os
import zlib
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import CorpusError
from .text import read_corpus
from .vocab import Vocab

UNKNOWN = "\ufffd"
KINDS = ("classify", "tag", "seq2seq")
# what the columns of a header row are called (compared lowercased); a first line made of two of
# these is a header, not an example
HEADER_NAMES = frozenset({
    "text", "texts", "sentence", "sentences", "review", "document", "input", "inputs",
    "source", "src", "question", "name", "word", "words", "content", "comment", "chars",
    "label", "labels", "class", "category", "sentiment", "target", "targets", "tgt",
    "tag", "tags", "output", "outputs", "answer", "language", "polarity"})


class Examples(NamedTuple):
    texts: list  # the inputs (sources)
    targets: list  # a label (classify), a tag string (tag) or a target text (seq2seq)
    where: list  # "file:line" of each example, for messages


def _lines(path: Path, encoding: str):
    text = read_corpus(path, encoding)
    for no, line in enumerate(text.split("\n"), 1):
        if line.strip():
            yield no, line


def is_header(line: str) -> bool:
    """Whether a line is a header row: its first two tab-separated columns are column names."""
    cols = line.split("\t")
    return len(cols) >= 2 and all(c.strip().lower() in HEADER_NAMES for c in cols[:2])


def read_tsv(path: str | os.PathLike, kind: str, encoding: str = "utf-8",
             header: bool | None = None) -> Examples:
    """The examples of a TSV file of `kind` (see the module docstring); `header`: True skips the
    first line, False reads it as an example, None skips it if `is_header` says it is one."""
    path = Path(path)
    texts, targets, where = [], [], []
    first = True
    for no, line in _lines(path, encoding):
        if first:
            first = False
            if header or (header is None and is_header(line)):
                continue
        at = f"{path}:{no}"
        cols = line.split("\t")
        if len(cols) < 2:
            raise CorpusError(f"{at}: no tab; each line must be text<TAB>"
                              + {"classify": "label", "tag": "tags",
                                 "seq2seq": "target"}[kind])
        if kind != "seq2seq" and len(cols) > 2:
            raise CorpusError(f"{at}: {len(cols) - 1} tabs; each line must be text<TAB>"
                              + ("label" if kind == "classify" else "tags"))
        text, target = cols[0], cols[1]
        if not text:
            raise CorpusError(f"{at}: empty text before the tab")
        if not target:
            raise CorpusError(f"{at}: empty {'label' if kind == 'classify' else 'target'} "
                              f"after the tab" if kind != "tag" else f"{at}: empty tags")
        if kind == "tag" and len(target) != len(text):
            raise CorpusError(f"{at}: {len(text)} characters of text but {len(target)} tags; "
                              f"give one tag per character")
        texts.append(text)
        targets.append(target.strip() if kind == "classify" else target)
        where.append(at)
    if not texts:
        raise CorpusError(f"{path} holds no examples")
    return Examples(texts, targets, where)


def read_folder(path: str | os.PathLike, encoding: str = "utf-8") -> Examples:
    """A folder of `<label>.txt` files, one example a line: the label is the file's name."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix == ".txt" and p.is_file())
    if not files:
        raise CorpusError(f"{path} holds no <label>.txt files")
    texts, targets, where = [], [], []
    for f in files:
        for no, line in _lines(f, encoding):
            if "\t" in line:
                raise CorpusError(f"{f}:{no}: a tab in a one-example-a-line file")
            texts.append(line)
            targets.append(f.stem)
            where.append(f"{f}:{no}")
    return Examples(texts, targets, where)


def read(path: str | os.PathLike, kind: str, encoding: str = "utf-8",
         header: bool | None = None) -> Examples:
    """Examples of `kind` from a TSV file (`header`: see read_tsv), or (classify) a folder of
    <label>.txt files."""
    path = Path(path)
    if kind not in KINDS:
        raise CorpusError(f"unknown kind of examples {kind!r}")
    if not path.exists():
        raise CorpusError(f"file not found: {path}")
    if path.is_dir():
        if kind != "classify":
            raise CorpusError(f"{path} is a directory; give a TSV file of text<TAB>"
                              + ("tags" if kind == "tag" else "target") + " lines")
        return read_folder(path, encoding)
    return read_tsv(path, kind, encoding, header)


def require_classes(ex: Examples, kind: str, path) -> None:
    """CorpusError unless training examples of a classifier hold two labels at least, or a
    tagger's two tags: with one, the model is right every time and learns nothing."""
    if kind == "seq2seq":
        return
    seen = sorted({c for t in ex.targets for c in t}) if kind == "tag" else sorted(set(ex.targets))
    if len(seen) < 2:
        what = "tag" if kind == "tag" else "label"
        raise CorpusError(f"{path}: every example has the {what} {seen[0]!r}; a "
                          f"{'tagger' if kind == 'tag' else 'classifier'} needs two {what}s at "
                          f"least")


def split(texts: list, labels: list | None, val_frac: float, seed: int) -> tuple[list, list]:
    """(train indices, validation indices), both sorted: a seeded val_frac of the distinct texts,
    each with every example (copy) of it, so no text is on both sides. With `labels`, stratified:
    each distinct text counts under its most frequent label (the first met of a tie), and every
    label keeps its share of the texts, rounded (a label with one distinct text stays in
    training); without, a share of all the distinct texts. Every labelled family splits here."""
    rng = np.random.default_rng([seed, 0x5EED])
    copies: dict = {}  # text -> its example indices, in order
    for i, t in enumerate(texts):
        copies.setdefault(t, []).append(i)
    groups: dict = {}  # stratum -> its distinct texts, first-seen order
    for t, idx in copies.items():
        if labels is None:
            key = 0
        elif len(idx) == 1:
            key = labels[idx[0]]
        else:
            key = Counter(labels[i] for i in idx).most_common(1)[0][0]
        groups.setdefault(key, []).append(t)
    val = []
    for key in sorted(groups, key=str):
        held = groups[key]
        k = round(len(held) * val_frac) if len(held) > 1 else 0
        for j in rng.permutation(len(held))[:k]:
            val.extend(copies[held[j]])
    return _parts(len(texts), val, f"{len(copies)} distinct texts", val_frac)


def subset(ex: Examples, indices) -> Examples:
    """The examples `indices` of `ex`, in that order."""
    return Examples(*([col[i] for i in indices] for col in ex))


def split_examples(ex: Examples, val_frac: float, seed: int, stratify: bool,
                   saved=None, by_source: bool = False) -> tuple[Examples, Examples]:
    """(training, validation) examples: `split` of ex's texts, by its targets when `stratify`.
    `saved`, the checkpoint a resumed run comes from: a run saved before the split by distinct
    text (no SPLIT key in its meta) is split as it was then (split_by_line; `by_source` for an
    encoder-decoder's pairs), so it resumes on the same validation part."""
    if saved is not None and SPLIT not in saved.meta:
        if by_source:
            distinct = sorted(set(ex.texts))
            _, va = split_by_line(distinct, val_frac, seed, stratify=False)
            held = {distinct[i] for i in va}
            tr = [i for i, t in enumerate(ex.texts) if t not in held]
            va = [i for i, t in enumerate(ex.texts) if t in held]
        else:
            tr, va = split_by_line(ex.targets, val_frac, seed, stratify)
    else:
        tr, va = split(ex.texts, ex.targets if stratify else None, val_frac, seed)
    return subset(ex, tr), subset(ex, va)


# A labelled run's checkpoint says how its validation part was split off: {SPLIT: "text"} beside
# its data fingerprint. Runs saved before the split by distinct text lack the key; they resume
# on the split they were trained with (split_examples(saved=...)).
SPLIT = "split"


def split_fingerprint(train_ex: Examples, val_ex: Examples, saved=None) -> dict:
    """The data fingerprint a labelled run saves and --resume compares (with SPLIT unless the
    resumed run predates it)."""
    fp = {"data_fingerprint": fingerprint(train_ex) + fingerprint(val_ex)}
    if saved is None or SPLIT in saved.meta:
        fp[SPLIT] = "text"
    return fp


def split_by_line(labels: list, val_frac: float, seed: int, stratify: bool = True):
    """The split of runs saved before the split by distinct text, kept so they resume exactly:
    (train indices, validation indices), a seeded val_frac of the examples (copies of a text may
    fall on both sides), per label when `stratify`. Both sorted. New runs use `split`."""
    rng = np.random.default_rng([seed, 0x5EED])
    groups = {}
    for i, y in enumerate(labels if stratify else [0] * len(labels)):
        groups.setdefault(y, []).append(i)
    val = []
    for key in sorted(groups, key=str):
        idx = np.array(groups[key])
        k = round(len(idx) * val_frac) if len(idx) > 1 else 0
        val.extend(rng.permutation(idx)[:k].tolist())
    return _parts(len(labels), val, f"{len(labels)} examples", val_frac)


def _parts(n: int, val: list, what: str, val_frac: float) -> tuple[list, list]:
    """(training indices, sorted validation indices) of n examples, `val` drawn; CorpusError
    naming `what` when either part is empty."""
    val_set = set(val)
    train = [i for i in range(n) if i not in val_set]
    if not train or not val:
        raise CorpusError(f"{what} are too few to split off a validation part of {val_frac:g}")
    return train, sorted(val)


def vocab_with_unknown(texts) -> Vocab:
    """UNKNOWN, then the sorted distinct characters of `texts`."""
    chars = set()
    for t in texts:
        chars.update(t)
    chars.discard(UNKNOWN)
    return Vocab([UNKNOWN, *sorted(chars)])


def encode(vocab: Vocab, texts) -> tuple[list, int]:
    """Each text's ids, any character outside the vocabulary as UNKNOWN's id (0), and how many
    such characters there were."""
    out, unknown = [], 0
    for t in texts:
        ids, n = vocab.encode_lenient(t, UNKNOWN)
        out.append(ids)
        unknown += n
    return out, unknown


def pad(seqs, dtype=np.int64) -> tuple[np.ndarray, np.ndarray]:
    """(ids (N, T) with zeros after each sequence, lengths (N,)), T the longest length."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    ids = np.zeros((len(seqs), int(lengths.max())), dtype=dtype)
    for n, s in enumerate(seqs):
        ids[n, : len(s)] = s
    return ids, lengths


def fingerprint(ex: Examples) -> list:
    """[examples, crc32 of every text and target]: what --resume checks is the same data."""
    crc = 0
    for a, b in zip(ex.texts, ex.targets):
        crc = zlib.crc32(f"{a}\t{b}\n".encode("utf-8", "surrogatepass"), crc)
    return [len(ex.texts), crc]


def inverse_frequency(labels: np.ndarray, K: int) -> np.ndarray:
    """(K,) class weights n / (K * count_c), 0 for a class without examples."""
    counts = np.bincount(labels, minlength=K).astype(np.float64)
    return np.where(counts > 0, len(labels) / (K * np.maximum(counts, 1)), 0.0)


class Buckets:
    """Batches of examples of nearly one length (see the module docstring). `make(indices)`
    builds the batch tuple of the examples `indices`."""

    def __init__(self, lengths, batch: int, seed: int, make):
        self.lengths, self.batch, self.seed, self.make = np.asarray(lengths), batch, seed, make
        self._epoch, self._groups = None, None

    @property
    def chunks(self) -> int:
        """Batches per epoch."""
        return -(-len(self.lengths) // self.batch)

    def groups(self, epoch: int) -> list:
        """The batches of `epoch`, in the order they are trained: the examples shuffled by
        (seed, epoch), sorted by length (stable, so equal lengths stay shuffled: a batch mixes
        classes), cut into batches, and the batches shuffled."""
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, epoch])
            shuffled = rng.permutation(len(self.lengths))
            order = shuffled[np.argsort(self.lengths[shuffled], kind="stable")]
            groups = [order[i : i + self.batch] for i in range(0, len(order), self.batch)]
            self._epoch, self._groups = epoch, [groups[j] for j in rng.permutation(len(groups))]
        return self._groups

    def chunk(self, c: int, epoch: int = 0):
        return self.make(self.groups(epoch)[c])


def padding_fraction(lengths, groups) -> float:
    """The share of a batch's cells that are padding, over all batches."""
    lengths = np.asarray(lengths)
    real = sum(int(lengths[g].sum()) for g in groups)
    cells = sum(len(g) * int(lengths[g].max()) for g in groups)
    return 1 - real / cells
