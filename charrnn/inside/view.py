"""Pictures of a recording (charrnn.inside.record) for a terminal: text coloured by one unit's
values, as Karpathy, Johnson and Fei-Fei (2015) show their cells, or, without colour, the values
as digits under each line.

The palette diverges from blue (the low end of the unit's range: -1, or 0 for a gate) through
white (the middle) to red (the high end), in eleven steps, after ColorBrewer's RdBu. Digits: 0 for the lowest
tenth of the range ... 9 for the highest.
"""

from __future__ import annotations

import numpy as np

from ..infer.scoring import _visible

# Eleven colours from blue (-1) through white (0) to red (+1), after ColorBrewer's RdBu, each
# one of the 256-colour terminal palette's own (its 6x6x6 cube), so that a 256-colour terminal
# shows exactly these (rich's nearest-colour downgrade of in-between shades turned some of them
# teal and magenta) and a truecolor one the same.
RAMP = ((0, 95, 175), (95, 135, 175), (95, 175, 215), (135, 175, 215), (175, 215, 255),
        (255, 255, 255), (255, 215, 215), (255, 175, 175), (255, 135, 135), (215, 95, 95),
        (175, 0, 0))
HALF = len(RAMP) // 2


def rgb(x: float) -> tuple[int, int, int]:
    """The palette's colour at x in [-1, 1]: the nearest of the RAMP's eleven."""
    return RAMP[HALF + round(float(np.clip(x, -1, 1)) * HALF)]


def shown(name: str, values: np.ndarray, bounds: tuple[float, float]):
    """(values, bounds, label) a picture of unit or series `name` uses: its own values and
    range, except an LSTM cell state c, which is not bounded (|c_t| may grow by one a step) and
    is shown as tanh(c) in (-1, 1), as Karpathy et al. (2015) colour their cells."""
    if name.split(".")[-2 if name[-1].isdigit() else -1] == "c":
        return np.tanh(values), (-1.0, 1.0), f"tanh({name})"
    return values, bounds, name


def position(values: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """Values mapped onto [-1, 1]: lo -> -1, the middle -> 0, hi -> +1, clipped."""
    lo, hi = bounds
    return np.clip((np.asarray(values, dtype=np.float64) - lo) / (hi - lo) * 2 - 1, -1, 1)


def style(x: float) -> str:
    """A rich style: the background at x, the text black on light colours and white on dark."""
    r, g, b = rgb(x)
    return f"{'white' if abs(x) > 0.7 else 'black'} on rgb({r},{g},{b})"


def digits(values: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """0-9: the tenth of the range [lo, hi] each value lies in (clipped)."""
    lo, hi = bounds
    d = np.floor((np.asarray(values, dtype=np.float64) - lo) / (hi - lo) * 10)
    return np.clip(d, 0, 9).astype(int)


def lines(text: str, spans) -> list[tuple[int, int]]:
    """(start, stop) of each line to show: a line ends after its line break, and at the end of
    each independently read sequence (an encoder's lines carry no line break)."""
    out = []
    for a, b in spans or [(0, len(text))]:
        start = a
        for j in range(a, b):
            if text[j] == "\n":
                out.append((start, j + 1))
                start = j + 1
        if start < b:
            out.append((start, b))
    return out


def coloured(text: str, values: np.ndarray, bounds, spans=()):
    """A rich.text.Text: each character on its value's colour; a line break's own value shows as
    a coloured space before it."""
    from rich.text import Text

    x = position(values, bounds)
    out = Text()
    for a, b in lines(text, spans):
        for j in range(a, b):
            ch = text[j]
            out.append(" " if ch == "\n" else _visible(ch), style=style(x[j]))
        out.append("\n")
    return out


def coloured_line(text: str, values: np.ndarray, bounds, breaks=()):
    """An excerpt on one line: line breaks shown as ⏎ (on their own value's colour), and a plain
    " | " before each position in `breaks`, where a new sequence starts (an encoder's next line,
    which it reads afresh)."""
    from rich.text import Text

    x = position(values, bounds)
    out = Text()
    for j, (ch, xj) in enumerate(zip(text, x)):
        if j in breaks:
            out.append(" | ")
        out.append("⏎" if ch == "\n" else _visible(ch), style=style(xj))
    return out


def digit_rows(text: str, values: np.ndarray, bounds, spans=()) -> str:
    """Without colour: each line, then a row with each character's digit under it, padded to
    the character's width; a line break's digit stands just past its line's end."""
    from rich.cells import cell_len

    d = digits(values, bounds)
    rows = []
    for a, b in lines(text, spans):
        line = text[a:b].rstrip("\n")
        shown = _visible(line)
        marks = ["\t" if ch == "\t" else str(d[a + k]) + " " * (cell_len(ch) - 1)
                 for k, ch in enumerate(shown)]
        if b - a > len(line):
            marks.append(str(d[b - 1]))
        rows += [shown, "".join(marks)]
    return "\n".join(rows) + "\n"


def digit_line(text: str, values: np.ndarray, bounds, breaks=()) -> str:
    """An excerpt on one line (line breaks as ⏎, " | " before each of `breaks`, as
    coloured_line), then its digits under it."""
    from rich.cells import cell_len

    d = digits(values, bounds)
    shown, marks = [], []
    for j, ch in enumerate(text):
        if j in breaks:
            shown.append(" | ")
            marks.append("   ")
        c = "⏎" if ch == "\n" else _visible(ch)
        shown.append(c)
        marks.append(str(d[j]) + " " * (cell_len(c) - 1))
    return f"{''.join(shown)}\n{''.join(marks)}"


def legend(bounds, colour: bool = True):
    """A one-line key to the colours, or to the digits."""
    from rich.text import Text

    lo, hi = bounds
    if not colour:
        step = (hi - lo) / 10
        return Text(f"digits under each character: 0 = {lo:g} to {lo + step:g}, ..., "
                    f"9 = {hi - step:g} to {hi:g} (one past a line's end: its line break)")
    t = Text("colour: ")
    for x in np.linspace(-1, 1, 9):
        v = lo + (x + 1) / 2 * (hi - lo)
        t.append(f" {v:+.2g} " if lo < 0 else f" {v:.2g} ", style=style(x))
    return t
