"""Reading, encoding, splitting and batching the corpus."""

import numpy as np
import pytest

from charrnn.data import text as D
from charrnn.errors import CorpusError


def test_utf8_bom_dropped_and_other_encodings(tmp_path):
    p = tmp_path / "a.txt"
    p.write_bytes(b"\xef\xbb\xbfh\xc3\xa9llo")
    assert D.read_corpus(p) == "héllo"
    p.write_bytes("héllo".encode("latin-1"))
    assert D.read_corpus(p, "latin-1") == "héllo"


def test_invalid_bytes_name_file_and_offset(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"hello\xffworld")
    with pytest.raises(CorpusError, match=r"bad\.txt.*byte offset 5.*--encoding"):
        D.read_corpus(p)


@pytest.mark.parametrize("content,match", [(b"", "empty"), (b" \n\t\n", "whitespace")])
def test_empty_and_blank(tmp_path, content, match):
    p = tmp_path / "x.txt"
    p.write_bytes(content)
    with pytest.raises(CorpusError, match=match):
        D.read_corpus(p)


def test_missing_directory_and_unknown_encoding(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        D.read_corpus(tmp_path / "nope.txt")
    with pytest.raises(CorpusError, match="directory"):
        D.read_corpus(tmp_path)
    (tmp_path / "a.txt").write_text("abc")
    with pytest.raises(CorpusError, match="unknown text encoding"):
        D.read_corpus(tmp_path / "a.txt", "no-such-codec")


def test_encode_in_pieces_smallest_dtype(monkeypatch):
    monkeypatch.setattr(D, "PIECE", 7)  # force several pieces
    text = "the cat sat on the mat, é!" * 5
    vocab = D.vocab_of(text)
    assert vocab.chars == tuple(sorted(set(text)))
    ids = D.encode(text, vocab)
    assert ids.dtype == np.uint8
    assert "".join(vocab.chars[i] for i in ids) == text


def test_split_is_the_contiguous_tail():
    ids = np.arange(100, dtype=np.uint8)
    train, val = D.split(ids, 0.1)
    np.testing.assert_array_equal(train, np.arange(90))
    np.testing.assert_array_equal(val, np.arange(90, 100))
    assert np.shares_memory(train, ids)  # views, not copies


def test_batches_are_contiguous_streams_with_targets_shifted():
    train = np.arange(1000, dtype=np.uint16)
    N, T = 3, 7
    b = D.batches(train, N, T)
    L = (999 // N // T) * T  # characters per stream
    assert b.chunks == L // T and b.inputs.shape == (N, L)
    for i in range(N):
        pieces = [b.chunk(c)[0][i] for c in range(b.chunks)]
        targets = [b.chunk(c)[1][i] for c in range(b.chunks)]
        stream = np.concatenate(pieces)
        np.testing.assert_array_equal(stream, np.arange(i * L, (i + 1) * L))  # no gaps
        np.testing.assert_array_equal(np.concatenate(targets), stream + 1)  # shifted by one
    assert np.shares_memory(b.inputs, train)


def test_too_short_for_one_chunk():
    with pytest.raises(CorpusError, match=r"needs 33.*smaller --batch or --seq"):
        D.batches(np.zeros(32, np.uint8), 4, 8)
    D.batches(np.zeros(33, np.uint8), 4, 8)  # exactly enough


def test_load_reuses_a_given_vocab(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("abcabcabcabc")
    c = D.load(p, 0.25)
    assert c.vocab.chars == ("a", "b", "c") and len(c.val) == 3 and len(c.train) == 9
