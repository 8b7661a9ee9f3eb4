"""Reptile: its update against a direct NumPy re-implementation, and the
recommender contract."""

import functools
import pickle

import numpy as np
import pytest

from sklearn_metarec import ReptileFactorizationRecommender
from sklearn_metarec import _kernels as K

from . import _reference as R
from ._contract import RecommenderContract, small_data
from .test_gradients import random_problem, task_offsets, tasks_of


class TestReptileContract(RecommenderContract):
    estimator = functools.partial(ReptileFactorizationRecommender, n_factors=4, n_epochs=3, random_state=0)


def reptile_reference(p, tasks, lam, kappa, item_lr, n_steps, adapt_items, loss="squared"):
    """Reptile's direction, written plainly: adapt φ and per-rating copies of
    the support items by gradient descent on the support loss, then average
    φ's change over tasks and each item's over its copies."""
    mu, phi0, bi, Q = R.split_theta(p["theta"], p["n_items"], p["d"])
    delta = np.zeros_like(p["theta"])
    _, dphi0, dbi, dQ = R.split_theta(delta, p["n_items"], p["d"])
    copies = np.zeros(p["n_items"])
    for items, ratings, weights, n_sup in tasks:
        it, r, w = items[:n_sup], ratings[:n_sup], weights[:n_sup]
        phi, b, q = phi0.copy(), bi[it].copy(), Q[it].copy()
        for _ in range(n_steps):
            c = w * R.loss_slope(mu + b + phi[0] + q @ phi[1:], r, loss) / (w.sum() + kappa)
            g_phi = 2 * lam * phi + np.r_[c.sum(), q.T @ c]
            g_b, g_q = c, np.outer(c, phi[1:])
            phi = phi - p["alpha"] * g_phi
            if adapt_items:
                b, q = b - item_lr * g_b, q - item_lr * g_q
        dphi0 += (phi - phi0) / len(tasks)
        np.add.at(dbi, it, b - bi[it])
        np.add.at(dQ, it, q - Q[it])
        np.add.at(copies, it, 1.0)
    seen = copies > 0
    dbi[seen] /= copies[seen]
    dQ[seen] /= copies[seen, None]
    return delta


def no_priors(d):
    """The kernel's (priors, d_priors) when every task starts from φ₀."""
    return np.empty((0, d)), np.empty((0, d))


def no_context(d):
    """The kernel's (ctxs, off, d_off, n_copies) for ratings without context."""
    return (*K.no_context(d), np.empty(0, dtype=np.int64))


