"""Explanations: the exact derivative of a prediction with respect to the
weight of each of the user's ratings, through the T inner steps."""

import numpy as np
from numba import prange

from ._jit import REORDER_SUMS, jit
from .maths import _gather, _inner_loop, _scratch, _with_prior, copy_into, unpack
from .sampling import _history_task


@jit(fastmath=REORDER_SUMS)
def _rating_influence(n_rated, items, ratings, weights, t_ctx, off, mu, bi, Q, inner, alpha, start, x, out):
    """``out[j]`` ← ∂ŝ/∂w_j for the user's ratings j < ``n_rated`` (laid
    out by ``_history_task``: its ratings, then n_neg negatives each), where
    ŝ = c + xᵀφ_T is a prediction with feature vector ``x`` and φ_T the
    inner loop's result from ``start``. With ṽ_t = α ⊙ v_{t+1} and
    v_T = x, the reverse pass of φ_{t+1} = φ_t − α ⊙ g(φ_t) gives
    ∂ŝ/∂w_e −= (ℓ'_e x_eᵀṽ − g_lossᵀṽ) / W̃_S for each support term e
    (g_loss = Σ w ℓ' x / W̃_S: the derivative of the normalizer), and
    v_t = v_{t+1} − H ṽ. A rating's weight is also its negatives' (and its
    pairs'), so their terms add to it."""
    d = start.shape[0]
    m = items.shape[0]
    X, cyw, ends, slopes, phis, vecs = _scratch(m, d, inner.n_steps)
    zero = np.int64(0)
    nt, w_s = _gather(zero, m, items, ratings, weights, mu, bi, Q, inner, X, cyw, ends, zero, t_ctx, off)
    ws = _with_prior(w_s, inner)
    copy_into(phis[0], start)
    _inner_loop(phis, nt, X, cyw, ws, alpha, inner, slopes, vecs[0])
    for j in range(n_rated):
        out[j] = 0.0
    if ws <= 0.0:
        return
    v, vt, hv = vecs[1], vecs[2], vecs[3]
    copy_into(v, x)
    for t in range(inner.n_steps - 1, -1, -1):
        for a in range(d):
            vt[a] = alpha[a] * v[a]
            hv[a] = 2.0 * inner.lam * vt[a]
        gl = 0.0
        for e in range(nt):
            xv = 0.0
            for a in range(d):
                xv += X[e, a] * vt[a]
            gl += cyw[e, 2] / ws * slopes[e, t] * xv
        for e in range(nt):
            xv = 0.0
            for a in range(d):
                xv += X[e, a] * vt[a]
            p = ends[e, 0]
            j = p if p < n_rated else (p - n_rated) // max(inner.n_neg, 1)
            out[j] -= (slopes[e, t] * xv - gl) / ws
            cx = cyw[e, 2] / ws * slopes[e, inner.n_steps + t] * xv
            for a in range(d):
                hv[a] += cx * X[e, a]
        for a in range(d):
            v[a] -= hv[a]


@jit(parallel=True)
def influence_users(indptr, items, ratings, weights, users, keys, seed, theta, n_items, alpha, inner, starts,
                    ctxs, off, x, out_indptr, out):
    """For each explanation b: user ``users[b]``'s ratings (a CSR row; its
    negatives keyed by (seed, keys[b])), adapted from ``starts[b]``, and a
    prediction with feature vector ``x[b]``: ``out[out_indptr[b]:…]`` ←
    ∂ŝ/∂w_j for each of the user's ratings, in log order (see
    ``_rating_influence``)."""
    mu = theta[0]
    _, bi, Q = unpack(theta, n_items, alpha.shape[0])
    for b in prange(users.shape[0]):
        u = users[b]
        t_items, t_y, t_w, t_ctx, _ = _history_task(indptr, items, ratings, weights, u, keys[b], seed, n_items,
                                                   inner.n_neg, ctxs)
        _rating_influence(indptr[u + 1] - indptr[u], t_items, t_y, t_w, t_ctx, off, mu, bi, Q, inner, alpha,
                          starts[b], x[b], out[out_indptr[b] : out_indptr[b + 1]])
