"""The bench/ scripts run end to end on tiny configurations, and their checks can fail (not timed
tests: no speed is asserted)."""

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "bench.py"
SCRIPTS = sorted(p.stem for p in BENCH.parent.glob("*.py"))


def _load(name):
    spec = importlib.util.spec_from_file_location(f"charrnn_{name}", BENCH.parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load("bench")


def test_flops_formula_counts_each_multiply(bench):
    # H=2, V=3. lstm: G=8; layer 0 recurrent only 2*2*8, layer 1 recurrent + input 2*(2*2*8),
    # output 2*2*3.
    assert bench.flops_per_char("lstm", 2, 2, 3) == 32 + 64 + 12
    assert bench.flops_per_char("gru", 2, 1, 3) == 2 * 2 * 6 + 12
    assert bench.flops_per_char("rnn", 4, 3, 5) == 2 * 16 + 2 * (2 * 2 * 16) + 2 * 4 * 5


def test_parse_configs(bench):
    assert bench.parse_configs("lstm:128x1, gru:256X2") == [("lstm", 128, 1), ("gru", 256, 2)]
    with pytest.raises(SystemExit):
        bench.parse_configs("cnn:8x1")


def test_quick_run_writes_table_and_json(bench, tmp_path, capsys):
    out = tmp_path / "results.json"
    res = bench.main(["--quick", "--no-torch", "--configs", "lstm:8x1,gru:6x2", "--seconds",
                      "0.05", "--sample", "rnn:8x2", "--json", str(out)])
    saved = json.loads(out.read_text())
    assert [r["config"] for r in saved["train"]] == ["lstm 8x1", "gru 6x2"]
    for row in saved["train"]:
        assert row["charrnn_chars_per_sec"] > 0 and row["torch_chars_per_sec"] is None
        assert row["charrnn_gflops"] == pytest.approx(
            row["charrnn_chars_per_sec"] * row["train_flops_per_char"] / 1e9)
    assert saved["train"][0]["train_flops_per_char"] == 3 * bench.flops_per_char("lstm", 8, 1, 65)
    s = saved["sample"]
    assert s["charrnn_chars_per_sec"] > 0 and "ratio" not in s
    assert len(s["chain_rounds"]) == len(s["charrnn_rounds"]) == 1  # alternating, one each
    assert s["frac_of_chain"] == s["charrnn_chars_per_sec"] / s["matvec_chain_per_sec"]
    assert saved["eval"]["chars_per_sec"] > 0
    assert res["matmul"]["square"]["gflops"] > 0
    table = capsys.readouterr().out
    assert "lstm 8x1" in table and "gru 6x2" in table and "sampling rnn 8x2" in table
    assert saved["machine"]["cpu"] and saved["machine"]["blas"]  # every table says where
    assert table.splitlines()[0].startswith(saved["machine"]["cpu"])
    assert saved["machine"]["blas"] in table.splitlines()[0]


def test_recurrent_multiply_checks_the_packed_product_and_runs(capsys, monkeypatch):
    from charrnn.nn import fused

    if fused.available():
        pytest.skip(f"fused kernels unavailable: {fused.available()}")
    module = _load("recurrent_multiply")
    module.main(["--hidden", "8,20", "--rows", "1,3", "--rounds", "1"])
    rows = [r.split() for r in capsys.readouterr().out.splitlines()[1:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [(h, p, n) for h in ("8", "20")
                                                  for p in ("fwd", "bwd") for n in ("1", "3")]
    assert all(float(x) > 0 for r in rows for x in r[3:])
    with monkeypatch.context() as m:  # ... and the check can fail
        m.setattr(module.fused, "panels", lambda W, *a, **k: np.zeros(W.size * 8, np.float32))
        with pytest.raises(SystemExit, match="differs"):
            module.main(["--hidden", "8", "--rows", "2", "--rounds", "1"])


def test_multiply_floor_counts_the_chunks_multiplies_and_runs(capsys, monkeypatch):
    module = _load("multiply_floor")
    for cell, H, L in (("lstm", 8, 2), ("gru", 6, 3), ("rnn", 4, 1)):
        module.check_flops(cell, H, L, 65)  # both splits multiply what bench.py counts
    with monkeypatch.context() as m:  # ... and the check can fail
        m.setattr(module.BENCH, "flops_per_char", lambda *a: 1)
        with pytest.raises(SystemExit, match="FLOPs"):
            module.check_flops("lstm", 8, 2, 65)
    module.main(["--configs", "lstm:8x2", "--rounds", "2", "--repeats", "1", "--seconds", "0.05",
                 "--no-torch"])
    row = capsys.readouterr().out.splitlines()[-1]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "lstm 8x2"
    assert all(float(c.replace(",", "")) > 0 for c in cells[2:6])  # step, chunk, both floors


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_loads_against_the_library_as_it_is(name, monkeypatch):
    # run as a script, bench/ is on sys.path (for common.py); a renamed charrnn module fails here
    monkeypatch.syspath_prepend(str(BENCH.parent))
    module = _load(name)
    assert name == "common" or callable(module.main)


def test_the_readme_describes_every_script():
    readme = (BENCH.parent / "README.md").read_text()
    described = set(re.findall(r"`(\w+)\.py", readme))
    assert set(SCRIPTS) <= described, sorted(set(SCRIPTS) - described)


def test_every_bench_command_in_the_docs_and_code_names_a_script_that_exists():
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "charrnn").rglob("*.py"),
             *BENCH.parent.glob("*"), *(ROOT / "tests").rglob("*.py")]
    named = {(f.relative_to(ROOT), m) for f in files if f.is_file()
             for m in re.findall(r"python\s+bench/(\w+)\.py", f.read_text(errors="replace"))}
    assert named and {(f, m) for f, m in named if m not in SCRIPTS} == set()


def test_names_curve_keeps_whole_names_and_runs_both_models_once(tmp_path, capsys):
    """names.py curve: a fraction of the training part's distinct names with every copy, the
    test part whole; both models scored; a cell already in curve.jsonl is not run again."""
    names = _load("names")
    train, test = names.write_split(tmp_path, 0)
    sub_train, sub_test = names.write_subset(tmp_path, 0, 0.125)
    assert names.write_subset(tmp_path, 0, 1) == (train, test)
    assert sub_test.read_bytes() == test.read_bytes()
    full = train.read_text(encoding="utf-8").splitlines()
    sub = sub_train.read_text(encoding="utf-8").splitlines()
    kept = {line.split("\t")[0] for line in sub}
    every = {line.split("\t")[0] for line in full}
    assert kept < every and len(kept) == round(0.125 * len(every))
    assert sorted(sub) == sorted(x for x in full if x.split("\t")[0] in kept)  # every copy
    args = type("Args", (), {"work": tmp_path, "seeds": [0], "fractions": [0.125], "steps": 3,
                             "label": "tiny", "l2": 1e-4, "iterations": 3})()
    names.run_curve(args, ["--hidden", "4", "--layers", "1", "--eval-every", "3"])
    rows = [json.loads(x) for x in (tmp_path / "curve.jsonl").read_text().splitlines()]
    assert sorted(r["model"] for r in rows) == ["charrnn tiny, 3 steps",
                                                "n-gram LR balanced, charrnn's training part"]
    assert all(r["names"] == len(kept) and 0 <= r["accuracy"] <= 1 for r in rows)
    names.run_curve(args, [])  # both cells done: nothing runs, the table is printed again
    assert len((tmp_path / "curve.jsonl").read_text().splitlines()) == 2
    assert "| 0.125 | charrnn tiny, 3 steps | 0 |" in capsys.readouterr().out


def test_names_rnn_runs_bounded_by_steps_or_epochs_get_no_clock():
    """A clock budget enters the cosine schedule, so fixed-budget runs must not get one."""
    names = _load("names")
    assert names.rnn_budget(None, []) == ["--minutes", "2"]
    assert names.rnn_budget(None, ["--epochs", "8"]) == []
    assert names.rnn_budget(None, ["--pooling", "max", "--steps", "9"]) == []
    assert names.rnn_budget(10, ["--epochs", "8"]) == ["--minutes", "10"]
