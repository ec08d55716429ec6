"""The optional compiled kernels (charrnn.nn.fused) against the NumPy path and float64.

Skipped where they cannot be built (no C compiler); everything else runs without them."""

import os
from dataclasses import replace

import numpy as np
import pytest

from charrnn import checkpoint as C
from charrnn.errors import ConfigError
from charrnn.models import lm as M
from charrnn.nn import cells, fused, fused_step
from charrnn.parallel import blas as B
from charrnn.parallel import workers as P
from charrnn.train.trainer import resume_config, train
from tests.helpers import AUSTEN, TINY, assert_close, invoke, one_line_error, tiny

WHY = fused.available()
needs_fused = pytest.mark.skipif(WHY is not None, reason=f"fused kernels unavailable: {WHY}")


def _chunk(cell, T, N, H, dtype=np.float32, seed=0, scale=2.0):
    """xp, state, params, dhs, dstate of one layer's chunk of `cell`; xp's values are about
    `scale` in size (30: most gates saturated)."""
    rng = np.random.default_rng(seed)
    r = lambda *s, k=1.0: (rng.standard_normal(s) * k).astype(dtype)
    G = cells.CELLS[cell].gates * H
    n_state = 2 if cell == "lstm" else 1
    p = {"Wh": r(H, G, k=H ** -0.5), **({"bhn": r(H, k=0.5)} if cell == "gru" else {})}
    return (r(T, N, G, k=scale), tuple(r(N, H, k=0.5) for _ in range(n_state)), p, r(T, N, H),
            tuple(r(N, H) for _ in range(n_state)))


def _run(cell, name, xp, state, p, dhs, dstate, backward_with=None):
    """Everything one forward and backward pass of `cell` returns and caches (but the inputs
    it keeps), by name, with `name`'s kernels (the backward pass with `backward_with`'s)."""
    hs, final, cache = cells.cell(cell, name).forward(xp.copy(), state, p)
    dxp, d0, g = cells.cell(cell, backward_with or name).backward(dhs, dstate, cache)
    return {"hs": hs, "dxp": dxp, **{f"final{k}": v for k, v in enumerate(final)},
            **{f"d0_{k}": v for k, v in enumerate(d0)}, **{f"d{k}": v for k, v in g.items()},
            **{f"cache.{k}": v for k, v in cache._asdict().items()
               if k not in ("Wh", "h0", "c0")}}


@needs_fused
def test_exp_and_tanh_are_accurate_in_float32():
    x = np.linspace(-87, 87, 1_000_001, dtype=np.float32)
    want = np.exp(x.astype(np.float64))
    assert np.max(np.abs(fused.exp(x) - want) / want) < 3e-7
    big = np.array([88.0, 1e4, np.inf, -88.0, -1e4, -np.inf], np.float32)
    e = fused.exp(big)  # clamped to +-87: finite and normal, never inf or denormal
    assert np.all(np.isfinite(e)) and np.all(e >= np.finfo(np.float32).tiny)
    t = np.concatenate([np.linspace(-12, 12, 400_001, dtype=np.float32),
                        np.float32([1e-30, -1e-20, 0.0, 1e4, -1e4, np.inf, -np.inf])])
    want = np.tanh(t.astype(np.float64))
    got = fused.tanh(t)
    assert np.max(np.abs(got - want)) < 2.5e-7
    small = np.abs(t) < 1  # relative accuracy where tanh is small, the Taylor branch included
    assert np.max(np.abs(got[small] - want[small]) / np.maximum(np.abs(want[small]), 1e-38)) < 1e-6
    assert got[-7] == np.float32(1e-30) and got[-5] == 0.0 and list(got[-4:]) == [1, -1, 1, -1]


@needs_fused
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("T,N,H,scale", [(1, 1, 1, 2.0), (7, 3, 5, 2.0), (9, 2, 17, 2.0),
                                         (16, 16, 64, 2.0), (6, 1, 9, 30.0), (3, 33, 9, 2.0),
                                         (4, 16, 33, 2.0), (2, 3, 70, 2.0), (3, 1, 40, 2.0)])
def test_the_fused_loops_agree_with_numpys_to_float32_rounding(cell, T, N, H, scale):
    # N = 1, 3, 16, 33 and H with 4H, 3H and H off the packed multiply's panel width (32 or 16
    # columns) and row block (8 or 6 rows): every tail of fused.c's kernel runs
    args = _chunk(cell, T, N, H, scale=scale)
    want, got = _run(cell, "numpy", *args), _run(cell, "fused", *args)
    # the caches have one layout: either pass of one kind, the other pass of the other
    mixed = [_run(cell, "fused", *args, backward_with="numpy"),
             _run(cell, "numpy", *args, backward_with="fused")]
    for name in want:
        scale = np.max(np.abs(want[name]))
        assert_close(got[name], want[name], rtol=0, atol=2e-6 * scale, what=name)
        for m in mixed:
            assert_close(m[name], want[name], rtol=0, atol=2e-6 * scale, what=f"mixed {name}")
    if T * N * H > 1:  # a different computation really ran (one value may round the same)
        assert not np.array_equal(got["dWh"], want["dWh"])


