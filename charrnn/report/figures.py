"""The figures, drawn with matplotlib from what charrnn.report.runs and .views return.

Each function returns a matplotlib Figure, made without pyplot (so no window, no global state: the
Agg renderer draws PNGs and matplotlib's own writer SVGs); `save` writes it to a file and `svg`
gives it as SVG text for a page. Curves carry their data unsimplified and are tagged with an SVG
id (`<panel>-<run>-<key>`, e.g. `loss-0-train_bpc`), so the points in a file are the metrics they came from.

Sizes: a figure alone is 12.8 x 7.2 inches at 150 dpi, 1920 x 1080 pixels, a full slide; on the
page the same figure is drawn smaller and scales with the window (inline SVG).
"""

from __future__ import annotations

import io
import re
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .. import checkpoint as C
from ..errors import CharrnnError, ConfigError

SLIDE = (12.8, 7.2)  # inches
DPI = 150  # SLIDE at DPI: 1920 x 1080 pixels
FORMATS = ("png", "svg", "pdf")
# Okabe and Ito's colours, told apart by colour-blind readers too (their yellow is too pale on white)
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
INSTALL = "pip install 'charrnn[plot]'"
STYLE = {
    "font.size": 11, "axes.titlesize": 12, "axes.titleweight": "bold", "axes.labelsize": 11,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.color": "#dddddd", "grid.linewidth": 0.6, "legend.frameon": False,
    "path.simplify": False,  # every point drawn is a record; none merged away
    "svg.fonttype": "path",  # text as shapes: the same everywhere, no font needed
    "svg.hashsalt": "charrnn",  # the same figure gives the same file
    "image.interpolation": "nearest",
}


def require():
    """matplotlib, or a CharrnnError naming the extra that installs it."""
    try:
        import matplotlib
    except ImportError:
        raise CharrnnError(f"figures need matplotlib, an optional extra: {INSTALL}") from None
    return matplotlib


@contextmanager
def style():
    mpl = require()
    with mpl.rc_context(STYLE), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from")  # a rare character
        yield


def _figure(size=SLIDE, **kw):
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained", **kw)


def visible(ch: str) -> str:
    """A character as a tick label: space ␣, newline ⏎, tab →, other controls as \\x.."""
    return {" ": "␣", "\n": "⏎", "\t": "→"}.get(ch, ch if ch.isprintable() else repr(ch)[1:-1])


# -- curves -------------------------------------------------------------------------------------

def curves(runs, x: str = "step", size=SLIDE):
    """Training curves of runs of one family, one colour per run: the loss (training: line;
    validation: dashed with dots), the family's validation figure, the learning rate and the
    gradient norm before clipping, against x = "step" or "minutes" of training."""
    from matplotlib.lines import Line2D

    families = sorted({str(r.family) for r in runs})
    if len(families) > 1:
        raise ConfigError(f"runs of different kinds ({', '.join(families)}) have different "
                          f"losses; draw their curves apart")
    train_key, val_key, unit, figs = runs[0].figures
    with style():
        fig = _figure(size)
        (loss, val), (lr, norm) = fig.subplots(2, 2, sharex=True)
        marks = ("o", "s")
        for i, run in enumerate(runs):
            c = COLOURS[i % len(COLOURS)]
            _line(loss, "loss", run, i, train_key, x, color=c, lw=1.3)
            _line(loss, "loss", run, i, val_key, x, color=c, ls="--", marker="o", ms=4, lw=1)
            for f, m in zip(figs, marks):
                _line(val, "val", run, i, f.key, x, color=c, marker=m, ms=4, lw=1.3,
                      ls="-" if m == "o" else ":")
            _line(lr, "lr", run, i, "lr", x, color=c, lw=1.3)
            _line(norm, "norm", run, i, "grad_norm", x, color=c, lw=1)
        loss.set_title(f"loss ({unit})")
        val.set_title("validation " + " and ".join(f.label for f in figs))
        lr.set_title("learning rate")
        norm.set_title("gradient norm before clipping")
        _log_if_wide(norm)
        for ax in (loss, val, lr, norm):
            if not ax.lines:
                ax.text(0.5, 0.5, "nothing recorded yet", ha="center", va="center",
                        transform=ax.transAxes, color="#888888")
        for ax in (lr, norm):
            ax.set_xlabel("step" if x == "step" else "training time (minutes)")
        handles = [Line2D([], [], color=COLOURS[i % len(COLOURS)], lw=3, label=r.name)
                   for i, r in enumerate(runs)]
        handles += [Line2D([], [], color="#555555", lw=1.3, label="training"),
                    Line2D([], [], color="#555555", lw=1, ls="--", marker="o", ms=4,
                           label="validation")]
        if len(figs) > 1:
            handles.append(Line2D([], [], color="#555555", ls=":", marker="s", ms=4,
                                  label=f"validation {figs[1].label}"))
        fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), 6))
    return fig


