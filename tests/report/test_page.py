"""`charrnn report`: one self-contained page of runs of every family; what it does with a run
whose corpus moved, a damaged metrics line, a run with no checkpoint yet, and a run training
while the report is made."""

import re
import shutil
import subprocess

import pytest

pytest.importorskip("matplotlib")

from tests.helpers import AUSTEN, invoke, one_line_error, train_argv, wait_for
from tests.report.conftest import FAMILIES


def figures_in(text):
    return re.findall(r'<figure class="chart" data-figure="([^"]+)"', text)


def test_the_page_has_every_familys_figures_and_only_the_path_on_stdout(report_page):
    out, r = report_page
    assert r.stdout == f"{out}\n" and "wrote" in r.stderr
    text = out.read_text()
    assert figures_in(text) == [
        "curves-step-lm", "curves-time-lm", "curves-step-classify", "curves-time-classify",
        "curves-step-tag", "curves-time-tag", "curves-step-seq2seq", "curves-time-seq2seq",
        "confusion", "tags", "confusion", "attention", "gradflow"]
    assert text.count('<pre class="sample">') == 2  # both language models
    for name in FAMILIES:
        assert f"<h2>{name}</h2>" in text


def test_the_page_fetches_nothing_and_its_ids_are_unique(report_page):
    text = report_page[0].read_text()
    assert not re.search(r"<(link|img|iframe|object|embed)\b", text)
    assert not re.search(r"\bsrc=", text) and "@import" not in text and "url(http" not in text
    assert not re.search(r'href="(?!#|data:image/png;base64,)', text)  # within the page
    ids = re.findall(r'\bid="([^"]+)"', text)
    assert len(ids) == len(set(ids)) > 100


def test_a_moved_corpus_and_a_damaged_metrics_line_are_notes_not_errors(family_runs, tmp_path):
    root = tmp_path / "moved"
    shutil.copy(family_runs["cls"].parent / "cls.tsv", tmp_path / "cls.tsv")
    shutil.copytree(family_runs["cls"], root)
    with open(root / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 99, "train_lo\n')
    r = invoke("report", root, "-o", tmp_path / "r.html")
    assert r.exit_code == 0, r.output  # the corpus recorded is still where it was
    assert "1 line of" in r.stderr and "skipped" in r.stderr
    (family_runs["cls"].parent / "cls.tsv").rename(tmp_path / "away.tsv")
    try:
        r = invoke("report", root, "-o", tmp_path / "r.html")
    finally:
        (tmp_path / "away.tsv").rename(family_runs["cls"].parent / "cls.tsv")
    assert r.exit_code == 0, r.output
    assert "its data could not be read again" in r.stderr and "cls.tsv" in r.stderr
    text = (tmp_path / "r.html").read_text()
    assert figures_in(text) == ["curves-step-classify", "curves-time-classify"]
    assert "could not be read (damaged, or being written)" in text


def test_a_run_with_metrics_but_no_checkpoint_yet_shows_its_curves(family_runs, tmp_path):
    d = tmp_path / "early"
    d.mkdir()
    lines = (family_runs["gru"] / "metrics.jsonl").read_text().splitlines()
    (d / "metrics.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:17])
    (d / "train.lock").write_text("1")
    r = invoke("report", d, "-o", tmp_path / "r.html")
    assert r.exit_code == 0, r.output
    text = (tmp_path / "r.html").read_text()
    assert figures_in(text) == ["curves-step-lm", "curves-time-lm"]
    assert "no checkpoint yet" in text and "training (train.lock present)" in text


def test_a_run_is_reported_while_it_trains(tmp_path):
    (tmp_path / "austen.txt").write_text(AUSTEN * 4)
    proc = subprocess.Popen(train_argv(tmp_path / "austen.txt", tmp_path / "run", "--steps",
                                       100000, "--minutes", 2, "-q"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(tmp_path / "run" / "last.npz", proc)
        for i in range(2):
            r = invoke("report", tmp_path / "run", "-o", tmp_path / f"r{i}.html",
                       "--sample-length", 20)
            assert r.exit_code == 0, r.output
            assert "training (train.lock present)" in (tmp_path / f"r{i}.html").read_text()
            r = invoke("plot", tmp_path / "run", "-o", tmp_path / f"c{i}.svg")
            assert r.exit_code == 0, r.output
        assert proc.poll() is None, "the trainer stopped before the reports were made"
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


def test_what_is_not_a_run_is_a_one_line_error(tmp_path):
    one_line_error(invoke("report", tmp_path / "missing", "-o", tmp_path / "r.html"),
                   "run not found")
    one_line_error(invoke("report", tmp_path, "-o", tmp_path / "r.html"), "not a run directory")
    (tmp_path / "x.npz").write_text("not a zip")
    one_line_error(invoke("plot", tmp_path / "x.npz", "-o", tmp_path / "r.png"),
                   "not a charrnn checkpoint")
    assert r_missing(tmp_path)


def r_missing(tmp_path):
    return not (tmp_path / "r.html").exists() and not (tmp_path / "r.png").exists()


def test_the_title_and_the_sample_follow_the_options(family_runs, tmp_path):
    r = invoke("report", family_runs["lstm"], "-o", tmp_path / "r.html", "--title", "A <b>",
               "--sample-length", 0)
    text = (tmp_path / "r.html").read_text()
    assert "<title>A &lt;b&gt;</title>" in text and '<pre class="sample">' not in text
    assert r.exit_code == 0
