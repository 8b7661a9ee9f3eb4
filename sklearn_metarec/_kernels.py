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
* A task is one user: its ratings split into a support set S and a query
  set Q. Weights w are the sample weights, W_S = Σ_S w. The score of a
  rating is s = r̂ and its loss ℓ(s, y) is the squared error (s − y)², or
  for implicit feedback the cross-entropy of σ(s) against y ∈ [0, 1],
  softplus(s) − y s, with ℓ' = σ(s) − y and curvature ℓ'' = σ(s)(1 − σ(s)).
  Positives-only data get ``n_neg`` sampled negatives (y = 0) per rating,
  drawn uniformly among the items the user never rated, separately for S
  and Q; they are ordinary entries of the task from then on.
* Support loss  L_S(φ) = Σ_S w ℓ / (W_S + κ) + λ ‖φ‖²   (λ = ``inner_reg``,
  κ = ``shrinkage``; write W̃_S = W_S + κ, and W̃_S = 0 for an empty S).
  κ counts as κ extra ratings that pull nothing: a user with few ratings
  takes steps W_S / (W_S + κ) as long as one with many, which is the
  shrinkage a Bayesian prior worth κ ratings gives; κ = 0 is the plain mean.
  Its gradient g(φ) = Σ_S w ℓ' x / W̃_S + 2λφ, and its Hessian
  H = Σ_S w ℓ'' x xᵀ / W̃_S + 2λI is a small d×d matrix (for the squared
  loss ℓ' = 2e and ℓ'' = 2, with e = r̂ − r the residual).
* Inner loop: φ_{t+1} = φ_t − α ⊙ g(φ_t), t = 0..T−1, α ∈ R^d the inner
  step sizes (a constant vector for MAML).
* Query loss L_Q(φ_T) = Σ_Q w [ℓ + β (b_i² + ‖q_i‖²)] / W_Q
  (β = ``reg``, a per-rating L2 penalty on item parameters as in SVD).
  A meta-batch's loss is the mean of its tasks' L_Q, weighted by W_Q
  (``per_rating``: every query rating counts once, as in RMSE) or not
  (every user counts once, as in the MAML paper).
* Meta-gradient (reverse pass). v_T = ∂L_Q/∂φ_T; for t = T−1..0, with
  ṽ = α ⊙ v_{t+1} and ℓ', ℓ'' taken at φ_t:
      v_t = v_{t+1} − H ṽ                        (Hessian-vector product)
      ∂/∂c_j  −= (w_j / W̃_S) ℓ''_j x_jᵀṽ         (mixed partial, j ∈ S)
      ∂/∂q_j  −= (w_j / W̃_S) [ℓ''_j (x_jᵀṽ) p_t + ℓ'_j ṽ_p]
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
# The model: per-rating loss, support gradient, inner loop
# --------------------------------------------------------------------------


@_jit()
def _loss_terms(s, y, logistic):
    """(ℓ, ℓ', ℓ'') of one rating with score s and target y: the squared
    error (s − y)², or the binary cross-entropy of σ(s) against y."""
    if logistic:
        # σ(s) and softplus(s) = log(1 + eˢ) in forms that cannot overflow.
        if s >= 0.0:
            z = math.exp(-s)
            p = 1.0 / (1.0 + z)
            softplus = s + math.log1p(z)
        else:
            z = math.exp(s)
            p = z / (1.0 + z)
            softplus = math.log1p(z)
        return softplus - y * s, p - y, p * (1.0 - p)
    e = s - y
    return e * e, 2.0 * e, 2.0


@_jit()
def _support_norm(weights, n_sup, kappa):
    """W̃_S = W_S + κ, the support loss's normalizer; 0 for an empty support."""
    ws = 0.0
    for j in range(n_sup):
        ws += weights[j]
    return ws + kappa if ws > 0.0 else 0.0


@_jit()
def _support_grad(phi, n_sup, items, ratings, weights, mu, bi, Q, lam, kappa, logistic, g):
    """g ← ∇φ L_S(φ) over the first ``n_sup`` ratings of a task."""
    d = phi.shape[0]
    for a in range(d):
        g[a] = 2.0 * lam * phi[a]
    ws = _support_norm(weights, n_sup, kappa)
    if ws <= 0.0:
        return
    for j in range(n_sup):
        i = items[j]
        _, dl, _ = _loss_terms(_score(mu, bi, Q, phi, i), ratings[j], logistic)
        c = weights[j] / ws * dl
        g[0] += c
        for f in range(d - 1):
            g[1 + f] += c * Q[i, f]


@_jit()
def _inner_loop(phis, n_sup, items, ratings, weights, mu, bi, Q, alpha, lam, kappa, logistic, g):
    """Fill ``phis[1:]`` with the inner-loop iterates from ``phis[0]``."""
    d = phis.shape[1]
    for t in range(phis.shape[0] - 1):
        _support_grad(phis[t], n_sup, items, ratings, weights, mu, bi, Q, lam, kappa, logistic, g)
        for a in range(d):
            phis[t + 1, a] = phis[t, a] - alpha[a] * g[a]


@_jit()
def _task_meta_grad(
    n_sup, items, ratings, weights, mu, phi0, bi, Q, alpha, lam, kappa, reg, n_steps,
    first_order, hyper, logistic, phis, g_item, g_phi0, g_alpha,
):
    """Query loss of one task and its meta-gradient.

    The task's arrays hold its support set first (``n_sup`` entries), then
    its query set. ``g_item[j]`` receives ∂/∂(b_i, q_i) for the item of
    entry j; ``g_phi0`` receives ∂/∂φ₀. With ``hyper``, ``g_alpha`` receives
    ∂/∂α and the returned ∂/∂λ is filled in (Meta-SGD); ``first_order`` then
    uses v_T for every step. Returns (loss, ∂loss/∂μ, ∂loss/∂λ).
    """
    d = phi0.shape[0]
    k = d - 1
    m = items.shape[0]
    g = np.empty(d)
    phis[0, :] = phi0
    _inner_loop(phis, n_sup, items, ratings, weights, mu, bi, Q, alpha, lam, kappa, logistic, g)
    phi = phis[n_steps]

    # Query loss and its direct gradients at φ_T.
    v = np.zeros(d)
    loss = 0.0
    g_mu = 0.0
    wq = 0.0
    for j in range(n_sup, m):
        wq += weights[j]
    if wq > 0.0:
        for j in range(n_sup, m):
            i = items[j]
            w = weights[j] / wq
            ell, dl, _ = _loss_terms(_score(mu, bi, Q, phi, i), ratings[j], logistic)
            sq = bi[i] * bi[i]
            for f in range(k):
                sq += Q[i, f] * Q[i, f]
            loss += w * (ell + reg * sq)
            c = w * dl
            g_mu += c
            v[0] += c
            g_item[j, 0] += c + 2.0 * w * reg * bi[i]
            for f in range(k):
                v[1 + f] += c * Q[i, f]
                g_item[j, 1 + f] += c * phi[1 + f] + 2.0 * w * reg * Q[i, f]

    g_lam = 0.0
    if hyper or not first_order:
        ws = _support_norm(weights, n_sup, kappa)
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
                for j in range(n_sup):
                    i = items[j]
                    c = weights[j] / ws
                    _, dl, d2l = _loss_terms(_score(mu, bi, Q, phi_t, i), ratings[j], logistic)
                    ce = c * dl
                    if hyper:
                        gt[0] += ce
                        for f in range(k):
                            gt[1 + f] += ce * Q[i, f]
                    if first_order:
                        continue
                    xv = vt[0]
                    for f in range(k):
                        xv += vt[1 + f] * Q[i, f]
                    cx = c * d2l * xv
                    hv[0] += cx
                    g_mu -= cx
                    g_item[j, 0] -= cx
                    for f in range(k):
                        hv[1 + f] += cx * Q[i, f]
                        g_item[j, 1 + f] -= cx * phi_t[1 + f] + ce * vt[1 + f]
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
# Tasks: support and query sets, sampled negatives
# --------------------------------------------------------------------------


@_jit()
def _kth_unseen(seen, r):
    """The r-th (from 0) item code absent from ``seen`` (sorted, unique).
    Before ``seen[j]`` lie ``seen[j] − j`` absent codes, a non-decreasing
    count, so a binary search finds how many seen codes precede the answer."""
    lo = 0
    hi = seen.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if seen[mid] - mid <= r:
            lo = mid + 1
        else:
            hi = mid
    return r + lo


@_jit()
def _draw_negatives(state, seen, n_items, n_neg, src_w, t_items, t_y, t_w):
    """``n_neg`` items the user never rated for each of ``len(src_w)``
    positives, uniformly over the unrated items, each with target 0 and its
    positive's weight (weight 0 if the user rated every item)."""
    n_free = n_items - seen.shape[0]
    for a in range(src_w.shape[0]):
        for b in range(n_neg):
            o = a * n_neg + b
            t_y[o] = 0.0
            if n_free <= 0:
                t_items[o] = seen[0]
                t_w[o] = 0.0
                continue
            state, r = _randbelow(state, n_free)
            t_items[o] = _kth_unseen(seen, r)
            t_w[o] = src_w[a]
    return state


@_jit()
def _build_task(indptr, items, ratings, weights, u, key, s_lo, s_hi, seed, n_items, n_neg,
                t_items, t_y, t_w, perm):
    """Lay out user ``u``'s task in ``t_*`` (length (1 + n_neg)·n for n
    ratings): the support set's ratings, their negatives, then the query
    set's ratings and their negatives. The support size is drawn uniformly
    in [s_lo, s_hi], the support by a partial Fisher–Yates shuffle, then
    the negatives, all from one stream keyed by (seed, key), so a task does
    not depend on the batch or the thread it lands in. Returns the length
    of the support part, (1 + n_neg)·s. ``perm`` is scratch of length n or
    more (allocating it here, per task, costs more than the task's maths)."""
    start = indptr[u]
    n = indptr[u + 1] - start
    for a in range(n):
        perm[a] = start + a
    state = _task_state(seed, key)
    state, s = _randbelow(state, s_hi - s_lo + 1)
    s += s_lo
    for a in range(s):  # only the support is drawn
        state, r = _randbelow(state, n - a)
        tmp = perm[a]
        perm[a] = perm[a + r]
        perm[a + r] = tmp
    m_sup = s * (1 + n_neg)
    for a in range(n):
        o = a if a < s else m_sup + a - s
        j = perm[a]
        t_items[o] = items[j]
        t_y[o] = ratings[j]
        t_w[o] = weights[j]
    if n_neg > 0:
        seen = np.unique(items[start : start + n])
        state = _draw_negatives(state, seen, n_items, n_neg, t_w[:s],
                                t_items[s:m_sup], t_y[s:m_sup], t_w[s:m_sup])
        q = m_sup + n - s
        _draw_negatives(state, seen, n_items, n_neg, t_w[m_sup:q], t_items[q:], t_y[q:], t_w[q:])
    return m_sup


@_jit()
def _task_buffers(total):
    """Items, targets, weights and shuffle scratch for a batch's tasks."""
    return (np.empty(total, dtype=np.int64), np.empty(total), np.empty(total),
            np.empty(total, dtype=np.int64))


# --------------------------------------------------------------------------
# Meta-batches and meta-epochs
# --------------------------------------------------------------------------


@_jit()
def _sum_row(i, entries, task_of, scales, per_entry, out_b, out_Q):
    """Item i's row of a batch's gradient: the scaled sum, in entry order,
    of the per-entry (b_i, q_i) parts of its ``entries``."""
    out_b[i] = 0.0
    for f in range(out_Q.shape[1]):
        out_Q[i, f] = 0.0
    for p in entries:
        scale = scales[task_of[p]]
        out_b[i] += per_entry[p, 0] * scale
        for f in range(out_Q.shape[1]):
            out_Q[i, f] += per_entry[p, 1 + f] * scale


@_jit()
def _item_groups(t_items, offsets, ends, rows):
    """The entries ``offsets[b]:ends[b]`` of a batch's tasks grouped by item,
    for a reduction over item rows that threads can share. Returns
    (entries, starts, task_of, n): the entries of item ``rows[r]`` are
    ``entries[starts[r]:starts[r + 1]]``, in entry order, so
    that each row's sum is the same as a serial pass in task order would
    give; ``task_of[p]`` is entry p's task. Cost: that of the batch, not of
    the catalogue."""
    n_tasks = offsets.shape[0] - 1
    task_of = np.empty(offsets[n_tasks], dtype=np.int64)
    n = 0
    for b in range(n_tasks):
        for p in range(offsets[b], offsets[b + 1]):
            task_of[p] = b
        n += ends[b] - offsets[b]
    # Keys (item, entry) are distinct, so any sort keeps entry order per item.
    keys = np.empty(n, dtype=np.int64)
    e = 0
    for b in range(n_tasks):
        for p in range(offsets[b], ends[b]):
            keys[e] = t_items[p] * offsets[n_tasks] + p
            e += 1
    keys.sort()
    entries = np.empty(n, dtype=np.int64)
    starts = np.empty(n + 1, dtype=np.int64)
    n_rows = 0
    last = -1
    for e in range(n):
        item = keys[e] // offsets[n_tasks]
        entries[e] = keys[e] - item * offsets[n_tasks]
        if item != last:
            starts[n_rows] = e
            rows[n_rows] = item
            n_rows += 1
            last = item
    starts[n_rows] = n
    return entries, starts, task_of, n_rows


@_jit(parallel=True)
def sample_tasks(indptr, items, ratings, weights, users, sup_lo, sup_hi, seed, n_items, n_neg,
                 offsets, t_items, t_y, t_w, n_sup):
    """The tasks ``meta_batch_grad`` draws (for inspection and tests): user
    ``users[b]``'s task in ``t_*[offsets[b]:offsets[b+1]]``, its support
    part's length in ``n_sup[b]``."""
    for b in prange(users.shape[0]):
        u = users[b]
        lo = offsets[b]
        hi = offsets[b + 1]
        perm = np.empty(hi - lo, dtype=np.int64)
        n_sup[b] = _build_task(indptr, items, ratings, weights, u, u, sup_lo[u], sup_hi[u], seed,
                               n_items, n_neg, t_items[lo:hi], t_y[lo:hi], t_w[lo:hi], perm)


@_jit(parallel=True)
def meta_batch_grad(
    indptr, items, ratings, weights, users, sup_lo, sup_hi, seed, offsets, theta, n_items,
    alpha, lam, kappa, reg, n_steps, first_order, hyper, logistic, n_neg, per_rating, grad,
    grad_hyper, rows,
):
    """Mean query loss of a meta-batch of users and its meta-gradient.

    ``offsets`` is the running sum of the users' task lengths, (1 + n_neg)
    times their rating counts. Each task is laid out by ``_build_task``.
    With ``hyper``, ``grad_hyper`` ← (∂/∂α, ∂/∂λ), of length d + 1.

    Only the part of ``grad`` the batch touches is written: (μ, φ₀) and the
    rows of the items in its tasks, whose codes go to ``rows[:n]``, where n
    is returned as well. Other items' gradients are zero, and their entries
    of ``grad`` are left as they were, so that the cost of a batch does not
    grow with the catalogue: pass a zeroed ``grad`` for the dense gradient.
    Returns (loss, n).
    """
    d = alpha.shape[0]
    mu = theta[0]
    phi0, bi, Q = unpack(theta, n_items, d)
    n_tasks = users.shape[0]
    total = offsets[n_tasks]
    t_items, t_y, t_w, perm = _task_buffers(total)
    g_item = np.zeros((total, d))
    g_phi = np.zeros((n_tasks, d))
    g_mu = np.zeros(n_tasks)
    g_hyper = np.zeros((n_tasks, d + 1))
    losses = np.zeros(n_tasks)
    w_query = np.zeros(n_tasks)
    for b in prange(n_tasks):
        u = users[b]
        lo = offsets[b]
        hi = offsets[b + 1]
        n_sup = _build_task(indptr, items, ratings, weights, u, u, sup_lo[u], sup_hi[u], seed,
                            n_items, n_neg, t_items[lo:hi], t_y[lo:hi], t_w[lo:hi], perm[lo:hi])
        phis = np.empty((n_steps + 1, d))
        losses[b], g_mu[b], g_hyper[b, d] = _task_meta_grad(
            n_sup, t_items[lo:hi], t_y[lo:hi], t_w[lo:hi], mu, phi0, bi, Q, alpha, lam, kappa,
            reg, n_steps, first_order, hyper, logistic, phis, g_item[lo:hi], g_phi[b],
            g_hyper[b, :d],
        )
        w_query[b] = t_w[lo + n_sup : hi].sum()
    # (μ, φ₀, α, λ) serially in task order: identical for any thread count.
    grad_hyper[:] = 0.0
    g_phi0, g_bi, g_Q = unpack(grad, n_items, d)
    scales = np.empty(n_tasks)
    w_total = 0.0
    for b in range(n_tasks):
        w_total += w_query[b]
    for b in range(n_tasks):
        scales[b] = w_query[b] / w_total if per_rating and w_total > 0.0 else 1.0 / n_tasks
    # Plain loops: in a parallel kernel an array expression becomes a
    # parallel region of its own, whose launch would cost more than the row.
    grad[0] = 0.0
    for a in range(d):
        g_phi0[a] = 0.0
    loss = 0.0
    for b in range(n_tasks):
        loss += losses[b] * scales[b]
        grad[0] += g_mu[b] * scales[b]
        for a in range(d):
            g_phi0[a] += g_phi[b, a] * scales[b]
        for a in range(d + 1):
            grad_hyper[a] += g_hyper[b, a] * scales[b]
    # Item rows one at a time per thread, each summed in entry order, so the
    # result does not depend on the thread count.
    entries, starts, task_of, n_rows = _item_groups(t_items, offsets, offsets[1:], rows)
    for r in prange(n_rows):
        _sum_row(rows[r], entries[starts[r] : starts[r + 1]], task_of, scales, g_item, g_bi, g_Q)
    return loss, n_rows


@_jit(parallel=True)
def reptile_batch(
    indptr, items, ratings, weights, users, sup_lo, sup_hi, seed, offsets, theta, n_items,
    alpha, lam, kappa, item_lr, n_steps, adapt_items, logistic, n_neg, delta, rows,
):
    """Reptile's direction for a meta-batch: ``delta`` ← the mean over tasks
    of (adapted − initial) parameters. Each task runs ``n_steps`` of gradient
    descent on its support loss L_S, on φ (steps α) and, with
    ``adapt_items``, on its support items' (b_i, q_i) (step ``item_lr``), all
    from the same iterate. μ is not adapted. φ₀'s direction is the mean over
    tasks; an item's is the mean over its adapted copies (one per entry of
    a support set, sampled negatives included).

    As in :func:`meta_batch_grad`, only (μ, φ₀) and the rows of the items
    in the tasks' support sets are written, their codes to ``rows[:n]``;
    other entries of ``delta`` are left as they were. Returns (mean support
    loss at the initial parameters, before adaptation; n).
    """
    d = alpha.shape[0]
    k = d - 1
    mu = theta[0]
    phi0, bi, Q = unpack(theta, n_items, d)
    n_tasks = users.shape[0]
    total = offsets[n_tasks]
    t_items, t_y, t_w, perm = _task_buffers(total)
    d_item = np.zeros((total, d))
    d_phi = np.zeros((n_tasks, d))
    n_sups = np.zeros(n_tasks, dtype=np.int64)
    losses = np.zeros(n_tasks)
    for b in prange(n_tasks):
        u = users[b]
        lo = offsets[b]
        hi = offsets[b + 1]
        s = _build_task(indptr, items, ratings, weights, u, u, sup_lo[u], sup_hi[u], seed,
                        n_items, n_neg, t_items[lo:hi], t_y[lo:hi], t_w[lo:hi], perm[lo:hi])
        n_sups[b] = s
        it = t_items[lo : lo + s]
        ys = t_y[lo : lo + s]
        ws_ = t_w[lo : lo + s]
        phi = phi0.copy()
        lb = np.empty(s)
        lq = np.empty((s, k))
        for jj in range(s):
            lb[jj] = bi[it[jj]]
            lq[jj, :] = Q[it[jj]]
        ws = _support_norm(ws_, s, kappa)
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
                    sc = mu + phi[0] + lb[jj]
                    for f in range(k):
                        sc += phi[1 + f] * lq[jj, f]
                    ell, dl, _ = _loss_terms(sc, ys[jj], logistic)
                    loss += ws_[jj] / ws * ell
                    c = ws_[jj] / ws * dl
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
            i = it[jj]
            d_item[lo + jj, 0] = lb[jj] - bi[i]
            for f in range(k):
                d_item[lo + jj, 1 + f] = lq[jj, f] - Q[i, f]
    # An item's direction is averaged over the adapted copies of it, not over
    # every task: most tasks never touch a given item, and counting them
    # would shrink item updates by the batch size.
    dphi0, dbi, dQ = unpack(delta, n_items, d)
    delta[0] = 0.0
    for a in range(d):
        dphi0[a] = 0.0
    scale = 1.0 / n_tasks
    total_loss = 0.0
    for b in range(n_tasks):
        total_loss += losses[b] * scale
        for a in range(d):
            dphi0[a] += d_phi[b, a] * scale
    ends = np.empty(n_tasks, dtype=np.int64)
    for b in range(n_tasks):
        ends[b] = offsets[b] + n_sups[b]
    entries, starts, task_of, n_rows = _item_groups(t_items, offsets, ends, rows)
    ones = np.ones(n_tasks)
    for r in prange(n_rows):
        i = rows[r]
        _sum_row(i, entries[starts[r] : starts[r + 1]], task_of, ones, d_item, dbi, dQ)
        copies = starts[r + 1] - starts[r]
        if copies > 1:
            dbi[i] /= copies
            for f in range(k):
                dQ[i, f] /= copies
    return total_loss, n_rows


@_jit(parallel=True)
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


@_jit()
def _adam_range(theta, grad, m, v, c1, c2, lr, a0, a1):
    """Adam (β₁ = 0.9, β₂ = 0.999, ε = 1e-8) on entries a0..a1−1, with the
    bias corrections c1 = 1 − β₁^step and c2 = 1 − β₂^step (step from 1)."""
    for a in range(a0, a1):
        m[a] = 0.9 * m[a] + (1.0 - 0.9) * grad[a]
        v[a] = 0.999 * v[a] + (1.0 - 0.999) * grad[a] * grad[a]
        theta[a] -= lr * (m[a] / c1) / (math.sqrt(v[a] / c2) + 1e-8)


@_jit()
def adam_step(theta, grad, m, v, step, lr):
    """One Adam update of every entry."""
    _adam_range(theta, grad, m, v, 1.0 - 0.9**step, 1.0 - 0.999**step, lr, 0, theta.shape[0])


@_jit(parallel=True)
def adam_rows(theta, grad, m, v, step, lr, n_items, d, rows, n_rows):
    """:func:`adam_step` on (μ, φ₀) and on the item rows ``rows[:n_rows]``
    only (lazy Adam: an item's moments move when it has a gradient), so that
    a meta-batch costs the same however many items there are."""
    k = d - 1
    c1 = 1.0 - 0.9**step
    c2 = 1.0 - 0.999**step
    _adam_range(theta, grad, m, v, c1, c2, lr, 0, 1 + d)
    for r in prange(n_rows):
        b = 1 + d + rows[r]
        _adam_range(theta, grad, m, v, c1, c2, lr, b, b + 1)
        q = 1 + d + n_items + rows[r] * k
        _adam_range(theta, grad, m, v, c1, c2, lr, q, q + k)


# --------------------------------------------------------------------------
# Serving: adaptation, fold-in and prediction
# --------------------------------------------------------------------------


@_jit(parallel=True)
def adapt_users(indptr, items, ratings, weights, users, keys, seed, theta, n_items, alpha, lam,
                kappa, n_steps, logistic, n_neg, out):
    """``out[b]`` ← φ_T of user ``users[b]`` adapted from φ₀ on all its
    ratings (and, with ``n_neg``, negatives keyed by (seed, keys[b]))."""
    d = alpha.shape[0]
    mu = theta[0]
    phi0, bi, Q = unpack(theta, n_items, d)
    for b in prange(users.shape[0]):
        u = users[b]
        n = indptr[u + 1] - indptr[u]
        m = n * (1 + n_neg)
        t_items = np.empty(m, dtype=np.int64)
        t_y = np.empty(m)
        t_w = np.empty(m)
        s = _build_task(indptr, items, ratings, weights, u, keys[b], n, n, seed, n_items, n_neg,
                        t_items, t_y, t_w, np.empty(n, dtype=np.int64))
        phis = np.empty((n_steps + 1, d))
        phis[0, :] = phi0
        g = np.empty(d)
        _inner_loop(phis, s, t_items, t_y, t_w, mu, bi, Q, alpha, lam, kappa, logistic, g)
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


@_jit()
def _logistic_objective(phi, items, ys, ws, mu, bi, Q, reg_w):
    total = reg_w * np.dot(phi, phi)
    for j in range(items.shape[0]):
        ell, _, _ = _loss_terms(_score(mu, bi, Q, phi, items[j]), ys[j], True)
        total += ws[j] * ell
    return total


@_jit(parallel=True)
def logistic_users(indptr, items, ratings, weights, users, keys, seed, theta, n_items, d, reg,
                   n_neg, out):
    """``out[b]`` ← argmin_φ Σ w [ℓ(r̂, y) + reg ‖φ‖²] with the cross-entropy
    ℓ, over user ``users[b]``'s ratings and sampled negatives, items fixed:
    the logistic counterpart of ``ridge_users``. The problem is strictly
    convex; Newton's method with a backtracking line search solves it."""
    mu = theta[0]
    _, bi, Q = unpack(theta, n_items, d)
    for b in prange(users.shape[0]):
        u = users[b]
        n = indptr[u + 1] - indptr[u]
        m = n * (1 + n_neg)
        t_items = np.empty(m, dtype=np.int64)
        t_y = np.empty(m)
        t_w = np.empty(m)
        _build_task(indptr, items, ratings, weights, u, keys[b], n, n, seed, n_items, n_neg,
                    t_items, t_y, t_w, np.empty(n, dtype=np.int64))
        wsum = t_w.sum()
        phi = np.zeros(d)
        if wsum <= 0.0:
            out[b, :] = phi
            continue
        reg_w = reg * wsum
        x = np.empty(d)
        for _ in range(100):
            H = np.zeros((d, d))
            grad = 2.0 * reg_w * phi
            for j in range(m):
                i = t_items[j]
                _, dl, d2l = _loss_terms(_score(mu, bi, Q, phi, i), t_y[j], True)
                x[0] = 1.0
                x[1:] = Q[i]
                for a in range(d):
                    grad[a] += t_w[j] * dl * x[a]
                    for c in range(d):
                        H[a, c] += t_w[j] * d2l * x[a] * x[c]
            for a in range(d):
                H[a, a] += 2.0 * reg_w + 1e-12 * wsum
            step = np.linalg.solve(H, grad)
            f0 = _logistic_objective(phi, t_items, t_y, t_w, mu, bi, Q, reg_w)
            decrease = np.dot(grad, step)
            if decrease <= 1e-14 * (1.0 + abs(f0)):
                break
            t = 1.0
            while t > 1e-8:
                trial = phi - t * step
                if _logistic_objective(trial, t_items, t_y, t_w, mu, bi, Q, reg_w) <= f0 - 1e-4 * t * decrease:
                    break
                t *= 0.5
            phi = phi - t * step
        out[b, :] = phi


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
def _sgd_update(mu, bi, Q, phi, i, y, w, lr, reg, logistic):
    """One Surprise-style SGD step on rating (φ, i, y); returns w·ℓ."""
    ell, dl, _ = _loss_terms(_score(mu, bi, Q, phi, i), y, logistic)
    # Surprise steps along err = r − r̂, half the squared error's gradient;
    # for the cross-entropy the matching quantity is y − σ(r̂) = −ℓ'.
    err = -dl if logistic else -0.5 * dl
    step = lr * w
    phi[0] += step * (err - reg * phi[0])
    bi[i] += step * (err - reg * bi[i])
    for f in range(phi.shape[0] - 1):
        pf = phi[1 + f]
        qf = Q[i, f]
        phi[1 + f] += step * (err * qf - reg * pf)
        Q[i, f] += step * (err * pf - reg * qf)
    return w * ell


@_jit()
def sgd_epoch(users, items, ratings, weights, order, theta, n_items, user_table, lr, reg,
              logistic, n_neg, seen_indptr, seen_items, seed):
    """One pass of Surprise-style SGD over the ratings in ``order``; μ and φ₀
    stay fixed. With ``n_neg``, each rating is followed by steps on that
    many items its user never rated (target 0, same weight), drawn from a
    stream keyed by (seed, rating position); ``seen_*`` is the CSR of each
    user's rated items, sorted and unique. Returns the weighted loss seen."""
    d = user_table.shape[1]
    mu = theta[0]
    _, bi, Q = unpack(theta, n_items, d)
    total = 0.0
    for n in range(order.shape[0]):
        j = order[n]
        u = users[j]
        phi = user_table[u]
        total += _sgd_update(mu, bi, Q, phi, items[j], ratings[j], weights[j], lr, reg, logistic)
        if n_neg > 0:
            seen = seen_items[seen_indptr[u] : seen_indptr[u + 1]]
            n_free = n_items - seen.shape[0]
            if n_free <= 0:
                continue
            state = _task_state(seed, j)
            for _ in range(n_neg):
                state, r = _randbelow(state, n_free)
                total += _sgd_update(mu, bi, Q, phi, _kth_unseen(seen, r), 0.0, weights[j],
                                     lr, reg, logistic)
    return total
