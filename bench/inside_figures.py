"""The `charrnn inside` figures of docs/en/explanation/inside.md, drawn from a run's own checkpoint
and a held-out text: the best unit per feature, the gate saturation per layer (as Markdown tables
on stdout), and the text coloured by one unit as the terminal shows it (an SVG exported by Rich,
the same Text `charrnn inside --unit` prints).

    python bench/inside_figures.py -c runs/shakespeare-lstm/best.npz --text held_out.txt \\
        --svg docs/inside-line.svg --svg-chars 600 [--unit l1.c.87] [--regex PATTERN ...]

Without --unit the picture shows the best unit of the first feature that varies in the text.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console
from rich.text import Text

from charrnn import checkpoint as C
from charrnn.inside import record as I
from charrnn.inside import view as V


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--checkpoint", required=True, help="checkpoint file")
    ap.add_argument("--text", required=True, help="the text to record (held out from training)")
    ap.add_argument("--regex", action="append", default=[], help="--find-regex patterns")
    ap.add_argument("--features", default=None,
                    help="comma-separated built-in features (default: all)")
    ap.add_argument("--unit", help="the unit the picture shows")
    ap.add_argument("--svg", help="write the picture here")
    ap.add_argument("--svg-chars", type=int, default=600, help="characters the picture shows")
    ap.add_argument("--svg-start", type=int, default=0, help="where the picture starts")
    args = ap.parse_args(argv)
    ckpt = C.load(args.checkpoint)
    text = Path(args.text).read_text(encoding="utf-8")
    rec = I.record(ckpt, text)
    features = args.features.split(",") if args.features else None
    found = I.find(rec, features, args.regex, top=3)
    print(f"{len(rec.text):,} characters of {args.text}, {args.checkpoint}\n")
    print("| feature | best unit, r | next two |")
    print("|---|---|---|")
    for f in found:
        name = f"`/{f.feature}/`" if f.regex else f.feature
        if f.constant:
            print(f"| {name} | (does not vary in this text) | |")
            continue
        (u, r), *rest = f.units
        print(f"| {name} | `{u}` {r:+.3f} | " + ", ".join(f"`{a}` {b:+.3f}" for a, b in rest)
              + " |")
    print("\n| gate | left (< 0.1) | right (> 0.9) | units mostly left | units mostly right |")
    print("|---|---|---|---|---|")
    H = rec.units_per_series
    for s in I.saturation(rec):
        print(f"| {s.series} | {s.left.mean():.3f} | {s.right.mean():.3f} | "
              f"{int((s.left > 0.5).sum())}/{H} | {int((s.right > 0.5).sum())}/{H} |")
    if args.svg:
        unit = args.unit or next(f.units[0][0] for f in found if not f.constant)
        a, b = args.svg_start, args.svg_start + args.svg_chars
        values, bounds, label = V.shown(unit, rec.unit(unit), rec.bounds(unit))
        con = Console(record=True, width=100, force_terminal=True, color_system="truecolor",
                      file=open("/dev/null", "w"))  # noqa: SIM115
        con.print(V.coloured(rec.text[a:b], values[a:b], bounds), end="")
        con.print(Text(f"{label} ") + V.legend(bounds))
        con.save_svg(args.svg, title=f"charrnn inside -u {unit}")
        print(f"\npicture of {unit} written to {args.svg}")


if __name__ == "__main__":
    main()
