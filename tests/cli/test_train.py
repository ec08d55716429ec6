"""`charrnn train` through CliRunner: what it prints, where it writes, and the one-line answer
to every bad corpus, option and run directory. Signals, kills and full disks are in
test_train_faults.py."""

import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from charrnn import checkpoint as C
from charrnn.cli import cli
from charrnn.parallel.blas import openblas
from charrnn.train.trainer import TrainConfig, train
from tests.helpers import AUSTEN, TINY, TINY_QUIET, invoke, one_line_error, tiny

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "en"


def run(*args):
    return invoke("train", *args)


def test_trains_prints_best_path_and_summary(tmp_path, corpus):
    r = run(corpus, "--out", tmp_path / "r", "--steps", 10, *TINY)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == f"{tmp_path / 'r' / 'best.npz'}\n"
    assert "step 5/10" in r.stderr and "step 10/10" in r.stderr and "val" in r.stderr
    assert "training done" in r.stderr and "best val bits/char" in r.stderr
    assert {p.name for p in (tmp_path / "r").iterdir()} == {"best.npz", "last.npz",
                                                           "metrics.jsonl"}


def test_default_run_directory_is_named_after_the_corpus(tmp_path, corpus, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run(corpus, "--steps", 5, *TINY)
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "runs" / "austen" / "last.npz").is_file()
    r = run(corpus, "--resume", "--steps", 7)  # finds runs/austen again
    assert r.exit_code == 0, r.stderr
    assert C.load(tmp_path / "runs" / "austen" / "last.npz").meta["step"] == 7


def test_bundled_corpus_is_the_default(tmp_path):
    # the tiny Shakespeare of the repository's corpora/, which the README names as the default
    shakespeare = (ROOT / "corpora" / "tinyshakespeare.txt").read_bytes()
    assert Path(TrainConfig().corpus).read_bytes() == shakespeare
    r = run("--out", tmp_path / "r", "--steps", 1, *TINY_QUIET)  # no CORPUS
    assert r.exit_code == 0, r.stderr
    assert Path(C.load(tmp_path / "r" / "last.npz").meta["train"]["corpus"]).read_bytes() == \
        shakespeare


# --- the defaults are what the documentation says they are --------------------------------------

def _run_config(tmp_path, *args):
    """What a one-step `charrnn train ARGS` run records of its settings: meta["train"] with the
    model's settings merged in."""
    out = tmp_path / f"r{len(list(tmp_path.iterdir()))}"
    r = run(*args, "--steps", 1, "--out", out, "-q", "--processes", 1)
    assert r.exit_code == 0, r.stderr
    saved = C.load(out / "last.npz").meta["train"]
    return {**saved, **saved["model"]}


def _value(text):
    """A table cell's value: a number, a `word`, or "bidirectional"; None for prose."""
    text = text.strip()
    if re.fullmatch(r"[0-9.e-]+", text):
        return float(text)
    if text == "bidirectional" or re.fullmatch(r"`[\w+]+`", text):  # `mean+max` too
        return {"bidirectional": True}.get(text, text.strip("`"))
    return None


