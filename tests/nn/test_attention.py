"""charrnn.nn.attention: weights are a softmax over the real source positions only, the
context is their weighted sum (against a loop written here), padding changes nothing, and the
backward passes finite differences for both kinds."""

import numpy as np
import pytest

from charrnn.checks.gradcheck import compare, numeric_gradient
from charrnn.nn import attention as A

N, T, S, Q, E, AS = 3, 2, 5, 4, 6, 7  # all different, so a swapped axis fails


def setup(kind, rng):
    params = {k: rng.standard_normal(s) for k, s in A.param_shapes(kind, Q, E, AS).items()}
    s = rng.standard_normal((T, N, Q))
    lengths = np.array([S, 2, 4])
    h = rng.standard_normal((S, N, E)) * (np.arange(S)[:, None] < lengths)[..., None]
    return params, s, h, lengths


@pytest.mark.parametrize("kind", A.KINDS)
def test_weights_sum_to_one_on_real_positions_and_are_exactly_zero_on_padding(kind, rng):
    params, s, h, lengths = setup(kind, rng)
    _c, a, _ = A.forward(params, kind, s, h, lengths)
    for n, L in enumerate(lengths):
        np.testing.assert_allclose(a[:, n, :L].sum(axis=-1), 1.0, rtol=1e-14)
        assert (a[:, n, L:] == 0).all()


@pytest.mark.parametrize("kind", A.KINDS)
def test_scores_and_context_equal_a_loop_over_the_formulas(kind, rng):
    params, s, h, lengths = setup(kind, rng)
    c, a, _ = A.forward(params, kind, s, h, lengths)
    for t in range(T):
        for n, L in enumerate(lengths):
            if kind == "additive":
                e = np.array([params["att.v"] @ np.tanh(s[t, n] @ params["att.Ws"]
                              + h[j, n] @ params["att.Wk"] + params["att.b"]) for j in range(L)])
            else:
                e = np.array([s[t, n] @ params["att.W"] @ h[j, n] for j in range(L)])
            w = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
            np.testing.assert_allclose(a[t, n, :L], w, rtol=1e-12)
            np.testing.assert_allclose(c[t, n], w @ h[:L, n], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", A.KINDS)
def test_garbage_in_padded_encoder_outputs_changes_nothing(kind, rng):
    params, s, h, lengths = setup(kind, rng)
    dc = rng.standard_normal((T, N, E))
    c, a, cache = A.forward(params, kind, s, h, lengths)
    ds, dh, _g = A.backward(dc, cache)
    h2 = h + rng.standard_normal(h.shape) * (np.arange(S)[:, None] >= lengths)[..., None]
    c2, a2, cache2 = A.forward(params, kind, s, h2, lengths)
    ds2, dh2, _g2 = A.backward(dc, cache2)
    assert (a2 == a).all() and (c2 == c).all() and (ds2 == ds).all()
    real = (np.arange(S)[:, None] < lengths)[..., None]
    assert (dh2 * real == dh * real).all() and (dh[~real[..., 0]] == 0).all()


@pytest.mark.parametrize("kind", A.KINDS)
def test_backward_matches_finite_differences(kind, rng):
    params, s, h, lengths = setup(kind, rng)
    wc = rng.standard_normal((T, N, E))

    def f():
        return float((wc * A.forward(params, kind, s, h, lengths)[0]).sum())

    _, _, cache = A.forward(params, kind, s, h, lengths)
    ds, dh, grads = A.backward(wc, cache)
    for name, x, g in [("s", s, ds), ("h", h, dh)] + [(k, params[k], grads[k]) for k in params]:
        rel, _, idx = compare(g, numeric_gradient(f, x))
        assert rel < 1e-7, f"{kind} {name}: {rel:.1e} at {idx}"


@pytest.mark.parametrize("kind", A.KINDS)
def test_precomputed_keys_give_the_same_as_computing_them(kind, rng):
    params, s, h, lengths = setup(kind, rng)
    k = A.keys(params, kind, h)
    for a, b in zip(A.forward(params, kind, s, h, lengths)[:2],
                    A.forward(params, kind, s, h, lengths, k)[:2]):
        assert (a == b).all()


@pytest.mark.parametrize("kind", A.KINDS)
def test_equals_torch_autograd(kind, rng):
    """An independent reference: the same formulas in PyTorch, its autograd for the backward."""
    torch = pytest.importorskip("torch")
    params, s, h, lengths = setup(kind, rng)
    dc = rng.standard_normal((T, N, E))
    c, a, cache = A.forward(params, kind, s, h, lengths)
    ds, dh, grads = A.backward(dc, cache)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    ts, th = torch.tensor(s, requires_grad=True), torch.tensor(h, requires_grad=True)
    if kind == "additive":  # (T, 1, N, A) + (1, S, N, A)
        e = torch.tanh((ts @ tp["att.Ws"])[:, None] + (th @ tp["att.Wk"] + tp["att.b"])[None])
        e = (e @ tp["att.v"]).permute(0, 2, 1)  # (T, N, S)
    else:
        e = torch.einsum("tnq,qe,sne->tns", ts, tp["att.W"], th)
    pad = torch.tensor(np.arange(S)[None, :] >= lengths[:, None])  # (N, S)
    w = torch.softmax(e.masked_fill(pad[None], float("-inf")), dim=-1)
    tc = torch.einsum("tns,sne->tne", w, th)
    (tc * torch.tensor(dc)).sum().backward()
    np.testing.assert_allclose(a, w.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(c, tc.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ds, ts.grad.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(dh, th.grad.numpy(), rtol=1e-10, atol=1e-13)
    for k in params:
        np.testing.assert_allclose(grads[k], tp[k].grad.numpy(), rtol=1e-10, atol=1e-13,
                                   err_msg=k)
