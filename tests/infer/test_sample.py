"""The sampler against independent computations: the chunk forward pass, hand-written softmax."""

import numpy as np
import pytest

from charrnn.data.vocab import Vocab
from charrnn.errors import CheckpointError, ConfigError, VocabularyError
from charrnn.infer import sample as S
from charrnn.infer.sample import SampleConfig, distribution, generate, next_distribution
from charrnn.models import lm as M
from tests.helpers import assert_close, cycle_model

VOCAB = Vocab("\n abcdeéж日")


def random_model(cell="lstm", dtype="float64", scale=1.0, seed=0, hidden=7, layers=2):
    cfg = M.ModelConfig(vocab_size=len(VOCAB), cell=cell, hidden=hidden, layers=layers,
                        dtype=dtype)
    p = M.init_params(cfg, np.random.default_rng(seed))
    p["Wy"] *= scale  # larger output weights: a less uniform distribution
    return p, cfg


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def chunk_logits(p, cfg, text):
    """Logits (V,) after `text`, from one chunk forward pass (not the single-step path)."""
    ids = VOCAB.encode(text).astype(np.intp)[None, :]
    logits, _, _ = M.forward(p, cfg, ids, M.init_state(cfg, 1))
    return logits[-1, 0]


class Incremental:
    """Independent re-run of a sample: the chunk forward pass fed one character at a time."""

    def __init__(self, p, cfg, prime):
        self.p, self.cfg = p, cfg
        ids = VOCAB.encode(prime).astype(np.intp)[None, :]
        logits, self.state, _ = M.forward(p, cfg, ids, M.init_state(cfg, 1))
        self.logits = logits[-1, 0]

    def feed(self, ch):
        ids = np.array([[VOCAB.chars.index(ch)]])
        logits, self.state, _ = M.forward(self.p, self.cfg, ids, self.state)
        self.logits = logits[-1, 0]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.5])
def test_next_distribution_equals_softmax_of_chunk_forward(cell, temperature):
    p, cfg = random_model(cell, scale=30.0)
    prime = "abé日 c\nd"
    got = next_distribution(p, cfg, VOCAB, prime, SampleConfig(temperature=temperature))
    assert_close(got, softmax(chunk_logits(p, cfg, prime) / temperature), what="p(next)")


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_a_warmed_start_gives_the_same_text_and_is_left_unchanged(cell):
    p, cfg = random_model(cell, scale=3.0)
    warmed = S.warm(p, cfg, S.start_ids(VOCAB, "abé"))
    kept = [warmed[0].copy(), *(a.copy() for layer in warmed[1] for a in layer)]
    config = SampleConfig(length=25)
    for _ in range(2):  # twice from the same warmed state
        want = "".join(generate(p, cfg, VOCAB, "abé", config, np.random.default_rng(4)))
        got = "".join(generate(p, cfg, VOCAB, "abé", config, np.random.default_rng(4), warmed))
        assert got == want
    for a, b in zip(kept, [warmed[0], *(a for layer in warmed[1] for a in layer)]):
        np.testing.assert_array_equal(a, b)
    spike = np.zeros(len(VOCAB))  # the start really is taken from it: logits that pick ж
    spike[VOCAB.encode("ж")[0]] = 50.0
    greedy = SampleConfig(length=1, greedy=True)
    assert "".join(generate(p, cfg, VOCAB, "abé", greedy, None, (spike, warmed[1]))) == "abéж"


def test_without_prime_the_start_is_a_newline():
    p, cfg = random_model(scale=3.0)
    assert_close(next_distribution(p, cfg, VOCAB, ""), softmax(chunk_logits(p, cfg, "\n")))
    no_newline = Vocab("ab")  # no newline, no space: the zero state's own logits, by
    cfg2 = M.ModelConfig(vocab_size=2, cell="gru", hidden=3, layers=1, dtype="float64")
    p2 = M.init_params(cfg2, np.random.default_rng(1))
    p2["by"][:] = [0.3, -1.2]
    assert_close(next_distribution(p2, cfg2, no_newline, ""), softmax(np.array([0.3, -1.2])))


def test_drawn_characters_follow_the_distribution():
    p, cfg = random_model(scale=60.0)
    prime = "bad"
    expected = softmax(chunk_logits(p, cfg, prime) / 0.5)
    rng = np.random.default_rng(5)
    n = 3000
    counts = np.zeros(len(VOCAB))
    for _ in range(n):
        pieces = list(generate(p, cfg, VOCAB, prime, SampleConfig(length=1, temperature=0.5), rng))
        counts[VOCAB.chars.index(pieces[1])] += 1
    sigma = np.sqrt(n * expected * (1 - expected)) + 1
    assert np.all(np.abs(counts - n * expected) < 5 * sigma), (counts, n * expected)