def _naive_panel_product(A, W):
    """A W in float64, one output at a time (what fused.c's packed multiply computes)."""
    A, W = A.astype(np.float64), W.astype(np.float64)
    out = np.zeros((A.shape[0], W.shape[1]))
    for r in range(A.shape[0]):
        for m in range(W.shape[1]):
            out[r, m] = sum(A[r, k] * W[k, m] for k in range(W.shape[0]))
    return out


PANEL_SHAPES = [(1, 5, 7), (3, 17, 36), (16, 40, 160), (33, 9, 65), (8, 64, 32), (7, 3, 1)]


@needs_fused
@pytest.mark.parametrize("n,k,m", PANEL_SHAPES)
def test_the_packed_multiply_is_the_matrix_product(n, k, m):
    rng = np.random.default_rng(n * k + m)
    A = rng.standard_normal((n, k)).astype(np.float32)
    W = rng.standard_normal((k, m)).astype(np.float32)
    scale = rng.choice(np.float32([-1, -2, 0.5]), m)
    for what, packed, want in (("W", fused.panels(W), _naive_panel_product(A, W)),
                               ("W scaled", fused.panels(W, scale),
                                _naive_panel_product(A, W * scale)),
                               ("W.T", fused.panels(np.ascontiguousarray(W.T), transpose=True),
                                _naive_panel_product(A, W))):
        got = fused.panel_matmul(A, packed, m)
        assert_close(got, want, rtol=0, atol=1e-6 * k * np.max(np.abs(want)), what=what)
        for r in range(n):  # a row's result is the same whichever rows share its block
            assert np.array_equal(fused.panel_matmul(A[r : r + 1], packed, m)[0], got[r])
    with pytest.raises(ValueError, match="do not fit"):
        fused.panel_matmul(A, fused.panels(W), m + 40)


@needs_fused
@pytest.mark.parametrize("n,k,m", [*PANEL_SHAPES, (1, 512, 2048), (2, 33, 300), (1, 20, 129)])
def test_the_model_steps_multiply_is_the_matrix_product_summed_in_order(n, k, m):
    # fused_step's products (panels of 128 columns with AVX-512): the float64 product, each row
    # on its own, and each output summed over k in order as the time loops' multiply sums it
    rng = np.random.default_rng(n + k * m)
    A = rng.standard_normal((n, k)).astype(np.float32)
    W = rng.standard_normal((k, m)).astype(np.float32)
    got = fused_step.step_multiply(A, fused_step.step_panels(W), m)
    want = _naive_panel_product(A, W) if k * m < 10_000 else A.astype(float) @ W.astype(float)
    assert_close(got, want, rtol=0, atol=1e-6 * k * np.max(np.abs(want)), what=f"{n} {k} {m}")
    for r in range(n):
        assert np.array_equal(fused_step.step_multiply(A[r : r + 1], fused_step.step_panels(W),
                                                       m)[0], got[r])
    assert np.array_equal(got, fused.panel_matmul(A, fused.panels(W), m))  # the same sums
    with pytest.raises(ValueError, match="do not fit"):
        fused_step.step_multiply(A, fused_step.step_panels(W), m + 200)


