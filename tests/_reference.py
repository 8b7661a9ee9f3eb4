"""Slow NumPy references for the Numba kernels, written from the notation in
``sklearn_metarec._kernels`` without sharing any of its code."""

import numpy as np


def split_theta(theta, n_items, d):
    k = d - 1
    mu = theta[0]
    phi0 = theta[1 : 1 + d]
    bi = theta[1 + d : 1 + d + n_items]
    Q = theta[1 + d + n_items :].reshape(n_items, k)
    return mu, phi0, bi, Q


def loss_value(s, y, loss):
    """Per-rating loss at scores s: squared error, or the cross-entropy of σ(s)."""
    if loss == "logistic":
        return np.logaddexp(0.0, s) - y * s
    return (s - y) ** 2


def loss_slope(s, y, loss):
    """∂ℓ/∂s."""
    if loss == "logistic":
        return 1.0 / (1.0 + np.exp(-s)) - y
    return 2 * (s - y)


def terms(items, ratings, weights, mu, bi, Q, loss, n_neg=0):
    """A segment's loss terms as (features X, offsets c, targets, weights,
    per-term loss, item pairs): each term's score is c + X φ. BPR's terms
    are (positive, negative) pairs, the segment holding its n_pos positives
    and then n_neg negatives per positive; each pair's score is
    r̂_p − r̂_n, its target 1 under the cross-entropy, its weight its
    negative's."""
    if loss != "bpr":
        X = np.hstack([np.ones((len(items), 1)), Q[items]])
        return X, mu + bi[items], ratings, weights, loss, (items,)
    n_pos = len(items) // (1 + n_neg)
    pos, neg = np.repeat(items[:n_pos], n_neg), items[n_pos:]
    X = np.hstack([np.zeros((len(neg), 1)), Q[pos] - Q[neg]])
    return X, bi[pos] - bi[neg], np.ones(len(neg)), weights[n_pos:], "logistic", (pos, neg)


def adapt(phi0, items, ratings, weights, mu, bi, Q, alpha, lam, n_steps, loss="squared", kappa=0.0, n_neg=0):
    """Gradient descent on the support loss Σ w ℓ / (W + κ) + λ‖φ‖² over its
    terms; items, ratings: arrays of one user."""
    X, c, y, w, per_term, _ = terms(items, ratings, weights, mu, bi, Q, loss, n_neg)
    phi = phi0.copy()
    W = w.sum()
    for _ in range(n_steps):
        g = 2 * lam * phi
        if W > 0:
            g = g + X.T @ (w * loss_slope(c + X @ phi, y, per_term)) / (W + kappa)
        phi = phi - alpha * g
    return phi


def task_loss(theta, n_items, d, task, alpha, lam, reg, n_steps, loss="squared", kappa=0.0, n_neg=0):
    """Query loss after adaptation: the meta-objective of one task, given as
    (items, targets, weights, support length) with the support first. Each
    item of a term pays its L2 penalty with the term's weight."""
    items, ratings, weights, n_sup = task
    mu, phi0, bi, Q = split_theta(theta, n_items, d)
    phi = adapt(phi0, items[:n_sup], ratings[:n_sup], weights[:n_sup], mu, bi, Q, alpha, lam, n_steps,
                loss, kappa, n_neg)
    X, c, y, w, per_term, ends = terms(items[n_sup:], ratings[n_sup:], weights[n_sup:], mu, bi, Q, loss, n_neg)
    if w.sum() <= 0:
        return 0.0
    # reg: one L2 strength, or one per item.
    reg = np.broadcast_to(np.asarray(reg, dtype=float), n_items)
    pen = sum(reg[it] * (bi[it] ** 2 + (Q[it] ** 2).sum(axis=1)) for it in ends)
    return float(np.sum(w * (loss_value(c + X @ phi, y, per_term) + pen)) / w.sum())


