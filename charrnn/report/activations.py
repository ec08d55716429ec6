"""The activation view: text coloured by what one unit computed at each character (after
Karpathy, Johnson and Fei-Fei 2015), the unit chosen on the page from a list or by hovering.

The recording is charrnn.inside.record's (every layer's hidden state, gates and cell state), of
validation text the model did not train on: a stretch of a language model's held-out text, or
an encoder's validation examples, one per line. It goes into the page as data, not pictures:
per series the values quantised to a byte over the series' range (gates 0..1, the rest -1..1,
charrnn.nn.cells.SERIES_BOUNDS; the LSTM's unbounded cell state c shown as tanh(c), as Karpathy
et al. colour their cells and `charrnn inside` does), unit by unit, base64-encoded; the page's
script colours the text from it. A GRU of 384 units over 300 characters is 4 x 115 KB
(154 KB as base64).
"""

from __future__ import annotations

import base64
import html
import json

import numpy as np

from ..errors import CharrnnError
from .runs import Run

CHARS = 300  # characters recorded for the page
LEVELS = 255  # a value is stored as round(LEVELS * (v - lo) / (hi - lo)), clipped to 0..LEVELS

WHAT = {"h": "hidden state", "c": "cell state, as tanh(c)", "i": "input gate", "f": "forget gate",
        "o": "output gate", "g": "candidate", "r": "reset gate", "z": "update gate",
        "n": "candidate"}


