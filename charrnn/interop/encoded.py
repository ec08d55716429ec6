"""PyTorch in and out for the encoder families (classify, tag): charrnn.interop.lm's
conventions (gate order, bias split, metadata, files) on a bidirectional encoder and its head.

The exported tensors are the state_dict of TORCH_ENCODER's CharEncoder below (docs/en/guides/pytorch.md shows
the same code), whose forward pass computes what charrnn's "classify" and "tag" families do:

    rnn  = nn.GRU / nn.LSTM / nn.RNN(input_size=V, hidden_size=H, num_layers=L,
                                     bidirectional=R == 2, batch_first=True, dropout=p)
           over each text's own length (pack_padded_sequence), fed one-hot characters
    head = nn.Linear(R*H, K) after nn.Dropout(p): on the pooled states (classify: the top
           layer's finals [forward at the text's end ; backward at its start], or the outputs'
           mean or maximum over the text) or on every character's output (tag)

    rnn.weight_ih_l{k}{sfx} (G, D) = enc.l{k}.{d}.Wx.T    sfx "" for d = fw, "_reverse" for bw
    rnn.weight_hh_l{k}{sfx} (G, H) = enc.l{k}.{d}.Wh.T    gate rows in PyTorch's order
    rnn.bias_ih_l{k}{sfx}   (G,)   = enc.l{k}.{d}.b
    rnn.bias_hh_l{k}{sfx}   (G,)   = 0, except the GRU's n-part: enc.l{k}.{d}.bhn
    head.weight             (K, R*H) = Wy.T,   head.bias (K,) = by

D = V for layer 0 and R*H above (PyTorch and charrnn both feed [forward ; backward] up). The
metadata adds to interop's: "labels" (the class names, or the tag characters, output k being
labels[k]) and, for a classifier, "pooling". Vocabulary entry 0 is the unknown symbol (U+FFFD)
that characters outside the vocabulary are read as.

A seq2seq model is not exported: its bridge, attention and decoder fit no standard PyTorch
module, so a state_dict alone would not say how to run it.
"""

from __future__ import annotations

import json

import numpy as np

from .. import checkpoint as C
from ..data.vocab import Vocab
from ..errors import CheckpointError
from ..models import classify, tag
from ..nn.cells import CELLS
from .lm import FORMAT, TORCH_CLASS, VERSION, _dtype, _json, _torch_order

FAMILIES = {"classify": classify, "tag": tag}
OUTPUTS = {"classify": "classes", "tag": "tags"}

TORCH_ENCODER = '''\
import torch
from torch import nn


class CharEncoder(nn.Module):
    """charrnn's "classify" and "tag" models: one-hot characters -> (bidirectional) RNN over
    each text's own length -> dropout -> linear head on the pooled states (`classes` outputs)
    or on every character (`tags` outputs)."""

    def __init__(self, cell, vocab_size, hidden, layers, bidirectional=True, classes=0, tags=0,
                 pooling="last", dropout=0.0, **_):
        super().__init__()
        RNN = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.vocab_size, self.pooling, self.per_char = vocab_size, pooling, tags > 0
        self.rnn = RNN(vocab_size, hidden, layers, batch_first=True, bidirectional=bidirectional,
                       dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        parts = 1 if self.per_char else len(pooling.split("+"))  # "mean+max": side by side
        self.head = nn.Linear(parts * hidden * (2 if bidirectional else 1), tags or classes)

    def forward(self, ids, lengths):  # ids (N, T) int64, 0 after each text; lengths (N,)
        x = nn.functional.one_hot(ids, self.vocab_size).to(self.head.weight.dtype)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        y, h = self.rnn(packed)
        y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True,
                                                total_length=ids.shape[1])  # (N, T, D), 0 at pads
        if self.per_char:
            return self.head(self.drop(y))  # (N, T, tags)
        zs = []
        for part in self.pooling.split("+"):
            if part == "last":  # top layer: forward final at the text's end, backward at 0
                hn = h[0] if isinstance(h, tuple) else h  # nn.LSTM's (h, c)
                zs.append(torch.cat(list(hn[-2:] if self.rnn.bidirectional else hn[-1:]), -1))
            elif part == "mean":
                zs.append(y.sum(1) / lengths[:, None].to(y.dtype))
            else:  # "max", over each text's real steps
                pad = torch.arange(y.shape[1])[None, :] >= lengths[:, None]
                zs.append(y.masked_fill(pad[..., None], float("-inf")).amax(1))
        return self.head(self.drop(torch.cat(zs, dim=-1)))  # (N, classes)
'''


