"""Numba kernels: the model's maths, in one place.

Notation
--------
The model is biased matrix factorization,

    r̂(u, i) = μ + b_u + b_i + p_uᵀ q_i.

* ``k`` factors; ``d = k + 1``.
* User parameters φ = (b, p) ∈ R^d. With the item's feature vector
  x_i = (1, q_i) and offset c_i = μ + b_i the prediction is linear in φ:
  r̂ = c_i + x_iᵀ φ, and the residual is e = r̂ − r.
* Meta-parameters Θ = (μ, φ₀, b, Q) live in one flat vector ``theta`` laid
  out as ``[μ, φ₀ (d), b (n_items), Q (n_items·k)]`` so that one Adam loop
  and one gradient buffer serve them all (see :func:`unpack`).
* A task is one user: positions of its ratings split into a support set S
  and a query set Q. Weights w are the sample weights, W_S = Σ_S w.
* Support loss  L_S(φ) = Σ_S w e² / W_S + λ ‖φ‖²   (λ = ``inner_reg``).
  Its gradient g(φ) = (2/W_S) Σ_S w e x + 2λφ, and its Hessian
  H = (2/W_S) Σ_S w x xᵀ + 2λI is a small d×d matrix.
* Inner loop: φ_{t+1} = φ_t − α ⊙ g(φ_t), t = 0..T−1, α ∈ R^d the inner
  step sizes (a constant vector for MAML).
* Query loss L_Q(φ_T) = Σ_Q w [e² + β (b_i² + ‖q_i‖²)] / W_Q
  (β = ``reg``, a per-rating L2 penalty on item parameters as in SVD).
* Meta-gradient (reverse pass). v_T = ∂L_Q/∂φ_T; for t = T−1..0, with
  ṽ = α ⊙ v_{t+1}:
      v_t = v_{t+1} − H ṽ                      (Hessian-vector product)
      ∂/∂c_j  −= (2 w_j / W_S) x_jᵀṽ           (mixed partial, j ∈ S)
      ∂/∂q_j  −= (2 w_j / W_S) [(x_jᵀṽ) p_t + e_j ṽ_p]
  and ∂/∂φ₀ = v_0. First-order MAML keeps only v_T and the query terms,
  which is exactly the query gradient at the adapted parameters.
* Meta-SGD hypergradients, in the same pass: φ_{t+1} depends on α and λ
  directly through −α ⊙ g(φ_t), so
      ∂/∂α −= v_{t+1} ⊙ g(φ_t),      ∂/∂λ −= 2 ṽᵀ φ_t;
  the first-order variant uses v_T in place of every v_{t+1}.
  Memory per task is the T+1 iterates φ_t: O(T·d).

Kernels take plain arrays and scalars only. No cached kernel calls a
``parallel=True`` kernel: loading such a caller from Numba's cache can crash
(numba/numba#8578), so Python drives the meta-batches and every parallel
kernel is called from Python. Randomness comes from a
counter-based generator (SplitMix64) keyed by (seed, user), so results do
not depend on the number of threads; item gradients are reduced serially in
task order for the same reason.
"""

import math

import numba
import numpy as np
from numba import prange


def _jit(parallel=False):
    """``numba.njit`` with the on-disk cache, or without it if no cache
    directory can be used: importing the package must never fail."""

    def decorate(func):
        try:
            return numba.njit(cache=True, parallel=parallel, nogil=True)(func)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return numba.njit(cache=False, parallel=parallel, nogil=True)(func)

    return decorate


# --------------------------------------------------------------------------
# Counter-based random numbers
# --------------------------------------------------------------------------


@_jit()
def _splitmix(state):
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state, z ^ (z >> np.uint64(31))


@_jit()
def _task_state(seed, key):
    state = np.uint64(seed) ^ (np.uint64(key) * np.uint64(0xD1B54A32D192ED03))
    state, _ = _splitmix(state)
    return state


@_jit()
def _randbelow(state, n):
    """A uniform integer in [0, n) and the advanced state."""
    state, z = _splitmix(state)
    u = np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)
    r = np.int64(u * n)
    if r >= n:  # guards the rounding of u * n up to n
        r = n - 1
    return state, r


