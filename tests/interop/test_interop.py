"""PyTorch in and out: exact round trips, logits equal to the documented torch module's (for an
export and for a state_dict trained in torch), and the CLI's one-line errors."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import checkpoint as C
from charrnn.cli import cli
from charrnn.data.vocab import Vocab
from charrnn.errors import CharrnnError, CheckpointError
from charrnn.interop import lm as I
from charrnn.models import lm as M
from charrnn.nn.cells import CELLS
from tests.helpers import assert_close

VOCAB = Vocab("\n abcdeéж")  # V = 9
H, N, T = 5, 3, 7  # all different from V and from each other
CASES = [(cell, layers) for cell in CELLS for layers in (1, 2)]
IDS = [f"{c}-{n}L" for c, n in CASES]


def make(cell, layers, dtype="float64", seed=0, dropout=0.0):
    """A checkpoint whose every parameter, biases included, is random and non-zero."""
    cfg = M.ModelConfig(vocab_size=len(VOCAB), cell=cell, hidden=H, layers=layers,
                        dropout=dropout, dtype=dtype)
    rng = np.random.default_rng(seed)
    p = {k: (0.5 * rng.standard_normal(s)).astype(dtype) for k, s in M.param_shapes(cfg).items()}
    return C.Checkpoint(cfg, VOCAB, p, {"step": 3})


def logits_of(ckpt, ids):
    """Our logits (T, N, V) and final state for ids (N, T), from the zero state."""
    logits, final, _ = M.forward(ckpt.params, ckpt.model, ids, M.init_state(ckpt.model, len(ids)))
    return logits, final


def assert_same_params(a, b):
    assert a.model == b.model and a.vocab == b.vocab and a.family == b.family
    assert list(a.params) == list(b.params)
    for k in a.params:
        assert a.params[k].dtype == b.params[k].dtype, k
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)


# --- NumPy only --------------------------------------------------------------------------------

@pytest.mark.parametrize("cell,layers", CASES, ids=IDS)
def test_round_trip_is_exact(cell, layers):
    for dtype in ("float32", "float64"):
        ck = make(cell, layers, dtype, dropout=0.25)
        tensors, meta = I.to_torch_state(ck)
        assert all(isinstance(v, str) for v in meta.values())
        assert_same_params(I.from_torch_state(tensors, meta), ck)


def test_names_and_shapes_are_pytorch_state_dict():
    tensors, meta = I.to_torch_state(make("lstm", 2))
    V, G = len(VOCAB), 4 * H
    assert {k: v.shape for k, v in tensors.items()} == {
        "rnn.weight_ih_l0": (G, V), "rnn.weight_hh_l0": (G, H), "rnn.bias_ih_l0": (G,),
        "rnn.bias_hh_l0": (G,), "rnn.weight_ih_l1": (G, H), "rnn.weight_hh_l1": (G, H),
        "rnn.bias_ih_l1": (G,), "rnn.bias_hh_l1": (G,), "head.weight": (V, H), "head.bias": (V,)}
    assert json.loads(meta["vocab"]) == list(VOCAB.chars)
    assert json.loads(meta["model"])["cell"] == "lstm" and "nn.LSTM" in meta["module"]


@pytest.mark.parametrize("cell", list(CELLS))
def test_any_bias_split_is_accepted(cell):
    """b = bias_ih + bias_hh for every gate but the GRU's n, whose bias_hh part is bhn."""
    ck = make(cell, 2)
    tensors, meta = I.to_torch_state(ck)
    rng = np.random.default_rng(1)
    for k in range(2):
        shift = rng.standard_normal(tensors[f"rnn.bias_ih_l{k}"].shape)
        if cell == "gru":
            shift[2 * H :] = 0  # the n-part of bias_hh is bhn itself, not a free split
        tensors[f"rnn.bias_ih_l{k}"] = tensors[f"rnn.bias_ih_l{k}"] - shift
        tensors[f"rnn.bias_hh_l{k}"] = tensors[f"rnn.bias_hh_l{k}"] + shift
    back = I.from_torch_state(tensors, meta)
    for name in ck.params:
        assert_close(back.params[name], ck.params[name], what=name)


def test_config_inferred_from_shapes_and_module_prefix_dropped():
    ck = make("gru", 2, "float32", dropout=0.3)
    tensors, meta = I.to_torch_state(ck)
    back = I.from_torch_state({f"module.{k}": v.astype(np.float16) for k, v in tensors.items()},
                              {"vocab": meta["vocab"]})  # a DDP state_dict saved in half precision
    assert back.model == M.ModelConfig(len(VOCAB), "gru", H, 2, 0.0, "float32")
    for k, v in ck.params.items():
        assert_close(back.params[k], v.astype(np.float16), rtol=0, atol=0, what=k)


