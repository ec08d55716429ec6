"""Scoring a text file with a model (`charrnn eval`): characters outside the vocabulary, and the
per-character surprise heat map.

The scoring itself is charrnn.models.lm.char_losses with one stream, so the state is carried from
the first character of the text to the last. Characters the vocabulary lacks cannot be scored or
fed: they are removed (and counted) and the model reads the remaining text as if they were not
there; `strict=True` makes them an error instead. The first kept character is fed but not scored
(nothing predicts it), so a text of n kept characters scores n - 1.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..data.vocab import Vocab, describe_chars
from ..errors import CorpusError, VocabularyError
from ..models.lm import LN2, Score, char_losses
from ..parallel.blas import single_stream


class TextScore(NamedTuple):
    score: Score  # over the scored characters
    oov: int  # characters skipped because the vocabulary lacks them
    unknown: list[str]  # the distinct skipped characters, in order of appearance
    kept: np.ndarray  # (n_kept,) positions in the text of the characters fed to the model
    losses: np.ndarray  # (n_kept - 1,) nats for each kept character after the first


def _count(n: int) -> str:
    return f"{n:,} character" + ("" if n == 1 else "s")


def score_text(params, cfg, vocab: Vocab, text: str, strict: bool = False,
               seq: int = 256) -> TextScore:
    """Score `text`. VocabularyError in strict mode when a character is unknown; CorpusError
    when fewer than two characters are left to score."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    known = np.array([ord(c) for c in vocab.chars], dtype="<u4")
    inside = np.isin(codes, known)
    oov = int(codes.size - inside.sum())
    unknown = vocab.unknown(text) if oov else []
    if oov and strict:
        raise VocabularyError(f"text has {_count(oov)} not in the vocabulary: "
                              f"{describe_chars(unknown)}")
    kept = np.flatnonzero(inside)
    if kept.size < 2:
        raise CorpusError(f"nothing to score: {kept.size} character(s) in the vocabulary; "
                          f"at least 2 are needed")
    ids = vocab.encode(codes[inside].tobytes().decode("utf-32-le"))
    with single_stream():  # one stream: one row per multiply (charrnn.parallel.blas)
        losses = char_losses(params, cfg, ids, streams=1, seq=seq)
    return TextScore(Score(float(losses.mean()), int(losses.size)), oov, unknown, kept, losses)


# Surprise in bits -> background colour, from calm (blue) to alarmed (bright red). The colours
# are the 16 standard ones, so that every band stays distinct however the terminal's colours are
# reduced (Rich maps hex colours to the nearest of 16 or 256, and a dark-to-red hex ramp fell
# into 4 of 16 and 7 of 256); black text on the light ones, white on the dark ones.
RAMP = ("blue", "cyan", "green", "yellow", "bright_yellow", "magenta", "red", "bright_red")
STYLES = tuple(f"{'black' if c in ('cyan', 'yellow', 'bright_yellow') else 'white'} on {c}"
               for c in RAMP)
LEVEL_BITS = 1.0  # each colour covers one bit of surprise; the last is 7 bits and up


def levels(text: str, result: TextScore) -> np.ndarray:
    """(len(text),) the band of each character: 0..len(RAMP)-1 by -log2 p, -1 for the first kept
    character (nothing predicts it), -2 for a character the vocabulary lacks."""
    lv = np.full(len(text), -2, dtype=np.int64)
    lv[result.kept] = -1
    top = len(RAMP) - 1
    bits = np.nan_to_num(result.losses / LN2, nan=top, posinf=top)
    lv[result.kept[1:]] = np.clip(bits / LEVEL_BITS, 0, top).astype(np.int64)
    return lv


def heat_map(text: str, result: TextScore):
    """The text as a rich.text.Text, each character's background coloured by the model's
    surprise at it (-log2 p). Skipped (unknown) characters are shown reversed; the first kept
    character, which nothing predicts, is left plain."""
    from rich.text import Text

    lv = levels(text, result)
    out = Text()
    start = 0
    for j in range(1, len(text) + 1):  # one span per run of equal levels
        if j == len(text) or lv[j] != lv[start]:
            band = int(lv[start])
            style = "reverse" if band == -2 else "" if band == -1 else STYLES[band]
            out.append(_visible(text[start:j]), style=style)
            start = j
    return out


def digit_map(text: str, result: TextScore) -> str:
    """The heat map without colour (for NO_COLOR): each line of the text, then a row with each
    character's band as a digit under it (0: under 1 bit ... 7: 7 bits and more; ? not in the
    vocabulary; blank: not scored), padded to the character's width so the rows stay aligned;
    the digit just past a line's end is its line break's."""
    from rich.cells import cell_len

    lv = levels(text, result)
    mark = lambda band: "?" if band == -2 else " " if band == -1 else str(band)
    rows, j = [], 0
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    for line in lines:
        shown, marks = _visible(line), []
        for k, ch in enumerate(shown):
            m = mark(int(lv[j + k]))
            marks.append("\t" if ch == "\t" else m + " " * (cell_len(ch) - 1))
        j += len(line)
        if j < len(text):  # the line break's own band, just after the line's end
            marks.append(mark(int(lv[j])))
            j += 1
        rows += [shown, "".join(marks).rstrip()]
    return "\n".join(rows) + "\n"


# Control characters other than newline and tab (an ESC could drive the terminal) are shown as
# their Unicode "control pictures" (U+2400 + code; U+2421 for DEL), one character each, so the
# colours stay aligned with the text.
_PICTURES = {c: 0x2400 + c for c in range(32) if c not in (9, 10)} | {127: 0x2421}
_PICTURES.update({c: 0xFFFD for c in range(0x80, 0xA0)})  # C1 controls: the replacement mark


def _visible(text: str) -> str:
    return text.translate(_PICTURES)


def legend(colour: bool = True):
    """A one-line key to the heat map colours, or to digit_map's digits."""
    from rich.text import Text

    if not colour:
        return Text(f"surprise, bits per character, in the row under each line: 0 = "
                    f"0-{LEVEL_BITS:g}, 1 = {LEVEL_BITS:g}-{2 * LEVEL_BITS:g}, ..., "
                    f"{len(RAMP) - 1} = {(len(RAMP) - 1) * LEVEL_BITS:g}+ (one past a line's end: its "
                    f"line break); ? = unknown")
    t = Text("surprise, bits per character: ")
    for i, style in enumerate(STYLES):
        hi = "+" if i == len(RAMP) - 1 else f"-{(i + 1) * LEVEL_BITS:g}"
        t.append(f" {i * LEVEL_BITS:g}{hi} ", style=style)
    t.append("   ")
    t.append("unknown", style="reverse")
    return t


def perplexity_text(result: TextScore) -> str:
    """The one-line result: bits, nats, perplexity, counts."""
    s = result.score
    line = (f"{s.bpc:.4f} bits per character, {s.nats:.4f} nats, perplexity "
            f"{s.perplexity:.3f} over {s.chars:,} characters")
    if result.oov:
        line += (f"; {_count(result.oov)} not in the vocabulary skipped "
                 f"({describe_chars(result.unknown)})")
    return line if math.isfinite(s.nats) else line + " (not finite)"
