"""`charrnn eval` and `charrnn info`, against independent computations."""

import itertools
import json
import math
import os

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import checkpoint as C
from charrnn.cli import cli
from charrnn.data.vocab import Vocab
from charrnn.errors import CorpusError, VocabularyError
from charrnn.infer.scoring import RAMP, STYLES, digit_map, heat_map, score_text
from charrnn.models import lm as M
from charrnn.runs import chart, curves, latest_run, vocab_text
from tests.helpers import assert_close, invoke, one_line_error

VOCAB = Vocab("\n abcdeé日")
TEXT = "abc dee\n日本 éaZbc\ncab\n"  # '本' and 'Z' are not in the vocabulary


def make_model(seed=0):
    cfg = M.ModelConfig(vocab_size=len(VOCAB), cell="gru", hidden=6, layers=2, dtype="float64")
    p = M.init_params(cfg, np.random.default_rng(seed))
    p["Wy"] *= 8.0
    return cfg, p


def reference_losses(p, cfg, text):
    """Independent: skip unknown characters by hand, step loop, softmax written out."""
    chars = [c for c in text if c in VOCAB]
    state = M.init_state(cfg, 1)
    out = []
    for a, b in itertools.pairwise(chars):
        logits, state = M.step(p, cfg, np.array([VOCAB.chars.index(a)]), state)
        z = logits[0] - logits[0].max()
        out.append(math.log(np.exp(z).sum()) - z[VOCAB.chars.index(b)])
    return np.array(out)


@pytest.fixture
def ckpt(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg, p = make_model()
    history = [{"kind": "train", "step": s, "train_bpc": 3.0 - s / 100} for s in range(10, 201, 10)]
    history += [{"kind": "eval", "step": s, "val_bpc": 3.2 - s / 120, "val_nats": 0.0}
                for s in (100, 200)]
    meta = {"step": 200, "history": history, "best_val_bpc": 1.5333, "corpus": "poems.txt",
            "train": {"lr": 0.002, "batch": 16}, "elapsed": 90.0}
    path = tmp_path / "runs" / "poems" / "best.npz"
    path.parent.mkdir(parents=True)
    C.save(path, C.Checkpoint(cfg, VOCAB, p, meta))
    (tmp_path / "text.txt").write_text(TEXT, encoding="utf-8")
    return cfg, p


def test_score_equals_mean_of_independent_losses_and_counts_unknowns(ckpt):
    cfg, p = ckpt
    ref = reference_losses(p, cfg, TEXT)
    got = score_text(p, cfg, VOCAB, TEXT)
    assert_close(got.losses, ref, what="per-character losses")
    assert got.score.nats == pytest.approx(ref.mean(), rel=1e-12)
    assert got.score.chars == len(ref) == len(TEXT) - 2 - 1
    assert got.oov == 2 and got.unknown == ["本", "Z"]
    assert [TEXT[i] for i in got.kept] == [c for c in TEXT if c in VOCAB]


def test_eval_command_prints_the_score(ckpt):
    cfg, p = ckpt
    ref = reference_losses(p, cfg, TEXT)
    r = CliRunner().invoke(cli, ["eval", "text.txt"])
    assert r.exit_code == 0, r.output
    bpc = ref.mean() / math.log(2)
    line = r.stdout.strip()
    assert len(r.stdout.splitlines()) == 1
    assert line.startswith(f"{bpc:.4f} bits per character, {ref.mean():.4f} nats, perplexity "
                           f"{math.exp(ref.mean()):.3f} over {len(ref)} characters")
    assert "2 characters not in the vocabulary skipped ('本', 'Z')" in line
    assert os.path.join("runs", "poems", "best.npz") in r.stderr


def test_strict_makes_unknown_characters_an_error(ckpt):
    r = CliRunner().invoke(cli, ["eval", "--strict", "text.txt"])
    assert r.exit_code == 1 and r.stdout == ""
    assert r.stderr.strip().splitlines()[-1] == (
        "Error: text has 2 characters not in the vocabulary: '本', 'Z'")
    cfg, p = ckpt
    with pytest.raises(VocabularyError):
        score_text(p, cfg, VOCAB, TEXT, strict=True)


def test_show_colours_each_character_by_its_surprise(ckpt):
    cfg, p = ckpt
    result = score_text(p, cfg, VOCAB, TEXT)
    text = heat_map(TEXT, result)
    assert text.plain == TEXT
    styles = [None] * len(TEXT)
    for span in text.spans:
        for j in range(span.start, span.end):
            styles[j] = str(span.style)
    bits = reference_losses(p, cfg, TEXT) / math.log(2)
    kept = [j for j, c in enumerate(TEXT) if c in VOCAB]
    assert styles[kept[0]] in (None, "")  # nothing predicts the first character
    for j, b in zip(kept[1:], bits):
        assert styles[j] == STYLES[min(len(RAMP) - 1, int(b))], (j, b)
    for j, c in enumerate(TEXT):
        if c not in VOCAB:
            assert styles[j] == "reverse"


def test_show_never_sends_control_characters_to_the_terminal(ckpt):
    cfg, p = ckpt
    text = "ab\x1b[31mc\x07\td\x7f\x9b\ne"  # an ANSI colour escape, BEL, DEL, C1 CSI
    shown = heat_map(text, score_text(p, cfg, VOCAB, text)).plain
    assert len(shown) == len(text)  # one picture per character: the colours stay aligned
    assert shown == "ab\u241b[31mc\u2407\td\u2421\ufffd\ne"
    r = CliRunner().invoke(cli, ["eval", "--show", "text.txt"])
    assert r.exit_code == 0 and r.stdout.startswith(TEXT)  # no colour on a pipe, text intact
    assert "surprise" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["missing.txt"], "not found: missing.txt"),
    (["empty.txt"], "empty.txt is empty"),
    (["unknown.txt"], "nothing to score"),
    (["text.txt", "--encoding", "klingon"], "unknown text encoding 'klingon'"),
    (["latin1.txt"], "not valid utf-8"),
    (["text.txt", "--checkpoint", "corrupt.npz"], "corrupt.npz is not a charrnn checkpoint"),
])
def test_eval_bad_input_gives_one_line_error(ckpt, tmp_path, args, message):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "unknown.txt").write_text("ZZZ QQQ", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "corrupt.npz").write_bytes(b"\x93NUMPY garbage")
    r = invoke("eval", *args)
    line = one_line_error(r, message, code=1)
    assert r.stderr.strip().splitlines()[-1] == line, r.stderr


