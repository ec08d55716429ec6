"""Attention over a padded batch of encoder outputs, for all decoder steps at once.

Shapes: N rows, T decoder steps, S source positions (padded), Q decoder state size, E encoder
output size (R*H), A the additive score's hidden size. Public arrays are time-major like the
rest of charrnn.nn: decoder states s (T, N, Q), encoder outputs h (S, N, E), weights a (T, N, S).
Row n has L_n real source positions (1 <= L_n <= S); the rest is padding.

Luong-style: the scores read the decoder's output s_t after its recurrent step (no input
feeding), so a whole teacher-forced target is attended in one pass after the decoder RNN:

    kind "additive" (Bahdanau's score):  e_{t,j} = v . tanh(s_t Ws + k_j),   k_j = h_j Wk + b
                                         Ws (Q, A), Wk (E, A), b (A,), v (A,)
    kind "dot" (Luong's "general"):      e_{t,j} = s_t W h_j = s_t . k_j,    k_j = h_j W^T
                                         W (Q, E)
    a_{t,j} = exp(e_{t,j}) / sum_{i < L} exp(e_{t,i})   for j < L,   exactly 0 for j >= L
    c_t = sum_j a_{t,j} h_j                              (T, N, E)

The keys k (S, N, A or Q) depend on the source only: `keys` computes them once per source and
`forward` takes them, so step-by-step decoding pays for them once.

Padding: the scores at j >= L are replaced by -inf before the softmax, so exp gives exactly 0
there. Backward: the softmax gradient de = a * (da - sum_j a da) is then exactly 0 at padding too,
so nothing flows into padded keys or encoder outputs (which the encoder keeps at zero anyway).

Parameters are one flat dict with a prefix (default "att."): att.Ws, att.Wk, att.b, att.v, or
att.W. Gradients come back under the same names.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

KINDS = ("additive", "dot")


def param_shapes(kind: str, Q: int, E: int, A: int, prefix: str = "att.") -> dict:
    if kind == "additive":
        return {prefix + "Ws": (Q, A), prefix + "Wk": (E, A), prefix + "b": (A,),
                prefix + "v": (A,)}
    if kind == "dot":
        return {prefix + "W": (Q, E)}
    raise ValueError(f"unknown attention {kind!r}; choose one of {', '.join(KINDS)}")


def keys(params: dict, kind: str, h: np.ndarray, prefix: str = "att.") -> np.ndarray:
    """The source-side projection k (S, N, A) (additive) or (S, N, Q) (dot) of h (S, N, E)."""
    if kind == "additive":
        k = h @ params[prefix + "Wk"]  # h_j Wk
        k += params[prefix + "b"]  # k_j = h_j Wk + b
        return k
    return h @ params[prefix + "W"].T  # k_j = h_j W^T


class Cache(NamedTuple):
    kind: str
    prefix: str
    params: dict
    s: np.ndarray  # (N, T, Q) decoder states, batch-major
    hb: np.ndarray  # (N, S, E) encoder outputs, batch-major
    h: np.ndarray  # (S, N, E) as given
    kb: np.ndarray  # (N, S, X) keys, batch-major
    u: np.ndarray | None  # (N, T, S, A) tanh(s_t Ws + k_j), additive only
    a: np.ndarray  # (N, T, S) weights


def forward(params: dict, kind: str, s, h, lengths, k=None, prefix: str = "att."):
    """(context c (T, N, E), weights a (T, N, S), cache) for decoder states s (T, N, Q), encoder
    outputs h (S, N, E), source lengths (N,), and the keys from `keys` (computed if None)."""
    if k is None:
        k = keys(params, kind, h, prefix)
    S = h.shape[0]
    sb = s.transpose(1, 0, 2)  # (N, T, Q)
    hb = h.transpose(1, 0, 2)  # (N, S, E)
    kb = k.transpose(1, 0, 2)  # (N, S, X)
    u = None
    if kind == "additive":
        q = sb @ params[prefix + "Ws"]  # (N, T, A) s_t Ws
        u = np.tanh(q[:, :, None, :] + kb[:, None, :, :])  # (N, T, S, A)
        e = u @ params[prefix + "v"]  # (N, T, S) v . tanh(s_t Ws + k_j)
    else:
        e = sb @ kb.transpose(0, 2, 1)  # (N, T, S) s_t . k_j
    real = np.arange(S)[None, None, :] < np.asarray(lengths)[:, None, None]  # (N, 1, S)
    e = np.where(real, e, -np.inf)
    e -= e.max(axis=-1, keepdims=True)  # finite: every row has a real position
    a = np.exp(e)  # exactly 0 at padding
    a /= a.sum(axis=-1, keepdims=True)
    c = a @ hb  # (N, T, E) c_t = sum_j a_tj h_j
    cache = Cache(kind, prefix, params, sb, hb, h, kb, u, a)
    return c.transpose(1, 0, 2), a.transpose(1, 0, 2), cache


def backward(dc: np.ndarray, cache: Cache, da_extra=None):
    """(ds (T, N, Q), dh (S, N, E), grads) given dc (T, N, E), the gradient of the context;
    `da_extra` (T, N, S), optional, a gradient of the weights themselves."""
    kind, prefix, params, sb, hb, _h, kb, u, a = cache
    dcb = dc.transpose(1, 0, 2)  # (N, T, E)
    da = dcb @ hb.transpose(0, 2, 1)  # (N, T, S) dc_t . h_j
    if da_extra is not None:
        da = da + da_extra.transpose(1, 0, 2)
    dhb = a.transpose(0, 2, 1) @ dcb  # (N, S, E) sum_t a_tj dc_t
    de = da - (a * da).sum(axis=-1, keepdims=True)
    de *= a  # softmax backward; exactly 0 at padding, where a = 0
    N, T, S = de.shape
    grads = {}
    if kind == "additive":
        v, Ws, Wk = params[prefix + "v"], params[prefix + "Ws"], params[prefix + "Wk"]
        grads[prefix + "v"] = np.einsum("nts,ntsa->a", de, u)  # de . u
        dpre = de[..., None] * v  # d(v . u) / du
        dpre *= 1 - u * u  # through tanh: d(s_t Ws + k_j)
        dq = dpre.sum(axis=2)  # (N, T, A)
        dk = dpre.sum(axis=1)  # (N, S, A)
        A = dq.shape[-1]
        grads[prefix + "Ws"] = sb.reshape(N * T, -1).T @ dq.reshape(N * T, A)
        grads[prefix + "Wk"] = hb.reshape(N * S, -1).T @ dk.reshape(N * S, A)
        grads[prefix + "b"] = dk.sum(axis=(0, 1))
        dsb = dq @ Ws.T  # (N, T, Q)
        dhb += dk @ Wk.T
    else:
        W = params[prefix + "W"]
        dsb = de @ kb  # (N, T, Q) sum_j de_tj k_j
        dk = de.transpose(0, 2, 1) @ sb  # (N, S, Q) sum_t de_tj s_t
        grads[prefix + "W"] = dk.reshape(N * S, -1).T @ hb.reshape(N * S, -1)  # k = h W^T
        dhb += dk @ W
    return dsb.transpose(1, 0, 2), dhb.transpose(1, 0, 2), grads
