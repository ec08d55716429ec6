"""charrnn speed on this machine, side by side with NumPy's matmul rate and (if installed) PyTorch.

    python bench/bench.py                  # the full table (a few minutes), results in bench/results.json
    python bench/bench.py --quick          # tiny sizes, seconds: checks that everything runs
    python bench/bench.py --configs lstm:512x2,gru:256x2 --repeats 5

Every figure is the best of --repeats timed rounds, and charrnn and PyTorch rounds alternate, so a
ratio compares two runs made under the same load of a shared machine. See bench/README.md.

FLOPs per character (N streams share nothing, so count per stream and step). For a layer with
hidden size H and G = gates * H (gates: lstm 4, gru 3, rnn 1):

    recurrent multiply    h_{t-1} Wh        2 H G
    input multiply        x_t Wx            2 H G  for layers above the first; the first layer's
                                            one-hot input is a row gather: 0 useful FLOPs
    output projection     h_t Wy            2 H V

    forward  F = sum over layers + 2 H V;   training ~ 3 F (forward, and two multiplies of the
    same size per multiply in backward: the input gradient and the weight gradient).

Elementwise work (gates, softmax, optimizer) is not counted: it is overhead, the thing to remove.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from charrnn import data as D  # noqa: E402
from charrnn import evaluate as E  # noqa: E402
from charrnn import model as M  # noqa: E402
from charrnn.cells import CELLS  # noqa: E402

CORPUS = ROOT / "corpora" / "tinyshakespeare.txt"
CONFIGS = "lstm:128x1,lstm:256x2,lstm:512x2,gru:256x2,rnn:256x2"
QUICK = "lstm:16x1,gru:16x2,rnn:16x2"
LR, CLIP = 2e-3, 5.0


def parse_configs(text: str) -> list[tuple[str, int, int]]:
    out = []
    for item in text.split(","):
        cell, size = item.strip().split(":")
        h, l = size.lower().split("x")
        if cell not in CELLS:
            raise SystemExit(f"unknown cell {cell!r} in --configs")
        out.append((cell, int(h), int(l)))
    return out


def flops_per_char(cell: str, H: int, L: int, V: int) -> int:
    """Forward multiply FLOPs per character (see the module docstring)."""
    G = CELLS[cell].gates * H
    per_layer = [2 * H * G + (0 if k == 0 else 2 * H * G) for k in range(L)]
    return sum(per_layer) + 2 * H * V


def best_rate(fn, work: float, seconds: float, min_calls: int = 1) -> float:
    """work / (seconds per call) for fn, timed over about `seconds` after as long a warm-up
    (PyTorch's first steps, oneDNN's especially, are slow while it builds its kernels)."""
    t0 = time.perf_counter()
    for i in range(1000):
        fn()
        if i >= 2 and time.perf_counter() - t0 > seconds:
            break
    n, t0 = 0, time.perf_counter()
    while n < min_calls or time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return work * n / (time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------
# matmul rates


def matmul_rate(m: int, k: int, n: int, seconds: float) -> float:
    rng = np.random.default_rng(0)
    a = rng.random((m, k), dtype=np.float32)
    b = rng.random((k, n), dtype=np.float32)
    c = np.empty((m, n), dtype=np.float32)
    return best_rate(lambda: np.matmul(a, b, out=c), 2.0 * m * k * n, seconds) / 1e9


# --------------------------------------------------------------------------------------------
# charrnn


def charrnn_trainer(cell, H, L, ids, N, T, seed=0):
    """A closure doing one real training step per call: next chunk, loss and gradients, clip, Adam."""
    from charrnn.optim import Optimizer

    V = int(ids.max()) + 1
    cfg = M.ModelConfig(vocab_size=V, cell=cell, hidden=H, layers=L, dtype="float32")
    rng = np.random.default_rng(seed)
    params = M.init_params(cfg, rng)
    opt = Optimizer("adam", params)
    b = D.batches(ids, N, T)
    box = {"state": M.init_state(cfg, N), "c": 0}

    def step():
        c = box["c"]
        if c == b.chunks:
            c, box["state"] = 0, M.init_state(cfg, N)
        x, y = b.chunk(c)
        _, grads, box["state"] = M.loss_and_grads(params, cfg, x, y, box["state"])
        opt.clip_and_step(params, grads, LR, CLIP)
        box["c"] = c + 1

    return step


def charrnn_sampler(cell, H, L, V, seed=0):
    """One stream, one character per call: model.step, softmax, a draw."""
    cfg = M.ModelConfig(vocab_size=V, cell=cell, hidden=H, layers=L, dtype="float32")
    rng = np.random.default_rng(seed)
    params = M.init_params(cfg, rng)
    box = {"state": M.init_state(cfg, 1), "id": np.zeros(1, dtype=np.intp)}

    def step():
        logits, box["state"] = M.step(params, cfg, box["id"], box["state"])
        z = logits[0]
        e = np.exp(z - z.max())
        cdf = np.cumsum(e)
        box["id"][0] = min(int(np.searchsorted(cdf, rng.random() * cdf[-1])), V - 1)

    return step


def matvec_chain(cell, H, L, V):
    """The bare chain of matrix-vector products one sampled character needs: the bound."""
    rng = np.random.default_rng(0)
    G = CELLS[cell].gates * H
    Wh = [rng.random((H, G), dtype=np.float32) for _ in range(L)]
    Wx = [rng.random((H, G), dtype=np.float32) for _ in range(L)]
    Wy = rng.random((H, V), dtype=np.float32)
    h = rng.random((1, H), dtype=np.float32)

    def step():
        for k in range(L):
            h @ Wh[k]
            if k:
                h @ Wx[k]
        h @ Wy

    return step


def charrnn_eval_rate(cell, H, L, ids, seconds):
    V = int(ids.max()) + 1
    cfg = M.ModelConfig(vocab_size=V, cell=cell, hidden=H, layers=L, dtype="float32")
    params = M.init_params(cfg, np.random.default_rng(0))
    return best_rate(lambda: E.score(params, cfg, ids, streams=32, seq=256), len(ids) - 1, seconds)


# --------------------------------------------------------------------------------------------
# PyTorch


def torch_trainer(torch, cell, H, L, ids, N, T, seed=0):
    torch.manual_seed(seed)
    V = int(ids.max()) + 1
    rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](
        V, H, L, batch_first=True)
    lin = torch.nn.Linear(H, V)
    eye = torch.eye(V)  # identity embedding: one-hot input
    params = list(rnn.parameters()) + list(lin.parameters())
    opt = torch.optim.Adam(params, lr=LR)
    b = D.batches(ids, N, T)
    box = {"state": None, "c": 0}

    def step():
        c = box["c"]
        if c == b.chunks:
            c, box["state"] = 0, None
        x, y = (torch.from_numpy(a.astype(np.int64)) for a in b.chunk(c))
        out, state = rnn(eye[x], box["state"])
        loss = torch.nn.functional.cross_entropy(lin(out).reshape(-1, V), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        box["state"] = tuple(s.detach() for s in state) if cell == "lstm" else state.detach()
        box["c"] = c + 1

    return step


def torch_sampler(torch, cell, H, L, V, seed=0):
    torch.manual_seed(seed)
    rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](V, H, L)
    lin = torch.nn.Linear(H, V)
    eye = torch.eye(V)
    box = {"state": None, "id": torch.zeros(1, dtype=torch.long)}

    def step():
        with torch.no_grad():
            out, box["state"] = rnn(eye[box["id"]][None], box["state"])
            p = torch.softmax(lin(out[0, 0]), -1)
            box["id"] = torch.multinomial(p, 1)

    return step


def torch_sample_rate(torch, cell, H, L, V, seconds, repeats):
    """Best over oneDNN (mkldnn) on and off; returns (rate, which)."""
    best = {}
    for on in (True, False):
        with torch.backends.mkldnn.flags(enabled=on):
            fn = torch_sampler(torch, cell, H, L, V)
            best["onednn" if on else "native"] = max(best_rate(fn, 1, seconds)
                                                     for _ in range(repeats))
    which = max(best, key=best.get)
    return best[which], which, best


# --------------------------------------------------------------------------------------------
# memory


MEM_CHILD = """
import resource, sys, time
from charrnn import train as TR
cfg = TR.TrainConfig(corpus=sys.argv[1], out=sys.argv[2], cell="lstm", hidden=256, layers=2,
                     batch=32, seq=64, steps=int(sys.argv[3]), eval_every=10**9,
                     val_frac=float(sys.argv[4]))
