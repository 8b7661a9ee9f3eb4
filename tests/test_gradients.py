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


def random_problem(seed, n_users, n_items, k):
    rng = np.random.default_rng(seed)
    d = k + 1
    counts = rng.integers(2, 9, n_users)
    indptr = np.r_[0, np.cumsum(counts)].astype(np.int64)
    n = indptr[-1]
    items = rng.integers(0, n_items, n).astype(np.int64)
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


def kernel_grad(p, users, seed, lam, reg, n_steps, first_order, hyper=False):
    offsets = np.r_[0, np.cumsum(np.diff(p["indptr"])[users])].astype(np.int64)
    grad = np.empty_like(p["theta"])
    grad_hyper = np.empty(p["d"] + 1)
    loss = K.meta_batch_grad(
        p["indptr"], p["items"], p["ratings"], p["weights"], users, p["sup_lo"], p["sup_hi"],
        seed, offsets, p["theta"], p["n_items"], p["alpha"], lam, reg, n_steps, first_order,
        hyper, grad, grad_hyper,
    )
    if hyper:
        return loss, grad, grad_hyper, tasks_of(p, users, seed, offsets)
    return loss, grad, tasks_of(p, users, seed, offsets)


def tasks_of(p, users, seed, offsets):
    perm = np.empty(offsets[-1], dtype=np.int64)
    n_sup = np.empty(len(users), dtype=np.int64)
    K.sample_tasks(p["indptr"], users, p["sup_lo"], p["sup_hi"], seed, offsets, perm, n_sup)
    return [
        (perm[offsets[b] : offsets[b] + n_sup[b]], perm[offsets[b] + n_sup[b] : offsets[b + 1]])
        for b in range(len(users))
    ]


SIZES = [(3, 5, 2), (4, 7, 3), (6, 9, 5)]


@pytest.mark.parametrize("n_users, n_items, k", SIZES)
@pytest.mark.parametrize("n_steps", [1, 2, 3])
def test_second_order_meta_gradient_matches_finite_differences(n_users, n_items, k, n_steps):
    p = random_problem(n_steps * 100 + k, n_users, n_items, k)
    users = np.arange(n_users, dtype=np.int64)
    lam, reg = 0.05, 0.1
    loss, grad, tasks = kernel_grad(p, users, 7, lam, reg, n_steps, False)

    def objective(theta):
        return R.batch_loss(
            theta, p["n_items"], p["d"], tasks, p["items"], p["ratings"], p["weights"],
            p["alpha"], lam, reg, n_steps,
        )

    assert loss == pytest.approx(objective(p["theta"]), rel=1e-12)
    assert_grad_close(grad, R.central_difference(objective, p["theta"]))


@pytest.mark.parametrize("n_users, n_items, k", SIZES)
@pytest.mark.parametrize("n_steps", [1, 2, 3])
def test_first_order_is_query_gradient_at_adapted_parameters(n_users, n_items, k, n_steps):
    # learn2learn's identity: FOMAML's gradient is the plain query gradient
    # at φ_T, computed here by finite differences of the query loss alone.
    p = random_problem(n_steps * 10 + k, n_users, n_items, k)
    users = np.arange(n_users, dtype=np.int64)
    _, grad, tasks = kernel_grad(p, users, 3, 0.05, 0.1, n_steps, True)
    reference = R.first_order_grad(
        p["theta"], p["n_items"], p["d"], tasks, p["items"], p["ratings"], p["weights"],
        p["alpha"], 0.05, 0.1, n_steps,
    )
    assert_grad_close(grad, reference)


def test_second_order_terms_matter():
    p = random_problem(0, 5, 8, 4)
    users = np.arange(5, dtype=np.int64)
    _, exact, _ = kernel_grad(p, users, 1, 0.05, 0.1, 3, False)
    _, first, _ = kernel_grad(p, users, 1, 0.05, 0.1, 3, True)
    rel = np.linalg.norm(exact - first) / np.linalg.norm(exact)
    assert rel > 1e-2


def test_zero_shot_and_zero_weight_tasks():
    # A user with one rating has an empty support set (φ_T = φ₀ minus the
    # penalty's pull); zero-weight ratings drop out of both losses.
    p = random_problem(5, 4, 6, 3)
    p["sup_lo"][:] = 0
    p["sup_hi"][0] = 0
    p["weights"][p["indptr"][1] : p["indptr"][1] + 2] = 0.0
    users = np.arange(4, dtype=np.int64)
    _, grad, tasks = kernel_grad(p, users, 11, 0.05, 0.1, 2, False)
    assert len(tasks[0][0]) == 0

    def objective(theta):
        return R.batch_loss(
            theta, p["n_items"], p["d"], tasks, p["items"], p["ratings"], p["weights"],
            p["alpha"], 0.05, 0.1, 2,
        )

    assert_grad_close(grad, R.central_difference(objective, p["theta"]))


# -- Meta-SGD: hypergradients with respect to α and the inner L2 strength λ --


@pytest.mark.parametrize("n_users, n_items, k", SIZES)
@pytest.mark.parametrize("n_steps", [1, 2, 3])
def test_hypergradients_match_finite_differences(n_users, n_items, k, n_steps):
    p = random_problem(n_steps * 1000 + k, n_users, n_items, k)
    users = np.arange(n_users, dtype=np.int64)
    lam, reg = 0.05, 0.1
    loss, grad, grad_hyper, tasks = kernel_grad(p, users, 5, lam, reg, n_steps, False, hyper=True)
    _, plain, _ = kernel_grad(p, users, 5, lam, reg, n_steps, False)
    np.testing.assert_array_equal(grad, plain)  # the hypergradient leaves the rest alone

    def objective(hyper):
        return R.batch_loss(
            p["theta"], p["n_items"], p["d"], tasks, p["items"], p["ratings"], p["weights"],
            hyper[:-1], hyper[-1], reg, n_steps,
        )

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
    for s, q in tasks:
        phis = [phi0.copy()]
        for _ in range(n_steps):
            phis.append(R.adapt(phis[-1], p["items"][s], p["ratings"][s], p["weights"][s], mu, bi, Q,
                                p["alpha"], lam, 1))
        at = p["theta"].copy()
        at[1 : 1 + p["d"]] = phis[-1]
        v_T = R.central_difference(
            lambda t: R.task_loss(t, p["n_items"], p["d"], [], q, p["items"], p["ratings"],
                                  p["weights"], p["alpha"], lam, reg, 0), at)[1 : 1 + p["d"]]
        for phi_t, phi_next in zip(phis[:-1], phis[1:]):
            g_t = (phi_t - phi_next) / p["alpha"]
            expected[:-1] -= v_T * g_t
            expected[-1] -= 2 * (p["alpha"] * v_T) @ phi_t
    assert_grad_close(grad_hyper, expected / len(tasks))
