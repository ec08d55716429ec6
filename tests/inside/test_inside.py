"""charrnn.inside.record: recordings against naive per-gate loops written here, correlations and
features against numbers computed here, a planted unit, the errors."""

import re

import numpy as np
import pytest

from charrnn.checkpoint import Checkpoint
from charrnn.data import labelled as Lb
from charrnn.data.vocab import Vocab
from charrnn.errors import ConfigError, CorpusError
from charrnn.inside import record as I
from charrnn.models import classify, lm, seq2seq, tag
from tests.helpers import assert_close

TEXT = 'He said "hi (a [b] {c}) 42" twice.\n"Ok (yes (no))," she said.\nAnd "so" on\n'
H = 5  # all sizes different from the vocabulary's and the text's


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def naive_series(cell, x, Wx, Wh, b, bhn, h=None, c=None):
    """Every series of one layer over x (L, D), one step at a time, each gate on its own:
    {name: (L, H)}, and the final (h, c)."""
    Hh = Wh.shape[0]
    h = np.zeros(Hh) if h is None else h
    c = np.zeros(Hh) if c is None else c
    blk = [slice(j * Hh, (j + 1) * Hh) for j in range(4)]
    rows = []
    for xt in x:
        a = xt @ Wx + b
        if cell == "rnn":
            h = np.tanh(a + h @ Wh)
            rows.append({"h": h})
        elif cell == "lstm":
            i = sigmoid(a[blk[0]] + h @ Wh[:, blk[0]])
            f = sigmoid(a[blk[1]] + h @ Wh[:, blk[1]])
            o = sigmoid(a[blk[2]] + h @ Wh[:, blk[2]])
            g = np.tanh(a[blk[3]] + h @ Wh[:, blk[3]])
            c = f * c + i * g
            h = o * np.tanh(c)
            rows.append({"i": i, "f": f, "o": o, "g": g, "c": c, "h": h})
        else:
            r = sigmoid(a[blk[0]] + h @ Wh[:, blk[0]])
            z = sigmoid(a[blk[1]] + h @ Wh[:, blk[1]])
            n = np.tanh(a[blk[2]] + r * (h @ Wh[:, blk[2]] + bhn))
            h = (1 - z) * n + z * h
            rows.append({"r": r, "z": z, "n": n, "h": h})
    return {k: np.array([row[k] for row in rows]) for k in rows[0]}


def lm_checkpoint(cell, layers=2, seed=0, text=TEXT):
    vocab = Vocab.from_text(text)
    cfg = lm.ModelConfig(vocab_size=len(vocab), cell=cell, hidden=H, layers=layers,
                         dtype="float64")
    rng = np.random.default_rng(seed)
    p = {k: v + 0.5 * rng.standard_normal(v.shape) for k, v in lm.init_params(cfg, rng).items()}
    return Checkpoint(cfg, vocab, p, family="lm")


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_lm_recording_equals_every_gate_of_a_naive_loop_across_chunks(cell, monkeypatch):
    monkeypatch.setattr(lm, "INSIDE_CHUNK", 7)  # the state must be carried across chunks
    ck = lm_checkpoint(cell)
    rec = I.record(ck, TEXT + "\u00e9")  # é is not in the vocabulary: skipped
    assert rec.text == TEXT and rec.skipped == 1 and rec.spans == ((0, len(TEXT)),)
    x = np.eye(len(ck.vocab))[ck.vocab.encode(TEXT)]
    want = {}
    for k in range(2):
        s = naive_series(cell, x, *(ck.params.get(f"l{k}.{n}") for n in ("Wx", "Wh", "b", "bhn")))
        want.update({f"l{k}.{n}": v for n, v in s.items()})
        x = s["h"]
    assert list(rec.arrays) == list(want)  # every series, in equation order
    for name, v in want.items():
        assert_close(rec.arrays[name], v, what=name)
    assert_close(rec.unit("l1.h.3"), want["l1.h"][:, 3])


def encoder_checkpoint(F, cell, bidirectional=True, layers=2):
    vocab = Lb.vocab_with_unknown(TEXT.split("\n"))
    extra = {"classify": {"classes": 3}, "tag": {"tags": 3}, "seq2seq": {"target_size": 6}}
    cfg = F.Config(vocab_size=len(vocab), cell=cell, hidden=H, layers=layers,
                   bidirectional=bidirectional, dtype="float64", **extra[F.NAME])
    rng = np.random.default_rng(1)
    p = {k: v + 0.5 * rng.standard_normal(v.shape) for k, v in F.init_params(cfg, rng).items()}
    return Checkpoint(cfg, vocab, p, family=F.NAME)


