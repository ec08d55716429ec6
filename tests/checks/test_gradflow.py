"""charrnn gradflow: the series against finite differences, the textbook behaviours (vanishing and
exploding vanilla RNN, an LSTM with open forget gates), and the command line."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import checkpoint as C
from charrnn.checks import gradflow as G
from charrnn.checks.gradcheck import numeric_gradient
from charrnn.cli import cli
from charrnn.data.text import bundled, read_corpus
from charrnn.data.vocab import Vocab
from charrnn.models import lm as M
from tests.helpers import assert_close, invoke, one_line_error

ALPHABET = list("abcdefgh \n")


def random_text(n, seed=0):
    return "".join(np.random.default_rng(seed).choice(ALPHABET, size=n))


def perturbed_model(cell, layers, hidden, vocab, seed):
    """A float64 model moved off its special initial values, as gradcheck does."""
    cfg = M.ModelConfig(vocab_size=vocab, cell=cell, hidden=hidden, layers=layers, dtype="float64")
    rng = np.random.default_rng(seed)
    params = M.init_params(cfg, rng)
    for name in params:
        params[name] += 0.3 * rng.standard_normal(params[name].shape)
    return cfg, params


def numeric_series(params, cfg, win, K):
    """Finite-difference dL/ds_k for k = 0..K, from the forward pass alone: s_k is the state after
    the window's first warm + K - k inputs; L is the sum over windows of the last step's loss.
    Returns per k: per layer, per state component, an (S, H) array."""
    warm = win.shape[1] - K - 2
    out = []
    for k in range(K + 1):
        split = warm + K - k
        state = M.init_state(cfg, win.shape[0])
        if split:
            _, state, _ = M.forward(params, cfg, win[:, :split], state)
        state = tuple(tuple(a.copy() for a in layer) for layer in state)

        def loss(split=split, state=state):
            logits, _, _ = M.forward(params, cfg, win[:, split:-1], state)
            per_char = M.cross_entropy(logits, win[:, split + 1 :], reduce=False)  # (S, k+1)
            return float(per_char[:, -1].sum())

        out.append([[numeric_gradient(loss, a) for a in layer] for layer in state])
    return out


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_series_equals_finite_differences(cell, layers):
    K, S, warm, H = 4, 2, 3, 3
    cfg, params = perturbed_model(cell, layers, H, vocab=4, seed=7)
    ids = np.random.default_rng(3).integers(0, 4, size=warm + K + 2 + 3)
    flow = G.measure(params, cfg, ids, length=K, samples=S, rng=np.random.default_rng(5),
                     warmup=warm)
    win = G.windows(ids, K, S, warm, np.random.default_rng(5))  # the windows measure used
    assert win.shape == (S, warm + K + 2)
    num = numeric_series(params, cfg, win, K)

    h_sq = np.array([[(layer[0] ** 2).sum(axis=1) for layer in g] for g in num])  # (K+1, L, S)
    assert_close(flow.h, np.sqrt(h_sq.sum(axis=1)).mean(axis=1), rtol=1e-7, atol=1e-12,
                 what=f"{cell} h series")
    assert_close(flow.h_layers, np.sqrt(h_sq).mean(axis=2), rtol=1e-7, atol=1e-12,
                 what=f"{cell} per-layer h series")
    if cell == "lstm":
        c_sq = np.array([[(layer[1] ** 2).sum(axis=1) for layer in g] for g in num])
        assert_close(flow.c, np.sqrt(c_sq.sum(axis=1)).mean(axis=1), rtol=1e-7, atol=1e-12,
                     what="lstm c series")
    else:
        assert flow.c is None
    # The raw vectors too, not only their norms.
    raw = G.state_gradients(params, cfg, win, K)
    for k in range(K + 1):
        for layer in range(layers):
            for j, a in enumerate(raw[k][layer]):
                assert_close(a, num[k][layer][j], rtol=1e-6, atol=1e-10,
                             what=f"{cell} dL/ds k={k} layer {layer} state {j}")


def test_state_gradients_take_one_pass_over_the_window(monkeypatch):
    """Each input is fed forward once and each of the last K + 1 steps backward once."""
    K, S, warm = 5, 3, 4
    cfg, params = perturbed_model("lstm", 2, 3, vocab=4, seed=2)
    win = np.random.default_rng(1).integers(0, 4, size=(S, warm + K + 2))
    fed, back, forward, backward = [], [], M.forward, M.backward
    monkeypatch.setattr(M, "forward", lambda p, c, ids, *a, **k: fed.append(ids.shape[1])
                        or forward(p, c, ids, *a, **k))
    monkeypatch.setattr(M, "backward", lambda *a, **k: back.append(1) or backward(*a, **k))
    G.state_gradients(params, cfg, win, K)
    assert sum(fed) == warm + K + 1 and len(back) == K + 1


def test_measure_leaves_params_alone_and_scale_is_linear_in_wh():
    cfg, params = perturbed_model("rnn", 1, 4, vocab=4, seed=1)
    before = {k: v.copy() for k, v in params.items()}
    ids = np.random.default_rng(0).integers(0, 4, size=50)
    scaled = G.measure(params, cfg, ids, 5, 2, np.random.default_rng(0), 5, scale=0.5)
    for k in params:
        assert_close(params[k], before[k], what=k)
    manual = dict(params, **{"l0.Wh": params["l0.Wh"] * 0.5})
    assert_close(scaled.h, G.measure(manual, cfg, ids, 5, 2, np.random.default_rng(0), 5).h,
                 what="scale 0.5 vs Wh halved by hand")


def test_small_scale_vanishes_geometrically_large_scale_explodes():
    text = random_text(3000)
    K = 30
    small, = G.compare_fresh(text, cells=("rnn",), hidden=32, length=K, samples=4, warmup=10,
                             scale=0.5)
    ratios = small.h[1:] / small.h[:-1]
    assert ratios.max() < 0.52, ratios  # each step multiplies by about 0.5 * tanh' <= 0.5
    assert ratios.max() / ratios.min() < 1.1, ratios  # a near-constant ratio: geometric decay
    assert G.vanish_k(small.h) is not None and G.vanish_k(small.h) <= 11

    large, = G.compare_fresh(text, cells=("rnn",), hidden=32, length=K, samples=4, warmup=10,
                             scale=2.0)
    ratios = large.h[1:] / large.h[:-1]
    assert large.h[-1] > 10 * large.h[0], large.h
    assert np.exp(np.log(ratios).mean()) > 1.05, ratios
    assert G.vanish_k(large.h) is None


def test_open_forget_gates_keep_the_gradient_alive():
    text = random_text(3000, seed=1)
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    H, K = 32, 60
    lstm = M.ModelConfig(vocab_size=len(vocab), cell="lstm", hidden=H, layers=1, dtype="float64")
    p = M.init_params(lstm, np.random.default_rng(1))
    p["l0.b"][H : 2 * H] = 5.0  # forget gate (order i, f, o, g): sigmoid(5) = 0.993
    open_lstm = G.measure(p, lstm, ids, K, 4, np.random.default_rng(2), 10)
    rnn = M.ModelConfig(vocab_size=len(vocab), cell="rnn", hidden=H, layers=1, dtype="float64")
    vanilla = G.measure(M.init_params(rnn, np.random.default_rng(1)), rnn, ids, K, 4,
                        np.random.default_rng(2), 10, scale=0.8)
    assert open_lstm.h[50] > 1e3 * vanilla.h[50], (open_lstm.h[50], vanilla.h[50])
    assert open_lstm.c[50] > 0.1 * open_lstm.c[0]  # the cell path barely decays
    assert G.vanish_k(open_lstm.h) is None


def test_vanish_k_and_chart():
    assert G.vanish_k(np.array([1.0, 0.1, 0.01, 0.002, 0.0009])) == 4
    assert G.vanish_k(np.array([1.0, 0.5, 2.0])) is None
    K = 20
    h = 10.0 ** -np.arange(K + 1)
    flows = [G.Flow("fall", "rnn", 4, 1, h, None, h[:, None], None, "t"),
             G.Flow("flat", "gru", 4, 1, np.full(K + 1, 1e-30), None, None, None, "t")]
    lines = G.chart(flows, width=64, height=16).splitlines()
    plot = [line[10:] for line in lines[:16]]  # the rows of the plot area
    assert all(len(row) == K + 1 for row in plot)  # one column per k when K + 1 <= width
    fall = [next(r for r, row in enumerate(plot) if row[x] == G.MARKERS[0]) for x in range(K + 1)]
    # log axis from 1e+00 (top) to 1e-30 (bottom): 10^-k sits on a straight line
    assert_close(np.array(fall), np.round(np.arange(K + 1) / 30 * 15), what="rows of 10^-k")
    assert plot[-1] == G.MARKERS[1] * (K + 1)
    assert lines[0].lstrip().startswith("1e+00") and lines[15].lstrip().startswith("1e-30")
    assert "fall" in lines[-1] and "flat" in lines[-1]
    wide = G.chart([flows[0]._replace(h=np.ones(501))], width=64).splitlines()
    assert len(wide[0]) == 10 + 64 and "500" in wide[-3]


# --- command line ------------------------------------------------------------------------------


def run(args):
    return CliRunner().invoke(cli, args)


def test_cli_on_the_bundled_corpus():
    r = run(["gradflow", "--length", "6", "--hidden", "8", "--samples", "2", "--warmup", "5"])
    assert r.exit_code == 0, r.output
    assert r.stdout.count("\n") == 1
    for cell in ("lstm", "gru", "rnn"):
        assert cell in r.stdout and cell in r.stderr
    assert "vanish k" in r.stderr and "k=1" in r.stderr and "k=10" not in r.stderr
    assert all(m in r.stderr for m in G.MARKERS[:3])


def test_explode_k_and_the_verdict_name_both_ends():
    assert G.explode_k(np.array([1.0, 2.0, 9.0, 10.0, 10.5, 3.0])) == 4  # above, not at, 10x
    assert G.explode_k(np.array([1.0, 0.5, 9.9])) is None
    assert G.verdict(np.array([1.0, 0.1, 0.01, 0.0009, 5.0])) == "vanishes at k=3"
    assert G.verdict(np.array([2.0, 4.0, 30.0, 60.0])) == "explodes at k=2 (x30 at k=3)"
    assert G.verdict(np.array([2.0, 1.0, 0.5])) == "neither up to k=2 (x0.25 at k=2)"


def test_cli_says_an_exploding_gradient_explodes_and_keeps_its_title_on_one_line():
    """--scale 1.5 makes a vanilla RNN's gradient grow (x1.5 per step, less tanh's squashing):
    the verdict says it explodes, and at which k; with -n 50 the table is narrower than its
    title, which must still be one line (it wrapped into a stray line)."""
    r = run(["gradflow", "--cell", "rnn", "--scale", "1.5", "-n", "50", "--samples", "2",
             "--warmup", "5"])
    assert r.exit_code == 0, r.output
    flow = G.compare_fresh(read_corpus(bundled()), ("rnn",), 128, 1, length=50,
                           samples=2, seed=0, warmup=5, scale=1.5)[0]
    k = next(k for k, v in enumerate(flow.h) if v > 10 * flow.h[0])  # independent of explode_k
    assert f"rnn explodes at k={k}" in r.stdout, r.stdout
    lines = r.stderr.splitlines()
    title = [line for line in lines if "mean |dL/dstate|" in line]
    assert len(title) == 1 and title[0].strip().endswith(" s)"), r.stderr
    assert any(line.strip().endswith("explode k: above 10 x") for line in lines), r.stderr
    assert "explode k" in r.stderr


@pytest.fixture
def trained_like(tmp_path):
    """A small checkpoint whose metadata records its corpus, as the trainer writes it."""
    text = random_text(400)
    corpus = tmp_path / "text.txt"
    corpus.write_text(text)
    vocab = Vocab.from_text(text)
    cfg = M.ModelConfig(vocab_size=len(vocab), cell="gru", hidden=6, layers=2)
    ckpt = C.Checkpoint(cfg, vocab, M.init_params(cfg, np.random.default_rng(0)),
                        meta={"corpus": str(corpus), "step": 0})
    path = tmp_path / "run" / "best.npz"
    path.parent.mkdir()
    C.save(path, ckpt)
    return path, corpus


def test_cli_on_a_checkpoint_writes_the_json_it_says(trained_like, tmp_path):
    path, corpus = trained_like
    out = tmp_path / "flow.json"
    r = run(["gradflow", "--checkpoint", str(path.parent), "--length", "12", "--samples", "3",
             "--warmup", "4", "--seed", "5", "--scale", "0.7", "--json", str(out)])
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    (m,) = data["models"]
    assert (m["label"], m["cell"], m["hidden"], m["layers"]) == (str(path.parent), "gru", 6, 2)
    assert m["corpus"] == str(corpus) and m["k"] == list(range(13)) and m["c"] is None
    assert data["settings"]["scale"] == 0.7 and data["settings"]["samples"] == 3
    expected = G.from_checkpoint(path, None, length=12, samples=3, seed=5, warmup=4, scale=0.7)
    assert_close(m["h"], expected.h, what="JSON h series")
    assert_close(m["h_layers"], expected.h_layers, what="JSON per-layer series")
    assert m["vanish_k"] == G.vanish_k(expected.h)
    assert str(path.parent) in r.stdout and "vanish k" in r.stderr


def test_cli_note_when_fresh_model_options_meet_a_checkpoint(trained_like, tmp_path):
    path, _ = trained_like
    out = tmp_path / "f.json"
    r = run(["gradflow", "-c", str(path), "--hidden", "64", "-K", "3", "--samples", "1",
             "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "note: --hidden applies to fresh models only; ignored with --checkpoint" in r.stderr
    data = json.loads(out.read_text())  # the checkpoint's size, not the ignored option's
    assert data["models"][0]["hidden"] == 6 and data["settings"]["hidden"] is None


def test_cli_same_names_as_the_other_commands_and_old_names_still_work(trained_like, tmp_path):
    """-c and -n as in `sample`; --warm-chars is not train's --warmup (steps)."""
    path, _ = trained_like
    new, old = tmp_path / "new.json", tmp_path / "old.json"
    assert run(["gradflow", "-c", str(path), "-n", "4", "--samples", "2", "--warm-chars", "3",
                "--json", str(new)]).exit_code == 0
    assert run(["gradflow", "--checkpoint", str(path), "-K", "4", "--samples", "2", "--warmup",
                "3", "--json", str(old)]).exit_code == 0
    a, b = json.loads(new.read_text()), json.loads(old.read_text())
    assert a == b and a["settings"]["warmup"] == 3 and a["settings"]["length"] == 4
    shown = run(["gradflow", "--help"]).stdout
    assert "--warm-chars" in shown and "-n, --length" in shown
    options = [line.split()[0] for line in shown.splitlines() if line.startswith("  -")]
    assert "--warmup" not in options and "-K," not in options  # hidden aliases