def validation_text(run: Run, data, chars: int = CHARS) -> str:
    """About `chars` characters of the run's validation data: a language model's held-out text
    from its first line break on; an encoder's validation texts, a line each."""
    vocab = run.ckpt.vocab.chars
    if run.has("stepper"):  # one long text
        ids = data.val[: chars * 4]
        text = "".join(vocab[i] for i in ids)
        start = text.find("\n") + 1 if "\n" in text[: chars // 2] else 0
        return text[start : start + chars]
    sources = [ids for ids, _ in data.val_groups] if run.answers == "text" else data.val[0]
    lines, total = [], 0
    for ids in sources:
        if total >= chars:
            break
        line = "".join(vocab[i] for i in ids).replace("\n", " ")
        lines.append(line)
        total += len(line)
    return "\n".join(lines)


def quantise(values: np.ndarray, bounds) -> np.ndarray:
    """uint8 levels of values over bounds (lo, hi)."""
    lo, hi = bounds
    q = np.rint((np.asarray(values, dtype=np.float64) - lo) * (LEVELS / (hi - lo)))
    return np.clip(q, 0, LEVELS).astype(np.uint8)


def payload(rec) -> dict:
    """The recording as the page's script reads it: the characters and where each recorded
    sequence starts, and per series its range, its units' spread (for the list) and values."""
    series = []
    for name, X in rec.arrays.items():
        lo, hi = rec.bounds(name)
        kind = name.rpartition(".")[2]
        squash = kind == "c"  # unbounded (|c_t| <= t): its tanh, as the cell's output sees it
        if squash:
            X = np.tanh(X.astype(np.float64))
        q = quantise(X, (lo, hi))  # (T, H)
        spread = X.astype(np.float64).std(axis=0)
        series.append({"name": name, "what": WHAT.get(kind, kind), "lo": lo, "hi": hi,
                       "tanh": squash,
                       "units": int(X.shape[1]),
                       "spread": [round(float(s), 4) for s in spread],
                       "values": base64.b64encode(np.ascontiguousarray(q.T).tobytes()).decode()})
    return {"text": rec.text, "starts": [int(a) for a, _ in rec.spans], "series": series}


def record(run: Run, data, chars: int = CHARS):
    """charrnn.inside.record's recording of the run's model over its validation text."""
    from ..inside.record import record as inside

    text = validation_text(run, data, chars)
    if not text:
        raise CharrnnError("no validation text to record the units on")
    return inside(run.ckpt, text)


def section(rec, key: str) -> str:
    """The view's HTML: the controls, the text (filled in by the page's script) and its data."""
    data = json.dumps(payload(rec), separators=(",", ":")).replace("</", "<\\/")
    e = html.escape
    options = "".join(f'<option value="{e(s)}">{e(s)}: {e(WHAT.get(s.rpartition(".")[2], ""))}'
                      f"</option>" for s in rec.arrays)
    return (f'<div class="activations" id="{key}">'
            f'<div class="act-controls"><label>series <select class="act-series">{options}'
            f'</select></label> <label>unit <select class="act-unit"></select></label>'
            f'<span class="act-scale"></span></div>'
            f'<div class="act-units" title="each unit of the series, darker the more it varies '
            f'over this text: hover to look, click to choose"></div>'
            f'<div class="act-text"></div>'
            f'<script type="application/json" class="act-data">{data}</script></div>')


# The view's script, one copy for every view on the page. Colours: blue at the series' low end,
# white in the middle, red at the top (Karpathy et al.'s picture).
SCRIPT = r"""
function actColour(t) {
  var lo = [33, 102, 172], mid = [247, 247, 247], hi = [178, 24, 43];
  var a = t < 0.5 ? lo : mid, b = t < 0.5 ? mid : hi, u = t < 0.5 ? t * 2 : t * 2 - 1;
  return "rgb(" + a.map(function (x, k) { return Math.round(x + (b[k] - x) * u); }).join(",") + ")";
}
document.querySelectorAll(".activations").forEach(function (view) {
  var data = JSON.parse(view.querySelector(".act-data").textContent);
  var bytes = {};
  data.series.forEach(function (s) {
    var raw = atob(s.values), a = new Uint8Array(raw.length);
    for (var k = 0; k < raw.length; k++) a[k] = raw.charCodeAt(k);
    bytes[s.name] = a;
  });
  var T = data.text.length, box = view.querySelector(".act-text"), spans = [];
  var starts = new Set(data.starts);
  for (var t = 0; t < T; t++) {
    if (t > 0 && starts.has(t)) {  // the next text an encoder read on its own
      var gap = document.createElement("span");
      gap.className = "gap";
      box.appendChild(gap);
    }
    var ch = data.text[t], sp = document.createElement("span");
    sp.textContent = ch === "\n" ? "\u21b5" : ch === " " ? "\u00a0" : ch;
    spans.push(sp);
    box.appendChild(sp);
    if (ch === "\n") box.appendChild(document.createElement("br"));
  }
  var seriesBox = view.querySelector(".act-series"), unitBox = view.querySelector(".act-unit");
  var grid = view.querySelector(".act-units"), scale = view.querySelector(".act-scale");
  var chosen = null;
  function series() {
    return data.series.filter(function (s) { return s.name === seriesBox.value; })[0];
  }
  function show(unit) {
    var s = series(), v = bytes[s.name], off = unit * T;
    for (var t = 0; t < T; t++) {
      var q = v[off + t] / 255, x = s.lo + q * (s.hi - s.lo);
      spans[t].style.background = actColour(q);
      spans[t].style.color = q < 0.15 || q > 0.85 ? "#fff" : "#1d2330";
      var label = s.name + "." + unit;
      spans[t].title = (s.tanh ? "tanh(" + label + ")" : label) + " = " + x.toFixed(3);
    }
    view.dataset.shown = s.name + "." + unit;
    grid.querySelectorAll(".on").forEach(function (c) { c.classList.remove("on"); });
    if (grid.children[unit]) grid.children[unit].classList.add("on");
  }
  function choose(unit) {
    chosen = unit;
    unitBox.value = String(unit);
    show(unit);
  }
  function fill() {
    var s = series(), order = s.spread.map(function (x, j) { return j; });
    order.sort(function (a, b) { return s.spread[b] - s.spread[a]; });
    unitBox.innerHTML = "";
    order.forEach(function (j) {
      var o = document.createElement("option");
      o.value = String(j);
      o.textContent = s.name + "." + j + "  (spread " + s.spread[j].toFixed(2) + ")";
      unitBox.appendChild(o);
    });
    var top = Math.max.apply(null, s.spread) || 1;
    grid.innerHTML = "";
    s.spread.forEach(function (x, j) {
      var c = document.createElement("span");
      c.style.background = "rgba(0,114,178," + (0.08 + 0.92 * x / top).toFixed(3) + ")";
      c.title = s.name + "." + j;
      c.addEventListener("mouseenter", function () { show(j); });
      c.addEventListener("click", function () { choose(j); });
      grid.appendChild(c);
    });
    scale.innerHTML = "";
    [[0, s.lo], [0.5, (s.lo + s.hi) / 2], [1, s.hi]].forEach(function (p) {
      var k = document.createElement("span");
      k.style.background = actColour(p[0]);
      k.style.color = p[0] === 0.5 ? "#1d2330" : "#fff";
      k.textContent = String(p[1]);
      scale.appendChild(k);
    });
    choose(order[0]);
  }
  grid.addEventListener("mouseleave", function () { show(chosen); });
  seriesBox.addEventListener("change", fill);
  unitBox.addEventListener("change", function () { choose(Number(unitBox.value)); });
  seriesBox.value = data.series[data.series.length - 1].name.replace(/\.[^.]+$/, ".h");
  if (!series()) seriesBox.value = data.series[0].name;
  fill();
});
"""

CSS = """
.activations { border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
.act-controls { font-size: 13.5px; display: flex; flex-wrap: wrap; gap: 8px 16px;
  align-items: center; }
.act-controls select { font: inherit; padding: 2px 4px; }
.act-scale span { display: inline-block; padding: 0 8px; font-size: 12px; border-radius: 3px;
  margin-left: 2px; }
.act-units { display: flex; flex-wrap: wrap; gap: 1px; margin: 8px 0; }
.act-units span { width: 9px; height: 9px; cursor: pointer; }
.act-units span.on { outline: 2px solid #D55E00; }
.act-text { font: 14px/1.6 ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace;
  white-space: normal; word-break: break-all; }
.act-text span { padding: 1px 0; }
.act-text span.gap { display: inline-block; width: 1.6em; }
"""
