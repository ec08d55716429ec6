"""Corpus reading, encoding, the train/validation split and truncated-BPTT batching.

Memory: the text is decoded once, its vocabulary found, and it is encoded in pieces straight into
one array of the smallest unsigned type that holds the vocabulary (uint8 for up to 256
characters), after which the decoded string is dropped. Nothing else is ever a copy of the corpus:
no Python list of characters, no one-hot array; batches are views into the encoded array. Peak
memory while loading is about the file's bytes, plus the decoded string (twice while Windows
line endings are normalised), plus the ids.

Split: the last `val_frac` of the ids, contiguous, is the validation split; the rest is training.

Batching (N streams, chunks of T): the training split is cut into N contiguous streams of equal
length L = C*T, where C = (len(train) - 1) // N // T is the number of chunks per epoch:

    inputs  (N, L) = train[0 : N*L].reshape(N, L)          stream i starts at character i*L
    targets (N, L) = train[1 : N*L + 1].reshape(N, L)      the inputs shifted by one character

Chunk c is `inputs[:, c*T:(c+1)*T]` with its targets. Because stream i of chunk c+1 continues
exactly where stream i of chunk c stopped, the trainer carries the hidden state from one chunk to
the next, and resets it to zero when the epoch wraps (the streams jump back to their starts). The
last few characters that do not fill a whole chunk in every stream (fewer than N*T + 1) are not
trained on. A corpus too short for one chunk is an error naming the minimum size (no silent
shrinking of --seq).
"""

from __future__ import annotations

import atexit
import codecs
import os
from contextlib import ExitStack
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import CorpusError
from .encodings import encoding_hint, utf16_without_mark
from .vocab import Vocab

DEFAULT_CORPUS = "tinyshakespeare.txt"  # the bundled corpus `charrnn train` uses by default
PIECE = 1 << 20  # characters encoded per Vocab.encode call (bounds its temporaries to ~13 MB)


_extracted = ExitStack()  # files of a zipped package, extracted for the life of the process
atexit.register(_extracted.close)


def bundled(name: str = DEFAULT_CORPUS) -> Path:
    """The bundled corpus file `name` (e.g. "tinyshakespeare.txt", "names/<file>") as a path on
    disk.

    The bundled corpora are the repository's corpora/ folder (see its README.md). They ship as
    package data, charrnn/data/corpora: in the repository a symlink to ../../corpora, in a wheel
    the files themselves. Found through importlib.resources, so a checkout, an editable install
    and an ordinary one all work; from a zipped package the file is extracted to a temporary one
    that lasts as long as the process. Raises CorpusError, naming what is bundled, if there is no
    such file.
    """
    root = resources.files(__package__) / "corpora"
    res = root
    for part in name.split("/"):
        res = res / part
    if not res.is_file():
        have = ", ".join(_files(root)) if root.is_dir() else "nothing (the folder is missing)"
        raise CorpusError(f"no bundled corpus {name!r}; bundled: {have}")
    if isinstance(res, Path):
        return res.resolve()
    return _extracted.enter_context(resources.as_file(res))


def _files(folder, prefix: str = "") -> list[str]:
    """The names of the files under a resources folder, sorted, "sub/file" below it."""
    out = []
    for item in sorted(folder.iterdir(), key=lambda i: i.name):
        if item.is_dir():
            out += _files(item, f"{prefix}{item.name}/")
        elif item.name != "README.md":
            out.append(prefix + item.name)
    return out


def _default_path() -> Path:
    try:
        return bundled()
    except CorpusError:  # a broken install: the path it should have, for callers' is_file()
        return Path(__file__).resolve().parent / "corpora" / DEFAULT_CORPUS


# The default corpus's path (kept for callers of the constant; new code calls bundled()).
BUNDLED = _default_path()


