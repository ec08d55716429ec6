"""The figures: plotted points are the metrics they come from (checked on the figure's own data
and read back from the SVG file), image files have the size and format asked for, and every
family's figure shows what its model does, checked against figures computed here."""

import json
import re
import struct
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from charrnn.errors import CharrnnError, ConfigError
from charrnn.infer.predict import classify
from charrnn.infer.translate import translate
from charrnn.report import figures as G
from charrnn.report import runs as R
from charrnn.report import views as V
from tests.helpers import assert_close, invoke, one_line_error


def metrics(run_dir, key, x="step"):
    """(xs, ys) of `key` read from run_dir/metrics.jsonl here, line by line."""
    xs, ys = [], []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if key in rec:
            xs.append(rec["step"] if x == "step" else rec["elapsed"] / 60)
            ys.append(rec[key])
    return np.array(xs), np.array(ys)


def lines_by_id(fig):
    return {ln.get_gid(): ln for ax in fig.axes for ln in ax.lines if ln.get_gid()}


def svg_points(svg_text, gid):
    """The vertices of the path inside the SVG element with id `gid`."""
    root = ET.fromstring(svg_text)
    for el in root.iter():
        if el.get("id") == gid:
            d = next(p.get("d") for p in el.iter("{http://www.w3.org/2000/svg}path"))
            nums = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", d)]
            return np.array(nums).reshape(-1, 2)
    raise AssertionError(f"no element with id {gid!r} in the SVG")


def assert_affine(data, drawn, what):
    """drawn = a * data + b for one a and b: the points are the data, placed on the axis."""
    A = np.stack([data, np.ones_like(data)], axis=1)
    coef, *_ = np.linalg.lstsq(A, drawn, rcond=None)
    worst = np.abs(A @ coef - drawn).max()
    assert abs(coef[0]) > 0 and worst < 1e-3 * (np.ptp(drawn) + 1), f"{what}: off by {worst}"


@pytest.mark.parametrize("x", ["step", "minutes"])
def test_curves_plot_exactly_the_metrics_of_each_run(family_runs, tmp_path, x):
    dirs = [family_runs["lstm"], family_runs["gru"]]
    fig = G.curves(R.read_all(dirs), x)
    drawn = lines_by_id(fig)
    svg = tmp_path / "curves.svg"
    G.save(fig, svg)
    text = svg.read_text()
    for i, d in enumerate(dirs):
        for panel, key in (("loss", "train_bpc"), ("loss", "val_bpc"), ("val", "val_bpc"),
                           ("lr", "lr"), ("norm", "grad_norm")):
            xs, ys = metrics(d, key, x)
            assert len(xs) >= 3, key
            line = drawn[f"{panel}-{i}-{key}"]
            assert_close(line.get_xdata(), xs, what=f"{d.name} {key} x")
            assert_close(line.get_ydata(), ys, what=f"{d.name} {key} y")
            pts = svg_points(text, f"{panel}-{i}-{key}")
            assert len(pts) == len(xs), f"{key}: {len(pts)} points drawn for {len(xs)} records"
            assert_affine(xs, pts[:, 0], f"{d.name} {key} x")
            if key != "grad_norm" or fig.axes[3].get_yscale() == "linear":
                assert_affine(ys, pts[:, 1], f"{d.name} {key} y")
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:2] == ["lstm", "gru"] and "validation" in legend


def png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", head[16:24])


def test_plot_writes_slide_sized_png_svg_and_pdf(family_runs, tmp_path):
    r = invoke("plot", family_runs["lstm"], family_runs["gru"], "-o", tmp_path / "c.png")
    assert r.exit_code == 0, r.output
    assert r.stdout == f"{tmp_path / 'c.png'}\n"
    assert png_size(tmp_path / "c.png") == (1920, 1080)
    r = invoke("plot", family_runs["lstm"], "--dpi", 100, "-o", tmp_path / "c2.png")
    assert png_size(tmp_path / "c2.png") == (1280, 720)
    r = invoke("plot", family_runs["lstm"], "--x", "minutes", "-o", tmp_path / "c.svg")
    root = ET.fromstring((tmp_path / "c.svg").read_text())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("viewBox") == "0 0 921.6 518.4"  # 12.8 x 7.2 inches in points
    r = invoke("plot", family_runs["lstm"], "-o", tmp_path / "c.pdf")
    assert (tmp_path / "c.pdf").read_bytes()[:5] == b"%PDF-"
    one_line_error(invoke("plot", family_runs["lstm"], "-o", tmp_path / "c.jpg"),
                   "name it .png, .svg or .pdf")


def test_curves_of_different_families_are_refused_and_wrong_figures_are_usage_errors(
        family_runs, tmp_path):
    one_line_error(invoke("plot", family_runs["lstm"], family_runs["cls"], "-o",
                          tmp_path / "x.png"), "different losses")
    one_line_error(invoke("plot", family_runs["lstm"], "--what", "attention", "-o",
                          tmp_path / "x.png"), "--what attention is for seq2seq runs", code=2)
    one_line_error(invoke("plot", family_runs["cls"], "--what", "scores", "-o",
                          tmp_path / "x.png"), "is for tag runs", code=2)
    one_line_error(invoke("plot", family_runs["cls"], family_runs["seg"], "--what", "confusion",
                          "-o", tmp_path / "x.png"), "draws one run", code=2)
    one_line_error(invoke("plot", family_runs["cls"], "--what", "gradflow", "-o",
                          tmp_path / "x.png"), "gradflow measures language models")
    assert not list(tmp_path.iterdir())