def test_nothing_to_score_is_a_corpus_error(ckpt):
    cfg, p = ckpt
    with pytest.raises(CorpusError, match="nothing to score"):
        score_text(p, cfg, VOCAB, "aZZZ")


def test_info_describes_the_checkpoint(ckpt):
    _cfg, p = ckpt
    r = CliRunner().invoke(cli, ["info"])
    assert r.exit_code == 0, r.output
    n_params = sum(a.size for a in p.values())
    o = r.stdout
    assert f"{n_params:,}" in o and "gru 6x2" in o and "9 characters" in o
    assert "1.5333 bits per character" in o and "200" in o and "poems.txt" in o
    assert r"\n ␣ a b c d e é 日" in o  # the vocabulary, newline and space made visible
    assert "lr=0.002, batch=16" in o
    assert "· train bpc" in o and "● val bpc" in o and "step 10" in o


def test_info_takes_a_file_or_run_dir_and_tolerates_a_bare_checkpoint(ckpt, tmp_path):
    cfg, p = ckpt
    C.save(tmp_path / "bare.npz", C.Checkpoint(cfg, VOCAB, p))
    r = CliRunner().invoke(cli, ["info", "bare.npz"])
    assert r.exit_code == 0 and "no training history" in r.stdout
    assert "steps" not in r.stdout
    r = CliRunner().invoke(cli, ["info", "runs/poems"])
    assert r.exit_code == 0 and "1.5333" in r.stdout


def test_info_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["info"])
    assert r.exit_code == 1 and "run `charrnn train` first" in r.stderr
    r = CliRunner().invoke(cli, ["info", "nope.npz"])
    assert r.exit_code == 1 and r.stderr.strip() == "Error: checkpoint not found: nope.npz"


def test_chart_puts_high_values_high_and_later_steps_right():
    lines = chart({"train": ([0, 50, 100], [3.0, 2.0, 1.0]), "val": ([100], [1.5])},
                  width=11, height=5)
    plot = [line[9:] for line in lines[:5]]  # after the 8-character axis and the tick
    assert plot[0][0] == "·" and plot[4][10] == "·" and plot[2][5] == "·"
    assert plot[3][10] == "●"  # 1.5 lies between rows 2 (2.0) and 4 (1.0)
    assert lines[0].startswith("  3.000 ┤") and lines[4].startswith("  1.000 ┤")
    assert chart({"train": ([], [])}) == []


