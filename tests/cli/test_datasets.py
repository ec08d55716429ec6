"""The data-set generators' command lines (`python -m charrnn.data.segmentation`, `python -m
charrnn.data.synthetic`): their TSV against lines built here, and bad input as one line."""

import subprocess
import sys

import pytest
from click.testing import CliRunner

from charrnn.cli.datasets import segmentation, synthetic
from charrnn.data import synthetic as Y
from tests.helpers import one_line_error

POEM = "The cat  sat\n\n  on the mat.\nA dog, barking;\n" + "".join(
    f"line {i} of {i + 1} words\n" for i in range(17))  # 20 non-blank lines


def python_m(module, *args):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True,
                          text=True, check=False)


def invoke(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args])


def tagged(line):
    """The example of one line, written another way: a character at a time."""
    text, tags, start = "", "", True
    for ch in line:
        if ch in " \t":
            start = True
        else:
            text, tags, start = text + ch, tags + ("B" if start else "I"), False
    return f"{text}\t{tags}\n" if text else ""


def test_segmentation_writes_each_line_without_spaces_and_its_word_starts(tmp_path):
    (tmp_path / "poem.txt").write_text(POEM, encoding="utf-8")
    r = python_m("charrnn.data.segmentation", tmp_path / "poem.txt")
    assert r.returncode == 0 and r.stderr == ""
    want = [tagged(line) for line in POEM.split("\n") if tagged(line)]
    assert r.stdout == "".join(want)
    assert want[:2] == ["Thecatsat\tBIIBIIBII\n", "onthemat.\tBIBIIBIII\n"]
    parts = {p: invoke(segmentation, tmp_path / "poem.txt", "--part", p).stdout
             for p in ("train", "test")}
    assert parts["train"] == "".join(want[:18]) and parts["test"] == "".join(want[18:])


def test_segmentation_reads_the_encoding_given(tmp_path):
    (tmp_path / "latin.txt").write_bytes("café au lait\n".encode("latin-1"))
    r = invoke(segmentation, tmp_path / "latin.txt", "--encoding", "latin-1")
    assert r.exit_code == 0 and r.stdout == "caféaulait\tBIIIBIBIII\n"
    one_line_error(invoke(segmentation, tmp_path / "latin.txt"), "latin.txt", "byte offset 3",
                   code=1, alone=True)


def test_a_missing_input_is_one_line_through_python_m(tmp_path):
    for module, args in (("charrnn.data.segmentation", [tmp_path / "MISSING"]),
                         ("charrnn.data.synthetic", ["dates", "--exclude", tmp_path / "MISSING"])):
        r = python_m(module, *args)
        assert (r.returncode, r.stdout) == (1, "")
        assert r.stderr == f"Error: corpus not found: {tmp_path / 'MISSING'}\n", r.stderr


@pytest.mark.parametrize("kind,needle", [("dir", "is a directory"), ("binary", "NUL"),
                                         ("empty", "empty")])
def test_unusable_inputs_are_one_line(tmp_path, kind, needle):
    p = tmp_path / "in.tsv"
    if kind == "dir":
        p.mkdir()
    elif kind == "binary":
        p.write_bytes(b"ab\x00cd\n")
    else:
        p.write_text("")
    one_line_error(invoke(segmentation, p), needle, code=1, alone=True)
    one_line_error(invoke(synthetic, "addition", "--exclude", p), needle, code=1, alone=True)


def test_synthetic_writes_the_pairs_and_leaves_out_the_excluded_sources(tmp_path):
    r = invoke(synthetic, "dates", "--count", 30, "--seed", 4)
    assert r.exit_code == 0 and r.stdout == "".join(
        f"{s}\t{t}\n" for s, t in Y.generate("dates", 30, 4))
    assert invoke(synthetic, "addition").stdout.count("\n") == 1000  # the default count
    (tmp_path / "train.tsv").write_text("\ufeff" + r.stdout.replace("\n", "\r\n") + "\n")
    held = invoke(synthetic, "dates", "--count", 30, "--seed", 4, "--exclude",
                  tmp_path / "train.tsv")
    assert held.exit_code == 0
    held_sources = [line.split("\t")[0] for line in held.stdout.splitlines()]
    assert len(set(held_sources)) == 30
    assert not set(held_sources) & {s for s, _ in Y.generate("dates", 30, 4)}


@pytest.mark.parametrize("args,needle", [
    (["dates", "--count", "0"], "'--count'"), (["dates", "--count", "x"], "'--count'"),
    (["dates", "--seed", "-1"], "'--seed'"), (["numbers"], "'numbers' is not one of 'addition',"),
    ([], "Missing argument")])
def test_synthetic_usage_errors_name_what_is_wrong(args, needle):
    r = invoke(synthetic, *args)
    assert r.exit_code == 2 and r.stdout == "" and "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and needle in errors[0], r.stderr


def test_synthetic_says_when_it_cannot_find_enough_distinct_sources(monkeypatch):
    monkeypatch.setitem(Y.KINDS, "addition", lambda rng: ("1+1", "2"))
    one_line_error(invoke(synthetic, "addition", "--count", 2),
                   "cannot find 2 distinct addition pairs", code=1, alone=True)


@pytest.mark.parametrize("command", [segmentation, synthetic])
def test_every_option_has_help_and_the_usage_names_the_module(command):
    assert all(o.help for o in command.params if o.param_type_name == "option")
    r = python_m(f"charrnn.data.{command.name}", "--help")
    assert r.returncode == 0 and r.stdout.startswith(
        f"Usage: python -m charrnn.data.{command.name} [OPTIONS]")