def _line(ax, panel, run, i, key, x, **kw):
    """Plot run i's series `key`, its SVG id `<panel>-<i>-<key>` (e.g. loss-0-val_bpc)."""
    xs, ys = run.series(key, x)
    if len(xs):
        ax.plot(xs, ys, gid=f"{panel}-{i}-{key}", **kw)


def _log_if_wide(ax):
    ys = np.concatenate([ln.get_ydata() for ln in ax.lines]) if ax.lines else np.array([])
    ys = ys[ys > 0]
    if ys.size and ys.max() / ys.min() > 30:
        ax.set_yscale("log")


# -- classifiers and taggers --------------------------------------------------------------------

def confusion(scores, size=SLIDE):
    """A classifier's (or tagger's) confusion matrix, as counts (shaded by their square root when
    large, so small classes show) and as each true class's share (rows sum to 100%), beside the
    recall of each class."""
    K = len(scores.labels)
    labels = [visible(str(s)) if len(str(s)) == 1 else str(s) for s in scores.labels]
    counts = scores.confusion
    with np.errstate(invalid="ignore", divide="ignore"):
        rows = 100 * counts / counts.sum(axis=1, keepdims=True)
    with style():
        fig = _figure(size)
        a, b, r = fig.subplots(1, 3, width_ratios=[1, 1, 0.6])
        _matrix(a, counts, labels, f"confusion matrix ({scores.unit})", counts=True)
        _matrix(b, rows, labels, "% of each true class", vmax=100.0)
        b.set_ylabel("")
        recall = np.nan_to_num(scores.recall)
        fs = _tick_size(K)
        for k, bar in enumerate(r.barh(np.arange(K), recall, color=COLOURS[0])):
            bar.set_gid(f"recall-{k}")
        r.set_ylim(K - 0.5, -0.5)
        r.set_yticks(np.arange(K), [f"{lab} (n={n:,})" for lab, n in zip(labels, scores.support)],
                     fontsize=fs)
        r.set_xlim(0, 1.25)
        r.set_xticks([0, 0.5, 1])
        r.grid(axis="y", visible=False)
        for k, v in enumerate(recall):
            r.text(v + 0.03, k, f"{v:.2f}", va="center", fontsize=fs)
        r.set_title("recall per class")
        r.set_box_aspect(1.5)  # about as tall as the (square) matrices beside it
        r.set_xlabel(f"accuracy {scores.accuracy:.3f}")
    return fig


def _tick_size(K: int) -> float:
    return 11 if K <= 8 else 9 if K <= 16 else 8 if K <= 24 else 6


def _matrix(ax, m, labels, title, vmax=None, counts=False):
    """A heat map of m (rows: true, columns: predicted), numbers written in while they fit: all
    of them up to 12 classes; beyond, the shares of 10% or more."""
    from matplotlib.colors import PowerNorm

    K = len(labels)
    top = vmax if vmax is not None else max(float(np.nanmax(m)) if m.size else 1.0, 1.0)
    # counts of a few large classes would leave the rest white: shade by the square root
    norm = PowerNorm(0.5, 0, top) if counts and top > 50 else None
    ax.imshow(np.ma.masked_invalid(m.astype(float)), cmap="Blues", aspect="equal",
              **({"norm": norm} if norm else {"vmin": 0, "vmax": top}))
    fs = _tick_size(K)
    ax.set_xticks(np.arange(K), labels, rotation=90 if K > 6 else 0, fontsize=fs)
    ax.set_yticks(np.arange(K), labels, fontsize=fs)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    ax.grid(False)
    ax.spines[:].set_visible(False)
    ax.tick_params(length=0)
    if K > 24 or (counts and K > 12):
        return
    size = 10 if K <= 6 else 8 if K <= 12 else 6
    for (i, j), v in np.ndenumerate(m):
        if np.isfinite(v) and (v >= 10 or (K <= 12 and v > 0) or (K <= 6 and i == j)):
            dark = (v / top) ** (0.5 if norm else 1) > 0.55
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=size,
                    color="white" if dark else "#222222")


def tag_scores(scores, size=SLIDE):
    """A tagger's precision, recall and F1 per tag, side by side, each tag's count below it."""
    K = len(scores.labels)
    with style():
        fig = _figure(size)
        ax = fig.subplots()
        w = 0.8 / 3
        for j, (name, v) in enumerate((("precision", scores.precision),
                                       ("recall", scores.recall), ("F1", scores.f1))):
            xs = np.arange(K) + (j - 1) * w
            for k, bar in enumerate(ax.bar(xs, np.nan_to_num(v), w, color=COLOURS[j], label=name)):
                bar.set_gid(f"{name}-{k}")
            if K <= 16:
                for xi, vi in zip(xs, v):
                    if np.isfinite(vi):
                        ax.text(xi, vi + 0.01, f"{vi:.2f}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(np.arange(K), [f"{visible(str(t))}\n(n={n:,})"
                                     for t, n in zip(scores.labels, scores.support)])
        ax.set_ylim(0, 1.1)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1])
        ax.grid(axis="x", visible=False)
        ax.set_title(f"per tag, on the validation characters (accuracy {scores.accuracy:.3f})")
        fig.legend(loc="outside upper center", ncol=3)
    return fig


