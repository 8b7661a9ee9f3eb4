"""The model's maths: per-rating loss, support gradient, inner loop and the
reverse pass of one task (notation in the package docstring)."""

import math
from collections import namedtuple

import numpy as np

from ._jit import REORDER_SUMS, jit

# Settings records. Kernels take their scalar settings in these, built by
# the keyword-only constructors below, so that two swapped scalars cannot
# compile silently: each field is read by name and cast to its type.
Inner = namedtuple("Inner", ["lam", "kappa", "n_steps", "logistic", "n_neg", "pairwise"])
Outer = namedtuple("Outer", ["first_order", "hyper", "per_rating"])
ReptileStep = namedtuple("ReptileStep", ["item_lr", "adapt_items"])


@jit()
def copy_into(dst, src):
    """``dst[:] = src`` for 1-d arrays of one length. Numba compiles every
    array-to-slice assignment with a shape-mismatch message built from
    formatted strings, several seconds per process on a cold cache; the
    kernels copy with this loop instead."""
    for a in range(dst.shape[0]):
        dst[a] = src[a]


def inner_settings(*, lam, kappa, n_steps, logistic, n_neg, pairwise=False):
    """The inner loop and task layout: L2 strength λ, support pseudo-count
    κ, steps T, loss (logistic or squared), negatives per positive, and
    whether the loss is taken on (positive, negative) pairs (BPR)."""
    if pairwise and not (logistic and n_neg > 0):
        raise ValueError("the pairwise loss is the logistic loss of pairs and needs negatives")
    return Inner(float(lam), float(kappa), int(n_steps), bool(logistic), int(n_neg), bool(pairwise))


def outer_settings(*, first_order, hyper, per_rating):
    """The meta-gradient: first-order MAML, Meta-SGD's hypergradients, and
    task weighting by query ratings (else by task)."""
    return Outer(bool(first_order), bool(hyper), bool(per_rating))


def reptile_settings(*, item_lr, adapt_items):
    """Reptile's inner step on the support items, and whether to take it."""
    return ReptileStep(float(item_lr), bool(adapt_items))


@jit()
def unpack(theta, n_items, d):
    """Views (φ₀, b, Q) into ``theta``; μ is ``theta[0]``."""
    k = d - 1
    phi0 = theta[1 : 1 + d]
    bi = theta[1 + d : 1 + d + n_items]
    Q = theta[1 + d + n_items : 1 + d + n_items + n_items * k].reshape((n_items, k))
    return phi0, bi, Q


@jit()
def _score(mu, bi, Q, phi, i):
    """r̂ of the user with parameters φ for item code ``i`` (−1: unknown)."""
    r = mu + phi[0]
    if i >= 0:
        r += bi[i]
        for f in range(phi.shape[0] - 1):
            r += phi[1 + f] * Q[i, f]
    return r


@jit()
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


# Terms. A segment of a task (its support or its query part) holds n_pos
# entries, then, with sampled negatives, n_neg negatives per entry in the
# same order. Its loss is a sum of terms: one per entry (pointwise losses),
# or one per (positive, negative) pair (BPR), whose score is the difference
# x = r̂_p − r̂_n = (b_p − b_n) + φ_pᵀ(q_p − q_n): μ and the user's bias
# cancel, and x is still linear in φ, with feature vector (0, q_p − q_n).