@needs_fused
@pytest.mark.parametrize("flags", [[], ["-DFUSED_PLAIN"]], ids=["default-target", "plain-c"])
def test_the_packed_multiply_is_right_without_native_vectors(tmp_path, flags):
    # fused.c's kernel is sized at compile time for the instruction set -march=native gives;
    # built for the compiler's default target (SSE2 on x86-64: narrower vectors, 6-row blocks)
    # and as plain C (no vector extensions), the same source must compute the same products
    import ctypes

    so = tmp_path / "fused-portable.so"
    fused.subprocess.run([*fused._compiler(), "-O2", "-fPIC", "-shared", *flags, "-o", str(so),
                          str(fused.SOURCE)], check=True, capture_output=True)
    lib = ctypes.CDLL(str(so))
    lib.panel_width.restype = lib.step_panel_width.restype = ctypes.c_long
    nr = lib.panel_width()
    for n, k, m in PANEL_SHAPES:
        rng = np.random.default_rng(n + k + m)
        A = rng.standard_normal((n, k)).astype(np.float32)
        W = rng.standard_normal((k, m)).astype(np.float32)
        packed = np.empty(-(-m // nr) * nr * k, np.float32)
        lib.pack_panels(ctypes.c_long(k), ctypes.c_long(m), ctypes.c_void_p(W.ctypes.data),
                        ctypes.c_long(m), ctypes.c_long(1), None, ctypes.c_void_p(packed.ctypes.data))
        got = np.empty((n, m), np.float32)
        lib.panel_matmul(*(ctypes.c_long(v) for v in (n, k, m)),
                         *(ctypes.c_void_p(a.ctypes.data) for a in (A, packed, got)))
        want = _naive_panel_product(A, W)
        assert_close(got, want, rtol=0, atol=1e-6 * k * np.max(np.abs(want)),
                     what=f"{flags} n={n} k={k} m={m}")
        sw = lib.step_panel_width()  # the model step's wider panels (fused_step)
        step_packed = np.empty(-(-m // sw) * sw * k, np.float32)
        lib.pack_step_panels(ctypes.c_long(k), ctypes.c_long(m), ctypes.c_void_p(W.ctypes.data),
                             ctypes.c_void_p(step_packed.ctypes.data))
        by_step = np.empty((n, m), np.float32)
        lib.step_multiply(*(ctypes.c_long(v) for v in (n, k, m)),
                          *(ctypes.c_void_p(a.ctypes.data) for a in (A, step_packed, by_step)))
        assert_close(by_step, want, rtol=0, atol=1e-6 * k * np.max(np.abs(want)),
                     what=f"step {flags} n={n} k={k} m={m}")


@needs_fused
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_the_fused_backward_is_the_gradient_of_the_forward(cell):
    # float32 kernels cannot be checked by finite differences in their own precision: the fused
    # forward's cache goes into the fused backward, and the result is compared with central
    # differences of the same loss computed in float64 (NumPy's float64 forward, at the very
    # same float32 values), to float32 rounding
    T, N, H = 4, 2, 3
    xp, state, p, dhs, dstate = _chunk(cell, T, N, H)
    fast = cells.cell(cell, "fused")
    hs, _, cache = fast.forward(xp.copy(), state, p)
    dxp, d0, grads = fast.backward(dhs, dstate, cache)
    f64 = lambda a: a.astype(np.float64)
    x = {"xp": f64(xp), **{f"s{k}": f64(s) for k, s in enumerate(state)},
         **{k: f64(v) for k, v in p.items()}}

    def forward64():  # hs and the final state, in float64, with NumPy's kernels
        s = tuple(x[f"s{k}"] for k in range(len(state)))
        hs, final, _ = getattr(cells, f"{cell}_forward")(x["xp"].copy(), s, {k: x[k] for k in p})
        return hs, final

    def loss():
        hs, final = forward64()
        return np.sum(hs * dhs) + sum(np.sum(f * d) for f, d in zip(final, dstate))

    assert_close(hs, forward64()[0], rtol=0, atol=1e-6, what="hs")
    got = {"xp": dxp, **{f"s{k}": d for k, d in enumerate(d0)}, **grads}
    assert sorted(got) == sorted(x)
    for name, a in x.items():
        num = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            keep = a[i]
            a[i] = keep + 1e-6
            up = loss()
            a[i] = keep - 1e-6
            num[i] = (up - loss()) / 2e-6
            a[i] = keep
        assert_close(got[name], num, rtol=1e-4, atol=1e-5 * np.max(np.abs(num)), what=name)


def _sigmoid64(a):
    return 1 / (1 + np.exp(-a))


def _naive_step(cell, xp, state, p):
    """One step of `cell` in float64, gate by gate, written out here."""
    xp, state, p = xp.astype(np.float64), [s.astype(np.float64) for s in state], \
        {k: v.astype(np.float64) for k, v in p.items()}
    h = state[0]
    H = h.shape[1]
    a = h @ p["Wh"]
    if cell == "lstm":
        a += xp
        i, f, o = (_sigmoid64(a[:, k * H:(k + 1) * H]) for k in range(3))
        c = f * state[1] + i * np.tanh(a[:, 3 * H:])
        return o * np.tanh(c), c
    if cell == "gru":
        r = _sigmoid64(xp[:, :H] + a[:, :H])
        z = _sigmoid64(xp[:, H:2 * H] + a[:, H:2 * H])
        n = np.tanh(xp[:, 2 * H:] + r * (a[:, 2 * H:] + p["bhn"]))
        return ((1 - z) * n + z * h,)
    return (np.tanh(xp + a),)


@needs_fused
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("N,H,scale", [(1, 1, 2.0), (1, 5, 2.0), (3, 17, 2.0), (1, 64, 2.0),
                                       (2, 9, 30.0), (1, 33, 100.0)])
def test_the_fused_single_steps_agree_with_numpy_and_float64(cell, N, H, scale):
    xp, state, p, _, _ = _chunk(cell, 1, N, H, scale=scale, seed=N * H)
    xp = xp[0]
    before = [a.copy() for a in (xp, *state, *p.values())]
    want = _naive_step(cell, xp, state, p)
    numpy_ = cells.cell(cell, "numpy").step(xp, state, p)
    got = cells.cell(cell, "fused").step(xp, state, p)
    for k, (g, n, w) in enumerate(zip(got, numpy_, want)):
        assert g.dtype == np.float32 and g.shape == (N, H)
        scale_k = max(1.0, np.max(np.abs(w)))
        assert_close(g, w, rtol=0, atol=1e-6 * scale_k, what=f"{cell} state {k} vs float64")
        assert_close(g, n, rtol=0, atol=1e-6 * scale_k, what=f"{cell} state {k} vs NumPy")
    for a, b in zip(before, (xp, *state, *p.values())):
        assert np.array_equal(a, b)  # the inputs are not modified


@needs_fused
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_single_steps_really_run_the_c_kernels(cell, monkeypatch):
    xp, state, p, _, _ = _chunk(cell, 1, 3, 40)
    fast = cells.cell(cell, "fused")
    calls = []
    real = fused.library()
    monkeypatch.setattr(fused, "library", lambda: calls.append(1) or real)
    got = fast.step(xp[0], state, p)
    assert calls == [1]
    want = cells.cell(cell, "numpy").step(xp[0], state, p)
    assert not all(np.array_equal(g, w) for g, w in zip(got, want))  # its own exp: other bits


@needs_fused
def test_a_single_step_given_arrays_that_do_not_fit_raises_instead_of_reading_past_them():
    xp, (h, c), p, _, _ = _chunk("lstm", 1, 2, 6)
    for bad in [(xp[0][:, :-4].copy(), (h, c)), (xp[0], (h, c[:1].copy()))]:
        with pytest.raises(ValueError, match="lstm step: .* do not fit"):
            cells.lstm_step(*bad, p, kernels="fused")
    xp, (h,), p, _, _ = _chunk("gru", 1, 2, 6)
    for bad in [{**p, "bhn": p["bhn"][:3].copy()}, {**p, "Wh": p["Wh"][:, :-3].copy()}]:
        with pytest.raises(ValueError, match="gru step: .* do not fit"):
            cells.gru_step(xp[0], (h,), bad, kernels="fused")


@needs_fused
def test_float64_and_strided_arrays_take_the_numpy_path_bit_for_bit():
    for cell in ("lstm", "gru", "rnn"):
        args = _chunk(cell, 5, 3, 4, dtype=np.float64)
        want, got = _run(cell, "numpy", *args), _run(cell, "fused", *args)
        for name in want:
            assert np.array_equal(got[name], want[name]), f"{cell} {name}"
        xp, state, p = args[0][0], args[1], args[2]
        got = cells.cell(cell, "fused").step(xp, state, p)
        assert all(map(np.array_equal, got, cells.CELLS[cell].step(xp, state, p))), cell
    for cell in ("lstm", "gru", "rnn"):
        xp, state, p, dhs, dstate = _chunk(cell, 5, 3, 4)
        strided = np.zeros((5, 3, 8), np.float32)[..., ::2]
        strided[...] = dhs  # the same values, not contiguous: the backward loop falls back
        _, _, cache = cells.cell(cell, "fused").forward(xp.copy(), state, p)
        a = cells.cell(cell, "fused").backward(strided, dstate, cache)
        b = cells.cell(cell, "numpy").backward(strided, dstate, cache)
        assert np.array_equal(a[0], b[0]), cell
        views = tuple(np.zeros((3, 8), np.float32)[:, ::2] for _ in state)
        for v, s in zip(views, state):
            v[...] = s  # a state that is a strided view: the single step falls back
        a = cells.cell(cell, "fused").step(xp[0], views, p)
        assert all(map(np.array_equal, a, cells.CELLS[cell].step(xp[0], views, p))), cell


def _model(cell, V, H, L, seed=0, dtype="float32"):
    """A model of `cell` with weights big enough that its gates are not all near 0.5."""
    cfg = M.ModelConfig(V, cell, H, L, 0.0, dtype, kernels="fused" if dtype == "float32" else
                        "numpy")
    params = M.init_params(cfg, np.random.default_rng(seed))
    for name in params:
        params[name] *= 2
        params[name] += np.random.default_rng(seed + 1).normal(0, 0.3, params[name].shape) \
            .astype(dtype) if name.endswith(("b", "bhn", "by")) else 0
    return cfg, params


def _naive_model_step(cfg, params, ids, state):
    """The model's step in float64, written out here: x_0 = Wx_0[ids] + b_0, each layer's
    naive step, x_k = h_{k-1} Wx_k + b_k above, logits = h Wy + by."""
    p = {k: v.astype(np.float64) for k, v in params.items()}
    new, x = [], p["l0.Wx"][ids] + p["l0.b"]
    for k in range(cfg.layers):
        if k:
            x = new[-1][0] @ p[f"l{k}.Wx"] + p[f"l{k}.b"]
        rec = {n: p[f"l{k}.{n}"] for n in cells.CELLS[cfg.cell].recurrent}
        new.append(_naive_step(cfg.cell, x, state[k], rec))
    return new[-1][0] @ p["Wy"] + p["by"], tuple(new)


def _numpy_kernels(cfg, params):
    """The model's step on NumPy's kernels: the reference."""
    return M.stepper(params, replace(cfg, kernels="numpy"))


@needs_fused
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("V,H,L,N", [(7, 5, 3, 1), (7, 5, 1, 3), (65, 64, 2, 1), (3, 1, 2, 2),
                                     (11, 33, 2, 4), (130, 100, 2, 1), (65, 72, 1, 2)])
def test_the_fused_model_step_agrees_with_numpy_and_float64(cell, V, H, L, N):
    cfg, params = _model(cell, V, H, L, seed=V + H + L + N)
    fast, ref = M.stepper(params, cfg), _numpy_kernels(cfg, params)
    assert fast.__qualname__.startswith("stack_stepper")  # the whole step in the kernels
    rng = np.random.default_rng(N)
    state = want = M.init_state(cfg, N)
    ids = np.empty(N, dtype=np.intp)
    before = {k: v.copy() for k, v in params.items()}
    for t in range(6):  # the state threaded through: each step is handed the last one's
        ids[:] = rng.integers(-V, V, N)  # negative ids count from the end, as NumPy's
        kept = [a.copy() for s in state for a in s]
        logits, new = fast(ids, state)
        naive_logits, want = _naive_model_step(cfg, params, ids, want)
        np_logits, _ = ref(ids, state)
        assert logits.dtype == np.float32 and logits.shape == (N, V)
        top = max(1.0, np.max(np.abs(naive_logits)))
        assert_close(logits, naive_logits, rtol=0, atol=2e-5 * top, what=f"logits {t} vs f64")
        assert_close(logits, np_logits, rtol=0, atol=2e-5 * top, what=f"logits {t} vs NumPy")
        for k, (s, w) in enumerate(zip(new, want)):
            for j, (a, b) in enumerate(zip(s, w)):
                assert a.dtype == np.float32 and a.shape == (N, H) and a.flags.c_contiguous
                assert_close(a, b, rtol=0, atol=1e-5 * max(1.0, np.max(np.abs(b))),
                             what=f"step {t} layer {k} state {j}")
        assert all(np.array_equal(a, b) for a, b in zip(kept, (a for s in state for a in s)))
        state = new
    assert all(np.array_equal(before[k], params[k]) for k in params)


@needs_fused
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_streams_step_does_not_depend_on_the_streams_beside_it_or_on_the_step(cell):
    # the model step's products sum each output in one order, whatever the rows: three streams
    # stepped together give, bit for bit, what each gives alone, and a step made anew gives
    # what the last one gave (the same seed samples the same text)
    cfg, params = _model(cell, 13, 40, 2)
    together, apart = M.stepper(params, cfg), M.stepper(params, cfg)
    assert together.__qualname__.startswith("stack_stepper")
    state = M.init_state(cfg, 3)
    alone = [M.init_state(cfg, 1) for _ in range(3)]
    for t, ids in enumerate([[0, 1, 2], [12, 5, 5], [3, 3, -1], [7, 0, 9]]):
        logits, state = together(np.array(ids, dtype=np.intp), state)
        for r in range(3):
            one, alone[r] = apart(np.array(ids[r : r + 1], dtype=np.intp), alone[r])
            assert np.array_equal(one[0], logits[r]), (t, r)
            for s, a in zip(state, alone[r]):
                assert all(np.array_equal(x[r], y[0]) for x, y in zip(s, a)), (t, r)


@needs_fused
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_fused_model_step_takes_any_ids_and_state_a_numpy_step_takes(cell):
    cfg, params = _model(cell, 9, 6, 2)
    fast, ref = M.stepper(params, cfg), _numpy_kernels(cfg, params)
    one, three = M.init_state(cfg, 1), M.init_state(cfg, 3)
    _, one = fast(np.array([4], dtype=np.intp), one)
    for a in one[0]:
        a += 0.25  # the caller changes the values of the state it was handed: they are read
    strided = tuple(tuple(np.zeros((3, 12), np.float32)[:, ::2] + a for a in s) for s in three)
    as64 = tuple(tuple(a.astype(np.float64) for a in s) for s in three)
    cases = [(one, np.array([4])), (three, np.array([1, 8, 0], np.int32)), (three, [2, 2, 5]),
             (three, np.arange(6)[::2]), (one, np.array([8])),  # the stream count changes too
             (strided, np.arange(3)), (as64, np.arange(3))]  # these two: NumPy's step
    for state, ids in cases:
        (a, sa), (b, sb) = fast(ids, state), ref(np.asarray(ids), state)
        top = max(1.0, np.max(np.abs(b)))
        assert_close(a, b, rtol=0, atol=2e-5 * top, what=f"ids {ids!r}")
        for x, y in zip((x for s in sa for x in s), (y for s in sb for y in s)):
            assert_close(x, y, rtol=0, atol=1e-5, what=f"state, ids {ids!r}")


@needs_fused
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_an_id_outside_the_vocabulary_is_an_index_error_not_a_read_past_the_table(cell):
    cfg, params = _model(cell, 5, 4, 2)
    fast = M.stepper(params, cfg)
    state = M.init_state(cfg, 2)
    for bad in ([0, 5], [-6, 1], [2**40, 0]):
        with pytest.raises(IndexError, match="out of bounds for the 5 rows"):
            fast(np.array(bad, dtype=np.intp), state)
        with pytest.raises(IndexError):
            _numpy_kernels(cfg, params)(np.array(bad, dtype=np.intp), state)  # as NumPy's
    assert all(not a.any() for s in state for a in s)


@needs_fused
def test_model_parameters_that_do_not_fit_are_refused_when_the_step_is_made():
    cfg, params = _model("lstm", 5, 4, 2)
    for name, bad in [("l1.Wx", np.zeros((4, 12), np.float32)), ("l0.b", np.zeros(15, np.float32)),
                      ("by", np.zeros(4, np.float32))]:
        with pytest.raises(ValueError, match="do not fit"):
            M.stepper({**params, name: bad}, cfg)
    p64 = {k: v.astype(np.float64) for k, v in params.items()}  # not the kernels' kind
    assert M.stepper(p64, cfg).__qualname__.startswith("stepper")


def _every_kernel(cell, kernels):
    """Everything a chunk's forward and backward and a single step of `cell` return, float32."""
    args = _chunk(cell, 6, 2, 5)
    step = cells.cell(cell, kernels).step(args[0][0], args[1], args[2])
    return {**_run(cell, kernels, *args), **{f"step{k}": v for k, v in enumerate(step)}}


def test_unknown_or_unbuildable_kernels_are_config_errors(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="kernels must be one of auto, numpy, fused"):
        cells.choose_kernels("cuda", "lstm", "float32")
    for asked in ("cuda", "auto"):  # a cell runs concrete kernels, chosen before
        with pytest.raises(ConfigError, match="kernels must be one of numpy, fused"):
            cells.cell("lstm", asked)
    with pytest.raises(ConfigError, match="kernels must be one of numpy, fused, not 'auto'"):
        M.ModelConfig(kernels="auto")  # a model runs concrete kernels; "auto" is chosen before
    want = {cell: _every_kernel(cell, "numpy") for cell in cells.CELLS}
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))
    fused.reset()
    try:
        with pytest.raises(ConfigError, match="fused kernels are not available: no working C "
                                              "compiler"):
            cells.cell("lstm", "fused")
        assert cells.cell("lstm", "numpy") is cells.CELLS["lstm"]  # NumPy's need nothing built
        for cell in cells.CELLS:  # and "auto" computes what NumPy does, bit for bit
            assert cells.choose_kernels("auto", cell, "float32") == "numpy"
            got = _every_kernel(cell, cells.choose_kernels("auto", cell, "float32"))
            for name in want[cell]:
                assert np.array_equal(got[name], want[cell][name]), f"{cell} {name}"
    finally:
        fused.reset()


@needs_fused
def test_a_python_whose_arrays_the_steps_cannot_read_gets_no_kernels(monkeypatch):
    # the single steps read each array's data pointer at fused.DATA_OFFSET; where that is not
    # where NumPy keeps it, the library is refused at load, so nothing reads the wrong memory
    monkeypatch.setattr(fused, "DATA_OFFSET", fused.DATA_OFFSET - 8)
    fused.reset()
    try:
        assert fused.available().startswith("cannot find NumPy arrays' data in memory")
        with pytest.raises(ConfigError, match="cannot find NumPy arrays' data"):
            cells.cell("lstm", "fused")
        assert cells.choose_kernels("auto", "lstm", "float32") == "numpy"
    finally:
        monkeypatch.undo()
        fused.reset()
    assert fused.available() is None


def test_the_kernels_are_a_setting_of_the_config_not_of_the_process():
    """Two configs, each with its kernels, in one process and in any order: each runs its own
    (the process-wide switch this replaced would make the second undo the first); the choice
    goes to the workers in to_dict, which says nothing of NumPy's, so older configs still read."""
    base = M.ModelConfig(9, "lstm", 6, 1, 0.0, "float32")
    assert "kernels" not in base.to_dict()
    assert M.ModelConfig.from_dict(base.to_dict()) == base
    f = M.ModelConfig(9, "lstm", 6, 1, 0.0, "float32", "fused")
    assert f.to_dict()["kernels"] == "fused" and M.ModelConfig.from_dict(f.to_dict()) == f
    if WHY is not None:
        pytest.skip(f"fused kernels unavailable: {WHY}")
    params = M.init_params(base, np.random.default_rng(0))
    ids = np.random.default_rng(1).integers(0, 9, (3, 12))
    batch, state = (ids[:, :-1], ids[:, 1:]), M.init_state(base, 3)
    a = [M.loss_and_grads(params, c, batch, state)[1]["l0.Wh"] for c in (base, f, base, f)]
    assert np.array_equal(a[0], a[2]) and np.array_equal(a[1], a[3])
    assert not np.array_equal(a[0], a[1])
    assert_close(a[1], a[0], rtol=1e-4, atol=1e-6, what="fused against numpy")


@needs_fused
def test_a_broken_compile_is_reported_and_nothing_half_written_is_left(monkeypatch, tmp_path):
    bad = tmp_path / "bad.c"
    bad.write_text("this is not C\n")
    monkeypatch.setattr(fused, "SOURCE", bad)
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))
    with pytest.raises(fused.Unavailable, match="could not compile bad.c"):
        fused.build()
    assert list((tmp_path / "cache").iterdir()) == []