# --------------------------------------------------------------------------
# Layout of the meta-parameter vector
# --------------------------------------------------------------------------


@_jit()
def unpack(theta, n_items, d):
    """Views (φ₀, b, Q) into ``theta``; μ is ``theta[0]``."""
    k = d - 1
    phi0 = theta[1 : 1 + d]
    bi = theta[1 + d : 1 + d + n_items]
    Q = theta[1 + d + n_items : 1 + d + n_items + n_items * k].reshape((n_items, k))
    return phi0, bi, Q


# --------------------------------------------------------------------------
# The model: residual, support gradient, inner loop
# --------------------------------------------------------------------------


@_jit()
def _residual(mu, bi, Q, phi, i, r):
    """e = μ + b_i + φ_b + φ_pᵀ q_i − r."""
    e = mu + bi[i] + phi[0] - r
    for f in range(Q.shape[1]):
        e += phi[1 + f] * Q[i, f]
    return e


@_jit()
def _support_grad(phi, pos, items, ratings, weights, mu, bi, Q, lam, g):
    """g ← ∇φ L_S(φ) over the ratings at CSR positions ``pos``."""
    d = phi.shape[0]
    for a in range(d):
        g[a] = 2.0 * lam * phi[a]
    ws = 0.0
    for jj in range(pos.shape[0]):
        ws += weights[pos[jj]]
    if ws <= 0.0:
        return
    for jj in range(pos.shape[0]):
        j = pos[jj]
        i = items[j]
        c = 2.0 * weights[j] / ws * _residual(mu, bi, Q, phi, i, ratings[j])
        g[0] += c
        for f in range(d - 1):
            g[1 + f] += c * Q[i, f]


@_jit()
def _inner_loop(phis, pos, items, ratings, weights, mu, bi, Q, alpha, lam, g):
    """Fill ``phis[1:]`` with the inner-loop iterates from ``phis[0]``."""
    d = phis.shape[1]
    for t in range(phis.shape[0] - 1):
        _support_grad(phis[t], pos, items, ratings, weights, mu, bi, Q, lam, g)
        for a in range(d):
            phis[t + 1, a] = phis[t, a] - alpha[a] * g[a]


@_jit()
def _task_meta_grad(
    pos, n_sup, items, ratings, weights, mu, phi0, bi, Q,
    alpha, lam, reg, n_steps, first_order, hyper, phis, g_item, g_phi0, g_alpha,
):
    """Query loss of one task and its meta-gradient.

    ``pos[:n_sup]`` is the support set, ``pos[n_sup:]`` the query set.
    ``g_item[j]`` receives ∂/∂(b_i, q_i) for the item at ``pos[j]``;
    ``g_phi0`` receives ∂/∂φ₀. With ``hyper``, ``g_alpha`` receives ∂/∂α and
    the returned ∂/∂λ is filled in (Meta-SGD); ``first_order`` then uses
    v_T for every step. Returns (loss, ∂loss/∂μ, ∂loss/∂λ).
    """
    d = phi0.shape[0]
    k = d - 1
    sup = pos[:n_sup]
    qry = pos[n_sup:]
    g = np.empty(d)
    phis[0, :] = phi0
    _inner_loop(phis, sup, items, ratings, weights, mu, bi, Q, alpha, lam, g)
    phi = phis[n_steps]

    # Query loss and its direct gradients at φ_T.
    v = np.zeros(d)
    loss = 0.0
    g_mu = 0.0
    wq = 0.0
    for jj in range(qry.shape[0]):
        wq += weights[qry[jj]]
    if wq > 0.0:
        for jj in range(qry.shape[0]):
            j = qry[jj]
            i = items[j]
            w = weights[j] / wq
            e = _residual(mu, bi, Q, phi, i, ratings[j])
            sq = bi[i] * bi[i]
            for f in range(k):
                sq += Q[i, f] * Q[i, f]
            loss += w * (e * e + reg * sq)
            c = 2.0 * w * e
            g_mu += c
            v[0] += c
            row = n_sup + jj
            g_item[row, 0] += c + 2.0 * w * reg * bi[i]
            for f in range(k):
                v[1 + f] += c * Q[i, f]
                g_item[row, 1 + f] += c * phi[1 + f] + 2.0 * w * reg * Q[i, f]

    g_lam = 0.0
    if hyper or not first_order:
        ws = 0.0
        for jj in range(n_sup):
            ws += weights[sup[jj]]
        vt = np.empty(d)
        hv = np.empty(d)
        gt = np.empty(d)
        for t in range(n_steps - 1, -1, -1):
            phi_t = phis[t]
            for a in range(d):
                vt[a] = alpha[a] * v[a]
                hv[a] = 2.0 * lam * vt[a]
                gt[a] = 2.0 * lam * phi_t[a]
            if ws > 0.0:
                for jj in range(n_sup):
                    j = sup[jj]
                    i = items[j]
                    c = 2.0 * weights[j] / ws
                    e = _residual(mu, bi, Q, phi_t, i, ratings[j])
                    ce = c * e
                    if hyper:
                        gt[0] += ce
                        for f in range(k):
                            gt[1 + f] += ce * Q[i, f]
                    if first_order:
                        continue
                    xv = vt[0]
                    for f in range(k):
                        xv += vt[1 + f] * Q[i, f]
                    cx = c * xv
                    hv[0] += cx
                    g_mu -= cx
                    g_item[jj, 0] -= cx
                    for f in range(k):
                        hv[1 + f] += cx * Q[i, f]
                        g_item[jj, 1 + f] -= cx * phi_t[1 + f] + ce * vt[1 + f]
            if hyper:
                # φ_{t+1} = φ_t − α ⊙ g(φ_t):  ∂/∂α = −g(φ_t),  ∂/∂λ = −2 α ⊙ φ_t.
                for a in range(d):
                    g_alpha[a] -= v[a] * gt[a]
                    g_lam -= 2.0 * vt[a] * phi_t[a]
            if not first_order:
                for a in range(d):
                    v[a] -= hv[a]
    g_phi0[:] = v
    return loss, g_mu, g_lam


