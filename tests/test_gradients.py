"""Analytic meta-gradients against central finite differences, in float64."""

import numpy as np
import pytest

from sklearn_metarec import _kernels as K

from . import _reference as R


def assert_grad_close(analytic, numeric, max_tol=1e-6, mean_tol=1e-7):
    """The one comparison every gradient goes through: relative to the
    largest component, both the worst and the mean error must be small."""
    scale = max(np.abs(numeric).max(), 1e-12)
    err = np.abs(analytic - numeric) / scale
    assert err.max() < max_tol, f"max relative error {err.max():.3g}"
    assert err.mean() < mean_tol, f"mean relative error {err.mean():.3g}"


def random_problem(seed, n_users, n_items, k, loss="squared"):
    rng = np.random.default_rng(seed)
    d = k + 1
    counts = rng.integers(2, 9, n_users)
    indptr = np.r_[0, np.cumsum(counts)].astype(np.int64)
    n = indptr[-1]
    items = rng.integers(0, n_items, n).astype(np.int64)
    if loss != "squared":
        ratings = rng.integers(0, 2, n).astype(float)
    else:
        ratings = rng.normal(3.0, 1.0, n)
    weights = rng.uniform(0.5, 2.0, n)
    theta = rng.normal(0.0, 0.5, 1 + d + n_items + n_items * k)
    alpha = rng.uniform(0.05, 0.3, d)
    sup_lo = np.ones(n_users, dtype=np.int64)
    sup_hi = counts - 1
    return dict(
        indptr=indptr, items=items, ratings=ratings, weights=weights, theta=theta,
        alpha=alpha, sup_lo=sup_lo, sup_hi=sup_hi, n_items=n_items, d=d,
    )


def task_offsets(p, users, n_neg=0):
    return np.r_[0, np.cumsum(np.diff(p["indptr"])[users] * (1 + n_neg))].astype(np.int64)


def kernel_grad(p, users, seed, lam, reg, n_steps, first_order, hyper=False, loss="squared", n_neg=0,
                kappa=0.0, per_rating=False):
    """Loss, meta-gradient (and hypergradient) from the kernel, with the
    tasks it drew."""
    offsets = task_offsets(p, users, n_neg)
    grad = np.zeros_like(p["theta"])
    grad_hyper = np.empty(p["d"] + 1)
    value, _, _ = K.meta_batch_grad(
        p["indptr"], p["items"], p["ratings"], p["weights"], users, p["sup_lo"], p["sup_hi"],
        seed, offsets, p["theta"], p["n_items"], p["alpha"],
        np.broadcast_to(np.asarray(reg, dtype=float), p["n_items"]).copy(),
        K.inner_settings(lam=lam, kappa=kappa, n_steps=n_steps, logistic=loss != "squared", n_neg=n_neg,
                         pairwise=loss == "bpr"),
        K.outer_settings(first_order=first_order, hyper=hyper, per_rating=per_rating),
        grad, grad_hyper, np.empty(p["n_items"], dtype=np.int64), np.empty(p["n_items"]),
        np.empty((0, p["d"])), np.empty((0, p["d"])), *K.no_context(p["d"]),
    )
    tasks = tasks_of(p, users, seed, n_neg)
    if hyper:
        return value, grad, grad_hyper, tasks
    return value, grad, tasks


def tasks_of(p, users, seed, n_neg=0):
    """The tasks the kernels draw, as (items, targets, weights, support length)."""
    offsets = task_offsets(p, users, n_neg)
    t_items = np.empty(offsets[-1], dtype=np.int64)
    t_y = np.empty(offsets[-1])
    t_w = np.empty(offsets[-1])
    n_sup = np.empty(len(users), dtype=np.int64)
    K.sample_tasks(p["indptr"], p["items"], p["ratings"], p["weights"], users, p["sup_lo"],
                   p["sup_hi"], seed, p["n_items"], n_neg, offsets, t_items, t_y, t_w, n_sup)
    return [
        (t_items[lo:hi], t_y[lo:hi], t_w[lo:hi], n_sup[b])
        for b, (lo, hi) in enumerate(zip(offsets[:-1], offsets[1:]))
    ]


SIZES = [(3, 5, 2), (4, 7, 3), (6, 9, 5)]


# (loss, negatives sampled per rating): the squared loss, the cross-entropy
# on 0/1 labels, the cross-entropy on positives with sampled negatives, and
# BPR on (positive, sampled negative) pairs.
LOSSES = [("squared", 0), ("logistic", 0), ("logistic", 2), ("bpr", 1), ("bpr", 3)]

