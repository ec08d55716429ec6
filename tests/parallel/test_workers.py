"""charrnn.parallel: a chunk's streams split across worker processes compute what one process
computes."""

import io
import os
import signal
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import checkpoint as C
from charrnn.cli import cli
from charrnn.errors import CharrnnError, ConfigError
from charrnn.models import lm as E
from charrnn.models import lm as M
from charrnn.parallel import blas as B
from charrnn.parallel import workers as P
from charrnn.train.trainer import TrainConfig, train
from tests.helpers import assert_close

needs_openblas = pytest.mark.skipif(B.openblas() is None, reason="BLAS threads not controllable")


@pytest.fixture
def split_small(monkeypatch):
    """Split even the tiny test models, which by default stay in one thread (MIN_SLICE)."""
    monkeypatch.setattr(P, "MIN_SLICE", 1)


def _setup(cell, layers, N, T=6, V=7, H=5, dropout=0.3, seed=3):
    cfg = M.ModelConfig(V, cell, H, layers, dropout, "float64")
    rng = np.random.default_rng(seed)
    params = M.init_params(cfg, rng)
    ids = rng.integers(0, V, (N, T + 1))
    state = tuple(tuple(rng.standard_normal((N, H)) for _ in s) for s in M.init_state(cfg, N))
    return cfg, params, ids, state


@needs_openblas
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("threads", [2, 3])
def test_a_split_chunk_computes_the_whole_chunks_loss_gradients_and_state(cell, threads,
                                                                          split_small):
    cfg, params, ids, state = _setup(cell, 2, N=5)  # 5 streams: uneven slices
    r1, r2 = np.random.default_rng(9), np.random.default_rng(9)
    want = M.loss_and_grads(params, cfg, (ids[:, :-1], ids[:, 1:]), state, r1)
    with P.Workers(threads) as w:
        assert w.n == threads
        got = P.loss_and_grads(M, params, cfg, (ids[:, :-1], ids[:, 1:]), state, r2, w)
    assert got[0] == pytest.approx(want[0], rel=1e-13)
    assert set(got[1]) == set(params)
    for name in params:
        assert_close(got[1][name], want[1][name], rtol=1e-11, atol=1e-14, what=name)
    for k in range(cfg.layers):
        for a, b in zip(got[2][k], want[2][k]):
            assert_close(a, b, rtol=1e-13, atol=1e-15, what=f"state {k}")
    # the same dropout masks were drawn: both generators have moved alike
    assert r1.random() == r2.random()


def test_dropout_changes_the_gradients_so_the_comparison_above_can_fail():
    cfg, params, ids, state = _setup("lstm", 2, N=4)
    a = M.loss_and_grads(params, cfg, (ids[:, :-1], ids[:, 1:]), state, np.random.default_rng(1))
    b = M.loss_and_grads(params, cfg, (ids[:, :-1], ids[:, 1:]), state, np.random.default_rng(2))
    assert not np.allclose(a[1]["l0.Wh"], b[1]["l0.Wh"])


@needs_openblas
def test_the_callers_slice_runs_with_single_threaded_blas_which_gets_its_threads_back(
        split_small, monkeypatch):
    blas = P.openblas()
    before = blas.get()
    seen, real = [], M.loss_and_grads  # the caller's own slice (workers run their own copy)
    monkeypatch.setattr(M, "loss_and_grads",
                        lambda *a, **k: seen.append(blas.get()) or real(*a, **k))
    cfg, params, ids, state = _setup("gru", 1, N=4, dropout=0.0)
    with P.Workers(2) as w:
        P.loss_and_grads(M, params, cfg, (ids[:, :-1], ids[:, 1:]), state, None, w)
    assert seen == [1] and blas.get() == before


@needs_openblas
def test_worker_failures_are_one_line_errors_and_the_workers_recover(split_small):
    cfg, params, ids, state = _setup("lstm", 2, N=4, dropout=0.0)
    want = M.loss_and_grads(params, cfg, (ids[:, :-1], ids[:, 1:]), state)
    with P.Workers(2) as w:
        with pytest.raises(CharrnnError, match="worker process failed: ValueError: unknown"):
            w.map(M, params, cfg, [({"op": "bogus"}, [])], lambda: 0)
        got = P.loss_and_grads(M, params, cfg, (ids[:, :-1], ids[:, 1:]), state, None, w)
        assert got[0] == pytest.approx(want[0], rel=1e-13)  # the same worker, still in step
        proc = w._procs[0]
        proc.send_signal(signal.SIGINT)  # Ctrl-C reaches the whole process group: ignored
        proc.send_signal(signal.SIGTERM)  # so does a scheduler's SIGTERM to every process
        got = P.loss_and_grads(M, params, cfg, (ids[:, :-1], ids[:, 1:]), state, None, w)
        assert proc.poll() is None and got[0] == pytest.approx(want[0], rel=1e-13)
        proc.kill()
        proc.wait()
        with pytest.raises(CharrnnError, match="worker process died"):
            P.loss_and_grads(M, params, cfg, (ids[:, :-1], ids[:, 1:]), state, None, w)
        got = P.loss_and_grads(M, params, cfg, (ids[:, :-1], ids[:, 1:]), state, None, w)
        assert got[0] == pytest.approx(want[0], rel=1e-13)  # new workers were started
        procs = list(w._procs)
    assert all(p.poll() is not None for p in procs)  # close() ended them


