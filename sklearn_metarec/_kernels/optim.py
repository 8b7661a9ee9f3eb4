"""Outer-loop optimizers on the flat meta-parameter vector: Adam, lazy Adam
over a batch's item rows, Reptile's step."""

import math

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


@jit()
def _unit_clip(x):
    return max(-1.0, min(1.0, x))


@jit(parallel=True)
def adam_rows(theta, grad, m, v_head, v_items, step, lr, n_items, d, rows, n_rows, row_steps):
    """One step of lazy Adam with a shared second moment for item rows.

    (μ, φ₀) take an Adam step (second moments ``v_head``, of length 1 + d).
    Of the items, only the rows ``rows[:n_rows]`` move, so that a meta-batch
    costs the same however many items there are. Each keeps its own first
    moment in ``m``, corrected for bias by its own count of updates
    ``row_steps[i]`` (incremented here), but the second moment is one per
    block, ``v_items`` = (item biases, item factors): a running mean of the
    batch rows' mean squared gradient.

    Why shared: with a second moment per entry, Adam moves every item by
    about ``lr`` per update whatever its gradient, so an item with two
    ratings travels as far per appearance as one with two hundred, on
    evidence a hundred times noisier, and such items top every catalogue-
    wide list. With one scale per block an item's step follows its
    gradient, which grows with its ratings in the batch, as in SGD, while
    the scale still adapts to the gradients' size. (MovieLens-100k, 10
    support ratings, defaults: catalogue nDCG@10 of new users 0.085 ->
    0.169 at the same RMSE.) A step is capped at ``lr`` per entry, the size
    of Adam's: an entry whose gradient is far above its block's RMS would
    otherwise step as many times ``lr`` (Meta-SGD diverged so on a
    long-tail variant of MovieLens-100k).
    """
    k = d - 1
    c2 = 1.0 - 0.999**step
    _adam_range(theta, grad, m, v_head, 1.0 - 0.9**step, c2, lr, 0, 1 + d)
    if n_rows == 0:
        return
    # Block means in row order: the same for any number of threads.
    sq_b = 0.0
    sq_q = 0.0
    for r in range(n_rows):
        g = grad[1 + d + rows[r]]
        sq_b += g * g
        q = 1 + d + n_items + rows[r] * k
        for f in range(k):
            sq_q += grad[q + f] * grad[q + f]
    v_items[0] = 0.999 * v_items[0] + 0.001 * sq_b / n_rows
    v_items[1] = 0.999 * v_items[1] + 0.001 * (sq_q / (n_rows * k) if k > 0 else 0.0)
    rms_b = math.sqrt(v_items[0] / c2) + 1e-8
    rms_q = math.sqrt(v_items[1] / c2) + 1e-8
    for r in prange(n_rows):
        i = rows[r]
        row_steps[i] += 1
        c1 = 1.0 - 0.9 ** row_steps[i]
        b = 1 + d + i
        m[b] = 0.9 * m[b] + (1.0 - 0.9) * grad[b]
        theta[b] -= lr * _unit_clip(m[b] / c1 / rms_b)
        q = 1 + d + n_items + i * k
        for a in range(q, q + k):
            m[a] = 0.9 * m[a] + (1.0 - 0.9) * grad[a]
            theta[a] -= lr * _unit_clip(m[a] / c1 / rms_q)


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
