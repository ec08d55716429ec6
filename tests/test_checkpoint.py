"""Checkpoints are data: round trip, atomic writes, and every kind of bad file refused cleanly."""

import io
import os
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charrnn import checkpoint as C
from charrnn.data.vocab import Vocab
from charrnn.errors import CheckpointError
from charrnn.models import lm as M
from tests.helpers import edit_npz, set_meta


def make(rng, cell="gru", dtype="float32"):
    vocab = Vocab.from_text("hello world\n")
    cfg = M.ModelConfig(vocab_size=len(vocab), cell=cell, hidden=6, layers=2, dtype=dtype)
    return C.Checkpoint(cfg, vocab, M.init_params(cfg, rng),
                        meta={"step": 7, "history": [{"step": 7, "kind": "eval", "val_bpc": 3.5}]},
                        arrays={"opt/m.Wy": np.ones((6, len(vocab)))})


def test_round_trip(tmp_path, rng):
    ck = make(rng)
    path = tmp_path / "a.npz"
    C.save(path, ck)
    back = C.load(path)
    assert back.model == ck.model and back.vocab == ck.vocab
    assert back.meta == ck.meta
    assert list(back.params) == list(M.param_shapes(ck.model))
    for k in ck.params:
        np.testing.assert_array_equal(back.params[k], ck.params[k])
        assert back.params[k].dtype == np.float32
    np.testing.assert_array_equal(back.arrays["opt/m.Wy"], ck.arrays["opt/m.Wy"])
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_resolve_run_directory(tmp_path, rng):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        C.resolve(tmp_path)
    C.save(tmp_path / "last.npz", make(rng))
    assert C.resolve(tmp_path).name == "last.npz"
    C.save(tmp_path / "best.npz", make(rng))
    assert C.resolve(tmp_path).name == "best.npz"
    assert C.resolve(tmp_path, prefer="last").name == "last.npz"


@pytest.mark.parametrize("case, message", [
    ("missing", "not found"),
    ("directory", "directory"),
    ("truncated", "cannot read checkpoint"),
    ("random", "not an .npz archive"),
    ("text", "not an .npz archive"),
    ("bare pickle", "not an .npz archive"),
    ("empty", "cannot read checkpoint"),
    ("pickle", "pickled objects"),
    ("newer", "format version 99"),
    ("not ours", "not a charrnn checkpoint"),
    ("shape", "parameter l0.Wh is float32(6, 18), the configuration needs float32(6, 24)"),
    ("missing param", "missing: Wy"),
    ("vocab", "vocabulary has"),
    ("bad config", "unknown cell"),
])
def test_bad_checkpoints_are_refused_with_one_line(tmp_path, rng, case, message):
    path = tmp_path / "ck.npz"
    C.save(path, make(rng, cell="lstm"))
    if case == "missing":
        path = tmp_path / "nope.npz"
    elif case == "directory":
        path = tmp_path
    elif case == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case == "random":
        path.write_bytes(b"\x00" + np.random.default_rng(0).bytes(5000))
    elif case == "text":  # NumPy alone would call this "pickled data"
        path.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n")
    elif case == "bare pickle":
        path.write_bytes(b"\x80\x04K\x01.")  # pickle.dumps(1): refused unread
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "pickle":
        buf = io.BytesIO()
        np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
        with zipfile.ZipFile(path, "a") as z:
            z.writestr("opt/evil.npy", buf.getvalue())
    elif case == "newer":
        edit_npz(path, path, lambda d: set_meta(d, version=99))
    elif case == "not ours":
        edit_npz(path, path, lambda d: set_meta(d, format="something-else"))
    elif case == "shape":
        edit_npz(path, path, lambda d: d.__setitem__("param/l0.Wh", np.zeros((6, 18), np.float32)))
    elif case == "missing param":
        edit_npz(path, path, lambda d: d.pop("param/Wy"))
    elif case == "vocab":
        edit_npz(path, path, lambda d: set_meta(d, vocab=["a", "b"]))
    elif case == "bad config":
        edit_npz(path, path, lambda d: set_meta(d, model={"vocab_size": 9, "cell": "cnn"}))
    with pytest.raises(CheckpointError) as e:
        C.load(path)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_pickle_is_never_unpickled(tmp_path, rng, monkeypatch):
    import pickle
    path = tmp_path / "ck.npz"
    C.save(path, make(rng))
    buf = io.BytesIO()
    np.save(buf, np.array([1, "x"], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("opt/x.npy", buf.getvalue())
    calls = []
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: calls.append(a))
    with pytest.raises(CheckpointError):
        C.load(path)
    assert calls == []


def test_failed_write_leaves_old_file(tmp_path, rng, monkeypatch):
    path = tmp_path / "ck.npz"
    first = make(rng)
    C.save(path, first)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(CheckpointError, match="No space left on device"):
        C.save(path, make(rng))
    monkeypatch.undo()
    np.testing.assert_array_equal(C.load(path).params["Wy"], first.params["Wy"])
    assert os.listdir(tmp_path) == ["ck.npz"]  # no temporary file left behind


def test_unwritable_directory(tmp_path, rng):
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        C.save(tmp_path / "no" / "such" / "dir" / "ck.npz", make(rng))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_raise_only_checkpoint_error(tmp_path, data):
    path = tmp_path / "fuzz.npz"
    path.write_bytes(data)
    with pytest.raises(CheckpointError):
        C.load(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 10**9), st.integers(1, 200))