def best_eval(run_dir):
    """The evaluation record of the step best.npz was saved at."""
    with np.load(run_dir / "best.npz") as z:
        step = json.loads(z["meta"].tobytes())["step"]
    return next(json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()
                if json.loads(x)["kind"] == "eval" and json.loads(x)["step"] == step)


def test_the_confusion_matrix_is_of_the_validation_examples_the_trainer_scored(family_runs):
    run = R.read(family_runs["cls"])
    data = V.validation_data(run)
    s = V.class_scores(run, data)
    ids, truth = data.val
    assert s.confusion.sum() == len(ids) == len(truth)
    assert s.confusion.sum(axis=1).tolist() == np.bincount(truth, minlength=2).tolist()
    assert s.accuracy == pytest.approx(best_eval(family_runs["cls"])["val_acc"], abs=1e-12)
    # the predicted column of each example, by `charrnn predict`'s own path, text by text
    texts = ["".join(run.ckpt.vocab.chars[i] for i in row) for row in ids]
    got, _ = classify(run.ckpt, texts)
    expect = np.zeros((2, 2), dtype=int)
    for t, g in zip(truth, got):
        expect[t, data.labels.index(g[0][0])] += 1
    assert s.confusion.tolist() == expect.tolist()


def test_the_confusion_figure_draws_counts_shares_by_row_and_recall():
    counts = np.array([[5, 1, 0], [2, 2, 0], [0, 3, 7]])
    recall = np.array([5 / 6, 2 / 4, 7 / 10])
    s = V.Scores(["x", "y", "z"], counts, np.full(3, np.nan), recall, np.full(3, np.nan),
                 counts.sum(axis=1), 14 / 20, "examples")
    fig = G.confusion(s)
    a, b, r = fig.axes[:3]
    assert a.images[0].get_array().tolist() == counts.tolist()
    for i in range(3):
        for j in range(3):
            assert b.images[0].get_array()[i, j] == pytest.approx(100 * counts[i, j]
                                                                   / counts[i].sum())
    assert [p.get_width() for p in r.patches] == pytest.approx(recall.tolist())
    assert "7" in [t.get_text() for t in a.texts]  # counts written in the cells


def test_tag_scores_are_precision_recall_and_f1_from_the_confusion_matrix(family_runs):
    run = R.read(family_runs["seg"])
    s = V.class_scores(run, V.validation_data(run))
    assert s.accuracy == pytest.approx(best_eval(family_runs["seg"])["val_acc"], abs=1e-12)
    fig = G.tag_scores(s)
    bars = {name: [c.get_height() for c in _container(fig, name)]
            for name in ("precision", "recall", "F1")}
    m = s.confusion
    for k in range(len(s.labels)):
        tp, support, predicted = m[k, k], m[k].sum(), m[:, k].sum()
        p = tp / predicted if predicted else 0.0
        rec = tp / support
        f1 = 2 * tp / (support + predicted)
        assert bars["precision"][k] == pytest.approx(p)
        assert bars["recall"][k] == pytest.approx(rec)
        assert bars["F1"][k] == pytest.approx(f1)


def _container(fig, label):
    return next(c for c in fig.axes[0].containers if c.get_label() == label)


def test_attention_maps_are_the_models_attention_source_across_output_down(family_runs):
    run = R.read(family_runs["rev"])
    examples = V.attention_examples(run, V.validation_data(run), 3)
    assert len(examples) == 3
    fig = G.attention(examples)
    for ax, e in zip(fig.axes, examples):
        w = np.asarray(ax.images[0].get_array())
        outs, atts, _ = translate(run.ckpt, [e.source])
        assert outs[0] == e.output
        assert_close(w, atts[0], what="attention")
        assert w.shape[1] == len(e.source) and w.shape[0] in (len(e.output), len(e.output) + 1)
        assert_close(w.sum(axis=1), np.ones(len(w)), rtol=1e-6, what="rows sum to 1")
        assert [t.get_text() for t in ax.get_xticklabels()] == [G.visible(c) for c in e.source]
        assert [t.get_text() for t in ax.get_yticklabels()][: len(e.output)] == list(e.output)


def test_gradflow_draws_the_series_charrnn_gradflow_measures(family_runs):
    from charrnn.checks.gradflow import from_checkpoint

    runs = R.read_all([family_runs["lstm"], family_runs["cls"], family_runs["gru"]])
    flows = V.gradient_flow(runs, length=20, samples=4)
    assert [f.label for f in flows] == ["lstm", "gru"]  # the classifier is no language model
    fig = G.gradflow(flows)
    drawn = lines_by_id(fig)
    again = from_checkpoint(family_runs["lstm"] / "best.npz", length=20, samples=4)
    assert_close(drawn["flow-0-h"].get_ydata(), again.h, what="h")
    assert_close(drawn["flow-0-c"].get_ydata(), again.c, what="c")
    assert "flow-1-c" not in drawn  # a GRU has no cell state
    with pytest.raises(ConfigError, match="measures language models"):
        G.gradflow([])


def test_without_matplotlib_report_and_plot_name_the_extra(family_runs, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails
    with pytest.raises(CharrnnError, match=r"pip install 'charrnn\[plot\]'"):
        G.require()
    for args in (["report", family_runs["lstm"], "-o", tmp_path / "r.html"],
                 ["plot", family_runs["lstm"], "-o", tmp_path / "c.png"]):
        one_line_error(invoke(*args), "matplotlib", "pip install 'charrnn[plot]'", alone=True)
    assert not list(tmp_path.iterdir())