@pytest.mark.parametrize("F,cell", [(classify, "lstm"), (tag, "gru"), (seq2seq, "lstm"),
                                    (classify, "rnn")])
def test_encoder_recording_equals_a_naive_loop_in_both_directions(F, cell):
    ck = encoder_checkpoint(F, cell)
    rec = I.record(ck, TEXT + "\n\n~~")  # an empty line is no sequence; ~ is unknown
    lines = [t for t in TEXT.split("\n") if t] + ["~~"]
    assert rec.text == "".join(lines) and rec.skipped == 2
    assert [rec.text[a:b] for a, b in rec.spans] == lines
    names = []
    for (a, b), line in zip(rec.spans, lines):
        x = np.eye(len(ck.vocab))[Lb.encode(ck.vocab, [line])[0][0]]
        for k in range(2):
            ys = []
            for d in ("fw", "bw"):
                w = [ck.params.get(f"enc.l{k}.{d}.{n}") for n in ("Wx", "Wh", "b", "bhn")]
                s = naive_series(cell, x if d == "fw" else x[::-1], *w)
                for n, v in s.items():
                    v = v if d == "fw" else v[::-1]  # back in reading order
                    assert_close(rec.arrays[f"l{k}.{d}.{n}"][a:b], v, what=f"l{k}.{d}.{n}")
                    names.append(f"l{k}.{d}.{n}")
                ys.append(s["h"] if d == "fw" else s["h"][::-1])
            x = np.concatenate(ys, axis=1)
    assert list(rec.arrays) == list(dict.fromkeys(names))
    assert rec.bounds("l1.bw.h.0") == (-1, 1)


def test_a_unidirectional_encoder_has_only_fw_and_series_can_be_chosen():
    ck = encoder_checkpoint(classify, "gru", bidirectional=False, layers=1)
    assert I.series_names(ck) == ["l0.fw.r", "l0.fw.z", "l0.fw.n", "l0.fw.h"]
    rec = I.record(ck, "abc", series=["l0.fw.z"])
    assert list(rec.arrays) == ["l0.fw.z"] and rec.bounds("l0.fw.z.1") == (0, 1)
    with pytest.raises(ConfigError, match="unknown series 'l0.bw.h'; this gru model has l0.fw.r"):
        I.record(ck, "abc", series=["l0.bw.h"])


