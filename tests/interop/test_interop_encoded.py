"""PyTorch in and out for classifiers and taggers: exact round trips, outputs equal to the
documented CharEncoder's on padded batches of different lengths (an export, and a state_dict
trained in torch), the CLI, and seq2seq's one-line refusal."""

import json
from pathlib import Path

import numpy as np
import pytest

from charrnn import checkpoint as C
from charrnn.data.vocab import Vocab
from charrnn.errors import CharrnnError, CheckpointError
from charrnn.interop import encoded as IE
from charrnn.interop import lm as I
from charrnn.models import classify, tag
from charrnn.nn.cells import CELLS
from tests.helpers import assert_close, invoke, one_line_error

VOCAB = Vocab("\ufffdabcdeé ")  # V = 8, the unknown symbol first
H, K, N, T = 5, 3, 4, 7  # all different from V and from each other
FAMILIES = {"classify": classify, "tag": tag}
CASES = [("classify", cell, layers, bi, pool) for cell in CELLS for layers in (1, 2)
         for bi in (True, False) for pool in (*classify.POOLS, "last+mean+max")] + \
        [("tag", cell, layers, bi, None) for cell in CELLS for layers in (1, 2) for bi in (True, False)]
IDS = [f"{f}-{c}-{n}L-{'bi' if b else 'uni'}" + (f"-{p}" if p else "") for f, c, n, b, p in CASES]


def make(fam, cell, layers, bi=True, pooling=None, dtype="float64", seed=0, dropout=0.0):
    """A checkpoint whose every parameter, biases included, is random and non-zero."""
    F = FAMILIES[fam]
    extra = {"classes": K, "pooling": pooling or "last"} if fam == "classify" else {"tags": K}
    cfg = F.Config(vocab_size=len(VOCAB), cell=cell, hidden=H, layers=layers, bidirectional=bi,
                   dropout=dropout, dtype=dtype, **extra)
    rng = np.random.default_rng(seed)
    p = {k: (0.5 * rng.standard_normal(s)).astype(dtype) for k, s in F.param_shapes(cfg).items()}
    labels = ["en", "fr", "de"] if fam == "classify" else list("BIO")
    return C.Checkpoint(cfg, VOCAB, p, {"labels": labels, "step": 3}, {}, fam)


def batch(seed=2):
    """ids (N, T), 0 after each text, and lengths (N,), one of them the full T."""
    rng = np.random.default_rng(seed)
    lengths = np.array([T, 1, 4, 6])
    ids = rng.integers(1, len(VOCAB), size=(N, T))
    ids[np.arange(T)[None, :] >= lengths[:, None]] = 0
    return ids, lengths


def real(out, lengths):
    """A tagger's (N, T, K) outputs with zeros at padding (whatever a model puts there)."""
    return out * (np.arange(T)[None, :, None] < lengths[:, None, None]) if out.ndim == 3 else out


def ours(ck, ids, lengths):
    """Our outputs, batch-major: (N, K) logits, or (N, T, K) with zeros at padding."""
    out, _ = FAMILIES[ck.family].forward(ck.params, ck.model, ids, lengths)
    return real(out.transpose(1, 0, 2) if ck.family == "tag" else out, lengths)


def assert_same(a, b):
    assert a.model == b.model and a.vocab == b.vocab and a.family == b.family
    assert a.meta["labels"] == b.meta["labels"] and list(a.params) == list(b.params)
    for k in a.params:
        assert a.params[k].dtype == b.params[k].dtype, k
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)


# --- NumPy only --------------------------------------------------------------------------------

@pytest.mark.parametrize("fam,cell,layers,bi,pool", CASES, ids=IDS)
def test_round_trip_is_exact(fam, cell, layers, bi, pool):
    for dtype in ("float32", "float64"):
        ck = make(fam, cell, layers, bi, pool, dtype, dropout=0.25)
        tensors, meta = I.to_torch_state(ck)
        assert all(isinstance(v, str) for v in meta.values())
        assert_same(I.from_torch_state(tensors, meta), ck)


