"""`charrnn inside`: what each unit and gate of a trained model does, character by character."""

from __future__ import annotations

import json
import os
import sys
import time

import click
from rich.table import Table

from .console import CONTEXT, PATH, err, kernels_option, open_checkpoint, out


@click.command("inside", context_settings=CONTEXT)
@click.argument("text", required=False)
@click.option("--checkpoint", "-c", type=PATH, metavar="PATH",
              help="Checkpoint file or run directory. Default: the most recently written run "
              "under runs/.")
@click.option("--file", "-f", "file", type=PATH, metavar="FILE",
              help="Read the text from FILE instead of the TEXT argument.")
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of FILE.")
@click.option("--unit", "-u", "units", multiple=True, metavar="NAME",
              help="Show the text coloured by this unit's values: l{layer}.{series}.{index}, "
              "e.g. l1.c.17 (LSTM series i f o g c h, GRU r z n h, RNN h; an encoder's "
              "l0.fw.h.3 or l0.bw.h.3 for its two directions). Repeatable.")
@click.option("--find", "find_", is_flag=True,
              help="Rank the units by how well they follow each built-in feature of the text "
              "(inside double quotes, bracket depth, position in the line, start of a word, "
              "vowel or consonant, digit): the best ones, Pearson's r, and an excerpt coloured "
              "by the best.")
@click.option("--find-regex", "regexes", multiple=True, metavar="PATTERN",
              help="Also rank units against your own feature: 1 on the characters inside "
              "matches of the Python regular expression PATTERN, 0 elsewhere (e.g. '\"[^\"]*\"' "
              "for strings, '\\t.*' for what follows a tab). Repeatable.")
@click.option("--saturation", is_flag=True,
              help="Per layer and gate, the fraction of steps left-saturated (below 0.1) and "
              "right-saturated (above 0.9), as Karpathy et al. (2015) measured them. With none "
              "of --unit, --find, --find-regex and --saturation, --find and --saturation are "
              "shown.")
@click.option("--series", "series", multiple=True, metavar="NAME",
              help="Rank only these series with --find (e.g. --series l1.c); default: every "
              "series. Repeatable.")
@click.option("--top", type=click.IntRange(min=1), default=3, show_default=True,
              help="Units listed per feature.")
@click.option("--width", type=click.IntRange(min=10), default=60, show_default=True,
              help="Characters in each --find excerpt.")
@click.option("--plain", is_flag=True,
              help="No colour: each value as a digit (0-9, tenths of the unit's range) under "
              "its character. Also when NO_COLOR is set or stdout is not a terminal.")
@click.option("--color", "--colour", "colour", is_flag=True,
              help="Colour even when stdout is not a terminal (for `less -R`).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object instead: the recorded text and each --unit's values, "
              "the --find rankings with their excerpts, the --saturation fractions (per unit "
              "too).")
@kernels_option
def inside(text, checkpoint, file, encoding, units, find_, regexes, saturation, series, top,
           width, plain, colour, as_json, kernels):
    """Look inside a trained model: record, at every character of TEXT, each layer's hidden
    state and, for LSTM and GRU cells, every gate and the cell state; then colour the text by
    one unit, find the units that follow features of the text, or measure gate saturation.

    A language model reads the text as one stream (characters outside its vocabulary are
    skipped); a classifier, tagger or encoder-decoder reads each line on its own, with its
    encoder's two directions named fw and bw. Results go to stdout; the recording's summary and
    colour keys to stderr.

    \b
    Examples:
      charrnn inside -c runs/tinyshakespeare -f corpora/tinyshakespeare.txt
      charrnn inside -c runs/tinyshakespeare "ROMEO: 'Tis (but) \\"thy\\" name" -u l1.c.17
      charrnn inside -c runs/code -f main.c --find-regex '"[^"\\n]*"' --series l1.c
      charrnn inside -c runs/names -u l0.bw.h.3 Nakamura
    """
    from ..data.text import read_corpus
    from ..inside import record as I
    from ..models import family

    if (text is None) == (file is None):
        raise click.UsageError("give the text to look at: a TEXT argument or --file FILE")
    if file is not None:
        if not os.path.lexists(file):
            raise click.ClickException(f"file not found: {file}")
        text = read_corpus(file, encoding)
    if plain and colour:
        raise click.UsageError("--plain and --color contradict each other; give one")
    show_find = find_ or bool(regexes)
    if not (units or show_find or saturation):
        show_find = saturation = True
    path, ckpt = open_checkpoint(checkpoint, kernels=kernels)
    I.check_names(ckpt, units, series)
    keep = None  # only the series the views need: all of an LSTM 512x2 over 1e5 chars is 2.4 GB
    if series or not show_find:
        names = I.series_names(ckpt)
        keep = {I.split_unit(u, names, ckpt.model.hidden, ckpt.model.cell)[0] for u in units}
        keep |= set(series) | ({s for s in names if I.SERIES_BOUNDS[s[-1]] == (0.0, 1.0)}
                               if saturation else set())
        keep = [s for s in names if s in keep]
    start = time.perf_counter()
    rec = I.record(ckpt, text, keep)
    seconds = time.perf_counter() - start
    H = rec.units_per_series
    err.print(f"recorded {len(rec.text):,} characters with {path} ({ckpt.model.cell}: "
              f"{len(rec.arrays)} series of {H} units) in {seconds:.2f} s"
              + (f"; {rec.skipped:,} characters outside the vocabulary "
                 f"{family(ckpt.family).OUT_OF_VOCABULARY}" if rec.skipped else ""),
              markup=False, soft_wrap=True)
    found = I.find(rec, None if find_ or not regexes else [], regexes, top,
                   list(series) or None) if show_find else []
    sat = I.saturation(rec) if saturation else []
    if as_json:
        click.echo(json.dumps(_json(rec, path, units, found, sat, width, seconds),
                              ensure_ascii=False))
        return
    use_colour = colour or (not plain and out.is_terminal and not os.environ.get("NO_COLOR"))
    con = out
    if colour and not out.is_terminal:
        from rich.console import Console

        con = Console(file=sys.stdout, force_terminal=True, color_system="truecolor",
                      highlight=False, width=out.width)
    _show(con, rec, units, found, sat, width, use_colour)


