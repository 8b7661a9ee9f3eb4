"""The model's maths: per-rating loss, support gradient, inner loop and the
reverse pass of one task (notation in the package docstring)."""

import math
from collections import namedtuple

import numpy as np

from ._jit import jit

# Settings records. Kernels take their scalar settings in these, built by
# the keyword-only constructors below, so that two swapped scalars cannot
# compile silently: each field is read by name and cast to its type.
Inner = namedtuple("Inner", ["lam", "kappa", "n_steps", "logistic", "n_neg", "pairwise"])
Outer = namedtuple("Outer", ["first_order", "hyper", "per_rating"])
ReptileStep = namedtuple("ReptileStep", ["item_lr", "adapt_items"])


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
def _term_score(mu, bi, Q, phi, items, ratings, weights, p, n):
    """(score, target, weight) of the term with entries (p, n). A pair's
    target is 1 (BPR's −log σ(x) is the cross-entropy of σ(x) against 1)
    and its weight is its negative's: its positive's weight, or 0 when the
    user rated every item and no negative exists."""
    if n < 0:
        return _score(mu, bi, Q, phi, items[p]), ratings[p], weights[p]
    i = items[p]
    j = items[n]
    x = bi[i] - bi[j]
    for f in range(phi.shape[0] - 1):
        x += phi[1 + f] * (Q[i, f] - Q[j, f])
    return x, 1.0, weights[n]


@jit()
def _term_feature(Q, items, p, n, out):
    """The term's feature vector ∂score/∂φ: (1, q_i), or (0, q_p − q_n)."""
    i = items[p]
    if n < 0:
        out[0] = 1.0
        for f in range(out.shape[0] - 1):
            out[1 + f] = Q[i, f]
        return
    j = items[n]
    out[0] = 0.0
    for f in range(out.shape[0] - 1):
        out[1 + f] = Q[i, f] - Q[j, f]


@jit()
def _terms_weight(weights, lo, m, n_neg, pairwise):
    """Total weight of the segment's terms."""
    total = 0.0
    for t in range(_n_terms(m, n_neg, pairwise)):
        p, n = _term(lo, m, t, n_neg, pairwise)
        total += weights[n] if n >= 0 else weights[p]
    return total


@jit()
def _support_norm(weights, n_sup, inner):
    """W̃_S = W_S + κ, the support loss's normalizer; 0 for an empty support."""
    ws = _terms_weight(weights, 0, n_sup, inner.n_neg, inner.pairwise)
    return ws + inner.kappa if ws > 0.0 else 0.0


@jit()
def _support_grad(phi, n_sup, items, ratings, weights, mu, bi, Q, inner, g, x):
    """g ← ∇φ L_S(φ) over the first ``n_sup`` entries of a task; ``x`` is
    scratch of length d."""
    d = phi.shape[0]
    for a in range(d):
        g[a] = 2.0 * inner.lam * phi[a]
    ws = _support_norm(weights, n_sup, inner)
    if ws <= 0.0:
        return
    for t in range(_n_terms(n_sup, inner.n_neg, inner.pairwise)):
        p, n = _term(0, n_sup, t, inner.n_neg, inner.pairwise)
        s, y, w = _term_score(mu, bi, Q, phi, items, ratings, weights, p, n)
        _, dl, _ = _loss_terms(s, y, inner.logistic)
        _term_feature(Q, items, p, n, x)
        c = w / ws * dl
        for a in range(d):
            g[a] += c * x[a]


@jit()
def _inner_loop(phis, n_sup, items, ratings, weights, mu, bi, Q, alpha, inner, g):
    """Fill ``phis[1:]`` with the inner-loop iterates from ``phis[0]``."""
    d = phis.shape[1]
    x = np.empty(d)
    for t in range(phis.shape[0] - 1):
        _support_grad(phis[t], n_sup, items, ratings, weights, mu, bi, Q, inner, g, x)
        for a in range(d):
            phis[t + 1, a] = phis[t, a] - alpha[a] * g[a]