def test_names_shapes_and_metadata_are_a_bidirectional_pytorch_state_dict():
    tensors, meta = I.to_torch_state(make("classify", "lstm", 2, pooling="max"))
    V, G = len(VOCAB), 4 * H
    want = {}
    for k in range(2):
        for sfx in ("", "_reverse"):
            want |= {f"rnn.weight_ih_l{k}{sfx}": (G, V if k == 0 else 2 * H),
                     f"rnn.weight_hh_l{k}{sfx}": (G, H), f"rnn.bias_ih_l{k}{sfx}": (G,),
                     f"rnn.bias_hh_l{k}{sfx}": (G,)}
    assert {k: v.shape for k, v in tensors.items()} == want | {"head.weight": (K, 2 * H),
                                                               "head.bias": (K,)}
    assert json.loads(meta["vocab"]) == list(VOCAB.chars)
    assert json.loads(meta["labels"]) == ["en", "fr", "de"] and meta["pooling"] == "max"
    assert meta["family"] == "classify" and "nn.LSTM" in meta["module"]
    assert "bidirectional=True" in meta["module"] and "max pooling" in meta["module"]


@pytest.mark.parametrize("edit,message", [
    (lambda t, m: m.pop("labels"), r"metadata 'labels' missing"),
    (lambda t, m: m.update(labels='["a"]'), r"'labels' has 1 entries but head.weight has 3"),
    (lambda t, m: t.pop("rnn.bias_hh_l0_reverse"), r"missing: rnn.bias_hh_l0_reverse"),
    (lambda t, m: t.update({"head.weight": np.zeros((3, 5))}), r"head.weight is \(3, 5\)"),
    (lambda t, m: m.update(pooling="sum"), r"pooling must be one of"),
    (lambda t, m: m.update(model=m["model"].replace('"gru"', '"rnn"')),
     r"metadata 'model' says cell 'rnn' but the tensors have 'gru'"),
])
def test_bad_state_dicts_are_named(edit, message):
    tensors, meta = I.to_torch_state(make("classify", "gru", 2))
    edit(tensors, meta)
    with pytest.raises(CharrnnError, match=message) as e:
        I.from_torch_state(tensors, meta)
    assert "\n" not in str(e.value)


def test_seq2seq_is_refused_saying_why():
    ck = make("tag", "gru", 1)
    ck.family = "seq2seq"
    with pytest.raises(CheckpointError, match=r"cannot export a 'seq2seq' model \(its bridge, "
                       r"attention and decoder fit no standard PyTorch module.*lm, classify, tag"):
        I.to_torch_state(ck)
    with pytest.raises(CheckpointError, match=r"cannot import a 'seq2seq' model"):
        I.from_torch_state({}, {"family": "seq2seq"})


# --- PyTorch -----------------------------------------------------------------------------------

def torch_module():
    """The CharEncoder class exactly as the docstring and the PyTorch guide show it."""
    pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    scope = {}
    exec(IE.TORCH_ENCODER, scope)  # noqa: S102 - our own source text, so the documented code runs
    return scope["torch"], scope["CharEncoder"]


def test_the_pytorch_guide_shows_the_module():
    guide = (Path(__file__).parents[2] / "docs" / "en" / "guides" / "pytorch.md").read_text()
    assert IE.TORCH_ENCODER.strip() in guide


@pytest.mark.parametrize("fam,cell,layers,bi,pool", CASES, ids=IDS)
@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float64", 1e-12)])
def test_export_loads_into_torch_with_the_same_outputs(fam, cell, layers, bi, pool, dtype, tol,
                                                       tmp_path):
    torch, CharEncoder = torch_module()
    from safetensors.torch import load_file

    ck = make(fam, cell, layers, bi, pool, dtype, dropout=0.3)
    I.save(tmp_path / "m.safetensors", ck)
    net = CharEncoder(**json.loads(I.to_torch_state(ck)[1]["model"]))
    net = net.to(getattr(torch, dtype)).eval()
    net.load_state_dict(load_file(tmp_path / "m.safetensors"))
    ids, lengths = batch()
    with torch.no_grad():
        y = real(net(torch.from_numpy(ids), torch.from_numpy(lengths)).numpy(), lengths)
    assert_close(y, ours(ck, ids, lengths), rtol=tol, atol=tol, what=f"{fam} {cell} vs torch")


