"""PyTorch in and out: a model as a PyTorch state_dict in a .safetensors file, and back.

This module holds the language model's form and the files; the classifier's and the tagger's
(a bidirectional encoder and a head) are in charrnn.interop.encoded, on the same
conventions. A seq2seq model has no standard PyTorch module to hold it and is refused.

The exported tensors are the state_dict of this module (TORCH_MODULE below, the same code as in
docs/en/guides/pytorch.md), whose forward pass computes exactly what charrnn's "lm" family computes:

    rnn  = nn.LSTM / nn.GRU / nn.RNN(input_size=V, hidden_size=H, num_layers=L, dropout=p)
           (batch_first=False, tanh for nn.RNN), fed one-hot characters: an identity embedding
    drop = nn.Dropout(p) on the last layer's output (charrnn drops before the head too)
    head = nn.Linear(H, V)

    rnn.weight_ih_l{k} (G, D)  = l{k}.Wx.T, gate rows in PyTorch's order
    rnn.weight_hh_l{k} (G, H)  = l{k}.Wh.T
    rnn.bias_ih_l{k}   (G,)    = l{k}.b
    rnn.bias_hh_l{k}   (G,)    = 0, except the GRU's n-part, which is l{k}.bhn
    head.weight        (V, H)  = Wy.T
    head.bias          (V,)    = by

G = gates * H, D = V for layer 0 and H above. Gate order: charrnn's LSTM packs i, f, o, g,
PyTorch's i, f, g, o, so the last two blocks swap; the GRU is r, z, n in both. PyTorch adds
bias_ih and bias_hh everywhere except inside the GRU's reset product r * (h W_hn + b_hn), so
importing accepts any split: b = bias_ih + bias_hh for every gate but the GRU's n, where
b_n = bias_ih_n and bhn = bias_hh_n. Character v of the vocabulary is one-hot index v.

The file's metadata (safetensors metadata is str -> str) holds JSON strings:

    format  "charrnn-torch"        version  "1"          family  "lm"
    model   the ModelConfig        vocab    the ordered list of characters
    module  one line naming the PyTorch module the tensors fit

Only "vocab" is required on import: the cell, H, L and V follow from the tensors' shapes and the
dtype from theirs (float16 is widened to float32 exactly); "model", when present, must agree
with them. A "module." prefix (DistributedDataParallel's) is dropped from the names. Training
history, optimizer and RNG state are not exported: an imported model samples and scores, but
does not resume.

`to_torch_state` and `from_torch_state` work on dicts of arrays and need only NumPy; `save` and
`load` read and write the file and need the `safetensors` package (charrnn[safetensors]).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .. import checkpoint as C
from ..data.vocab import Vocab
from ..errors import CharrnnError, CheckpointError
from ..models import lm
from ..nn.cells import CELLS

FORMAT, VERSION = "charrnn-torch", "1"
SUFFIX = ".safetensors"
FAMILIES = ("lm", "classify", "tag")  # the model families export supports
ENCODED = ("classify", "tag")  # those of charrnn.interop.encoded
WHY_NOT = {"seq2seq": "its bridge, attention and decoder fit no standard PyTorch module, so a "
                      "state_dict alone would not say how to run it"}
INSTALL = "pip install 'charrnn[safetensors]'"
TORCH_CLASS = {"rnn": "nn.RNN", "gru": "nn.GRU", "lstm": "nn.LSTM"}
_GATES = {cell: c.gates for cell, c in CELLS.items()}

TORCH_MODULE = '''\
import torch
from torch import nn


class CharRNN(nn.Module):
    """charrnn's "lm" model: one-hot characters -> stacked RNN -> dropout -> linear head."""

    def __init__(self, cell, vocab_size, hidden, layers, dropout=0.0, **_):
        super().__init__()
        RNN = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.vocab_size = vocab_size
        self.rnn = RNN(vocab_size, hidden, layers, dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, ids, state=None):  # ids (T, N) int64, time-major
        x = nn.functional.one_hot(ids, self.vocab_size).to(self.head.weight.dtype)
        y, state = self.rnn(x, state)  # (T, N, H)
        return self.head(self.drop(y)), state  # logits (T, N, V)
