"""The names classifier against a bag of character n-grams, on names neither has seen (issue 29).

For each split seed, corpora/names is split as every labelled family splits it
(charrnn.data.labelled.split: 10% of the distinct surnames held out, every copy of a name on one
side, stratified by each name's most frequent language) and written to WORK/seedS/train.tsv and
test.tsv. Then:

- `rnn`: `charrnn train --task classify train.tsv --minutes M [OPTIONS]`, which picks its best
  checkpoint on its own --val-frac split of train.tsv (never on test.tsv), then
  `charrnn eval -c RUN test.tsv --json`: accuracy and macro accuracy on the test part.
- `ngram`: logistic regression on the character 1- to 5-grams of "^name$" (L2, full-batch Adam
  to convergence), unweighted and with balanced class weights, on the same train/test files.
- `report`: one table, each seed's figures and the mean and spread (sample standard deviation)
  per model, from WORK/results.jsonl (every run appends one line there).
- `curve`: a learning curve. Each split's training part cut to --fractions of its distinct names
  (every copy of a kept name kept), charrnn trained for the same --steps at every fraction, the
  balanced n-gram model fitted on exactly the examples charrnn trains on (its part after `charrnn
  train`'s own 10% validation split), both scored on the whole test part; WORK/curve.jsonl, and
  a table of the means. It asks whether the n-gram model's lead comes with the amount of data.

    python bench/names.py rnn --label defaults                 5 seeds x 2 minutes
    python bench/names.py rnn --label uni -- --unidirectional  extra options after --
    python bench/names.py rnn --label e8 -- --epochs 8         8 epochs, no clock: reproducible
    python bench/names.py ngram                                ~1 minute per seed on 2 cores
    python bench/names.py report
    python bench/names.py curve --seeds 0,1,2 -- --processes 1   a fixed 2,032 steps each

Time the rnn runs under `flock /tmp/charrnn-timing.lock` on a shared machine. NumPy only (the
n-gram model is a yardstick here, never a charrnn feature).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import cpu_model

from charrnn.data import labelled as L
from charrnn.nn.metrics import figures

NAMES = ROOT / "corpora" / "names"
CHARRNN = Path(sys.executable).parent / "charrnn"


def write_split(work: Path, seed: int) -> tuple[Path, Path]:
    """WORK/seedS/{train,test}.tsv, text<TAB>label lines, the test part held out by
    labelled.split(texts, labels, 0.1, seed)."""
    d = work / f"seed{seed}"
    train, test = d / "train.tsv", d / "test.tsv"
    if not test.exists():
        ex = L.read(NAMES, "classify")
        tr, te = L.split(ex.texts, ex.targets, 0.1, seed)
        d.mkdir(parents=True, exist_ok=True)
        for path, idx in ((train, tr), (test, te)):
            path.write_text("".join(f"{ex.texts[i]}\t{ex.targets[i]}\n" for i in idx),
                            encoding="utf-8")
    return train, test


def record(work: Path, row: dict) -> None:
    with open(work / "results.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print(f"{row['model']:<28} seed {row['seed']}: {100 * row['accuracy']:.1f} / "
          f"{100 * row['macro_accuracy']:.1f}", flush=True)


def train_and_score(train: Path, test: Path, out: Path, budget: list, extra: list) -> dict:
    """`charrnn train --task classify TRAIN BUDGET EXTRA`, then its best checkpoint scored on
    TEST: {accuracy, macro_accuracy, ceiling, epochs, seconds, load}."""
    load = os.getloadavg()[0]
    t0 = time.time()
    subprocess.run([str(CHARRNN), "train", "--task", "classify", str(train), *budget, "--out",
                    str(out), "-q", *extra], check=True, stdout=subprocess.DEVNULL)
    res = json.loads(subprocess.run([str(CHARRNN), "eval", "-c", str(out), str(test), "--json"],
                                    check=True, capture_output=True, text=True).stdout)
    last = json.loads((out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()[-1])
    return {"accuracy": res["accuracy"], "macro_accuracy": res["macro_accuracy"],
            "ceiling": res.get("accuracy_ceiling"),
            "epochs": round(last.get("epoch", float("nan")), 1),
            "seconds": round(time.time() - t0), "load": load}


def run_rnn(args, extra: list) -> None:
    for seed in args.seeds:
        train, test = write_split(args.work, seed)
        out = args.work / f"seed{seed}" / f"run-{args.label}"
        budget = rnn_budget(args.minutes, extra)
        res = train_and_score(train, test, out, budget, extra)
        record(args.work, {"model": f"charrnn {args.label}", "options": extra, "seed": seed,
                           "minutes": float(budget[1]) if budget else None, **res})


def rnn_budget(minutes: float | None, extra: list) -> list:
    """`--minutes M` if given; none when the options after -- bound the run by --steps or
    --epochs (a clock budget would enter the cosine schedule, charrnn.train.trainer, and make
    the run irreproducible); otherwise the issue's 2 minutes."""
    if minutes is None and any(o in extra for o in ("--steps", "--epochs")):
        return []
    return ["--minutes", str(2 if minutes is None else minutes)]


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
    """Weighted softmax regression, L2 `lam`, full-batch Adam; (W, b)."""
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
    return W, b