def test_float32_model_samples_from_the_same_distribution():
    p, cfg = random_model(dtype="float32", scale=3.0)
    got = next_distribution(p, cfg, VOCAB, "abc", SampleConfig(temperature=0.7))
    assert_close(got, softmax(chunk_logits(p, cfg, "abc").astype(np.float64) / 0.7),
                 rtol=1e-5, atol=1e-7)


def test_greedy_is_the_argmax_chain_and_equals_a_tiny_temperature():
    p, cfg = random_model(scale=30.0)
    prime = "ab"
    greedy = "".join(generate(p, cfg, VOCAB, prime, SampleConfig(length=40, greedy=True)))
    cold = "".join(generate(p, cfg, VOCAB, prime, SampleConfig(length=40, temperature=1e-4),
                            np.random.default_rng(3)))
    assert greedy == cold
    ref = Incremental(p, cfg, prime)
    for ch in greedy[len(prime):]:
        assert ch == VOCAB.chars[int(np.argmax(ref.logits))]
        ref.feed(ch)


def test_a_learned_pattern_is_continued():
    vocab = Vocab("abcdefg")
    p, cfg = cycle_model(vocab)
    text = "".join(generate(p, cfg, vocab, "cd", SampleConfig(length=12), np.random.default_rng(0)))
    assert text == "cdefgabcdefgab"


def test_top_k_never_emits_outside_the_top_k():
    p, cfg = random_model(scale=2.0)  # fairly flat: without top-k many characters appear
    k, prime = 3, "ca"
    text = "".join(generate(p, cfg, VOCAB, prime, SampleConfig(length=150, top_k=k),
                            np.random.default_rng(11)))
    ref = Incremental(p, cfg, prime)
    for ch in text[len(prime):]:
        top = np.argsort(ref.logits)[::-1][:k]
        assert VOCAB.chars.index(ch) in top, f"{ch!r} is outside the top {k}"
        ref.feed(ch)
    free = "".join(generate(p, cfg, VOCAB, prime, SampleConfig(length=150),
                            np.random.default_rng(11)))
    assert len(set(free)) > k + 2  # the check above could fail


def test_top_k_distribution_keeps_exactly_k_renormalised():
    logits = np.array([0.1, 2.0, -1.0, 1.5, 0.7, 3.0])
    got = distribution(logits, SampleConfig(top_k=2))
    e = np.exp(logits[[5, 1]] - 3.0)
    expected = np.zeros(6)
    expected[[5, 1]] = e / e.sum()
    assert_close(got, expected)
    assert_close(distribution(logits, SampleConfig(top_k=6)), softmax(logits))


@pytest.mark.parametrize("top_p", [0.05, 0.5, 0.7, 0.9, 0.999, 1.0])
def test_top_p_keeps_the_smallest_set_reaching_p(top_p):
    logits = np.array([0.3, 2.0, -1.0, 1.4, 0.8, -0.2, 1.0])
    probs = softmax(logits)
    keep, total = [], 0.0  # independent: walk down the sorted probabilities
    for i in sorted(range(7), key=lambda i: -probs[i]):
        keep.append(i)
        total += probs[i]
        if total >= top_p - 1e-12:
            break
    expected = np.zeros(7)
    expected[keep] = probs[keep] / probs[keep].sum()
    assert_close(distribution(logits, SampleConfig(top_p=top_p)), expected)


def test_top_p_sampling_stays_in_the_nucleus():
    p, cfg = random_model(scale=3.0)
    prime = "d"
    text = "".join(generate(p, cfg, VOCAB, prime, SampleConfig(length=100, top_p=0.6),
                            np.random.default_rng(2)))
    ref = Incremental(p, cfg, prime)
    for ch in text[len(prime):]:
        probs = softmax(ref.logits)
        order = np.argsort(probs)[::-1]
        n = int(np.searchsorted(np.cumsum(probs[order]), 0.6)) + 1
        assert VOCAB.chars.index(ch) in order[:n]
        ref.feed(ch)


def test_same_seed_same_text_other_seed_other_text():
    p, cfg = random_model(scale=2.0)

    def run(seed):
        return "".join(generate(p, cfg, VOCAB, "a", SampleConfig(length=80),
                                np.random.default_rng(seed)))

    assert run(7) == run(7)
    assert run(7) != run(8)


