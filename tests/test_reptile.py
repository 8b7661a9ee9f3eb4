"""Reptile: its update against a direct NumPy re-implementation, and the
recommender contract."""

import functools

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
                                    *no_priors(p["d"]))
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
                    inner, step, delta, rows, priors, d_priors)
    for b in range(4):
        theta = p["theta"].copy()
        theta[1 : 1 + d] = priors[b]
        alone = np.zeros_like(theta)
        K.reptile_batch(*args, users[b : b + 1], p["sup_lo"], p["sup_hi"], 4,
                        np.array([0, offsets[b + 1] - offsets[b]]), theta, p["n_items"], p["alpha"], inner, step,
                        alone, rows, *no_priors(d))
        np.testing.assert_allclose(d_priors[b], alone[1 : 1 + d], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(delta[1 : 1 + d], d_priors.mean(axis=0), rtol=1e-12)


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
                    delta, np.empty(len(model.item_ids_), dtype=np.int64), *no_priors(4))
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
