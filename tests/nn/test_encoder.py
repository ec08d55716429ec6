"""The padded, batched, bidirectional encoder against per-sequence naive loops, finite
differences in float64, and (when installed) PyTorch's packed-sequence RNNs."""

import numpy as np
import pytest

from charrnn.checks.gradcheck import DEFAULT_TOL, compare, numeric_gradient
from charrnn.nn import encoder as E
from charrnn.nn.cells import CELLS
from tests.helpers import assert_close

N, T, V, H = 3, 5, 4, 6  # all different, so a swapped axis cannot pass
LENGTHS = np.array([5, 2, 3])  # the longest is T, the others differ
CASES = [(cell, layers, bidir) for cell in CELLS for layers in (1, 2) for bidir in (True, False)]
CASE_IDS = [f"{c}-{n}L-{'bi' if b else 'uni'}" for c, n, b in CASES]


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def naive_direction(cell, x, Wx, Wh, b, bhn):
    """One direction over one unpadded sequence x (L, D), from zero state: (L, H)."""
    h = np.zeros(Wh.shape[0])
    c = np.zeros_like(h)
    blk = [slice(j * H, (j + 1) * H) for j in range(4)]
    outs = []
    for xt in x:
        a = xt @ Wx + b
        if cell == "rnn":
            h = np.tanh(a + h @ Wh)
        elif cell == "lstm":  # gate order i, f, o, g
            u = a + h @ Wh
            i, f, o, g = (sigmoid(u[blk[0]]), sigmoid(u[blk[1]]), sigmoid(u[blk[2]]),
                          np.tanh(u[blk[3]]))
            c = f * c + i * g
            h = o * np.tanh(c)
        else:  # gru, PyTorch's equations, gate order r, z, n
            r = sigmoid(a[blk[0]] + h @ Wh[:, blk[0]])
            z = sigmoid(a[blk[1]] + h @ Wh[:, blk[1]])
            n = np.tanh(a[blk[2]] + r * (h @ Wh[:, blk[2]] + bhn))
            h = (1 - z) * n + z * h
        outs.append(h)
    return np.array(outs)


def naive_encoder(p, cell, layers, bidir, ids, lengths, masks=None):
    """Sequence by sequence, each cut to its own length; the backward direction is the forward
    loop over the reversed sequence, reversed back. Returns outs (T, N, R*H), finals."""
    dirs = ("fw", "bw") if bidir else ("fw",)
    outs = np.zeros((ids.shape[1], len(ids), len(dirs) * H))
    finals = [[[None] * len(ids) for _ in dirs] for _ in range(layers)]
    for s, L in enumerate(lengths):
        x = np.eye(V)[ids[s, :L]]  # (L, V) one-hot
        for k in range(layers):
            if k > 0 and masks is not None:
                x = x * masks[k - 1][:L, s]
            ys = []
            for j, d in enumerate(dirs):
                w = [p.get(f"enc.l{k}.{d}.{n}") for n in ("Wx", "Wh", "b", "bhn")]
                y = naive_direction(cell, x if d == "fw" else x[::-1], *w)
                y = y if d == "fw" else y[::-1]
                finals[k][j][s] = y[-1] if d == "fw" else y[0]
                ys.append(y)
            x = np.concatenate(ys, axis=-1)  # (L, R*H)
        outs[:L, s] = x
    return outs, [[np.array(f) for f in layer] for layer in finals]


def setup(cell, layers, bidir, rng, dropout=0.3):
    p = E.init_params(cell, V, H, layers, bidir, rng)
    for k in p:  # move off the special initial values
        p[k] = p[k] + 0.3 * rng.standard_normal(p[k].shape)
    ids = rng.integers(0, V, size=(N, T))
    masks = E.dropout_masks(rng, dropout, layers, T, N, (2 if bidir else 1) * H)
    return p, ids, masks


