"""charrnn.data.synthetic: seeded, correct by an independent check (int arithmetic; the
standard library's date parsing), distinct sources, held-out sets disjoint, and the script."""

import datetime as dt
import re
import subprocess
import sys

import pytest

from charrnn.data import synthetic as Y

# the formats as strptime reads them (C locale: English names), ordinal suffixes removed first
STRPTIME = ["%A, %d of %B %Y", "%d %B %Y", "%B %d, %Y", "%B %d, %Y", "%d.%m.%Y", "%d-%b-%Y",
            "%a %d %b %Y", "the %d of %B, %Y", "%A %B %d %Y", "%Y/%m/%d", "%b %d %Y",
            "%A %d %B %Y"]


def parse_date(text: str) -> tuple[dt.date, str]:
    plain = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", text, flags=re.IGNORECASE)
    for fmt in STRPTIME:
        try:
            return dt.datetime.strptime(plain, fmt).date(), fmt
        except ValueError:
            pass
    raise AssertionError(f"no format reads {text!r}")


@pytest.mark.parametrize("kind", sorted(Y.KINDS))
def test_same_seed_same_pairs_other_seed_others(kind):
    assert Y.generate(kind, 50, 3) == Y.generate(kind, 50, 3)
    assert Y.generate(kind, 50, 3) != Y.generate(kind, 50, 4)


def test_addition_is_correct_by_integer_arithmetic():
    for src, tgt in Y.generate("addition", 500, 0):
        a, b = src.split("+")
        assert 0 <= int(a) < 1000 and 0 <= int(b) < 1000 and str(int(a) + int(b)) == tgt
        assert a == str(int(a)) and b == str(int(b))  # no leading zeros


def test_dates_are_correct_by_parsing_and_use_every_format():
    formats = set()
    for src, tgt in Y.generate("dates", 2000, 0):
        d, fmt = parse_date(src)
        assert d == dt.date.fromisoformat(tgt) and tgt == d.isoformat(), src
        if "%A" in fmt or "%a" in fmt:  # the weekday written is the date's
            assert Y.DAYS[d.weekday()][:3].lower() in src.lower()
        formats.add(fmt)
    assert len(formats) >= 10
    assert Y.format_date(dt.date(1998, 3, 3), 0) == "Tuesday, 3rd of March 1998"
    assert [Y.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"]


@pytest.mark.parametrize("kind", sorted(Y.KINDS))
def test_held_out_sets_are_disjoint_by_source(kind):
    train = Y.generate(kind, 300, 0)
    assert len({s for s, _ in train}) == 300
    held = Y.generate(kind, 100, 0, exclude={s for s, _ in train})  # even with the same seed
    assert not {s for s, _ in held} & {s for s, _ in train}


def test_the_script_writes_tsv_and_excludes_a_file(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "charrnn.data.synthetic", *args],
                              capture_output=True, text=True, check=True).stdout

    out = run("addition", "--count", "20", "--seed", "1")
    assert out == "".join(f"{s}\t{t}\n" for s, t in Y.generate("addition", 20, 1))
    (tmp_path / "train.tsv").write_text(out)
    held = run("addition", "--count", "20", "--seed", "1", "--exclude", str(tmp_path / "train.tsv"))
    assert not {line.split("\t")[0] for line in held.splitlines()} & \
        {line.split("\t")[0] for line in out.splitlines()}