def query_weight(task, loss="squared", n_neg=0):
    """W_Q: the total weight of a task's query terms."""
    items, _, weights, n_sup = task
    w = weights[n_sup:]
    return w[len(w) // (1 + n_neg):].sum() if loss == "bpr" else w.sum()


def batch_loss(theta, n_items, d, tasks, alpha, lam, reg, n_steps, loss="squared", kappa=0.0,
               per_rating=False, n_neg=0):
    """Mean of ``task_loss`` over ``tasks``, weighted by each task's query
    weight when ``per_rating``."""
    losses = [task_loss(theta, n_items, d, t, alpha, lam, reg, n_steps, loss, kappa, n_neg) for t in tasks]
    w = [query_weight(t, loss, n_neg) for t in tasks] if per_rating else None
    return np.average(losses, weights=w)


def support_loss(theta, n_items, d, task, lam, loss="squared", kappa=0.0):
    """L_S at φ₀: Σ_S w ℓ / (W_S + κ) + λ‖φ₀‖²."""
    items, ratings, weights, n_sup = task
    as_query = (items[:n_sup], ratings[:n_sup], weights[:n_sup], 0)
    phi0 = theta[1 : 1 + d]
    W = weights[:n_sup].sum()
    mean = task_loss(theta, n_items, d, as_query, None, 0.0, 0.0, 0, loss)
    return (mean * W / (W + kappa) if W > 0 else 0.0) + lam * phi0 @ phi0


def central_difference(f, x, eps=1e-6):
    """∇f at x by central differences, one coordinate at a time."""
    grad = np.empty_like(x)
    for a in range(x.size):
        xp = x.copy()
        xm = x.copy()
        xp[a] += eps
        xm[a] -= eps
        grad[a] = (f(xp) - f(xm)) / (2 * eps)
    return grad


def query_only(task):
    """The query part of ``task`` as a task with an empty support set."""
    items, ratings, weights, n_sup = task
    return items[n_sup:], ratings[n_sup:], weights[n_sup:], 0


def first_order_grad(theta, n_items, d, tasks, alpha, lam, reg, n_steps, loss="squared", kappa=0.0,
                     per_rating=False, n_neg=0):
    """FOMAML by its definition: the gradient of the query loss with respect to
    (μ, φ, items) evaluated at the adapted φ_T, with φ_T treated as φ₀."""
    grad = np.zeros_like(theta)
    w = np.array([query_weight(t, loss, n_neg) for t in tasks]) if per_rating else np.ones(len(tasks))
    for task, w_task in zip(tasks, w / w.sum()):
        items, ratings, weights, n_sup = task
        mu, phi0, bi, Q = split_theta(theta, n_items, d)
        phi_T = adapt(phi0, items[:n_sup], ratings[:n_sup], weights[:n_sup], mu, bi, Q, alpha, lam,
                      n_steps, loss, kappa, n_neg)
        at = theta.copy()
        at[1 : 1 + d] = phi_T
        q = query_only(task)
        grad += w_task * central_difference(lambda t: task_loss(t, n_items, d, q, alpha, lam, reg, 0, loss, 0.0, n_neg),
                                            at)
    return grad


def predict(user_codes, item_codes, user_table, theta, n_items, d):
    mu, phi0, bi, Q = split_theta(theta, n_items, d)
    out = np.empty(len(user_codes))
    for n, (u, i) in enumerate(zip(user_codes, item_codes)):
        phi = user_table[u] if u >= 0 else phi0
        out[n] = mu + phi[0] + ((bi[i] + Q[i] @ phi[1:]) if i >= 0 else 0.0)
    return out


def sgd_epoch(users, items, ratings, weights, order, theta, n_items, user_table, lr, reg):
    """Surprise's SVD update, rating by rating."""
    d = user_table.shape[1]
    mu, _, bi, Q = split_theta(theta, n_items, d)
    for j in order:
        u, i, w = users[j], items[j], weights[j]
        err = ratings[j] - (mu + bi[i] + user_table[u, 0] + Q[i] @ user_table[u, 1:])
        bu_old, bi_old = user_table[u, 0], bi[i]
        pu, qi = user_table[u, 1:].copy(), Q[i].copy()
        user_table[u, 0] = bu_old + lr * w * (err - reg * bu_old)
        bi[i] = bi_old + lr * w * (err - reg * bi_old)
        user_table[u, 1:] = pu + lr * w * (err * qi - reg * pu)
        Q[i] = qi + lr * w * (err * pu - reg * qi)


def ridge_user(items, ratings, weights, theta, n_items, d, reg):
    mu, _, bi, Q = split_theta(theta, n_items, d)
    X = np.hstack([np.ones((len(items), 1)), Q[items]])
    t = ratings - mu - bi[items]
    A = X.T @ (weights[:, None] * X) + reg * weights.sum() * np.eye(d)
    return np.linalg.solve(A, X.T @ (weights * t))


def adam_rows(theta, grad, m, v_head, v_items, step, lr, n_items, d, rows, row_steps):
    """Lazy Adam with one second moment per block of item parameters, on
    copies: returns (theta, m, v_head, v_items, row_steps)."""
    theta, m, v_head, v_items, row_steps = (a.copy() for a in (theta, m, v_head, v_items, row_steps))
    k = d - 1
    c2 = 1 - 0.999**step
    head = np.arange(1 + d)
    m[head] = 0.9 * m[head] + 0.1 * grad[head]
    v_head[:] = 0.999 * v_head + 0.001 * grad[head] ** 2
    theta[head] -= lr * (m[head] / (1 - 0.9**step)) / (np.sqrt(v_head / c2) + 1e-8)
    b = 1 + d + rows
    q = (1 + d + n_items + rows[:, None] * k + np.arange(k)).ravel()
    v_items[0] = 0.999 * v_items[0] + 0.001 * np.mean(grad[b] ** 2)
    v_items[1] = 0.999 * v_items[1] + 0.001 * np.mean(grad[q] ** 2)
    row_steps[rows] += 1
    c1 = 1 - 0.9 ** row_steps[rows]
    for idx, v, c in ((b, v_items[0], c1), (q, v_items[1], np.repeat(c1, k))):
        m[idx] = 0.9 * m[idx] + 0.1 * grad[idx]
        theta[idx] -= lr * np.clip(m[idx] / c / (np.sqrt(v / c2) + 1e-8), -1.0, 1.0)
    return theta, m, v_head, v_items, row_steps
