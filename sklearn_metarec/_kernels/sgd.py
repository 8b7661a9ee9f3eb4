"""Plain SGD epochs of the factorization baseline."""

import numpy as np

from ._jit import jit
from .maths import _loss_terms, _score, unpack
from .sampling import _kth_unseen, _randbelow, _task_state


@jit()
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


@jit()
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


@jit()
def _feature_sum(F_indptr, F_indices, F_data, feat, i, out):
    """``out`` ← F_i·feat, the features' part of item i's (b_i, q_i)."""
    out[:] = 0.0
    for e in range(F_indptr[i], F_indptr[i + 1]):
        for a in range(out.shape[0]):
            out[a] += F_data[e] * feat[F_indices[e], a]


@jit()
def _sgd_update_features(mu, own, F_indptr, F_indices, F_data, feat, phi, i, y, w, lr, reg, logistic, row):
    """``_sgd_update`` for an item whose (b_i, q_i) is its own part ``own[i]``
    plus F_i·feat (LightFM's representation): the same step on the own part
    and, scaled by each feature's value, on its features' parts. ``row`` is
    scratch of length d. Returns w·ℓ."""
    d = phi.shape[0]
    _feature_sum(F_indptr, F_indices, F_data, feat, i, row)
    for a in range(d):
        row[a] += own[i, a]
    s = mu + phi[0] + row[0]
    for f in range(1, d):
        s += phi[f] * row[f]
    ell, dl, _ = _loss_terms(s, y, logistic)
    err = -dl if logistic else -0.5 * dl
    step = lr * w
    phi[0] += step * (err - reg * phi[0])
    own[i, 0] += step * (err - reg * own[i, 0])
    for e in range(F_indptr[i], F_indptr[i + 1]):
        j = F_indices[e]
        feat[j, 0] += step * (F_data[e] * err - reg * feat[j, 0])
    for f in range(1, d):
        pf = phi[f]
        phi[f] += step * (err * row[f] - reg * pf)
        own[i, f] += step * (err * pf - reg * own[i, f])
        for e in range(F_indptr[i], F_indptr[i + 1]):
            j = F_indices[e]
            feat[j, f] += step * (F_data[e] * err * pf - reg * feat[j, f])
    return w * ell


# Apart from ``sgd_epoch``, whose loop this repeats: routed through here,
# plain SGD took 1.33 times as long (MovieLens-100k, 100 factors), the
# per-rating gather of an item's row from its own part costing that much.
@jit()
def sgd_epoch_features(users, items, ratings, weights, order, theta, n_items, user_table, lr, reg,
                       logistic, n_neg, seen_indptr, seen_items, seed, F_indptr, F_indices, F_data, feat):
    """``sgd_epoch`` with item features: ``theta``'s item rows are own parts
    plus F·feat; the epoch steps the own parts and ``feat``, then writes the
    rows back. Returns the weighted loss seen."""
    d = user_table.shape[1]
    mu = theta[0]
    _, bi, Q = unpack(theta, n_items, d)
    own = np.empty((n_items, d))
    row = np.empty(d)
    for i in range(n_items):
        _feature_sum(F_indptr, F_indices, F_data, feat, i, row)
        own[i, 0] = bi[i] - row[0]
        for f in range(1, d):
            own[i, f] = Q[i, f - 1] - row[f]
    total = 0.0
    for n in range(order.shape[0]):
        j = order[n]
        u = users[j]
        phi = user_table[u]
        total += _sgd_update_features(mu, own, F_indptr, F_indices, F_data, feat, phi, items[j], ratings[j],
                                      weights[j], lr, reg, logistic, row)
        if n_neg > 0:
            seen = seen_items[seen_indptr[u] : seen_indptr[u + 1]]
            n_free = n_items - seen.shape[0]
            if n_free <= 0:
                continue
            state = _task_state(seed, j)
            for _ in range(n_neg):
                state, r = _randbelow(state, n_free)
                total += _sgd_update_features(mu, own, F_indptr, F_indices, F_data, feat, phi,
                                              _kth_unseen(seen, r), 0.0, weights[j], lr, reg, logistic, row)
    for i in range(n_items):
        _feature_sum(F_indptr, F_indices, F_data, feat, i, row)
        bi[i] = own[i, 0] + row[0]
        for f in range(1, d):
            Q[i, f - 1] = own[i, f] + row[f]
    return total
