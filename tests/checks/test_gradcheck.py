"""Analytic gradients against finite differences in float64 (charrnn.checks.gradcheck serves both
the CLI and these tests), and proof that the check can fail."""

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn.checks import gradcheck as G
from charrnn.cli import cli
from charrnn.nn import cells
from charrnn.nn.cells import CELLS
from tests.helpers import invoke, one_line_error


def failures(results):
    return [f"{r.cell} {r.layers}L {r.name}: {r.rel_error:.2e} at {r.worst_index}"
            for r in results if not r.passed]


@pytest.mark.parametrize("cell", list(CELLS))
def test_cell_chunk_gradients(cell):
    results = G.check_cell(cell, batch=2, seq=3, hidden=5)
    assert {r.name for r in results} >= {"xp", "Wh"}
    assert not failures(results)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", list(CELLS))
def test_whole_loss_gradients(cell, layers):
    results = G.check_model(cell, layers=layers, batch=2, seq=3, vocab=4, hidden=5)
    names = {r.name for r in results}
    assert "Wy" in names and f"l{layers - 1}.Wh" in names and "state.l0.h" in names
    assert not failures(results)


def test_check_detects_a_wrong_gradient(monkeypatch):
    """Corrupt one term of the LSTM backward pass: the check must fail and name the parameter."""
    original = cells.lstm_backward

    def broken(dhs, dstate, cache):
        dxp, ds, grads = original(dhs, dstate, cache)
        grads["Wh"] = grads["Wh"] * 1.001
        return dxp, ds, grads

    monkeypatch.setitem(CELLS, "lstm", CELLS["lstm"]._replace(backward=broken))
    bad = [r.name for r in G.check_model("lstm") if not r.passed]
    assert bad == ["l0.Wh"]


def test_compare_reports_worst_index():
    a = np.zeros((2, 3))
    n = np.zeros((2, 3))
    n[1, 2] = 1.0
    n[0, 0] = 0.5
    a[0, 0] = 0.5
    rel, abs_err, idx = G.compare(a, n)
    assert (rel, abs_err, idx) == (1.0, 1.0, (1, 2))


def test_a_gradient_that_is_zero_as_a_whole_compares_against_the_floor():
    noise = np.full((2, 2), 5e-15)  # what finite differences give for a true zero
    assert G.compare(np.zeros((2, 2)), noise)[0] == pytest.approx(5e-15 / G.FLOOR)
    assert G.compare(np.full((2, 2), 1e-9), noise)[0] > G.DEFAULT_TOL  # a real error still fails


def test_cli_gradcheck_passes_on_the_smallest_model():
    """hidden 1 with dropout: Wy's gradient can be exactly zero, and used to FAIL on noise."""
    result = CliRunner().invoke(cli, ["gradcheck", "--hidden", "1", "--seq", "1", "--batch", "1",
                                      "--vocab", "2"])
    assert result.exit_code == 0, result.output


def test_cli_gradcheck_passes():
    result = CliRunner().invoke(cli, ["gradcheck", "--task", "lm", "--cell", "gru", "--layers",
                                      "1"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("gradcheck passed: 7 gradients")
    assert "l0.bhn" in result.stderr and "max rel. error" in result.stderr


def test_cli_gradcheck_covers_the_classifier_and_the_tagger():
    """By default every family: the bidirectional encoder's both directions, both heads, the
    encoder-decoder's bridge, decoder and (additive, for the gru) attention, the generator's
    condition both ways in."""
    result = CliRunner().invoke(cli, ["gradcheck", "--cell", "gru", "--layers", "1"])
    assert result.exit_code == 0, result.output
    # 7 + 10 + 10 + 22 + (8 + 7)
    assert result.stdout.startswith("gradcheck passed: 64 gradients")
    for text in ("classify gru", "tag gru", "seq2seq gru", "enc.l0.bw.bhn", "enc.l0.fw.Wx",
                 "att.v", "bridge.l0.W", "dec.l0.Wh", "generate/init gru", "init.l0.W",
                 "generate/input gru", "cond.W"):
        assert text in result.stderr


def test_cli_gradcheck_shows_progress_per_family_and_cell_while_it_runs(monkeypatch):
    """A line on stderr as each family and cell finishes, before the next one's checks start,
    so a long run is not silent; stdout keeps only the verdict."""
    import sys

    real, seen = G.check, []

    def spy(task, cell, layers, **kw):
        sys.stderr.flush()
        seen.append((task, cell, layers, sys.stderr.buffer.getvalue().decode()))
        return real(task, cell, layers, **kw)

    monkeypatch.setattr(G, "check", spy)
    result = CliRunner().invoke(cli, ["gradcheck", "--task", "lm", "--layers", "1", "--layers",
                                      "2", "--hidden", "2"])
    assert result.exit_code == 0, result.output
    assert [s[:3] for s in seen] == [("lm", c, n) for c in CELLS for n in (1, 2)]
    for k, (*_, stderr) in enumerate(seen):
        done = list(CELLS)[: k // 2]  # the cells whose both depths were checked before
        for c in CELLS:
            assert (f"lm {c}: " in stderr) == (c in done), (k, stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("lm ")]
    assert [line.split(":")[0] for line in lines] == [f"lm {c}" for c in CELLS]
    assert all(", worst " in line and line.endswith(" checks)") for line in lines)
    assert result.stdout.startswith("gradcheck passed")


def test_cli_gradcheck_fails_with_impossible_tolerance():
    result = CliRunner().invoke(cli, ["gradcheck", "--cell", "rnn", "--layers", "1",
                                      "--tol", "1e-30"])
    assert result.exit_code == 1
    assert result.stdout.startswith("gradcheck FAILED")


# --- bad numbers and cells --------------------------------------------------------------------

@pytest.mark.parametrize("args", [["--seed", "-1"], ["--tol", "nan"], ["--tol", "inf"]])
def test_gradcheck_rejects_bad_numbers(args):
    one_line_error(invoke("gradcheck", "--cell", "rnn", "--layers", "1", *args), args[0])


@pytest.mark.parametrize("args", [["--hidden", "0"], ["--seq", "0"], ["--batch", "-1"],
                                  ["--vocab", "1"], ["--tol", "0"], ["--tol", "-1"],
                                  ["--layers", "0"], ["--cell", "tree"]])
def test_gradcheck_rejects_bad_numbers_and_cells(args):
    one_line_error(invoke("gradcheck", *args), args[0])

