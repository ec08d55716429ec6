import json

import numpy as np
import pytest

from charrnn.data.vocab import Vocab
from charrnn.errors import VocabularyError


def test_vocab_is_sorted_code_points_and_deterministic():
    v = Vocab.from_text("hello, wörld\n")
    assert v.chars == tuple(sorted(set("hello, wörld\n")))
    assert Vocab.from_text("dlrow ,öllhe\n") == v  # order of the text does not matter


def test_encode_decode_round_trip_and_smallest_dtype():
    text = "To be, or not to be — ça? 日本語 🙂"
    v = Vocab.from_text(text)
    ids = v.encode(text)
    assert ids.dtype == np.uint8
    assert v.decode(ids) == text
    assert [v.chars[i] for i in ids] == list(text)  # ids index the ordered vocabulary
    assert Vocab([chr(0x4E00 + i) for i in range(300)]).dtype == np.uint16


def test_unknown_characters_are_named():
    v = Vocab.from_text("abc")
    with pytest.raises(VocabularyError) as e:
        v.encode("abXcZX")
    assert "'X'" in str(e.value) and "'Z'" in str(e.value)
    with pytest.raises(VocabularyError, match="'é'"):
        v.encode("é")  # a code point above the table's range


def test_one_hot():
    v = Vocab.from_text("abc")
    oh = v.one_hot(v.encode("cab"))
    assert oh.shape == (3, 3)
    np.testing.assert_array_equal(oh, [[0, 0, 1], [1, 0, 0], [0, 1, 0]])


def test_json_round_trip():
    v = Vocab.from_text("xyz\n\"'\\é")
    s = v.to_json()
    assert json.loads(s) == list(v.chars)
    assert Vocab.from_json(s) == v


@pytest.mark.parametrize("bad", ["[\"ab\"]", "{}", "[\"a\", \"a\"]", "[]", "not json"])
def test_malformed_vocabulary_json(bad):
    with pytest.raises(VocabularyError):
        Vocab.from_json(bad)


from hypothesis import given
from hypothesis import strategies as st


@given(st.text(min_size=1))
def test_round_trip_arbitrary_unicode(text):
    v = Vocab.from_text(text)
    assert v.decode(v.encode(text)) == text
    assert Vocab.from_json(v.to_json()) == v
    assert len(v) == len(set(text))
