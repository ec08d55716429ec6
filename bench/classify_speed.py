"""Training speed of the bidirectional classifier against PyTorch, on the names data.

Both sides train on the same batches of 64 names (charrnn.data.labelled's buckets: names of
nearly one length, as `charrnn train --task classify` makes them), with one-hot input, a
bidirectional LSTM (or GRU) of 128 units per direction, the final states of both directions
joined into a linear layer, cross-entropy and Adam. charrnn splits each batch across its worker
processes as `charrnn train` does; PyTorch runs `nn.LSTM(bidirectional=True)` on
`pack_padded_sequence` with torch.set_num_threads(--threads). Rounds alternate, best of
--repeats; the ratio is charrnn / PyTorch in characters per second, measured in this run.

    python bench/classify_speed.py
    python bench/classify_speed.py --cell gru --hidden 256 --repeats 5
    python bench/classify_speed.py --kernels fused     the optional compiled LSTM kernels
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import cpu_model, family_step, rounds

from charrnn.data import labelled as L
from charrnn.models import classify as Cl
from charrnn.nn import cells
from charrnn.parallel import workers as P


def batches(batch: int):
    ex = L.read(ROOT / "corpora" / "names", "classify")
    vocab = L.vocab_with_unknown(ex.texts)
    labels = sorted(set(ex.targets))
    ids, _ = L.encode(vocab, ex.texts)
    y = np.array([labels.index(t) for t in ex.targets])
    b = L.Buckets([len(t) for t in ids], batch, 0, lambda idx: idx)
    out = []
    for g in b.groups(0):
        x, lens = L.pad([ids[i] for i in g])
        out.append((x, lens, y[g], np.ones(len(g))))
    return out, len(vocab), len(labels)


def charrnn_step(data, V, K, cell, H, workers, kernels):
    cfg = Cl.Config(vocab_size=V, classes=K, cell=cell, hidden=H, layers=1, dropout=0.0,
                    pooling="last",  # both finals, as torch_step's head reads them
                    class_weights=0.0, kernels=cells.choose_kernels(kernels, cell, "float32"))
    return family_step(Cl, cfg, data, workers)


def torch_step(torch, data, V, K, cell, H):
    from torch.nn.utils.rnn import pack_padded_sequence

    rnn = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(V, H, bidirectional=True)
    head = torch.nn.Linear(2 * H, K)
    opt = torch.optim.Adam([*rnn.parameters(), *head.parameters()], lr=1e-3)
    eye = torch.eye(V)
    tdata = [(torch.from_numpy(x.T.copy()), torch.from_numpy(lens), torch.from_numpy(y))
             for x, lens, y, _ in data]
    box = [0]

    def step():
        x, lens, y = tdata[box[0] % len(tdata)]
        box[0] += 1
        packed = pack_padded_sequence(eye[x], lens, enforce_sorted=False)
        _, h = rnn(packed)
        h = h[0] if cell == "lstm" else h
        logits = head(torch.cat([h[0], h[1]], dim=1))
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*rnn.parameters(), *head.parameters()], 5.0)
        opt.step()
        return int(lens.sum())
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kernels", choices=cells.KERNEL_CHOICES, default=cells.DEFAULT_KERNELS,
                    help="charrnn's LSTM and GRU loop kernels (charrnn train --kernels)")
    args = ap.parse_args()
    data, V, K = batches(args.batch)
    workers = P.Workers(args.threads)
    ours = charrnn_step(data, V, K, args.cell, args.hidden, workers, args.kernels)
    theirs = lambda torch: torch_step(torch, data, V, K, args.cell, args.hidden)
    a, b = rounds(ours, theirs, args.threads, args.repeats, args.seconds)
    cpu = cpu_model()
    print(f"# {cpu}, {args.threads} threads/processes, bidirectional {args.cell} "
          f"{args.hidden}, batch {args.batch} names, best of {args.repeats}, "
          f"charrnn's kernels {args.kernels}")
    print(f"charrnn {max(a):,.0f} chars/s  rounds {[round(x) for x in a]}")
    if b:
        print(f"torch   {max(b):,.0f} chars/s  rounds {[round(x) for x in b]}")
        print(f"ratio   {max(a) / max(b):.2f} (median rounds {np.median(a) / np.median(b):.2f})")
    workers.close()


if __name__ == "__main__":
    main()
