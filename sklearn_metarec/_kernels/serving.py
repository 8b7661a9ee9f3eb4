"""Serving: adaptation of users (fold-in), exact baselines' solves, prediction
and top-n selection."""

import math

import numpy as np
from numba import prange

from ._jit import jit
from .maths import _adapt, _loss_terms, _score, copy_into, unpack
from .sampling import _history_task


@jit(parallel=True)
def adapt_users(indptr, items, ratings, weights, users, keys, seed, theta, n_items, alpha, inner, out, starts,
                ctxs, off):
    """``out[b]`` ← φ_T of user ``users[b]`` adapted on all its ratings
    (and, with ``inner.n_neg``, negatives keyed by (seed, keys[b])), from
    ``starts[b]`` (its prior given its attributes), or from φ₀ when
    ``starts`` has 0 rows; each rating in its context (``ctxs`` by log
    position, ``off`` the contexts' parameters), when ``off`` has rows."""
    d = alpha.shape[0]
    mu = theta[0]
    phi0, bi, Q = unpack(theta, n_items, d)
    for b in prange(users.shape[0]):
        t_items, t_y, t_w, t_ctx, s = _history_task(indptr, items, ratings, weights, users[b], keys[b], seed,
                                                    n_items, inner.n_neg, ctxs)
        _adapt(s, t_items, t_y, t_w, mu, bi, Q, inner, alpha, starts[b] if starts.shape[0] else phi0, out[b],
               t_ctx, off)


@jit()
def _solve_spd(A, b, out):
    """``out`` ← A⁻¹b for a symmetric positive definite A, by Cholesky (A's
    lower triangle is overwritten by the factor). ``np.linalg.solve`` in a
    parallel kernel cost 15 s of compilation on first use; a d×d solve
    needs none of LAPACK's blocking."""
    n = A.shape[0]
    for j in range(n):
        s = A[j, j]
        for c in range(j):
            s -= A[j, c] * A[j, c]
        A[j, j] = math.sqrt(s)
        for i in range(j + 1, n):
            s = A[i, j]
            for c in range(j):
                s -= A[i, c] * A[j, c]
            A[i, j] = s / A[j, j]
    for i in range(n):
        s = b[i]
        for c in range(i):
            s -= A[i, c] * out[c]
        out[i] = s / A[i, i]
    for i in range(n - 1, -1, -1):
        s = out[i]
        for c in range(i + 1, n):
            s -= A[c, i] * out[c]
        out[i] = s / A[i, i]


@jit()
def _design(mu, bi, Q, i, c, off, x):
    """Fill ``x`` with ∂r̂/∂φ of a rating of item i in context code c (−1:
    none) and return the rest of its score: r̂ = base + xᵀφ, with
    x = (1, q_i + e_c) and base = μ + b_i + b_c + q_iᵀe_c (``off``: each
    code's (b_c, e_c))."""
    d = x.shape[0]
    x[0] = 1.0
    base = mu + bi[i]
    for a in range(1, d):
        x[a] = Q[i, a - 1]
    if c >= 0:
        base += off[c, 0]
        for a in range(1, d):
            base += Q[i, a - 1] * off[c, a]
            x[a] += off[c, a]
    return base


@jit(parallel=True)
def ridge_users(indptr, items, ratings, weights, users, theta, n_items, d, reg, centers, ctxs, off, out):
    """``out[b]`` ← argmin_φ Σ w [(r̂ − r)² + reg ‖φ − c_b‖²] over user
    ``users[b]``'s ratings, items fixed: the exact fold-in of the
    factorization baseline. ``centers``: c_b, the prior the user's
    attributes give (LightFM's user features), one row per user; empty, of
    shape (0, d), for c = 0. ``ctxs``: each logged rating's context code,
    ``off`` each code's (b_c, e_c) (both empty without context)."""
    mu = theta[0]
    _, bi, Q = unpack(theta, n_items, d)
    centered = centers.shape[0] > 0
    for b in prange(users.shape[0]):
        u = users[b]
        A = np.zeros((d, d))
        rhs = np.zeros(d)
        x = np.empty(d)
        wsum = 0.0
        for j in range(indptr[u], indptr[u + 1]):
            w = weights[j]
            t = ratings[j] - _design(mu, bi, Q, items[j], ctxs[j] if ctxs.shape[0] else -1, off, x)
            for a in range(d):
                rhs[a] += w * t * x[a]
                for c in range(d):
                    A[a, c] += w * x[a] * x[c]
            wsum += w
        if wsum <= 0.0:
            for a in range(d):
                out[b, a] = centers[b, a] if centered else 0.0
            continue
        for a in range(d):
            # The 1e-12 keeps A invertible when reg is 0 and factors are degenerate.
            A[a, a] += reg * wsum + 1e-12 * wsum
            if centered:
                rhs[a] += reg * wsum * centers[b, a]
        _solve_spd(A, rhs, out[b])


@jit()
def _logistic_objective(phi, center, base, X, ys, ws, reg_w):
    total = reg_w * np.dot(phi - center, phi - center)
    for j in range(base.shape[0]):
        ell, _, _ = _loss_terms(base[j] + np.dot(X[j], phi), ys[j], True)
        total += ws[j] * ell
    return total


