"""Runs of every family, tiny, trained once for the report's tests: two language models (to
share a plot), a classifier, a tagger and a seq2seq model."""

import random

import pytest

from charrnn.train.trainer import train
from tests.helpers import AUSTEN, tiny


def labelled_files(d):
    """cls.tsv (vowels against consonants, 2:1), seg.tsv (words run together, B/I tags) and
    rev.tsv (short words and their reversal) in the directory d."""
    rnd = random.Random(0)
    rows = []
    for i in range(240):
        kind = "vowel" if i % 3 == 0 else "cons"
        letters = "aeiou" if kind == "vowel" else "bcdfgkst"
        rows.append("".join(rnd.choice(letters) for _ in range(rnd.randint(2, 7))) + "\t" + kind)
    (d / "cls.tsv").write_text("\n".join(rows) + "\n")
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "it", "ran", "to", "big"]
    rows = []
    for _ in range(160):
        ws = [rnd.choice(words) for _ in range(rnd.randint(2, 5))]
        rows.append("".join(ws) + "\t" + "".join("B" + "I" * (len(w) - 1) for w in ws))
    (d / "seg.tsv").write_text("\n".join(rows) + "\n")
    rows = {"".join(rnd.choice("abcde") for _ in range(rnd.randint(2, 5))) for _ in range(300)}
    (d / "rev.tsv").write_text("".join(f"{w}\t{w[::-1]}\n" for w in sorted(rows)))


@pytest.fixture(scope="session")
def family_runs(tmp_path_factory):
    """{name: run directory} of lstm, gru (language models on AUSTEN), cls, seg, rev."""
    root = tmp_path_factory.mktemp("report-runs")
    (root / "austen.txt").write_text(AUSTEN)
    labelled_files(root)
    small = {"hidden": 8, "batch": 8, "steps": 12, "eval_every": 6, "dtype": "float64",
             "warmup": 2, "schedule": "constant", "lr": 1e-2}
    runs = {"lstm": tiny(root / "austen.txt", root / "lstm", steps=40, eval_every=10),
            "gru": tiny(root / "austen.txt", root / "gru", cell="gru", steps=30, lr=2e-2),
            "cls": tiny(root / "cls.tsv", root / "cls", task="classify", **small),
            "seg": tiny(root / "seg.tsv", root / "seg", task="tag", **small),
            "rev": tiny(root / "rev.tsv", root / "rev", task="seq2seq",
                        **{**small, "hidden": 12})}
    for cfg in runs.values():
        train(cfg)
    return {name: root / name for name in runs}


FAMILIES = ["lstm", "gru", "cls", "seg", "rev"]


@pytest.fixture(scope="session")
def report_page(family_runs, tmp_path_factory):
    """(path, CliRunner result) of `charrnn report` of every family's run, with --gradflow."""
    pytest.importorskip("matplotlib")
    from tests.helpers import invoke

    out = tmp_path_factory.mktemp("page") / "report.html"
    r = invoke("report", *(family_runs[n] for n in FAMILIES), "--gradflow", "-o", out,
               "--sample-length", 120)
    assert r.exit_code == 0, r.output
    return out, r