# --------------------------------------------------------------------------
# Meta-batches and meta-epochs
# --------------------------------------------------------------------------


@_jit()
def _sample_task(indptr, u, sup_lo, sup_hi, seed, perm):
    """Fill ``perm`` with the CSR positions of user ``u``'s ratings, a random
    support set first; returns the support size, drawn uniformly in
    [sup_lo[u], sup_hi[u]]. Keyed by (seed, u) alone, so a task does not
    depend on the batch or the thread it lands in."""
    start = indptr[u]
    n = indptr[u + 1] - start
    for a in range(n):
        perm[a] = start + a
    state = _task_state(seed, u)
    state, s = _randbelow(state, sup_hi[u] - sup_lo[u] + 1)
    s += sup_lo[u]
    for a in range(s):  # partial Fisher-Yates: only the support is drawn
        state, r = _randbelow(state, n - a)
        tmp = perm[a]
        perm[a] = perm[a + r]
        perm[a + r] = tmp
    return s


@_jit(parallel=True)
def sample_tasks(indptr, users, sup_lo, sup_hi, seed, offsets, perm, n_sup):
    """The tasks ``meta_batch_grad`` draws: ``perm[offsets[b]:offsets[b+1]]``
    and ``n_sup[b]`` for user ``users[b]`` (for inspection and tests)."""
    for b in prange(users.shape[0]):
        n_sup[b] = _sample_task(indptr, users[b], sup_lo, sup_hi, seed, perm[offsets[b] : offsets[b + 1]])


