"""The report: one self-contained HTML page of one or more runs.

Everything is in the file: the figures as inline SVG, the style sheet, and the few lines of script
the interactive parts need. It fetches nothing (no fonts, scripts or styles from anywhere), so it
opens from a USB stick or an e-mail attachment as it opens from the disk it was written to.

The page: a table of the runs; the training curves of each kind of run (all runs of one kind on
one plot), by step and by training time; then per run its settings and data, and what its
family shows: a language model's sample (and, where charrnn.inside.record exists, its activation
view), a classifier's confusion matrix and recall per class, a tagger's precision, recall and F1
per tag, a seq2seq model's attention maps; and with `gradflow` the gradient flow of the language
models. A part that cannot be made (the corpus moved, say) is replaced by a note saying why, and
the note is returned too.
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from .. import checkpoint as C
from ..errors import CharrnnError
from ..models import family
from . import activations as A
from . import figures as G
from . import views as V
from .runs import Run

PAGE = (10.0, 5.6)  # inches: a figure on the page, scaled to the column's width


KINDS = {"lm": "language models", "classify": "classifiers", "tag": "taggers",
         "seq2seq": "sequence to sequence", "generate": "generators (one to many)"}


@dataclass(frozen=True)
class Options:
    gradflow: bool = False  # measure and draw the language models' gradient flow
    sample_length: int = V.SAMPLE_LENGTH  # a language model's sample (0: none)
    examples: int = V.ATTENTION_EXAMPLES  # seq2seq attention maps
    inside_chars: int = A.CHARS  # characters of the activation view (0: none)
    seed: int = 1  # the sample's
    title: str | None = None


@dataclass
class _Page:
    parts: list = field(default_factory=list)
    notes: list = field(default_factory=list)  # (run name or "", message)
    n: int = 0  # figures so far: their SVG ids' prefix

    def add(self, text: str) -> None:
        self.parts.append(text)

    def figure(self, fig, caption: str, name: str, x: str | None = None) -> None:
        """Add the figure as inline SVG; `x`: the curves' x axis, which the page's switch picks."""
        self.n += 1
        svg = G.svg(fig, f"f{self.n}-")
        axis = f' data-x="{x}"' if x else ""
        self.add(f'<figure class="chart" data-figure="{_e(name)}"{axis}>{svg}'
                 f"<figcaption>{_e(caption)}</figcaption></figure>")

    def note(self, who: str, message: str) -> None:
        self.notes.append((who, message))
        self.add(f'<p class="note">{_e(message)}</p>')


def _e(s) -> str:
    return html.escape(str(s), quote=True)


def build(runs: list[Run], options: Options = Options()) -> tuple[str, list]:
    """(the page's HTML, notes): each note (run name, message) says what could not be shown
    and why, or what was skipped in reading (damaged metrics lines)."""
    G.require()  # before any work: without matplotlib, the one-line error naming the extra
    p = _Page()
    title = options.title or "charrnn report: " + ", ".join(r.name for r in runs)
    p.add(f"<header><h1>{_e(title)}</h1><p class=\"meta\">{len(runs)} run"
          f"{'s' if len(runs) != 1 else ''}, made by charrnn {__version__} on "
          f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC</p></header>")
    _runs_table(p, runs)
    _curves(p, runs)
    for i, run in enumerate(runs):
        _run_section(p, i, run, options)
    if options.gradflow:
        _gradflow(p, runs)
    body = "\n".join(p.parts)
    return _document(title, body, SCRIPT + A.SCRIPT), p.notes


def _runs_table(p: _Page, runs: list[Run]) -> None:
    p.add('<section id="runs"><h2>Runs</h2><table class="runs"><thead><tr><th>run</th>'
          '<th>task</th><th>model</th><th>steps</th><th>time</th><th>best validation</th>'
          '<th>state</th></tr></thead><tbody>')
    for i, run in enumerate(runs):
        model = family(run.family).describe(run.ckpt.model) if run.ckpt is not None else "—"
        p.add(f'<tr><td><a href="#run-{i}"><span class="swatch" style="background:'
              f'{G.COLOURS[i % len(G.COLOURS)]}"></span>{_e(run.name)}</a></td>'
              f"<td>{_e(run.family or '?')}</td><td>{_e(model)}</td>"
              f"<td>{_e(_steps(run))}</td><td>{_e(_minutes(run))}</td>"
              f"<td>{_e(_best(run))}</td><td>{_e(_state(run))}</td></tr>")
    p.add("</tbody></table>")
    for run in runs:
        if run.skipped:
            p.note(run.name, f"{run.name}: {run.skipped} line{'s' if run.skipped != 1 else ''} "
                   f"of {run.path / 'metrics.jsonl'} could not be read (damaged, or being "
                   f"written) and {'were' if run.skipped != 1 else 'was'} skipped")
        if run.problem:
            p.note(run.name, f"{run.name}: {run.problem}")
    p.add("</section>")


def _steps(run: Run) -> str:
    s = run.last_step
    return "—" if s is None else f"{s:,}"


def _minutes(run: Run) -> str:
    xs, _ = run.series("step", "minutes")
    return f"{xs.max():.1f} min" if len(xs) else "—"


def _best(run: Run) -> str:
    _, _, _, figs = run.figures
    out = []
    for f in figs[:1]:
        steps, ys = run.series(f.key)
        if len(ys):
            k = ys.argmax() if f.higher_is_better else ys.argmin()
            out.append(f"{f.label} {ys[k]:.4g} (step {int(steps[k]):,})")
    return "; ".join(out) or "not evaluated yet"


def _state(run: Run) -> str:
    if run.training:
        return "training (train.lock present)"
    return "stopped" if run.records or run.ckpt is not None else "empty"


def _curves(p: _Page, runs: list[Run]) -> None:
    p.add('<section id="curves"><h2>Training curves</h2><div class="switch" role="group" '
          'aria-label="x axis">x axis: <button type="button" data-x="step" aria-pressed="true">'
          'steps</button><button type="button" data-x="minutes" aria-pressed="false">training '
          'time</button></div>')
    kinds: dict = {}
    for run in runs:
        kinds.setdefault(run.family, []).append(run)
    for kind, group in kinds.items():
        if not any(r.records for r in group):
            p.note("", f"{kind or 'unknown'} runs: nothing recorded yet")
            continue
        if len(kinds) > 1:
            p.add(f"<h3>{_e(KINDS.get(kind, 'runs of an unknown kind'))}</h3>")
        what = ", ".join(r.name for r in group)
        p.figure(G.curves(group, "step", PAGE), f"by step: {what}", f"curves-step-{kind}",
                 "step")
        p.figure(G.curves(group, "minutes", PAGE), f"by training time: {what}",
                 f"curves-time-{kind}", "minutes")
    p.add("</section>")


def _run_section(p: _Page, i: int, run: Run, options: Options) -> None:
    p.add(f'<section id="run-{i}" class="run"><h2>{_e(run.name)}</h2>'
          f'<p class="meta">{_e(run.path)}</p>')
    if run.ckpt is None:
        p.note(run.name, f"{run.name}: no checkpoint yet, so only its curves are shown")
        p.add("</section>")
        return
    data = None
    try:
        data = V.validation_data(run)
    except CharrnnError as e:
        p.note(run.name, f"{run.name}: its data could not be read again ({e}), so what needs "
               f"the validation data is left out")
    model, trained = V.settings(run)
    p.add('<div class="tables">')
    _table(p, "model", model)
    _table(p, "training settings", trained)
    if data is not None:
        rows = [("data", data.info.get("data", ""))]
        train = run.ckpt.meta.get("train") or {}
        if train.get("val"):
            rows.append(("validation", f"the file {train['val']}"))
        else:
            rows.append(("validation", f"{train.get('val_frac', '?')} of the data, held out"))
        _table(p, "data", rows)
    p.add("</div>")
    try:
        _family_part(p, run, data, options)
    except CharrnnError as e:
        p.note(run.name, f"{run.name}: {e}")
    if data is not None and options.inside_chars:
        try:
            rec = A.record(run, data, options.inside_chars)
            where = "held-out text" if run.has("stepper") else "validation texts, side by side"
            p.add(f"<h3>Inside the model</h3><p class=\"meta\">{len(rec.text):,} characters of "
                  f"its {where}, each coloured by what the chosen unit computed on reading it "
                  f"(hover a character for the value; hover or click a square to pick a unit)</p>")
            p.add(A.section(rec, f"inside-{i}"))
        except CharrnnError as e:
            p.note(run.name, f"{run.name}: the activation view: {e}")
    p.add("</section>")


def _table(p: _Page, title: str, rows) -> None:
    p.add(f'<table class="kv"><caption>{_e(title)}</caption><tbody>')
    for k, v in rows:
        p.add(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>")
    p.add("</tbody></table>")


def _family_part(p: _Page, run: Run, data, options: Options) -> None:
    if run.has("stepper"):
        if options.sample_length:
            text = V.sample(run, options.sample_length, options.seed)
            p.add(f'<h3>A sample</h3><p class="meta">{options.sample_length} characters, '
                  f"temperature 0.8, seed {options.seed}, from {_e(run.checkpoint.name)}</p>"
                  f'<pre class="sample">{_e(text)}</pre>')
        return
    if data is None:
        return
    if run.answers in ("label", "tags"):
        scores = V.class_scores(run, data)
        n = int(scores.support.sum())
        if run.answers == "label":
            p.add("<h3>Confusion matrix and recall per class</h3>")
            p.figure(G.confusion(scores, _confusion_size(scores)),
                     f"validation: {n:,} examples the model did not train on", "confusion")
        else:
            p.add("<h3>Precision, recall and F1 per tag</h3>")
            p.figure(G.tag_scores(scores, (PAGE[0], 3.4)), f"validation: {n:,} characters",
                     "tags")
            p.figure(G.confusion(scores, _confusion_size(scores)),
                     "which tag each character was given", "confusion")
    elif run.answers == "text":
        examples = V.attention_examples(run, data, options.examples)
        if not examples:
            p.note(run.name, f"{run.name}: no validation examples to show")
            return
        p.add("<h3>Attention</h3>")
        p.figure(G.attention(examples, G.attention_size(examples, PAGE[0])), "validation sources (across) and the model's "
                 "greedy output (down): where each output character looked", "attention")


def _confusion_size(scores) -> tuple[float, float]:
    K = len(scores.labels)
    return PAGE[0], 2.6 if K <= 3 else 3.6 if K <= 8 else 4.8


def _gradflow(p: _Page, runs: list[Run]) -> None:
    p.add('<section id="gradflow"><h2>Gradient flow</h2>')
    try:
        flows = V.gradient_flow(runs)
        if flows:
            p.figure(G.gradflow(flows, (PAGE[0], 4.2)), "mean norm of the loss's gradient with respect to "
                     "the state k steps before it (charrnn gradflow)", "gradflow")
        else:
            p.note("", "gradient flow is measured for language models, and there is none here")
    except CharrnnError as e:
        p.note("", f"gradient flow: {e}")
    p.add("</section>")


def write(path, text: str) -> None:
    """Write the page atomically."""
    try:
        C.atomic_write(Path(path), lambda f: f.write(text.encode("utf-8")))
    except OSError as e:
        raise CharrnnError(f"cannot write {path}: {e.strerror or e}") from None


CSS = """
:root { color-scheme: light; --ink: #1d2330; --muted: #5b6474; --line: #e3e6ec; --accent: #0072B2; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1180px; padding: 24px 28px 60px; color: var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 8px; padding-top: 10px; border-top: 1px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 6px; }
.meta { color: var(--muted); margin: 0 0 8px; font-size: 13px; word-break: break-all; }
table { border-collapse: collapse; font-size: 13.5px; }
table.runs { width: 100%; }
table.runs th, table.runs td { text-align: left; padding: 5px 10px 5px 0;
  border-bottom: 1px solid var(--line); vertical-align: top; }
table.kv { flex: 1 1 300px; align-self: flex-start; }
table.kv caption { text-align: left; font-weight: 600; padding-bottom: 4px; }
table.kv th { text-align: left; font-weight: 500; color: var(--muted); padding: 2px 14px 2px 0;
  white-space: nowrap; vertical-align: top; }
table.kv td { padding: 2px 0; word-break: break-word; }
table.kv tr:nth-child(even) { background: #f7f8fa; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px;
  margin-right: 7px; vertical-align: -1px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
.tables { display: flex; flex-wrap: wrap; gap: 12px 32px; }
figure { margin: 8px 0 16px; min-width: 0; }
figure svg.figure { width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 13px; text-align: center; }
pre.sample { background: #f7f8fa; border: 1px solid var(--line); border-radius: 6px;
  padding: 12px 14px; white-space: pre-wrap; font: 13px/1.45 ui-monospace, "DejaVu Sans Mono",
  Menlo, Consolas, monospace; max-height: 360px; overflow: auto; }
.switch { font-size: 13.5px; color: var(--muted); margin-bottom: 6px; }
.switch button { font: inherit; color: var(--ink); background: #fff; border: 1px solid #c9ced8;
  padding: 3px 12px; margin-left: 6px; border-radius: 14px; cursor: pointer; }
.switch button[aria-pressed="true"] { background: var(--accent); border-color: var(--accent);
  color: #fff; }
.switch { display: none; }
body.js .switch { display: block; }
body.js figure[data-x]:not(.shown) { display: none; }
.note { background: #fff7e0; border-left: 4px solid #E69F00; padding: 6px 10px; margin: 8px 0;
  font-size: 13.5px; }
"""


# The page's only script: the curves' x-axis switch (without script, both sets of curves show).
SCRIPT = """
document.body.classList.add("js");
function showX(x) {
  document.querySelectorAll("figure[data-x]").forEach(function (f) {
    f.classList.toggle("shown", f.dataset.x === x);
  });
  document.querySelectorAll(".switch button").forEach(function (b) {
    b.setAttribute("aria-pressed", String(b.dataset.x === x));
  });
}
document.querySelectorAll(".switch button").forEach(function (b) {
  b.addEventListener("click", function () { showX(b.dataset.x); });
});
showX("step");
"""


def _document(title: str, body: str, script: str = "") -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{CSS}{A.CSS}</style></head>\n<body>\n{body}\n"
            + (f"<script>{script}</script>" if script else "") + "</body></html>\n")
