"""Carried state as nested tuples of arrays whose rows are the batch's rows (streams, sequences):
for a recurrent stack, per layer a tuple of (N, H) arrays, `(h,)` or `(h, c)`. Every family's
state has this shape, so the worker processes can split, send and join any of them."""

from __future__ import annotations

import numpy as np

State = tuple  # per layer, a tuple of (N, H) arrays


def state_slice(state: State, s: slice) -> State:
    """The state of the rows s."""
    return tuple(tuple(a[s] for a in layer) for layer in state)


def state_concat(states: list) -> State:
    """The states of consecutive groups of rows joined into one."""
    if len(states) == 1:
        return states[0]
    return tuple(tuple(np.concatenate(parts) for parts in zip(*layers)) for layers in zip(*states))


def flat_state(state: State) -> list:
    """The arrays of a state in order (layer by layer), for the wire and for checkpoints."""
    return [a for layer in state for a in layer]


def nest_state(arrays, like: State) -> State:
    """flat_state undone, shaped like `like` (any state of the same structure, e.g. zero rows)."""
    it = iter(arrays)
    return tuple(tuple(next(it) for _ in layer) for layer in like)
