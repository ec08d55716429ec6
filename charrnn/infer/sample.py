"""Sampling: a generator that yields text as the model makes it, one character at a time.

    pieces = generate(params, cfg, vocab, prime="ROMEO:", config=SampleConfig(length=200), rng=rng)
    for piece in pieces:          # the prime first, then each new character as it is drawn
        print(piece, end="", flush=True)

One stream, one `model.step` per character; the state is threaded through explicitly. The prime
is fed through the model one step at a time (the same single-step path generation uses) to warm
the state, and echoed as the first piece *before* it is fed, so a reader sees it at once. Without
a prime, generation starts from the zero state after a newline if the vocabulary has one (the
model has seen many texts begin after a newline), else after a space, else from the zero state
itself, whose logits are just `by`; that start character is not echoed.

Turning logits (V,) into a choice, in this order (the order matters and is the usual one):
    1. temperature: z = logits / T, softmax with the maximum subtracted (in float64);
    2. top-k: keep exactly the k most likely characters (ties broken arbitrarily);
    3. top-p (nucleus): keep the smallest set of most likely characters whose probability
       reaches p of what is left;
    4. draw: one `rng.random()` per character, located (searchsorted) in the cumulative sum of
       the kept weights: no `rng.choice`, no normalising division, and (without top-k/top-p)
       no array allocated per step by the sampler itself; the time goes to `model.step`.
       `greedy` takes the argmax of the logits and draws nothing.
`distribution` gives the normalised result of 1-3 for tests and for curious readers; the
sampler runs the same code (`_weights`) into preallocated buffers, so what is tested is what
samples. A float32 model on the fused kernels, without top-k/top-p, draws through
charrnn.nn.fused_step.drawer instead: the same float64 operations in the same order (NumPy's exp
included), so the same characters, in three calls instead of seven. One uniform draw per character is part of the contract: the same seed, model, prime
and settings give the same text.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..data.vocab import Vocab, describe_chars
from ..errors import CheckpointError, ConfigError, VocabularyError
from ..models import lm as M
from ..parallel.blas import single_stream

# Below this, logits / T overflows float64 for ordinary logits, and inf - inf is NaN.
MIN_TEMPERATURE = 1e-100


@dataclass(frozen=True)
class SampleConfig:
    """How to sample. Validated on construction; raises ConfigError naming the bad value."""

    length: int = 500  # characters generated after the prime (at most, with `stop`)
    temperature: float = 1.0  # > 0; logits are divided by it before the softmax
    greedy: bool = False  # always the most likely character
    top_k: int | None = None  # keep only the k most likely characters
    top_p: float | None = None  # keep the smallest most-likely set whose probability reaches p
    # end the sample once the text ends with this, or with any of these (the first one reached)
    stop: str | tuple[str, ...] | None = None

    def __post_init__(self):
        L = self.length
        if not isinstance(L, int) or isinstance(L, bool) or L < 0:
            raise ConfigError(f"length must be a whole number >= 0, not {L!r}")
        T = self.temperature
        if not isinstance(T, (int, float)) or not math.isfinite(T) or T < MIN_TEMPERATURE:
            raise ConfigError(f"temperature must be a number >= {MIN_TEMPERATURE:g} (--greedy is "
                              f"the limit of 0), not {T!r}")
        k = self.top_k
        if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
            raise ConfigError(f"top-k must be a whole number >= 1, not {k!r}")
        p = self.top_p
        if p is not None and not (isinstance(p, (int, float)) and 0 < p <= 1):
            raise ConfigError(f"top-p must be in (0, 1], not {p!r}")
        if isinstance(self.stop, list):
            object.__setattr__(self, "stop", tuple(self.stop))
        if self.stop is not None and not (
                isinstance(self.stop, (str, tuple)) and self.stop
                and all(isinstance(t, str) and t for t in self.stops)):
            raise ConfigError("stop text must not be empty")

    @property
    def stops(self) -> tuple[str, ...]:
        """The stop texts as a tuple (empty: no stop)."""
        s = self.stop
        return () if s is None else (s,) if isinstance(s, str) else s


def check_prime(vocab: Vocab, prime: str) -> np.ndarray:
    """The ids of `prime`, shape (len(prime),); VocabularyError listing unknown characters."""
    unknown = vocab.unknown(prime)
    if unknown:
        raise VocabularyError(
            f"prime text has characters not in the vocabulary: {describe_chars(unknown)}")
    return vocab.encode(prime, dtype=np.intp)


UNKNOWN_CHOICES = ("error", "skip", "replace")


def prepare_prime(vocab: Vocab, prime: str, unknown: str = "error") -> tuple[str, list[str]]:
    """(the prime to feed, the distinct characters of `prime` outside the vocabulary). What
    happens to those characters, as a classifier reads text it never saw (charrnn.data.labelled):
    "error" raises VocabularyError naming them and the option; "skip" leaves them out; "replace"
    puts `replacement(vocab)` in each one's place, so the prime keeps its length."""
    if unknown not in UNKNOWN_CHOICES:
        raise ConfigError(f"unknown must be one of {', '.join(UNKNOWN_CHOICES)}, not {unknown!r}")
    missing = vocab.unknown(prime)
    if not missing:
        return prime, []
    if unknown == "error":
        raise VocabularyError(
            f"prime text has characters not in the vocabulary: {describe_chars(missing)} "
            f"(--unknown skip leaves them out, --unknown replace puts "
            f"{replacement(vocab)!r} in their place)")
    gone = set(missing)
    sub = "" if unknown == "skip" else replacement(vocab)
    return "".join(sub if c in gone else c for c in prime), missing