@needs_openblas
def test_workers_leave_no_shared_file_behind(split_small, tmp_path, monkeypatch):
    real = tempfile.mkstemp
    monkeypatch.setattr(P.tempfile, "mkstemp", lambda prefix, dir: real(prefix=prefix, dir=tmp_path))
    cfg, params, ids, state = _setup("rnn", 1, N=4, dropout=0.0)
    with P.Workers(2) as w:
        P.loss_and_grads(M, params, cfg, (ids[:, :-1], ids[:, 1:]), state, None, w)
        assert list(tmp_path.iterdir()) == []  # unlinked once the workers had mapped it


def test_chunks_reuse_freed_memory_instead_of_faulting_it_in_again():
    resource = pytest.importorskip("resource")
    if not P.keep_freed_memory():
        pytest.skip("not glibc")
    cfg = M.ModelConfig(65, "lstm", 128, 2, 0.0, "float32")  # arrays of 0.5-2 MB per chunk
    rng = np.random.default_rng(0)
    params = M.init_params(cfg, rng)
    ids = rng.integers(0, 65, (16, 65))
    state = M.init_state(cfg, 16)
    for _ in range(2):
        M.loss_and_grads(params, cfg, (ids[:, :-1], ids[:, 1:]), state)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        M.loss_and_grads(params, cfg, (ids[:, :-1], ids[:, 1:]), state)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 200  # with glibc's defaults: about 3,500 per chunk here


@needs_openblas
def test_after_a_failed_request_every_worker_answers_its_own_next_request(split_small):
    cfg, params, ids, state = _setup("lstm", 1, N=6, dropout=0.0)
    want = M.loss_and_grads(params, cfg, (ids[:, :-1], ids[:, 1:]), state)
    with P.Workers(3) as w:
        P.loss_and_grads(M, params, cfg, (ids[:, :-1], ids[:, 1:]), state, None, w)
        good = ({"op": "score", "seq": 3}, [ids[:2, :-1], ids[:2, 1:]])
        with pytest.raises(CharrnnError, match="unknown request"):
            w.map(M, params, cfg, [({"op": "bogus"}, []), good], lambda: 0)
        got = P.loss_and_grads(M, params, cfg, (ids[:, :-1], ids[:, 1:]), state, None, w)
    assert got[0] == pytest.approx(want[0], rel=1e-13)
    for k in range(cfg.layers):
        for a, b in zip(got[2][k], want[2][k]):
            assert_close(a, b, rtol=1e-13, atol=1e-15, what="state")


@needs_openblas
def test_a_users_modules_in_the_current_directory_do_not_reach_the_workers(
        split_small, tmp_path, monkeypatch):
    for name in ("charrnn", "inspect", "numpy"):  # printing on import would break the pipes
        (tmp_path / f"{name}.py").write_text('print("12345678 not a reply")\n')
    monkeypatch.chdir(tmp_path)
    cfg, params, ids, state = _setup("rnn", 2, N=4, dropout=0.0)
    want = M.loss_and_grads(params, cfg, (ids[:, :-1], ids[:, 1:]), state)
    with P.Workers(2) as w:
        got = P.loss_and_grads(M, params, cfg, (ids[:, :-1], ids[:, 1:]), state, None, w)
        assert w.n == 2 and w.failed is None
    assert got[0] == pytest.approx(want[0], rel=1e-13)


@needs_openblas
def test_only_as_many_workers_as_slices_are_started(split_small):
    cfg, params, ids, state = _setup("gru", 1, N=2, dropout=0.0)
    with P.Workers(4) as w:
        P.loss_and_grads(M, params, cfg, (ids[:, :-1], ids[:, 1:]), state, None, w)
        assert len(w._procs) == 1


def _fails(message):
    def fail(*a, **k):
        raise OSError(28, message)
    return fail


@needs_openblas
@pytest.mark.parametrize("what, message", [("subprocess.Popen", "not allowed"),
                                           ("os.posix_fallocate", "No space left on device")])
