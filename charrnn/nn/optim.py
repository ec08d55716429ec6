"""Optimizers, clipping by global norm, and the learning-rate schedule.

Every optimizer walks the flat parameter dict (charrnn.model) and updates it in place. Its state is
a flat dict of arrays ("m.l0.Wx", "v.l0.Wx", ..., and "t", the number of updates done, as a
(1,) int64 array), so a checkpoint stores it as it is and a resumed run continues bit for bit. The hot
path (clip_and_step) allocates nothing: each update writes through one scratch buffer per
parameter with `out=`.

Update rules (g the gradient after clipping, lr the rate of this step, t counted from 1):

    sgd      b = mu*b + g;                          p -= lr * b          (PyTorch's momentum)
    adam     m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
             p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    rmsprop  v = rho*v + (1-rho)*g^2;               p -= lr * g / (sqrt(v) + eps)
    adagrad  v = v + g^2;                           p -= lr * g / (sqrt(v) + eps)

With weight decay wd > 0, every weight matrix (a parameter of two or more dimensions; biases are
left alone) first shrinks by p *= 1 - lr * wd, decoupled from the gradient (AdamW, Loshchilov &
Hutter 2019; the same rule for every optimizer), so it follows the learning-rate schedule.

The hyperparameters other than lr and wd live in HYPER, in one place.

`Average` keeps an exponential moving average of the parameters (Polyak averaging), updated
after every step, with decay d after update t (counted from 1)

    d_t = min(d, (t - 1) / (t + 8));      a_t = d_t * a_{t-1} + (1 - d_t) * p_t

so a_1 = p_1, and the average reaches back about (t + 8) / 9 steps, the last tenth of the run so
far, until that is 1 / (1 - d) steps (at t = (8d + 1) / (1 - d): 1,792 steps for d = 0.995);
from then on it forgets old steps at the rate d per step. The warm-up keeps a short run's
average close to its last weights instead of dragging in the first, untrained ones. It never
feeds back into training: the trainer evaluates and saves it in place of the weights it steps.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError

HYPER = {
    "adam": {"b1": 0.9, "b2": 0.999, "eps": 1e-8},
    "rmsprop": {"rho": 0.99, "eps": 1e-8},
    "adagrad": {"eps": 1e-8},
    "sgd": {"mu": 0.9},
}
SLOTS = {"adam": ("m", "v"), "rmsprop": ("v",), "adagrad": ("v",), "sgd": ("b",)}
OPTIMIZERS = tuple(HYPER)  # adam first: the default
SCHEDULES = ("cosine", "constant")
MIN_LR_FRAC = 0.1  # the cosine schedule ends at this fraction of the base rate


def global_norm(grads: dict[str, np.ndarray]) -> float:
    """sqrt of the sum of squares of every element of every gradient (float64 total)."""
    total = 0.0
    for g in grads.values():
        flat = g.reshape(-1)
        total += float(np.dot(flat, flat))
    return math.sqrt(total)


def clip_by_global_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale all gradients in place so their global norm is at most `max_norm` (0: no clipping).
    Returns the norm before clipping."""
    norm = global_norm(grads)
    if max_norm > 0 and norm > max_norm and math.isfinite(norm):
        scale = max_norm / norm
        for g in grads.values():
            g *= scale
    return norm