@needs_fused
def test_the_library_is_built_once_per_source_and_cpu(monkeypatch, tmp_path):
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path))
    first = fused.build()
    mtime = first.stat().st_mtime_ns
    assert fused.build() == first and first.stat().st_mtime_ns == mtime  # cached
    assert [p.name for p in tmp_path.iterdir()] == [first.name]


@needs_fused
@pytest.mark.skipif(B.openblas() is None, reason="BLAS threads not controllable")
def test_worker_processes_run_the_callers_kernels(monkeypatch):
    monkeypatch.setattr(P, "MIN_SLICE", 1)
    rng = np.random.default_rng(0)
    params = M.init_params(M.ModelConfig(9, "lstm", 6, 2, 0.0, "float32"), rng)
    ids = rng.integers(0, 9, (4, 11))
    out = {}
    for name in ("numpy", "fused"):
        cfg = M.ModelConfig(9, "lstm", 6, 2, 0.0, "float32", name)
        batch, state = (ids[:, :-1], ids[:, 1:]), M.init_state(cfg, 4)
        with P.Workers(2) as w:
            out[name] = P.loss_and_grads(M, params, cfg, batch, state, None, w)[1]
            assert len(w._procs) == 1  # the work really was split
        alone = M.loss_and_grads(params, cfg, batch, state)[1]
        for k in params:
            assert_close(out[name][k], alone[k], rtol=1e-5, atol=1e-6, what=f"{name} {k}")
    assert any(not np.array_equal(out["numpy"][k], out["fused"][k]) for k in params)