def read_corpus(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    """The text of `path`, decoded strictly, with line endings and byte-order marks normalised.

    Every U+FEFF (the byte-order mark at the start, and any a `cat` of several files left inside)
    is dropped and every "\\r\\n" becomes "\\n" (a lone "\\r" is kept), so a model trained on a
    Windows file never samples a mark or a carriage return; `charrnn eval` reads text the same way.
    Raises CorpusError for a missing file, a directory, an unknown encoding, bytes that are
    invalid in `encoding` (naming the byte offset), a NUL character (a binary file, or UTF-16
    read as UTF-8; naming its byte offset), and a file that is empty or only whitespace.
    """
    path = Path(path)
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise CorpusError(f"unknown text encoding {encoding!r}") from None
    if not path.exists():
        raise CorpusError(f"corpus not found: {path}")
    if path.is_dir():
        raise CorpusError(f"{path} is a directory; give a text file as the corpus")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CorpusError(f"cannot read corpus {path}: {e.strerror or e}") from None
    try:
        text = raw.decode(encoding)
    except LookupError:  # codecs such as base64 or rot13 exist but do not decode bytes to text
        raise CorpusError(f"{encoding!r} is not a text encoding") from None
    except UnicodeDecodeError as e:
        bad = raw[e.start : e.start + 4].hex(" ")
        raise CorpusError(f"{path}: not valid {encoding} at byte offset {e.start} (bytes {bad}); "
                          f"{encoding_hint(raw, encoding)}") from None
    except UnicodeError as e:  # codecs such as 'undefined' or 'punycode' fail otherwise
        raise CorpusError(f"{path}: cannot be decoded as {encoding} ({e})") from None
    del raw
    try:  # every character must be one a checkpoint can store (ASCII text, most, needs no look)
        if not text.isascii():
            text.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate, e.g. from unicode_escape or utf-7
        raise CorpusError(f"{path}: decoded as {encoding} it holds a lone surrogate "
                          f"(U+{ord(text[e.start]):04X}), which is not a character") from None
    nul = text.find("\0")
    if nul >= 0:  # valid UTF-8, but no text file holds NUL; UTF-16/32 read as UTF-8 does
        at = len(text[:nul].encode(encoding, "replace"))
        with open(path, "rb") as f:
            wide = utf16_without_mark(f.read(4096))
        if wide:
            raise CorpusError(f"{path}: a NUL character at byte offset {at}; it looks like "
                              f"UTF-16 without a byte-order mark: give --encoding {wide}")
        raise CorpusError(
            f"{path} looks like a binary file (a NUL character at byte offset {at}); give a text "
            f"file, or its encoding with --encoding if it is one, e.g. --encoding utf-16"
        )
    text = normalise(text)
    if not text:
        raise CorpusError(f"corpus {path} is empty")
    if text.isspace():
        raise CorpusError(f"corpus {path} holds only whitespace")
    return text


def normalise(text: str) -> str:
    """Text as charrnn reads it everywhere (corpus, `eval`, a prime file): every U+FEFF dropped
    and every "\\r\\n" made "\\n"."""
    if "\ufeff" in text:  # byte-order marks: the leading one, and any left by joining files
        text = text.replace("\ufeff", "")
    if "\r\n" in text:  # Windows line endings: the model learns, and samples, plain \n
        text = text.replace("\r\n", "\n")
    return text


def vocab_of(text: str) -> Vocab:
    """The sorted distinct characters of `text`, gathered piece by piece."""
    chars: set[str] = set()
    for lo in range(0, len(text), PIECE):
        chars.update(text[lo : lo + PIECE])
    return Vocab(sorted(chars))


def encode(text: str, vocab: Vocab) -> np.ndarray:
    """`text` as ids in the vocabulary's smallest dtype, shape (len(text),)."""
    ids = np.empty(len(text), dtype=vocab.dtype)
    for lo in range(0, len(text), PIECE):
        piece = text[lo : lo + PIECE]
        ids[lo : lo + len(piece)] = vocab.encode(piece)
    return ids


def split(ids: np.ndarray, val_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) views: the last round(len * val_frac) ids are validation (at least 2)."""
    n_val = max(2, round(len(ids) * val_frac))
    if n_val >= len(ids):
        raise CorpusError(f"corpus of {len(ids)} characters is too short to split off a "
                          f"validation part of {val_frac:g}")
    return ids[:-n_val], ids[-n_val:]


class Corpus(NamedTuple):
    path: str
    vocab: Vocab
    train: np.ndarray  # (n_train,) ids, a view
    val: np.ndarray  # (n_val,) ids, a view


def load(path: str | os.PathLike, val_frac: float, encoding: str = "utf-8",
         vocab: Vocab | None = None) -> Corpus:
    """Read, encode and split a corpus. With `vocab` given (resuming), the text must fit it."""
    text = read_corpus(path, encoding)
    vocab = vocab or vocab_of(text)
    ids = encode(text, vocab)
    del text
    train, val = split(ids, val_frac)
    return Corpus(str(path), vocab, train, val)


class Batches(NamedTuple):
    """Training chunks as views; see the module docstring for the layout."""

    inputs: np.ndarray  # (N, C*T)
    targets: np.ndarray  # (N, C*T)
    seq: int  # T

    @property
    def chunks(self) -> int:
        """Chunks per epoch, C."""
        return self.inputs.shape[1] // self.seq

    def chunk(self, c: int, epoch: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, targets) of chunk c, each (N, T); every epoch has the same chunks."""
        lo = c * self.seq
        return self.inputs[:, lo : lo + self.seq], self.targets[:, lo : lo + self.seq]


def batches(train: np.ndarray, batch: int, seq: int) -> Batches:
    """Cut the training split into `batch` contiguous streams of whole chunks of `seq`."""
    chunks = (len(train) - 1) // batch // seq
    if chunks < 1:
        need = batch * seq + 1
        raise CorpusError(
            f"the training part of the corpus has {len(train)} characters, too few for one "
            f"chunk of --batch {batch} x --seq {seq} (needs {need}); use a smaller --batch or "
            f"--seq, or a longer text"
        )
    L = chunks * seq
    return Batches(train[: batch * L].reshape(batch, L), train[1 : batch * L + 1].reshape(batch, L),
                   seq)