def _dirs(cfg) -> list[tuple[str, str]]:
    """(charrnn's direction, PyTorch's name suffix) of each direction."""
    return [("fw", ""), ("bw", "_reverse")][: 2 if cfg.bidirectional else 1]


def module_line(family: str, cfg) -> str:
    R = 2 if cfg.bidirectional else 1
    K = getattr(cfg, OUTPUTS[family])
    W = classify.head_width(cfg) if family == "classify" else R * cfg.hidden
    return (f"CharEncoder: {TORCH_CLASS[cfg.cell]}(input_size={cfg.vocab_size}, hidden_size="
            f"{cfg.hidden}, num_layers={cfg.layers}, bidirectional={cfg.bidirectional}, "
            f"dropout={cfg.dropout:g}) on one-hot input, nn.Linear({W}, {K}) head "
            + (f"on {cfg.pooling} pooling" if family == "classify" else "on every character"))


def to_torch_state(ckpt: C.Checkpoint) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors, metadata) of CharEncoder for a classify or tag checkpoint."""
    cfg, p, H = ckpt.model, ckpt.params, ckpt.model.hidden
    labels = ckpt.meta.get("labels")
    if not isinstance(labels, list) or len(labels) != getattr(cfg, OUTPUTS[ckpt.family]):
        raise CheckpointError("the checkpoint's labels are missing or do not match its head")
    order = _torch_order(cfg.cell, H)
    out = {}
    for k in range(cfg.layers):
        for d, sfx in _dirs(cfg):
            name = f"enc.l{k}.{d}."
            b_hh = np.zeros_like(p[name + "b"])
            if cfg.cell == "gru":
                b_hh[2 * H :] = p[name + "bhn"]
            out[f"rnn.weight_ih_l{k}{sfx}"] = p[name + "Wx"][:, order].T
            out[f"rnn.weight_hh_l{k}{sfx}"] = p[name + "Wh"][:, order].T
            out[f"rnn.bias_ih_l{k}{sfx}"] = p[name + "b"][order]
            out[f"rnn.bias_hh_l{k}{sfx}"] = b_hh[order]
    out["head.weight"], out["head.bias"] = p["Wy"].T, p["by"]
    meta = {"format": FORMAT, "version": VERSION, "family": ckpt.family,
            "model": json.dumps(cfg.to_dict()),
            "vocab": json.dumps(list(ckpt.vocab.chars), ensure_ascii=False),
            "labels": json.dumps(labels, ensure_ascii=False),
            "module": module_line(ckpt.family, cfg)}
    if ckpt.family == "classify":
        meta["pooling"] = cfg.pooling
    return {k: np.ascontiguousarray(v) for k, v in out.items()}, meta


def _infer_config(family: str, tensors: dict, metadata: dict, dtype: str):
    """The family's Config the tensors' shapes imply, checked against metadata "model"."""
    for name in ("rnn.weight_ih_l0", "rnn.weight_hh_l0", "head.weight"):
        if name not in tensors:
            raise CheckpointError(f"tensor {name} missing: not a CharEncoder state_dict")
        if np.ndim(tensors[name]) != 2:
            raise CheckpointError(f"tensor {name} is {np.shape(tensors[name])}, not a matrix")
    G, H = np.shape(tensors["rnn.weight_hh_l0"])
    cell = {1: "rnn", 3: "gru", 4: "lstm"}.get(G // H if H and G % H == 0 else 0)
    if cell is None:
        raise CheckpointError(f"tensor rnn.weight_hh_l0 is {(G, H)}: its rows are not 1, 3 or 4 "
                              "times its columns (RNN, GRU, LSTM)")
    shape_cfg = {"cell": cell, "hidden": int(H),
                 "layers": sum(f"rnn.weight_hh_l{k}" in tensors for k in range(len(tensors))),
                 "bidirectional": "rnn.weight_hh_l0_reverse" in tensors,
                 "vocab_size": int(np.shape(tensors["rnn.weight_ih_l0"])[1]),
                 OUTPUTS[family]: int(np.shape(tensors["head.weight"])[0])}
    given = _json(metadata, "model", dict) if "model" in metadata else {}
    if family == "classify" and "pooling" in metadata:
        given = {**given, "pooling": metadata["pooling"]}
    F = FAMILIES[family]
    cfg = F.Config.from_dict({"dropout": 0.0, **given, **shape_cfg, "dtype": dtype})
    for key, value in shape_cfg.items():
        if key in given and given[key] != value:
            raise CheckpointError(f"metadata 'model' says {key} {given[key]!r} but the tensors "
                                  f"have {value!r}")
    return cfg


def from_torch_state(family: str, tensors: dict, metadata: dict) -> C.Checkpoint:
    """A classify or tag Checkpoint from a CharEncoder state_dict and its metadata ("vocab"
    and "labels" required). CheckpointError naming the tensor or key that does not fit."""
    for key in ("vocab", "labels"):
        if key not in metadata:
            raise CheckpointError(f"metadata {key!r} missing: a {family} state_dict needs "
                                  f"'vocab' (the characters, unknown symbol first) and 'labels' "
                                  f"(output k's name) as JSON lists")
    vocab, labels = Vocab(_json(metadata, "vocab", list)), _json(metadata, "labels", list)
    tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    dtype = _dtype(tensors)
    cfg = _infer_config(family, tensors, metadata, dtype)
    K = getattr(cfg, OUTPUTS[family])
    if len(vocab) != cfg.vocab_size:
        raise CheckpointError(f"metadata 'vocab' has {len(vocab)} characters but "
                              f"rnn.weight_ih_l0 has {cfg.vocab_size} columns")
    if len(labels) != K:
        raise CheckpointError(f"metadata 'labels' has {len(labels)} entries but head.weight has "
                              f"{K} rows")
    H, R = cfg.hidden, 2 if cfg.bidirectional else 1
    G = CELLS[cfg.cell].gates * H
    expected = {}
    for k in range(cfg.layers):
        for _, sfx in _dirs(cfg):
            expected |= {f"rnn.weight_ih_l{k}{sfx}": (G, cfg.vocab_size if k == 0 else R * H),
                         f"rnn.weight_hh_l{k}{sfx}": (G, H), f"rnn.bias_ih_l{k}{sfx}": (G,),
                         f"rnn.bias_hh_l{k}{sfx}": (G,)}
    width = classify.head_width(cfg) if family == "classify" else R * H
    expected |= {"head.weight": (K, width), "head.bias": (K,)}
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    what = f"{'bidirectional ' if R == 2 else ''}{cfg.cell} {H}x{cfg.layers} CharEncoder"
    if missing or extra:
        raise CheckpointError(f"tensors do not fit a {what} (missing: "
                              f"{', '.join(missing) or 'none'}; unexpected: "
                              f"{', '.join(extra) or 'none'})")
    t = {}
    for name, shape in expected.items():
        a = np.asarray(tensors[name])
        if a.shape != shape:
            raise CheckpointError(f"tensor {name} is {a.shape}; a {what} needs {shape}")
        t[name] = a.astype(dtype)
    order = _torch_order(cfg.cell, H)
    params = {}
    for k in range(cfg.layers):
        for d, sfx in _dirs(cfg):
            name = f"enc.l{k}.{d}."
            b_ih, b_hh = t[f"rnn.bias_ih_l{k}{sfx}"][order], t[f"rnn.bias_hh_l{k}{sfx}"][order]
            params[name + "Wx"] = t[f"rnn.weight_ih_l{k}{sfx}"].T[:, order]
            params[name + "Wh"] = t[f"rnn.weight_hh_l{k}{sfx}"].T[:, order]
            if cfg.cell == "gru":  # b_hn sits inside r * (h W_hn + b_hn): it stays apart
                params[name + "b"] = np.concatenate([b_ih[: 2 * H] + b_hh[: 2 * H],
                                                     b_ih[2 * H :]])
                params[name + "bhn"] = b_hh[2 * H :]
            else:
                params[name + "b"] = b_ih + b_hh
    params["Wy"], params["by"] = t["head.weight"].T, t["head.bias"]
    params = {k: np.ascontiguousarray(params[k]) for k in FAMILIES[family].param_shapes(cfg)}
    return C.Checkpoint(cfg, vocab, params, {"labels": labels}, {}, family)