@needs_fused
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_a_fused_run_saves_its_kernels_and_resumes_exactly(tmp_path, cell):
    corpus = tmp_path / "austen.txt"
    corpus.write_text(AUSTEN)
    kw = {"dtype": "float32", "kernels": "fused", "dropout": 0.2, "steps": 12, "eval_every": 4,
          "cell": cell}
    train(tiny(corpus, tmp_path / "full", **kw), threads=1)
    train(tiny(corpus, tmp_path / "part", **{**kw, "steps": 7}), threads=1)
    saved = resume_config(tmp_path / "part", steps=12)
    assert saved.kernels == "fused"
    assert C.load(tmp_path / "part" / "last.npz").meta["train"]["fused_cells"] == \
        ["lstm", "gru", "rnn"]
    train(saved, resume=True, threads=1)
    full, part = C.load(tmp_path / "full" / "last.npz"), C.load(tmp_path / "part" / "last.npz")
    for k in full.params:
        assert np.array_equal(part.params[k], full.params[k]), k
    assert part.model.kernels == "numpy"  # not saved with the parameters: "train" has it
    build = part.meta["numerics"]["kernels_build"]  # the library file that did the sums
    assert build and (fused.cache_dir() / f"fused-{build}.so").is_file()
    numpy_run = train(tiny(corpus, tmp_path / "np", **{**kw, "kernels": "numpy"}), threads=1)
    assert C.load(numpy_run.run_dir / "last.npz").meta["train"]["kernels"] == "numpy"
    assert not np.array_equal(C.load(tmp_path / "np" / "last.npz").params["l0.Wh"],
                              full.params["l0.Wh"])


