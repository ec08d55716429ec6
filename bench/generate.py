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

    python bench/generate.py train --work /tmp/gen      the four timed runs (under the lock)
    python bench/generate.py report --work /tmp/gen     test bits per character overall and per
                                                        language; 100 names per language for
                                                        the five with most distinct surnames:
                                                        novelty and the classifier's agreement;
                                                        ten names for three languages
    python bench/generate.py speed                      training chars/s against PyTorch, the
                                                        same model (bench/generate_speed.py)

Every part prints a table (markdown) and writes its figures as JSON beside the runs.
"""

from __future__ import annotations

import argparse
import json
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


def train_runs(work: Path, minutes: float) -> dict:
    """The four runs, one after the other, through the CLI (as a user runs them)."""
    work.mkdir(parents=True, exist_ok=True)
    train_file, _ = split_files(work)
    out = {"machine": machine(), "minutes": minutes, "runs": {}}
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


def report(work: Path, per_label: int, seed: int, temperature: float = 1.0) -> dict:
    from charrnn.tools import generated as G
    from charrnn.tools.sample import SampleConfig

    config = SampleConfig(length=G.MAX_LENGTH, temperature=temperature)
    test_file = work / "test.tsv"
    out = {"machine": machine(), "temperature": temperature, "test": {}}
    for way in WAYS:
        ckpt = C.load(C.resolve(work / way))
        r = G.evaluate_file(ckpt, str(test_file))
        out["test"][way] = {"bpc": r["bpc"], "per_label": r["per_label"]}
    best = min(("init", "input"), key=lambda w: out["test"][w]["bpc"])
    out["best_way"] = best
    out["gain_bpc"] = out["test"]["none"]["bpc"] - out["test"][best]["bpc"]
    judge = C.load(C.resolve(work / "judge"))
    for way in ("init", "input"):
        ckpt = C.load(C.resolve(work / way))
        train = L.read(work / "train.tsv", "classify").texts
        novelty = G.novelty(ckpt, train, LANGUAGES, per_label, seed, config)
        agree = G.judge(ckpt, judge, LANGUAGES, per_label, seed, config)
        out[way] = {"novelty": novelty, "agreement": agree}
    out["shown"] = {}
    for y in SHOWN:  # as a reader makes them
        cmd = ["sample", "-c", str(work / best), "--label", y, "-n", "10", "--seed", str(seed),
               "--temperature", f"{temperature:g}"]
        made = subprocess.run([sys.executable, "-m", "charrnn", *cmd], check=True,
                              capture_output=True, text=True).stdout.split("\n")[:10]
        out["shown"][y] = {"command": "charrnn " + " ".join(cmd), "names": made}
    name = "report.json" if temperature == 1 else f"report-t{temperature:g}.json"
    (work / name).write_text(json.dumps(out, indent=1, ensure_ascii=False))
    return out


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
    print("| way in | label | novelty | agreement |")
    print("|---|---|---|---|")
    for way in ("init", "input"):
        for y in (*LANGUAGES, "overall"):
            nv = r[way]["novelty"]["per_label"].get(y, r[way]["novelty"])
            ag = r[way]["agreement"]["per_label"].get(y, r[way]["agreement"])
            print(f"| {way} | {y} | {nv['novelty']:.1%} | {ag['agreement']:.1%} |")
    for y, shown in r["shown"].items():
        print(f"\n{shown['command']}\n{y}: {', '.join(shown['names'])}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("part", choices=("train", "report", "speed"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/charrnn-generate"))
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--per-label", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=1.0, help="report: of the names made")
    a = ap.parse_args(argv)
    if a.part == "train":
        print(json.dumps(train_runs(a.work, a.minutes), indent=1))
    elif a.part == "report":
        print_report(report(a.work, a.per_label, a.seed, a.temperature))
    else:
        from generate_speed import main as speed

        speed([])


if __name__ == "__main__":
    main()