def replacement(vocab: Vocab) -> str:
    """What --unknown replace feeds for a character outside the vocabulary: the unknown symbol
    U+FFFD if the vocabulary has it (as the classifier's always does), else a space, else a
    newline, else the vocabulary's first character."""
    from ..data.labelled import UNKNOWN

    return next((c for c in (UNKNOWN, " ", "\n") if c in vocab), vocab.chars[0])


def start_ids(vocab: Vocab, prime: str) -> np.ndarray:
    """What is fed before the first generated character: the prime, or the default start."""
    if prime:
        return check_prime(vocab, prime)
    for c in ("\n", " "):
        if c in vocab:
            return vocab.encode(c, dtype=np.intp)
    return np.empty(0, dtype=np.intp)


def warm(params, cfg: M.ModelConfig, ids: np.ndarray, step=None):
    """Feed ids (L,) one step at a time from the zero state: (logits (V,), state).
    With no ids, the zero state and its logits (h = 0, so logits = by). `step`: the model's
    M.stepper(params, cfg) when the caller has made it already (making one packs the weights,
    with the fused kernels)."""
    state = M.init_state(cfg, 1)
    logits = params["by"].copy()
    x = np.zeros(1, dtype=np.intp)
    if step is None and len(ids):
        step = M.stepper(params, cfg)
    for i in ids:
        x[0] = i
        out, state = step(x, state)
        logits = out[0]
    return logits, state


def _weights(logits, inv_t, top_k, top_p, out):
    """Unnormalised probabilities (V,) into `out` (float64): temperature, top-k, top-p."""
    # the largest of logits * inv_t is the largest logit times inv_t (rounding is monotonic),
    # the same float64 as a max over the products, found by argmax at a third of the cost
    m = float(logits[logits.argmax()]) * inv_t
    if inv_t == 1.0:  # logits * 1.0 is exact: one call for the product and the subtraction
        np.subtract(logits, m, out=out, dtype=np.float64)  # float64 even for float32 logits
    else:
        np.multiply(logits, inv_t, out=out, dtype=np.float64)
        np.subtract(out, m, out=out)
    np.exp(out, out=out)
    V = out.shape[0]
    if top_k is not None and top_k < V:
        out[np.argpartition(out, V - top_k)[: V - top_k]] = 0.0
    if top_p is not None and top_p < 1.0:
        order = np.argsort(out)[::-1]  # most likely first
        cum = np.cumsum(out[order])
        keep = int(cum.searchsorted(top_p * cum[-1], "left")) + 1  # first to reach p
        out[order[keep:]] = 0.0
    return out


def distribution(logits: np.ndarray, config: SampleConfig = SampleConfig()) -> np.ndarray:
    """The probabilities (V,) the sampler draws from, given logits (V,). Greedy: one-hot argmax."""
    logits = np.asarray(logits)
    if config.greedy:
        p = np.zeros(logits.shape[0])
        p[int(logits.argmax())] = 1.0
        return p
    w = _weights(logits, 1.0 / config.temperature, config.top_k, config.top_p,
                 np.empty(logits.shape[0]))
    return w / w.sum()


def next_distribution(params, cfg: M.ModelConfig, vocab: Vocab, prime: str = "",
                      config: SampleConfig = SampleConfig()) -> np.ndarray:
    """The distribution (V,) of the first character generated after `prime`."""
    logits, _ = warm(params, cfg, start_ids(vocab, prime))
    return distribution(logits, config)


def generate(params, cfg: M.ModelConfig, vocab: Vocab, prime: str = "",
             config: SampleConfig = SampleConfig(), rng: np.random.Generator | None = None,
             warmed: tuple | None = None) -> Iterator[str]:
    """Yield the prime (if any), then each generated character as soon as it is drawn.

    Arguments are checked now, before the first piece is asked for: VocabularyError lists the
    prime's unknown characters, ConfigError a bad setting. `rng` defaults to a fresh unseeded
    Generator; pass a seeded one for repeatable text. The model's next step is computed only
    when the consumer asks for the next character, so nothing is computed ahead of the reader.
    `warmed`: what `warm(params, cfg, start_ids(vocab, prime))` returned, to start from instead
    of feeding the prime again (several samples from one long prime); it is not modified.
    """
    if not isinstance(config, SampleConfig):
        raise ConfigError("config must be a SampleConfig")
    if len(vocab) != cfg.vocab_size:
        raise VocabularyError(f"vocabulary has {len(vocab)} characters but the model expects "
                              f"{cfg.vocab_size}")
    ids = start_ids(vocab, prime)
    if rng is None:
        rng = np.random.default_rng()
    return _generate(params, cfg, vocab, prime, ids, config, rng, warmed)


