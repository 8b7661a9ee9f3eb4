"""The model's maths: per-rating loss, support gradient, inner loop and the
reverse pass of one task (notation in the package docstring)."""

import math
from collections import namedtuple

import numpy as np

from ._jit import jit

# Settings records. Kernels take their scalar settings in these, built by
# the keyword-only constructors below, so that two swapped scalars cannot
# compile silently: each field is read by name and cast to its type.
Inner = namedtuple("Inner", ["lam", "kappa", "n_steps", "logistic", "n_neg"])
Outer = namedtuple("Outer", ["first_order", "hyper", "per_rating"])
ReptileStep = namedtuple("ReptileStep", ["item_lr", "adapt_items"])


def inner_settings(*, lam, kappa, n_steps, logistic, n_neg):
    """The inner loop and task layout: L2 strength λ, support pseudo-count
    κ, steps T, loss (logistic or squared), negatives per positive."""
    return Inner(float(lam), float(kappa), int(n_steps), bool(logistic), int(n_neg))


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


@jit()
def _support_norm(weights, n_sup, kappa):
    """W̃_S = W_S + κ, the support loss's normalizer; 0 for an empty support."""
    ws = 0.0
    for j in range(n_sup):
        ws += weights[j]
    return ws + kappa if ws > 0.0 else 0.0


@jit()
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


@jit()
def _inner_loop(phis, n_sup, items, ratings, weights, mu, bi, Q, alpha, lam, kappa, logistic, g):
    """Fill ``phis[1:]`` with the inner-loop iterates from ``phis[0]``."""
    d = phis.shape[1]
    for t in range(phis.shape[0] - 1):
        _support_grad(phis[t], n_sup, items, ratings, weights, mu, bi, Q, lam, kappa, logistic, g)
        for a in range(d):
            phis[t + 1, a] = phis[t, a] - alpha[a] * g[a]


@jit()
def _task_meta_grad(
    n_sup, items, ratings, weights, mu, phi0, bi, Q, alpha, lam, kappa, item_reg, n_steps,
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
            reg = item_reg[i]
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