def test_without_processes_or_shared_memory_everything_runs_here(what, message, split_small,
                                                                  monkeypatch):
    module, attr = what.split(".")
    monkeypatch.setattr(getattr(P, module), attr, _fails(message))
    cfg, params, ids, state = _setup("gru", 2, N=4, dropout=0.0)
    want = M.loss_and_grads(params, cfg, (ids[:, :-1], ids[:, 1:]), state)
    with P.Workers(2) as w:
        got = P.loss_and_grads(M, params, cfg, (ids[:, :-1], ids[:, 1:]), state, None, w)
        assert w.n == 1 and message in w.failed
    assert got[0] == want[0]
    for name in params:
        np.testing.assert_array_equal(got[1][name], want[1][name])


def test_messages_carry_arrays_exactly():
    buf = io.BytesIO()
    arrays = [np.arange(6, dtype=np.uint8).reshape(2, 3), np.linspace(0, 1, 7),
              np.ones((0, 4), dtype=np.float32), np.asfortranarray(np.eye(3, dtype=np.int64))]
    P.send(buf, {"op": "x", "w": 0.5}, arrays)
    buf.seek(0)
    head, got = P.recv(buf)
    assert head == {"op": "x", "w": 0.5}
    for a, b in zip(got, arrays):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    with pytest.raises(EOFError):
        P.recv(io.BytesIO(buf.getvalue()[:-3]))
    with pytest.raises(ValueError, match="not a charrnn message"):
        P.recv(io.BytesIO(b"12345678 not a reply\n"))


@pytest.mark.parametrize("N, n", [(32, 2), (5, 2), (7, 3), (1, 2), (2, 4)])
def test_slices_cover_the_streams_once_in_near_equal_parts(N, n):
    w = P.Workers.__new__(P.Workers)
    w.n = n
    parts = w.slices(N)  # width MIN_SLICE: every stream is worth a slice
    assert len(parts) == min(n, N)
    assert parts[0].start == 0 and parts[-1].stop == N
    assert all(a.stop == b.start for a, b in pairwise(parts))
    sizes = [s.stop - s.start for s in parts]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_small_models_stay_in_one_thread():
    w = P.Workers.__new__(P.Workers)
    w.n = 2
    assert len(w.slices(32, 8)) == 1  # 16 x 8 values a slice: too little
    assert len(w.slices(32, 16)) == 2
    assert len(w.slices(8, 64)) == 2 and len(w.slices(6, 64)) == 1


def test_without_controllable_blas_everything_runs_in_one_thread(monkeypatch):
    monkeypatch.setattr(P, "openblas", lambda: None)
    monkeypatch.setattr(B, "openblas", lambda: None)
    with P.Workers(4) as w:
        assert w.n == 1 and "not OpenBLAS" in w.failed
    assert P.Workers(1).failed is None  # one was asked for: nothing failed
    assert B.default_threads() == 1
    with pytest.raises(ConfigError, match="threads must be a positive"):
        P.Workers(0)


@needs_openblas
def test_split_streams_score_every_character_as_one_thread_does(split_small):
    cfg, params, _, _ = _setup("gru", 2, N=1, dropout=0.0)
    ids = np.random.default_rng(5).integers(0, cfg.vocab_size, 103)
    want = E.char_losses(params, cfg, ids, streams=7, seq=5)  # 7 streams and 4 left over
    with P.Workers(2) as w:
        got = E.char_losses(params, cfg, ids, streams=7, seq=5, workers=w)
    assert_close(got, want, rtol=1e-12, what="per-character losses")
    one = E.char_losses(params, cfg, ids, streams=1, seq=5)  # and against the carried state:
    assert abs(got.mean() - one.mean()) < 0.1  # different cuts, nearly the same mean


@needs_openblas
def test_training_with_one_or_two_threads_ends_in_the_same_model(tmp_path, split_small,
                                                                 monkeypatch):
    calls = []
    real = P.Workers.map
    monkeypatch.setattr(P.Workers, "map", lambda self, F, p, c, req, local: calls.append(len(req) + 1)
                        or real(self, F, p, c, req, local))
    corpus = tmp_path / "c.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    base = {"corpus": str(corpus), "cell": "lstm", "hidden": 8, "layers": 2, "dropout": 0.2,
            "dtype": "float64", "batch": 4, "seq": 8, "steps": 12, "eval_every": 6, "lr": 1e-2}
    r1 = train(TrainConfig.from_dict({**base, "out": str(tmp_path / "one")}), threads=1)
    assert calls == []
    r2 = train(TrainConfig.from_dict({**base, "out": str(tmp_path / "two")}), threads=2)
    assert set(calls) == {2} and len(calls) > 12  # training and validation chunks, split
    assert r1.best_val_bpc == pytest.approx(r2.best_val_bpc, rel=1e-9)
    from charrnn import checkpoint as C
    p1, p2 = C.load(r1.run_dir / "last.npz").params, C.load(r2.run_dir / "last.npz").params
    for name in p1:
        assert_close(p2[name], p1[name], rtol=1e-8, atol=1e-11, what=name)


