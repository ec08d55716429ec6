"""Finite-difference gradient checks in float64, shared by `charrnn gradcheck` and the tests.

The numerical derivative uses the five-point central stencil

    f'(x) ~ [f(x - 2e) - 8 f(x - e) + 8 f(x + e) - f(x + 2e)] / (12 e),   e = 1e-3,

whose truncation error is O(e^4); in float64 that leaves errors near 1e-12 of the gradient's size.

The error reported for a parameter is max_i |analytic_i - numeric_i| / max(max_i |numeric_i|,
FLOOR): the worst element's error relative to that parameter's gradient scale. (A purely
elementwise ratio is meaningless for elements whose true gradient is exactly zero, such as rows
of `Wx` for characters the batch does not contain.) FLOOR = 1e-6 keeps a gradient that is zero
as a whole (e.g. `Wy` when dropout zeroes a 1-unit layer) from comparing float64 rounding noise,
about 1e-14 here, with itself; an error in such a gradient still fails once it exceeds
tol x 1e-6. A wrong sign, a missing term or a swapped axis shows up as an error
of order 1e-3 to 1; a correct implementation stays near 1e-10.

The checked objective is the loss plus a fixed random linear function of the final state, so the
gradient flowing *into* a chunk from its end (used by `gradflow`) is checked as well as the loss.
For two or more layers dropout is on, with the same masks in every evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..models import lm
from ..nn.cells import CELLS
from ..nn.state import flat_state

EPS = 1e-3
DEFAULT_TOL = 1e-6
FLOOR = 1e-6  # the smallest gradient scale errors are measured against (module docstring)


class Result(NamedTuple):
    cell: str
    layers: int
    name: str  # parameter name, or "state.l{k}.h" / "state.l{k}.c" for the initial state
    rel_error: float
    abs_error: float
    worst_index: tuple  # index of the worst element
    tol: float

    @property
    def passed(self) -> bool:
        return bool(self.rel_error < self.tol)


def numeric_gradient(f: Callable[[], float], x: np.ndarray, eps: float = EPS) -> np.ndarray:
    """d f / d x by the five-point stencil, perturbing `x` in place (and restoring it)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        values = []
        for delta in (-2 * eps, -eps, eps, 2 * eps):
            x[i] = old + delta
            values.append(f())
        x[i] = old
        grad[i] = (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * eps)
    return grad


def compare(analytic: np.ndarray, numeric: np.ndarray) -> tuple[float, float, tuple]:
    """(relative error, absolute error, index of the worst element); see the module docstring."""
    diff = np.abs(analytic - numeric)
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else ()
    abs_err = float(diff.max()) if diff.size else 0.0
    scale = max(float(np.abs(numeric).max()) if diff.size else 0.0, FLOOR)
    return abs_err / scale, abs_err, tuple(int(i) for i in worst)


def _check_all(label, layers, arrays: dict, analytic: dict, f, tol) -> list[Result]:
    out = []
    for name, x in arrays.items():
        rel, abs_err, idx = compare(analytic[name], numeric_gradient(f, x))
        out.append(Result(label, layers, name, rel, abs_err, idx, tol))
    return out


def check_family(F, cfg, label: str, depth: int, rows: int = 2, steps: int = 7, seed: int = 0,
                 tol: float = DEFAULT_TOL) -> list[Result]:
    """Check family F's whole loss gradient, for the model `cfg` (float64), with respect to every
    parameter and every array of the initial state. The objective is the loss plus a random
    linear function of the final state; the masks (dropout) are drawn once and kept fixed."""
    rng = np.random.default_rng(seed)
    params = F.init_params(cfg, rng)
    for name in params:  # move off the special initial values (zero biases, orthogonal Wh)
        params[name] += 0.3 * rng.standard_normal(params[name].shape)
    batch = F.example_batch(cfg, rng, rows, steps)
    state = tuple(tuple(0.5 * rng.standard_normal(a.shape) for a in layer)
                  for layer in F.init_state(cfg, rows))
    weights = tuple(tuple(rng.standard_normal(a.shape) for a in layer) for layer in state)
    masks = F.draw_masks(cfg, np.random.default_rng(int(rng.integers(2**31))), batch)

    def objective() -> float:
        loss, final = F.loss(params, cfg, batch, state, masks)
        return loss + sum(float((w * s).sum()) for ws, ss in zip(weights, final)
                          for w, s in zip(ws, ss))

    _, grads, _, dstate0 = F.gradients(params, cfg, batch, state, masks, weights)
    arrays, analytic = dict(params), dict(grads)
    names = [f"state.{n}" for n in F.state_names(cfg)]
    arrays.update(zip(names, flat_state(state)))
    analytic.update(zip(names, flat_state(dstate0)))
    return _check_all(label, depth, arrays, analytic, objective, tol)


def check_model(cell: str, layers: int = 1, hidden: int = 5, seq: int = 7, batch: int = 2,
                vocab: int = 4, seed: int = 0, dropout: float | None = None,
                tol: float = DEFAULT_TOL) -> list[Result]:
    """Check the language model's gradients (check_family), dropout on from 2 layers."""
    if dropout is None:
        dropout = 0.3 if layers > 1 else 0.0
    cfg = lm.ModelConfig(vocab_size=vocab, cell=cell, hidden=hidden, layers=layers,
                         dropout=dropout, dtype="float64")
    return check_family(lm, cfg, cell, layers, batch, seq, seed, tol)