def test_export_refuses_other_families():
    ck = make("gru", 1)
    ck.family = "seq2seq"
    with pytest.raises(CheckpointError, match=r"'seq2seq'.*no standard PyTorch module.*supports "
                       r"the lm, classify, tag families only"):
        I.to_torch_state(ck)
    ck.family = "bogus"
    with pytest.raises(CheckpointError, match=r"cannot export a 'bogus' model: export supports"):
        I.to_torch_state(ck)


def _edit(fn, cell="gru"):
    tensors, meta = I.to_torch_state(make(cell, 2))
    fn(tensors, meta)
    return tensors, meta


@pytest.mark.parametrize("edit,message", [
    (lambda t, m: t.update({"rnn.weight_ih_l1": np.zeros((15, 4))}),
     r"tensor rnn.weight_ih_l1 is \(15, 4\); .* needs \(15, 5\)"),
    (lambda t, m: t.update({"head.bias": np.zeros(8)}), r"tensor head.bias is \(8,\)"),
    (lambda t, m: t.pop("rnn.bias_hh_l0"), r"missing: rnn.bias_hh_l0"),
    (lambda t, m: t.update({"rnn.weight_ih_l0_reverse": np.zeros((15, 9))}),
     r"unexpected: rnn.weight_ih_l0_reverse"),
    (lambda t, m: t.pop("head.weight"), r"tensor head.weight missing"),
    (lambda t, m: t.update({"rnn.weight_hh_l0": np.zeros((10, 5))}), r"not 1, 3 or 4 times"),
    (lambda t, m: t.update({"head.bias": np.zeros(9, np.int64)}), r"head.bias is int64"),
    (lambda t, m: t.update({"head.bias": np.zeros(9, np.float32)}), r"mix dtypes"),
    (lambda t, m: m.pop("vocab"), r"metadata 'vocab' missing"),
    (lambda t, m: m.update(vocab="abc"), r"metadata 'vocab' is not a JSON list"),
    (lambda t, m: m.update(vocab='["a", "b"]'), r"'vocab' has 2 characters but head.weight"),
    (lambda t, m: m.update(model=m["model"].replace('"gru"', '"lstm"')),
     r"metadata 'model' says cell 'lstm' but the tensors have 'gru'"),
    (lambda t, m: m.update(family="seq2seq"), r"import supports the lm, classify, tag families"),
    (lambda t, m: m.update(family="bogus"), r"cannot import a 'bogus' model: import supports"),
])
def test_bad_state_dicts_are_named(edit, message):
    tensors, meta = _edit(edit)
    with pytest.raises(CharrnnError, match=message) as e:
        I.from_torch_state(tensors, meta)
    assert "\n" not in str(e.value)


# --- files -------------------------------------------------------------------------------------

@pytest.fixture
def st():
    return pytest.importorskip("safetensors.numpy")


@pytest.mark.parametrize("cell,layers", CASES, ids=IDS)
def test_file_round_trip_is_exact(cell, layers, tmp_path, st):
    ck = make(cell, layers, "float32")
    I.save(tmp_path / "m.safetensors", ck)
    back = I.load(tmp_path / "m.safetensors")
    assert_same_params(back, ck)
    assert back.meta == {"imported_from": str(tmp_path / "m.safetensors")}  # no training state


def test_missing_safetensors_says_how_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(CharrnnError, match=r"pip install 'charrnn\[safetensors\]'"):
        I.save(tmp_path / "m.safetensors", make("rnn", 1))


