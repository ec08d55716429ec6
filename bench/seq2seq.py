"""The encoder-decoder benchmarks: three-digit addition, dates to ISO 8601, English to French.

    python bench/seq2seq.py addition              50,000 pairs, 3 minutes, 1,000 held out
    python bench/seq2seq.py dates --attention none
    python bench/seq2seq.py engfra --minutes 5    corpora/eng-fra-short.tsv, 10% of the
                                                  English sentences held out with all their
                                                  translations

Each trains `charrnn train --task seq2seq` for the budget (its own validation split, 10%, picks
best.npz), scores the held-out pairs, never seen in training, as `charrnn eval` does (exact match
against any reference, character error rate), and times decoding the held-out sources: greedy
(all at once, batched) and beam search with 5 hypotheses (one source at a time), in output
characters per second.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from charrnn import checkpoint as C
from charrnn.data import labelled as L
from charrnn.data import pairs as P
from charrnn.data import synthetic
from charrnn.infer.translate import evaluate_file, translate
from charrnn.models import seq2seq
from charrnn.train.trainer import TrainConfig, train

SIZES = {"addition": 50000, "dates": 30000}


def write(path: Path, rows) -> Path:
    path.write_text("".join(f"{s}\t{t}\n" for s, t in rows))
    return path


def files(task: str, work: Path) -> tuple[Path, Path]:
    if task in SIZES:
        tr = synthetic.generate(task, SIZES[task], seed=1)
        te = synthetic.generate(task, 1000, seed=2, exclude={s for s, _ in tr})
        return write(work / "train.tsv", tr), write(work / "test.tsv", te)
    ex = L.read(ROOT / "corpora" / "eng-fra-short.tsv", "seq2seq")
    tr, te = L.split(ex.texts, None, 0.1, 0)
    return (write(work / "train.tsv", [(ex.texts[i], ex.targets[i]) for i in tr]),
            write(work / "test.tsv", [(ex.texts[i], ex.targets[i]) for i in te]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("task", choices=("addition", "dates", "engfra"))
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--attention", choices=seq2seq.ATTENTION, default="additive")
    ap.add_argument("--show", type=int, default=5, help="held-out translations to print")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train_file, test_file = files(args.task, work)
        cfg = TrainConfig.from_dict({**seq2seq.TRAIN_DEFAULTS, "task": "seq2seq",
                                     "attention": args.attention, "corpus": str(train_file),
                                     "out": str(work / "run"), "minutes": args.minutes})
        res = train(cfg)
        ck = C.load(C.resolve(res.run_dir))
        ev = evaluate_file(ck, test_file)
        sources = [s for s, _ in P.groups(*L.read(test_file, "seq2seq")[:2])]
        t0 = time.perf_counter()
        outs, _, _ = translate(ck, sources)
        greedy = sum(len(o) + 1 for o in outs) / (time.perf_counter() - t0)
        few = sources[:100]
        t0 = time.perf_counter()
        beam_outs, _, _ = translate(ck, few, beam=5)
        beam = sum(len(o) + 1 for o in beam_outs) / (time.perf_counter() - t0)
    r = {"task": args.task, "model": seq2seq.describe(ck.model), "minutes": args.minutes,
         "steps": res.step, "epochs": round(res.epoch, 2), "exact_match": ev["exact_match"],
         "char_error_rate": ev["char_error_rate"], "held_out_sources": ev["examples"],
         "greedy_chars_per_sec": round(greedy), "beam5_chars_per_sec": round(beam),
         "examples": list(zip(sources[: args.show], outs[: args.show]))}
    print(f"{args.task}: {r['model']}, {r['epochs']} epochs in {args.minutes:g} min: exact match "
          f"{r['exact_match']:.4f}, character error rate {r['char_error_rate']:.4f} on "
          f"{r['held_out_sources']} held-out sources; decoding {r['greedy_chars_per_sec']:,} "
          f"chars/s greedy, {r['beam5_chars_per_sec']:,} beam 5")
    for s, o in r["examples"]:
        print(f"  {s}  ->  {o}")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
