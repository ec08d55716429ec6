"""The language model's defaults on three corpora, in 5 minutes and at a fixed character count
(issue 27), beside a PyTorch model trained the same way for the same minutes.

`prepare` makes the corpora in WORK/corpora (reproducibly; their provenance in
WORK/corpora.json):

    shakespeare  corpora/tinyshakespeare.txt, the bundled 1.1 MB
    fortunes     the text files of Debian's `fortunes` package (quotations, about 2.5 MB),
                 fetched with `apt-get download fortunes` (or --deb FILE) and unpacked with
                 `dpkg-deb -x`; the files of usr/share/games/fortunes in sorted order, without
                 the .dat indexes and the .u8 links
    python       Python's standard library (--stdlib, default /usr/lib/python3.11): its *.py
                 files in sorted path order, without test/ and tests/ directories and
                 site-packages/dist-packages, cut at whole files once about 4 MB are taken

`train` runs `charrnn train CORPUS --minutes M --out WORK/runs/CORPUS/LABEL -q --eval-every E
[OPTIONS after --]` per corpus, E = --eval-chars // (batch * seq) steps, so every setting is
scored on the validation text (each corpus's last 10%, the language model's default) after the
same numbers of training characters. A run directory already there is read, not retrained.
`torch` trains PyTorch's nn.GRU/LSTM/RNN the same way (below) for the same minutes. Each run
appends one line to WORK/results.jsonl; `report` prints, per corpus and setting, the best
validation bits per character, the validation figure after --at-chars training characters (read
from the run's evaluations, interpolated linearly between the two around it; the learning rate
follows the clock, so runs at different speeds reach that count at different points of their
schedule, and the slower one, further down its decay, is favoured), the training
figure over the last --eval-chars characters (as trained, dropout on), epochs, characters
trained and characters per second (evaluations included), then each setting's mean gap to the
best per corpus and mean rank, and the corpora's provenance.

    python bench/defaults.py prepare [--deb fortunes_*.deb]
    flock /tmp/charrnn-timing.lock python bench/defaults.py train --label defaults
    flock /tmp/charrnn-timing.lock python bench/defaults.py train --label b32 \\
        --corpora fortunes -- --batch 32 --lr 8e-3
    flock /tmp/charrnn-timing.lock python bench/defaults.py torch --label torch --batch 64
    python bench/defaults.py report [--at-chars 4194304]

The PyTorch yardstick (`pip install torch==2.13.0`; never a charrnn dependency): the same
train/validation split and vocabulary (charrnn.data.text.load), one-hot input, the same streams
and chunks (charrnn.data.text.batches) with the state carried between chunks and reset when an
epoch wraps, dropout between layers and before the output, Adam, clipping to a global norm,
warm-up then the cosine decay following the clock (charrnn.nn.optim.learning_rate), --threads
threads, and validation scored as charrnn scores it (batch streams from the zero state, the
remainder continuing the last one). Time a run under `flock /tmp/charrnn-timing.lock` and note
`uptime` beside it: the rows record the load average at start and end and the CPU's name.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import cpu_model

from charrnn import checkpoint as C
from charrnn.train.config import TrainConfig

CHARRNN = Path(sys.executable).parent / "charrnn"
CORPORA = ("shakespeare", "fortunes", "python")
SKIP_DIRS = {"test", "tests", "site-packages", "dist-packages", "encodings"}
PYTHON_CHARS = 4_000_000
EVAL_CHARS = 2**20


# --------------------------------------------------------------------------------------------
# The corpora


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stdlib_text(stdlib: Path, limit: int = PYTHON_CHARS) -> tuple[str, list[str]]:
    """(text, files): the *.py files under `stdlib` in sorted path order, none in a SKIP_DIRS
    directory, joined whole until `limit` characters are reached (the file that reaches it is
    the last one taken)."""
    files = sorted((p for p in stdlib.rglob("*.py") if p.is_file()
                    and not SKIP_DIRS & set(p.relative_to(stdlib).parts[:-1])),
                   key=lambda p: p.relative_to(stdlib).as_posix())
    parts, taken, n = [], [], 0
    for p in files:
        if n >= limit:
            break
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # a few test fixtures are deliberately not UTF-8
            continue
        parts.append(text)
        taken.append(p.relative_to(stdlib).as_posix())
        n += len(text)
    return "".join(parts), taken


def fortunes_text(tree: Path) -> tuple[str, list[str]]:
    """(text, files): the fortune files of an unpacked `fortunes` package, in sorted order,
    without the .dat indexes and the .u8 links (which point at the same files)."""
    folder = tree / "usr" / "share" / "games" / "fortunes"
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.is_symlink()
                   and p.suffix not in (".dat", ".u8"))
    return "".join(p.read_text(encoding="utf-8") for p in files), [p.name for p in files]


def fetch_deb(work: Path, deb: Path | None) -> Path:
    """The fortunes .deb: `deb` if given, one already in WORK/deb, or `apt-get download`."""
    if deb:
        return deb
    folder = work / "deb"
    found = sorted(folder.glob("fortunes_*.deb"))
    if found:
        return found[-1]
    if not shutil.which("apt-get"):
        raise SystemExit("fortunes: apt-get is not available here; give Debian's fortunes "
                         "package with --deb FILE (e.g. from packages.debian.org)")
    folder.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["apt-get", "download", "fortunes"], cwd=folder, capture_output=True,
                       text=True, check=False)
    found = sorted(folder.glob("fortunes_*.deb"))
    if r.returncode or not found:
        raise SystemExit(f"fortunes: `apt-get download fortunes` failed: "
                         f"{(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    return found[-1]


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))


def prepare(work: Path, deb: Path | None = None, stdlib: Path = Path("/usr/lib/python3.11"),
            only=CORPORA) -> dict:
    """{corpus: provenance} for the corpora in `only`, written to WORK/corpora/NAME.txt where
    they are made (shakespeare is read in place), and WORK/corpora.json."""
    info_path = work / "corpora.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    for name in only:
        path = work / "corpora" / f"{name}.txt"
        if name in info and Path(info[name]["path"]).exists() \
                and sha256(Path(info[name]["path"])) == info[name]["sha256"]:
            continue
        if name == "shakespeare":
            path = ROOT / "corpora" / "tinyshakespeare.txt"
            source = {"source": "corpora/tinyshakespeare.txt (bundled)"}
        elif name == "fortunes":
            if not shutil.which("dpkg-deb"):
                raise SystemExit("fortunes: dpkg-deb is not available here to unpack the package")
            pkg = fetch_deb(work, deb)
            version = subprocess.run(["dpkg-deb", "-f", str(pkg), "Package", "Version"],
                                     check=True, capture_output=True, text=True).stdout
            with tempfile.TemporaryDirectory() as tree:
                subprocess.run(["dpkg-deb", "-x", str(pkg), tree], check=True)
                text, files = fortunes_text(Path(tree))
            write(path, text)
            source = {"source": " ".join(line.split(": ", 1)[1]
                                         for line in version.strip().splitlines()),
                      "deb": pkg.name, "deb_sha256": sha256(pkg), "files": len(files)}
        else:
            text, files = stdlib_text(stdlib)
            write(path, text)
            source = {"source": f"{stdlib} *.py, sorted, without {sorted(SKIP_DIRS)}",
                      "files": len(files), "first": files[0], "last": files[-1]}
        text = path.read_text(encoding="utf-8")
        info[name] = {"path": str(path), "chars": len(text), "bytes": path.stat().st_size,
                      "vocab": len(set(text)), "sha256": sha256(path), **source}
    work.mkdir(parents=True, exist_ok=True)
    info_path.write_text(json.dumps(info, indent=1))
    return info


# --------------------------------------------------------------------------------------------
# Runs: charrnn's, read from its run directory


def option(extra: list, name: str, default):
    """The value of `--name V` or `--name=V` in a list of command-line options, else default."""
    for i, a in enumerate(extra):
        if a == name and i + 1 < len(extra):
            return type(default)(extra[i + 1])
        if a.startswith(name + "="):
            return type(default)(a.split("=", 1)[1])
    return default


def at_chars(evals: list, chars: float):
    """The validation figure after `chars` training characters, linear between the two
    evaluations (chars, bpc) around it; None when the run did not get that far."""
    before = [(c, v) for c, v in evals if c <= chars]
    after = [(c, v) for c, v in evals if c >= chars]
    if not before or not after:
        return None
    (c0, v0), (c1, v1) = before[-1], after[0]
    return v0 if c1 == c0 else v0 + (v1 - v0) * (chars - c0) / (c1 - c0)


def read_run(out: Path, window: int = EVAL_CHARS) -> dict:
    """A finished charrnn run's figures: best and every evaluation (training characters,
    val_bpc), the training figure over its last `window` characters (the mean of the "train"
    records there, each itself a mean over its steps), epochs, characters, seconds."""
    meta = C.read_meta(out / "last.npz")
    t, m = meta["train"], meta["train"]["model"]
    per_step = t["batch"] * t["seq"]
    hist = meta["history"]
    evals = [(r["step"] * per_step, r["val_bpc"]) for r in hist if r["kind"] == "eval"]
    end = [r["train_bpc"] for r in hist if r["kind"] == "train"
           and r["step"] * per_step > meta["step"] * per_step - window]
    return {"setting": f"{m['cell']} {m['hidden']}x{m['layers']} d{m['dropout']:g} "
                       f"b{t['batch']} s{t['seq']} lr{t['lr']:g} w{t['warmup']}",
            "best_val_bpc": meta["best_val_bpc"], "evals": evals,
            "train_bpc_end": sum(end) / len(end) if end else None, "epochs": hist[-1]["epoch"],
            "chars": meta["step"] * per_step, "seconds": meta["elapsed"],
            "kernels": t.get("kernels")}


def record(work: Path, row: dict) -> None:
    with open(work / "results.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print(f"{row['corpus']:<12} {row['label']:<20} best {row['best_val_bpc']:.3f}, "
          f"{row['epochs']:.1f} epochs, {row['chars'] / row['seconds']:,.0f} chars/s", flush=True)


def machine() -> dict:
    return {"cpu": cpu_model(), "load": round(os.getloadavg()[0], 2),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def run_charrnn(args, extra: list) -> None:
    corpora = prepare(args.work, args.deb, args.stdlib, args.corpora)
    step_chars = option(extra, "--batch", TrainConfig.batch) * option(extra, "--seq",
                                                                      TrainConfig.seq)
    every = [] if option(extra, "--eval-every", 0) else \
        ["--eval-every", str(max(1, args.eval_chars // step_chars))]
    for name in args.corpora:
        out = args.work / "runs" / name / args.label
        cmd = ["charrnn", "train", corpora[name]["path"], "--minutes", f"{args.minutes:g}",
               "--out", str(out), "-q", *every, *extra]
        if not (out / "last.npz").exists():
            start = machine()
            subprocess.run([str(CHARRNN), *cmd[1:]], check=True, stdout=subprocess.DEVNULL)
            start["load_end"] = round(os.getloadavg()[0], 2)
            (out / "bench.json").write_text(json.dumps(start))
        start = json.loads((out / "bench.json").read_text()) if (out / "bench.json").exists() \
            else {"cpu": cpu_model(), "load": None, "load_end": None, "date": None}
        record(args.work, {"corpus": name, "label": args.label, "impl": "charrnn",
                           "command": " ".join(cmd), **read_run(out, args.eval_chars), **start})


# --------------------------------------------------------------------------------------------
# PyTorch's model, trained the same way


def torch_run(torch, a, path: str) -> dict:
    """One PyTorch run on the corpus at `path` for a.minutes (see the module docstring)."""
    import numpy as np

    from charrnn.data import text as D
    from charrnn.nn.optim import learning_rate

    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    corpus = D.load(path, 0.1)
    V, N, T = len(corpus.vocab), a.batch, a.seq
    b = D.batches(corpus.train, N, T)
    rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[a.cell](
        V, a.hidden, a.layers, batch_first=True, dropout=a.dropout if a.layers > 1 else 0.0)
    lin = torch.nn.Linear(a.hidden, V)
    eye = torch.eye(V)  # one-hot input
    params = list(rnn.parameters()) + list(lin.parameters())
    opt = torch.optim.Adam(params, lr=a.lr)
    drop = torch.nn.Dropout(a.dropout)
    detach = (lambda s: tuple(x.detach() for x in s)) if a.cell == "lstm" else \
        (lambda s: s.detach())

    def ids(x):
        return torch.from_numpy(np.ascontiguousarray(x).astype(np.int64))

    def validate() -> float:
        """Bits per character of the validation text as charrnn.models.lm.score scores it."""
        val = corpus.val
        P = len(val) - 1
        S = min(N, P)
        m = P // S
        rnn.eval()
        total, state = 0.0, None
        with torch.no_grad():
            for x, y in ((val[:S * m].reshape(S, m), val[1:S * m + 1].reshape(S, m)),
                         (val[S * m:P][None], val[S * m + 1:][None])):
                if x.size == 0:
                    continue
                if len(x) == 1 and S > 1:  # the remainder continues the last stream
                    state = tuple(s[:, -1:] for s in state) if a.cell == "lstm" \
                        else state[:, -1:]
                else:
                    state = None
                for lo in range(0, x.shape[1], 256):
                    out, state = rnn(eye[ids(x[:, lo:lo + 256])], state)
                    total += torch.nn.functional.cross_entropy(
                        lin(out).reshape(-1, V), ids(y[:, lo:lo + 256]).reshape(-1),
                        reduction="sum").item()
        rnn.train()
        return total / P / math.log(2)

    every = max(1, a.eval_chars // (N * T))
    seconds, evals = a.minutes * 60, []
    step, chunk, state, losses = 0, 0, None, []
    t0 = time.perf_counter()
    while (el := time.perf_counter() - t0) < seconds:
        x, y = (ids(v) for v in b.chunk(chunk))
        for g in opt.param_groups:
            g["lr"] = learning_rate(a.lr, "cosine", a.warmup, step, el / seconds)
        out, state = rnn(eye[x], state)
        loss = torch.nn.functional.cross_entropy(lin(drop(out)).reshape(-1, V), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, a.clip)
        opt.step()
        losses.append(loss.item())
        step, chunk, state = step + 1, chunk + 1, detach(state)
        if chunk == b.chunks:  # the streams wrap to their starts: reset the state
            chunk, state = 0, None
        if step % every == 0:
            evals.append((step * N * T, validate()))
    if not evals or evals[-1][0] != step * N * T:
        evals.append((step * N * T, validate()))
    el = time.perf_counter() - t0
    return {"setting": f"torch {a.cell} {a.hidden}x{a.layers} d{a.dropout:g} b{N} s{T} "
                       f"lr{a.lr:g} w{a.warmup}",
            "best_val_bpc": min(v for _, v in evals), "evals": evals,
            "train_bpc_end": sum(losses[-every:]) / len(losses[-every:]) / math.log(2)
            if losses else None,
            "epochs": step / b.chunks, "chars": step * N * T, "seconds": el,
            "torch": torch.__version__, "threads": a.threads}


def run_torch(a) -> None:
    try:
        import torch
    except ImportError:
        raise SystemExit("torch is not installed: pip install torch==2.13.0") from None
    corpora = prepare(a.work, a.deb, a.stdlib, a.corpora)
    for name in a.corpora:
        start = machine()
        row = torch_run(torch, a, corpora[name]["path"])
        record(a.work, {"corpus": name, "label": a.label, "impl": "torch",
                        "command": "python bench/defaults.py " + " ".join(sys.argv[1:]),
                        **row, **start, "load_end": round(os.getloadavg()[0], 2)})


# --------------------------------------------------------------------------------------------
# The report


def fmt(v, spec=".3f") -> str:
    return "-" if v is None else format(v, spec)


def ranking(rows: dict, corpora: list, key) -> list:
    """[(label, mean gap to the best per corpus, mean rank)] of the labels with a figure on
    every corpus (by `key(row)`), best first."""
    labels = [lab for lab in {lab for (_, lab) in rows}
              if all(key(rows.get((c, lab), {})) is not None for c in corpora)]
    out = []
    for lab in labels:
        gaps, ranks = [], []
        for c in corpora:
            scores = sorted(key(rows[(c, other)]) for other in labels)
            mine = key(rows[(c, lab)])
            gaps.append(mine - scores[0])
            ranks.append(1 + scores.index(mine))
        out.append((lab, sum(gaps) / len(gaps), sum(ranks) / len(ranks)))
    return sorted(out, key=lambda r: r[1])


def report(a) -> None:
    rows: dict = {}
    for line in (a.work / "results.jsonl").read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        rows[(r["corpus"], r["label"])] = r  # a later row of the same run replaces it
    corpora = [c for c in CORPORA if any(k[0] == c for k in rows)]
    x = a.at_chars
    print(f"# validation bits per character (each corpus's last 10%); best in the run, and "
          f"after {x:,} training characters")
    print(f"| corpus | label | setting | best | at {x / 1e6:.1f}M chars | "
          f"train, last {a.eval_chars / 1e6:.1f}M | epochs | chars | chars/s | load (start/end) "
          f"| date |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for c in corpora:
        for (cc, lab), r in sorted(rows.items(), key=lambda kv: kv[1]["best_val_bpc"]):
            if cc == c:
                print(f"| {c} | {lab} | {r['setting']} | {r['best_val_bpc']:.3f} | "
                      f"{fmt(at_chars(r['evals'], x))} | {fmt(r.get('train_bpc_end'))} | "
                      f"{r['epochs']:.1f} | "
                      f"{r['chars'] / 1e6:.1f}M | {r['chars'] / r['seconds']:,.0f} | "
                      f"{r['load']}/{r['load_end']} | {r['date']} |")
    for title, key in (("best", lambda r: r.get("best_val_bpc")),
                       (f"at {x / 1e6:.1f}M chars", lambda r: at_chars(r["evals"], x)
                        if r else None)):
        ranked = ranking(rows, corpora, key)
        if ranked:
            print(f"\n# ranking by {title} on {', '.join(corpora)}: mean gap to the best per "
                  f"corpus (bpc), mean rank")
            for lab, gap, rank in ranked:
                print(f"{lab:<24} {gap:+.3f}  {rank:.2f}")
    info_path = a.work / "corpora.json"
    if info_path.exists():
        print("\n# corpora")
        for name, i in json.loads(info_path.read_text()).items():
            print(f"{name}: {i['chars']:,} characters ({i['bytes']:,} bytes, vocabulary "
                  f"{i['vocab']}), sha256 {i['sha256'][:16]}..., {i['source']}")
    cpus = {r["cpu"] for r in rows.values()}
    print(f"\n# CPU: {', '.join(sorted(cpus))}")


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    tc, mc = TrainConfig(), TrainConfig().model
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("part", choices=("prepare", "train", "torch", "report"))
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "defaults-bench",
                    help="corpora, runs and results.jsonl go here")
    ap.add_argument("--corpora", type=lambda s: s.split(","), default=list(CORPORA),
                    help="comma-separated, of " + ", ".join(CORPORA))
    ap.add_argument("--label", default="defaults", help="train, torch: the row's name")
    ap.add_argument("--minutes", type=float, default=5.0, help="train, torch: per corpus")
    ap.add_argument("--eval-chars", type=int, default=EVAL_CHARS,
                    help="train, torch: training characters between evaluations")
    ap.add_argument("--at-chars", type=int, default=4 * EVAL_CHARS,
                    help="report: the fixed count of training characters")
    ap.add_argument("--deb", type=Path, help="prepare: Debian's fortunes package (else "
                                             "apt-get download)")
    ap.add_argument("--stdlib", type=Path, default=Path("/usr/lib/python3.11"),
                    help="prepare: Python's standard library")
    for name, v in (("cell", mc.cell), ("hidden", mc.hidden), ("layers", mc.layers),
                    ("dropout", mc.dropout), ("batch", tc.batch), ("seq", tc.seq),
                    ("lr", tc.lr), ("warmup", tc.warmup), ("clip", tc.clip), ("seed", 0),
                    ("threads", 2)):
        ap.add_argument(f"--{name}", type=type(v), default=v, help=f"torch: default {v}")
    a = ap.parse_args(argv)
    unknown = set(a.corpora) - set(CORPORA)
    if unknown:
        ap.error(f"unknown corpora {sorted(unknown)}; choose from {', '.join(CORPORA)}")
    a.work.mkdir(parents=True, exist_ok=True)
    if a.part == "prepare":
        print(json.dumps(prepare(a.work, a.deb, a.stdlib, a.corpora), indent=1))
    elif a.part == "train":
        run_charrnn(a, extra)
    elif a.part == "torch":
        run_torch(a)
    else:
        report(a)


if __name__ == "__main__":
    main()