@needs_fused
def test_a_damaged_cached_library_is_rebuilt(monkeypatch, tmp_path):
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path))
    path = fused.build()
    path.write_bytes(b"\x7fELF truncated")  # what a full disk or a killed copy leaves
    stale, busy = tmp_path / ".fused-old.so", tmp_path / ".fused-busy.so"
    stale.write_bytes(b"")
    busy.write_bytes(b"")  # another process's build, in progress
    os.utime(stale, (0, 0))
    fused.reset()
    try:
        assert fused.available() is None
        assert path.stat().st_size > 1000
        assert not stale.exists()  # a killed build's temporary file, an hour old, is removed
        assert busy.exists()
        x = np.linspace(-3, 3, 7, dtype=np.float32)
        np.testing.assert_allclose(fused.exp(x), np.exp(x), rtol=1e-6)
    finally:
        fused.reset()


@needs_fused
def test_a_cached_library_without_a_kernel_says_delete_it(monkeypatch, tmp_path):
    # the loader would hand this process the same library again, so it is not rebuilt in place
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path))
    path = fused.build()
    src = tmp_path / "old.c"
    src.write_text("void exp_array(long n, const float *x, float *y) {}\n")
    fused.subprocess.run([*fused._compiler(), *fused.FLAGS, "-o", str(path), str(src)], check=True)
    fused.reset()
    try:
        assert fused.available() == f"{path} has no lstm_forward_loop; delete it to rebuild"
    finally:
        fused.reset()