@pytest.mark.parametrize("cell,layers,bidir", CASES, ids=CASE_IDS)
def test_forward_matches_naive_per_sequence_loops(cell, layers, bidir, rng):
    p, ids, masks = setup(cell, layers, bidir, rng)
    ids[LENGTHS[:, None] <= np.arange(T)] = -7  # padding may hold any integer
    outs, finals, _ = E.forward(p, cell, layers, bidir, ids, LENGTHS, masks)
    ref_outs, ref_finals = naive_encoder(p, cell, layers, bidir, ids, LENGTHS, masks)
    assert outs.shape == (T, N, (2 if bidir else 1) * H)
    assert_close(outs, ref_outs, what=f"{cell} outputs")
    assert len(finals) == layers
    for k in range(layers):
        assert len(finals[k]) == (2 if bidir else 1)
        for j, (a, b) in enumerate(zip(finals[k], ref_finals[k])):
            assert_close(a, b, what=f"{cell} final of layer {k}, direction {j}")


def linear_loss(rng, outs_shape, finals):
    """Weights of a random linear loss on the outputs and every final."""
    return (rng.standard_normal(outs_shape),
            [tuple(rng.standard_normal(f.shape) for f in layer) for layer in finals])


def loss_value(outs, finals, w_out, w_fin):
    return float((w_out * outs).sum()) + sum(float((w * f).sum())
                                             for ws, fs in zip(w_fin, finals)
                                             for w, f in zip(ws, fs))


def pad(ids, masks, extra, rng):
    """ids with `extra` more padded steps of random ids; masks likewise (random values)."""
    n = len(ids)
    ids = np.concatenate([ids, rng.integers(-9, 99, size=(n, extra))], axis=1)
    if masks is not None:
        masks = [np.concatenate([m, rng.standard_normal((extra, n, m.shape[-1]))]) for m in masks]
    return ids, masks


@pytest.mark.parametrize("cell,layers,bidir", CASES, ids=CASE_IDS)
def test_padding_never_changes_a_result(cell, layers, bidir, rng):
    """Each sequence alone gets the outputs, finals and gradients it gets in a padded batch;
    the batch's gradient is the sum of the sequences' gradients, however much padding."""
    p, ids, masks = setup(cell, layers, bidir, rng)
    outs, finals, cache = E.forward(p, cell, layers, bidir, ids, LENGTHS, masks)
    w_out, w_fin = linear_loss(rng, outs.shape, finals)
    grads = E.backward(w_out, w_fin, cache)  # w_out at padded positions must be ignored
    assert not outs[LENGTHS[None, :] <= np.arange(T)[:, None]].any()  # padding outputs are 0

    ids2, masks2 = pad(ids, masks, 3, rng)
    outs2, _finals2, cache2 = E.forward(p, cell, layers, bidir, ids2, LENGTHS, masks2)
    w_out2 = np.concatenate([w_out, rng.standard_normal((3, N, w_out.shape[-1]))])
    grads2 = E.backward(w_out2, w_fin, cache2)
    assert_close(outs2[:T], outs, rtol=0, atol=1e-12, what="outputs with more padding")
    for name in p:
        assert_close(grads2[name], grads[name], rtol=0, atol=1e-12, what=f"{name}, padded more")

    total = {name: np.zeros_like(v) for name, v in p.items()}
    for s, L in enumerate(LENGTHS):
        alone_masks = None if masks is None else [m[:L, s : s + 1] for m in masks]
        o, f, c = E.forward(p, cell, layers, bidir, ids[s : s + 1, :L], LENGTHS[s : s + 1],
                            alone_masks)
        assert_close(o, outs[:L, s : s + 1], rtol=0, atol=1e-12, what=f"outputs of {s} alone")
        for k in range(layers):
            for j in range(len(f[k])):
                assert_close(f[k][j], finals[k][j][s : s + 1], rtol=0, atol=1e-12,
                             what=f"final {k}.{j} of sequence {s} alone")
        g = E.backward(w_out[:L, s : s + 1], [tuple(w[s : s + 1] for w in ws) for ws in w_fin],
                       c)
        for name in p:
            total[name] += g[name]
    for name in p:
        assert_close(grads[name], total[name], rtol=0, atol=1e-12,
                     what=f"{name}: batch vs sum of the sequences alone")


