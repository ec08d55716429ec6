"""The optional compiled LSTM kernels (charrnn.nn.fused) against the NumPy path and float64.

Skipped where they cannot be built (no C compiler); everything else runs without them."""

import os

import numpy as np
import pytest

from charrnn import checkpoint as C
from charrnn.errors import ConfigError
from charrnn.models import lm as M
from charrnn.nn import cells, fused
from charrnn.parallel import blas as B
from charrnn.parallel import workers as P
from charrnn.train.trainer import resume_config, train
from tests.helpers import AUSTEN, TINY, assert_close, invoke, one_line_error, tiny

WHY = fused.available()
needs_fused = pytest.mark.skipif(WHY is not None, reason=f"fused kernels unavailable: {WHY}")


def _chunk(cell, T, N, H, dtype=np.float32, seed=0):
    """xp, state, params, dhs, dstate of one layer's chunk of `cell` ("lstm" or "gru")."""
    rng = np.random.default_rng(seed)
    r = lambda *s, k=1.0: (rng.standard_normal(s) * k).astype(dtype)
    G = cells.CELLS[cell].gates * H
    n_state = 2 if cell == "lstm" else 1
    p = {"Wh": r(H, G, k=H ** -0.5), **({"bhn": r(H, k=0.5)} if cell == "gru" else {})}
    return (r(T, N, G, k=2.0), tuple(r(N, H, k=0.5) for _ in range(n_state)), p, r(T, N, H),
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
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("T,N,H", [(1, 1, 1), (7, 3, 5), (9, 2, 17), (16, 16, 64)])
def test_the_fused_loops_agree_with_numpys_to_float32_rounding(cell, T, N, H):
    args = _chunk(cell, T, N, H)
    want, got = _run(cell, "numpy", *args), _run(cell, "fused", *args)
    # the caches have one layout: either pass of one kind, the other pass of the other
    mixed = [_run(cell, "fused", *args, backward_with="numpy"),
             _run(cell, "numpy", *args, backward_with="fused")]
    for name in want:
        scale = np.max(np.abs(want[name]))
        assert_close(got[name], want[name], rtol=0, atol=2e-6 * scale, what=name)
        for m in mixed:
            assert_close(m[name], want[name], rtol=0, atol=2e-6 * scale, what=f"mixed {name}")
    assert not np.array_equal(got["dWh"], want["dWh"])  # a different computation really ran


@needs_fused
def test_float64_and_strided_arrays_take_the_numpy_path_bit_for_bit():
    for cell in ("lstm", "gru"):
        args = _chunk(cell, 5, 3, 4, dtype=np.float64)
        want, got = _run(cell, "numpy", *args), _run(cell, "fused", *args)
        for name in want:
            assert np.array_equal(got[name], want[name]), f"{cell} {name}"
    for cell in ("lstm", "gru"):
        xp, state, p, dhs, dstate = _chunk(cell, 5, 3, 4)
        strided = np.zeros((5, 3, 8), np.float32)[..., ::2]
        strided[...] = dhs  # the same values, not contiguous: the backward loop falls back
        _, _, cache = cells.cell(cell, "fused").forward(xp.copy(), state, p)
        a = cells.cell(cell, "fused").backward(strided, dstate, cache)
        b = cells.cell(cell, "numpy").backward(strided, dstate, cache)
        assert np.array_equal(a[0], b[0]), cell


def test_unknown_or_unbuildable_kernels_are_config_errors(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="kernels must be one of auto, numpy, fused"):
        cells.choose_kernels("cuda", "lstm", "float32")
    for asked in ("cuda", "auto"):  # a cell runs concrete kernels, chosen before
        with pytest.raises(ConfigError, match="kernels must be one of numpy, fused"):
            cells.cell("lstm", asked)
    with pytest.raises(ConfigError, match="kernels must be one of numpy, fused, not 'auto'"):
        M.ModelConfig(kernels="auto")  # a model runs concrete kernels; "auto" is chosen before
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))
    fused.reset()
    try:
        with pytest.raises(ConfigError, match="fused kernels are not available: no working C "
                                              "compiler"):
            cells.cell("lstm", "fused")
        assert cells.cell("lstm", "numpy") is cells.CELLS["lstm"]  # NumPy's need nothing built
    finally:
        fused.reset()


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
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_fused_run_saves_its_kernels_and_resumes_exactly(tmp_path, cell):
    corpus = tmp_path / "austen.txt"
    corpus.write_text(AUSTEN)
    kw = {"dtype": "float32", "kernels": "fused", "dropout": 0.2, "steps": 12, "eval_every": 4,
          "cell": cell}
    train(tiny(corpus, tmp_path / "full", **kw), threads=1)
    train(tiny(corpus, tmp_path / "part", **{**kw, "steps": 7}), threads=1)
    saved = resume_config(tmp_path / "part", steps=12)
    assert saved.kernels == "fused"
    train(saved, resume=True, threads=1)
    full, part = C.load(tmp_path / "full" / "last.npz"), C.load(tmp_path / "part" / "last.npz")
    for k in full.params:
        assert np.array_equal(part.params[k], full.params[k]), k
    assert part.model.kernels == "numpy"  # not saved with the parameters: "train" has it
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
        assert fused.available() == f"{path} has no lstm_forward_step; delete it to rebuild"
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
    for cell in ("lstm", "gru"):
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


def test_fused_kernels_for_a_cell_they_do_not_cover_is_a_one_line_error(tmp_path):
    corpus = tmp_path / "austen.txt"
    corpus.write_text(AUSTEN)
    one_line_error(invoke("train", corpus, "--out", tmp_path / "r", "--steps", 3, *TINY,
                          "--cell", "rnn", "--kernels", "fused"), "LSTM and GRU cells only", "rnn")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_a_run_saved_when_fused_did_not_cover_its_cell_resumes_exactly_on_numpy(tmp_path, cell):
    # before the GRU kernels, "fused" was accepted for any cell and recorded, but GRU and RNN ran
    # NumPy's loops: such a run must resume on NumPy's loops, bit for bit
    corpus = tmp_path / "austen.txt"
    corpus.write_text(AUSTEN)
    kw = {"dtype": "float32", "dropout": 0.2, "steps": 12, "eval_every": 4, "cell": cell,
          "kernels": "numpy"}  # what such a run ran
    train(tiny(corpus, tmp_path / "full", **kw), threads=1)
    train(tiny(corpus, tmp_path / "part", **{**kw, "steps": 7}), threads=1)
    last = tmp_path / "part" / "last.npz"
    ck = C.load(last)
    assert ck.meta["train"].pop("fused_cells") == ["lstm", "gru"]  # what this version records
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
    """No --kernels: float32 LSTM and GRU get the fused kernels (when they build here), float64
    and the RNN NumPy's; the first line says which and why, and the checkpoint records the
    concrete choice (never "auto"), which --resume then keeps."""
    corpus = tmp_path / "austen.txt"
    corpus.write_text(AUSTEN)
    f32 = [a if a != "float64" else "float32" for a in TINY]
    want = "numpy" if WHY else "fused"
    for name, args, kernels, note in (
            ("lstm32", [*f32, "--cell", "lstm"], want, WHY),
            ("gru32", [*f32, "--cell", "gru"], want, WHY),
            ("lstm64", [*TINY, "--cell", "lstm"], "numpy", "float32 only"),
            ("rnn32", [*f32, "--cell", "rnn"], "numpy", "none for the rnn cell")):
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