def check_cell(cell: str, batch: int = 2, seq: int = 3, hidden: int = 5, seed: int = 0,
               tol: float = DEFAULT_TOL) -> list[Result]:
    """Check one cell's chunk forward/backward alone: with respect to its input projection `xp`,
    its recurrent parameters and its initial state, for the objective sum(wh * hs) + sum(ws * s_T)."""
    c = CELLS[cell]
    rng = np.random.default_rng(seed)
    G = c.gates * hidden
    xp = rng.standard_normal((seq, batch, G))
    p = {"Wh": 0.5 * rng.standard_normal((hidden, G))}
    if "bhn" in c.recurrent:
        p["bhn"] = rng.standard_normal(hidden)
    state = tuple(0.5 * rng.standard_normal((batch, hidden)) for _ in range(c.n_states))
    wh = rng.standard_normal((seq, batch, hidden))
    ws = tuple(rng.standard_normal((batch, hidden)) for _ in range(c.n_states))

    def objective() -> float:
        hs, final, _ = c.forward(xp.copy(), state, p)  # forward overwrites its xp
        return float((wh * hs).sum()) + sum(float((w * s).sum()) for w, s in zip(ws, final))

    _, _, cache = c.forward(xp.copy(), state, p)
    dxp, dstate0, grads = c.backward(wh, ws, cache)
    arrays = {"xp": xp, **p}
    analytic = {"xp": dxp, **grads}
    for j, (a, da) in enumerate(zip(state, dstate0)):
        arrays[f"state.{'hc'[j]}"] = a
        analytic[f"state.{'hc'[j]}"] = da
    return _check_all(cell, 1, arrays, analytic, objective, tol)


TASKS = ("lm", "classify", "tag", "seq2seq", "generate")
# with every cell checked, every pooling and every attention kind is too
POOLING_BY_CELL = {"rnn": "last", "gru": "mean", "lstm": "max"}
ATTENTION_BY_CELL = {"rnn": "none", "gru": "additive", "lstm": "dot"}


def check_encoded(task: str, cell: str, layers: int = 1, hidden: int = 5, seq: int = 7,
                  batch: int = 2, vocab: int = 4, seed: int = 0, classes: int = 3,
                  tol: float = DEFAULT_TOL) -> list[Result]:
    """Check a classifier's, tagger's or encoder-decoder's gradients (check_family): a
    bidirectional encoder over sequences of different lengths (padded, with garbage ids at the
    padding), dropout masks from 2 layers, the classifier pooling as POOLING_BY_CELL (with
    characters dropped to the unknown symbol, input_dropout) and the encoder-decoder attending
    as ATTENTION_BY_CELL says."""
    from ..models import classify, seq2seq, tag

    F = {"classify": classify, "tag": tag, "seq2seq": seq2seq}[task]
    extra = {"classify": {"classes": classes, "pooling": POOLING_BY_CELL[cell],
                          "input_dropout": 0.3},
             "tag": {"tags": classes},
             "seq2seq": {"target_size": classes + 3, "attention": ATTENTION_BY_CELL[cell]}}[task]
    cfg = F.Config(vocab_size=vocab, cell=cell, hidden=hidden, layers=layers,
                   bidirectional=True, dropout=0.3 if layers > 1 else 0.0, dtype="float64",
                   **extra)
    return check_family(F, cfg, f"{task} {cell}", layers, max(batch, 3), seq, seed, tol)


def check_generate(cell: str, layers: int = 1, hidden: int = 5, seq: int = 7, batch: int = 2,
                   vocab: int = 4, seed: int = 0, classes: int = 3,
                   tol: float = DEFAULT_TOL) -> list[Result]:
    """Check the conditioned generator's gradients (check_family) with the condition entering
    both ways (the initial state, every step's input), condition vectors of `classes` random
    values, texts of different lengths with garbage at the padding, dropout from 2 layers."""
    from ..models import generate

    out = []
    for way in ("init", "input"):
        cfg = generate.Config(vocab_size=vocab + 3, cond_size=classes, cell=cell, hidden=hidden,
                              layers=layers, condition=way, dropout=0.3 if layers > 1 else 0.0,
                              dtype="float64")
        out += check_family(generate, cfg, f"generate/{way} {cell}", layers, max(batch, 3), seq,
                            seed, tol)
    return out


def plan(cells=tuple(CELLS), layers=(1, 2), tasks=("lm",)) -> list[tuple[str, str, int]]:
    """The (task, cell, layers) checks `run` makes, in its order: for each task every cell in
    `cells` for every depth in `layers`."""
    return [(task, cell, n) for task in tasks for cell in cells for n in layers]


def check(task: str, cell: str, layers: int, tol: float = DEFAULT_TOL,
          **sizes) -> list[Result]:
    """One check of `plan`: the language model with check_model, the generator with
    check_generate, the others with check_encoded."""
    if task == "lm":
        return check_model(cell, layers=layers, tol=tol, **sizes)
    if task == "generate":
        return check_generate(cell, layers=layers, tol=tol, **sizes)
    return check_encoded(task, cell, layers=layers, tol=tol, **sizes)


def run(cells=tuple(CELLS), layers=(1, 2), tol: float = DEFAULT_TOL, tasks=("lm",),
        **sizes) -> list[Result]:
    """The checks `charrnn gradcheck` runs (`plan`), one after another."""
    results = []
    for task, cell, n in plan(cells, layers, tasks):
        results += check(task, cell, n, tol=tol, **sizes)
    return results