def ngram_scores(tr, te, weightings: dict, l2: float, iterations: int) -> dict:
    """The n-gram model fitted on the examples `tr` (labelled.Examples) once per weighting
    {name: balanced} (balanced: inverse class frequency weights, else every example alike), each
    scored on `te`: {name: {accuracy, macro_accuracy}}. The n-gram index and both bags are
    built once for all the fits."""
    classes = sorted(set(tr.targets))
    cls = {c: k for k, c in enumerate(classes)}
    K = len(classes)
    index: dict = {}
    for t in tr.texts:
        for g in grams(t):
            index.setdefault(g, len(index))
    ytr = np.array([cls[c] for c in tr.targets])
    yte = np.array([cls[c] for c in te.targets])
    train_bags, test_bags = Bags(tr.texts, index), Bags(te.texts, index)
    out = {}
    for name, balanced in weightings.items():
        weights = L.inverse_frequency(ytr, K) if balanced else np.ones(K)
        W, b = fit(train_bags, ytr, K, len(index), weights, l2, iterations)
        f = figures(yte, test_bags.logits(W, b).argmax(axis=1), K)
        out[name] = {"accuracy": f["accuracy"], "macro_accuracy": f["macro_accuracy"]}
    return out


def run_ngram(args) -> None:
    for seed in args.seeds:
        train, test = write_split(args.work, seed)
        tr, te = L.read(train, "classify"), L.read(test, "classify")
        scores = ngram_scores(tr, te, {"n-gram LR": False, "n-gram LR balanced": True},
                              args.l2, args.iterations)
        for name, score in scores.items():
            record(args.work, {"model": name, "seed": seed, "l2": args.l2,
                               "iterations": args.iterations, **score})


def write_subset(work: Path, seed: int, fraction: float) -> tuple[Path, Path]:
    """WORK/curve/f{FRACTION}/seedS/{train,test}.tsv: FRACTION of the distinct names of split
    seed S's training part with all their copies (drawn by random.Random(1000 + S)), and the
    whole test part; fraction 1: the split itself."""
    train, test = write_split(work, seed)
    if fraction == 1:
        return train, test
    d = work / "curve" / f"f{fraction:g}" / f"seed{seed}"
    sub_train, sub_test = d / "train.tsv", d / "test.tsv"
    if not sub_test.exists():
        lines = train.read_text(encoding="utf-8").splitlines(keepends=True)
        names = sorted({line.split("\t")[0] for line in lines})
        keep = set(random.Random(1000 + seed).sample(names, round(fraction * len(names))))
        d.mkdir(parents=True, exist_ok=True)
        sub_train.write_text("".join(x for x in lines if x.split("\t")[0] in keep),
                             encoding="utf-8")
        shutil.copy(test, sub_test)
    return sub_train, sub_test


