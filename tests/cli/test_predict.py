"""`charrnn train --task classify|tag`, `predict` and `eval` on labelled files, through CliRunner;
exact resume of a classifier run."""

import json
import random

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import checkpoint as C
from charrnn.cli import cli

SIZES = ["--hidden", "12", "--layers", "1", "--batch", "16", "--eval-every", "20", "--dtype", "float64", "-q"]


def run(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("labelled")
    rnd = random.Random(0)
    rows = []
    for i in range(240):  # vowels against consonants, unbalanced 2:1
        kind = "vowel" if i % 3 == 0 else "cons"
        letters = "aeiou" if kind == "vowel" else "bcdfgkst"
        rows.append("".join(rnd.choice(letters) for _ in range(rnd.randint(2, 7))) + "\t" + kind)
    (d / "cls.tsv").write_text("\n".join(rows) + "\n")
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "it", "ran", "to", "big", "red", "dog"]
    rows = []
    for _ in range(160):
        ws = [rnd.choice(words) for _ in range(rnd.randint(2, 5))]
        rows.append("".join(ws) + "\t" + "".join("B" + "I" * (len(w) - 1) for w in ws))
    (d / "seg.tsv").write_text("\n".join(rows) + "\n")
    r = run("train", "--task", "classify", d / "cls.tsv", "--steps", 120, "--out", d / "cls",
            *SIZES)
    assert r.exit_code == 0, r.output
    r = run("train", "--task", "tag", d / "seg.tsv", "--steps", 200, "--out", d / "seg",
            "--hidden", "24", "--batch", "16", "--eval-every", "50", "-q")
    assert r.exit_code == 0, r.output
    return d


def test_a_classifier_learns_and_predicts_labels_with_probabilities(data):
    r = run("predict", "-c", data / "cls", "aeiou", "bcdkst", "--top", 2)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["vowel", "cons"]
    for line in lines:
        f = line.split("\t")
        assert len(f) == 4 and float(f[1]) > 0.5 and abs(float(f[1]) + float(f[3]) - 1) < 1e-3


def test_predict_reads_stdin_lines_and_counts_unknown_characters(data):
    r = run("predict", "-c", data / "cls", input="aei\n\nkstb\nzzé!\n")
    assert r.exit_code == 0, r.output
    lines = r.stdout.split("\n")
    assert len(lines) == 5 and lines[1] == "" and lines[4] == ""  # 4 inputs, 4 lines
    assert [line.split("\t")[0] for line in lines[:3:2]] == ["vowel", "cons"]
    assert "4 characters outside the model's vocabulary" in r.stderr  # z, z, é and !


@pytest.mark.parametrize("args, first", [((), "vowel\t"), (("--top", 2), "vowel\t")])
def test_predict_answers_every_input_line_blank_ones_with_a_blank_line(data, args, first):
    """Output line i answers input line i, so `paste inputs outputs` lines up."""
    r = run("predict", "-c", data / "cls", *args, input="\naei\n\n\nkstb\n")
    assert r.exit_code == 0, r.output
    lines = r.stdout.split("\n")[:-1]
    assert len(lines) == 5 and [bool(x) for x in lines] == [False, True, False, False, True]
    assert lines[1].startswith(first)
    r = run("predict", "-c", data / "cls", "aei", "", "kstb")  # empty arguments too
    assert r.stdout.split("\n")[:-1][1] == "" and len(r.stdout.split("\n")) == 4
    r = run("predict", "-c", data / "seg", "--segment", input="thedog\n\nbigcat\n")
    assert r.stdout.split("\n")[:-1] == ["the dog", "", "big cat"], r.output
    r = run("predict", "-c", data / "seg", input="\n\n")  # nothing but blank lines
    assert r.exit_code == 0 and r.stdout == "\n\n", r.output


def test_eval_of_a_classifier_reports_accuracy_macro_accuracy_and_confusion(data):
    r = run("eval", "-c", data / "cls", data / "cls.tsv")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("accuracy ") and "macro accuracy" in r.stdout
    assert "recall" in r.stderr
    acc = float(r.stdout.split()[1])
    assert acc > 0.95


def test_a_tagger_segments_words(data):
    r = run("predict", "-c", data / "seg", "--segment", "thecatsatonthemat", "bigreddog")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == ["the cat sat on the mat", "big red dog"]
    r = run("predict", "-c", data / "seg", "thedog")
    assert r.stdout.strip() == "BIIBII"
    r = run("eval", "-c", data / "seg", data / "seg.tsv")
    assert r.exit_code == 0 and "F1 B" in r.stdout