def test_cli_bad_inputs_give_one_line_errors(trained_like, tmp_path):
    path, _ = trained_like
    for args, option in ((["--length", "-3"], "'--length' / '-n'"), (["--samples", "0"],
                         "'--samples'"), (["--hidden", "0", "-K", "3"], "'--hidden'"),
                         (["--warm-chars", "-1"], "'--warm-chars'"), (["--scale", "nan"],
                         "'--scale'")):
        r = run(["gradflow", *args])  # usage errors, named by Click
        assert r.exit_code == 2 and f"Invalid value for {option}" in r.stderr, r.stderr
    one_line_error(run(["gradflow", "--checkpoint", str(tmp_path / "nope.npz")]),
                   "checkpoint not found", "nope.npz", code=1, alone=True)
    one_line_error(run(["gradflow", "--corpus", str(tmp_path / "none.txt")]), "none.txt", code=1,
                   alone=True)
    short = tmp_path / "short.txt"
    short.write_text("abc abc")
    one_line_error(run(["gradflow", "--corpus", str(short), "-K", "10", "--warmup", "0"]),
                   "needs at least 12", "--warm-chars 0")
    other = tmp_path / "other.txt"
    other.write_text("XYZ" * 100)
    one_line_error(run(["gradflow", "--checkpoint", str(path), "--corpus", str(other)]),
                   "'X'", "vocabulary", code=1, alone=True)
    bare = tmp_path / "bare.npz"  # made by hand: no recorded corpus
    ck = C.load(path)
    C.save(bare, C.Checkpoint(ck.model, ck.vocab, ck.params))
    one_line_error(run(["gradflow", "--checkpoint", str(bare)]), "--corpus", code=1, alone=True)
    moved = tmp_path / "moved.npz"  # its recorded corpus is gone
    C.save(moved, C.Checkpoint(ck.model, ck.vocab, ck.params, {"corpus": str(tmp_path / "gone")}))
    one_line_error(run(["gradflow", "--checkpoint", str(moved)]), "gone", "--corpus", code=1,
                   alone=True)
    one_line_error(run(["gradflow", "-K", "3", "--hidden", "4", "--samples", "1",
                        "--json", str(tmp_path / "no" / "dir.json")]), "cannot write", code=1,
                   alone=True)