t0 = time.perf_counter()
TR.train(cfg)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - t0)
"""


def memory_check(megabytes: int, steps: int, val_frac: float) -> dict:
    """Peak RSS of a fresh process training LSTM 256x2 on a generated corpus of `megabytes` MB."""
    src = CORPUS.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "big.txt"
        with open(corpus, "wb") as f:
            left = megabytes * 1_000_000
            while left > 0:
                f.write(src[:left])
                left -= len(src)
        run = subprocess.run([sys.executable, "-c", MEM_CHILD, str(corpus), str(Path(tmp) / "run"),
                              str(steps), str(val_frac)], capture_output=True, text=True, cwd=ROOT)
    if run.returncode != 0:
        return {"error": run.stderr.strip().splitlines()[-1] if run.stderr else "failed"}
    kb, secs = run.stdout.split()[-2:]
    return {"corpus_mb": megabytes, "steps": steps, "val_frac": val_frac,
            "peak_rss_mb": int(kb) / 1024, "seconds": float(secs)}


# --------------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes and short timings")
    ap.add_argument("--configs", help=f"cell:HxL list (default {CONFIGS})")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=2.0, help="timing per round")
    ap.add_argument("--repeats", type=int, default=3, help="rounds per figure (best is kept)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="PyTorch threads")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    ap.add_argument("--sample", default="lstm:512x2", help="sampling/eval config ('' to skip)")
    ap.add_argument("--memory-mb", type=int, default=100, help="memory check corpus (0: skip)")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results.json"))
    a = ap.parse_args(argv)
    if a.quick:
        a.configs = a.configs or QUICK
        a.seconds, a.repeats, a.batch, a.seq = 0.2, 1, 4, 8
        a.sample = "lstm:16x2" if a.sample == "lstm:512x2" else a.sample
        a.memory_mb = 0
    configs = parse_configs(a.configs or CONFIGS)
    torch = None
    if not a.no_torch:
        try:
            import torch
            torch.set_num_threads(a.threads)
        except ImportError:
            torch = None

    text = D.read_corpus(CORPUS)
    vocab = D.vocab_of(text)
    ids = D.encode(text if not a.quick else text[:20000], vocab)
    V = len(vocab)
    res = {"machine": {"cpus": os.cpu_count(), "numpy": np.__version__,
                       "torch": torch.__version__ if torch else None,
                       "torch_threads": torch.get_num_threads() if torch else None,
                       "python": platform.python_version()},
           "settings": {k: v for k, v in vars(a).items() if k != "json"}, "matmul": {},
           "train": [], "sample": None, "eval": None, "memory": None}
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731

    size = 256 if a.quick else 2048
    res["matmul"]["square"] = {"shape": [size, size, size],
                               "gflops": max(matmul_rate(size, size, size, a.seconds)
                                             for _ in range(a.repeats))}
    log(f"matmul {size}^3: {res['matmul']['square']['gflops']:.1f} GFLOP/s")

    for cell, H, L in configs:
        name = f"{cell} {H}x{L}"
        G = CELLS[cell].gates * H
        rec = max(matmul_rate(a.batch, H, G, a.seconds / 2) for _ in range(a.repeats))
        fpc = 3 * flops_per_char(cell, H, L, V)
        work = a.batch * a.seq
        ours, theirs = [], []
        fn = charrnn_trainer(cell, H, L, ids, a.batch, a.seq)
        tf = torch_trainer(torch, cell, H, L, ids, a.batch, a.seq) if torch else None
        for _ in range(a.repeats):  # alternate, so both see the same load
            ours.append(best_rate(fn, work, a.seconds, min_calls=2))
            if tf:
                theirs.append(best_rate(tf, work, a.seconds, min_calls=2))
        row = {"config": name, "cell": cell, "hidden": H, "layers": L,
               "train_flops_per_char": fpc, "charrnn_chars_per_sec": max(ours),
               "torch_chars_per_sec": max(theirs) if theirs else None,
               "matmul_gflops_step_shape": rec}
        row["ratio"] = row["charrnn_chars_per_sec"] / row["torch_chars_per_sec"] if theirs else None
        row["charrnn_gflops"] = row["charrnn_chars_per_sec"] * fpc / 1e9
        row["frac_of_matmul"] = row["charrnn_gflops"] / res["matmul"]["square"]["gflops"]
        row["frac_of_step_shape"] = row["charrnn_gflops"] / rec
        res["train"].append(row)
        log(f"train {name}: {row}")

    if a.sample:
        (cell, H, L), = parse_configs(a.sample)
        s = {"config": f"{cell} {H}x{L}"}
        fn = charrnn_sampler(cell, H, L, V)
        s["charrnn_chars_per_sec"] = max(best_rate(fn, 1, a.seconds) for _ in range(a.repeats))
        ch = matvec_chain(cell, H, L, V)
        s["matvec_chain_per_sec"] = max(best_rate(ch, 1, a.seconds) for _ in range(a.repeats))
        if torch:
            rate, which, both = torch_sample_rate(torch, cell, H, L, V, a.seconds, a.repeats)
            s.update(torch_chars_per_sec=rate, torch_best_path=which, torch_paths=both,
                     ratio=s["charrnn_chars_per_sec"] / rate)
        res["sample"] = s
        log(f"sample: {s}")
        n_eval = 4000 if a.quick else 64_000
        res["eval"] = {"config": s["config"], "streams": 32, "seq": 256,
                       "chars_per_sec": max(charrnn_eval_rate(cell, H, L, ids[:n_eval], a.seconds)
                                            for _ in range(a.repeats))}
        log(f"eval: {res['eval']}")

    if a.memory_mb:
        res["memory"] = memory_check(a.memory_mb, 5, 0.001)
        log(f"memory: {res['memory']}")

    Path(a.json).write_text(json.dumps(res, indent=1))
    print(table(res))
    return res


def table(res) -> str:
    f = lambda x, spec: "-" if x is None else format(x, spec)  # noqa: E731
    mm = res["matmul"]["square"]
    lines = [f"NumPy float32 matmul {'x'.join(map(str, mm['shape']))}: {mm['gflops']:.1f} GFLOP/s"
             f" (numpy {res['machine']['numpy']}, torch {res['machine']['torch']},"
             f" {res['machine']['torch_threads']} torch threads)", "",
             f"{'training':<13}{'charrnn c/s':>12}{'torch c/s':>11}{'ratio':>7}{'GFLOP/s':>9}"
             f"{'of matmul':>10}{'step-shape':>11}{'of that':>8}"]
    for r in res["train"]:
        lines.append(f"{r['config']:<13}{r['charrnn_chars_per_sec']:>12.0f}"
                     f"{f(r['torch_chars_per_sec'], '.0f'):>11}{f(r['ratio'], '.2f'):>7}"
                     f"{r['charrnn_gflops']:>9.1f}{r['frac_of_matmul']:>10.0%}"
                     f"{r['matmul_gflops_step_shape']:>11.1f}{r['frac_of_step_shape']:>8.0%}")
    s = res["sample"]
    if s:
        lines += ["", f"sampling {s['config']}, one stream: charrnn {s['charrnn_chars_per_sec']:.0f}"
                  f" c/s, bare matvec chain {s['matvec_chain_per_sec']:.0f} c/s"
                  + (f", torch {s['torch_chars_per_sec']:.0f} c/s ({s['torch_best_path']}),"
                     f" ratio {s['ratio']:.2f}" if "ratio" in s else "")]
    if res["eval"]:
        e = res["eval"]
        lines.append(f"eval {e['config']}, {e['streams']} streams: {e['chars_per_sec']:.0f} c/s")
    m = res["memory"]
    if m:
        lines.append("memory: " + (m["error"] if "error" in m else
                                   f"peak RSS {m['peak_rss_mb']:.0f} MB training lstm 256x2 on a "
                                   f"{m['corpus_mb']} MB corpus ({m['steps']} steps)"))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
