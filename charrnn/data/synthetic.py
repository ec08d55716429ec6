"""Synthetic source/target pairs for sequence-to-sequence models, seeded (numpy Generator):

    addition   "535+61" -> "596": two whole numbers of one to three digits and their sum
    dates      a date in one of FORMATS (English names) -> ISO 8601: "Tuesday, 3rd of March
               1998" -> "1998-03-03"; dates from 1900-01-01 to 2099-12-31

`generate(kind, count, seed, exclude)` gives `count` pairs with distinct sources, none of them
in `exclude`: a held-out set disjoint from a training set is `generate(kind, n, other_seed,
exclude={sources of the training set})`; `read_sources(file)` reads those from a TSV file. As a
script (charrnn.cli.datasets.synthetic), TSV on stdout:

    python -m charrnn.data.synthetic addition|dates --count N --seed S [--exclude FILE]

(FILE: a TSV whose first column holds the sources to leave out, e.g. the training set.)
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from ..errors import ConfigError
from .text import read_corpus

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st, ..."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _parts(d: dt.date) -> dict:
    month, day = MONTHS[d.month - 1], DAYS[d.weekday()]
    return {"d": d.day, "dd": f"{d.day:02d}", "mm": f"{d.month:02d}", "y": d.year,
            "o": ordinal(d.day), "M": month, "m3": month[:3], "D": day, "d3": day[:3]}


# each a str.format pattern over _parts; day names and ordinals are English, whatever the locale
FORMATS = (
    "{D}, {o} of {M} {y}",  # Tuesday, 3rd of March 1998
    "{d} {M} {y}",  # 3 March 1998
    "{M} {d}, {y}",  # March 3, 1998
    "{M} {o}, {y}",  # March 3rd, 1998
    "{dd}.{mm}.{y}",  # 03.03.1998 (day first)
    "{d}-{m3}-{y}",  # 3-Mar-1998
    "{d3} {d} {m3} {y}",  # Tue 3 Mar 1998
    "the {o} of {M}, {y}",  # the 3rd of March, 1998
    "{D} {M} {d} {y}",  # Tuesday March 3 1998, upper-cased below
    "{y}/{mm}/{dd}",  # 1998/03/03
    "{m3} {d} {y}",  # Mar 3 1998
    "{D} {d} {M} {y}",  # Tuesday 3 March 1998
)
UPPER = {8}  # formats written in capitals

FIRST, LAST = dt.date(1900, 1, 1).toordinal(), dt.date(2099, 12, 31).toordinal()


def format_date(d: dt.date, fmt: int) -> str:
    text = FORMATS[fmt].format(**_parts(d))
    return text.upper() if fmt in UPPER else text


def addition_pair(rng: np.random.Generator) -> tuple[str, str]:
    a, b = (int(x) for x in rng.integers(0, 1000, size=2))
    return f"{a}+{b}", str(a + b)


def date_pair(rng: np.random.Generator) -> tuple[str, str]:
    d = dt.date.fromordinal(int(rng.integers(FIRST, LAST + 1)))
    return format_date(d, int(rng.integers(len(FORMATS)))), d.isoformat()


KINDS = {"addition": addition_pair, "dates": date_pair}


def generate(kind: str, count: int, seed: int, exclude=()) -> list[tuple[str, str]]:
    """`count` (source, target) pairs of `kind` with distinct sources outside `exclude`, the
    same for the same seed (and exclude)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    make, rng = KINDS[kind], np.random.default_rng(seed)
    seen, out = set(exclude), []
    tries = 0
    while len(out) < count:
        src, tgt = make(rng)
        tries += 1
        if src not in seen:
            seen.add(src)
            out.append((src, tgt))
        elif tries > 20 * count + 1000:
            raise ConfigError(f"cannot find {count} distinct {kind} pairs outside the "
                              f"{len(exclude)} excluded (found {len(out)})")
    return out


def read_sources(path) -> set[str]:
    """The first column of a TSV file's lines (blank lines skipped): the sources `generate`
    leaves out. Raises CorpusError for a file that is missing, unreadable, empty or not text."""
    return {line.split("\t")[0] for line in read_corpus(path).splitlines() if line.strip()}


if __name__ == "__main__":  # the command line lives with the others, in charrnn.cli
    from charrnn.cli.datasets import synthetic

    synthetic(prog_name="python -m charrnn.data.synthetic")