@pytest.mark.parametrize("loss, n_neg", [("squared", 0), ("logistic", 0), ("logistic", 2)])
@pytest.mark.parametrize("n_steps", [1, 3])
@pytest.mark.parametrize("adapt_items", [True, False])
def test_update_matches_numpy(n_steps, adapt_items, loss, n_neg):
    p = random_problem(n_steps, 6, 5 + 4 * n_neg, 3, loss)  # few items: copies of one item across tasks
    if n_neg:
        p["ratings"][:] = 1.0
    users = np.arange(6, dtype=np.int64)
    offsets = task_offsets(p, users, n_neg)
    # A buffer of 7s: the entries the batch does not write must keep them.
    delta = np.full_like(p["theta"], 7.0)
    rows = np.empty(p["n_items"], dtype=np.int64)
    value, n_rows = K.reptile_batch(p["indptr"], p["items"], p["ratings"], p["weights"], users, p["sup_lo"],
                                    p["sup_hi"], 4, offsets, p["theta"], p["n_items"], p["alpha"],
                                    K.inner_settings(lam=0.05, kappa=1.5, n_steps=n_steps,
                                                     logistic=loss == "logistic", n_neg=n_neg),
                                    K.reptile_settings(item_lr=0.2, adapt_items=adapt_items), delta, rows,
                                    *no_priors(p["d"]), *no_context(p["d"]))
    tasks = tasks_of(p, users, 4, n_neg)
    support_items = np.unique(np.concatenate([items[:n_sup] for items, _, _, n_sup in tasks]))
    assert np.array_equal(np.sort(rows[:n_rows]), support_items)
    d, k = p["d"], p["d"] - 1
    written = np.zeros(len(delta), dtype=bool)
    written[: 1 + d] = True
    written[1 + d + support_items] = True
    for i in support_items:
        written[1 + d + p["n_items"] + i * k : 1 + d + p["n_items"] + (i + 1) * k] = True
    assert (delta[~written] == 7.0).all()
    delta[~written] = 0.0
    expected = reptile_reference(p, tasks, 0.05, 1.5, 0.2, n_steps, adapt_items, loss)
    np.testing.assert_allclose(delta, expected, rtol=1e-10, atol=1e-13)
    assert np.abs(delta[1 + p["d"] :]).max() > 0 if adapt_items else not delta[1 + p["d"] :].any()
    support_losses = [R.support_loss(p["theta"], p["n_items"], p["d"], t, 0.05, loss, 1.5) for t in tasks]
    assert value == pytest.approx(np.mean(support_losses), rel=1e-12)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_tasks_with_their_own_priors_adapt_from_them(loss):
    # Task b from prior P_b is the task alone with φ₀ = P_b: its direction is
    # that run's φ₀ direction, and the batch's φ₀ direction is their mean.
    p = random_problem(2, 4, 6, 3, loss)
    users = np.arange(4, dtype=np.int64)
    offsets = task_offsets(p, users, 0)
    d = p["d"]
    priors = p["theta"][1 : 1 + d] + np.random.default_rng(0).normal(0, 0.3, (4, d))
    d_priors = np.empty((4, d))
    inner = K.inner_settings(lam=0.05, kappa=1.5, n_steps=2, logistic=loss == "logistic", n_neg=0)
    step = K.reptile_settings(item_lr=0.2, adapt_items=True)
    delta = np.zeros_like(p["theta"])
    rows = np.empty(p["n_items"], dtype=np.int64)
    args = (p["indptr"], p["items"], p["ratings"], p["weights"])
    K.reptile_batch(*args, users, p["sup_lo"], p["sup_hi"], 4, offsets, p["theta"], p["n_items"], p["alpha"],
                    inner, step, delta, rows, priors, d_priors, *no_context(d))
    for b in range(4):
        theta = p["theta"].copy()
        theta[1 : 1 + d] = priors[b]
        alone = np.zeros_like(theta)
        K.reptile_batch(*args, users[b : b + 1], p["sup_lo"], p["sup_hi"], 4,
                        np.array([0, offsets[b + 1] - offsets[b]]), theta, p["n_items"], p["alpha"], inner, step,
                        alone, rows, *no_priors(d), *no_context(d))
        np.testing.assert_allclose(d_priors[b], alone[1 : 1 + d], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(delta[1 : 1 + d], d_priors.mean(axis=0), rtol=1e-12)


@pytest.mark.parametrize("loss, n_neg", [("squared", 0), ("logistic", 2)])
def test_context_copies_adapt_with_the_items(loss, n_neg):
    # Every rating in one context (b_c, e_c): each support entry adds
    # b_c + (phi + q_i).e_c and carries a copy of (b_c, e_c) that adapts with
    # the item copies; the context's direction is the mean over its copies.
    p = random_problem(3, 5, 6 + 4 * n_neg, 3, loss)
    if n_neg:
        p["ratings"][:] = 1.0
    d, lam, kappa, item_lr, n_steps = p["d"], 0.05, 1.5, 0.2, 2
    users = np.arange(5, dtype=np.int64)
    offsets = task_offsets(p, users, n_neg)
    off0 = np.random.default_rng(1).normal(0, 0.4, (1, d))
    ctxs = np.zeros(len(p["items"]), dtype=np.int64)
    delta, d_off, n_copies = np.zeros_like(p["theta"]), np.empty((1, d)), np.empty(1, dtype=np.int64)
    K.reptile_batch(p["indptr"], p["items"], p["ratings"], p["weights"], users, p["sup_lo"], p["sup_hi"], 4,
                    offsets, p["theta"], p["n_items"], p["alpha"],
                    K.inner_settings(lam=lam, kappa=kappa, n_steps=n_steps, logistic=loss == "logistic", n_neg=n_neg),
                    K.reptile_settings(item_lr=item_lr, adapt_items=True), delta,
                    np.empty(p["n_items"], dtype=np.int64), *no_priors(d), ctxs, off0, d_off, n_copies)
    mu, phi0, bi, Q = R.split_theta(p["theta"], p["n_items"], d)
    expected = np.zeros_like(p["theta"])
    _, dphi0, dbi, dQ = R.split_theta(expected, p["n_items"], d)
    copies, d_ctx, total = np.zeros(p["n_items"]), np.zeros(d), 0
    tasks = tasks_of(p, users, 4, n_neg)
    for items, ratings, weights, n_sup in tasks:
        it, r, w = items[:n_sup], ratings[:n_sup], weights[:n_sup]
        phi, b, q, lc = phi0.copy(), bi[it].copy(), Q[it].copy(), np.tile(off0[0], (n_sup, 1))
        for _ in range(n_steps):
            score = mu + b + phi[0] + q @ phi[1:] + lc[:, 0] + np.sum((phi[1:] + q) * lc[:, 1:], axis=1)
            c = w * R.loss_slope(score, r, loss) / (w.sum() + kappa)
            g_phi = 2 * lam * phi + np.r_[c.sum(), (q + lc[:, 1:]).T @ c]
            g_b, g_q = c, c[:, None] * (phi[1:] + lc[:, 1:])
            g_c = np.column_stack([c, c[:, None] * (phi[1:] + q)])
            phi = phi - p["alpha"] * g_phi
            b, q, lc = b - item_lr * g_b, q - item_lr * g_q, lc - item_lr * g_c
        dphi0 += (phi - phi0) / len(tasks)
        np.add.at(dbi, it, b - bi[it])
        np.add.at(dQ, it, q - Q[it])
        np.add.at(copies, it, 1.0)
        d_ctx += (lc - off0[0]).sum(axis=0)
        total += n_sup
    seen = copies > 0
    dbi[seen] /= copies[seen]
    dQ[seen] /= copies[seen, None]
    np.testing.assert_allclose(delta, expected, rtol=1e-10, atol=1e-13)
    assert n_copies[0] == total
    np.testing.assert_allclose(d_off[0], d_ctx / total, rtol=1e-10, atol=1e-13)


def test_reptile_recovers_a_planted_context_effect():
    from .test_context import assert_the_context_is_recovered, planted_context_fits

    rmse, model, genre = planted_context_fits(
        lambda columns: ReptileFactorizationRecommender(context_columns=columns, random_state=0))  # defaults
    assert_the_context_is_recovered(rmse, model, genre)
    probe = np.array([[160, 3, "weekend"], [161, 4, "weekday"]], dtype=object)
    assert np.array_equal(pickle.loads(pickle.dumps(model)).predict(probe), model.predict(probe))


def test_a_meta_step_interpolates_toward_the_adapted_parameters():
    X, y = small_data()
    model = ReptileFactorizationRecommender(n_factors=3, n_epochs=0, meta_batch_size=1000,
                                            random_state=0).fit(X, y)
    start = model._theta.copy()
    indptr, items, ratings, weights = model._log.csr(len(model.user_ids_))
    from sklearn_metarec.maml import support_bounds

    lo, hi = support_bounds(model.n_support, np.diff(indptr))
    order = np.arange(len(model.user_ids_))
    offsets = np.r_[0, np.cumsum(np.diff(indptr))].astype(np.int64)
    delta = np.zeros_like(start)
    K.reptile_batch(indptr, items, ratings, weights, order, lo, hi, 11, offsets, start, len(model.item_ids_),
                    model._alpha(), model._inner_settings(),
                    K.reptile_settings(item_lr=model._inner_lr(), adapt_items=True),
                    delta, np.empty(len(model.item_ids_), dtype=np.int64), *no_priors(4), *no_context(4))
    model.set_params(meta_lr=0.3)._meta_epoch(indptr, items, ratings, weights, order, lo, hi, 11)
    np.testing.assert_allclose(model._theta, start + 0.3 * delta, rtol=1e-12)


def test_meta_lr_must_be_an_interpolation_step():
    X, y = small_data()
    with pytest.raises(ValueError, match="meta_lr"):
        ReptileFactorizationRecommender(meta_lr=1.5).fit(X, y)


def test_golden_values():
    # Guards against unnoticed changes to the algorithm; update on purpose only.
    from sklearn_metarec.datasets import make_ratings

    X, y = make_ratings(n_users=30, n_items=20, mean_ratings=10, min_ratings=3, random_state=1)
    model = ReptileFactorizationRecommender(n_factors=3, n_epochs=2, random_state=0).fit(X, y)
    np.testing.assert_allclose(
        model.predict(X[:4]), [3.841891725995937, 3.7906907736121123, 3.7773871749027554, 3.7195122799571365],
        rtol=1e-7,
    )
