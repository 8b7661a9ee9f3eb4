"""Plain SGD epochs of the factorization baseline."""

import numpy as np

from ._jit import jit
from .maths import _loss_terms, _score, copy_into, unpack
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
def _sgd_update_features(mu, own, F_indptr, F_indices, F_data, feat, u_own, G_indptr, G_indices, G_data, ufeat,
                         combos, E, c, u, i, y, w, lr, reg, logistic, row, prow, orow):
    """``_sgd_update`` for LightFM's representation: item i's (b_i, q_i) is
    its own part ``own[i]`` plus F_i·feat, user u's (b_u, p_u) its own part
    ``u_own[u]`` plus G_u·ufeat. The same step moves each own part and,
    scaled by each feature's value, its features' parts. In context code
    c ≥ 0 (features ``combos[c]``, parameters E), the rating scores
    b_c + (p_u + q_i)ᵀe_c more, (b_c, e_c) = combos[c]·E, and each context
    feature's row of E steps too. ``row``, ``prow`` and ``orow`` are
    scratch of length d. Returns w·ℓ."""
    d = row.shape[0]
    _feature_sum(F_indptr, F_indices, F_data, feat, i, row)
    _feature_sum(G_indptr, G_indices, G_data, ufeat, u, prow)
    for a in range(d):
        row[a] += own[i, a]
        prow[a] += u_own[u, a]
    s = mu + prow[0] + row[0]
    for f in range(1, d):
        s += prow[f] * row[f]
    if c >= 0:
        orow[:] = 0.0
        for f in range(combos.shape[1]):
            if combos[c, f] != 0.0:
                for a in range(d):
                    orow[a] += combos[c, f] * E[f, a]
        s += orow[0]
        for a in range(1, d):
            s += (prow[a] + row[a]) * orow[a]
    ell, dl, _ = _loss_terms(s, y, logistic)
    err = -dl if logistic else -0.5 * dl
    step = lr * w
    if c >= 0:  # from the old (p_u, q_i), as the other parts' steps
        for f in range(combos.shape[1]):
            x = combos[c, f]
            if x != 0.0:
                E[f, 0] += step * (x * err - reg * E[f, 0])
                for a in range(1, d):
                    E[f, a] += step * (x * err * (prow[a] + row[a]) - reg * E[f, a])
    # ∂r̂/∂(b_u, p_u) = (1, q_i + e_c) = row with row[0] read as 1, and
    # ∂r̂/∂(b_i, q_i) = (1, p_u + e_c) likewise from prow.
    for f in range(d):
        gu = err * (1.0 if f == 0 else row[f] + (orow[f] if c >= 0 else 0.0))
        gi = err * (1.0 if f == 0 else prow[f] + (orow[f] if c >= 0 else 0.0))
        u_own[u, f] += step * (gu - reg * u_own[u, f])
        for e in range(G_indptr[u], G_indptr[u + 1]):
            j = G_indices[e]
            ufeat[j, f] += step * (G_data[e] * gu - reg * ufeat[j, f])
        own[i, f] += step * (gi - reg * own[i, f])
        for e in range(F_indptr[i], F_indptr[i + 1]):
            j = F_indices[e]
            feat[j, f] += step * (F_data[e] * gi - reg * feat[j, f])
    return w * ell


@jit()
def _own_parts(table, F_indptr, F_indices, F_data, feat, sign, out):
    """``out`` ← ``table`` + sign·F·feat, row by row (own parts from full
    rows with sign −1, full rows from own parts with +1)."""
    row = np.empty(feat.shape[1])
    for r in range(table.shape[0]):
        _feature_sum(F_indptr, F_indices, F_data, feat, r, row)
        for a in range(row.shape[0]):
            out[r, a] = table[r, a] + sign * row[a]


@jit()
def _join_rows(bi, Q, rows, join):
    """``rows`` ← [bi | Q] with ``join``, else the reverse (row copies by
    ``maths.copy_into``, not slice assignment)."""
    for i in range(rows.shape[0]):
        if join:
            rows[i, 0] = bi[i]
            copy_into(rows[i, 1:], Q[i])
        else:
            bi[i] = rows[i, 0]
            copy_into(Q[i], rows[i, 1:])


# Apart from ``sgd_epoch``, whose loop this repeats: routed through here,
# plain SGD took 1.33 times as long (MovieLens-100k, 100 factors), the
# per-rating gather of an item's row from its own part costing that much.
@jit()
def sgd_epoch_features(users, items, ratings, weights, order, theta, n_items, user_table, lr, reg,
                       logistic, n_neg, seen_indptr, seen_items, seed, F_indptr, F_indices, F_data, feat,
                       G_indptr, G_indices, G_data, ufeat, ctxs, combos, E):
    """``sgd_epoch`` with item features F and user attributes G (either may
    have no entries): ``theta``'s item rows are own parts plus F·feat and
    ``user_table``'s rows own parts plus G·ufeat; the epoch steps the own
    parts, ``feat`` and ``ufeat``, then writes the rows back. With context,
    ``ctxs`` holds each rating's code (empty without), ``combos`` each
    code's context features and E their parameters, stepped too (a
    rating's negatives share its context). Returns the weighted loss seen."""
    d = user_table.shape[1]
    mu = theta[0]
    _, bi, Q = unpack(theta, n_items, d)
    rows = np.empty((n_items, d))
    _join_rows(bi, Q, rows, True)
    own = np.empty((n_items, d))
    _own_parts(rows, F_indptr, F_indices, F_data, feat, -1.0, own)
    u_own = np.empty_like(user_table)
    _own_parts(user_table, G_indptr, G_indices, G_data, ufeat, -1.0, u_own)
    row = np.empty(d)
    prow = np.empty(d)
    orow = np.empty(d)
    total = 0.0
    for n in range(order.shape[0]):
        j = order[n]
        u = users[j]
        c = ctxs[j] if ctxs.shape[0] else -1
        total += _sgd_update_features(mu, own, F_indptr, F_indices, F_data, feat, u_own, G_indptr, G_indices,
                                      G_data, ufeat, combos, E, c, u, items[j], ratings[j], weights[j], lr, reg,
                                      logistic, row, prow, orow)
        if n_neg > 0:
            seen = seen_items[seen_indptr[u] : seen_indptr[u + 1]]
            n_free = n_items - seen.shape[0]
            if n_free <= 0:
                continue
            state = _task_state(seed, j)
            for _ in range(n_neg):
                state, r = _randbelow(state, n_free)
                total += _sgd_update_features(mu, own, F_indptr, F_indices, F_data, feat, u_own, G_indptr,
                                              G_indices, G_data, ufeat, combos, E, c, u, _kth_unseen(seen, r), 0.0,
                                              weights[j], lr, reg, logistic, row, prow, orow)
    _own_parts(own, F_indptr, F_indices, F_data, feat, 1.0, rows)
    _join_rows(bi, Q, rows, False)
    _own_parts(u_own, G_indptr, G_indices, G_data, ufeat, 1.0, user_table)
    return total
