"""Corpora that are not plain UTF-8 prose: blank, binary, UTF-16 and UTF-32, odd encodings,
BOMs and CRLF, tens of thousands of distinct characters, one enormous line; and the batching
property that every character is a target once. Bad ones get a one-line answer from `train`."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charrnn import checkpoint as C
from charrnn.data import text as D
from charrnn.errors import CorpusError
from charrnn.infer.sample import SampleConfig, generate
from charrnn.train.trainer import train
from tests.helpers import AUSTEN, TINY_QUIET, invoke, one_line_error, tiny


def test_whitespace_only_corpus(tmp_path):
    (tmp_path / "blank.txt").write_text(" \n\t\r\n  \n")
    one_line_error(invoke("train", tmp_path / "blank.txt", "--out", tmp_path / "r", *TINY_QUIET),
                   "blank.txt", "only whitespace")


def test_binary_file_with_nul_bytes_names_the_offset(tmp_path):
    raw = "héllo wörld ".encode() * 3 + b"\x00\x01\x02" + b"more" * 100  # valid UTF-8
    nul = raw.index(0)
    assert nul == 42  # 3 x 14 bytes: the offset counts bytes, not characters
    (tmp_path / "data.bin").write_bytes(raw)
    one_line_error(invoke("train", tmp_path / "data.bin", "--out", tmp_path / "r", *TINY_QUIET),
                   "data.bin", "binary file", f"byte offset {nul}", "--encoding")
    assert not (tmp_path / "r").exists()  # the failed run leaves no empty directory behind
    (tmp_path / "mine").mkdir()  # ... but one the user made stays
    one_line_error(invoke("train", tmp_path / "data.bin", "--out", tmp_path / "mine", *TINY_QUIET),
                   "binary file")
    assert (tmp_path / "mine").is_dir()


@pytest.mark.parametrize("codec, message", [
    ("utf-16", "not valid utf-8 at byte offset 0"),  # its mark ff fe is invalid UTF-8
    ("utf-16-le", "a NUL character at byte offset 1; it looks like UTF-16"),  # 'I', NUL, ...
    ("utf-32", "not valid utf-8 at byte offset 0"),
])
def test_utf16_and_32_read_as_utf8_are_caught_and_train_with_their_encoding(tmp_path, codec,
                                                                            message):
    p = tmp_path / "wide.txt"
    p.write_bytes(AUSTEN.encode(codec))
    family = codec[:6]
    one_line_error(invoke("train", p, "--out", tmp_path / "r", *TINY_QUIET), message,
                   f"--encoding {family}" if codec != "utf-16-le" else "--encoding utf-16")
    assert D.read_corpus(p, codec) == AUSTEN
    r = invoke("train", p, "--encoding", codec, "--out", tmp_path / "r", *TINY_QUIET, "--steps", 2)
    assert r.exit_code == 0, r.stderr


ZH = "我们今天去北京看看天安门，这是一个很好的地方。他说：“你好吗？”我说：“很好。”\n" * 30
TW = "我們今天去台北看看，這是一個很好的地方。他說：「你好嗎？」\n" * 30
JA = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。\n" * 30
FR = "Les élèves sont allés à l'école; ça a été très agréable, n'est-ce pas?\n" * 30


@pytest.mark.parametrize("text, codec, what", [
    (ZH, "gbk", "Chinese"), (ZH, "gb18030", "Chinese"), (TW, "big5", "Big5"),
    (JA, "shift_jis", "Japanese"), (FR, "cp1252", "Western European"),
    (AUSTEN, "utf-16-be", "UTF-16"), (ZH, "utf-16", "byte-order mark"),
])
def test_the_encoding_hint_reads_the_bytes_and_its_suggestion_decodes_the_text(
        tmp_path, text, codec, what):
    """The suggested --encoding, taken from the message, gives back the text exactly; latin-1
    (which decodes anything, as garble) is never the suggestion for these."""
    import re

    p = tmp_path / "t.txt"
    p.write_bytes(text.encode(codec))
    with pytest.raises(CorpusError) as e:
        D.read_corpus(p)
    message = str(e.value)
    assert what in message and "latin-1" not in message, message
    (suggested,) = re.findall(r"give --encoding (\S+)$", message)
    assert D.read_corpus(p, suggested) == text, (suggested, message)


@pytest.mark.parametrize("damage, needle", [
    (lambda b: b[:-1], "cut off in the middle of its last character"),
    (lambda b: b[:40] + b[41:], "the rest is valid UTF-8, with 1 damaged character"),
    (lambda b: b[:40] + b[41:90] + b[92:], "with 2 damaged characters"),
])
def test_utf8_cut_mid_character_is_named_not_sent_to_another_encoding(tmp_path, damage, needle):
    p = tmp_path / "cut.txt"
    p.write_bytes(damage((ZH + "好").encode()))
    with pytest.raises(CorpusError, match="not valid utf-8") as e:
        D.read_corpus(p)
    assert needle in str(e.value) and "--encoding" not in str(e.value), str(e.value)


def test_a_utf8_file_read_with_another_encoding_is_told_it_is_utf8(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes(JA.encode())
    with pytest.raises(CorpusError, match="it is valid UTF-8: give --encoding utf-8"):
        D.read_corpus(p, "ascii")


@pytest.mark.parametrize("encoding, message", [("base64", "'base64' is not a text encoding"),
                                               ("klingon", "unknown text encoding 'klingon'")])
def test_encodings_that_cannot_read_text(corpus, tmp_path, encoding, message):
    one_line_error(invoke("train", corpus, "--encoding", encoding, "--out", tmp_path / "r",
                          *TINY_QUIET), message)
    one_line_error(invoke("eval", corpus, "--encoding", encoding, "-c", tmp_path / "x.npz"),
                   message)


@pytest.mark.parametrize("encoding, text, needle", [
    ("undefined", "abc", "cannot be decoded as undefined"),
    ("unicode_escape", "abc \\ud800 def", "lone surrogate (U+D800)"),
])
def test_encodings_that_fail_oddly_are_one_line_errors(tmp_path, encoding, text, needle):
    (tmp_path / "c.txt").write_text(text)
    one_line_error(invoke("train", tmp_path / "c.txt", "--out", tmp_path / "r", *TINY_QUIET,
                          "--encoding", encoding), needle)
    one_line_error(invoke("eval", tmp_path / "c.txt", "--encoding", encoding), needle)


def test_bom_and_windows_line_endings_train_and_never_reach_samples(tmp_path):
    """Decision: every U+FEFF is dropped and \\r\\n becomes \\n (a lone \\r stays)."""
    windows = "\ufeff" + AUSTEN.replace("\n", "\r\n") + "\ufeffjoined by cat\r\n"
    p = tmp_path / "win.txt"
    p.write_bytes(windows.encode("utf-8"))
    expected = AUSTEN + "joined by cat\n"  # written out by hand
    assert D.read_corpus(p) == expected
    (tmp_path / "cr.txt").write_bytes(b"bare\rreturn\r\n")
    assert D.read_corpus(tmp_path / "cr.txt") == "bare\rreturn\n"
    res = train(tiny(p, tmp_path / "r", steps=30, eval_every=10))
    assert res.step == 30 and math.isfinite(res.best_val_bpc)
    ck = C.load(tmp_path / "r" / "best.npz")
    assert ck.vocab.chars == tuple(sorted(set(expected)))
    assert "\ufeff" not in ck.vocab and "\r" not in ck.vocab  # so no sample can hold them
    text = "".join(generate(ck.params, ck.model, ck.vocab, "It is", SampleConfig(length=3000),
                            np.random.default_rng(0)))
    assert "\ufeff" not in text and "\r" not in text and len(text) == 3005
    r = invoke("sample", "-c", tmp_path / "r", "--length", 500, "--seed", 1)
    assert r.exit_code == 0 and len(r.stdout) == 500
    assert "\ufeff" not in r.stdout and "\r" not in r.stdout
    # eval reads the file the same way: its CRLF text scores like the LF text
    (tmp_path / "unix.txt").write_text(expected)
    a = invoke("eval", p, "-c", tmp_path / "r")
    b = invoke("eval", tmp_path / "unix.txt", "-c", tmp_path / "r")
    assert a.exit_code == 0 and a.stdout == b.stdout and "skipped" not in a.stdout


def test_tens_of_thousands_of_distinct_characters(tmp_path):
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 30000)]  # CJK and Hangul, no surrogates
    order = np.random.default_rng(0).permutation(len(chars) * 2) % len(chars)
    text = "".join(chars[i] for i in order)
    p = tmp_path / "cjk.txt"
    p.write_text(text, encoding="utf-8")
    corpus = D.load(p, 0.002)
    assert len(corpus.vocab) == 30000
    assert corpus.train.dtype == np.uint16 and corpus.train.base is corpus.val.base
    assert corpus.train.base.nbytes == 2 * len(text)  # one array of 2 bytes per character
    np.testing.assert_array_equal(corpus.train[:50], [chars.index(text[i]) for i in range(50)])
    res = train(tiny(p, tmp_path / "r", cell="rnn", hidden=4, batch=2, seq=4, steps=2,
                     val_frac=0.002, dtype="float32"))
    assert res.step == 2 and math.isfinite(res.best_val_bpc)
    ck = C.load(tmp_path / "r" / "best.npz")
    assert ck.model.vocab_size == 30000 and ck.params["Wy"].shape == (4, 30000)
    param_bytes = sum(a.nbytes for a in ck.params.values())  # 0.96 MB
    size = (tmp_path / "r" / "best.npz").stat().st_size  # params, adam's two moments, vocabulary
    assert size < 3 * param_bytes + 300_000, size
    r = invoke("sample", "-c", tmp_path / "r", "--length", 20, "--seed", 0, "--prime", text[:3])
    assert r.exit_code == 0 and len(r.stdout) == 23 and set(r.stdout) <= set(chars)


def test_more_than_65536_characters_use_uint32():
    text = "".join(chr(c) for c in range(0x10000, 0x10000 + 70000))
    vocab = D.vocab_of(text)
    ids = D.encode(text, vocab)
    assert ids.dtype == np.uint32 and ids[-1] == 69999 and vocab.decode(ids[-3:]) == text[-3:]


def test_a_single_enormous_line_trains(tmp_path):
    words = np.random.default_rng(0).choice(["the", "cat", "sat", "on", "a", "mat,"], 1_500_000)
    line = " ".join(words)[: 5_000_000]
    p = tmp_path / "line.txt"
    p.write_text(line)
    assert p.stat().st_size == 5_000_000 and "\n" not in line
    res = train(tiny(p, tmp_path / "r", steps=3, val_frac=0.001, batch=4, seq=16))
    assert res.step == 3 and math.isfinite(res.best_val_bpc)
    r = invoke("sample", "-c", tmp_path / "r", "--length", 100, "--seed", 0)  # no newline to
    assert r.exit_code == 0 and len(r.stdout) == 100  # start after: it starts after a space


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 3000), st.integers(1, 9), st.integers(1, 40))
def test_batching_sees_each_character_once_as_the_next_characters_target(n, batch, seq):
    train_ids = np.arange(n, dtype=np.uint32)  # each id is its own position
    if (n - 1) // batch // seq < 1:
        with pytest.raises(CorpusError, match=f"needs {batch * seq + 1}"):
            D.batches(train_ids, batch, seq)
        return
    b = D.batches(train_ids, batch, seq)
    seen = np.zeros(n, dtype=int)
    for c in range(b.chunks):
        x, y = b.chunk(c)
        assert x.shape == y.shape == (batch, seq)
        np.testing.assert_array_equal(y, x + 1)  # the target is the next character
        np.add.at(seen, y.reshape(-1), 1)
    used = batch * b.chunks * seq
    assert (seen[1 : used + 1] == 1).all() and seen[0] == 0 and (seen[used + 1 :] == 0).all()
    assert n - 1 - used < batch * seq  # only an incomplete chunk's worth is left out

