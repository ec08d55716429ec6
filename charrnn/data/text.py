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
from .vocab import Vocab

DEFAULT_CORPUS = "tinyshakespeare.txt"  # the bundled corpus `charrnn train` uses by default
PIECE = 1 << 20  # characters encoded per Vocab.encode call (bounds its temporaries to ~13 MB)
BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),  # UTF-32 LE first:
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))  # it starts ff fe too


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
            wide = _utf16_without_mark(f.read(4096))
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


# What each candidate encoding's text should look like once decoded: the share of its non-ASCII
# characters that are ones such text is made of. Decoding with the wrong one of these
# double-byte encodings mostly succeeds, but gives rare ideographs (GBK read as Big5 and back) or
# half-width katakana (GBK read as Shift-JIS), so the share tells them apart.
_COMMON_HAN = set(  # the most frequent ideographs of Chinese text, simplified and traditional
    "的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自之"
    "年过发后作里用道行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样"
    "理心她本前开但因只从想实日军者意无力它与长把机十民第公此已工使情明性知全三又关点正业外将"
    "两高间由问很最重并物手应战向头文体政美相见被利什二等产或新己制身果加西斯月话合回特代内信"
    "表化老给世位次度门任常先海通教儿原东声提立及比员解水名真论处走义各入几口认条平系气题活尔"
    "這們個來為說時會對從後裡於麼沒動現當還進樣點與機長見問開關經發國過學種實無萬東車門")


def _share(text: str, good) -> float:
    """The share of text's non-ASCII characters for which good(c) holds (0 without any)."""
    wide = [c for c in text if ord(c) > 127]
    return sum(map(good, wide)) / len(wide) if wide else 0.0


def _cjk_punct(c: str) -> bool:
    return "\u3000" <= c <= "\u303f" or "\uff01" <= c <= "\uff5e"


# encoding: (what the text is, does a decoded character look right, the largest share of
# non-ASCII characters such text has: a European language's accents are sparse, while Chinese
# read as Windows-1252 is accented letters throughout)
_LOOKS = {
    "gb18030": ("Chinese (GB18030/GBK)", lambda c: c in _COMMON_HAN or _cjk_punct(c), 1.0),
    "big5": ("traditional Chinese (Big5)", lambda c: c in _COMMON_HAN or _cjk_punct(c), 1.0),
    "shift_jis": ("Japanese (Shift-JIS)",
                  lambda c: "\u3040" <= c <= "\u30ff" or _cjk_punct(c), 1.0),  # kana
    "cp1252": ("Western European (Windows-1252)",
               lambda c: c.isalpha() or c in "€‘’“”–—…•°£§©®«»·×÷¿¡", 0.3),
}


def _utf16_without_mark(raw: bytes) -> str | None:
    """'utf-16-le' or 'utf-16-be' when NUL bytes sit at one parity only, as in mostly-Latin
    UTF-16 text without a byte-order mark; else None."""
    head = raw[:4096]
    if len(head) < 4:
        return None
    odd, even = head[1::2].count(0), head[0::2].count(0)
    if odd > len(head) // 8 and even == 0:
        return "utf-16-le"
    if even > len(head) // 8 and odd == 0:
        return "utf-16-be"
    return None


def encoding_hint(raw: bytes, tried: str) -> str:
    """What to tell someone whose file is not valid `tried`, judged by what its bytes look like:
    a byte-order mark; UTF-16 without one; UTF-8 that is damaged or cut off mid-character; or
    the encodings among GB18030, Big5, Shift-JIS and Windows-1252 under which the text reads as
    that language (each strictly decoded, and most of its non-ASCII characters ones such text is
    made of). Names several when unsure, and never suggests latin-1 for text that is not."""
    mark = next((name for bom, name in BOMS if raw.startswith(bom)), None)
    if mark:
        return f"it starts with a {mark.upper()} byte-order mark: give --encoding {mark}"
    wide = _utf16_without_mark(raw)
    if wide:
        return f"it looks like UTF-16 without a byte-order mark: give --encoding {wide}"
    if codecs.lookup(tried).name != "utf-8":
        try:
            raw.decode("utf-8")
            return "it is valid UTF-8: give --encoding utf-8"
        except UnicodeDecodeError:
            pass
    else:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            if e.reason == "unexpected end of data":  # the first error is at the very end
                return ("it is UTF-8 cut off in the middle of its last character (a truncated "
                        "copy?): remove the incomplete bytes at its end")
        repaired = raw.decode("utf-8", "replace")
        damaged = repaired.count("\ufffd")
        if _share(repaired, lambda c: c != "\ufffd") >= 0.9:
            return (f"the rest is valid UTF-8, with {max(damaged, 1)} damaged character"
                    f"{'s' if damaged > 1 else ''} (a file cut or joined mid-character?): repair "
                    f"the file rather than read it with another encoding")
    fits = []
    for name, (what, good, dense) in _LOOKS.items():
        try:
            text = raw.decode(name)
        except UnicodeDecodeError:
            continue
        share = _share(text, good)
        if share >= 0.5 and sum(ord(c) > 127 for c in text) <= dense * len(text):
            fits.append((share, name, what))
    fits.sort(key=lambda f: -f[0])
    if len(fits) == 1 or (fits and fits[0][0] - fits[1][0] > 0.3):
        return f"it reads as {fits[0][2]}: give --encoding {fits[0][1]}"
    if fits:
        return "it could be " + " or ".join(f"{what} (--encoding {name})"
                                           for _, name, what in fits)
    return ("give the file's encoding with --encoding (gb18030, big5, shift_jis, utf-16, "
            "cp1252 and latin-1 are common; `file -i` may know)")


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
