"""What `--help` and the README's opening say the tool does: every model family is named."""

import re
from pathlib import Path

import pytest

from tests.helpers import invoke

README = Path(__file__).resolve().parents[2] / "README.md"


def _first_paragraph(text: str) -> str:
    return text.strip().split("\n\n")[0]


def test_the_top_level_help_names_every_family_and_shows_seq2seq_in_typical_use():
    r = invoke("--help")
    assert r.exit_code == 0
    description, typical = r.stdout.split("Typical use:")
    for words in ("language model", "classifier", "tagger", "encoder-decoder"):
        assert words in description, words
    assert "--task seq2seq" in typical
    assert "encoder-decoder" in typical


@pytest.mark.parametrize("command, needles", [
    ("predict", ("classifier", "tagger", "encoder-decoder", "charrnn sample")),
    ("train", ("language model", "classifier", "tagger", "seq2seq", "encoder-decoder")),
])
def test_a_commands_summary_names_the_families_it_serves(command, needles):
    r = invoke(command, "--help")
    summary = _first_paragraph(r.stdout.split("\n\n", 1)[1])  # after the usage line
    flat = " ".join(re.sub(r"-\n\s*", "-", summary).split())  # Click may wrap after a hyphen
    missing = [n for n in needles if n not in flat]
    assert not missing, f"{command} --help's first paragraph lacks {missing}: {summary!r}"


def test_the_readme_opening_names_the_encoder_decoder():
    opening = README.read_text(encoding="utf-8").split("```")[0]
    assert "encoder-decoder" in opening and "seq2seq" in opening


def test_predict_on_a_language_model_points_to_sample(trained):
    r = invoke("predict", "-c", trained / "run", "abc")
    assert r.exit_code == 2 and "use `charrnn sample`" in r.stderr