def test_unknown_units_and_empty_texts_are_one_line_errors():
    rec = I.record(lm_checkpoint("lstm"), "said")
    for bad, msg in [("l2.f.1", "unknown unit 'l2.f.1'; this lstm model has l0.i, l0.f"),
                     ("l1.f.5", "units 0-4 each"), ("l1.q.0", "unknown unit"),
                     ("l1.f", "'l1.f' is a series of 5 units; name one, e.g. l1.f.0"),
                     ("l1.f.x", "unknown unit"), ("17", "unknown unit")]:
        with pytest.raises(ConfigError, match=re.escape(msg)) as e:
            rec.unit(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(CorpusError, match="the text is empty"):
        I.record(lm_checkpoint("lstm"), "")
    with pytest.raises(CorpusError, match="none of the text's 3 characters is one the model"):
        I.record(lm_checkpoint("lstm"), "QQQ")
    with pytest.raises(CorpusError, match="none of the text's 2 characters"):
        I.record(encoder_checkpoint(tag, "gru"), "\n\n")


# --- features and correlations, against loops written here -----------------------------------

def naive_features(text):
    """Each built-in feature by a plain loop over the characters."""
    quote, depth = 0, {"()": 0, "[]": 0, "{}": 0}
    since = 0
    prev_alnum = False
    out = {k: [] for k in I.FEATURES}
    for ch in text:
        quote ^= ch == '"'
        for pair, d in depth.items():
            depth[pair] = d + (ch == pair[0]) - (d > 0 and ch == pair[1])
        since = 0 if ch == "\n" else since + 1
        out["quote"].append(quote)
        out["round"].append(depth["()"])
        out["square"].append(depth["[]"])
        out["curly"].append(depth["{}"])
        out["line"].append(since)
        out["word"].append(ch.isalnum() and not prev_alnum)
        out["vowel"].append(ch.lower() in "aeiouàáâäèéêëìíîïòóôöùúûü" if ch.isalpha() else None)
        out["digit"].append(ch.isdigit())
        prev_alnum = ch.isalnum()
    return out


def test_features_equal_a_plain_loop():
    text = TEXT + "))( x) é"
    rec = I.Recording(text, {"l0.h": np.zeros((len(text), 1))}, ((0, len(text)),))
    for name, want in naive_features(text).items():
        values, mask = I.feature(rec, name)
        if name == "vowel":
            assert mask.tolist() == [w is not None for w in want]
            assert values[mask].tolist() == [float(w) for w in want if w is not None]
        else:
            assert mask is None and values.tolist() == [float(w) for w in want], name
    v, _ = I.feature(rec, r"\(.*?\)", regex=True)
    assert "".join(c for c, x in zip(text, v) if x) == "(a [b] {c})(yes (no)( x)"
    with pytest.raises(ConfigError, match="not a regular expression"):
        I.feature(rec, "(", regex=True)
    with pytest.raises(ConfigError, match="unknown feature 'commas'"):
        I.feature(rec, "commas")


def test_features_start_afresh_in_each_sequence_of_an_encoder():
    text = '"a(b"c('
    rec = I.Recording(text, {"l0.fw.h": np.zeros((7, 1))}, ((0, 3), (3, 7)))
    assert I.feature(rec, "quote")[0].tolist() == [1, 1, 1, 0, 1, 1, 1]  # 'b"c(' opens anew
    assert I.feature(rec, "round")[0].tolist() == [0, 0, 1, 0, 0, 0, 1]
    assert I.feature(rec, "line")[0].tolist() == [1, 2, 3, 1, 2, 3, 4]


def test_correlations_equal_corrcoef_unit_by_unit():
    rec = I.record(lm_checkpoint("lstm"), TEXT * 3)
    rec.arrays["l0.h"][:, 2] = 0.25  # a constant unit: r = 0, not nan
    found = I.find(rec, top=10**6)
    for f in found:
        values, mask = I.feature(rec, f.feature)
        keep = np.ones(len(values), bool) if mask is None else mask
        got = dict(f.units)
        assert len(got) == 12 * H
        for name in ("l0.h", "l1.c", "l1.f"):
            for j in range(H):
                x = rec.arrays[name][keep, j]
                want = 0.0 if x.std() == 0 else np.corrcoef(x, values[keep])[0, 1]
                assert got[f"{name}.{j}"] == pytest.approx(want, abs=1e-12), (f.feature, name)
        r = [abs(v) for _, v in f.units]
        assert r == sorted(r, reverse=True)
    assert [f.feature for f in found] == list(I.FEATURES)
    assert [f.feature for f in found if f.constant] == []
    regex = I.find(rec, features=[], regexes=["[A-Z]"], top=2)[0]
    assert regex.description == "characters matching /[A-Z]/" and len(regex.units) == 2


def test_a_feature_that_never_varies_finds_nothing():
    rec = I.record(lm_checkpoint("gru"), "said it is so\n")
    (digit,) = I.find(rec, features=["digit"])
    assert digit.constant and digit.units == []


def planted_quote_checkpoint():
    """A GRU language model with unit 2 of its one layer set by hand to be 1 inside double
    quotes and -1 outside: on '"' its update gate z is 0 (take the candidate n), elsewhere 1
    (keep h); the candidate is n = tanh(5 - 10 h_prev), -h_prev flipped (1 from h = 0). Every
    other weight is random."""
    ck = lm_checkpoint("gru", layers=1, seed=3)
    p, j, q = ck.params, 2, ck.vocab.encode('"')[0]
    r, z, n = j, H + j, 2 * H + j  # the unit's columns in each gate block
    for col in (r, z, n):
        p["l0.Wh"][:, col] = 0
        p["l0.b"][col] = 0
    p["l0.Wx"][:, r] = 20  # r = 1
    p["l0.Wx"][:, z] = 20  # keep h ...
    p["l0.Wx"][q, z] = -20  # ... except on a quote
    p["l0.Wx"][:, n] = 0
    p["l0.Wx"][q, n] = 5
    p["l0.Wh"][j, n] = -10
    p["l0.bhn"][j] = 0
    return ck


def test_a_planted_quote_unit_is_found_first():
    rec = I.record(planted_quote_checkpoint(), TEXT * 4)
    quote = I.feature(rec, "quote")[0]
    assert_close(rec.unit("l0.h.2")[12:], 2 * quote[12:] - 1, atol=1e-3)  # tanh(5): a copy
    (found,) = I.find(rec, features=["quote"])
    assert found.units[0][0] == "l0.h.2" and found.units[0][1] > 0.95
    start, stop = I.excerpt(quote, None, 20)
    assert 0 < quote[start:stop].mean() < 1  # the excerpt shows the unit switching


def test_excerpt_is_where_the_feature_varies_most():
    v = np.zeros(100)
    v[60:65] = 1
    assert I.excerpt(v, None, 10) in [(s, s + 10) for s in range(55, 61)]
    assert I.excerpt(v, None, 200) == (0, 100)


def test_saturation_counts_against_a_loop():
    rec = I.record(lm_checkpoint("lstm"), TEXT)
    sat = I.saturation(rec)
    assert [s.series for s in sat] == ["l0.i", "l0.f", "l0.o", "l1.i", "l1.f", "l1.o"]
    for s in sat:
        X = rec.arrays[s.series]
        for j in range(H):
            col = X[:, j].tolist()
            assert s.left[j] == sum(v < 0.1 for v in col) / len(col)
            assert s.right[j] == sum(v > 0.9 for v in col) / len(col)


def test_float32_recordings_correlate_to_float32_accuracy():
    ck = lm_checkpoint("lstm")
    from dataclasses import replace

    ck32 = type(ck)(replace(ck.model, dtype="float32"), ck.vocab,
                    {k: v.astype(np.float32) for k, v in ck.params.items()}, family="lm")
    rec = I.record(ck32, TEXT * 40)
    assert rec.arrays["l1.c"].dtype == np.float32
    values, mask = I.feature(rec, "vowel")
    (units, r), = I.correlations(rec, [(values, mask)], ["l1.c", "l0.f"])
    for k, name in enumerate(units):
        x = rec.unit(name)[mask].astype(np.float64)
        assert r[k] == pytest.approx(np.corrcoef(x, values[mask])[0, 1], abs=1e-4), name


def test_pictures_show_tanh_of_a_cell_state_and_the_rest_as_they_are():
    from charrnn.inside.view import digits, rgb, shown

    c = np.array([0.5, -2.5])
    v, bounds, label = shown("l1.c.3", c, (-1, 1))
    assert v.tolist() == np.tanh(c).tolist() and bounds == (-1, 1) and label == "tanh(l1.c.3)"
    assert shown("l0.bw.c", c, (-1, 1))[2] == "tanh(l0.bw.c)"
    v, bounds, label = shown("l0.f.12", c, (0, 1))
    assert v is c and bounds == (0, 1) and label == "l0.f.12"
    assert digits(np.array([0, 0.05, 0.5, 0.99, 1, 7]), (0, 1)).tolist() == [0, 0, 5, 9, 9, 9]
    assert rgb(-1) == (0, 95, 175) and rgb(0) == (255, 255, 255) and rgb(1) == (175, 0, 0)
    assert rgb(0.05) == rgb(0) and rgb(0.15) == (255, 215, 215) and rgb(-7) == rgb(-1)


def test_a_256_colour_terminal_shows_the_palette_exactly():
    from rich.color import Color, ColorSystem

    from charrnn.inside.view import RAMP

    shown = [Color.from_rgb(*c).downgrade(ColorSystem.EIGHT_BIT) for c in RAMP]
    assert [c.get_truecolor() for c in shown] == [tuple(c) for c in RAMP]
    assert len({c.number for c in shown}) == len(RAMP)


def test_the_fused_kernels_record_what_numpys_do_to_float32_rounding():
    from dataclasses import replace

    from charrnn.nn import fused

    if fused.available():
        pytest.skip(f"fused kernels unavailable: {fused.available()}")
    ck = lm_checkpoint("lstm")
    ck32 = type(ck)(replace(ck.model, dtype="float32"), ck.vocab,
                    {k: v.astype(np.float32) for k, v in ck.params.items()}, family="lm")
    want = I.record(ck32, TEXT)
    got = I.record(ck32.running("fused"), TEXT)
    for name in want.arrays:
        assert_close(got.arrays[name], want.arrays[name], rtol=1e-4, atol=1e-5, what=name)


def test_every_family_has_the_inside_hook():
    from charrnn.models import FAMILIES

    assert sorted(FAMILIES) == ["classify", "generate", "lm", "seq2seq", "tag"]
    for F in FAMILIES.values():
        assert callable(F.inside), F.NAME