# -- seq2seq ------------------------------------------------------------------------------------

def attention(examples, size=SLIDE):
    """Attention maps (Bahdanau et al. 2015): per example, the source across the top, the output
    down (the end marker's row last), each cell the weight output character i gave source
    character j; below each map its output, ✓ when it is one of the references."""
    n = len(examples)
    if not n:
        raise ConfigError("no validation examples to draw the attention of")
    if all(e.weights.shape[1] == 0 for e in examples):
        raise ConfigError("this model has no attention (trained with --attention none)")
    cols = min(n, 4)
    with style():
        fig = _figure(size)
        axes = np.atleast_1d(fig.subplots(1, cols)).ravel()
        image = None
        for ax, e in zip(axes, examples[:cols]):
            w = e.weights
            image = ax.imshow(w, cmap="Blues", vmin=0, vmax=1, aspect="equal")
            src = [visible(c) for c in e.source]
            out = [visible(c) for c in e.output] + ["end"] * (len(w) - len(e.output))
            fs = 10 if max(w.shape) <= 16 else 8 if max(w.shape) <= 28 else 6
            ax.set_xticks(np.arange(w.shape[1]), src, fontsize=fs)
            ax.set_yticks(np.arange(w.shape[0]), out, fontsize=fs)
            ax.xaxis.tick_top()
            ax.grid(False)
            ax.spines[:].set_visible(False)
            ax.tick_params(length=0)
            ok = "✓" if e.output in e.references else "✗"
            ax.set_xlabel(f"{ok} {_short(e.output)}", fontsize=9)
        fig.colorbar(image, ax=list(axes), shrink=0.7, aspect=25, label="attention weight")
    return fig


def attention_size(examples, width: float) -> tuple[float, float]:
    """A figure size for `width` inches that leaves the square-celled maps little empty space."""
    cols = min(len(examples), 4) or 1
    tall = max((e.weights.shape[0] / max(e.weights.shape[1], 1) for e in examples[:cols]),
               default=1.0)
    return width, min(max(0.82 * width / cols * tall + 1.0, 2.5), 1.2 * width)


def _short(s: str, n: int = 24) -> str:
    s = "".join(visible(c) for c in s)
    return s if len(s) <= n else s[: n - 1] + "…"


# -- gradient flow ------------------------------------------------------------------------------

def gradflow(flows, size=SLIDE):
    """charrnn gradflow's series: the mean norm of dL/dstate k steps before the loss, log scale;
    the LSTM's cell state dashed."""
    if not flows:
        raise ConfigError("no language model to measure the gradient flow of (gradflow "
                          "measures language models)")
    with style():
        fig = _figure(size)
        ax = fig.subplots()
        for i, f in enumerate(flows):
            c = COLOURS[i % len(COLOURS)]
            k = np.arange(len(f.h))
            ax.semilogy(k, f.h, color=c, lw=1.5, label=f"{f.label}: h", gid=f"flow-{i}-h")
            if f.c is not None:
                ax.semilogy(k, f.c, color=c, lw=1.5, ls="--", label=f"{f.label}: c (cell)",
                            gid=f"flow-{i}-c")
        ax.set_xlabel("k: steps between the state and the loss")
        ax.set_ylabel("mean |dL/dstate| (log scale)")
        ax.set_title("gradient flow through time")
        fig.legend(loc="outside upper center", ncol=min(4, len(ax.lines)))
    return fig


# -- output -------------------------------------------------------------------------------------

def save(fig, path, dpi: int = DPI) -> None:
    """Write the figure to `path`, its format from the suffix (.png, .svg, .pdf), atomically."""
    path = Path(path)
    fmt = path.suffix[1:].lower()
    if fmt not in FORMATS:
        raise ConfigError(f"cannot tell the image format of {path}: name it .png, .svg or .pdf")
    meta = {"png": {"Software": "charrnn"}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}
    with style():
        try:
            C.atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi,
                                                       metadata=meta[fmt]))
        except OSError as e:
            raise CharrnnError(f"cannot write {path}: {e.strerror or e}") from None


_ID = re.compile(r'(\bid="|xlink:href="#|href="#|url\(#)([^")]+)')


def svg(fig, prefix: str) -> str:
    """The figure as an <svg> element for an HTML page: no XML prologue, every id prefixed (the
    page holds many figures), and sized by the page (its viewBox kept)."""
    buf = io.StringIO()
    with style():
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = _ID.sub(lambda m: m.group(1) + prefix + m.group(2), text)
    head, rest = text.split(">", 1)
    head = re.sub(r'\s(width|height)="[^"]*"', "", head)
    return f'{head} class="figure" role="img">{rest}'