@_jit(parallel=True)
def meta_batch_grad(
    indptr, items, ratings, weights, users, sup_lo, sup_hi, seed, offsets,
    theta, n_items, alpha, lam, reg, n_steps, first_order, hyper, grad, grad_hyper,
):
    """Mean query loss of a meta-batch of users; ``grad`` ← its meta-gradient.

    ``offsets`` is the running sum of the users' rating counts. Each user's
    task is drawn by ``_sample_task`` from (seed, user). With ``hyper``,
    ``grad_hyper`` ← (∂/∂α, ∂/∂λ), of length d + 1.
    """
    d = alpha.shape[0]
    k = d - 1
    mu = theta[0]
    phi0, bi, Q = unpack(theta, n_items, d)
    n_tasks = users.shape[0]
    perm = np.empty(offsets[n_tasks], dtype=np.int64)
    g_item = np.zeros((offsets[n_tasks], d))
    g_phi = np.zeros((n_tasks, d))
    g_mu = np.zeros(n_tasks)
    g_hyper = np.zeros((n_tasks, d + 1))
    losses = np.zeros(n_tasks)
    for b in prange(n_tasks):
        lo = offsets[b]
        hi = offsets[b + 1]
        n_sup = _sample_task(indptr, users[b], sup_lo, sup_hi, seed, perm[lo:hi])
        phis = np.empty((n_steps + 1, d))
        losses[b], g_mu[b], g_hyper[b, d] = _task_meta_grad(
            perm[lo:hi], n_sup, items, ratings, weights, mu, phi0, bi, Q,
            alpha, lam, reg, n_steps, first_order, hyper, phis, g_item[lo:hi], g_phi[b],
            g_hyper[b, :d],
        )
    # Serial reduction in task order: item rows are shared between tasks, and
    # a fixed order keeps results identical for any number of threads.
    grad[:] = 0.0
    grad_hyper[:] = 0.0
    g_phi0, g_bi, g_Q = unpack(grad, n_items, d)
    scale = 1.0 / n_tasks
    loss = 0.0
    for b in range(n_tasks):
        loss += losses[b] * scale
        grad[0] += g_mu[b] * scale
        for a in range(d):
            g_phi0[a] += g_phi[b, a] * scale
        for a in range(d + 1):
            grad_hyper[a] += g_hyper[b, a] * scale
        for p in range(offsets[b], offsets[b + 1]):
            i = items[perm[p]]
            g_bi[i] += g_item[p, 0] * scale
            for f in range(k):
                g_Q[i, f] += g_item[p, 1 + f] * scale
    return loss


@_jit(parallel=True)
def reptile_batch(
    indptr, items, ratings, weights, users, sup_lo, sup_hi, seed, offsets,
    theta, n_items, alpha, lam, item_lr, n_steps, adapt_items, delta,
):
    """Reptile's direction for a meta-batch: ``delta`` ← the mean over tasks
    of (adapted − initial) parameters. Each task runs ``n_steps`` of gradient
    descent on its support loss L_S, on φ (steps α) and, with
    ``adapt_items``, on its support items' (b_i, q_i) (step ``item_lr``), all
    from the same iterate. μ is not adapted. φ₀'s direction is the mean over
    tasks; an item's is the mean over its adapted copies (one per rating in
    a support set). Returns the mean support loss at the initial parameters
    (before adaptation).
    """
    d = alpha.shape[0]
    k = d - 1
    mu = theta[0]
    phi0, bi, Q = unpack(theta, n_items, d)
    n_tasks = users.shape[0]
    perm = np.empty(offsets[n_tasks], dtype=np.int64)
    d_item = np.zeros((offsets[n_tasks], d))
    d_phi = np.zeros((n_tasks, d))
    n_sups = np.zeros(n_tasks, dtype=np.int64)
    losses = np.zeros(n_tasks)
    for b in prange(n_tasks):
        lo = offsets[b]
        pos = perm[lo : offsets[b + 1]]
        s = _sample_task(indptr, users[b], sup_lo, sup_hi, seed, pos)
        n_sups[b] = s
        phi = phi0.copy()
        lb = np.empty(s)
        lq = np.empty((s, k))
        for jj in range(s):
            i = items[pos[jj]]
            lb[jj] = bi[i]
            lq[jj, :] = Q[i]
        ws = 0.0
        for jj in range(s):
            ws += weights[pos[jj]]
        g = np.empty(d)
        gb = np.zeros(s)
        gq = np.zeros((s, k))
        for t in range(n_steps + 1):
            loss = 0.0
            for a in range(d):
                g[a] = 2.0 * lam * phi[a]
                loss += lam * phi[a] * phi[a]
            if ws > 0.0:
                for jj in range(s):
                    j = pos[jj]
                    e = mu + lb[jj] + phi[0] - ratings[j]
                    for f in range(k):
                        e += phi[1 + f] * lq[jj, f]
                    loss += weights[j] / ws * e * e
                    c = 2.0 * weights[j] / ws * e
                    g[0] += c
                    gb[jj] = c
                    for f in range(k):
                        g[1 + f] += c * lq[jj, f]
                        gq[jj, f] = c * phi[1 + f]
            if t == 0:
                losses[b] = loss
            if t == n_steps:
                break
            for a in range(d):
                phi[a] -= alpha[a] * g[a]
            if adapt_items:
                for jj in range(s):
                    lb[jj] -= item_lr * gb[jj]
                    for f in range(k):
                        lq[jj, f] -= item_lr * gq[jj, f]
        for a in range(d):
            d_phi[b, a] = phi[a] - phi0[a]
        for jj in range(s):
            i = items[pos[jj]]
            d_item[lo + jj, 0] = lb[jj] - bi[i]
            for f in range(k):
                d_item[lo + jj, 1 + f] = lq[jj, f] - Q[i, f]
    # Serial reduction in task order, as in meta_batch_grad. An item's
    # direction is averaged over the adapted copies of it, not over every
    # task: most tasks never touch a given item, and counting them would
    # shrink item updates by the batch size.
    delta[:] = 0.0
    dphi0, dbi, dQ = unpack(delta, n_items, d)
    copies = np.zeros(n_items)
    scale = 1.0 / n_tasks
    total = 0.0
    for b in range(n_tasks):
        total += losses[b] * scale
        for a in range(d):
            dphi0[a] += d_phi[b, a] * scale
        for p in range(offsets[b], offsets[b] + n_sups[b]):
            i = items[perm[p]]
            copies[i] += 1.0
            dbi[i] += d_item[p, 0]
            for f in range(k):
                dQ[i, f] += d_item[p, 1 + f]
    for i in range(n_items):
        if copies[i] > 1.0:
            dbi[i] /= copies[i]
            for f in range(k):
                dQ[i, f] /= copies[i]
    return total