# (κ, per_rating): MAML's original objective (mean support loss, every user
# counts once) and the package's default (a support pseudo-count, every
# query rating counts once).
OBJECTIVES = [(0.0, False), (1.5, True)]


def problem_for(seed, n_users, n_items, k, loss, n_neg):
    p = random_problem(seed, n_users, n_items, k, loss)
    if n_neg:
        p["ratings"][:] = 1.0  # implicit feedback: positives only
    return p


@pytest.mark.parametrize("kappa, per_rating", OBJECTIVES)
@pytest.mark.parametrize("loss, n_neg", LOSSES)
@pytest.mark.parametrize("n_users, n_items, k", SIZES)
@pytest.mark.parametrize("n_steps", [1, 2, 3])
def test_second_order_meta_gradient_matches_finite_differences(n_users, n_items, k, n_steps, loss, n_neg,
                                                               kappa, per_rating):
    p = problem_for(n_steps * 100 + k, n_users, n_items, k, loss, n_neg)
    users = np.arange(n_users, dtype=np.int64)
    # A strength per item, as item_shrinkage gives: β_i = reg + γ / n_i.
    lam, reg = 0.05, 0.1 + 0.3 * np.random.default_rng(n_items).uniform(size=n_items)
    obj = dict(kappa=kappa, per_rating=per_rating)
    value, grad, tasks = kernel_grad(p, users, 7, lam, reg, n_steps, False, loss=loss, n_neg=n_neg, **obj)

    def objective(theta):
        return R.batch_loss(theta, p["n_items"], p["d"], tasks, p["alpha"], lam, reg, n_steps, loss, **obj,
                            n_neg=n_neg)

    assert value == pytest.approx(objective(p["theta"]), rel=1e-12)
    assert_grad_close(grad, R.central_difference(objective, p["theta"]))


@pytest.mark.parametrize("kappa, per_rating", OBJECTIVES)
@pytest.mark.parametrize("loss, n_neg", LOSSES)
@pytest.mark.parametrize("n_users, n_items, k", SIZES)
@pytest.mark.parametrize("n_steps", [1, 2, 3])
def test_first_order_is_query_gradient_at_adapted_parameters(n_users, n_items, k, n_steps, loss, n_neg,
                                                             kappa, per_rating):
    # learn2learn's identity: FOMAML's gradient is the plain query gradient
    # at φ_T, computed here by finite differences of the query loss alone.
    p = problem_for(n_steps * 10 + k, n_users, n_items, k, loss, n_neg)
    users = np.arange(n_users, dtype=np.int64)
    obj = dict(kappa=kappa, per_rating=per_rating)
    _, grad, tasks = kernel_grad(p, users, 3, 0.05, 0.1, n_steps, True, loss=loss, n_neg=n_neg, **obj)
    reference = R.first_order_grad(p["theta"], p["n_items"], p["d"], tasks, p["alpha"], 0.05, 0.1,
                                   n_steps, loss, **obj, n_neg=n_neg)
    assert_grad_close(grad, reference)


@pytest.mark.parametrize("loss, n_neg", [("squared", 0), ("logistic", 0), ("bpr", 2)])
def test_second_order_terms_matter(loss, n_neg):
    p = problem_for(0, 5, 8, 4, loss, n_neg)
    users = np.arange(5, dtype=np.int64)
    _, exact, _ = kernel_grad(p, users, 1, 0.05, 0.1, 3, False, loss=loss, n_neg=n_neg)
    _, first, _ = kernel_grad(p, users, 1, 0.05, 0.1, 3, True, loss=loss, n_neg=n_neg)
    rel = np.linalg.norm(exact - first) / np.linalg.norm(exact)
    assert rel > 1e-2


@pytest.mark.parametrize("first_order", [False, True])
def test_bpr_ignores_the_global_mean_and_the_user_bias(first_order):
    # A pair's score r̂_p − r̂_n cancels μ and b_u exactly, so their
    # meta-gradients are exactly zero, while the items' are not.
    p = problem_for(2, 5, 8, 3, "bpr", 2)
    users = np.arange(5, dtype=np.int64)
    _, grad, _ = kernel_grad(p, users, 1, 0.05, 0.1, 3, first_order, loss="bpr", n_neg=2)
    assert grad[0] == 0.0 and grad[1] == 0.0
    assert np.abs(grad[2 : 1 + p["d"]]).max() > 0.0 and np.abs(grad[1 + p["d"]:]).max() > 0.0