def test_corrupted_real_checkpoints_raise_only_checkpoint_error(tmp_path, seed, nflips):
    """Flip random bytes inside a real checkpoint: loading either succeeds with valid shapes
    (a flip inside array data) or raises CheckpointError; nothing else escapes."""
    path = tmp_path / "ck.npz"
    C.save(path, make(np.random.default_rng(1)))
    raw = bytearray(path.read_bytes())
    r = np.random.default_rng(seed)
    for i in r.integers(0, len(raw), size=nflips):
        raw[i] = int(r.integers(0, 256))
    path.write_bytes(bytes(raw))
    try:
        ck = C.load(path)
    except CheckpointError:
        return
    assert list(ck.params) == list(M.param_shapes(ck.model))


def test_written_files_get_ordinary_permissions(tmp_path, rng):
    old = os.umask(0o022)
    try:
        C.save(tmp_path / "ck.npz", make(rng))
    finally:
        os.umask(old)
    assert (tmp_path / "ck.npz").stat().st_mode & 0o777 == 0o644


def test_a_loaded_model_runs_the_kernels_its_user_chooses_and_none_are_saved(tmp_path, rng,
                                                                             monkeypatch):
    """The kernels are how a model computes, chosen by whoever runs it (Checkpoint.running),
    never read from the file: a checkpoint keeps the parameters' settings only."""
    from charrnn.errors import ConfigError
    from charrnn.nn import fused

    ck = make(rng, cell="lstm")
    assert ck.running("numpy").model == ck.model and ck.model.kernels == "numpy"
    assert make(rng, cell="lstm", dtype="float64").running("auto").model.kernels == "numpy"
    here = "numpy" if fused.available() else "fused"
    assert make(rng, cell="rnn").running("auto").model.kernels == here  # every cell has kernels
    if fused.available() is None:
        run = ck.running("fused")
        assert run.model.kernels == "fused" and ck.model.kernels == "numpy"  # a copy
        C.save(tmp_path / "f.npz", run)
        assert C.load(tmp_path / "f.npz").model == ck.model
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))
    fused.reset()
    try:  # no compiler: "auto" quietly runs NumPy's, "fused" says why it cannot
        assert ck.running("auto").model.kernels == "numpy"
        with pytest.raises(ConfigError, match="no working C compiler"):
            ck.running("fused")
    finally:
        fused.reset()