def test_curves_read_the_history_and_skip_bad_records():
    hist = [{"kind": "train", "step": 1, "train_bpc": 2.0}, {"kind": "eval", "step": 1},
            {"kind": "eval", "step": 2, "val_bpc": 1.5}, "junk",
            {"kind": "train", "step": 3, "train_bpc": float("nan")}]
    assert curves(hist) == {"train": ([1.0], [2.0]), "val": ([2.0], [1.5])}
    assert curves(None) == {"train": ([], []), "val": ([], [])}


def test_latest_run_and_vocab_text(tmp_path):
    assert latest_run(tmp_path / "none") is None
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "best.npz").write_bytes(b"x")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_bytes(b"x")  # not a run
    assert latest_run(tmp_path) == tmp_path / "a"
    assert vocab_text(["\n", " ", "\t", "x"]) == r"\n ␣ \t x"


def test_info_summarises_a_large_vocabulary_instead_of_one_huge_line(tmp_path):
    """5,054 characters (a Chinese model's) become a size, counts per class of
    character and a sample, on lines of ordinary length; --json still lists them all."""
    han = [chr(0x4E00 + 3 * i) for i in range(5000)]
    chars = ["\n", " ", *"0123456789", *"abcdefghijklmnopqrstuvwxyzAB", *"，。！？、",
             *"あいうえおかきく", "é"]
    vocab = Vocab(chars + han)
    assert len(vocab) == 5054
    cfg = M.ModelConfig(vocab_size=len(vocab), cell="rnn", hidden=2, layers=1)
    path = tmp_path / "zh" / "best.npz"
    path.parent.mkdir()
    C.save(path, C.Checkpoint(cfg, vocab, M.init_params(cfg, np.random.default_rng(0)), {}))
    r = invoke("info", path)
    assert r.exit_code == 0, r.output
    assert max(map(len, r.stdout.splitlines())) <= 100, r.stdout
    flat = " ".join(r.stdout.split())
    # counted here from how the vocabulary was built, not by the code under test
    for part in ("5,054 characters", "5,000 CJK ideographs", "8 kana", "28 ASCII letters",
                 "1 other letters", "10 digits", "2 whitespace", "5 punctuation"):
        assert part in flat, (part, flat)
    shown = flat.split("a sample: ")[1].split(" ...")[0].split()
    where = [vocab.chars.index("\n" if c == "\\n" else c) for c in shown]
    assert len(set(shown)) == 40 and where == sorted(where)  # distinct, in vocabulary order,
    assert where[0] < 500 and where[-1] > 4500  # and spread over all of it
    assert len(json.loads(invoke("info", path, "--json").stdout)["vocabulary"]) == 5054


# --- edge cases: a directory or a binary file to score ----------------------------------------

def test_eval_rejects_a_directory_and_a_binary_file(trained, tmp_path):
    one_line_error(invoke("eval", tmp_path, "-c", trained / "run"), "is a directory")
    (tmp_path / "x.bin").write_bytes(b"ab\x00cd" * 10)
    one_line_error(invoke("eval", tmp_path / "x.bin", "-c", trained / "run"), "binary file",
                   "byte offset 2")


# --- JSON, counts that agree, colours that survive, -c everywhere ----------------------------

def test_eval_json_and_the_counts_agree(ckpt):
    import json

    cfg, p = ckpt
    ref = reference_losses(p, cfg, TEXT)
    r = CliRunner().invoke(cli, ["eval", "text.txt", "--json"])
    assert r.exit_code == 0, r.stderr
    o = json.loads(r.stdout)
    assert o["bpc"] == pytest.approx(ref.mean() / math.log(2), rel=1e-12)
    assert o["nats"] == pytest.approx(ref.mean(), rel=1e-12)
    assert o["perplexity"] == pytest.approx(math.exp(ref.mean()), rel=1e-12)
    assert (o["chars_scored"], o["chars_read"], o["unknown_chars"], o["unknown"]) == (
        len(ref), len(TEXT), 2, ["本", "Z"])
    assert o["file"] == "text.txt" and o["checkpoint"].endswith("best.npz") and o["seconds"] >= 0
    plain = CliRunner().invoke(cli, ["eval", "text.txt"])  # stdout and stderr: the same count
    assert f"over {len(ref)} characters" in plain.stdout
    assert (f"scored {len(ref)} of {len(TEXT)} characters read (the first is not predicted, 2 "
            "unknown skipped) in ") in plain.stderr
    r = CliRunner().invoke(cli, ["eval", "text.txt", "--json", "--show"])
    assert r.exit_code == 2 and "--show and --json" in r.stderr


