"""What `train`, `info` and `eval` say a labelled file holds: copies, conflicting labels named,
the accuracy ceiling, a class with no text of its own, a --val file's overlap with training."""

import json

import pytest

from tests.helpers import invoke

SIZES = ["--hidden", "8", "--layers", "1", "--batch", "8", "--eval-every", "5", "--steps", "5",
         "--warmup", "0"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("summary")
    rows = ["Abel\tFrench", "Abel\tEnglish", "Abel\tEnglish", "Smith\tScottish",
            "Smith\tEnglish", "Zed\tGerman", "Zed\tGerman"]
    rows += [f"{c}{i}\t{y}" for i in range(30) for c, y in (("w", "English"), ("f", "French"),
                                                             ("g", "German"))]
    (d / "small.tsv").write_text("\n".join(rows) + "\n")
    (d / "val.tsv").write_text("Abel\tEnglish\nw1\tEnglish\nnew\tFrench\nf2\tFrench\n")
    return d


def test_train_names_the_conflicts_and_the_ceiling(files, tmp_path):
    r = invoke("train", "--task", "classify", files / "small.tsv", "--out", tmp_path / "r",
               *SIZES)
    assert r.exit_code == 0, r.output
    lines = r.stderr.splitlines()
    data = next(x for x in lines if x.startswith("data: "))
    assert data.startswith("data: 97 examples, 93 distinct texts, 3 with copies, 2 with more "
                           "than one of their labels (e.g. 'Abel': English 2, French 1; "
                           "'Smith': Scottish 1, English 1)")
    assert any(x.startswith("validation part: ") and "accuracy ceiling" in x for x in lines)
    info = invoke("info", "-c", tmp_path / "r")
    assert "'Abel': English 2, French 1" in info.stdout
    held = json.loads(invoke("info", "-c", tmp_path / "r", "--json").stdout)["data"]
    assert held["data"]["conflicting_texts"] == 2 and held["val_overlap"] is None
    assert held["data"]["accuracy_ceiling"] == (97 - 2) / 97  # Abel's French, one Smith


def test_a_val_file_s_overlap_with_training_is_counted(files, tmp_path):
    r = invoke("train", "--task", "classify", files / "small.tsv", "--val", files / "val.tsv",
               "--out", tmp_path / "r", *SIZES)
    assert r.exit_code == 0, r.output
    assert ("warning: 3 of the 4 validation examples (3 distinct texts) are also in the "
            "training data") in r.stderr
    held = json.loads(invoke("info", "-c", tmp_path / "r", "--json").stdout)["data"]
    assert held["val_overlap"] == {"examples": 3, "distinct_texts": 3, "of_examples": 4}


def test_eval_reports_the_ceiling_and_flags_a_class_without_text_of_its_own(files, tmp_path):
    r = invoke("train", "--task", "classify", files / "small.tsv", "--out", tmp_path / "r",
               *SIZES)
    assert r.exit_code == 0, r.output
    r = invoke("eval", "-c", tmp_path / "r", files / "small.tsv")
    assert r.exit_code == 0, r.output
    assert " of a possible 0.9794 " in r.stdout  # 95 / 97
    assert "(97 examples, 93 distinct texts)" in r.stdout
    assert "no text of its own" in r.stderr
    scottish = next(x for x in r.stderr.splitlines() if x.startswith("│ Scottish"))
    assert scottish.rstrip(" │").endswith(" *")
    j = json.loads(invoke("eval", "-c", tmp_path / "r", files / "small.tsv", "--json").stdout)
    assert j["classes_without_own_text"] == ["Scottish"]
    assert (j["examples"], j["distinct_texts"], j["duplicated_texts"],
            j["conflicting_texts"]) == (97, 93, 3, 2)
    assert j["accuracy_ceiling"] == 95 / 97
    own = [y for y in j["labels"] if y != "Scottish"]
    assert j["macro_accuracy_own"] == pytest.approx(
        sum(j["per_class"][y]["recall"] for y in own) / len(own))


def test_tag_and_seq2seq_runs_say_what_their_data_holds(tmp_path):
    (tmp_path / "seg.tsv").write_text("".join(f"ab{c}\tBIB\nab{c}\tBII\n" for c in "cdefghijkl"))
    r = invoke("train", "--task", "tag", tmp_path / "seg.tsv", "--out", tmp_path / "t", *SIZES)
    assert r.exit_code == 0, r.output
    assert ("data: 20 examples, 10 distinct texts, 10 with copies, 10 with more than one of "
            "their tags (e.g. 'abc' (2 tag strings)") in r.stderr
    (tmp_path / "pairs.tsv").write_text("".join(f"x{i}\ty{i}\nx{i}\tz{i}\n" for i in range(20)))
    r = invoke("train", "--task", "seq2seq", tmp_path / "pairs.tsv", "--out", tmp_path / "s",
               *SIZES)
    assert r.exit_code == 0, r.output
    assert "data: 40 examples, 20 distinct texts, 20 with copies, 20 with more than one of their " \
           "targets (references) (e.g. 'x0' (2 references)" in r.stderr