def test_a_failed_build_is_tried_once_per_process(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    calls = []
    real = fused.subprocess.run
    monkeypatch.setattr(fused.subprocess, "run", lambda *a, **k: calls.append(a) or real(*a, **k))
    fused.reset()
    try:
        first = fused.available()
        assert first.startswith("no working C compiler") and fused.available() == first
        with pytest.raises(ConfigError, match="no working C compiler"):
            cells.cell("gru", "fused")
        assert len(calls) == 1
    finally:
        fused.reset()


@needs_fused
def test_the_cli_option_trains_with_the_fused_kernels(tmp_path):
    corpus = tmp_path / "austen.txt"
    corpus.write_text(AUSTEN)
    for cell in ("lstm", "gru", "rnn"):
        runs = {}
        for k in ("fused", "numpy"):
            r = invoke("train", corpus, "--out", tmp_path / cell / k, "--steps", 3, *TINY,
                       "--cell", cell, "--dtype", "float32", "--kernels", k)
            assert r.exit_code == 0, r.stderr
            runs[k] = C.load(tmp_path / cell / k / "last.npz")
            assert runs[k].meta["train"]["kernels"] == k
        # the same run but for the kernels: the C code really ran (the last bits differ)
        assert not np.array_equal(runs["fused"].params["l0.Wh"], runs["numpy"].params["l0.Wh"])
        np.testing.assert_allclose(runs["fused"].params["l0.Wh"], runs["numpy"].params["l0.Wh"],
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell,recorded", [("gru", None), ("rnn", None),
                                           ("rnn", ["lstm", "gru"])])
