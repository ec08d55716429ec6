"""`charrnn train --task generate`, `sample --label`, `eval` of a generator (--novelty,
--judge) through CliRunner: results on stdout, one-line errors."""

import json

import pytest

from tests.helpers import invoke, one_line_error

WORDS = {"Alpha": "bonito", "Beta": "kurama"}
FAST = ["--hidden", "16", "--batch", "8", "--lr", "2e-2", "--warmup", "5", "--dropout", "0",
        "--dtype", "float64", "--schedule", "constant", "--processes", "1", "--quiet"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(data folder, a generator run, a classifier run) trained on two labels, each with its
    own repeated word (one distinct text per label: the set is its own --val file)."""
    root = tmp_path_factory.mktemp("gen")
    data = root / "words"
    data.mkdir()
    for label, word in WORDS.items():
        (data / f"{label}.txt").write_text(f"{word}\n" * 20)
    gen = invoke("train", data, "--task", "generate", "--steps", "120", "--eval-every", "40",
                 "--val", data, "--out", root / "gen", *FAST)
    assert gen.exit_code == 0, gen.stderr
    clf = invoke("train", data, "--task", "classify", "--steps", "30", "--eval-every", "30",
                 "--val", data, "--out", root / "clf", *FAST)
    assert clf.exit_code == 0, clf.stderr
    return data, root / "gen", root / "clf"


def test_sample_label_prints_n_texts_one_a_line(runs):
    _, gen, _ = runs
    for label, word in WORDS.items():
        r = invoke("sample", "-c", gen, "--label", label, "-n", "4", "-t", "0.3", "--seed", "1")
        assert r.exit_code == 0, r.stderr
        assert r.stdout == f"{word}\n" * 4
        assert f"sampling {label}" in r.stderr and "seed 1" in r.stderr
    r = invoke("sample", "-c", gen, "-l", "Beta", "-n", "2", "--prime", "ku", "--greedy",
               "--json")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(x["label"], x["prime"], x["text"], x["index"]) for x in rows] == \
        [("Beta", "ku", "rama", 0), ("Beta", "ku", "rama", 1)]
    r = invoke("sample", "-c", gen, "-l", "Alpha", "-n", "1", "--length", "3", "--greedy")
    assert r.stdout == "bon\n"


def test_sample_label_errors(runs, trained):
    _, gen, _ = runs
    one_line_error(invoke("sample", "-c", gen, "-n", "3"),
                   "this model generates for a label; give one of: Alpha, Beta")
    one_line_error(invoke("sample", "-c", gen, "--label", "Gamma"),
                   "unknown label 'Gamma'; the labels are: Alpha, Beta")
    one_line_error(invoke("sample", "-c", gen, "--label", "Alpha", "--prime", "Z"),
                   "not in the vocabulary: 'Z'")
    one_line_error(invoke("sample", "-c", gen, "--label", "Alpha", "-i"), "--interactive",
                   code=2)
    one_line_error(invoke("sample", "-c", trained / "run", "--label", "Alpha"), "--label is for a "
                   "generator", code=2)
    one_line_error(invoke("sample", "-c", trained / "run", "-n", "5", "--length", "5"), "give one of",
                   code=2)


def test_eval_gives_bits_per_character_per_label_and_novelty(runs, tmp_path):
    data, gen, _ = runs
    r = invoke("eval", "-c", gen, data, "--json", "--novelty", "-n", "5", "-l", "Beta")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["task"] == "generate" and out["examples"] == 40 and out["chars"] == 280
    assert set(out["per_label"]) == {"Alpha", "Beta"} and out["bpc"] < 0.1
    assert set(out["novelty"]["per_label"]) == {"Beta"} and out["novelty"]["generated"] == 5
    r = invoke("eval", "-c", gen, data)
    assert r.stdout.startswith("bits per character ") and "per label" in r.stderr


def test_eval_judge_reports_the_classifiers_agreement(runs):
    _, gen, clf = runs
    r = invoke("eval", "-c", gen, "--judge", clf, "-n", "10", "--json")
    assert r.exit_code == 0, r.stderr
    j = json.loads(r.stdout)["judge"]
    assert j["generated"] == 20 and set(j["per_label"]) == {"Alpha", "Beta"}
    assert j["agreement"] >= 0.9
    r = invoke("eval", "-c", gen, "--judge", clf, "-n", "3", "-l", "Alpha")
    assert r.exit_code == 0 and r.stdout.startswith("agreement ") and "of 3)" in r.stdout
    r = invoke("eval", "-c", gen, "--judge", clf, "-n", "5", "-t", "0.2", "--json")
    out = json.loads(r.stdout)
    assert out["temperature"] == 0.2 and out["judge"]["agreement"] == 1.0


def test_a_generator_samples_from_the_nucleus_unless_told(runs, tmp_path):
    """sample and eval draw a generator's texts at top-p 0.9 unless told: the default gives what
    an explicit --top-p 0.9 gives, and not what --top-p 1 (every character) gives, on a barely
    trained model whose every character is likely."""
    data, _, clf = runs
    r = invoke("train", data, "--task", "generate", "--steps", "1", "--val", data, "--out",
               tmp_path / "raw", *FAST)
    assert r.exit_code == 0, r.stderr

    def made(*given):
        r = invoke("sample", "-c", tmp_path / "raw", "-l", "Alpha", "-n", "30", "--seed", "3",
                   *given)
        assert r.exit_code == 0, r.stderr
        return r.stdout

    assert made() == made("--top-p", "0.9") != made("--top-p", "1")
    assert len(made("--greedy").splitlines()) == 30  # greedy takes no nucleus (and no error)

    def judged(*given):
        r = invoke("eval", "-c", tmp_path / "raw", "--judge", clf, "--novelty", "-n", "30",
                   "--json", *given)
        assert r.exit_code == 0, r.stderr
        return json.loads(r.stdout)

    default, told = judged(), judged("--top-p", "0.9")
    assert default["top_p"] == 0.9 and judged("--top-p", "1")["top_p"] == 1.0
    assert default["judge"] == told["judge"] and default["novelty"] == told["novelty"]


def test_eval_errors(runs, trained, tmp_path):
    data, gen, clf = runs
    one_line_error(invoke("eval", "-c", gen), "give FILE", code=2)
    one_line_error(invoke("eval", "-c", gen, data, "--show"), "for language models", code=2)
    one_line_error(invoke("eval", "-c", gen, "--judge", gen), "must be a classifier")
    one_line_error(invoke("eval", "-c", gen, "--judge", clf, "-l", "Gamma"),
                   "unknown label 'Gamma'; the labels are: Alpha, Beta")
    one_line_error(invoke("eval", "-c", trained / "run", data, "--novelty"), "for a generator", code=2)
    one_line_error(invoke("eval", "-c", trained / "run", data, "--top-p", "0.5"),
                   "--top-p are for a generator", code=2)
    bad = tmp_path / "bad.tsv"
    bad.write_text("bonito\tAlpha\nkurama\tGamma\n")
    one_line_error(invoke("eval", "-c", gen, bad), "bad.tsv:2: label 'Gamma' does not occur")
    bad.write_text("bonito\tAlpha\nkurama\n")
    one_line_error(invoke("eval", "-c", gen, bad), "bad.tsv:2: no tab")


def test_train_refuses_malformed_files_and_foreign_options(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("bonito\tAlpha\nkurama\tBeta\tx\n")
    one_line_error(invoke("train", bad, "--task", "generate", "--out", tmp_path / "r", *FAST),
                   "bad.tsv:2: 2 tabs")
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "A.txt").write_text("ab\tc\n")
    one_line_error(invoke("train", folder, "--task", "generate", "--out", tmp_path / "r", *FAST),
                   "A.txt:1: a tab")
    one_line_error(invoke("train", bad, "--task", "classify", "--condition", "input"),
                   "--condition applies to --task generate only", code=2)


def test_info_describes_a_generator(runs):
    _, gen, _ = runs
    r = invoke("info", gen)
    assert r.exit_code == 0, r.stderr
    text = r.stdout + r.stderr
    assert "generate" in text and "gru 16x1 generator, condition (2) into the initial state" in text
    assert "bits per character (END included)" in text
