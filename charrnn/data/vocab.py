"""Vocabulary and one-hot encoding: characters are Unicode code points.

The vocabulary is the sorted set of code points of a text, so the same text always gives the same
ids. It is stored in checkpoints as an ordered JSON list of one-character strings; that order *is*
the meaning of every row of `Wx` and every column of `Wy`, so never re-sort a saved vocabulary.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import numpy as np

from ..errors import VocabularyError


def describe_chars(chars: Iterable[str], limit: int = 10) -> str:
    """'a', 'b' and 3 more: characters for an error message, at most `limit` of them shown."""
    chars = list(chars)
    shown = ", ".join(repr(c) for c in chars[:limit])
    more = f" and {len(chars) - limit} more" if len(chars) > limit else ""
    return shown + more


class Vocab:
    """An ordered, immutable set of characters with id lookups in both directions."""

    __slots__ = ("_index", "_table", "chars")

    def __init__(self, chars: Iterable[str]):
        chars = list(chars)
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1
               or "\ud800" <= c <= "\udfff"]  # a lone surrogate is no character: no text has it
        if bad:
            raise VocabularyError(f"vocabulary entries must be single characters: {describe_chars(bad)}")
        if len(set(chars)) != len(chars):
            raise VocabularyError("vocabulary has repeated characters")
        if not chars:
            raise VocabularyError("vocabulary is empty")
        self.chars: tuple[str, ...] = tuple(chars)
        self._index = {c: i for i, c in enumerate(self.chars)}
        # Code point -> id table for fast vectorised encoding; -1 marks "not in vocabulary".
        self._table = np.full(max(map(ord, self.chars)) + 1, -1, dtype=np.int64)
        self._table[[ord(c) for c in self.chars]] = np.arange(len(self.chars))

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        """The sorted distinct characters of `text`."""
        if not text:
            raise VocabularyError("cannot build a vocabulary from empty text")
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, char: object) -> bool:
        return char in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.chars == other.chars

    def __hash__(self) -> int:
        return hash(self.chars)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} characters)"

    @property
    def dtype(self) -> np.dtype:
        """The smallest unsigned integer type that holds every id."""
        return np.dtype(np.min_scalar_type(len(self) - 1))

    def unknown(self, text: str) -> list[str]:
        """Characters of `text` not in the vocabulary, each once, in order of appearance."""
        return list(dict.fromkeys(c for c in text if c not in self._index))

    def encode(self, text: str, dtype=None) -> np.ndarray:
        """Ids of `text` as a 1-D array of the smallest fitting integer type (or `dtype`).

        Raises VocabularyError naming every character not in the vocabulary.
        """
        codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
        inside = codes < len(self._table)
        ids = np.full(codes.shape, -1, dtype=np.int64)
        ids[inside] = self._table[codes[inside]]
        if (ids < 0).any():
            raise VocabularyError(
                f"text has characters not in the vocabulary: {describe_chars(self.unknown(text))}"
            )
        return ids.astype(dtype or self.dtype)

    def encode_lenient(self, text: str, unknown: str, dtype=None) -> tuple[np.ndarray, int]:
        """(ids, count): like encode, but every character outside the vocabulary becomes the id
        of `unknown` (which must be in it), and `count` says how many there were."""
        if unknown not in self._index:
            raise VocabularyError(f"the unknown symbol {unknown!r} is not in the vocabulary")
        codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
        inside = codes < len(self._table)
        ids = np.full(codes.shape, -1, dtype=np.int64)
        ids[inside] = self._table[codes[inside]]
        missing = ids < 0
        ids[missing] = self._index[unknown]
        return ids.astype(dtype or self.dtype), int(missing.sum())

    def decode(self, ids: Iterable[int]) -> str:
        """The text whose ids are `ids`."""
        chars = self.chars
        try:
            return "".join(chars[int(i)] for i in ids)
        except IndexError:
            raise VocabularyError(f"id out of range for a vocabulary of {len(self)}") from None

    def one_hot(self, ids: np.ndarray, dtype=np.float32) -> np.ndarray:
        """`ids` of shape S as one-hot vectors of shape S + (V,). Meant for teaching and tests;
        the model never builds one-hot arrays (a one-hot row times `Wx` is the row `Wx[id]`)."""
        ids = np.asarray(ids)
        out = np.zeros(ids.shape + (len(self),), dtype=dtype)
        np.put_along_axis(out, ids[..., None].astype(np.intp), 1, axis=-1)
        return out

    def to_json(self) -> str:
        return json.dumps(list(self.chars), ensure_ascii=False)

    @classmethod
    def from_json(cls, data: str) -> Vocab:
        try:
            chars = json.loads(data)
        except json.JSONDecodeError as e:
            raise VocabularyError(f"vocabulary is not valid JSON: {e}") from None
        if not isinstance(chars, list):
            raise VocabularyError("vocabulary JSON must be a list of characters")
        return cls(chars)