@jit(parallel=True)
def logistic_users(indptr, items, ratings, weights, users, keys, seed, theta, n_items, d, reg,
                   n_neg, centers, ctxs, off, out):
    """``out[b]`` ← argmin_φ Σ w [ℓ(r̂, y) + reg ‖φ − c_b‖²] with the
    cross-entropy ℓ, over user ``users[b]``'s ratings and sampled negatives
    (in their positive's context), items fixed: the logistic counterpart of
    ``ridge_users`` (``centers``, ``ctxs`` and ``off`` as there). The
    problem is strictly convex; Newton's method with a backtracking line
    search solves it."""
    mu = theta[0]
    _, bi, Q = unpack(theta, n_items, d)
    centered = centers.shape[0] > 0
    for b in prange(users.shape[0]):
        t_items, t_y, t_w, t_ctx, _ = _history_task(indptr, items, ratings, weights, users[b], keys[b], seed,
                                                    n_items, n_neg, ctxs)
        m = t_items.shape[0]
        wsum = t_w.sum()
        center = centers[b].copy() if centered else np.zeros(d)
        phi = center.copy()
        if wsum <= 0.0:
            copy_into(out[b], phi)
            continue
        X = np.empty((m, d))
        base = np.empty(m)
        for j in range(m):
            base[j] = _design(mu, bi, Q, t_items[j], t_ctx[j] if ctxs.shape[0] else -1, off, X[j])
        reg_w = reg * wsum
        for _ in range(100):
            H = np.zeros((d, d))
            grad = 2.0 * reg_w * (phi - center)
            for j in range(m):
                _, dl, d2l = _loss_terms(base[j] + np.dot(X[j], phi), t_y[j], True)
                for a in range(d):
                    grad[a] += t_w[j] * dl * X[j, a]
                    for c in range(d):
                        H[a, c] += t_w[j] * d2l * X[j, a] * X[j, c]
            for a in range(d):
                H[a, a] += 2.0 * reg_w + 1e-12 * wsum
            step = np.empty(d)
            _solve_spd(H, grad, step)
            f0 = _logistic_objective(phi, center, base, X, t_y, t_w, reg_w)
            decrease = np.dot(grad, step)
            if decrease <= 1e-14 * (1.0 + abs(f0)):
                break
            t = 1.0
            while t > 1e-8:
                trial = phi - t * step
                if _logistic_objective(trial, center, base, X, t_y, t_w, reg_w) <= f0 - 1e-4 * t * decrease:
                    break
                t *= 0.5
            phi = phi - t * step
        copy_into(out[b], phi)


@jit(parallel=True)
def predict(user_codes, item_codes, user_table, theta, n_items, d, out):
    """r̂ for each (user, item) pair; code −1 means unknown: an unknown user
    gets φ₀, an unknown item contributes no bias and no factors."""
    mu = theta[0]
    phi0, bi, Q = unpack(theta, n_items, d)
    for n in prange(user_codes.shape[0]):
        u = user_codes[n]
        phi = user_table[u] if u >= 0 else phi0
        out[n] = _score(mu, bi, Q, phi, item_codes[n])


@jit()
def _worse(s_a, a, s_b, b):
    """Whether candidate ``a`` ranks below ``b``: lower score, or the same
    score and a later position (ties go to the earlier candidate)."""
    return s_a < s_b or (s_a == s_b and a > b)


@jit()
def _sift_down(heap, scores, n, root):
    """Restore the min-heap (worst candidate at the root) below ``root``."""
    while True:
        child = 2 * root + 1
        if child >= n:
            return
        if child + 1 < n and _worse(scores[heap[child + 1]], heap[child + 1], scores[heap[child]], heap[child]):
            child += 1
        if not _worse(scores[heap[child]], heap[child], scores[heap[root]], heap[root]):
            return
        heap[root], heap[child] = heap[child], heap[root]
        root = child


@jit(parallel=True)
def top_n(user_codes, user_table, theta, n_items, d, candidates, candidate_pos,
          seen_indptr, seen_items, seen_rows, exclude_seen, n, out_pos, out_scores):
    """Top-``n`` candidates per user by r̂, best first, by bounded heap
    selection: O(m log n) per user for m candidates, never a full sort.

    ``candidates`` holds item codes (−1: unknown item), ``candidate_pos`` maps
    an item code to its candidate position (−1: not a candidate). User
    ``b``'s rated items are row ``seen_rows[b]`` of the CSR arrays
    ``seen_indptr``, ``seen_items`` (−1: none). Excluded
    items score −∞, so they fill the list only when nothing else is left.
    Scores equal ``predict``'s bit for bit.
    """
    mu = theta[0]
    phi0, bi, Q = unpack(theta, n_items, d)
    m = candidates.shape[0]
    for b in prange(user_codes.shape[0]):
        u = user_codes[b]
        phi = user_table[u] if u >= 0 else phi0
        scores = np.empty(m)
        for c in range(m):
            scores[c] = _score(mu, bi, Q, phi, candidates[c])
        r = seen_rows[b]
        if exclude_seen and r >= 0:
            for j in range(seen_indptr[r], seen_indptr[r + 1]):
                c = candidate_pos[seen_items[j]]
                if c >= 0:
                    scores[c] = -np.inf
        heap = np.arange(n)
        root = np.int64(0)  # a literal 0 would compile _sift_down for it
        for r in range(n // 2 - 1, -1, -1):
            _sift_down(heap, scores, n, r)
        for c in range(n, m):
            if _worse(scores[heap[0]], heap[0], scores[c], c):
                heap[0] = c
                _sift_down(heap, scores, n, root)
        # Pop the worst to the back: the heap ends sorted best first.
        for last in range(n - 1, 0, -1):
            heap[0], heap[last] = heap[last], heap[0]
            _sift_down(heap, scores, last, root)
        for r in range(n):
            out_pos[b, r] = heap[r]
            out_scores[b, r] = scores[heap[r]]