@jit()
def _item_terms(g_item, j, sign, c, cq, vq, phi, Q_i):
    """Add to entry j's item gradient the part of a term that flows through
    its item: ``sign`` (−1 for a pair's negative) times c on b_i and
    c φ_p + cq vq on q_i."""
    g_item[j, 0] += sign * c
    for f in range(Q_i.shape[0]):
        g_item[j, 1 + f] += sign * (c * phi[1 + f] + cq * vq[1 + f])


@jit()
def _task_meta_grad(
    n_sup, items, ratings, weights, mu, phi0, bi, Q, alpha, item_reg, inner,
    first_order, hyper, phis, g_item, g_phi0, g_alpha,
):
    """Query loss of one task and its meta-gradient.

    The task's arrays hold its support set first (``n_sup`` entries), then
    its query set. ``g_item[j]`` receives ∂/∂(b_i, q_i) for the item of
    entry j; ``g_phi0`` receives ∂/∂φ₀. With ``hyper``, ``g_alpha`` receives
    ∂/∂α and the returned ∂/∂λ is filled in (Meta-SGD); ``first_order`` then
    uses v_T for every step. Returns (loss, ∂loss/∂μ, ∂loss/∂λ).
    """
    lam, n_steps, logistic, n_neg, pairwise = inner.lam, inner.n_steps, inner.logistic, inner.n_neg, inner.pairwise
    d = phi0.shape[0]
    k = d - 1
    m = items.shape[0]
    g = np.empty(d)
    x = np.empty(d)
    phis[0, :] = phi0
    _inner_loop(phis, n_sup, items, ratings, weights, mu, bi, Q, alpha, inner, g)
    phi = phis[n_steps]

    # Query loss and its direct gradients at φ_T. Each item of a term pays
    # its L2 penalty β_i (b_i² + ‖q_i‖²) with the term's weight.
    v = np.zeros(d)
    loss = 0.0
    g_mu = 0.0
    wq = _terms_weight(weights, n_sup, m - n_sup, n_neg, pairwise)
    if wq > 0.0:
        for t in range(_n_terms(m - n_sup, n_neg, pairwise)):
            p, n = _term(n_sup, m - n_sup, t, n_neg, pairwise)
            s, y, w = _term_score(mu, bi, Q, phi, items, ratings, weights, p, n)
            w /= wq
            ell, dl, _ = _loss_terms(s, y, logistic)
            _term_feature(Q, items, p, n, x)
            c = w * dl
            if n < 0:
                g_mu += c
            for a in range(d):
                v[a] += c * x[a]
            pen = 0.0
            for j in (p, n):
                if j < 0:
                    continue
                i = items[j]
                sq = bi[i] * bi[i]
                for f in range(k):
                    sq += Q[i, f] * Q[i, f]
                pen += item_reg[i] * sq
                _item_terms(g_item, j, 1.0 if j == p else -1.0, c, 0.0, x, phi, Q[i])
                g_item[j, 0] += 2.0 * w * item_reg[i] * bi[i]
                for f in range(k):
                    g_item[j, 1 + f] += 2.0 * w * item_reg[i] * Q[i, f]
            loss += w * (ell + pen)

    g_lam = 0.0
    if hyper or not first_order:
        ws = _support_norm(weights, n_sup, inner)
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
                for e in range(_n_terms(n_sup, n_neg, pairwise)):
                    p, n = _term(0, n_sup, e, n_neg, pairwise)
                    s, y, w = _term_score(mu, bi, Q, phi_t, items, ratings, weights, p, n)
                    c = w / ws
                    _, dl, d2l = _loss_terms(s, y, logistic)
                    _term_feature(Q, items, p, n, x)
                    ce = c * dl
                    if hyper:
                        for a in range(d):
                            gt[a] += ce * x[a]
                    if first_order:
                        continue
                    xv = 0.0
                    for a in range(d):
                        xv += vt[a] * x[a]
                    cx = c * d2l * xv
                    for a in range(d):
                        hv[a] += cx * x[a]
                    if n < 0:
                        g_mu -= cx
                    _item_terms(g_item, p, -1.0, cx, ce, vt, phi_t, Q[items[p]])
                    if n >= 0:
                        _item_terms(g_item, n, 1.0, cx, ce, vt, phi_t, Q[items[n]])
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
