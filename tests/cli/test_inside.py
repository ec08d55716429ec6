"""`charrnn inside` through CliRunner: colour and digits against values computed here, the find
and saturation views, JSON, errors as one line."""

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import checkpoint as C
from charrnn.cli import cli
from tests.helpers import one_line_error
from tests.inside.test_inside import (
    TEXT,
    encoder_checkpoint,
    naive_series,
    planted_quote_checkpoint,
)


@pytest.fixture
def run(tmp_path, monkeypatch):
    """A checkpoint with a planted quote unit (l0.h.2) at tmp_path/quote.npz; cwd tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NO_COLOR", raising=False)
    ck = planted_quote_checkpoint()
    C.save(tmp_path / "quote.npz", ck)
    (tmp_path / "text.txt").write_text(TEXT)
    return ck


def invoke(*args, env=None):
    return CliRunner().invoke(cli, ["inside", "-c", "quote.npz", *args], env=env)


def expected_values(ck, unit, text=TEXT):
    """The unit's values by a naive loop, independently of the library's recording."""
    x = np.eye(len(ck.vocab))[ck.vocab.encode(text)]
    p = ck.params
    s = naive_series("gru", x, p["l0.Wx"], p["l0.Wh"], p["l0.b"], p["l0.bhn"])
    series, j = unit.rsplit(".", 2)[1], int(unit.rsplit(".", 1)[1])
    return s[series][:, j]


@pytest.mark.parametrize("how", [["--plain"], ["NO_COLOR"], []])  # a pipe: digits too
def test_unit_without_colour_puts_digits_under_each_line(run, how):
    env = {"NO_COLOR": "1"} if how == ["NO_COLOR"] else None
    r = invoke("--file", "text.txt", "--unit", "l0.z.2", *[a for a in how if a != "NO_COLOR"],
               env=env)
    assert r.exit_code == 0, r.stderr
    assert "\x1b[" not in r.stdout
    z = expected_values(run, "l0.z.2")
    want = np.clip(np.floor(z * 10), 0, 9).astype(int)  # a gate: tenths of (0, 1)
    rows = r.stdout.splitlines()
    lines = TEXT.splitlines()
    assert rows[0::2] == lines
    j = 0
    for line, digits in zip(lines, rows[1::2]):
        n = len(line) + 1  # and its line break's digit, one past the end
        assert digits == "".join(map(str, want[j : j + n])), line
        j += n
    assert "l0.z.2:" in r.stderr and "0 = 0 to 0.1" in r.stderr
    assert f"recorded {len(TEXT)} characters" in r.stderr
    assert "(gru: 1 series of 5 units)" in r.stderr  # only what the view needs


def test_unit_with_colour_paints_each_character_with_its_value(run):
    from charrnn.inside.view import rgb

    r = invoke('He said "so" too', "--unit", "l0.h.2", "--color")
    assert r.exit_code == 0, r.stderr
    h = expected_values(run, "l0.h.2", 'He said "so" too')
    cells = re.findall(r"\x1b\[([0-9;]*)m([^\x1b])", r.stdout)
    painted = [(code, ch) for code, ch in cells if "48;2;" in code]
    assert "".join(ch for _, ch in painted) == 'He said "so" too'
    for (code, _), v in zip(painted, h):
        bg = tuple(int(n) for n in code.split("48;2;")[1].split(";")[:3])
        assert bg == rgb(v)  # (-1, 1): the value itself is the palette's position
    assert all("48;2;255;255;255" in code for code, _ in painted[:8])  # h = 0 before: white
    assert all("48;2;175;0;0" in code for code, _ in painted[8:11])  # "so (h = +1): red
    assert all("48;2;0;95;175" in code for code, _ in painted[11:])  # " too (h = -1): blue


def test_find_ranks_the_planted_unit_first_and_shows_an_excerpt(run):
    r = invoke("--file", "text.txt", "--find", "--plain")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    k = lines.index(next(x for x in lines if x.startswith("quote:")))
    assert lines[k + 1].split()[0] == "l0.h.2" and float(lines[k + 1].split()[1]) > 0.95
    assert '"' in lines[k + 2] and re.fullmatch(r"  [0-9]+", lines[k + 3])
    assert "gate saturation" not in r.stdout and "nothing to find" not in r.stdout
    r = invoke('He said "so" to her', "--find", "--plain")
    assert "digit: a digit (1) or not (0)\n  the same at every character of this text: " \
        "nothing to find" in r.stdout


def test_find_regex_and_json(run):
    r = invoke("--file", "text.txt", "--find-regex", r"\([^)]*\)", "--top", "2", "--json")
    assert r.exit_code == 0, r.stderr
    o = json.loads(r.stdout)
    assert [f["feature"] for f in o["find"]] == [r"\([^)]*\)"]  # only the pattern: no --find
    f = o["find"][0]
    assert len(f["units"]) == 2 and f["description"].startswith("characters matching")
    ex = f["excerpt"]
    assert ex["text"] == TEXT[ex["start"] : ex["stop"]] and len(ex["values"]) == len(ex["text"])
    r = invoke("--file", "text.txt", "--unit", "l0.h.2", "--saturation", "--json")
    o = json.loads(r.stdout)
    assert o["text"] == TEXT and o["task"] == "lm" and o["cell"] == "gru"
    np.testing.assert_allclose(o["units"]["l0.h.2"]["values"], expected_values(run, "l0.h.2"),
                               atol=1e-12)
    assert [s["gate"] for s in o["saturation"]] == ["l0.r", "l0.z"]
    z = expected_values(run, "l0.z.2")
    assert o["saturation"][1]["per_unit"]["right"][2] == pytest.approx(np.mean(z > 0.9))


def test_the_default_view_is_find_and_saturation(run):
    r = invoke("--file", "text.txt", "--plain")
    assert r.exit_code == 0, r.stderr
    assert "quote:" in r.stdout and "gate saturation" in r.stdout and "l0.z" in r.stdout


def test_an_encoder_shows_both_directions(tmp_path, monkeypatch):
    from charrnn.models import tag

    monkeypatch.chdir(tmp_path)
    C.save(tmp_path / "tag.npz", encoder_checkpoint(tag, "lstm"))
    r = CliRunner().invoke(cli, ["inside", "-c", "tag.npz", "ab\ncd", "-u", "l1.bw.c.0",
                                 "--plain", "--find", "--series", "l0.bw.h"])
    assert r.exit_code == 0, r.stderr
    rows = r.stdout.splitlines()
    assert rows[0] == "ab" and rows[2] == "cd"  # one line per sequence, no line break read
    assert re.search(r"l0\.bw\.h\.\d", r.stdout) and "l0.fw" not in r.stdout
    k = rows.index("line: position in the line: characters since the last line break")
    assert rows[k + 2] == "  ab | cd" and re.fullmatch(r"  \d\d   \d\d", rows[k + 3])


@pytest.mark.parametrize("args,needles", [
    (["--unit", "l0.q.1", "abc"], ["unknown unit 'l0.q.1'; this gru model has l0.r, l0.z"]),
    (["--unit", "l0.h.9", "abc"], ["units 0-4 each"]),
    (["--series", "l3.h", "abc"], ["unknown series 'l3.h'"]),
    ([""], ["the text is empty"]),
    (["QQQ"], ["none of the text's 3 characters"]),
    ([], ["give the text to look at"]),
    (["abc", "--file", "text.txt"], ["give the text to look at"]),
    (["--file", "missing.txt"], ["file not found: missing.txt"]),
    (["--find-regex", "(", "abc"], ["not a regular expression"]),
    (["--plain", "--color", "abc"], ["contradict"]),
])
def test_bad_input_is_one_line(run, args, needles):
    one_line_error(invoke(*args), *needles)