@_jit()
def adam_step(theta, grad, m, v, step, lr):
    """One Adam update (β₁ = 0.9, β₂ = 0.999, ε = 1e-8); ``step`` counts from 1."""
    b1 = 0.9
    b2 = 0.999
    c1 = 1.0 - b1**step
    c2 = 1.0 - b2**step
    for a in range(theta.shape[0]):
        m[a] = b1 * m[a] + (1.0 - b1) * grad[a]
        v[a] = b2 * v[a] + (1.0 - b2) * grad[a] * grad[a]
        theta[a] -= lr * (m[a] / c1) / (math.sqrt(v[a] / c2) + 1e-8)


# --------------------------------------------------------------------------
# Serving: adaptation, fold-in and prediction
# --------------------------------------------------------------------------


@_jit(parallel=True)
def adapt_users(indptr, items, ratings, weights, users, theta, n_items, alpha, lam, n_steps, out):
    """``out[b]`` ← φ_T of user ``users[b]`` adapted from φ₀ on all its ratings."""
    d = alpha.shape[0]
    mu = theta[0]
    phi0, bi, Q = unpack(theta, n_items, d)
    for b in prange(users.shape[0]):
        u = users[b]
        pos = np.arange(indptr[u], indptr[u + 1])
        phis = np.empty((n_steps + 1, d))
        phis[0, :] = phi0
        g = np.empty(d)
        _inner_loop(phis, pos, items, ratings, weights, mu, bi, Q, alpha, lam, g)
        out[b, :] = phis[n_steps]


@_jit(parallel=True)
def ridge_users(indptr, items, ratings, weights, users, theta, n_items, d, reg, out):
    """``out[b]`` ← argmin_φ Σ w [(r̂ − r)² + reg ‖φ‖²] over user ``users[b]``'s
    ratings, items fixed: the exact fold-in of the factorization baseline."""
    mu = theta[0]
    _, bi, Q = unpack(theta, n_items, d)
    for b in prange(users.shape[0]):
        u = users[b]
        A = np.zeros((d, d))
        rhs = np.zeros(d)
        x = np.empty(d)
        wsum = 0.0
        for j in range(indptr[u], indptr[u + 1]):
            i = items[j]
            w = weights[j]
            x[0] = 1.0
            x[1:] = Q[i]
            t = ratings[j] - mu - bi[i]
            for a in range(d):
                rhs[a] += w * t * x[a]
                for c in range(d):
                    A[a, c] += w * x[a] * x[c]
            wsum += w
        if wsum <= 0.0:
            out[b, :] = 0.0
            continue
        for a in range(d):
            # The 1e-12 keeps A invertible when reg is 0 and factors are degenerate.
            A[a, a] += reg * wsum + 1e-12 * wsum
        out[b, :] = np.linalg.solve(A, rhs)


