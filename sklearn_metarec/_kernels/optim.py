"""Outer-loop optimizers on the flat meta-parameter vector: Adam, lazy Adam
over a batch's item rows, Reptile's step."""

import math

import numpy as np
from numba import prange

from ._jit import jit


@jit()
def _adam_range(theta, grad, m, v, c1, c2, lr, a0, a1):
    """Adam (β₁ = 0.9, β₂ = 0.999, ε = 1e-8) on entries a0..a1−1, with the
    bias corrections c1 = 1 − β₁^step and c2 = 1 − β₂^step (step from 1)."""
    for a in range(a0, a1):
        m[a] = 0.9 * m[a] + (1.0 - 0.9) * grad[a]
        v[a] = 0.999 * v[a] + (1.0 - 0.999) * grad[a] * grad[a]
        theta[a] -= lr * (m[a] / c1) / (math.sqrt(v[a] / c2) + 1e-8)


@jit()
def adam_step(theta, grad, m, v, step, lr):
    """One Adam update of every entry."""
    _adam_range(theta, grad, m, v, 1.0 - 0.9**step, 1.0 - 0.999**step, lr, 0, theta.shape[0])


@jit(parallel=True)
def adam_rows(theta, grad, m, v, step, lr, n_items, d, rows, n_rows, row_steps):
    """:func:`adam_step` on (μ, φ₀) and on the item rows ``rows[:n_rows]``
    only (lazy Adam: an item's moments move when it has a gradient), so that
    a meta-batch costs the same however many items there are.

    Each item row is corrected for bias by its own count of updates,
    ``row_steps[i]`` (incremented here), as if Adam ran on that row's
    gradients alone. With the global step instead, a row updated for the
    first time late in training would step 1/√(1 − β₂) ≈ 3.2 times as far
    as Adam's first step: rare items, whose gradients are the noisiest,
    would move fastest."""
    k = d - 1
    _adam_range(theta, grad, m, v, 1.0 - 0.9**step, 1.0 - 0.999**step, lr, 0, 1 + d)
    for r in prange(n_rows):
        i = rows[r]
        row_steps[i] += 1
        c1 = 1.0 - 0.9 ** row_steps[i]
        c2 = 1.0 - 0.999 ** row_steps[i]
        b = 1 + d + i
        _adam_range(theta, grad, m, v, c1, c2, lr, b, b + 1)
        q = 1 + d + n_items + i * k
        _adam_range(theta, grad, m, v, c1, c2, lr, q, q + k)


@jit(parallel=True)
def step_rows(theta, delta, lr, n_items, d, rows, n_rows):
    """θ += lr·δ on (μ, φ₀) and on the item rows ``rows[:n_rows]``, the only
    entries of δ a meta-batch writes."""
    k = d - 1
    for a in range(1 + d):
        theta[a] += lr * delta[a]
    for r in prange(n_rows):
        b = 1 + d + rows[r]
        theta[b] += lr * delta[b]
        q = 1 + d + n_items + rows[r] * k
        for f in range(k):
            theta[q + f] += lr * delta[q + f]
