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
import functools
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _pin_threads(argv) -> None:
    """--threads N must reach OpenBLAS before NumPy loads it: set the usual variables first."""
    for j, arg in enumerate(argv):
        n = arg.split("=", 1)[1] if arg.startswith("--threads=") else (
            argv[j + 1] if arg == "--threads" and j + 1 < len(argv) else None)
        if n:
            for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ[var] = n


if __name__ == "__main__":
    _pin_threads(sys.argv[1:])

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import cpu_model

from charrnn.data import text as D
from charrnn.models import lm as M
from charrnn.nn import cells
from charrnn.nn.cells import CELLS
from charrnn.parallel import blas
from charrnn.parallel import workers as P

CORPUS = ROOT / "corpora" / "tinyshakespeare.txt"
CONFIGS = "lstm:128x1,lstm:256x2,lstm:512x2,gru:256x2,rnn:256x2"
QUICK = "lstm:16x1,gru:16x2,rnn:16x2"
LR, CLIP = 2e-3, 5.0
@functools.cache
def workers() -> P.Workers:
    """charrnn's workers, made at first use (so PyTorch's measurements never change malloc
    settings, see parallel.keep_freed_memory): as many as OpenBLAS was given threads."""
    return P.Workers()


def parse_configs(text: str) -> list[tuple[str, int, int]]:
    out = []
    for item in filter(None, text.split(",")):
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


def best_rate(fn, work: float, seconds: float, min_calls: int = 1, min_warm: int = 3) -> float:
    """work / (seconds per call) for fn, timed over about `seconds` after as long a warm-up
    (PyTorch's first steps, oneDNN's especially, are slow while it builds its kernels)."""
    t0 = time.perf_counter()
    for i in range(1000):
        fn()
        if i + 1 >= min_warm and time.perf_counter() - t0 > seconds:
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


def model_config(cell, H, L, V, kernels):
    """The float32 model, its cells running `kernels` ("auto" chosen as `charrnn train` does)."""
    return M.ModelConfig(vocab_size=V, cell=cell, hidden=H, layers=L, dtype="float32",
                         kernels=cells.choose_kernels(kernels, cell, "float32"))


def charrnn_trainer(cell, H, L, ids, N, T, kernels, seed=0):
    """A closure doing one real training step per call, as `charrnn train` does it: next chunk,
    loss and gradients with the streams split across processes (charrnn.parallel), clip, Adam."""
    from charrnn.nn.optim import Optimizer

    V = int(ids.max()) + 1
    cfg = model_config(cell, H, L, V, kernels)
    rng = np.random.default_rng(seed)
    params = M.init_params(cfg, rng)
    opt = Optimizer("adam", params)
    b = D.batches(ids, N, T)
    box = {"state": M.init_state(cfg, N), "c": 0}
    pool = workers()

    def step():
        c = box["c"]
        if c == b.chunks:
            c, box["state"] = 0, M.init_state(cfg, N)
        x, y = b.chunk(c)
        _, grads, box["state"] = P.loss_and_grads(M, params, cfg, (x, y), box["state"], None, pool)
        opt.clip_and_step(params, grads, LR, CLIP)
        box["c"] = c + 1

    return step


def charrnn_sampler(cell, H, L, vocab, kernels, seed=0):
    """One stream, one character per call, through charrnn's own sampler (charrnn.sample):
    model.step, softmax, one draw."""
    from charrnn.infer.sample import SampleConfig, generate

    cfg = model_config(cell, H, L, len(vocab), kernels)
    rng = np.random.default_rng(seed)
    params = M.init_params(cfg, rng)
    pieces = generate(params, cfg, vocab, config=SampleConfig(length=10**9), rng=rng)
    return lambda: next(pieces)


def matvec_chain(cell, H, L, V):
    """The bare chain of NumPy's (OpenBLAS's) matrix-vector products one sampled character
    needs: the floor of a sampler made of them. charrnn's fused step is one C call running its
    own products on weights packed once per sample (charrnn.nn.fused_step), so it can pass it."""
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


def charrnn_eval_rate(cell, H, L, ids, seconds, kernels):
    V = int(ids.max()) + 1
    cfg = model_config(cell, H, L, V, kernels)
    params = M.init_params(cfg, np.random.default_rng(0))
    pool = workers()
    return best_rate(lambda: M.score(params, cfg, ids, streams=32, seq=256, workers=pool),
                     len(ids) - 1, seconds, min_warm=1)


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


# --------------------------------------------------------------------------------------------
# memory


