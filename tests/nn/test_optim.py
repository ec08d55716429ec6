"""Optimizers against hand-written reference updates; clipping against np.linalg.norm."""

import math
import tracemalloc

import numpy as np
import pytest

from charrnn.errors import ConfigError
from charrnn.nn.optim import (
    HYPER,
    MIN_LR_FRAC,
    Average,
    Optimizer,
    clip_by_global_norm,
    global_norm,
    learning_rate,
)
from tests.helpers import assert_close


def make(rng):
    params = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(5)}
    grads = [{k: rng.standard_normal(v.shape) for k, v in params.items()} for _ in range(3)]
    return params, grads


def reference(name, p, gs, lrs, wd=0.0):
    """The textbook rules, element by element in plain Python floats: an independent check;
    with wd, each element first shrinks by lr * wd (decoupled weight decay, AdamW)."""
    p = [float(x) for x in p.ravel()]
    gs = [[float(x) for x in g.ravel()] for g in gs]
    m = [0.0] * len(p)
    v = [0.0] * len(p)
    for t, (g, lr) in enumerate(zip(gs, lrs), start=1):
        for i, gi in enumerate(g):
            p[i] -= lr * wd * p[i]
            if name == "sgd":
                m[i] = 0.9 * m[i] + gi
                p[i] -= lr * m[i]
            elif name == "adam":
                m[i] = 0.9 * m[i] + 0.1 * gi
                v[i] = 0.999 * v[i] + 0.001 * gi * gi
                mhat, vhat = m[i] / (1 - 0.9**t), v[i] / (1 - 0.999**t)
                p[i] -= lr * mhat / (math.sqrt(vhat) + 1e-8)
            elif name == "rmsprop":
                v[i] = 0.99 * v[i] + 0.01 * gi * gi
                p[i] -= lr * gi / (math.sqrt(v[i]) + 1e-8)
            elif name == "adagrad":
                v[i] += gi * gi
                p[i] -= lr * gi / (math.sqrt(v[i]) + 1e-8)
    return np.array(p)


@pytest.mark.parametrize("name", ["adam", "rmsprop", "adagrad", "sgd"])
def test_update_matches_textbook_rule(name, rng):
    params, grads = make(rng)
    start = {k: v.copy() for k, v in params.items()}
    opt = Optimizer(name, params)
    lrs = [0.1, 0.05, 0.02]
    for g, lr in zip(grads, lrs):
        opt.step(params, {k: v.copy() for k, v in g.items()}, lr)
    assert opt.t == 3
    for k in params:
        want = reference(name, start[k], [g[k] for g in grads], lrs).reshape(start[k].shape)
        assert_close(params[k], want, what=f"{name} {k}")


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_weight_decay_shrinks_the_matrices_and_leaves_the_biases(name, rng):
    params, grads = make(rng)
    start = {k: v.copy() for k, v in params.items()}
    opt = Optimizer(name, params, weight_decay=0.3)
    lrs = [0.1, 0.05, 0.02]
    for g, lr in zip(grads, lrs):
        opt.step(params, {k: v.copy() for k, v in g.items()}, lr)
    for k, wd in (("W", 0.3), ("b", 0.0)):  # W (3, 4) decays, the bias b (5,) does not
        want = reference(name, start[k], [g[k] for g in grads], lrs, wd).reshape(start[k].shape)
        assert_close(params[k], want, what=f"{name} {k}")


def test_hyperparameters_in_one_place():
    assert set(HYPER) == {"adam", "rmsprop", "adagrad", "sgd"}


def test_state_round_trip_continues_identically(rng):
    params, grads = make(rng)
    a = Optimizer("adam", params)
    a.step(params, grads[0], 0.1)
    copy = {k: v.copy() for k, v in params.items()}
    b = Optimizer("adam", copy)
    b.load_state({k: v.copy() for k, v in a.state.items()})
    a.step(params, grads[1], 0.1)
    b.step(copy, grads[1], 0.1)
    for k in params:
        np.testing.assert_array_equal(params[k], copy[k])


