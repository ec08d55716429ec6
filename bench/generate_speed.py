"""Training speed of the conditioned generator against the same model written in PyTorch.

Both sides train on the same batches of 64 surnames of corpora/names (bucketed by length, as
`charrnn train --task generate` batches them): the language's one-hot c sets the initial state,
h0 = tanh(c W0 + b0), of a GRU of H units reading START + the name (one-hot), a linear output,
cross-entropy over the real characters (END included), clipping at 5 and Adam. charrnn splits
each batch across its worker processes as `charrnn train` does; PyTorch runs one nn.GRU call
per batch with torch.set_num_threads(--threads). Rounds alternate, best of --repeats; the ratio
is charrnn / PyTorch in characters per second, from this run.

    python bench/generate_speed.py
    python bench/generate_speed.py --hidden 128 --repeats 5
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
from charrnn.data import pairs as P
from charrnn.models import generate as G
from charrnn.parallel import workers as W


def batches(batch: int):
    ex = L.read(ROOT / "corpora" / "names", "classify")
    vocab = P.target_vocab(ex.texts)
    labels = sorted(set(ex.targets))
    ids, _ = P.encode_targets(vocab, ex.texts)
    y = G.label_ids(labels, ex.targets)
    b = L.Buckets([len(t) + 1 for t in ids], batch, 0, lambda idx: idx)
    data = [G.make_batch([ids[i] for i in g], G.one_hot(y[g], len(labels))) for g in b.groups(0)]
    return data, len(vocab), len(labels)


def charrnn_step(data, V, C, H, workers):
    cfg = G.Config(vocab_size=V, cond_size=C, cell="gru", hidden=H, condition="init",
                   dropout=0.0)
    return family_step(G, cfg, data, workers)


def torch_step(torch, data, V, C, H):
    nn, F = torch.nn, torch.nn.functional

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.init = nn.Linear(C, H)
            self.gru = nn.GRU(V, H)
            self.out = nn.Linear(H, V)

        def forward(self, ids, cond):  # ids (T, N), cond (N, C)
            h0 = torch.tanh(self.init(cond))[None]
            s, _ = self.gru(F.one_hot(ids, V).float(), h0)  # (T, N, H)
            return self.out(s)

    model = Model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    tdata = [(torch.from_numpy(np.ascontiguousarray(ids.T)),
              torch.from_numpy(np.ascontiguousarray(tgt.T)),
              torch.from_numpy(np.ascontiguousarray(w.T > 0)),
              torch.from_numpy(cond.astype(np.float32))) for ids, tgt, w, cond in data]
    box = [0]

    def step():
        ids, tgt, real, cond = tdata[box[0] % len(tdata)]
        box[0] += 1
        logits = model(ids, cond)
        nll = F.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1), reduction="none")
        loss = (nll * real.reshape(-1)).sum() / real.sum()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        return int(real.sum())
    return step


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", type=int, default=G.DEFAULT.hidden)
    ap.add_argument("--batch", type=int, default=G.TRAIN_DEFAULTS["batch"])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    data, V, C = batches(args.batch)
    workers = W.Workers(args.threads)
    ours = charrnn_step(data, V, C, args.hidden, workers)
    theirs = lambda torch: torch_step(torch, data, V, C, args.hidden)
    a, b = rounds(ours, theirs, args.threads, args.repeats, args.seconds)
    print(f"# {cpu_model()}, {args.threads} threads/processes, generator GRU {args.hidden} "
          f"(label one-hot to the initial state), batch {args.batch} names, best of "
          f"{args.repeats}")
    print(f"charrnn {max(a):,.0f} chars/s  rounds {[round(x) for x in a]}")
    if b:
        print(f"torch   {max(b):,.0f} chars/s  rounds {[round(x) for x in b]}")
        print(f"ratio   {max(a) / max(b):.2f} (median rounds {np.median(a) / np.median(b):.2f})")
    workers.close()


if __name__ == "__main__":
    main()
