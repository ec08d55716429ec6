"""Nested round brackets: text where predicting the next character needs a counter of depth.

Each line is a random walk of brackets with a few letters between them: at depth d an opening
bracket comes with probability (1 - d / DEPTH) / 2, a closing one (never at depth 0) with
probability d / (2 DEPTH), a letter otherwise, and the line ends (with a newline) only at depth 0
after at least MIN_LENGTH characters. A model that knows the depth predicts ")" and "\\n" better
than one that does not, so training on this text grows a unit that counts (Karpathy, Johnson and
Fei-Fei 2015 found one in the Linux kernel's code). `charrnn inside --find` ranks it under the
built-in feature "round" (round-bracket depth).

    python bench/brackets.py --chars 1000000 --seed 0 > brackets.txt
    charrnn train brackets.txt --cell lstm --minutes 5 --out runs/brackets
    charrnn inside -c runs/brackets/best.npz --file brackets.txt --find
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

DEPTH = 8  # the deepest nesting
MIN_LENGTH = 20  # characters a line has at least, before its newline
LETTERS = "abcdefgh"


def generate(chars: int, seed: int) -> str:
    """About `chars` characters of bracket lines (whole lines: it stops after the line that
    reaches `chars`)."""
    rng = np.random.default_rng(seed)
    out: list[str] = []
    n = 0
    while n < chars:
        line, depth = [], 0
        while depth or len(line) < MIN_LENGTH:
            u = rng.random()
            p_open = (1 - depth / DEPTH) / 2
            if u < p_open:
                line.append("(")
                depth += 1
            elif u < p_open + depth / (2 * DEPTH):  # never at depth 0
                line.append(")")
                depth -= 1
            else:
                line.append(LETTERS[rng.integers(len(LETTERS))])
        out.append("".join(line) + "\n")
        n += len(line) + 1
    return "".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chars", type=int, default=1_000_000, help="characters to write, about")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random generator")
    args = ap.parse_args(argv)
    sys.stdout.write(generate(args.chars, args.seed))


if __name__ == "__main__":
    main()