@_jit(parallel=True)
def predict(user_codes, item_codes, user_table, theta, n_items, d, out):
    """r̂ for each (user, item) pair; code −1 means unknown: an unknown user
    gets φ₀, an unknown item contributes no bias and no factors."""
    mu = theta[0]
    phi0, bi, Q = unpack(theta, n_items, d)
    for n in prange(user_codes.shape[0]):
        u = user_codes[n]
        phi = user_table[u] if u >= 0 else phi0
        out[n] = _score(mu, bi, Q, phi, item_codes[n])


@_jit()
def _score(mu, bi, Q, phi, i):
    """r̂ of the user with parameters φ for item code ``i`` (−1: unknown)."""
    r = mu + phi[0]
    if i >= 0:
        r += bi[i]
        for f in range(phi.shape[0] - 1):
            r += phi[1 + f] * Q[i, f]
    return r


@_jit()
def _worse(s_a, a, s_b, b):
    """Whether candidate ``a`` ranks below ``b``: lower score, or the same
    score and a later position (ties go to the earlier candidate)."""
    return s_a < s_b or (s_a == s_b and a > b)


@_jit()
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


@_jit(parallel=True)
def top_n(user_codes, user_table, theta, n_items, d, candidates, candidate_pos,
          seen_indptr, seen_items, exclude_seen, n, out_pos, out_scores):
    """Top-``n`` candidates per user by r̂, best first, by bounded heap
    selection: O(m log n) per user for m candidates, never a full sort.

    ``candidates`` holds item codes (−1: unknown item), ``candidate_pos`` maps
    an item code to its candidate position (−1: not a candidate). Excluded
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
        if exclude_seen and u >= 0:
            for j in range(seen_indptr[u], seen_indptr[u + 1]):
                c = candidate_pos[seen_items[j]]
                if c >= 0:
                    scores[c] = -np.inf
        heap = np.arange(n)
        for r in range(n // 2 - 1, -1, -1):
            _sift_down(heap, scores, n, r)
        for c in range(n, m):
            if _worse(scores[heap[0]], heap[0], scores[c], c):
                heap[0] = c
                _sift_down(heap, scores, n, 0)
        # Pop the worst to the back: the heap ends sorted best first.
        for last in range(n - 1, 0, -1):
            heap[0], heap[last] = heap[last], heap[0]
            _sift_down(heap, scores, last, 0)
        for r in range(n):
            out_pos[b, r] = heap[r]
            out_scores[b, r] = scores[heap[r]]


# --------------------------------------------------------------------------
# Plain SGD for the factorization baseline
# --------------------------------------------------------------------------


@_jit()
def sgd_epoch(users, items, ratings, weights, order, theta, n_items, user_table, lr, reg):
    """One pass of Surprise-style SGD over the ratings in ``order``; μ and φ₀
    stay fixed. Returns the weighted sum of squared errors seen."""
    d = user_table.shape[1]
    mu = theta[0]
    _, bi, Q = unpack(theta, n_items, d)
    sse = 0.0
    for n in range(order.shape[0]):
        j = order[n]
        u = users[j]
        i = items[j]
        w = weights[j]
        phi = user_table[u]
        err = -_residual(mu, bi, Q, phi, i, ratings[j])
        sse += w * err * err
        step = lr * w
        phi[0] += step * (err - reg * phi[0])
        bi[i] += step * (err - reg * bi[i])
        for f in range(d - 1):
            pf = phi[1 + f]
            qf = Q[i, f]
            phi[1 + f] += step * (err * qf - reg * pf)
            Q[i, f] += step * (err * pf - reg * qf)
    return sse