'''


def _torch_order(cell: str, H: int) -> np.ndarray:
    """Column indices taking charrnn's gate blocks to PyTorch's (its own inverse)."""
    blocks = [0, 1, 3, 2] if cell == "lstm" else list(range(_GATES[cell]))
    return np.concatenate([np.arange(j * H, (j + 1) * H) for j in blocks])


def module_line(cfg: lm.ModelConfig) -> str:
    return (f"CharRNN: {TORCH_CLASS[cfg.cell]}(input_size={cfg.vocab_size}, hidden_size="
            f"{cfg.hidden}, num_layers={cfg.layers}, dropout={cfg.dropout:g}) on one-hot input, "
            f"nn.Linear({cfg.hidden}, {cfg.vocab_size}) head")


def _refuse(family: str, what: str) -> None:
    if family not in FAMILIES:
        why = f" ({WHY_NOT[family]})" if family in WHY_NOT else ""
        raise CheckpointError(f"cannot {what} a {family!r} model{why}: {what} supports the "
                              f"{', '.join(FAMILIES)} families only")


def describe(ckpt: C.Checkpoint) -> str:
    """The PyTorch module a checkpoint exports as, in one line."""
    if ckpt.family in ENCODED:
        from .encoded import module_line as encoded_line

        return encoded_line(ckpt.family, ckpt.model)
    return module_line(ckpt.model)


def to_torch_state(ckpt: C.Checkpoint) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors, metadata): the state_dict of TORCH_MODULE's CharRNN (for a classifier or a
    tagger, interop_encoded's CharEncoder) as NumPy arrays in the checkpoint's dtype, and the
    safetensors metadata (JSON strings)."""
    _refuse(ckpt.family, "export")
    if ckpt.family in ENCODED:
        from . import encoded as interop_encoded

        return interop_encoded.to_torch_state(ckpt)
    cfg, p = ckpt.model, ckpt.params
    H = cfg.hidden
    order = _torch_order(cfg.cell, H)
    out = {}
    for k in range(cfg.layers):
        b_hh = np.zeros_like(p[f"l{k}.b"])
        if cfg.cell == "gru":
            b_hh[2 * H :] = p[f"l{k}.bhn"]
        out[f"rnn.weight_ih_l{k}"] = p[f"l{k}.Wx"][:, order].T
        out[f"rnn.weight_hh_l{k}"] = p[f"l{k}.Wh"][:, order].T
        out[f"rnn.bias_ih_l{k}"] = p[f"l{k}.b"][order]
        out[f"rnn.bias_hh_l{k}"] = b_hh[order]
    out["head.weight"] = p["Wy"].T
    out["head.bias"] = p["by"]
    meta = {"format": FORMAT, "version": VERSION, "family": ckpt.family,
            "model": json.dumps(cfg.to_dict()),
            "vocab": json.dumps(list(ckpt.vocab.chars), ensure_ascii=False),
            "module": module_line(cfg)}
    return {k: np.ascontiguousarray(v) for k, v in out.items()}, meta


def _json(metadata: dict, key: str, kind: type):
    try:
        value = json.loads(metadata[key])
    except (TypeError, ValueError):
        value = None
    if not isinstance(value, kind):
        raise CheckpointError(f"metadata {key!r} is not a JSON {kind.__name__}")
    return value


def _infer_config(tensors: dict, metadata: dict, dtype: str) -> lm.ModelConfig:
    """The ModelConfig the tensors' shapes imply, checked against metadata "model" if any."""
    for name in ("rnn.weight_hh_l0", "head.weight"):
        if name not in tensors:
            raise CheckpointError(f"tensor {name} missing: not a CharRNN state_dict")
        if np.ndim(tensors[name]) != 2:
            raise CheckpointError(f"tensor {name} is {np.shape(tensors[name])}, not a matrix")
    G, H = np.shape(tensors["rnn.weight_hh_l0"])
    vocab_size = np.shape(tensors["head.weight"])[0]
    layers = sum(f"rnn.weight_hh_l{k}" in tensors for k in range(len(tensors)))
    cell = {1: "rnn", 3: "gru", 4: "lstm"}.get(G // H if H and G % H == 0 else 0)
    if cell is None:
        raise CheckpointError(f"tensor rnn.weight_hh_l0 is {(G, H)}: its rows are not 1, 3 or 4 "
                              "times its columns (RNN, GRU, LSTM)")
    shape_cfg = {"cell": cell, "hidden": int(H), "layers": layers, "vocab_size": int(vocab_size)}
    if "model" not in metadata:
        return lm.ModelConfig(**shape_cfg, dropout=0.0, dtype=dtype)
    given = _json(metadata, "model", dict)
    cfg = lm.ModelConfig.from_dict({**given, "dtype": dtype})  # the tensors' dtype is the truth
    for key, value in shape_cfg.items():
        if getattr(cfg, key) != value:
            raise CheckpointError(f"metadata 'model' says {key} {getattr(cfg, key)!r} but the "
                                  f"tensors have {value!r}")
    return cfg


def _dtype(tensors: dict) -> str:
    kinds = {}
    for name, t in tensors.items():
        d = np.asarray(t).dtype
        if d == np.float16:
            d = np.dtype(np.float32)  # every float16 is exactly a float32
        if d not in (np.float32, np.float64):
            raise CheckpointError(f"tensor {name} is {d}; charrnn needs float32 or float64")
        kinds.setdefault(d.name, name)
    if len(kinds) > 1:
        mix = ", ".join(f"{d} in {name}" for d, name in kinds.items())
        raise CheckpointError(f"tensors mix dtypes ({mix}); save them all as one")
    return next(iter(kinds), "float32")


def from_torch_state(tensors: dict, metadata: dict | None) -> C.Checkpoint:
    """A Checkpoint from a CharRNN state_dict (arrays, or anything np.asarray takes) and its
    metadata. CheckpointError naming the tensor or key that does not fit."""
    metadata = dict(metadata or {})
    fam = metadata.get("family", "lm")
    if not isinstance(fam, str) or fam not in FAMILIES:
        _refuse(str(fam), "import")
    if fam in ENCODED:
        from . import encoded as interop_encoded

        return interop_encoded.from_torch_state(fam, tensors, metadata)
    if "vocab" not in metadata:
        raise CheckpointError("metadata 'vocab' missing: save the file with metadata={'vocab': "
                              "json.dumps(characters)}, character v being one-hot index v")
    vocab = Vocab(_json(metadata, "vocab", list))
    tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    dtype = _dtype(tensors)
    cfg = _infer_config(tensors, metadata, dtype)
    if len(vocab) != cfg.vocab_size:
        raise CheckpointError(f"metadata 'vocab' has {len(vocab)} characters but head.weight "
                              f"has {cfg.vocab_size} rows")
    H, G = cfg.hidden, _GATES[cfg.cell] * cfg.hidden
    expected = {}
    for k in range(cfg.layers):
        expected |= {f"rnn.weight_ih_l{k}": (G, cfg.vocab_size if k == 0 else H),
                     f"rnn.weight_hh_l{k}": (G, H), f"rnn.bias_ih_l{k}": (G,),
                     f"rnn.bias_hh_l{k}": (G,)}
    expected |= {"head.weight": (cfg.vocab_size, H), "head.bias": (cfg.vocab_size,)}
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    if missing or extra:
        raise CheckpointError(f"tensors do not fit a {cfg.cell} {H}x{cfg.layers} CharRNN "
                              f"(missing: {', '.join(missing) or 'none'}; "
                              f"unexpected: {', '.join(extra) or 'none'})")
    t = {}
    for name, shape in expected.items():
        a = np.asarray(tensors[name])
        if a.shape != shape:
            raise CheckpointError(f"tensor {name} is {a.shape}; a {cfg.cell} {H}x{cfg.layers} "
                                  f"CharRNN over {cfg.vocab_size} characters needs {shape}")
        t[name] = a.astype(dtype)
    order = _torch_order(cfg.cell, H)
    params = {}
    for k in range(cfg.layers):
        b_ih, b_hh = t[f"rnn.bias_ih_l{k}"][order], t[f"rnn.bias_hh_l{k}"][order]
        params[f"l{k}.Wx"] = t[f"rnn.weight_ih_l{k}"].T[:, order]
        params[f"l{k}.Wh"] = t[f"rnn.weight_hh_l{k}"].T[:, order]
        if cfg.cell == "gru":  # b_hn sits inside r * (h W_hn + b_hn): it stays apart
            params[f"l{k}.b"] = np.concatenate([b_ih[: 2 * H] + b_hh[: 2 * H], b_ih[2 * H :]])
            params[f"l{k}.bhn"] = b_hh[2 * H :]
        else:
            params[f"l{k}.b"] = b_ih + b_hh
    params["Wy"], params["by"] = t["head.weight"].T, t["head.bias"]
    params = {k: np.ascontiguousarray(params[k]) for k in lm.param_shapes(cfg)}
    return C.Checkpoint(cfg, vocab, params, {}, {}, "lm")


# --- files -------------------------------------------------------------------------------------

def _safetensors():
    try:
        import safetensors.numpy
    except ImportError:
        raise CharrnnError(f".safetensors files need the safetensors package: {INSTALL}") from None
    return safetensors


def save(path: str | os.PathLike, ckpt: C.Checkpoint) -> None:
    """Write `ckpt` as a CharRNN state_dict to `path`, atomically (see charrnn.checkpoint)."""
    st = _safetensors()
    tensors, meta = to_torch_state(ckpt)
    data = st.numpy.save(tensors, metadata=meta)
    try:
        C.atomic_write(path, lambda f: f.write(data))
    except OSError as e:
        raise CheckpointError(f"cannot write {path}: {e.strerror or e}") from None


def read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors, metadata) of a .safetensors file; CheckpointError naming the file otherwise.
    bfloat16 and other types NumPy cannot hold are refused by name before any is read."""
    st = _safetensors()
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a .safetensors file")
    try:
        with st.safe_open(path, framework="np") as f:
            meta = f.metadata() or {}
            for name in f.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
                kind = f.get_slice(name).get_dtype()
                if kind not in ("F16", "F32", "F64"):
                    raise CheckpointError(f"{path}: tensor {name} is {kind}; charrnn reads "
                                          "float16, float32 or float64 (save with .float())")
            return {name: f.get_tensor(name) for name in f.keys()}, meta  # noqa: SIM118
    except FileNotFoundError:
        raise CheckpointError(f"file not found: {path}") from None
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror or e}") from None
    except st.SafetensorError as e:
        raise CheckpointError(f"{path} is not a .safetensors file ({e})") from None


def load(path: str | os.PathLike) -> C.Checkpoint:
    """Read a CharRNN state_dict from a .safetensors file (see from_torch_state)."""
    tensors, meta = read(path)
    try:
        ckpt = from_torch_state(tensors, meta)
    except CharrnnError as e:
        raise CheckpointError(f"{path}: {e}") from None
    ckpt.meta["imported_from"] = str(path)
    return ckpt


def import_run(path: str | os.PathLike, run_dir: str | os.PathLike) -> Path:
    """Import `path` into a new run directory as its best.npz (no last.npz: nothing to resume).
    Refuses a directory that already holds a run. Returns the checkpoint written."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is a file; give a directory for the run")
    held = [n for n in (f"best{C.SUFFIX}", f"last{C.SUFFIX}") if (run_dir / n).exists()]
    if held:
        raise CheckpointError(f"{run_dir} already holds a run ({', '.join(held)}); choose a new "
                              "directory")
    ckpt = load(path)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"cannot create {run_dir}: {e.strerror or e}") from None
    target = run_dir / f"best{C.SUFFIX}"
    C.save(target, ckpt)
    return target