def gradcheck(cell, layers, bidir, seed=0, backward=E.backward):
    """(name, relative error, worst index) for every parameter; the objective is a random
    linear function of the outputs (any weights at padding: they read zeros) and all finals."""
    rng = np.random.default_rng(seed)
    p, ids, masks = setup(cell, layers, bidir, rng)
    outs, finals, cache = E.forward(p, cell, layers, bidir, ids, LENGTHS, masks)
    w_out, w_fin = linear_loss(rng, outs.shape, finals)
    grads = backward(w_out, w_fin, cache)
    assert list(grads) == list(p)

    def objective():
        return loss_value(*E.forward(p, cell, layers, bidir, ids, LENGTHS, masks)[:2],
                          w_out, w_fin)

    return [(name, *compare(grads[name], numeric_gradient(objective, p[name]))[::2])
            for name in p]


def failures(results):
    return [f"{name}: {rel:.2e} at {idx}" for name, rel, idx in results if rel >= DEFAULT_TOL]


@pytest.mark.parametrize("cell,layers,bidir", CASES, ids=CASE_IDS)
def test_gradients_match_finite_differences(cell, layers, bidir):
    results = gradcheck(cell, layers, bidir)
    assert len(results) == len(E.param_shapes(cell, V, H, layers, bidir))
    assert not failures(results)


def test_gradcheck_names_a_corrupted_gradient():
    def broken(douts, dfinals, cache):
        grads = E.backward(douts, dfinals, cache)
        grads["enc.l1.bw.Wh"] = grads["enc.l1.bw.Wh"] * 1.001
        return grads

    bad = failures(gradcheck("gru", 2, True, backward=broken))
    assert [b.split(":")[0] for b in bad] == ["enc.l1.bw.Wh"]


def test_param_shapes_and_init(rng):
    shapes = E.param_shapes("gru", V, H, 2, True, prefix="src.")
    assert list(shapes)[:4] == ["src.l0.fw.Wx", "src.l0.fw.Wh", "src.l0.fw.b", "src.l0.fw.bhn"]
    assert shapes["src.l0.bw.Wx"] == (V, 3 * H) and shapes["src.l1.bw.Wx"] == (2 * H, 3 * H)
    assert shapes["src.l1.fw.bhn"] == (H,) and len(shapes) == 16
    assert E.param_shapes("rnn", V, H, 2, False)["enc.l1.fw.Wx"] == (H, H)
    p = E.init_params("lstm", V, H, 2, True, rng, dtype="float32")
    assert all(v.dtype == np.float32 for v in p.values())
    assert_close(p["enc.l1.bw.b"], np.r_[np.zeros(H), np.ones(H), np.zeros(2 * H)])
    for j in range(4):
        q = p["enc.l0.fw.Wh"][:, j * H : (j + 1) * H].astype(np.float64)
        assert_close(q.T @ q, np.eye(H), rtol=0, atol=1e-6, what=f"Wh block {j} orthogonal")
    assert np.abs(p["enc.l0.bw.Wx"]).max() <= 1 / np.sqrt(H)


def test_bad_inputs_are_named(rng):
    p = E.init_params("rnn", V, H, 1, True, rng)
    ids = rng.integers(0, V, size=(N, T))
    with pytest.raises(ValueError, match="lengths must be in"):
        E.forward(p, "rnn", 1, True, ids, np.array([0, 2, 3]))
    with pytest.raises(ValueError, match="lengths must be in"):
        E.forward(p, "rnn", 1, True, ids, np.array([T + 1, 2, 3]))
    ids[1, 1] = V
    with pytest.raises(ValueError, match=f"id {V} at sequence 1, position 1"):
        E.forward(p, "rnn", 1, True, ids, LENGTHS)
    ids[1, 1] = 0
    ids[1, 2] = V  # padding: any value will do
    E.forward(p, "rnn", 1, True, ids, LENGTHS)


# --------------------------------------------------------------------------------------------
# PyTorch parity: nn.LSTM / nn.GRU, 2 layers, bidirectional, over packed sequences
# --------------------------------------------------------------------------------------------