@pytest.mark.parametrize("fam,pool", [("classify", "last"), ("classify", "mean"),
                                      ("classify", "max"), ("tag", None)])
@pytest.mark.parametrize("cell", list(CELLS))
def test_torch_trained_state_dict_imports_with_the_same_outputs(fam, pool, cell, tmp_path):
    torch, CharEncoder = torch_module()
    from safetensors.torch import save_file

    torch.manual_seed(0)
    sizes = {"classes": K, "pooling": pool} if fam == "classify" else {"tags": K}
    net = CharEncoder(cell, len(VOCAB), H, 2, dropout=0.1, **sizes)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    ids, lengths = (torch.from_numpy(a) for a in batch(5))
    for _ in range(5):  # moves bias_ih and bias_hh apart, the GRU's n-parts included
        out = net(ids, lengths)
        loss = out.square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not torch.equal(net.rnn.bias_hh_l0_reverse, torch.zeros_like(net.rnn.bias_hh_l0))
    labels = ["x", "y", "z"]
    save_file(net.state_dict(), tmp_path / "t.safetensors",
              metadata={"family": fam, "vocab": json.dumps(list(VOCAB.chars)),
                        "labels": json.dumps(labels), **({"pooling": pool} if pool else {})})
    ck = I.load(tmp_path / "t.safetensors")
    assert (ck.model.cell, ck.model.hidden, ck.model.layers, ck.model.bidirectional) == \
        (cell, H, 2, True)
    ids, lengths = batch(6)
    with torch.no_grad():
        y = real(net.eval()(torch.from_numpy(ids), torch.from_numpy(lengths)).numpy(), lengths)
    assert_close(ours(ck, ids, lengths), y, rtol=1e-5, atol=1e-5, what=f"{fam} imported vs torch")


# --- CLI ---------------------------------------------------------------------------------------

def test_cli_export_import_predict_of_a_trained_classifier(tmp_path, monkeypatch):
    pytest.importorskip("safetensors")
    monkeypatch.chdir(tmp_path)
    rows = [f"{w}\t{'v' if w[0] in 'aeiou' else 'c'}" for w in
            ("ab", "ac", "ed", "ef", "ig", "bo", "ca", "de", "fi", "go", "ok", "ul") * 3]
    Path("d.tsv").write_text("\n".join(rows) + "\n")
    r = invoke("train", "--task", "classify", "d.tsv", "--hidden", "6", "--layers", "1",
               "--batch", "8", "--steps", "4", "--eval-every", "2", "--out", "runs/c", "-q")
    assert r.exit_code == 0, r.output
    r = invoke("export", "-c", "runs/c", "c.safetensors")
    assert r.exit_code == 0, r.output
    assert "CharEncoder" in r.stderr and "nn.Linear(24, 2) head on mean+max pooling" in r.stderr
    r = invoke("import", "c.safetensors", "runs/back")
    assert r.exit_code == 0, r.output
    assert "charrnn predict -c runs/back" in r.stderr
    got = [invoke("predict", "-c", f"runs/{d}", "abz", "ou", "--top", "2").stdout
           for d in ("c", "back")]
    assert got[0] == got[1] and got[0].count("\n") == 2


def test_cli_export_of_seq2seq_is_one_line_saying_why(tmp_path):
    pytest.importorskip("safetensors")
    (tmp_path / "p.tsv").write_text("".join(f"a{i}\tb{i}\n" for i in range(20)))
    r = invoke("train", "--task", "seq2seq", tmp_path / "p.tsv", "--hidden", "4", "--batch", "4",
               "--steps", "2", "--eval-every", "2", "--out", tmp_path / "s", "-q")
    assert r.exit_code == 0, r.output
    one_line_error(invoke("export", "-c", tmp_path / "s", tmp_path / "s.safetensors"),
                   "cannot export a 'seq2seq' model", "no standard PyTorch module")
    assert not (tmp_path / "s.safetensors").exists()