def _show(con, rec, units, found, sat, width, colour):
    from rich.text import Text

    from ..inside import record as I
    from ..inside import view as V

    for name in units:
        values, bounds, label = V.shown(name, rec.unit(name), rec.bounds(name))
        err.print(f"{label}:", V.legend(bounds, colour))
        if colour:
            con.print(V.coloured(rec.text, values, bounds, rec.spans), end="", soft_wrap=True)
        else:
            con.file.write(V.digit_rows(rec.text, values, bounds, rec.spans))
            con.file.flush()
    for f in found:
        con.print(f"[bold]{f.feature}[/]: {f.description}" if colour else
                  f"{f.feature}: {f.description}", soft_wrap=True, highlight=False,
                  markup=colour)
        if f.constant:
            con.print("  the same at every character of this text: nothing to find",
                      markup=False)
            continue
        con.print("  " + "   ".join(f"{u} {r:+.3f}" for u, r in f.units), markup=False)
        values, mask = I.feature(rec, f.feature, regex=f.regex)
        a, b = I.excerpt(values, mask, width)
        best = f.units[0][0]
        piece = rec.text[a:b]
        v, bounds, _ = V.shown(best, rec.unit(best)[a:b], rec.bounds(best))
        breaks = {s - a for s, _ in rec.spans if a < s < b}  # an encoder's next line
        if colour:
            con.print(Text("  ") + V.coloured_line(piece, v, bounds, breaks), soft_wrap=True)
        else:
            con.file.write("".join("  " + row + "\n" for row in
                                   V.digit_line(piece, v, bounds, breaks).split("\n")))
            con.file.flush()
    if sat:
        con.print(_saturation_table(rec, sat))
        layers = {s.series.split(".")[0] for s in sat}
        if len(layers) > 1:
            err.print("Karpathy et al. (2015) found the forget gates of higher layers more "
                      "often right-saturated (open, carrying the cell state far) than the first "
                      "layer's.", markup=False, soft_wrap=True)


def _saturation_table(rec, sat):
    from ..inside import record as I

    t = Table(title=f"gate saturation over {len(rec.text):,} characters: the mean fraction of "
              f"steps each unit spends below {I.LEFT} (left) and above {I.RIGHT} (right)")
    for col in ("gate", "left", "right", "units mostly left", "units mostly right"):
        t.add_column(col, justify="left" if col == "gate" else "right")
    H = rec.units_per_series
    for s in sat:
        t.add_row(s.series, f"{s.left.mean():.3f}", f"{s.right.mean():.3f}",
                  f"{int((s.left > 0.5).sum())}/{H}", f"{int((s.right > 0.5).sum())}/{H}")
    return t


def _json(rec, path, units, found, sat, width, seconds) -> dict:
    from ..inside import record as I

    o = {"checkpoint": str(path), "task": rec.family, "cell": rec.cell,
         "chars": len(rec.text), "skipped": rec.skipped, "series": list(rec.arrays),
         "units_per_series": rec.units_per_series, "seconds": seconds}
    if units:
        o["text"] = rec.text
        o["spans"] = [list(s) for s in rec.spans]
        o["units"] = {u: {"bounds": list(rec.bounds(u)), "values": rec.unit(u).tolist()}
                      for u in units}
    if found:
        o["find"] = []
        for f in found:
            entry = {"feature": f.feature, "description": f.description, "steps": f.steps,
                     "constant": f.constant,
                     "units": [{"unit": u, "r": r} for u, r in f.units]}
            if not f.constant:
                values, mask = I.feature(rec, f.feature, regex=f.regex)
                a, b = I.excerpt(values, mask, width)
                entry["excerpt"] = {"start": a, "stop": b, "text": rec.text[a:b],
                                    "values": rec.unit(f.units[0][0])[a:b].tolist()}
            o["find"].append(entry)
    if sat:
        o["saturation"] = [{"gate": s.series, "left": float(s.left.mean()),
                            "right": float(s.right.mean()),
                            "units_mostly_left": int((s.left > 0.5).sum()),
                            "units_mostly_right": int((s.right > 0.5).sum()),
                            "per_unit": {"left": s.left.tolist(), "right": s.right.tolist()}}
                           for s in sat]
    return o