def test_eval_figures_equal_an_independent_count(data):
    """accuracy and macro accuracy recomputed here from `predict`'s labels."""
    from charrnn.infer.predict import evaluate_file

    ck = C.load(C.resolve(data / "cls"))
    res = evaluate_file(ck, data / "cls.tsv")
    texts, labels = zip(*(line.split("\t") for line in (data / "cls.tsv").read_text().split("\n")
                          if line))
    r = run("predict", "-c", data / "cls", input="\n".join(texts) + "\n")
    pred = [line.split("\t")[0] for line in r.stdout.splitlines()]
    acc = np.mean([p == y for p, y in zip(pred, labels)])
    recalls = [np.mean([p == y for p, t in zip(pred, labels) if t == y]) for y in set(labels)]
    assert res["accuracy"] == pytest.approx(acc)
    assert res["macro_accuracy"] == pytest.approx(np.mean(recalls))


@pytest.mark.parametrize("args, message", [
    (["--task", "tag", "--pooling", "max"], "--pooling applies to --task classify only"),
    (["--task", "lm", "--bidirectional"], "--bidirectional applies to --task classify and tag"),
    (["--task", "classify", "--seq", "5"], "--seq applies to --task lm only"),
])
def test_options_of_other_tasks_are_usage_errors(data, args, message):
    r = run("train", data / "cls.tsv", *args, "--steps", 1, "--out", data / "never")
    assert r.exit_code == 2 and message in r.stderr


def test_malformed_data_is_one_line_naming_file_and_line(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("abc\tx\nabcd\n")
    r = run("train", "--task", "classify", bad, "--steps", 1, "--out", tmp_path / "r")
    assert r.exit_code == 1 and "bad.tsv:2: no tab" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    bad.write_text("abc\tBI\n")
    r = run("train", "--task", "tag", bad, "--steps", 1, "--out", tmp_path / "r")
    assert r.exit_code == 1 and "bad.tsv:1: 3 characters of text but 2 tags" in r.stderr


def test_language_model_commands_refuse_a_classifier(data):
    r = run("sample", "-c", data / "cls", "--length", 5)
    assert r.exit_code == 2 and "classify model" in r.stderr
    r = run("predict", "-c", data / "cls", "--segment", "abc")
    assert r.exit_code == 2 and "--segment is for tag models" in r.stderr


def test_info_describes_a_classifier(data):
    r = run("info", data / "cls")
    assert r.exit_code == 0, r.output
    assert "classify" in r.stdout and "bidirectional gru 12x1" in r.stdout


def test_a_classifier_run_resumes_bit_for_bit(data, tmp_path):
    base = ["train", "--task", "classify", data / "cls.tsv", "--hidden", 8, "--batch", 16,
            "--eval-every", 10, "--dtype", "float64", "--dropout", 0.3, "--layers", 2,
            "--schedule", "constant", "-q"]
    assert run(*base, "--steps", 50, "--out", tmp_path / "full").exit_code == 0
    assert run(*base, "--steps", 20, "--out", tmp_path / "part").exit_code == 0
    r = run("train", "--resume", "--out", tmp_path / "part", "--steps", 50, "-q")
    assert r.exit_code == 0, r.output
    a, b = C.load(tmp_path / "full" / "last.npz"), C.load(tmp_path / "part" / "last.npz")
    assert a.meta["step"] == b.meta["step"] == 50
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)
    assert json.dumps(a.meta["labels"]) == json.dumps(b.meta["labels"]) == '["cons", "vowel"]'


def test_eval_json_has_the_documented_keys(data):
    r = run("eval", "-c", data / "cls", data / "cls.tsv", "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert {"accuracy", "macro_accuracy", "per_class", "confusion", "labels",
            "unknown_characters"} <= set(got) and got["task"] == "classify"
    assert sum(map(sum, got["confusion"])) == got["examples"] == 240
    r = run("eval", "-c", data / "seg", data / "seg.tsv", "--json")
    got = json.loads(r.stdout)
    assert set(got["per_tag_f1"]) == {"B", "I"} and 0 <= got["accuracy"] <= 1