def test_bfloat16_is_refused_by_name(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    save_file({"head.weight": torch.zeros(9, 5, dtype=torch.bfloat16)}, tmp_path / "b.safetensors")
    with pytest.raises(CheckpointError, match=r"tensor head.weight is BF16.*\.float\(\)"):
        I.load(tmp_path / "b.safetensors")


# --- PyTorch -----------------------------------------------------------------------------------

def torch_module():
    """The CharRNN class exactly as the docstring and the PyTorch guide show it."""
    pytest.importorskip("torch")
    scope = {}
    exec(I.TORCH_MODULE, scope)  # noqa: S102 - our own source text, so the documented code runs
    return scope["torch"], scope["CharRNN"]


def test_the_pytorch_guide_shows_the_module():
    guide = (Path(__file__).parents[2] / "docs" / "en" / "guides" / "pytorch.md").read_text()
    assert I.TORCH_MODULE.strip() in guide


@pytest.mark.parametrize("cell,layers", CASES, ids=IDS)
@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float64", 1e-12)])
def test_export_loads_into_torch_with_the_same_logits(cell, layers, dtype, tol, tmp_path):
    torch, CharRNN = torch_module()
    from safetensors.torch import load_file

    ck = make(cell, layers, dtype, dropout=0.3)
    I.save(tmp_path / "m.safetensors", ck)
    net = CharRNN(**json.loads(I.to_torch_state(ck)[1]["model"]))
    net = net.to(getattr(torch, dtype)).eval()
    net.load_state_dict(load_file(tmp_path / "m.safetensors"))
    ids = np.random.default_rng(2).integers(0, len(VOCAB), size=(N, T))
    with torch.no_grad():
        y, state = net(torch.from_numpy(ids.T.copy()))
    ours, final = logits_of(ck, ids)
    assert_close(y.numpy(), ours, rtol=tol, atol=tol, what=f"{cell} logits vs torch")
    h_n = state[0] if cell == "lstm" else state
    for k in range(layers):
        assert_close(h_n[k].numpy(), final[k][0], rtol=tol, atol=tol, what=f"h of layer {k}")
        if cell == "lstm":
            assert_close(state[1][k].numpy(), final[k][1], rtol=tol, atol=tol,
                         what=f"c of layer {k}")


@pytest.mark.parametrize("cell", list(CELLS))
def test_torch_trained_state_dict_imports_with_the_same_logits(cell, tmp_path):
    torch, CharRNN = torch_module()
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = CharRNN(cell, len(VOCAB), H, 2, dropout=0.1)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    data = torch.randint(0, len(VOCAB), (T + 1, N))
    for _ in range(5):  # moves bias_ih and bias_hh apart, the GRU's n-parts included
        logits, _ = net(data[:-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), data[1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not torch.equal(net.rnn.bias_hh_l0, torch.zeros_like(net.rnn.bias_hh_l0))
    save_file(net.state_dict(), tmp_path / "t.safetensors",
              metadata={"vocab": json.dumps(list(VOCAB.chars))})
    ck = I.load(tmp_path / "t.safetensors")
    assert (ck.model.cell, ck.model.hidden, ck.model.layers) == (cell, H, 2)
    ids = np.random.default_rng(3).integers(0, len(VOCAB), size=(N, T))
    with torch.no_grad():
        y, _ = net.eval()(torch.from_numpy(ids.T.copy()))
    assert_close(logits_of(ck, ids)[0], y.numpy(), rtol=1e-5, atol=1e-5,
                 what=f"{cell} imported logits vs torch")


# --- CLI ---------------------------------------------------------------------------------------

def invoke(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def assert_one_line_error(result, match):
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert match in lines[0], lines[0]
    assert result.stdout == ""


@pytest.fixture
def run(tmp_path, monkeypatch, st):
    monkeypatch.chdir(tmp_path)
    ck = make("lstm", 2, "float32")
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    C.save(tmp_path / "runs" / "demo" / "best.npz", ck)
    return ck


def test_cli_export_import_sample(run, tmp_path):
    r = invoke("export", "-c", "runs/demo", "m.safetensors")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "m.safetensors" and "nn.LSTM" in r.stderr
    r = invoke("import", "m.safetensors", "runs/back")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(Path("runs/back/best.npz"))
    assert sorted(p.name for p in (tmp_path / "runs" / "back").iterdir()) == ["best.npz"]
    assert_same_params(C.load("runs/back/best.npz"), run)
    texts = [invoke("sample", "-c", f"runs/{r}", "-n", 40, "--seed", 5, "-p", "ab")
             for r in ("demo", "back")]
    assert texts[0].exit_code == texts[1].exit_code == 0
    assert texts[0].stdout == texts[1].stdout and len(texts[0].stdout) == 42
    (tmp_path / "t.txt").write_text("abc de\n")
    assert invoke("eval", "t.txt", "-c", "runs/back").exit_code == 0
    assert invoke("info", "runs/back").exit_code == 0
    r = invoke("train", "--resume", "runs/back")  # best.npz alone is no resumable run
    assert r.exit_code != 0 and "nothing to resume" in r.stderr


def test_cli_bad_inputs(run, tmp_path):
    (tmp_path / "text.safetensors").write_text("just some text, not tensors\n")
    assert_one_line_error(invoke("import", "nope.safetensors", "x"), "file not found")
    assert_one_line_error(invoke("import", "text.safetensors", "x"), "not a .safetensors file")
    assert_one_line_error(invoke("import", "runs", "x"), "is a directory")
    assert_one_line_error(invoke("export", "-c", "runs/demo", "runs/demo/best.npz"),
                          "must end in .safetensors")
    assert_one_line_error(invoke("export", "-c", "runs/nope", "m.safetensors"), "not found")
    assert invoke("export", "-c", "runs/demo", "m.safetensors").exit_code == 0
    assert_one_line_error(invoke("import", "m.safetensors", "runs/demo"), "already holds a run")
    tensors, meta = I.to_torch_state(run)
    st = pytest.importorskip("safetensors.numpy")
    st.save_file(tensors, tmp_path / "nometa.safetensors")
    assert_one_line_error(invoke("import", "nometa.safetensors", "x"), "metadata 'vocab' missing")
    st.save_file(dict(tensors, **{"rnn.weight_hh_l1": np.zeros((20, 4), np.float32)}),
                 tmp_path / "shape.safetensors", metadata=meta)
    assert_one_line_error(invoke("import", "shape.safetensors", "x"), "rnn.weight_hh_l1")
    assert not (tmp_path / "x").exists()  # nothing written on failure