def test_a_run_saved_when_fused_did_not_cover_its_cell_resumes_exactly_on_numpy(tmp_path, cell,
                                                                               recorded):
    # "fused" was once accepted for any cell and recorded, but the cells it had no kernels for
    # then (recorded in "fused_cells"; before that was recorded, all but the LSTM) ran NumPy's
    # loops: such a run must resume on NumPy's loops, bit for bit
    corpus = tmp_path / "austen.txt"
    corpus.write_text(AUSTEN)
    kw = {"dtype": "float32", "dropout": 0.2, "steps": 12, "eval_every": 4, "cell": cell,
          "kernels": "numpy"}  # what such a run ran
    train(tiny(corpus, tmp_path / "full", **kw), threads=1)
    train(tiny(corpus, tmp_path / "part", **{**kw, "steps": 7}), threads=1)
    last = tmp_path / "part" / "last.npz"
    ck = C.load(last)
    assert ck.meta["train"].pop("fused_cells") == ["lstm", "gru", "rnn"]  # what this version
    if recorded is not None:                                             # records
        ck.meta["train"]["fused_cells"] = recorded  # what the version before the RNN's recorded
    ck.meta["train"]["kernels"] = "fused"  # what the older version recorded
    C.save(last, ck)
    saved = resume_config(tmp_path / "part", steps=12)
    assert saved.kernels == "numpy"
    train(saved, resume=True, threads=1)
    full, part = C.load(tmp_path / "full" / "last.npz"), C.load(last)
    for k in full.params:
        assert np.array_equal(part.params[k], full.params[k]), k


# --- the default: the compiled kernels where they can be had, NumPy's otherwise ---------------


def _first_line(result) -> str:
    return next(ln for ln in result.stderr.splitlines() if ln.startswith("training "))


def test_by_default_train_uses_the_compiled_kernels_where_they_serve(tmp_path):
    """No --kernels: float32 models of every cell get the fused kernels (when they build here),
    float64 NumPy's; the first line says which and why, and the checkpoint records the
    concrete choice (never "auto"), which --resume then keeps."""
    corpus = tmp_path / "austen.txt"
    corpus.write_text(AUSTEN)
    f32 = [a if a != "float64" else "float32" for a in TINY]
    want = "numpy" if WHY else "fused"
    for name, args, kernels, note in (
            ("lstm32", [*f32, "--cell", "lstm"], want, WHY),
            ("gru32", [*f32, "--cell", "gru"], want, WHY),
            ("lstm64", [*TINY, "--cell", "lstm"], "numpy", "float32 only"),
            ("rnn32", [*f32, "--cell", "rnn"], want, WHY)):
        r = invoke("train", corpus, "--out", tmp_path / name, "--steps", 2, *args)
        assert r.exit_code == 0, r.stderr
        line = _first_line(r)
        assert f", {kernels} kernels" in line, line
        assert (note or "(") in line if kernels == "numpy" else "(" not in line[-30:], line
        assert C.load(tmp_path / name / "last.npz").meta["train"]["kernels"] == kernels
        assert resume_config(tmp_path / name).kernels == kernels


def test_without_a_compiler_the_default_trains_on_numpy_and_says_why(tmp_path, monkeypatch):
    """A user who did not ask for the kernels never meets an error for want of a compiler
    (the build is made to fail: CC names a compiler that does not exist); one who asked for them
    gets one line saying why."""
    corpus = tmp_path / "austen.txt"
    corpus.write_text(AUSTEN)
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))
    f32 = [a if a != "float64" else "float32" for a in TINY]
    fused.reset()
    try:
        r = invoke("train", corpus, "--out", tmp_path / "a", "--steps", 2, *f32, "--cell", "lstm")
        assert r.exit_code == 0, r.stderr
        assert "Traceback" not in r.output and "error:" not in r.stderr.lower()
        assert ", numpy kernels (no working C compiler (" in _first_line(r)
        assert C.load(tmp_path / "a" / "last.npz").meta["train"]["kernels"] == "numpy"
        r = invoke("sample", "-c", tmp_path / "a", "--length", 20, "--seed", 1)
        assert r.exit_code == 0 and r.stdout, r.stderr  # inference's default, likewise
        one_line_error(invoke("train", corpus, "--out", tmp_path / "b", "--steps", 2, *f32,
                              "--cell", "lstm", "--kernels", "fused"),
                       "fused kernels are not available: no working C compiler")
    finally:
        fused.reset()


def test_a_run_saved_before_the_kernels_were_recorded_resumes_on_numpy(tmp_path):
    corpus = tmp_path / "austen.txt"
    corpus.write_text(AUSTEN)
    train(tiny(corpus, tmp_path / "r", dtype="float32", kernels="numpy", steps=4), threads=1)
    last = tmp_path / "r" / "last.npz"
    ck = C.load(last)
    del ck.meta["train"]["kernels"]  # as the versions before --kernels wrote it
    C.save(last, ck)
    assert resume_config(tmp_path / "r").kernels == "numpy"  # not the new default, "auto"
