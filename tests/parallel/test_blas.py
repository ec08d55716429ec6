"""charrnn.parallel.blas: single-stream work (sampling, scoring one text) runs at
SINGLE_STREAM_THREADS BLAS threads and restores the count after; without a controllable
OpenBLAS nothing changes and everything still works."""

import numpy as np
import pytest

from charrnn.data.vocab import Vocab
from charrnn.infer import sample as S
from charrnn.infer.scoring import score_text
from charrnn.models import lm as M
from charrnn.parallel import blas as B

VOCAB = Vocab("\n abcde")
CFG = M.ModelConfig(vocab_size=len(VOCAB), cell="gru", hidden=6, layers=1)
needs_openblas = pytest.mark.skipif(B.openblas() is None, reason="needs NumPy's OpenBLAS")


@pytest.fixture
def two_threads():
    """OpenBLAS set to 2 threads (as on a 2-core machine) for the test, restored after."""
    blas = B.openblas()
    before = blas.get()
    blas.set(2)
    yield blas
    blas.set(before)


def spy_threads(monkeypatch, module, name):
    """Record the BLAS thread count each time module.name is called."""
    seen, real = [], getattr(module, name)

    def spy(*args, **kwargs):
        seen.append(B.openblas().get())
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return seen


@needs_openblas
def test_sampling_runs_on_one_blas_thread_and_restores_the_count(two_threads, monkeypatch):
    params = M.init_params(CFG, np.random.default_rng(0))
    seen = spy_threads(monkeypatch, M, "stepper")
    pieces = S.generate(params, CFG, VOCAB, "ab", S.SampleConfig(length=30),
                        np.random.default_rng(1))
    assert next(pieces) == "ab" and two_threads.get() == 2  # the prime: nothing computed yet
    text = "".join(pieces)
    assert len(text) == 30 and seen and set(seen) == {B.SINGLE_STREAM_THREADS}
    assert two_threads.get() == 2
    pieces = S.generate(params, CFG, VOCAB, "", S.SampleConfig(length=30))
    next(pieces)
    pieces.close()  # a reader that stops early (`| head`) still gets the count back
    assert two_threads.get() == 2


@needs_openblas
def test_scoring_a_text_runs_on_one_blas_thread_and_restores_the_count(two_threads,
                                                                       monkeypatch):
    from charrnn.infer import scoring

    params = M.init_params(CFG, np.random.default_rng(0))
    seen = spy_threads(monkeypatch, scoring, "char_losses")
    result = score_text(params, CFG, VOCAB, "abc de\nedcba " * 20)
    assert result.score.chars == 259 and seen == [B.SINGLE_STREAM_THREADS]
    assert two_threads.get() == 2


def test_without_a_controllable_blas_nothing_changes(monkeypatch):
    monkeypatch.setattr(B, "openblas", lambda: None)
    with B.threads(1):
        pass
    params = M.init_params(CFG, np.random.default_rng(0))
    text = "".join(S.generate(params, CFG, VOCAB, "", S.SampleConfig(length=10),
                              np.random.default_rng(1)))
    assert len(text) == 10


@needs_openblas
def test_threads_restores_the_count_even_when_the_block_raises(two_threads):
    with pytest.raises(RuntimeError), B.threads(1):
        assert two_threads.get() == 1
        raise RuntimeError
    assert two_threads.get() == 2
