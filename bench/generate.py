"""The generate benchmark (issue 23): surnames generated for a language, measured.

A seeded, stratified 10% of the distinct surnames of corpora/names is held out as the test set,
every copy of a held-out surname with it (the names hold 20,050 lines but about 17,450 distinct
surnames; Arabic's 2,001 lines only 109), so no test name is in the training file, nor does the
test set pick a checkpoint. On the rest, for --minutes each, with the
defaults of `charrnn train --task generate` otherwise:

    init    the label's one-hot sets every layer's initial state
    input   the one-hot joins every step's input projection
    none    no condition at all (the same model, unconditioned)
    judge   a classifier (`--task classify`, its defaults)

    python bench/generate.py train --work /tmp/gen      the four timed runs (under the lock;
                                                        --split-seed picks the held-out 10%)
    python bench/generate.py report --work /tmp/gen     test bits per character overall and per
                                                        language; 100 names per language for
                                                        the five with most distinct surnames,
                                                        drawn as `charrnn sample` draws them
                                                        (temperature 1, top-p 0.9 unless told):
                                                        novelty and the classifier's agreement,
                                                        beside its recall of the real held-out
                                                        names; ten names for three languages
    python bench/generate.py curve --work /tmp/gen      novelty and agreement over temperature
                                                        and top-p, judged by the classifier and
                                                        by an n-gram one (bench/names.py's)
    python bench/generate.py speed                      training chars/s against PyTorch, the
                                                        same model (bench/generate_speed.py)

Every part prints a table (markdown) and writes its figures as JSON beside the runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


from common import cpu_model

from charrnn import checkpoint as C
from charrnn.data import labelled as L
from charrnn.data import pairs as P

WAYS = ("init", "input", "none")
LANGUAGES = ("Russian", "English", "Japanese", "German", "Italian")
SHOWN = ("Russian", "Japanese", "Italian")


NAMES = ROOT / "corpora" / "names"


def split_files(out: Path, seed: int = 0, frac: float = 0.1) -> tuple[Path, Path]:
    """train.tsv and test.tsv: labelled.split over the distinct surnames (each under its most
    frequent language), stratified and seeded, every line of a held-out surname held out."""
    ex = L.read(NAMES, "classify")
    _, held = L.split(ex.texts, ex.targets, frac, seed)
    test = {ex.texts[i] for i in held}
    for name, keep in (("train.tsv", False), ("test.tsv", True)):
        (out / name).write_text("".join(f"{t}\t{y}\n" for t, y in zip(ex.texts, ex.targets)
                                        if (t in test) == keep))
    return out / "train.tsv", out / "test.tsv"


def machine() -> dict:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpu": cpu_model(), "load_1min": load, "cores": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def train_runs(work: Path, minutes: float, split_seed: int = 0) -> dict:
    """The four runs, one after the other, through the CLI (as a user runs them)."""
    work.mkdir(parents=True, exist_ok=True)
    train_file, _ = split_files(work, split_seed)
    out = {"machine": machine(), "minutes": minutes, "split_seed": split_seed, "runs": {}}
    runs = [(w, ["--task", "generate", "--condition", w]) for w in WAYS]
    runs.append(("judge", ["--task", "classify"]))
    for name, args in runs:
        cmd = [sys.executable, "-m", "charrnn", "train", str(train_file), *args, "--minutes",
               str(minutes), "--out", str(work / name), "--quiet"]
        print("$", " ".join(cmd[2:]), file=sys.stderr)
        subprocess.run(cmd, check=True)
        hist = [json.loads(line) for line in (work / name / "metrics.jsonl").open()]
        rates = [r["chars_per_sec"] for r in hist if r["kind"] == "train"]
        out["runs"][name] = {"command": "charrnn " + " ".join(cmd[3:]),
                             "steps": max(r["step"] for r in hist),
                             "chars_per_sec": rates[-1] if rates else None}
    (work / "train.json").write_text(json.dumps(out, indent=1))
    return out


def recall(judge, test_file: Path) -> dict:
    """The judge's recall of the real held-out names (each distinct name once) of LANGUAGES,
    per language and their mean: what the generated names are measured against."""
    from charrnn.infer.predict import classify

    ex = L.read(test_file, "classify")
    out = {}
    for y in LANGUAGES:
        names = sorted({t for t, z in zip(ex.texts, ex.targets) if z == y})
        got = [r[0][0] for r in classify(judge, names)[0]]
        out[y] = sum(g == y for g in got) / len(names)
    return {"mean": sum(out.values()) / len(out), "per_label": out}


def report(work: Path, per_label: int, seed: int, temperature: float = 1.0,
           top_p: float | None = None) -> dict:
    from charrnn.infer import generated as G

    config = G.sample_config(temperature, top_p=top_p)  # the generator's defaults unless told
    test_file = work / "test.tsv"
    out = {"machine": machine(), "per_label": per_label, "temperature": temperature,
           "top_p": config.top_p, "test": {}}
    for way in WAYS:
        ckpt = C.load(C.resolve(work / way))
        r = G.evaluate_file(ckpt, str(test_file))
        out["test"][way] = {"bpc": r["bpc"], "per_label": r["per_label"]}
    best = min(("init", "input"), key=lambda w: out["test"][w]["bpc"])
    out["best_way"] = best
    out["gain_bpc"] = out["test"]["none"]["bpc"] - out["test"][best]["bpc"]
    judge = C.load(C.resolve(work / "judge"))
    out["judge_recall"] = recall(judge, test_file)
    train = L.read(work / "train.tsv", "classify").texts
    for way in ("init", "input"):
        ckpt = C.load(C.resolve(work / way))
        novelty = G.novelty(ckpt, train, LANGUAGES, per_label, seed, config)
        agree = G.judge(ckpt, judge, LANGUAGES, per_label, seed, config)
        out[way] = {"novelty": novelty, "agreement": agree}
    out["shown"] = {}
    told = ([] if temperature == 1 else ["--temperature", f"{temperature:g}"]) + \
        ([] if top_p is None else ["--top-p", f"{top_p:g}"])
    for y in SHOWN:  # as a reader makes them
        cmd = ["sample", "-c", str(work / best), "--label", y, "-n", "10", "--seed", str(seed),
               *told]
        made = subprocess.run([sys.executable, "-m", "charrnn", *cmd], check=True,
                              capture_output=True, text=True).stdout.split("\n")[:10]
        out["shown"][y] = {"command": "charrnn " + " ".join(cmd), "names": made}
    name = "report" + "".join(f"-{k}{v:g}" for k, v in (("t", temperature), ("p", top_p))
                              if v is not None and (k, v) != ("t", 1)) + ".json"
    (work / name).write_text(json.dumps(out, indent=1, ensure_ascii=False))
    return out


class NGramJudge:
    """A second judge, independent of charrnn: bench/names.py's logistic regression on the
    character 1- to 5-grams, fitted on W/train.tsv (cached in W/ngram.npz)."""

    def __init__(self, work: Path):
        import numpy as np
        from names import Bags, fit, grams

        self.Bags, ex = Bags, L.read(work / "train.tsv", "classify")
        self.classes = sorted(set(ex.targets))
        self.index: dict = {}
        for t in ex.texts:
            for g in grams(t):
                self.index.setdefault(g, len(self.index))
        cache = work / "ngram.npz"
        if cache.exists():
            with np.load(cache) as z:
                self.W, self.b = z["W"], z["b"]
        else:
            y = np.array([self.classes.index(c) for c in ex.targets])
            K = len(self.classes)
            self.W, self.b = fit(Bags(ex.texts, self.index), y, K, len(self.index), np.ones(K),
                                 1e-4, 400)
            np.savez(cache, W=self.W, b=self.b)

    def __call__(self, texts: list[str]) -> list[str]:
        z = self.Bags(texts, self.index).logits(self.W, self.b)
        return [self.classes[k] for k in z.argmax(axis=1)]


def curve(work: Path, way: str, per_label: int, seed: int, temperatures, top_ps) -> dict:
    """Novelty and agreement (our judge and the n-gram one) over temperature and top-p, with
    the bits per character the model gives the names it made against the real held-out ones."""
    import numpy as np

    from charrnn.infer import generated as G
    from charrnn.infer.predict import classify
    from charrnn.models import generate as M

    ckpt = C.load(C.resolve(work / way))
    judge = C.load(C.resolve(work / "judge"))
    ngram = NGramJudge(work)
    labels = G.labels_of(ckpt)
    seen = set(L.read(work / "train.tsv", "classify").texts)
    test = G.evaluate_file(ckpt, str(work / "test.tsv"))["per_label"]
    real = (sum(test[y]["bpc"] * test[y]["chars"] for y in LANGUAGES)
            / sum(test[y]["chars"] for y in LANGUAGES))
    ex = L.read(work / "test.tsv", "classify")
    held = {y: sorted({t for t, z in zip(ex.texts, ex.targets) if z == y}) for y in LANGUAGES}
    out = {"machine": machine(), "way": way, "seed": seed, "real_bpc": real, "recall": {},
           "rows": []}
    for name, judged in (("ours", lambda ts: [r[0][0] for r in classify(judge, ts)[0]]),
                         ("ngram", ngram)):
        per = {y: float(np.mean([g == y for g in judged(held[y])])) for y in LANGUAGES}
        out["recall"][name] = {"mean": float(np.mean(list(per.values()))), "per_label": per}
    for p in top_ps:
        for t in temperatures:
            config = G.sample_config(t, top_p=p)
            made = {y: G.names(ckpt, y, per_label, seed, config) for y in LANGUAGES}
            every = [m for ms in made.values() for m in ms]
            distinct = set(every)
            row = {"temperature": t, "top_p": p, "novelty": len(distinct - seen) / len(distinct),
                   "distinct": len(distinct), "mean_length": float(np.mean([len(m) for m in every]))}
            nats = chars = 0.0
            for y, ms in made.items():
                ids, _ = P.encode_targets(ckpt.vocab, ms, None)
                cond = M.one_hot([labels.index(y)] * len(ids), len(labels), ckpt.model.dtype)
                nats += M.text_nll(ckpt.params, ckpt.model, ids, cond).sum()
                chars += sum(len(i) + 1 for i in ids)
            row["bpc"] = nats / chars / math.log(2)
            for name, judged in (("ours", lambda ts: [r[0][0] for r in classify(judge, ts)[0]]),
                                 ("ngram", ngram)):
                per = {y: float(np.mean([g == y for g in judged([m or " " for m in ms])]))
                       for y, ms in made.items()}
                row[name] = {"agreement": float(np.mean(list(per.values()))), "per_label": per}
            out["rows"].append(row)
            print(f"T {t:g} top-p {p}: novelty {row['novelty']:.1%}, agreement "
                  f"{row['ours']['agreement']:.1%} (n-gram {row['ngram']['agreement']:.1%})",
                  file=sys.stderr)
    (work / f"curve-{way}.json").write_text(json.dumps(out, indent=1))
    return out


def print_curve(r: dict) -> None:
    m = r["machine"]
    print(f"{m['cpu']}, {m['cores']} cores, load {m['load_1min']:.2f}, {m['date']}; {r['way']}, "
          f"names seed {r['seed']}\n")
    rec = r["recall"]
    print("judges' recall of the real held-out names: ours {:.1%}, n-gram {:.1%}; their bits per "
          "character {:.3f}\n".format(rec["ours"]["mean"], rec["ngram"]["mean"], r["real_bpc"]))
    print("| temperature | top-p | novelty | agreement (ours) | agreement (n-gram) | bits/char "
          "| length | " + " | ".join(LANGUAGES) + " |")
    print("|---|---|---|---|---|---|---|" + "---|" * len(LANGUAGES))
    for row in r["rows"]:
        print(f"| {row['temperature']:g} | {row['top_p']:g} | {row['novelty']:.1%} | "
              f"{row['ours']['agreement']:.1%} | {row['ngram']['agreement']:.1%} | "
              f"{row['bpc']:.3f} | {row['mean_length']:.2f} | "
              + " | ".join(f"{row['ours']['per_label'][y]:.0%}" for y in LANGUAGES) + " |")


def print_report(r: dict) -> None:
    m = r["machine"]
    print(f"{m['cpu']}, {m['cores']} cores, load {m['load_1min']:.2f}, {m['date']}\n")
    print("| way in | test bpc | " + " | ".join(LANGUAGES) + " |")
    print("|---|---|" + "---|" * len(LANGUAGES))
    for way in WAYS:
        t = r["test"][way]
        print(f"| {way} | {t['bpc']:.3f} | "
              + " | ".join(f"{t['per_label'][y]['bpc']:.3f}" for y in LANGUAGES) + " |")
    print(f"\nbest way in: {r['best_way']}, {r['gain_bpc']:.3f} bits per character better than "
          f"none\n")
    top_p = 1 if r["top_p"] is None else r["top_p"]
    print(f"{r['per_label']} names per language at temperature "
          f"{r['temperature']:g}, top-p {top_p:g}\n")
    rec = r["judge_recall"]
    print("| way in | label | novelty | agreement | the judge's recall of real held-out names |")
    print("|---|---|---|---|---|")
    for way in ("init", "input"):
        for y in (*LANGUAGES, "overall"):
            nv = r[way]["novelty"]["per_label"].get(y, r[way]["novelty"])
            ag = r[way]["agreement"]["per_label"].get(y, r[way]["agreement"])
            print(f"| {way} | {y} | {nv['novelty']:.1%} | {ag['agreement']:.1%} | "
                  f"{rec['per_label'].get(y, rec['mean']):.1%} |")
    for y, shown in r["shown"].items():
        print(f"\n{shown['command']}\n{y}: {', '.join(shown['names'])}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("part", choices=("train", "report", "curve", "speed"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/charrnn-generate"))
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--per-label", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0, help="report: of the names made")
    ap.add_argument("--split-seed", type=int, default=0, help="train: of the held-out 10%%")
    ap.add_argument("--temperature", type=float, default=1.0, help="report: of the names made")
    ap.add_argument("--top-p", type=float, default=None,
                    help="report: of the names made (default: the generator's, 0.9; 1: all)")
    ap.add_argument("--way", default="init", choices=("init", "input"), help="curve: the run")
    ap.add_argument("--temperatures", type=lambda v: [float(x) for x in v.split(",")],
                    default=[0.7, 0.8, 0.9, 1.0, 1.1], help="curve: comma-separated")
    ap.add_argument("--top-ps", type=lambda v: [float(x) for x in v.split(",")],
                    default=[1.0, 0.95, 0.9], help="curve: comma-separated (1: all)")
    a = ap.parse_args(argv)
    if a.part == "train":
        print(json.dumps(train_runs(a.work, a.minutes, a.split_seed), indent=1))
    elif a.part == "report":
        print_report(report(a.work, a.per_label, a.seed, a.temperature, a.top_p))
    elif a.part == "curve":
        print_curve(curve(a.work, a.way, a.per_label, a.seed, a.temperatures, a.top_ps))
    else:
        from generate_speed import main as speed

        speed([])


if __name__ == "__main__":
    main()