@jit()
def _n_terms(m, n_neg, pairwise):
    """Terms of a segment of ``m`` entries."""
    return (m // (1 + n_neg)) * n_neg if pairwise else m


@jit()
def _term(lo, m, t, n_neg, pairwise):
    """Entries (p, n) of term ``t`` of the segment ``[lo, lo + m)``; n is −1
    for a pointwise term. Positive a's negatives sit at n_pos + a·n_neg + b,
    so pair t = a·n_neg + b has its negative at n_pos + t."""
    if not pairwise:
        return lo + t, -1
    return lo + t // n_neg, lo + m // (1 + n_neg) + t


@jit()
def _terms_weight(weights, lo, m, n_neg, pairwise):
    """Total weight of the segment's terms."""
    total = 0.0
    for t in range(_n_terms(m, n_neg, pairwise)):
        p, n = _term(lo, m, t, n_neg, pairwise)
        total += weights[n] if n >= 0 else weights[p]
    return total


@jit()
def _with_prior(ws, inner):
    """W̃_S = W_S + κ from the support's term weight W_S; 0 for an empty
    support."""
    return ws + inner.kappa if ws > 0.0 else 0.0


@jit()
def _support_norm(weights, n_sup, inner):
    """W̃_S, the support loss's normalizer, from the task's weights."""
    return _with_prior(_terms_weight(weights, np.int64(0), n_sup, inner.n_neg, inner.pairwise), inner)


@jit()
def _scratch(m, d, n_steps):
    """Work arrays for tasks of at most ``m`` entries, reused task after
    task: ``(X, cyw, ends, slopes, phis, vecs)`` for :func:`_gather`,
    :func:`_inner_loop` and :func:`_task_meta_grad`. Allocated per task,
    they cost as much as the task's maths."""
    m = max(m, 1)
    return (np.empty((m, d)), np.empty((m, 3)), np.empty((m, 2), dtype=np.int64),
            np.empty((m, 2 * max(n_steps, 1))), np.empty((n_steps + 1, d)), np.empty((5, d)))


@jit()
def _gather(lo, m, items, ratings, weights, mu, bi, Q, inner, X, cyw, ends, row, t_ctx, off):
    """Lay out the terms of the task segment ``[lo, lo + m)`` as rows
    ``row, row + 1, ...`` of plain arrays, so that the loops over terms
    read one contiguous row each (through helper calls and row views they
    cost five times the arithmetic). Term t's score is
    s = c + X[t]ᵀφ, with X[t] its feature vector ∂s/∂φ, (1, q_i) or
    (0, q_p − q_n), and c the rest, μ + b_i or b_p − b_n; ``cyw[t]`` holds
    (c, target, weight), a pair's target being 1 and its weight its
    negative's (its positive's weight, or 0 when the user rated every item
    and no negative exists); ``ends[t]`` holds its entries (p, n), n = −1
    for a pointwise term. With context (``off`` has rows), entry p's context
    has parameters (b_c, e_c) = ``off[t_ctx[p]]``: its score gains
    b_c + q_i·e_c + φ·e_c, so X[t] = (1, q_i + e_c) and c gains b_c + q_i·e_c
    (a pair's entries share their context: only (q_p − q_n)·e_c remains).
    Returns (number of terms, their total weight)."""
    d = X.shape[1]
    nt = _n_terms(m, inner.n_neg, inner.pairwise)
    total = 0.0
    for t in range(nt):
        p, n = _term(lo, m, t, inner.n_neg, inner.pairwise)
        r = row + t
        i = items[p]
        ends[r, 0] = p
        ends[r, 1] = n
        if n < 0:
            X[r, 0] = 1.0
            for f in range(d - 1):
                X[r, 1 + f] = Q[i, f]
            cyw[r, 0] = mu + bi[i]
            if off.shape[0]:
                c = t_ctx[p]
                cyw[r, 0] += off[c, 0]
                for f in range(d - 1):
                    X[r, 1 + f] += off[c, 1 + f]
                    cyw[r, 0] += Q[i, f] * off[c, 1 + f]
            cyw[r, 1] = ratings[p]
            cyw[r, 2] = weights[p]
        else:
            j = items[n]
            X[r, 0] = 0.0
            for f in range(d - 1):
                X[r, 1 + f] = Q[i, f] - Q[j, f]
            cyw[r, 0] = bi[i] - bi[j]
            if off.shape[0]:
                c = t_ctx[p]
                for f in range(d - 1):
                    cyw[r, 0] += X[r, 1 + f] * off[c, 1 + f]
            cyw[r, 1] = 1.0
            cyw[r, 2] = weights[n]
        total += cyw[r, 2]
    return nt, total


@jit(fastmath=REORDER_SUMS)
def _inner_loop(phis, nt, X, cyw, ws, alpha, inner, slopes, g):
    """Fill ``phis[1:]`` with the inner-loop iterates from ``phis[0]`` on
    the support terms, rows ``[0, nt)`` of (X, cyw), with normalizer ``ws``.
    ``slopes[e, t]`` and ``slopes[e, T + t]`` receive (ℓ', ℓ'') of term e
    at φ_t, which the reverse pass reuses; ``g`` is scratch of length d."""
    d = phis.shape[1]
    n_steps = phis.shape[0] - 1
    for t in range(n_steps):
        for a in range(d):
            g[a] = 2.0 * inner.lam * phis[t, a]
        if ws > 0.0:
            for e in range(nt):
                s = cyw[e, 0]
                for a in range(d):
                    s += X[e, a] * phis[t, a]
                _, dl, d2l = _loss_terms(s, cyw[e, 1], inner.logistic)
                slopes[e, t] = dl
                slopes[e, n_steps + t] = d2l
                ce = cyw[e, 2] / ws * dl
                for a in range(d):
                    g[a] += ce * X[e, a]
        for a in range(d):
            phis[t + 1, a] = phis[t, a] - alpha[a] * g[a]


@jit()
def _adapt(n_sup, items, ratings, weights, mu, bi, Q, inner, alpha, phi0, out, t_ctx, off):
    """``out`` ← φ_T adapted from ``phi0`` on the first ``n_sup`` entries
    of a task (serving's fold-in), in their contexts (see ``_gather``)."""
    X, cyw, ends, slopes, phis, vecs = _scratch(n_sup, phi0.shape[0], inner.n_steps)
    zero = np.int64(0)  # a literal 0 would compile a specialization of its own
    nt, w_s = _gather(zero, n_sup, items, ratings, weights, mu, bi, Q, inner, X, cyw, ends, zero, t_ctx, off)
    copy_into(phis[0], phi0)
    _inner_loop(phis, nt, X, cyw, _with_prior(w_s, inner), alpha, inner, slopes, vecs[0])
    copy_into(out, phis[inner.n_steps])


@jit(fastmath=REORDER_SUMS)
def _task_meta_grad(
    n_sup, items, ratings, weights, mu, phi0, bi, Q, alpha, item_reg, inner,
    first_order, hyper, g_item, g_phi0, g_alpha, work, t_ctx, off,
):
    """Query loss of one task and its meta-gradient.

    The task's arrays hold its support set first (``n_sup`` entries), then
    its query set. ``g_item[j, :d]`` receives ∂/∂(b_i, q_i) for the item of
    entry j; ``g_phi0`` receives ∂/∂φ₀. With ``hyper``, ``g_alpha`` receives
    ∂/∂α and the returned ∂/∂λ is filled in (Meta-SGD); ``first_order`` then
    uses v_T for every step. ``work`` is a :func:`_scratch` for at least the
    task's length. If ``g_item`` has a column d, it receives the coefficient
    2wβ_i of the item's L2 penalty, whose gradient is that times (b_i, q_i).
    With context (``t_ctx``, ``off``: see ``_gather``), ``g_item[j, 0]`` and
    ``g_item[j, 1:d]`` are, apart from the penalty, the gradients with
    respect to entry j's c-part and its X row; ``meta_batch_grad`` turns
    them into the item's and the context's.
    Returns (loss, ∂loss/∂μ, ∂loss/∂λ).
    """
    lam, n_steps, logistic = inner.lam, inner.n_steps, inner.logistic
    X, cyw, ends, slopes, phis, vecs = work
    d = phi0.shape[0]
    k = d - 1
    m = items.shape[0]
    zero = np.int64(0)  # a literal 0 would compile a specialization of its own
    ns, w_s = _gather(zero, n_sup, items, ratings, weights, mu, bi, Q, inner, X, cyw, ends, zero, t_ctx, off)
    ws = _with_prior(w_s, inner)
    copy_into(phis[0], phi0)
    _inner_loop(phis, ns, X, cyw, ws, alpha, inner, slopes, vecs[0])

    # Query loss and its direct gradients at φ_T. Each item of a term pays
    # its L2 penalty β_i (b_i² + ‖q_i‖²) with the term's weight.
    nq, wq = _gather(n_sup, m - n_sup, items, ratings, weights, mu, bi, Q, inner, X, cyw, ends, ns, t_ctx, off)
    v = vecs[1]
    v[:] = 0.0
    loss = 0.0
    g_mu = 0.0
    if wq > 0.0:
        for r in range(ns, ns + nq):
            s = cyw[r, 0]
            for a in range(d):
                s += X[r, a] * phis[n_steps, a]
            w = cyw[r, 2] / wq
            ell, dl, _ = _loss_terms(s, cyw[r, 1], logistic)
            ce = w * dl
            if ends[r, 1] < 0:
                g_mu += ce
            for a in range(d):
                v[a] += ce * X[r, a]
            pen = 0.0
            for side in range(2):
                j = ends[r, side]
                if j < 0:
                    continue
                i = items[j]
                sign = 1.0 if side == 0 else -1.0
                sq = bi[i] * bi[i]
                for f in range(k):
                    sq += Q[i, f] * Q[i, f]
                pen += item_reg[i] * sq
                r2 = 2.0 * w * item_reg[i]
                g_item[j, 0] += sign * ce
                g_item[j, 0] += r2 * bi[i]
                if g_item.shape[1] > d:  # the penalty's coefficient, for callers who need it apart
                    g_item[j, d] += r2
                for f in range(k):
                    g_item[j, 1 + f] += sign * (ce * phis[n_steps, 1 + f])
                    g_item[j, 1 + f] += r2 * Q[i, f]
            loss += w * (ell + pen)

    g_lam = 0.0
    if hyper or not first_order:
        vt, hv, gt = vecs[2], vecs[3], vecs[4]
        for t in range(n_steps - 1, -1, -1):
            for a in range(d):
                vt[a] = alpha[a] * v[a]
                hv[a] = 2.0 * lam * vt[a]
                gt[a] = 2.0 * lam * phis[t, a]
            if ws > 0.0:
                for e in range(ns):
                    cw = cyw[e, 2] / ws
                    ce = cw * slopes[e, t]
                    if hyper:
                        for a in range(d):
                            gt[a] += ce * X[e, a]
                    if first_order:
                        continue
                    xv = 0.0
                    for a in range(d):
                        xv += vt[a] * X[e, a]
                    cx = cw * slopes[e, n_steps + t] * xv
                    for a in range(d):
                        hv[a] += cx * X[e, a]
                    if ends[e, 1] < 0:
                        g_mu -= cx
                    # Through the term's items: −(cx, cx φ_t + ce ṽ) on p, + on n.
                    for side in range(2):
                        j = ends[e, side]
                        if j < 0:
                            continue
                        sign = -1.0 if side == 0 else 1.0
                        g_item[j, 0] += sign * cx
                        for f in range(k):
                            g_item[j, 1 + f] += sign * (cx * phis[t, 1 + f] + ce * vt[1 + f])
            if hyper:
                # φ_{t+1} = φ_t − α ⊙ g(φ_t):  ∂/∂α = −g(φ_t),  ∂/∂λ = −2 α ⊙ φ_t.
                for a in range(d):
                    g_alpha[a] -= v[a] * gt[a]
                    g_lam -= 2.0 * vt[a] * phis[t, a]
            if not first_order:
                for a in range(d):
                    v[a] -= hv[a]
    copy_into(g_phi0, v)
    return loss, g_mu, g_lam