def _torch_order(cell):
    """Our gate columns in PyTorch's row order: LSTM i, f, o, g -> i, f, g, o; GRU unchanged."""
    blocks = [0, 1, 3, 2] if cell == "lstm" else [0, 1, 2]
    return np.concatenate([np.arange(j * H, (j + 1) * H) for j in blocks])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_matches_pytorch_packed_bidirectional(cell, rng):
    torch = pytest.importorskip("torch")
    layers = 2
    p, ids, _ = setup(cell, layers, True, rng)
    Module = torch.nn.LSTM if cell == "lstm" else torch.nn.GRU
    net = Module(V, H, num_layers=layers, bidirectional=True, batch_first=True,
                 dtype=torch.float64)
    idx = _torch_order(cell)
    split = {}  # b = bias_ih + bias_hh, split at random (GRU n part: bias_hh_n = bhn)
    with torch.no_grad():
        for k in range(layers):
            for d, sfx in (("fw", ""), ("bw", "_reverse")):
                name, s = f"enc.l{k}.{d}.", f"l{k}{sfx}"
                b_hh = rng.standard_normal(len(idx))
                b_ih = p[name + "b"][idx] - b_hh
                if cell == "gru":
                    b_hh[2 * H :] = p[name + "bhn"]
                    b_ih[2 * H :] = p[name + "b"][2 * H :]
                split[s] = name
                getattr(net, f"weight_ih_{s}").copy_(torch.from_numpy(p[name + "Wx"][:, idx].T))
                getattr(net, f"weight_hh_{s}").copy_(torch.from_numpy(p[name + "Wh"][:, idx].T))
                getattr(net, f"bias_ih_{s}").copy_(torch.from_numpy(b_ih))
                getattr(net, f"bias_hh_{s}").copy_(torch.from_numpy(b_hh))

    outs, finals, cache = E.forward(p, cell, layers, True, ids, LENGTHS)
    x = torch.from_numpy(np.eye(V)[ids])  # (N, T, V) explicit one-hot
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.from_numpy(LENGTHS),
                                                     batch_first=True, enforce_sorted=False)
    y, h_n = net(packed)
    h_n = h_n[0] if cell == "lstm" else h_n  # (layers * 2, N, H)
    y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=T)
    assert_close(y.detach().numpy().transpose(1, 0, 2), outs, rtol=0, atol=1e-10,
                 what=f"{cell} outputs vs torch")
    for k in range(layers):
        for j in range(2):
            assert_close(h_n[2 * k + j].detach().numpy(), finals[k][j], rtol=0, atol=1e-10,
                         what=f"{cell} h_n of layer {k}, direction {j} vs torch")

    # and the gradients of a linear loss on the outputs and the top layer's finals
    w_out, w_fin = linear_loss(rng, outs.shape, finals)
    w_fin[0] = None  # layer 0's finals unread
    grads = E.backward(w_out, w_fin, cache)
    loss = (y * torch.from_numpy(w_out.transpose(1, 0, 2))).sum()
    loss = loss + sum((h_n[2 + j] * torch.from_numpy(w)).sum() for j, w in enumerate(w_fin[1]))
    loss.backward()
    inv = np.argsort(idx)
    for s, name in split.items():
        tg = {n: getattr(net, f"{n}_{s}").grad.numpy()
              for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        assert_close(grads[name + "Wx"], tg["weight_ih"].T[:, inv], rtol=0, atol=1e-10,
                     what=f"{name}Wx vs torch")
        assert_close(grads[name + "Wh"], tg["weight_hh"].T[:, inv], rtol=0, atol=1e-10,
                     what=f"{name}Wh vs torch")
        assert_close(grads[name + "b"], tg["bias_ih"][inv], rtol=0, atol=1e-10,
                     what=f"{name}b vs torch")
        if cell == "gru":
            assert_close(grads[name + "bhn"], tg["bias_hh"][2 * H :], rtol=0, atol=1e-10,
                         what=f"{name}bhn vs torch")
