"""charrnn.data.labelled: reading labelled examples, the split, the unknown symbol, batching."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from charrnn.data import labelled as L
from charrnn.data.vocab import Vocab
from charrnn.errors import CorpusError

NAMES = Path(__file__).resolve().parents[2] / "corpora" / "names"


def write(tmp_path, text, name="d.tsv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("kind, text, message", [
    ("classify", "abc\tx\nno tab here\n", "d.tsv:2: no tab"),
    ("classify", "abc\tx\n\ty\n", "d.tsv:2: empty text"),
    ("classify", "abc\t\n", "d.tsv:1: empty label"),
    ("classify", "a\tb\tc\n", "d.tsv:1: 2 tabs"),
    ("tag", "abc\tBI\n", "d.tsv:1: 3 characters of text but 2 tags"),
    ("tag", "abc\tBII\nxy\n", "d.tsv:2: no tab"),
    ("seq2seq", "abc\n", "d.tsv:1: no tab"),
    ("seq2seq", "\tabc\n", "d.tsv:1: empty text"),
])
def test_a_malformed_line_names_the_file_and_line(tmp_path, kind, text, message):
    with pytest.raises(CorpusError, match=message):
        L.read(write(tmp_path, text), kind)


def test_readers_take_what_they_should(tmp_path):
    ex = L.read(write(tmp_path, "a b\tx\n\n ok\ty \nabc\tx\n"), "classify")
    assert ex.texts == ["a b", " ok", "abc"] and ex.targets == ["x", "y", "x"]
    assert ex.where[1].endswith("d.tsv:3")  # the blank line is skipped, numbering is the file's
    ex = L.read(write(tmp_path, "je suis\tI am\tCC-BY someone\n"), "seq2seq")
    assert ex.texts == ["je suis"] and ex.targets == ["I am"]  # further columns ignored
    ex = L.read(write(tmp_path, "ab cd\tBIBBI\r\n"), "tag")  # CRLF normalised as for text
    assert ex.targets == ["BIBBI"]


@pytest.mark.parametrize("kind, head, rows", [
    ("classify", "text\tlabel", ["good film\tpos", "bad book\tneg"]),
    ("classify", "Sentence\tSentiment", ["good film\tpos", "bad book\tneg"]),
    ("tag", "text\ttags", ["abc\tBIB", "de\tBI"]),  # the header is 4 and 4: a valid row
    ("seq2seq", "source\ttarget", ["abc\tcba", "de\ted"]),
])
def test_a_header_row_is_skipped_not_read_as_an_example(tmp_path, kind, head, rows):
    p = tmp_path / "d.tsv"
    p.write_text("\n".join([head, *rows]) + "\n")
    ex = L.read(p, kind)
    assert ex.texts == [r.split("\t")[0] for r in rows]
    assert ex.where[0].endswith(":2")  # line numbers still count the header
    assert len(L.read(p, kind, header=False).texts) == len(rows) + 1
    plain = tmp_path / "plain.tsv"
    plain.write_text("\n".join(rows) + "\n")
    assert L.read(plain, kind).texts == ex.texts  # no header: nothing skipped
    assert L.read(plain, kind, header=True).texts == ex.texts[1:]  # told there is one


def test_a_first_line_that_only_looks_like_words_is_an_example(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_text("the text\tlabel\ngood\tpos\n")  # 'the text' is no column name
    assert L.read(p, "classify").texts == ["the text", "good"]


@pytest.mark.parametrize("kind, rows, message", [
    ("classify", ["good\tpos", "fine\tpos"],
     "every example has the label 'pos'; a classifier needs two labels at least"),
    ("tag", ["ab\tBB", "c\tB"], "every example has the tag 'B'; a tagger needs two tags"),
])
def test_training_data_of_one_class_is_refused_in_one_line(tmp_path, kind, rows, message):
    from tests.helpers import invoke, one_line_error

    p = tmp_path / "one.tsv"
    p.write_text("\n".join(rows * 20) + "\n")
    with pytest.raises(CorpusError, match=message):
        L.require_classes(L.read(p, kind), kind, p)
    one_line_error(invoke("train", "--task", kind, p, "--out", tmp_path / "r", "--steps", 1,
                          "--hidden", 4, "-q"), message, code=1)
    L.require_classes(L.read(p, "seq2seq"), "seq2seq", p)  # a seq2seq target is no class


def test_a_folder_of_label_files(tmp_path):
    (tmp_path / "Greek.txt").write_text("Papadopoulos\nNikolaou\n")
    (tmp_path / "Irish.txt").write_text("O'Brien\n")
    ex = L.read(tmp_path, "classify")
    assert Counter(ex.targets) == {"Greek": 2, "Irish": 1}
    with pytest.raises(CorpusError, match="directory"):
        L.read(tmp_path, "tag")
    with pytest.raises(CorpusError, match="file not found"):
        L.read(tmp_path / "missing.tsv", "classify")


def test_the_shipped_names_are_18_languages_and_20050_names():
    ex = L.read(NAMES, "classify")
    counts = Counter(ex.targets)
    assert len(counts) == 18 and len(ex.texts) == 20050
    assert counts["Russian"] == 9384 and counts["Vietnamese"] == 73


def test_unknown_characters_map_to_the_reserved_symbol_and_are_counted():
    v = L.vocab_with_unknown(["abc", "cab"])
    assert v.chars[0] == L.UNKNOWN and len(v) == 4
    ids, n = L.encode(v, ["abz", "zzé"])
    assert n == 4 and ids[0].tolist() == [1, 2, 0] and ids[1].tolist() == [0, 0, 0]
    with pytest.raises(Exception, match="unknown symbol"):
        Vocab("ab").encode_lenient("abc", L.UNKNOWN)


def test_buckets_take_every_example_once_per_epoch_and_repeat_exactly(rng):
    lengths = rng.integers(1, 20, size=103)
    seen = []
    b = L.Buckets(lengths, 10, seed=3, make=lambda idx: np.array(idx))
    assert b.chunks == 11
    for epoch in (0, 1):
        got = np.concatenate([b.chunk(c, epoch) for c in range(b.chunks)])
        assert sorted(got.tolist()) == list(range(103))
        seen.append(got)
    assert not np.array_equal(seen[0], seen[1])  # a new order every epoch
    again = L.Buckets(lengths, 10, seed=3, make=lambda idx: np.array(idx))
    np.testing.assert_array_equal(again.chunk(4, 1), b.chunk(4, 1))  # a resumed run's batch


def test_buckets_spend_little_on_padding():
    ex = L.read(NAMES, "classify")
    lengths = np.array([len(t) for t in ex.texts])
    bucketed = L.Buckets(lengths, 64, seed=0, make=None).groups(0)
    shuffled = np.array_split(np.random.default_rng(0).permutation(len(lengths)),
                              len(bucketed))
    assert L.padding_fraction(lengths, bucketed) < 0.02
    assert L.padding_fraction(lengths, shuffled) > 0.3


def test_pad():
    ids, lengths = L.pad([np.array([3, 4]), np.array([5]), np.array([6, 7, 8])])
    assert ids.tolist() == [[3, 4, 0], [5, 0, 0], [6, 7, 8]] and lengths.tolist() == [2, 1, 3]
