"""Plain SGD epochs of the factorization baseline."""

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