def test_eval_a_missing_file_and_a_mostly_unknown_one(ckpt, tmp_path):
    r = CliRunner().invoke(cli, ["eval", "missing.txt"])
    assert r.exit_code == 1 and r.stderr.strip() == "Error: file not found: missing.txt"
    (tmp_path / "odd.txt").write_text("abZZZZZQQQQ", encoding="utf-8")
    r = CliRunner().invoke(cli, ["eval", "odd.txt"])
    assert r.exit_code == 0 and ("warning: 82% of odd.txt is characters the model has never "
                                 "seen; the score covers only the rest") in r.stderr
    assert "warning" not in CliRunner().invoke(cli, ["eval", "text.txt"]).stderr


@pytest.mark.parametrize("system", ["standard", "256"])
def test_heat_map_bands_stay_distinct_in_16_and_256_colours(system):
    from rich.color import Color, ColorSystem

    reduced = {"standard": ColorSystem.STANDARD, "256": ColorSystem.EIGHT_BIT}[system]
    shown = [Color.parse(c).downgrade(reduced).get_ansi_codes(foreground=False) for c in RAMP]
    assert len(set(shown)) == len(RAMP), shown


def test_show_with_no_colour_puts_digits_under_the_text(ckpt, monkeypatch):
    cfg, p = ckpt
    monkeypatch.setenv("NO_COLOR", "1")
    r = CliRunner().invoke(cli, ["eval", "--show", "text.txt"])
    assert r.exit_code == 0, r.stderr
    bits = reference_losses(p, cfg, TEXT) / math.log(2)
    band = iter(str(min(7, int(b))) for b in bits)
    lines = r.stdout.splitlines()
    assert lines[0::2][:3] == TEXT.splitlines()
    first = lines[1]  # 'abc dee' then its line break: the first character is not scored
    assert first == " " + "".join(next(band) for _ in range(7))
    second = lines[3]  # '日本 éaZbc': 日 and 本 two columns wide, 本 and Z unknown
    want = [next(band), " ", "?", " ", next(band), next(band), next(band), "?", next(band),
            next(band), next(band)]
    assert second == "".join(want)
    assert "in the row under each line" in r.stderr
    assert digit_map("a\tb", score_text(p, cfg, VOCAB, "a\tb")) .split("\n")[1][1] == "\t"


def test_info_takes_c_like_every_other_command_and_json(ckpt, tmp_path):
    import json

    assert CliRunner().invoke(cli, ["info", "-c", "runs/poems"]).stdout == \
        CliRunner().invoke(cli, ["info", "runs/poems"]).stdout  # the old positional still works
    r = CliRunner().invoke(cli, ["info", "--checkpoint", "runs/poems", "--json"])
    assert r.exit_code == 0, r.stderr
    o = json.loads(r.stdout)
    assert o["model"]["cell"] == "gru" and o["model"]["hidden"] == 6
    assert o["vocabulary"] == list(VOCAB.chars) and o["best"] == {"val_bpc": 1.5333}
    assert o["step"] == 200 and o["corpus"] == "poems.txt" and o["train"]["lr"] == 0.002
    assert len(o["history"]) == 22 and o["parameters"] > 0 and o["task"] == "lm"
    assert "[CHECKPOINT]" not in CliRunner().invoke(cli, ["info", "--help"]).stdout


def test_info_with_no_runs_suggests_c_which_works(tmp_path, monkeypatch, ckpt):
    import shutil

    shutil.move("runs", "elsewhere")
    r = CliRunner().invoke(cli, ["info"])
    assert r.exit_code == 1 and "give -c/--checkpoint" in r.stderr
    assert CliRunner().invoke(cli, ["info", "-c", "elsewhere/poems"]).exit_code == 0