def _guide_table():
    """The own-text guide's table of `charrnn train` options, {option: (value, tasks)}: each row
    with one value per option; tasks from the meaning's leading "classify, tag:" (None: lm)."""
    stated = {}
    for line in (DOCS / "guides" / "own-text.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        names = re.findall(r"`--([a-z-]+)", cells[0])
        values = cells[1].split(",") if len(cells) == 3 else []
        if names and len(names) == len(values):
            tasks = re.match(r"((?:[a-z0-9]+(?:, )?)+): ", cells[2])
            for name, value in zip(names, values, strict=True):
                if _value(value) is not None:
                    stated[name.replace("-", "_")] = (_value(value),
                                                      tasks and tasks.group(1).split(", "))
    return stated


def test_the_language_models_defaults_are_the_guides(tmp_path):
    stated = {k: v for k, (v, tasks) in _guide_table().items() if tasks is None}
    stated.pop("kernels", None)  # where the fused kernels build, the default may depend on it
    assert {"cell", "hidden", "layers", "dropout", "dtype", "seed", "batch", "seq", "optimizer",
            "lr", "schedule", "warmup", "clip", "eval_every", "patience", "val_frac"} <= set(stated)
    (tmp_path / "text.txt").write_text(AUSTEN * 6)  # room for one chunk of 64 x 64
    saved = _run_config(tmp_path, tmp_path / "text.txt")
    assert {k: saved.get(k) for k in stated} == stated


def _help_defaults():
    """The other tasks' defaults as `charrnn train --help` states them, {task: {setting: value}}:
    "(classify: a bidirectional GRU 256x2, dropout 0.4, batch 64, lr 5e-3; ...; eval every 200
    steps)"."""
    text = " ".join(run("--help").stdout.split())
    eval_every = float(re.search(r"eval every (\d+) steps\)", text).group(1))
    stated = {}
    for task, words in re.findall(r"(classify|tag|seq2seq|generate): (a [^;)]+)", text):
        net = re.match(r"a (bidirectional )?(GRU|LSTM|RNN) (\d+)x(\d+)", words)
        s = {"cell": net.group(2).lower(), "hidden": float(net.group(3)),
             "layers": float(net.group(4)), "eval_every": eval_every}
        if net.group(1):
            s["bidirectional"] = True
        if attention := re.search(r"with (\w+) attention", words):
            s["attention"] = attention.group(1)
        s |= {k: float(v) for k, v in re.findall(r"(dropout|batch|lr) ([0-9.e-]+)", words)}
        stated[task] = s
    return stated


WORDS = [f"{w}{i}" for i, w in enumerate(AUSTEN.split() * 4)][:100]  # 100 distinct
DATA = {"classify": "".join(f"{w}\t{'ab'[i % 2]}\n" for i, w in enumerate(WORDS)),
        "tag": "".join(f"{w}\tB{'I' * (len(w) - 1)}\n" for w in WORDS),
        "seq2seq": "".join(f"{w}\t{w[::-1]}\n" for w in WORDS)}
DATA["generate"] = DATA["classify"]


def test_the_other_tasks_defaults_are_what_help_and_the_guide_say(tmp_path):
    stated = _help_defaults()
    assert set(stated) == {"classify", "tag", "seq2seq", "generate"}
    for option, (value, tasks) in _guide_table().items():
        for task in tasks or ():
            stated[task][option] = value
    assert {"class_weights", "pooling", "bidirectional"} <= set(stated["classify"])
    for task, want in stated.items():
        (tmp_path / f"{task}.tsv").write_text(DATA[task])
        saved = _run_config(tmp_path, "--task", task, tmp_path / f"{task}.tsv")
        assert {k: saved.get(k) for k in want} == want, task


def test_invalid_utf8_names_the_byte_offset(tmp_path):
    p = tmp_path / "latin.txt"
    p.write_bytes("naïve café ".encode("latin-1") * 50)
    one_line_error(run(p, "--out", tmp_path / "r", *TINY), "latin.txt", "byte offset 2",
                   "--encoding", code=1)
    r = run(p, "--out", tmp_path / "r", "--encoding", "latin-1", "--steps", 2, *TINY)
    assert r.exit_code == 0, r.stderr


@pytest.mark.parametrize("kind,needle", [("empty", "is empty"), ("dir", "is a directory"),
                                         ("missing", "not found"), ("short", "too few")])
def test_unusable_corpus(tmp_path, kind, needle):
    p = tmp_path / "c.txt"
    if kind == "empty":
        p.write_text("")
    elif kind == "dir":
        p.mkdir()
    elif kind == "short":
        p.write_text("a short text, shorter than one chunk of 4 x 16 characters")
    one_line_error(run(p, "--out", tmp_path / "r", *TINY, "--batch", 4, "--seq", 16,
                       "--steps", 1), needle, code=1)


@pytest.mark.parametrize("args", [["--hidden", "0"], ["--batch", "-3"], ["--seq", "0"],
                                  ["--val-frac", "1.5"], ["--val-frac", "0"], ["--lr", "-1"],
                                  ["--dropout", "1"], ["--steps", "0"], ["--clip", "-1"],
                                  ["--optimizer", "lion"], ["--cell", "tree"]])
def test_bad_option_values(tmp_path, corpus, args):
    r = run(corpus, "--out", tmp_path / "r", *args)
    assert r.exit_code == 2 and "Invalid value" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists()


def test_resume_errors(tmp_path, corpus):
    one_line_error(run(corpus, "--out", tmp_path / "none", "--resume"), "nothing to resume", code=1)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "last.npz").write_bytes(b"not a checkpoint")
    one_line_error(run(corpus, "--out", tmp_path / "r", "--resume"), "last.npz", code=1)
    one_line_error(run(corpus, "--out", tmp_path / "r", *TINY), "already holds a run", code=1)


def test_a_run_stopped_before_any_evaluation_prints_the_checkpoint_it_has(tmp_path, corpus,
                                                                          monkeypatch):
    from charrnn.train import trainer as T

    out = tmp_path / "r"

    def stopped_at_once(cfg, **kw):  # Ctrl-C before the first evaluation: last.npz only
        out.mkdir()
        (out / "last.npz").write_bytes(b"")
        return T.TrainResult(out, 3, 0.01, 1.0, "interrupted", None, None, [])

    monkeypatch.setattr(T, "train", stopped_at_once)
    r = CliRunner().invoke(cli, ["train", str(corpus), "--out", str(out), "-q"])
    assert r.exit_code == 130 and r.stdout == f"{out / 'last.npz'}\n"


# --- edge cases: bad numbers, a huge vocabulary, odd file names, absurd settings --------------

@pytest.mark.parametrize("args, needle", [
    (["--layers", "0"], "--layers"), (["--eval-every", "0"], "--eval-every"),
    (["--warmup", "-1"], "--warmup"), (["--patience", "-1"], "--patience"),
    (["--epochs", "0"], "--epochs"), (["--epochs", "inf"], "epochs"),
    (["--minutes", "-1"], "--minutes"), (["--minutes", "nan"], "minutes"),
    (["--lr", "0"], "--lr"), (["--lr", "nan"], "lr"), (["--lr", "inf"], "lr"),
    (["--clip", "nan"], "clip"), (["--dropout", "-0.1"], "--dropout"),
    (["--val-frac", "-0.5"], "--val-frac"), (["--val-frac", "1"], "--val-frac"),
    (["--val-frac", "nan"], "--val-frac"), (["--seed", "-1"], "--seed"),
    (["--steps", "-5"], "--steps"), (["--hidden", "-1"], "--hidden"),
])
def test_train_rejects_bad_numbers(corpus, tmp_path, args, needle):
    one_line_error(invoke("train", corpus, "--out", tmp_path / "r", *TINY_QUIET, *args), needle)
    assert not (tmp_path / "r" / "last.npz").exists()


def test_a_vocabulary_too_large_for_the_memory_is_a_clear_limit(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr("charrnn.train.config._physical_memory", lambda: 2**30)  # a 1 GiB machine
    chars = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 30000))
    (tmp_path / "cjk.txt").write_text(chars * 2)
    big = ["--batch", 64, "--seq", 128, "--cell", "lstm", "--hidden", 256, "--layers", 2]
    line = one_line_error(invoke("train", tmp_path / "cjk.txt", "--out", tmp_path / "r", *big,
                                 "--steps", 1, "--threads", 1),
                          "30000 characters", "1.0 GiB", "smaller --batch")
    assert "3.6 GiB per step" in line  # 64 x 128 x 30000, lstm 256 x 2
    assert "--processes 1" not in line
    if openblas() is not None:  # + shared parameters, a worker's gradients: 3 x 38.6M values
        line = one_line_error(invoke("train", tmp_path / "cjk.txt", "--out", tmp_path / "r",
                                     *big, "--steps", 1, "--threads", 2), "1.0 GiB")
        assert "4.0 GiB per step" in line and "(or --processes 1)" in line
    r = invoke("train", tmp_path / "cjk.txt", "--out", tmp_path / "r", *TINY_QUIET, "--steps", 1,
               "--val-frac", "0.001")
    assert r.exit_code == 0, r.stderr  # small batches fit


@pytest.mark.skipif(sys.platform != "linux", reason="file names as raw bytes")
def test_file_names_that_are_not_utf8_train_save_and_resume(tmp_path):
    import os
    try:
        corpus = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.txt"))
        corpus.write_text(AUSTEN)
    except (OSError, UnicodeError):
        pytest.skip("the file system refuses such names")
    run = Path(os.fsdecode(bytes(tmp_path) + b"/r\xe9"))
    r = invoke("train", corpus, "--out", run, *TINY_QUIET, "--steps", 10)
    assert r.exit_code == 0, r.stderr
    assert C.load(run / "last.npz").meta["corpus"] == str(corpus)  # the same name back
    r = invoke("train", corpus, "--out", run, "--resume", "--steps", 15)
    assert r.exit_code == 0 and C.load(run / "last.npz").meta["step"] == 15, r.stderr


def test_a_run_directory_with_brackets_is_printed_as_it_is(corpus, tmp_path):
    run = tmp_path / "x[/]y[red]z"  # Rich markup, if it were read as such
    r = invoke("train", corpus, "--out", run, *TINY, "--steps", 5)  # not --quiet
    assert r.exit_code == 0, r.stderr
    assert r.stdout == f"{run / 'best.npz'}\n" and "x[/]y[red]z" in r.stderr.replace("\n", "")


def test_a_huge_epoch_count_is_no_limit(corpus, tmp_path):
    r = invoke("train", corpus, "--out", tmp_path / "r", *TINY_QUIET, "--epochs", "1e308",
               "--minutes", "0.002")
    assert r.exit_code == 0, r.stderr


def test_resume_with_different_model_options_is_refused(trained, tmp_path):
    run = tmp_path / "run"
    train(tiny(trained / "austen.txt", run, steps=5))
    before = (run / "last.npz").read_bytes()
    one_line_error(invoke("train", trained / "austen.txt", "--out", run, "--resume", "--hidden",
                          "16", "--cell", "gru", "--steps", 8), "cannot resume with different "
                   "settings", "--cell lstm (now gru)", "--hidden 8 (now 16)")
    assert (run / "last.npz").read_bytes() == before


def test_run_directory_that_cannot_be_created(corpus, tmp_path):
    (tmp_path / "file").write_text("x")
    one_line_error(invoke("train", corpus, "--out", tmp_path / "file" / "run", *TINY_QUIET),
                   "cannot create run directory", "Not a directory")


@pytest.mark.parametrize("hidden, batch", [(8, 4), (64, 8)])  # one process, and two (if BLAS lets)
def test_an_absurd_learning_rate_diverges_in_one_line_without_warnings(corpus, tmp_path, hidden,
                                                                       batch):
    args = [*TINY_QUIET, "--hidden", hidden, "--batch", batch, "--lr", "1e300", "--steps", 20,
            "--dtype", "float32"]
    r = invoke("train", corpus, "--out", tmp_path / "r", *args)
    one_line_error(r, "training diverged at step", "try a lower --lr")
    assert "Warning" not in r.stderr, r.stderr

# --- quiet means quiet, a progress line that fits, warnings and refusals ----------------------

def test_quiet_prints_only_the_path(tmp_path, corpus):
    r = run(corpus, "--out", tmp_path / "r", "--steps", 10, *TINY, "-q")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == f"{tmp_path / 'r' / 'best.npz'}\n" and r.stderr == ""


def test_the_live_progress_line_fits_80_columns(monkeypatch):
    import io

    from rich.console import Console

    from charrnn.cli import train as CT
    from charrnn.train.trainer import Event

    screen = Console(file=io.StringIO(), width=80, force_terminal=True, record=True)
    monkeypatch.setattr(CT, "err", screen)
    show = CT._TrainDisplay(live=True)
    show(Event("start", 0, 0.0, 0.0, 0.0, None, {}, {
        "params": 1_000_000, "train_chars": 10**6, "val_chars": 10**5, "vocab": 65,
        "data": "1,000,000 characters (validation 100,000, vocabulary 65)", "run_dir": "runs/x", "processes": 2, "processes_failed": None, "total_steps": 100_000,
        "resumed_at": 0, "kernels": "fused"}))
    record = {"train_bpc": 2.3456, "grad_norm": 0.53, "chars_per_sec": 22_000.0}
    show(Event("step", 12_345, 12.41, 0.12345, 600.0, 4252.0, record))
    show(Event("eval", 12_345, 12.41, 0.12345, 600.0, 4252.0, {"val_bpc": 2.41}))
    frame = Console(file=io.StringIO(), width=80, record=True)
    frame.print(show.progress.get_renderable())  # what the terminal shows now
    show.close()
    (line,) = frame.export_text().splitlines()
    assert len(line) <= 80 and "22,000 chars/s" in line and "1:10:52 left" in line, line
    assert "step 12345/100000" in line and "val 2.410" in line and "12%" in line, line
    # a typical run keeps every figure but the epoch and the gradient norm
    typical = CT._train_line(Event("step", 1_234, 1.41, 0.4, 60.0, 90.0, show.last), 3_225, 63)
    assert typical == "step 1234/3225 train 2.346 val 2.410 22,000 chars/s 1:30 left"


def test_progress_names_each_figure_with_its_unit():
    """A classifier's progress showed an accuracy while its summary showed a weighted error, and
    an encoder-decoder's losses had no unit: each figure is named now."""
    from charrnn.cli import train as CT
    from charrnn.train.trainer import Event

    def line(record, width=None):
        return CT._train_line(Event("eval", 200, 1.5, 0.5, 60.0, 60.0, record), 400, width)

    classify = {"train_loss": 0.6931, "val_error": 0.5046, "val_loss": 0.9, "val_acc": 0.8,
                "val_macro_acc": 0.5, "grad_norm": 0.5, "chars_per_sec": 9000.0}
    full = line(classify)
    assert "train 0.693 nats" in full and "val error 0.505 weighted" in full, full  # 0.5046
    assert "acc 80.0%" in full and "0.900" not in full, full  # the loss is not the val figure
    short = line(classify, 63)
    assert len(short) <= 63 and "val error 0.505" in short and "acc 80.0%" in short, short
    seq2seq = {"train_loss": 1.8242, "val_loss": 1.7584, "val_exact": 0.45}
    full = line(seq2seq)
    assert "train 1.824 nats" in full and "val 1.758 nats" in full and "exact 45.0%" in full


def test_a_warmup_longer_than_the_budget_is_a_warning(tmp_path, corpus):
    r = run(corpus, "--out", tmp_path / "r", "--steps", 10, *TINY, "--warmup", 50, "-q")
    assert r.exit_code == 0 and r.stdout.endswith("best.npz\n")
    assert r.stderr == ("warning: --warmup 50 is longer than the budget of 10 steps; the "
                        "learning rate never reaches --lr\n")


def test_resume_with_the_budget_reached_says_so_and_changes_nothing(tmp_path, corpus):
    out = tmp_path / "r"
    assert run(corpus, "--out", out, "--steps", 10, *TINY).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = run(corpus, "--out", out, "--resume")
    assert r.exit_code == 0 and r.stdout == f"{out / 'best.npz'}\n"
    assert r.stderr == (f"{out} already reached its budget (steps) at step 10; nothing to do "
                        "(give a larger --steps, --epochs or --minutes to go on)\n")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # not even re-saved


def test_processes_names_what_it_counts_and_threads_still_works(tmp_path, corpus):
    for option in ("--processes", "--threads"):
        out = tmp_path / option.strip("-")
        r = run(corpus, "--out", out, "--steps", 5, *TINY, option, 1)
        assert r.exit_code == 0 and ", 1 process" in r.stderr, r.stderr
        assert C.load(out / "last.npz").meta["threads"] == 1
    shown = CliRunner().invoke(cli, ["train", "--help"]).stdout
    assert "--processes" in shown and "--threads" not in shown
    r = run(corpus, "--out", tmp_path / "x", "--processes", 0)
    assert r.exit_code == 2 and "Invalid value for '--processes'" in r.stderr


def test_a_validation_split_too_small_is_one_line(corpus, tmp_path):
    one_line_error(run(corpus, "--out", tmp_path / "r", *TINY, "--val-frac", "0.0001"),
                   "validation split is 2 characters (--val-frac 0.0001 of",
                   "at least 50 are needed")
    assert not (tmp_path / "r").exists()


def test_a_resume_on_another_numpy_says_so_on_its_first_lines(corpus, tmp_path):
    import numpy as np

    from tests.helpers import edit_npz, set_meta

    run = tmp_path / "r"
    assert invoke("train", corpus, "--out", run, *TINY, "--steps", 5).exit_code == 0
    last = run / "last.npz"
    saved = C.load(last).meta["numerics"]
    assert saved["numpy"] == np.__version__
    edit_npz(last, last, lambda m: set_meta(m, numerics={**saved, "numpy": "1.26.0"}))
    r = invoke("info", run / "last.npz")
    row = rf"^numerics +NumPy 1\.26\.0, {re.escape(saved['blas'])} *$"  # what `info` says
    assert re.search(row, r.stdout, re.MULTILINE), r.stdout
    r = invoke("train", corpus, "--out", run, "--resume", "--steps", 8)
    assert r.exit_code == 0, r.stderr
    notes = [ln for ln in r.stderr.splitlines() if ln.startswith("note:")]
    assert notes == [(f"note: this run was trained with other numerics (NumPy 1.26.0 -> "
                     f"{np.__version__}): it continues to rounding, not bit for bit")]


def test_ema_option_saves_the_average_and_refuses_a_decay_of_one(tmp_path, corpus):
    r = run(corpus, "--out", tmp_path / "r", "--steps", 5, "--ema", 0.9, *TINY_QUIET)
    assert r.exit_code == 0, r.stderr
    ck = C.load(tmp_path / "r" / "last.npz")
    assert ck.meta["train"]["ema"] == 0.9
    assert sorted(k[6:] for k in ck.arrays if k.startswith("train/")) == sorted(ck.params)
    assert TrainConfig.from_dict({"corpus": str(corpus)}).ema == 0  # off by default for lm
    r = run(corpus, "--out", tmp_path / "s", "--steps", 5, "--ema", 1, *TINY_QUIET)
    assert r.exit_code == 2 and "--ema" in r.stderr and r.stdout == ""


def test_logit_adjust_trains_a_classifier_and_is_refused_elsewhere(tmp_path, corpus):
    """--logit-adjust reaches the classifier's saved settings and its description; out of
    [0, 1] or for another task it is a one-line error."""
    (tmp_path / "c.tsv").write_text(DATA["classify"])
    saved = _run_config(tmp_path, "--task", "classify", tmp_path / "c.tsv", "--logit-adjust",
                        1, "--class-weights", 0, "--hidden", 8, "--layers", 1)
    assert saved["logit_adjust"] == 1.0 and saved["class_weights"] == 0.0
    r = invoke("info", "-c", next(p for p in tmp_path.iterdir() if p.is_dir()))
    assert r.exit_code == 0 and "logit adjustment 1" in r.stdout, r.stdout + r.stderr
    r = run("--task", "classify", tmp_path / "c.tsv", "--logit-adjust", 2, "--out",
            tmp_path / "bad")
    assert r.exit_code == 2 and "--logit-adjust" in r.stderr and r.stdout == ""
    one_line_error(run(corpus, "--logit-adjust", 0.5, "--out", tmp_path / "lm", *TINY),
                   "--logit-adjust")