MEM_CHILD = """
import glob, os, resource, sys, time
from charrnn.models import lm as M
from charrnn.train import trainer as TR


def worker_hwm():  # peak RSS (kB) of this process's children: the worker processes
    kids = [k for f in glob.glob(f"/proc/{os.getpid()}/task/*/children") for k in open(f).read().split()]
    best = 0
    for k in kids:
        try:
            with open(f"/proc/{k}/status") as f:
                best = max([best] + [int(l.split()[1]) for l in f if l.startswith("VmHWM:")])
        except OSError:
            pass
    return best


peak = [0]
cfg = TR.TrainConfig(corpus=sys.argv[1], out=sys.argv[2], model=M.Config(cell="lstm", hidden=256,
                     layers=2, dropout=0.0), batch=32, seq=64, steps=int(sys.argv[3]),
                     eval_every=10**9, val_frac=float(sys.argv[4]))
t0 = time.perf_counter()
TR.train(cfg, on_event=lambda e: peak.__setitem__(0, max(peak[0], worker_hwm())) and False)
print(peak[0], time.perf_counter() - t0)
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
                              str(steps), str(val_frac)], capture_output=True, text=True, cwd=ROOT,
                             check=False)
    if run.returncode != 0:
        return {"error": run.stderr.strip().splitlines()[-1] if run.stderr else "failed"}
    child_kb, _, kb, secs = run.stdout.split()[-4:]
    return {"corpus_mb": megabytes, "steps": steps, "val_frac": val_frac,
            "peak_rss_mb": int(kb) / 1024, "worker_peak_rss_mb": int(child_kb) / 1024,
            "seconds": float(secs)}


# --------------------------------------------------------------------------------------------
# Every figure is measured in a fresh process: OpenBLAS's and PyTorch's thread pools both spin
# while waiting for work, and in one process they steal the two cores from each other.


def worker(job: dict) -> float:
    """Run one measurement described by `job` (see `measure`) and return its rate."""
    kind, secs = job["kind"], job["seconds"]
    if kind == "matmul":
        return matmul_rate(*job["shape"], secs)
    torch = None
    if job.get("impl") == "torch":
        import torch
        torch.set_num_threads(job["threads"])
    text = D.read_corpus(CORPUS)
    vocab = D.vocab_of(text)
    ids = D.encode(text[: job["chars"]], vocab)
    V = len(vocab)
    cell, H, L = job["cell"], job["hidden"], job["layers"]
    kernels = job.get("kernels", cells.DEFAULT_KERNELS)
    if kind == "train":
        N, T = job["batch"], job["seq"]
        fn = (torch_trainer(torch, cell, H, L, ids, N, T) if torch
              else charrnn_trainer(cell, H, L, ids, N, T, kernels))
        return best_rate(fn, N * T, secs, min_calls=2)
    if kind == "sample":
        if torch:
            with torch.backends.mkldnn.flags(enabled=job["onednn"]):
                return best_rate(torch_sampler(torch, cell, H, L, V), 1, secs)
        return best_rate(charrnn_sampler(cell, H, L, vocab, kernels), 1, secs)
    if kind == "chain":
        return best_rate(matvec_chain(cell, H, L, V), 1, secs)
    if kind == "eval":
        return charrnn_eval_rate(cell, H, L, ids[: job["eval_chars"]], secs, kernels)
    raise ValueError(kind)


def measure(job: dict, threads: int) -> float:
    """`job` run by `worker` in a child process (threads pinned); its rate, or nan on failure."""
    job = {**job, "threads": threads}
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    run = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], env=env,
                         capture_output=True, text=True, cwd=ROOT, check=False)
    if run.returncode != 0:
        print(f"failed: {job}\n{run.stderr.strip()[-2000:]}", file=sys.stderr)
        return float("nan")
    return float(run.stdout.split()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes and short timings")
    ap.add_argument("--configs", help=f"cell:HxL list (default {CONFIGS}; '' to skip training)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=2.0, help="timing per round")
    ap.add_argument("--repeats", type=int, default=3, help="rounds per figure (best is kept)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="threads for both OpenBLAS (NumPy) and PyTorch (default: all cores)")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    ap.add_argument("--kernels", default=cells.DEFAULT_KERNELS, choices=cells.KERNEL_CHOICES,
                    help="charrnn's cell kernels, as `charrnn train --kernels` (default: its), for "
                    "training, sampling and eval; when they come to fused, sampling is also timed "
                    "with numpy's, rounds alternating")
    ap.add_argument("--sample", default="lstm:512x2", help="sampling/eval config ('' to skip)")
    ap.add_argument("--memory-mb", type=int, default=100, help="memory check corpus (0: skip)")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results.json"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one measurement, see measure
    a = ap.parse_args(argv)
    if a.worker:
        print(worker(json.loads(a.worker)))
        return None
    if a.quick:
        a.configs = a.configs or QUICK
        a.seconds, a.repeats, a.batch, a.seq = 0.2, 1, 4, 8
        a.sample = "lstm:16x2" if a.sample == "lstm:512x2" else a.sample
        a.memory_mb = 0
    configs = parse_configs(CONFIGS if a.configs is None else a.configs)
    torch_version = None
    if not a.no_torch and importlib.util.find_spec("torch") is not None:
        torch_version = importlib.metadata.version("torch")  # imported only in the workers
    have_torch = torch_version is not None
    text = D.read_corpus(CORPUS)
    V = len(D.vocab_of(text))
    chars = 20_000 if a.quick else len(text)
    base = {"seconds": a.seconds, "chars": chars}
    run = lambda **job: measure({**base, **job}, a.threads)
    best = lambda **job: max(run(**job) for _ in range(a.repeats))
    res = {"machine": {"cpu": cpu_model(), "blas": blas.describe(),
                       "cpus": os.cpu_count(), "threads": a.threads, "numpy": np.__version__,
                       "torch": torch_version,
                       "python": platform.python_version(), "load_start": os.getloadavg()},
           "settings": {k: v for k, v in vars(a).items() if k not in ("json", "worker")},
           "matmul": {}, "train": [], "sample": None, "eval": None, "memory": None}
    log = lambda s: print(s, file=sys.stderr, flush=True)

    size = 256 if a.quick else 2048
    res["matmul"]["square"] = {"shape": [size] * 3, "gflops": best(kind="matmul", shape=[size] * 3)}
    log(f"matmul {size}^3: {res['matmul']['square']['gflops']:.1f} GFLOP/s")

    for cell, H, L in configs:
        name = f"{cell} {H}x{L}"
        G = CELLS[cell].gates * H
        shape = [a.batch, H, G]
        rec = best(kind="matmul", shape=shape)
        fpc = 3 * flops_per_char(cell, H, L, V)
        job = {"kind": "train", "cell": cell, "hidden": H, "layers": L, "batch": a.batch,
               "seq": a.seq, "kernels": a.kernels}
        ours, theirs = [], []
        for _ in range(a.repeats):  # alternate, so both see the same load
            ours.append(run(**job, impl="charrnn"))
            if have_torch:
                theirs.append(run(**job, impl="torch"))
        row = {"config": name, "cell": cell, "hidden": H, "layers": L,
               "kernels": cells.choose_kernels(a.kernels, cell, "float32"),
               "train_flops_per_char": fpc, "charrnn_chars_per_sec": max(ours),
               "torch_chars_per_sec": max(theirs) if theirs else None,
               "charrnn_rounds": ours, "torch_rounds": theirs,
               "step_shape": shape, "matmul_gflops_step_shape": rec}
        row["ratio"] = row["charrnn_chars_per_sec"] / row["torch_chars_per_sec"] if theirs else None
        row["median_ratio"] = (statistics.median(ours) / statistics.median(theirs)
                               if theirs else None)
        row["charrnn_gflops"] = row["charrnn_chars_per_sec"] * fpc / 1e9
        row["frac_of_matmul"] = row["charrnn_gflops"] / res["matmul"]["square"]["gflops"]
        row["frac_of_step_shape"] = row["charrnn_gflops"] / rec
        if row["torch_chars_per_sec"]:
            row["torch_frac_of_matmul"] = (row["torch_chars_per_sec"] * fpc / 1e9
                                           / res["matmul"]["square"]["gflops"])
        res["train"].append(row)
        log(f"train {name}: {json.dumps(row)}")

    if a.sample:
        (cell, H, L), = parse_configs(a.sample)
        job = {"cell": cell, "hidden": H, "layers": L, "kernels": a.kernels}
        chosen = cells.choose_kernels(a.kernels, cell, "float32")
        s = {"config": f"{cell} {H}x{L}", "kernels": chosen}
        ours, paths = {chosen: [], "numpy": []}, {"onednn": [], "native": []}
        chain = []  # the bound, in the same alternating rounds: the ratio sees one load
        for _ in range(a.repeats):
            for k, rounds in ours.items():
                rounds.append(run(kind="sample", impl="charrnn", **{**job, "kernels": k}))
            chain.append(run(kind="chain", **job))
            if have_torch:
                for path, rounds in paths.items():
                    rounds.append(run(kind="sample", impl="torch", onednn=path == "onednn", **job))
        s["charrnn_chars_per_sec"] = max(ours[chosen])
        if chosen != "numpy":
            s["numpy_kernels_chars_per_sec"] = max(ours["numpy"])
        s["matvec_chain_per_sec"] = max(chain)
        s["frac_of_chain"] = s["charrnn_chars_per_sec"] / s["matvec_chain_per_sec"]
        s["median_frac_of_chain"] = statistics.median(ours[chosen]) / statistics.median(chain)
        s.update(charrnn_rounds=ours[chosen], chain_rounds=chain)
        if have_torch:
            both = {k: max(v) for k, v in paths.items()}
            which = max(both, key=both.get)
            s.update(torch_chars_per_sec=both[which], torch_best_path=which, torch_paths=both,
                     ratio=s["charrnn_chars_per_sec"] / both[which])
        res["sample"] = s
        log(f"sample: {s}")
        n_eval = 4000 if a.quick else 32_768
        res["eval"] = {"config": s["config"], "streams": 32, "seq": 256, "chars": n_eval,
                       "chars_per_sec": best(kind="eval", eval_chars=n_eval, **job)}
        log(f"eval: {res['eval']}")

    if a.memory_mb:
        res["memory"] = memory_check(a.memory_mb, 5, 0.001)
        log(f"memory: {res['memory']}")

    res["machine"]["load_end"] = os.getloadavg()
    Path(a.json).write_text(json.dumps(res, indent=1))
    print(table(res))
    return res


def table(res) -> str:
    f = lambda x, spec: "-" if x is None else format(x, spec)
    mm = res["matmul"]["square"]
    m = res["machine"]
    lines = [f"{m.get('cpu', '?')}, {m['cpus']} CPUs; NumPy's BLAS: {m.get('blas', '?')}",
             (f"NumPy float32 matmul {'x'.join(map(str, mm['shape']))}: {mm['gflops']:.1f} GFLOP/s"
              f" (numpy {res['machine']['numpy']}, torch {res['machine']['torch']},"
              f" {res['machine']['threads']} threads each; charrnn's kernels: "
              f"{res['settings'].get('kernels', 'numpy')})")]
    if res["train"]:
        lines += ["", (f"{'training':<19}{'charrnn c/s':>12}{'torch c/s':>11}{'ratio':>7}"
                       f"{'median':>7}{'GFLOP/s':>9}{'of matmul':>10}{'step-shape':>11}"
                       f"{'of that':>8}")]
    for r in res["train"]:
        name = r["config"] + (f" {r['kernels']}" if "kernels" in r else "")
        lines.append(f"{name:<19}{r['charrnn_chars_per_sec']:>12.0f}"
                     f"{f(r['torch_chars_per_sec'], '.0f'):>11}{f(r['ratio'], '.2f'):>7}"
                     f"{f(r.get('median_ratio'), '.2f'):>7}"
                     f"{r['charrnn_gflops']:>9.1f}{r['frac_of_matmul']:>10.0%}"
                     f"{r['matmul_gflops_step_shape']:>11.1f}{r['frac_of_step_shape']:>8.0%}")
    s = res["sample"]
    if s:
        lines += ["", f"sampling {s['config']} ({s.get('kernels', 'numpy')} kernels), one stream:"
                  f" charrnn {s['charrnn_chars_per_sec']:.0f}"
                  f" c/s, bare matvec chain {s['matvec_chain_per_sec']:.0f} c/s"
                  f" ({s['charrnn_chars_per_sec'] / s['matvec_chain_per_sec']:.0%} of it"
                  + (f", median {s['median_frac_of_chain']:.0%}" if "median_frac_of_chain" in s
                     else "") + ")"
                  + (f", torch {s['torch_chars_per_sec']:.0f} c/s ({s['torch_best_path']}),"
                     f" ratio {s['ratio']:.2f}" if "ratio" in s else "")
                  + (f"; with NumPy's kernels {s['numpy_kernels_chars_per_sec']:.0f} c/s"
                     if "numpy_kernels_chars_per_sec" in s else "")]
    if res["eval"]:
        e = res["eval"]
        lines.append(f"eval {e['config']}, {e['streams']} streams: {e['chars_per_sec']:.0f} c/s")
    m = res["memory"]
    if m:
        lines.append("memory: " + (m["error"] if "error" in m else
                                   f"peak RSS {m['peak_rss_mb']:.0f} MB (and "
                                   f"{m['worker_peak_rss_mb']:.0f} MB in a worker process) "
                                   f"training lstm 256x2 on a {m['corpus_mb']} MB corpus "
                                   f"({m['steps']} steps)"))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