def test_a_checkpoints_recorded_corpus_is_read_in_its_training_encoding(tmp_path):
    from charrnn.train.trainer import TrainConfig, train

    text = "café crème, déjà vu. " * 60
    (tmp_path / "latin.txt").write_bytes(text.encode("latin-1"))
    train(TrainConfig.from_dict({"corpus": str(tmp_path / "latin.txt"), "out": str(tmp_path / "r"),
                                 "hidden": 6, "layers": 1, "batch": 2, "seq": 8, "steps": 2,
                                 "eval_every": 2, "encoding": "latin-1"}))
    flow = G.from_checkpoint(tmp_path / "r", length=3, samples=2, warmup=2)  # not utf-8
    assert np.all(np.isfinite(flow.h))
    r = CliRunner().invoke(cli, ["gradflow", "--corpus", str(tmp_path / "latin.txt"), "-K", "3",
                                 "--samples", "2", "--warmup", "2", "--hidden", "4"])
    assert r.exit_code == 1 and "not valid utf-8" in r.stderr
    r = CliRunner().invoke(cli, ["gradflow", "--corpus", str(tmp_path / "latin.txt"), "-K", "3",
                                 "--samples", "2", "--warmup", "2", "--hidden", "4",
                                 "--encoding", "latin-1"])
    assert r.exit_code == 0, r.output


# --- bad numbers and cells --------------------------------------------------------------------

@pytest.mark.parametrize("args, needle", [
    (["--layers", "0"], "layers"), (["--warmup", "-1"], "warmup"), (["--scale", "-1"], "scale"),
    (["--scale", "nan"], "scale"), (["--length", "0"], "length"), (["--samples", "-1"], "samples"),
    (["--hidden", "-1"], "hidden"), (["--cell", "tree"], "--cell"), (["--seed", "-1"], "--seed"),
])
def test_gradflow_rejects_bad_numbers_and_cells(args, needle):
    one_line_error(invoke("gradflow", "-n", "3", *args), needle)