@needs_openblas
def test_resume_splits_as_the_run_did_and_stays_bit_exact(tmp_path, split_small):
    from charrnn import checkpoint as C
    from charrnn.train.trainer import resume_config

    corpus = tmp_path / "c.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    base = {"corpus": str(corpus), "cell": "gru", "hidden": 8, "layers": 2, "dropout": 0.2,
            "dtype": "float64", "batch": 4, "seq": 8, "eval_every": 4, "lr": 1e-2,
            "schedule": "constant"}
    train(TrainConfig.from_dict({**base, "out": str(tmp_path / "full"), "steps": 12}), threads=2)
    train(TrainConfig.from_dict({**base, "out": str(tmp_path / "part"), "steps": 8}), threads=2)
    assert C.load(tmp_path / "part" / "last.npz").meta["threads"] == 2
    train(resume_config(tmp_path / "part", steps=12), resume=True)  # no threads given
    a = C.load(tmp_path / "full" / "last.npz")
    b = C.load(tmp_path / "part" / "last.npz")
    assert b.meta["step"] == a.meta["step"] == 12
    for name in a.params:
        np.testing.assert_array_equal(b.params[name], a.params[name], err_msg=name)


def test_cli_threads_option(tmp_path, split_small):
    corpus = tmp_path / "c.txt"
    corpus.write_text("abcabcabd " * 100)
    args = ["train", str(corpus), "--hidden", "4", "--layers", "1", "--batch", "2", "--seq",
            "8", "--steps", "3", "--out", str(tmp_path / "r"), "-q"]
    res = CliRunner().invoke(cli, args + ["--threads", "2"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().endswith("best.npz")
    res = CliRunner().invoke(cli, args + ["--threads", "0"])
    assert res.exit_code == 2 and "--threads" in res.stderr and "Traceback" not in res.output


@needs_openblas
def test_train_says_how_many_processes_it_uses_and_why_only_one(tmp_path, split_small,
                                                                 monkeypatch):
    corpus = tmp_path / "c.txt"
    corpus.write_text("abcabcabd " * 100)
    args = ["train", str(corpus), "--hidden", "4", "--layers", "1", "--batch", "2", "--seq",
            "8", "--steps", "2", "--threads", "2"]
    res = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "a")])
    assert res.exit_code == 0 and ", 2 processes" in res.stderr and "note:" not in res.stderr
    monkeypatch.setattr(P.subprocess, "Popen", _fails("not allowed"))
    res = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert ", 1 process, " in res.stderr
    assert "note: training in one process (" in res.stderr and "not allowed)" in res.stderr
    assert C.load(tmp_path / "b" / "last.npz").meta["threads"] == 1


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@needs_openblas
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_sigterm_to_trainer_and_workers_saves_and_leaves_no_process(tmp_path):
    """A scheduler (or pkill) sends SIGTERM to every process of the job: the workers must
    outlive it until the trainer has saved last.npz at its next step."""
    corpus = tmp_path / "c.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 400)
    out = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from charrnn.cli import main; main()", "train", str(corpus),
         "--out", str(out), "--hidden", "64", "--layers", "1", "--batch", "8", "--seq", "8",
         "--threads", "2", "--steps", "100000", "--eval-every", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    end = time.time() + 60
    while not (out / "last.npz").exists():
        assert proc.poll() is None and time.time() < end, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.3)  # well into training: the stop should save at a step no evaluation saved
    workers = _children(proc.pid)
    assert len(workers) == 1  # 8 streams x 64 units: two slices
    for pid in workers:  # the worker first: the trainer must not find it gone at its next step
        os.kill(pid, signal.SIGTERM)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr.decode()
    assert b"terminated" in stderr and b"died" not in stderr and b"Traceback" not in stderr
    meta = C.load(out / "last.npz").meta
    k, evals = meta["step"], [r["step"] for r in meta["history"] if r["kind"] == "eval"]
    assert meta["threads"] == 2 and k > 5
    assert k % 5 == 0 or k not in evals  # saved by the stop, not by an evaluation
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or \
            Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z", "a worker outlived it"


def test_blas_kernel_is_the_one_threadpoolctl_reports():
    threadpoolctl = pytest.importorskip("threadpoolctl")  # an independent reader; optional
    if B.openblas() is None:
        pytest.skip("not OpenBLAS")
    found = [i for i in threadpoolctl.threadpool_info() if i.get("internal_api") == "openblas"
             and "numpy" in i.get("filepath", "")]
    if not found or not found[0].get("architecture"):
        pytest.skip("threadpoolctl does not see NumPy's OpenBLAS kernel")
    assert B.openblas().kernel() == found[0]["architecture"]
    assert B.describe() == f"OpenBLAS, {found[0]['architecture']} kernels"