def test_eval_json_of_a_language_model(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("abcabcabd " * 100)
    assert run("train", text, "--hidden", 8, "--batch", 4, "--seq", 8, "--steps", 3,
               "--out", tmp_path / "r", "-q").exit_code == 0
    r = run("eval", "-c", tmp_path / "r", text, "--json")
    got = json.loads(r.stdout)
    assert got["task"] == "lm" and got["chars_scored"] == 999
    assert got["bpc"] == pytest.approx(got["nats"] / np.log(2))


def test_a_folder_of_label_files_and_a_validation_file(tmp_path):
    """--task classify on a folder of <label>.txt files, validated on --val (whose unknown
    characters are read as the unknown symbol, not refused)."""
    rnd = random.Random(1)
    for label, letters in (("low", "abcdefgh"), ("high", "stuvwxyz")):
        (tmp_path / f"{label}.txt").write_text(
            "".join("".join(rnd.choice(letters) for _ in range(5)) + "\n" for _ in range(40)))
    (tmp_path / "val.tsv").write_text("abcd\tlow\nstuv\thigh\nabcé\tlow\n")
    r = run("train", "--task", "classify", tmp_path, "--val", tmp_path / "val.tsv", "--steps", 30,
            "--hidden", 8, "--layers", 1, "--batch", 8, "--eval-every", 10, "--out",
            tmp_path / "run", "-q")
    assert r.exit_code == 0, r.output
    ck = C.load(tmp_path / "run" / "best.npz")
    assert ck.meta["labels"] == ["high", "low"]
    evals = [h for h in ck.meta["history"] if h["kind"] == "eval"]
    assert evals and all(0 <= h["val_acc"] <= 1 for h in evals)
    bad = tmp_path / "val2.tsv"
    bad.write_text("abcd\tmiddle\n")
    r = run("train", "--task", "classify", tmp_path, "--val", bad, "--steps", 1, "--out",
            tmp_path / "run2", "-q")
    assert r.exit_code == 1 and "val2.tsv:1: label 'middle' does not occur" in r.stderr


@pytest.fixture(scope="module")
def copy_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("s2s")
    rnd = random.Random(2)
    rows = ["".join(rnd.choice("abcde") for _ in range(rnd.randint(2, 4))) for _ in range(300)]
    (d / "copy.tsv").write_text("".join(f"{w}\t{w[::-1]}\n" for w in rows))
    r = run("train", "--task", "seq2seq", d / "copy.tsv", "--steps", 400, "--hidden", 32,
            "--batch", 32, "--eval-every", 200, "--out", d / "run", "-q")
    assert r.exit_code == 0, r.output
    return d


def test_seq2seq_predict_eval_and_the_attention_picture(copy_run):
    d = copy_run
    r = run("predict", "-c", d / "run", "abc", "edda", "--show-attention")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == ["cba", "adde"]
    assert "⏎" in r.stderr and "█" in r.stderr  # a row per output, the end marker's too
    r2 = run("predict", "-c", d / "run", "abc", "edda", "--beam", 3)
    assert r2.stdout == r.stdout
    r = run("predict", "-c", d / "run", input="abc\n\nedda\n")  # a blank line keeps its place
    assert r.stdout.split("\n")[:-1] == ["cba", "", "adde"], r.output
    r = run("eval", "-c", d / "run", d / "copy.tsv", "--json")
    got = json.loads(r.stdout)
    assert got["task"] == "seq2seq" and got["exact_match"] > 0.95
    assert set(got) >= {"exact_match", "char_error_rate", "examples", "unknown_characters"}


def test_the_classifier_summary_names_the_weighted_error_and_the_accuracy_beside_it(data,
                                                                                    tmp_path):
    r = run("train", "--task", "classify", data / "cls.tsv", "--steps", 20, "--out",
            tmp_path / "c", "--hidden", 8, "--batch", 16, "--eval-every", 10)
    assert r.exit_code == 0, r.output
    ck = C.load(C.resolve(tmp_path / "c"))
    evals = [h for h in ck.meta["history"] if h["kind"] == "eval"]
    best = min(evals, key=lambda h: h["val_error"])  # the evaluation best.npz was chosen by
    rows = {cells[1].strip(): cells[2].strip() for cells in
            (line.split("│") for line in r.stderr.splitlines()) if len(cells) == 4}
    assert rows["best val error (weighted)"] == f"{best['val_error']:.4f}", rows
    assert rows["accuracy at best"] == f"{best['val_acc']:.1%}", rows
    assert f"val error {evals[0]['val_error']:.3f}" in r.stderr  # the progress names it too
    assert f"acc {evals[0]['val_acc']:.1%}" in r.stderr


def test_info_on_an_encoder_decoder_shows_its_real_sizes_and_both_vocabularies(copy_run):
    r = run("info", copy_run / "run")
    assert r.exit_code == 0, r.output
    ck = C.load(C.resolve(copy_run / "run"))
    settings = r.stdout.split("training settings")[1].split("\n\n")[0]
    assert "target_size=0" not in settings and "=None" not in settings, settings
    assert f"target_size={len(ck.meta['target_vocab'])}" in settings
    lines = r.stdout.splitlines()
    assert any(line.startswith("source: ") for line in lines)
    target = next(line for line in lines if line.startswith("target: "))
    assert all(c in target for c in "abcde")
    assert f"{len(ck.vocab)} source characters, {len(ck.meta['target_vocab'])} target" in r.stdout


def test_beam_and_temperature_are_exclusive(copy_run):
    """--beam 3 --temperature 0.5 used to sample and drop the beam without a word."""
    r = run("predict", "-c", copy_run / "run", "abc", "--beam", 3, "--temperature", 0.5)
    assert r.exit_code == 2 and "give --beam or --temperature, not both" in r.stderr
    assert r.stdout == ""


def test_decoding_options_are_for_seq2seq_models_only(data):
    r = run("predict", "-c", data / "cls", "abc", "--beam", 2)
    assert r.exit_code == 2 and "--beam is for seq2seq models" in r.stderr