@pytest.mark.parametrize("prime", ["", "é日", "abc\n"])
@pytest.mark.parametrize("length", [0, 1, 37])
def test_length_is_exact_and_the_prime_is_echoed_first(prime, length):
    p, cfg = random_model()
    pieces = list(generate(p, cfg, VOCAB, prime, SampleConfig(length=length),
                           np.random.default_rng(0)))
    if prime:
        assert pieces[0] == prime
        pieces = pieces[1:]
    assert len("".join(pieces)) == length and all(c in VOCAB for c in "".join(pieces))


def test_stop_text_ends_the_sample_where_it_first_appears():
    p, cfg = random_model(scale=2.0)
    for seed in range(5):
        text = "".join(generate(p, cfg, VOCAB, "ab", SampleConfig(length=2000, stop="b"),
                                np.random.default_rng(seed)))
        gen = text[2:]
        assert gen.endswith("b") and "b" not in gen[:-1]
    vocab = Vocab("abcdefg")  # a stop text that straddles the prime and the first character
    pc, cc = cycle_model(vocab)
    assert "".join(generate(pc, cc, vocab, "abc", SampleConfig(length=50, stop="cd"),
                            np.random.default_rng(0))) == "abcd"


def test_the_generator_computes_nothing_ahead_of_the_reader(monkeypatch):
    p, cfg = random_model()
    calls = []
    real = M.stepper

    def counting_stepper(params, cfg):
        step = real(params, cfg)

        def counting(*args):
            calls.append(1)
            return step(*args)

        return counting

    monkeypatch.setattr(M, "stepper", counting_stepper)
    gen = generate(p, cfg, VOCAB, "abc", SampleConfig(length=50), np.random.default_rng(0))
    assert calls == []  # arguments checked, nothing run yet
    assert next(gen) == "abc" and calls == []  # the prime is echoed before it is fed
    next(gen)
    assert len(calls) == 3  # the prime's steps; the first character needs no further step
    next(gen)
    assert len(calls) == 4
    rest = list(gen)
    assert len(rest) == 48 and len(calls) == 3 + 49  # no wasted step after the last character


def test_unknown_prime_characters_are_listed():
    p, cfg = random_model()
    with pytest.raises(VocabularyError) as e:
        generate(p, cfg, VOCAB, "aZbé€Z", SampleConfig())
    assert str(e.value) == "prime text has characters not in the vocabulary: 'Z', '€'"


