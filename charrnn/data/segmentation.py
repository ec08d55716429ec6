"""Word segmentation as tagging: text with its spaces removed, a tag per character, B where a word
starts and I inside one. A tagger trained on it (`charrnn train --task tag`) puts the spaces back.

    python -m charrnn.data.segmentation corpora/tinyshakespeare.txt > seg.tsv
    python -m charrnn.data.segmentation corpora/tinyshakespeare.txt --part test > test.tsv

Each non-blank line of the text is one example: its words (split at whitespace, punctuation kept
with them) joined without spaces. `--part train` takes the first 90% of the lines and `--part
test` the last 10% (contiguous, as the language model's validation split), so the two never
share a line. The command line is charrnn.cli.datasets.segmentation (`--help` lists its options).
"""

from __future__ import annotations

PARTS = ("all", "train", "test")  # every line, the first 90% of them, the last 10%


def example(line: str) -> tuple[str, str] | None:
    """(text without spaces, tags) of one line, or None for a blank one."""
    words = line.split()
    if not words:
        return None
    return "".join(words), "".join("B" + "I" * (len(w) - 1) for w in words)


def examples(text: str, part: str = "all", test_frac: float = 0.1) -> list[tuple[str, str]]:
    """Every line's example, or those of the first (train) or last (test) part of the lines."""
    rows = [e for e in map(example, text.split("\n")) if e is not None]
    cut = len(rows) - round(len(rows) * test_frac)
    return {"all": rows, "train": rows[:cut], "test": rows[cut:]}[part]


if __name__ == "__main__":  # the command line lives with the others, in charrnn.cli
    from charrnn.cli.datasets import segmentation

    segmentation(prog_name="python -m charrnn.data.segmentation")