@pytest.mark.parametrize("name", ["adam", "rmsprop", "adagrad", "sgd"])
def test_clip_and_step_allocates_no_arrays(name, rng):
    params = {"W": rng.standard_normal((200, 300)), "b": rng.standard_normal(300)}
    grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    opt = Optimizer(name, params)
    ids = {k: id(v) for k, v in params.items()}
    opt.clip_and_step(params, grads, 0.1, 1.0)
    tracemalloc.start()
    opt.clip_and_step(params, grads, 0.1, 1.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 10_000, f"{name} allocated {peak} bytes; one gradient copy is 480,000"
    assert {k: id(v) for k, v in params.items()} == ids  # updated in place


def test_clip_against_linalg_norm(rng):
    _, grads = make(rng)
    grads = grads[0]
    flat = np.concatenate([g.ravel() for g in grads.values()])
    norm = np.linalg.norm(flat)
    assert_close(global_norm(grads), norm)
    before = {k: v.copy() for k, v in grads.items()}
    got = clip_by_global_norm(grads, norm / 4)
    assert_close(got, norm, what="norm before clipping")
    assert_close(np.linalg.norm(np.concatenate([g.ravel() for g in grads.values()])), norm / 4)
    for k in grads:  # same direction
        assert_close(grads[k], before[k] / 4, what=k)


def test_clip_leaves_small_gradients_and_zero_disables(rng):
    _, grads = make(rng)
    g = grads[0]
    before = {k: v.copy() for k, v in g.items()}
    norm = np.linalg.norm(np.concatenate([v.ravel() for v in g.values()]))
    clip_by_global_norm(g, norm * 2)
    clip_by_global_norm(g, 0)
    for k in g:
        np.testing.assert_array_equal(g[k], before[k])


def test_nonfinite_gradient_skips_the_update(rng):
    params, grads = make(rng)
    before = {k: v.copy() for k, v in params.items()}
    grads[0]["b"][1] = np.nan
    opt = Optimizer("sgd", params)
    assert math.isnan(opt.clip_and_step(params, grads[0], 0.1, 5.0))
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
    assert opt.t == 0


def test_schedule():
    assert learning_rate(1.0, "cosine", 4, 0, 0.0) == 0.25  # warm-up: (step + 1) / warmup
    assert learning_rate(1.0, "cosine", 4, 3, 0.0) == 1.0
    assert learning_rate(1.0, "constant", 4, 10, 0.7) == 1.0
    assert_close(learning_rate(2.0, "cosine", 0, 10, 0.5), 2.0 * (MIN_LR_FRAC + (1 - MIN_LR_FRAC) / 2))
    assert_close(learning_rate(2.0, "cosine", 0, 10, 1.0), 2.0 * MIN_LR_FRAC)
    assert learning_rate(2.0, "cosine", 0, 10, 5.0) == learning_rate(2.0, "cosine", 0, 10, 1.0)


def step_weights(decay, steps):
    """Each step's share of the average after `steps` updates, from the documented rule
    a_t = d_t a_{t-1} + (1 - d_t) p_t, d_t = min(decay, (t - 1) / (t + 8)), unrolled in plain
    floats."""
    d = [min(decay, (t - 1) / (t + 8)) for t in range(1, steps + 1)]
    return [(1 - d[i]) * math.prod(d[i + 1:]) for i in range(steps)]


def test_average_starts_at_the_first_step_and_weighs_the_steps_as_documented(rng):
    steps = [{"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(5)} for _ in range(40)]
    avg = Average({k: np.zeros_like(v) for k, v in steps[0].items()}, 0.75)
    for t, p in enumerate(steps, start=1):
        avg.update(p, t)
        if t == 1:  # d_1 = 0: the average is the first step's weights, whatever came before
            for k in p:
                np.testing.assert_array_equal(avg.params[k], p[k])
        if t == 2:  # d_2 = 1/10
            for k in p:
                assert_close(avg.params[k], 0.1 * steps[0][k] + 0.9 * steps[1][k], what=k)
    w = step_weights(0.75, 40)  # d_t reaches 0.75 at t = 28
    assert_close(sum(w), 1.0, what="the shares")
    assert_close(w[-1], 0.25, what="the last step's share")
    assert_close(w[-2], 0.25 * 0.75, what="the one before")
    for k in steps[0]:
        assert_close(avg.params[k], sum(wi * s[k] for wi, s in zip(w, steps)), what=k)


def test_average_update_allocates_no_arrays_and_rejects_a_bad_decay(rng):
    params = {"W": rng.standard_normal((200, 300)), "b": rng.standard_normal(300)}
    avg = Average(params, 0.99)
    avg.update(params, 1)
    tracemalloc.start()
    avg.update(params, 2)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 10_000, f"the average's update allocated {peak} bytes"
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError, match="decay"):
            Average(params, bad)
