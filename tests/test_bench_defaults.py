"""bench/defaults.py: its corpora are what its docstring says, its fixed-character figure and
ranking are right, and its runs (charrnn's and PyTorch's) go end to end on tiny sizes."""

import argparse
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("charrnn_defaults", ROOT / "bench" / "defaults.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tree(root: Path, files: dict) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")


def test_stdlib_corpus_is_the_sorted_py_files_without_tests_cut_at_whole_files(bench, tmp_path):
    _tree(tmp_path, {"b.py": "B" * 4, "a.py": "A" * 3, "c/d.py": "D" * 5, "c/test/x.py": "x",
                     "tests/y.py": "y", "site-packages/z.py": "z", "encodings/cp1.py": "e",
                     "c/notes.txt": "n", "e.py": "E" * 2, "f.py": "F"})
    (tmp_path / "a_latin1.py").write_bytes(b"\xe9")  # not UTF-8: skipped
    text, files = bench.stdlib_text(tmp_path, limit=10)
    # sorted by path: a.py, a_latin1.py (skipped), b.py, c/d.py (3 + 4 + 5 = 12 >= 10: last)
    assert files == ["a.py", "b.py", "c/d.py"]
    assert text == "AAA" + "BBBB" + "DDDDD"
    text, files = bench.stdlib_text(tmp_path, limit=100)
    assert files == ["a.py", "b.py", "c/d.py", "e.py", "f.py"]


def test_fortunes_corpus_skips_indexes_and_links(bench, tmp_path):
    folder = tmp_path / "usr" / "share" / "games" / "fortunes"
    _tree(folder, {"zen": "z\n%\n", "art": "a\n%\n", "art.dat": "\0\1", "zen.u8": "dup"})
    (folder / "art.u8").symlink_to("art")
    text, files = bench.fortunes_text(tmp_path)
    assert files == ["art", "zen"] and text == "a\n%\nz\n%\n"


def test_value_at_a_character_count_is_read_and_interpolated(bench):
    evals = [(100, 3.0), (200, 2.0), (300, 1.5)]
    assert bench.at_chars(evals, 200) == 2.0
    assert bench.at_chars(evals, 250) == pytest.approx(1.75)
    assert bench.at_chars(evals, 50) is None and bench.at_chars(evals, 301) is None


def test_ranking_by_mean_gap_and_rank(bench):
    rows = {("s", "a"): {"v": 2.0}, ("s", "b"): {"v": 2.1}, ("f", "a"): {"v": 1.9},
            ("f", "b"): {"v": 1.7}, ("s", "c"): {"v": 1.0}}  # c has no figure on f: left out
    ranked = bench.ranking(rows, ["s", "f"], lambda r: r.get("v"))
    assert [r[0] for r in ranked] == ["b", "a"]
    assert ranked[0][1:] == pytest.approx(((0.1 + 0.0) / 2, 1.5))
    assert ranked[1][1:] == pytest.approx(((0.0 + 0.2) / 2, 1.5))


def test_option_reads_both_spellings(bench):
    assert bench.option(["--batch", "32", "--lr=8e-3"], "--batch", 64) == 32
    assert bench.option(["--batch", "32", "--lr=8e-3"], "--lr", 1.0) == 8e-3
    assert bench.option([], "--seq", 64) == 64


def test_train_and_report_end_to_end(bench, tmp_path, capsys):
    work = tmp_path / "w"
    bench.main(["train", "--work", str(work), "--corpora", "shakespeare", "--label", "tiny",
                "--eval-chars", "64", "--", "--steps", "5", "--hidden", "8", "--batch", "4",
                "--seq", "8", "--processes", "1"])
    row = json.loads((work / "results.jsonl").read_text().splitlines()[-1])
    run = work / "runs" / "shakespeare" / "tiny"
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [(r["step"] * 32, r["val_bpc"]) for r in logged if r["kind"] == "eval"]
    # --eval-chars 64 with batch 4 x seq 8: every 2 steps, and the stop at step 5
    assert [c for c, _ in row["evals"]] == [64, 128, 160] == [c for c, _ in evals]
    assert row["best_val_bpc"] == pytest.approx(min(v for _, v in evals))
    assert row["chars"] == 160 and row["setting"].startswith("gru 8x1 d0.2 b4 s8")
    assert "--eval-every 2" in row["command"] and row["load"] is not None
    # the training figure: the mean of the "train" records over the last 64 characters (steps 4, 5)
    end = [r["train_bpc"] for r in logged if r["kind"] == "train" and r["step"] > 3]
    assert end and row["train_bpc_end"] == pytest.approx(sum(end) / len(end))
    capsys.readouterr()
    bench.main(["report", "--work", str(work), "--at-chars", "96"])
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("| shakespeare | tiny"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert float(cells[3]) == pytest.approx(row["best_val_bpc"], abs=5e-4)
    assert float(cells[4]) == pytest.approx((evals[0][1] + evals[1][1]) / 2, abs=5e-4)
    assert float(cells[5]) == pytest.approx(row["train_bpc_end"], abs=5e-4)
    assert "shakespeare: 1,115,394 characters" in out


def test_torch_yardstick_scores_validation_as_charrnn_does(bench, tmp_path):
    torch = pytest.importorskip("torch")
    text = "".join(f"line {i % 7} of a small text\n" for i in range(60))
    path = tmp_path / "t.txt"
    path.write_text(text)
    args = argparse.Namespace(seed=0, threads=1, cell="gru", hidden=6, layers=1, dropout=0.0,
                              batch=3, seq=5, lr=1e-2, warmup=2, clip=5.0, minutes=0.002,
                              eval_chars=15)
    row = bench.torch_run(torch, args, str(path))
    assert row["chars"] % 15 == 0 and row["evals"][-1][0] == row["chars"]
    assert row["best_val_bpc"] == min(v for _, v in row["evals"])
    assert all(math.isfinite(v) and 0 < v < 10 for _, v in row["evals"])
    assert math.isfinite(row["train_bpc_end"]) and 0 < row["train_bpc_end"] < 10
    # an untrained model scored as charrnn scores: 3 streams from zero state plus the remainder,
    # here computed as one naive loop per stream, character by character
    args.minutes = 1e-9
    row = bench.torch_run(torch, args, str(path))
    from charrnn.data import text as D

    torch.manual_seed(0)
    corpus = D.load(str(path), 0.1)
    V = len(corpus.vocab)
    rnn, lin = torch.nn.GRU(V, 6, 1, batch_first=True), torch.nn.Linear(6, V)
    val = corpus.val
    P = len(val) - 1
    m = P // 3
    total, h = 0.0, None
    with torch.no_grad():
        for s in range(3):
            h = None
            for j in range(s * m, (s + 1) * m):
                out, h = rnn(torch.eye(V)[int(val[j])].reshape(1, 1, V), h)
                total -= torch.log_softmax(lin(out[0, 0]), -1)[int(val[j + 1])].item()
        for j in range(3 * m, P):  # the remainder continues the last stream
            out, h = rnn(torch.eye(V)[int(val[j])].reshape(1, 1, V), h)
            total -= torch.log_softmax(lin(out[0, 0]), -1)[int(val[j + 1])].item()
    assert row["chars"] == 0 and row["train_bpc_end"] is None and row["evals"][0][1] == pytest.approx(total / P / np.log(2),
                                                                     rel=1e-5)
