"""How far the names target (85% accuracy, 65% macro accuracy) lies from what the data allow.

bench/names.py's split (a seeded, stratified 10% of corpora/names), examined without any
recurrent network:

1. **The data.** How many test names occur in the training part, and how many of a language's
   names occur in another language's file too. Every Scottish surname in the set is also an
   English one, so a held-out Scottish name is in the training data as English only: no
   classifier can tell it from the English names, and its recall is near 0 unless English is
   given up for it.
2. **A different family of model.** Logistic regression on the bags of character 1- to 5-grams
   of "^name$" (the classic strong baseline for language identification of short strings),
   trained to convergence (full-batch Adam), with inverse class frequency weights ** `power` and
   a post-hoc prior correction (logits - tau log prior) swept. Its accuracy + macro accuracy is
   printed beside each point: the recurrent classifiers of bench/names.py lie on the same
   frontier (bench/README.md), so the frontier is a property of the data, not of our networks.

    python bench/names_ceiling.py                       ~2.5 minutes on 2 cores
    python bench/names_ceiling.py --iterations 100 --powers 0   quick

NumPy only (the n-gram model is ~20 lines here, not a charrnn feature).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import cpu_model

from charrnn.data import labelled as L
from charrnn.nn.metrics import figures

NAMES = ROOT / "corpora" / "names"


def grams(text: str, longest: int = 5) -> list[str]:
    s = f"^{text}$"
    return [s[i:i + n] for n in range(1, longest + 1) for i in range(len(s) - n + 1)]


class Bags:
    """Examples as bags of n-gram ids: `flat` holds every example's feature ids one after
    another, `row` the example each belongs to, so both sums the model needs are bincounts."""

    def __init__(self, texts, index: dict):
        ids = [[index[g] for g in grams(t) if g in index] for t in texts]
        self.n = len(ids)
        self.flat = np.fromiter((f for row in ids for f in row), dtype=np.intp)
        self.row = np.repeat(np.arange(self.n), [len(r) for r in ids])

    def logits(self, W, b):
        """(n, K) of W (K, D): each example's sum of its features' weights, plus b."""
        return np.stack([np.bincount(self.row, Wk[self.flat], self.n) for Wk in W], axis=1) + b

    def grad_W(self, G, D: int):
        """(K, D): each feature's sum of its examples' rows of G (n, K)."""
        return np.stack([np.bincount(self.flat, Gk[self.row], D) for Gk in G.T])


def fit(bags: Bags, y, K: int, D: int, weights, lam: float, iterations: int, lr: float = 0.05):
    """Weighted softmax regression, L2 `lam`, full-batch Adam; (W, b, final loss)."""
    W, b = np.zeros((K, D)), np.zeros(K)
    m = [np.zeros_like(W), np.zeros_like(b)]
    v = [np.zeros_like(W), np.zeros_like(b)]
    w = weights[y] / weights[y].sum()
    rows = np.arange(bags.n)
    for t in range(1, iterations + 1):
        Z = bags.logits(W, b)
        Z -= Z.max(axis=1, keepdims=True)
        P = np.exp(Z)
        P /= P.sum(axis=1, keepdims=True)
        loss = -np.dot(w, np.log(P[rows, y])) + lam / 2 * np.sum(W * W)
        G = P
        G[rows, y] -= 1
        G *= w[:, None]
        grads = (bags.grad_W(G, D) + lam * W, G.sum(axis=0))
        for p, g, mi, vi in zip((W, b), grads, m, v):
            mi *= 0.9
            mi += 0.1 * g
            vi *= 0.999
            vi += 0.001 * g * g
            p -= lr * (mi / (1 - 0.9 ** t)) / (np.sqrt(vi / (1 - 0.999 ** t)) + 1e-8)
    return W, b, float(loss)


def data_facts(texts, labels, tr, te) -> list[str]:
    by_label = defaultdict(set)
    for t, y in zip(texts, labels):
        by_label[y].add(t)
    train_names = {texts[i] for i in tr}
    seen = sum(texts[i] in train_names for i in te)
    out = [f"test names that occur in the training part: {seen} of {len(te)}"]
    for y in sorted(by_label, key=lambda k: len(by_label[k])):
        others = set().union(*(s for k, s in by_label.items() if k != y))
        shared = len(by_label[y] & others)
        if shared / len(by_label[y]) >= 0.25:
            out.append(f"{y}: {shared} of its {len(by_label[y])} distinct names are also in "
                       f"another language's file")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=400, help="full-batch Adam steps")
    ap.add_argument("--l2", type=float, default=1e-4, help="L2 penalty on W")
    ap.add_argument("--powers", default="0,0.6,1", help="class-weight powers to fit, comma-separated")
    ap.add_argument("--taus", default="0,0.5,1", help="prior corrections to score, comma-separated")
    ap.add_argument("--seed", type=int, default=0, help="the test split's seed (names.py: 0)")
    args = ap.parse_args()

    ex = L.read(NAMES, "classify")
    tr, te = L.split(ex.targets, 0.1, args.seed)
    print(f"# {cpu_model()}, names test split 10% stratified (seed {args.seed})")
    for line in data_facts(ex.texts, ex.targets, tr, te):
        print(line)

    classes = sorted(set(ex.targets))
    K = len(classes)
    cls = {c: k for k, c in enumerate(classes)}
    y = np.array([cls[c] for c in ex.targets])
    index: dict = {}
    for i in tr:
        for g in grams(ex.texts[i]):
            index.setdefault(g, len(index))
    train_bags = Bags([ex.texts[i] for i in tr], index)
    # a test name with no n-gram seen in training still has its ^ and $ unigrams
    test_bags = Bags([ex.texts[i] for i in te], index)
    ytr, yte = y[tr], y[te]
    counts = np.bincount(ytr, minlength=K)
    log_prior = np.log(counts / counts.sum())
    print(f"n-gram logistic regression: {len(index):,} features (1- to 5-grams), L2 {args.l2:g}, "
          f"{args.iterations} full-batch Adam steps")
    for power in (float(p) for p in args.powers.split(",")):
        t0 = time.perf_counter()
        weights = (L.inverse_frequency(ytr, K) ** power) if power else np.ones(K)
        W, b, loss = fit(train_bags, ytr, K, len(index), weights, args.l2, args.iterations)
        Z = test_bags.logits(W, b)
        points = []
        for tau in (float(t) for t in args.taus.split(",")):
            f = figures(yte, (Z - tau * log_prior).argmax(axis=1), K)
            a, m = 100 * f["accuracy"], 100 * f["macro_accuracy"]
            points.append(f"tau {tau:g}: {a:.1f} / {m:.1f} (sum {a + m:.1f})")
        print(f"  class weights ** {power:g} (loss {loss:.3f}, {time.perf_counter() - t0:.0f} s): "
              + "; ".join(points), flush=True)
    print("target: 85 / 65 (sum 150); always Russian: 47 / 5.6")


if __name__ == "__main__":
    main()