@pytest.mark.parametrize("kwargs, word", [
    ({"temperature": 0}, "temperature"), ({"temperature": -1.0}, "temperature"),
    ({"temperature": float("nan")}, "temperature"), ({"temperature": float("inf")}, "temperature"),
    ({"length": -1}, "length"), ({"length": 2.5}, "length"),
    ({"top_k": 0}, "top-k"), ({"top_k": -3}, "top-k"),
    ({"top_p": 0.0}, "top-p"), ({"top_p": 1.5}, "top-p"), ({"top_p": -0.1}, "top-p"),
    ({"stop": ""}, "stop"),
])
def test_bad_settings_are_config_errors_naming_them(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        SampleConfig(**kwargs)


def test_vocabulary_must_match_the_model():
    p, cfg = random_model()
    with pytest.raises(VocabularyError, match="vocabulary has 3 characters"):
        generate(p, cfg, Vocab("abc"), "a")


def test_check_prime_gives_ids():
    assert S.check_prime(VOCAB, "ba").tolist() == [3, 2]


def test_a_model_with_nan_parameters_is_an_error_not_a_crash():
    p, cfg = random_model()
    p["by"][2] = np.nan
    with pytest.raises(CheckpointError, match="not finite"):
        list(generate(p, cfg, VOCAB, "a", SampleConfig(length=3), np.random.default_rng(0)))


# --- the compiled draw (charrnn.nn.fused_step.drawer): the NumPy draw's float64 operations in C ---

def _fused_or_skip():  # charrnn.nn.fused_step, where the kernels build
    from charrnn.nn import fused, fused_step

    if fused.available():
        pytest.skip(f"fused kernels unavailable: {fused.available()}")
    return fused_step


def _numpy_draw(logits, temperature, u):
    """The draw written out here: float64 softmax weights with the maximum subtracted, their
    running sum, the first index whose sum exceeds u times the total (the
    first whose sum reaches the total if rounding takes u * total to the total)."""
    z = logits.astype(np.float64) * (1.0 / temperature)
    w = np.exp(z - z.max())
    cum = np.cumsum(w)
    i = int(np.searchsorted(cum, u * cum[-1], "right"))
    return i if i < len(w) else int(np.searchsorted(cum, cum[-1], "left"))


@pytest.mark.parametrize("V", [1, 2, 65, 4099])
def test_the_compiled_draw_picks_what_the_numpy_draw_picks(V):
    fused_step = _fused_or_skip()
    rng = np.random.default_rng(V)
    draw = fused_step.drawer(V)
    for t, temperature in enumerate([1.0, 0.7, 2.5, 1e-3, 1e3]):
        logits = (rng.standard_normal(V) * 4).astype(np.float32)
        if V > 2:
            logits[rng.integers(0, V, 2)] = -np.inf  # characters that cannot be drawn
        cum = np.cumsum(np.exp(logits * (1.0 / temperature) - logits.max() / temperature))
        edges = cum / cum[-1]  # u exactly at (or next to) the boundaries between characters
        us = np.concatenate([rng.random(300), edges, np.nextafter(edges, 0), [0.0],
                             [np.nextafter(1.0, 0.0)]])
        for u in us:
            assert draw(logits, 1.0 / temperature, u) == _numpy_draw(logits, temperature, u), \
                (V, temperature, u)
        z = logits.astype(np.float64) * (1.0 / temperature)
        assert np.array_equal(draw.cum, np.cumsum(np.exp(z - z.max()))), (V, t)  # bit for bit


def test_the_compiled_draw_reports_weights_that_are_not_finite_and_refuses_other_logits():
    fused_step = _fused_or_skip()
    draw = fused_step.drawer(4)
    for bad in ([0, np.nan, 1, 2], [0, np.inf, 1, 2], [-np.inf] * 4):
        assert draw(np.array(bad, np.float32), 1.0, 0.5) == -1, bad
    for other in (np.zeros(4), np.zeros(5, np.float32), np.zeros(8, np.float32)[::2]):
        assert draw(other, 1.0, 0.5) is None  # float64, the wrong size, strided: NumPy draws


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_the_compiled_draw_samples_the_numpy_draws_text_exactly(cell, monkeypatch):
    _fused_or_skip()
    p, cfg = random_model(cell, "float32", scale=8.0, hidden=9)
    cfg = cfg.__class__(**{**cfg.__dict__, "kernels": "fused"})
    settings = [SampleConfig(length=400), SampleConfig(length=400, temperature=0.6),
                SampleConfig(length=200, temperature=3.0), SampleConfig(length=200, top_p=0.8)]
    fast = [list(generate(p, cfg, VOCAB, "ab", c, np.random.default_rng(9))) for c in settings]
    assert S._fast_draw(cfg, settings[0]) is not None
    assert S._fast_draw(cfg, settings[3]) is None  # top-p: NumPy's draw
    monkeypatch.setattr(S, "_fast_draw", lambda cfg, config: None)
    slow = [list(generate(p, cfg, VOCAB, "ab", c, np.random.default_rng(9))) for c in settings]
    assert fast == slow


def test_the_compiled_draw_follows_the_distribution():
    fused_step = _fused_or_skip()
    logits = np.float32([2.0, 0.5, -1.0, 1.5, 0.0, -3.0, 1.0])
    p = softmax(logits.astype(np.float64) / 0.8)
    draw, rng, n = fused_step.drawer(7), np.random.default_rng(3), 20_000
    counts = np.bincount([draw(logits, 1 / 0.8, rng.random()) for _ in range(n)], minlength=7)
    chi2 = float(np.sum((counts - n * p) ** 2 / (n * p)))
    assert chi2 < 22.5, (counts, n * p)  # 6 degrees of freedom: P(chi2 > 22.5) < 0.001


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_compiled_step_samples_the_same_text_for_a_seed_run_to_run(cell):
    # its products sum in their own order (not NumPy's), so the text is its own: but every run
    # with one seed gives the same, and its first distribution is NumPy's to rounding
    _fused_or_skip()
    p, cfg = random_model(cell, "float32", scale=8.0, hidden=40)
    fast = cfg.__class__(**{**cfg.__dict__, "kernels": "fused"})
    assert M.stepper(p, fast).__qualname__.startswith("stack_stepper")

    def run(seed):
        return "".join(generate(p, fast, VOCAB, "ab", SampleConfig(length=300),
                                np.random.default_rng(seed)))

    assert run(5) == run(5)
    assert run(5) != run(6)
    numpy = cfg.__class__(**{**cfg.__dict__, "kernels": "numpy"})
    assert_close(next_distribution(p, fast, VOCAB, "abc"),
                 next_distribution(p, numpy, VOCAB, "abc"), rtol=0, atol=1e-6)