def _generate(params, cfg, vocab, prime, ids, config, rng, warmed):
    if prime:
        yield prime
    if config.length == 0:
        return
    # one row per multiply: BLAS at one thread while this sample is drawn (restored when it
    # ends or the generator is closed; charrnn.parallel.blas.single_stream says why)
    with single_stream():
        yield from _draw(params, cfg, vocab, prime, ids, config, rng, warmed)


def _fast_draw(cfg, config: SampleConfig):
    """The compiled draw (charrnn.nn.fused_step.drawer: step 4 above with the float64 operations of
    1, bit for bit) where it serves: a float32 model on the fused kernels, without top-k/top-p."""
    if (cfg.kernels != "fused" or cfg.dtype != "float32" or config.greedy
            or config.top_k is not None or (config.top_p or 1.0) < 1.0):
        return None
    from ..nn import fused_step

    return fused_step.drawer(cfg.vocab_size)


def _draw(params, cfg, vocab, prime, ids, config, rng, warmed):
    step, chars, V = M.stepper(params, cfg), vocab.chars, cfg.vocab_size
    logits, state = warmed or warm(params, cfg, ids, step)
    accumulate = np.add.accumulate
    greedy, top_k, top_p = config.greedy, config.top_k, config.top_p
    inv_t = 1.0 / config.temperature
    w = np.empty(V)  # float64 weights, reused every step
    cum = np.empty(V)
    fast = _fast_draw(cfg, config)
    x = np.zeros(1, dtype=np.intp)
    stops = config.stops
    keep = max(map(len, stops), default=0)  # the longest stop text: how much tail to watch
    tail = prime[-keep:] if keep else ""
    for n in range(config.length):
        if n:
            out, state = step(x, state)
            logits = out[0]
        if greedy:
            i = int(logits.argmax())
        else:
            u = rng.random()
            if fast is None or (i := fast(logits, inv_t, u)) is None:
                _weights(logits, inv_t, top_k, top_p, w)
                accumulate(w, out=cum)  # np.cumsum, without its per-call overhead
                total = cum[-1]
                i = int(cum.searchsorted(u * total, "right"))
                if i >= V:  # u * total rounded up to total: take the last character with weight
                    i = int(cum.searchsorted(total, "left")) if np.isfinite(total) else -1
            if i < 0:
                raise CheckpointError("the model's output is not finite (NaN or infinite "
                                      "parameters?)")
        ch = chars[i]
        yield ch
        if keep:
            tail = (tail + ch)[-keep:]
            if any(map(tail.endswith, stops)):  # checked every character: the first reached
                return
        x[0] = i


# --------------------------------------------------------------------------------------------
# Conditioned generation (charrnn.models.generate): the family's `conditioned_lm` turns the model and one
# condition into a plain language model and its initial state; START is fed, then the prime,
# and the draws above run until END (not yielded) or config.length characters.


def label_condition(labels: list, label: str | None, dtype="float32") -> np.ndarray:
    """The one-hot condition (K,) of `label` among a run's labels; ConfigError listing them when
    the label is missing or unknown."""
    listed = ", ".join(labels)
    if label is None:
        raise ConfigError(f"this model generates for a label; give one of: {listed}")
    if label not in labels:
        raise ConfigError(f"unknown label {label!r}; the labels are: {listed}")
    c = np.zeros(len(labels), dtype=dtype)
    c[labels.index(label)] = 1
    return c


def generate_conditioned(params, cfg, vocab: Vocab, cond, prime: str = "",
                         config: SampleConfig = SampleConfig(),
                         rng: np.random.Generator | None = None) -> Iterator[str]:
    """Yield the prime (if any), then each character generated under the condition cond (C,)
    after it, until the model draws END or config.length characters are made. Arguments are
    checked now, as in `generate`."""
    from ..data.pairs import END, START_ID
    from ..models.generate import conditioned_lm

    if not isinstance(config, SampleConfig):
        raise ConfigError("config must be a SampleConfig")
    if len(vocab) != cfg.vocab_size:
        raise VocabularyError(f"vocabulary has {len(vocab)} characters but the model expects "
                              f"{cfg.vocab_size}")
    ids = np.concatenate([[START_ID], check_prime(vocab, prime)]).astype(np.intp)
    p, state = conditioned_lm(params, cfg, cond)
    step, x = M.stepper(p, cfg), np.zeros(1, dtype=np.intp)
    for i in ids:  # feed START and the prime
        x[0] = i
        out, state = step(x, state)
    if rng is None:
        rng = np.random.default_rng()

    def pieces():
        for piece in _generate(p, cfg, vocab, prime, ids, config, rng, (out[0], state)):
            if piece == END:
                return
            yield piece

    return pieces()
