"""Training speed of the encoder-decoder against the same model written in PyTorch.

Both sides train on the same batches of 32 three-digit additions (charrnn.data.pairs, bucketed
by source length): a bidirectional GRU encoder of H units per direction, a tanh bridge from its
finals to a GRU decoder of H units, additive attention (v . tanh(s Ws + y Wk + b)) over the real
source positions, o = tanh([s; c] Wc + bc), a linear output, cross-entropy over the real target
characters, clipping and Adam. charrnn splits each batch across its worker processes as
`charrnn train` does; PyTorch runs nn.GRU on packed sources and one nn.GRU call over the whole
teacher-forced target, with torch.set_num_threads(--threads). Rounds alternate, best of
--repeats; the ratio is charrnn / PyTorch in target characters per second, from this run.

    python bench/seq2seq_speed.py
    python bench/seq2seq_speed.py --hidden 256 --repeats 5
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
from charrnn.data import synthetic
from charrnn.models import seq2seq as S
from charrnn.parallel import workers as W


def batches(n: int, batch: int):
    pairs = synthetic.generate("addition", n, seed=1)
    src = [s for s, _ in pairs]
    sv = L.vocab_with_unknown(src)
    tv = P.target_vocab([t for _, t in pairs])
    sids, _ = L.encode(sv, src)
    tids, _ = P.encode_targets(tv, [t for _, t in pairs])
    b = L.Buckets([len(s) for s in sids], batch, 0, lambda idx: idx)
    return ([P.make_batch([sids[i] for i in g], [tids[i] for i in g]) for g in b.groups(0)],
            len(sv), len(tv))


def charrnn_step(data, V, K, H, workers):
    cfg = S.Config(vocab_size=V, target_size=K, cell="gru", hidden=H, attention="additive")
    return family_step(S, cfg, data, workers)


def torch_step(torch, data, V, K, H):
    nn, F = torch.nn, torch.nn.functional
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.GRU(V, H, bidirectional=True)
            self.bridge = nn.Linear(2 * H, H)
            self.dec = nn.GRU(K, H)
            self.Ws, self.Wk, self.v = nn.Linear(H, H, bias=False), nn.Linear(2 * H, H), \
                nn.Linear(H, 1, bias=False)
            self.Wc, self.out = nn.Linear(3 * H, H), nn.Linear(H, K)

        def forward(self, src, src_len, tgt_in):  # src (S, N), tgt_in (T, N)
            packed = pack_padded_sequence(F.one_hot(src, V).float(), src_len,
                                          enforce_sorted=False)
            y, h = self.enc(packed)
            y, _ = pad_packed_sequence(y)  # (S, N, 2H)
            h0 = torch.tanh(self.bridge(torch.cat([h[0], h[1]], dim=-1)))[None]
            s, _ = self.dec(F.one_hot(tgt_in, K).float(), h0)  # (T, N, H)
            e = self.v(torch.tanh(self.Ws(s)[:, None] + self.Wk(y)[None]))[..., 0]  # (T,S,N)
            pad = torch.arange(y.shape[0])[:, None] >= src_len[None, :]  # (S, N)
            a = torch.softmax(e.masked_fill(pad[None], -float("inf")), dim=1)
            c = torch.einsum("tsn,sne->tne", a, y)
            return self.out(torch.tanh(self.Wc(torch.cat([s, c], dim=-1))))

    model = Model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    tdata = [tuple(torch.from_numpy(np.ascontiguousarray(a.T if a.ndim == 2 else a))
                   for a in b) for b in data]
    box = [0]

    def step():
        src, src_len, tgt_in, tgt_out, w = tdata[box[0] % len(tdata)]
        box[0] += 1
        logits = model(src, src_len, tgt_in)
        nll = F.cross_entropy(logits.reshape(-1, K), tgt_out.reshape(-1), reduction="none")
        loss = (nll * (w.reshape(-1) > 0)).sum() / (w > 0).sum()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        return int((w > 0).sum())
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    data, V, K = batches(5000, args.batch)
    workers = W.Workers(args.threads)
    ours = charrnn_step(data, V, K, args.hidden, workers)
    theirs = lambda torch: torch_step(torch, data, V, K, args.hidden)
    a, b = rounds(ours, theirs, args.threads, args.repeats, args.seconds)
    cpu = cpu_model()
    print(f"# {cpu}, {args.threads} threads/processes, seq2seq GRU {args.hidden} "
          f"(bidirectional encoder, additive attention), batch {args.batch} additions, best of "
          f"{args.repeats}")
    print(f"charrnn {max(a):,.0f} target chars/s  rounds {[round(x) for x in a]}")
    if b:
        print(f"torch   {max(b):,.0f} target chars/s  rounds {[round(x) for x in b]}")
        print(f"ratio   {max(a) / max(b):.2f} (median rounds {np.median(a) / np.median(b):.2f})")
    workers.close()


if __name__ == "__main__":
    main()