def test_zero_shot_and_zero_weight_tasks():
    # A user with one rating has an empty support set (φ_T = φ₀ minus the
    # penalty's pull); zero-weight ratings drop out of both losses.
    p = random_problem(5, 4, 6, 3)
    p["sup_lo"][:] = 0
    p["sup_hi"][0] = 0
    p["weights"][p["indptr"][1] : p["indptr"][1] + 2] = 0.0
    users = np.arange(4, dtype=np.int64)
    _, grad, tasks = kernel_grad(p, users, 11, 0.05, 0.1, 2, False)
    assert tasks[0][3] == 0

    def objective(theta):
        return R.batch_loss(theta, p["n_items"], p["d"], tasks, p["alpha"], 0.05, 0.1, 2)

    assert_grad_close(grad, R.central_difference(objective, p["theta"]))


# -- Meta-SGD: hypergradients with respect to α and the inner L2 strength λ --


@pytest.mark.parametrize("kappa, per_rating", OBJECTIVES)
@pytest.mark.parametrize("loss, n_neg", LOSSES)
@pytest.mark.parametrize("n_users, n_items, k", SIZES)
@pytest.mark.parametrize("n_steps", [1, 2, 3])
def test_hypergradients_match_finite_differences(n_users, n_items, k, n_steps, loss, n_neg, kappa, per_rating):
    p = problem_for(n_steps * 1000 + k, n_users, n_items, k, loss, n_neg)
    users = np.arange(n_users, dtype=np.int64)
    lam, reg = 0.05, 0.1
    kw = dict(loss=loss, n_neg=n_neg, kappa=kappa, per_rating=per_rating)
    _, grad, grad_hyper, tasks = kernel_grad(p, users, 5, lam, reg, n_steps, False, hyper=True, **kw)
    _, plain, _ = kernel_grad(p, users, 5, lam, reg, n_steps, False, **kw)
    np.testing.assert_array_equal(grad, plain)  # the hypergradient leaves the rest alone

    def objective(hyper):
        return R.batch_loss(p["theta"], p["n_items"], p["d"], tasks, hyper[:-1], hyper[-1], reg, n_steps, loss,
                            kappa, per_rating, n_neg)

    assert_grad_close(grad_hyper, R.central_difference(objective, np.r_[p["alpha"], lam]))


@pytest.mark.parametrize("n_steps", [1, 2, 3])
def test_first_order_hypergradients_hold_the_query_gradient_fixed(n_steps):
    # First-order Meta-SGD drops the Hessian terms: every step sees v_T, the
    # query gradient at φ_T, so ∂/∂α = −Σ_t v_T ⊙ g(φ_t) and
    # ∂/∂λ = −2 Σ_t (α ⊙ v_T)ᵀ φ_t. Checked against that definition in NumPy.
    p = random_problem(n_steps, 4, 6, 3)
    users = np.arange(4, dtype=np.int64)
    lam, reg = 0.05, 0.1
    _, grad, grad_hyper, tasks = kernel_grad(p, users, 9, lam, reg, n_steps, True, hyper=True)
    _, fomaml, _ = kernel_grad(p, users, 9, lam, reg, n_steps, True)
    np.testing.assert_array_equal(grad, fomaml)
    mu, phi0, bi, Q = R.split_theta(p["theta"], p["n_items"], p["d"])
    expected = np.zeros(p["d"] + 1)
    for task in tasks:
        items, ratings, weights, n_sup = task
        phis = [phi0.copy()]
        for _ in range(n_steps):
            phis.append(R.adapt(phis[-1], items[:n_sup], ratings[:n_sup], weights[:n_sup], mu, bi, Q,
                                p["alpha"], lam, 1))
        at = p["theta"].copy()
        at[1 : 1 + p["d"]] = phis[-1]
        q = R.query_only(task)
        v_T = R.central_difference(
            lambda t: R.task_loss(t, p["n_items"], p["d"], q, p["alpha"], lam, reg, 0), at)[1 : 1 + p["d"]]
        for phi_t, phi_next in zip(phis[:-1], phis[1:]):
            g_t = (phi_t - phi_next) / p["alpha"]
            expected[:-1] -= v_T * g_t
            expected[-1] -= 2 * (p["alpha"] * v_T) @ phi_t
    assert_grad_close(grad_hyper, expected / len(tasks))