class Optimizer:
    """One of OPTIMIZERS over a parameter dict. `state` is what a checkpoint saves."""

    def __init__(self, name: str, params: dict[str, np.ndarray], weight_decay: float = 0.0):
        if name not in HYPER:
            raise ConfigError(f"unknown optimizer {name!r}; choose one of {', '.join(HYPER)}")
        if not 0 <= weight_decay < math.inf:
            raise ConfigError(f"weight decay must be >= 0, not {weight_decay!r}")
        self.name, self.weight_decay = name, weight_decay
        self.hyper = HYPER[name]
        self.state: dict[str, np.ndarray] = {"t": np.zeros(1, dtype=np.int64)}
        for slot in SLOTS[name]:
            for k, p in params.items():
                self.state[f"{slot}.{k}"] = np.zeros_like(p)
        self._scratch = {k: np.empty_like(p) for k, p in params.items()}

    @property
    def t(self) -> int:
        return int(self.state["t"][0])

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Copy saved state (as returned by `state`) into this optimizer, checking every array."""
        if set(arrays) != set(self.state):
            missing = sorted(set(self.state) - set(arrays))
            extra = sorted(set(arrays) - set(self.state))
            raise ConfigError(f"optimizer state does not match {self.name}: missing {missing}, "
                              f"unexpected {extra}")
        for k, a in arrays.items():
            if a.shape != self.state[k].shape:
                raise ConfigError(f"optimizer state {k} has shape {a.shape}, "
                                  f"expected {self.state[k].shape}")
            self.state[k][...] = a

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float) -> None:
        """Update every parameter in place with its gradient."""
        self.state["t"] += 1
        t = self.t
        h, s = self.hyper, self.state
        for k, p in params.items():
            g, tmp = grads[k], self._scratch[k]
            if self.weight_decay and p.ndim > 1:
                p *= 1 - lr * self.weight_decay
            if self.name == "adam":
                m, v = s[f"m.{k}"], s[f"v.{k}"]
                m *= h["b1"]
                np.multiply(g, 1 - h["b1"], out=tmp)
                m += tmp
                v *= h["b2"]
                np.multiply(g, g, out=tmp)
                tmp *= 1 - h["b2"]
                v += tmp
                np.divide(v, 1 - h["b2"] ** t, out=tmp)
                np.sqrt(tmp, out=tmp)
                tmp += h["eps"]
                np.divide(m, tmp, out=tmp)
                tmp *= lr / (1 - h["b1"] ** t)
            elif self.name == "sgd":
                b = s[f"b.{k}"]
                b *= h["mu"]
                b += g
                np.multiply(b, lr, out=tmp)
            else:  # rmsprop, adagrad: v accumulates g^2 (decayed or not)
                v = s[f"v.{k}"]
                np.multiply(g, g, out=tmp)
                if self.name == "rmsprop":
                    v *= h["rho"]
                    tmp *= 1 - h["rho"]
                v += tmp
                np.sqrt(v, out=tmp)
                tmp += h["eps"]
                np.divide(g, tmp, out=tmp)
                tmp *= lr
            p -= tmp

    def clip_and_step(self, params, grads, lr: float, clip: float) -> float:
        """Clip the gradients to global norm `clip` (0: off), then step. Returns the norm before
        clipping. If that norm is NaN or infinite nothing is updated (the trainer stops)."""
        norm = clip_by_global_norm(grads, clip)
        if math.isfinite(norm):
            self.step(params, grads, lr)
        return norm


class Average:
    """An exponential moving average `params` of the parameters (see the module docstring),
    allocation-free per update (one scratch buffer per parameter)."""

    def __init__(self, params: dict[str, np.ndarray], decay: float):
        if not 0 < decay < 1:
            raise ConfigError(f"the average's decay must be in (0, 1), not {decay!r}")
        self.decay = decay
        self.params = {k: p.copy() for k, p in params.items()}
        self._scratch = {k: np.empty_like(p) for k, p in params.items()}

    def update(self, params: dict[str, np.ndarray], t: int) -> None:
        """Fold in the weights after update number t (from 1): a += (1 - d_t) (p - a)."""
        keep = min(self.decay, (t - 1) / (t + 8))
        for k, p in params.items():
            a, tmp = self.params[k], self._scratch[k]
            np.subtract(p, a, out=tmp)
            tmp *= 1 - keep
            a += tmp


def learning_rate(base: float, schedule: str, warmup: int, step: int, progress: float) -> float:
    """The rate for update number `step` (0-based).

    Linear warm-up over the first `warmup` updates: base * (step + 1) / warmup. After it,
    `constant` keeps `base`; `cosine` follows base * (f + (1 - f) * (1 + cos(pi * x)) / 2) with
    f = MIN_LR_FRAC and x = `progress`, how far the decay has gone, clipped to [0, 1] (the
    trainer measures it against the run's budget, see charrnn.train).
    """
    if step < warmup:
        return base * (step + 1) / warmup
    if schedule == "constant":
        return base
    x = min(max(progress, 0.0), 1.0)
    return base * (MIN_LR_FRAC + (1 - MIN_LR_FRAC) * 0.5 * (1 + math.cos(math.pi * x)))