def run_curve(args, extra: list) -> None:
    """Both models on growing fractions of the training names, each scored on the whole test
    part: charrnn for a fixed --steps (the same compute at every fraction), the balanced n-gram
    model on exactly the examples charrnn trains on (its training part after `charrnn train`'s
    own 10% validation split, seed 0), so the two see the same names. Rows go to
    WORK/curve.jsonl; a (model, fraction, seed) already there is not run again."""
    path = args.work / "curve.jsonl"
    done = set()
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            done.add((r["model"], r["fraction"], r["seed"]))
    rnn = f"charrnn {args.label}, {args.steps} steps"
    ngram = "n-gram LR balanced, charrnn's training part"
    for fraction in args.fractions:
        for seed in args.seeds:
            train, test = write_subset(args.work, seed, fraction)
            ex = L.read(train, "classify")
            rows = []
            if (rnn, fraction, seed) not in done:
                out = train.parent / f"run-curve-{args.label}-{args.steps}"
                rows.append({"model": rnn, "options": extra, **train_and_score(
                    train, test, out, ["--steps", str(args.steps)], extra)})
            if (ngram, fraction, seed) not in done:
                tr, _ = L.split_examples(ex, 0.1, 0, stratify=True)
                rows.append({"model": ngram, **ngram_scores(
                    tr, L.read(test, "classify"), {ngram: True}, args.l2,
                    args.iterations)[ngram]})
            for row in rows:
                row.update(fraction=fraction, seed=seed, names=len(set(ex.texts)))
                with open(path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"f {fraction:g} {row['model']:<44} seed {seed}: "
                      f"{100 * row['accuracy']:.1f} / {100 * row['macro_accuracy']:.1f}",
                      flush=True)
    report_curve(path)


def report_curve(path: Path) -> None:
    """Per fraction and model: mean accuracy / macro accuracy over the seeds, and the n-gram
    model's lead in their sum."""
    cells: dict = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        cells.setdefault((r["fraction"], r["model"]), {})[r["seed"]] = r
    print(f"# {cpu_model()}; names, growing fractions of each split's training names, test "
          f"accuracy / macro accuracy, % (mean over the seeds)")
    print("| fraction | model | seeds | names | mean | acc + macro |")
    print("|---|---|---|---|---|---|")
    for (fraction, model), by in sorted(cells.items()):
        a = statistics.mean(100 * r["accuracy"] for r in by.values())
        m = statistics.mean(100 * r["macro_accuracy"] for r in by.values())
        names = round(statistics.mean(r["names"] for r in by.values()))
        print(f"| {fraction:g} | {model} | {','.join(map(str, sorted(by)))} | {names:,} | "
              f"{a:.1f} / {m:.1f} | {a + m:.1f} |")


def report(args) -> None:
    rows: dict = {}
    for line in (args.work / "results.jsonl").read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        rows.setdefault(r["model"], {})[r["seed"]] = r  # a later run of a seed replaces it
    seeds = sorted({s for by in rows.values() for s in by})
    print(f"# {cpu_model()}; names, 10% of the distinct surnames held out per split seed; "
          f"test accuracy / macro accuracy, %")
    head = ["model"] + [f"seed {s}" for s in seeds] + ["mean", "spread (sd)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for model, by in rows.items():
        cells = [f"{100 * by[s]['accuracy']:.1f} / {100 * by[s]['macro_accuracy']:.1f}"
                 if s in by else "-" for s in seeds]
        a = [100 * r["accuracy"] for r in by.values()]
        m = [100 * r["macro_accuracy"] for r in by.values()]
        sd = (f"{statistics.stdev(a):.1f} / {statistics.stdev(m):.1f}" if len(a) > 1 else "-")
        print(f"| {model} | " + " | ".join(cells)
              + f" | {statistics.mean(a):.1f} / {statistics.mean(m):.1f} | {sd} |")


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["rnn", "ngram", "report", "curve"], help="what to run")
    ap.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")],
                    default=[0, 1, 2, 3, 4], help="split seeds, comma-separated")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "names-bench",
                    help="splits, runs and results.jsonl go here")
    ap.add_argument("--minutes", type=float, default=None,
                    help="rnn: training minutes per seed (default 2; none when the options after "
                    "-- give --steps or --epochs, so such runs are reproducible)")
    ap.add_argument("--label", default="defaults", help="rnn: the row's name in the table")
    ap.add_argument("--iterations", type=int, default=400, help="ngram: full-batch Adam steps")
    ap.add_argument("--fractions", type=lambda s: [float(x) for x in s.split(",")],
                    default=[0.125, 0.25, 0.5, 1.0], help="curve: fractions of the training names")
    ap.add_argument("--steps", type=int, default=2032,
                    help="curve: charrnn's optimizer steps at every fraction (2032: 8 epochs of "
                    "a whole split's training part at the classifier's batch of 64)")
    ap.add_argument("--l2", type=float, default=1e-4, help="ngram: L2 penalty on the weights")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    {"rnn": lambda: run_rnn(args, extra), "ngram": lambda: run_ngram(args),
     "report": lambda: report(args), "curve": lambda: run_curve(args, extra)}[args.what]()


if __name__ == "__main__":
    main()
