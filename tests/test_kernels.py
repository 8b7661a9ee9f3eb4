"""Each Numba kernel against its slow NumPy reference."""

import numpy as np
import pytest

from sklearn_metarec import _kernels as K

from . import _reference as R
from .test_gradients import random_problem


@pytest.fixture
def problem():
    return random_problem(42, 6, 9, 4)


def test_sample_tasks_are_partitions_within_bounds(problem):
    p = problem
    users = np.array([4, 0, 2], dtype=np.int64)
    offsets = np.r_[0, np.cumsum(np.diff(p["indptr"])[users])].astype(np.int64)
    perm = np.empty(offsets[-1], dtype=np.int64)
    n_sup = np.empty(3, dtype=np.int64)
    K.sample_tasks(p["indptr"], users, p["sup_lo"], p["sup_hi"], 99, offsets, perm, n_sup)
    for b, u in enumerate(users):
        positions = perm[offsets[b] : offsets[b + 1]]
        assert sorted(positions) == list(range(p["indptr"][u], p["indptr"][u + 1]))
        assert p["sup_lo"][u] <= n_sup[b] <= p["sup_hi"][u]

    # A task depends on (seed, user) only, not on the batch it is drawn in.
    alone = np.empty(offsets[2] - offsets[1], dtype=np.int64)
    n_alone = np.empty(1, dtype=np.int64)
    K.sample_tasks(p["indptr"], users[1:2], p["sup_lo"], p["sup_hi"], 99,
                   np.array([0, len(alone)]), alone, n_alone)
    np.testing.assert_array_equal(alone, perm[offsets[1] : offsets[2]])
    assert n_alone[0] == n_sup[1]

    # Another seed gives other tasks.
    other = np.empty_like(perm)
    K.sample_tasks(p["indptr"], users, p["sup_lo"], p["sup_hi"], 100, offsets, other, n_sup.copy())
    assert not np.array_equal(other, perm)


def test_support_sizes_are_uniform_over_the_range():
    indptr = np.array([0, 30], dtype=np.int64)
    lo, hi = np.array([2]), np.array([6])
    sizes = np.empty(2000, dtype=np.int64)
    perm = np.empty(30, dtype=np.int64)
    n_sup = np.empty(1, dtype=np.int64)
    for seed in range(2000):
        K.sample_tasks(indptr, np.array([0]), lo, hi, seed, np.array([0, 30]), perm, n_sup)
        sizes[seed] = n_sup[0]
    counts = np.bincount(sizes, minlength=7)[2:7]
    assert counts.min() > 300 and counts.max() < 500


def test_adapt_users_matches_reference(problem):
    p = problem
    users = np.arange(6, dtype=np.int64)
    out = np.empty((6, p["d"]))
    K.adapt_users(p["indptr"], p["items"], p["ratings"], p["weights"], users, p["theta"],
                  p["n_items"], p["alpha"], 0.05, 4, out)
    mu, phi0, bi, Q = R.split_theta(p["theta"], p["n_items"], p["d"])
    for u in users:
        s = slice(p["indptr"][u], p["indptr"][u + 1])
        expected = R.adapt(phi0, p["items"][s], p["ratings"][s], p["weights"][s], mu, bi, Q,
                           p["alpha"], 0.05, 4)
        np.testing.assert_allclose(out[u], expected, rtol=1e-12, atol=1e-12)


def test_predict_matches_reference(problem):
    p = problem
    rng = np.random.default_rng(0)
    table = rng.normal(size=(6, p["d"]))
    u = np.array([0, 5, -1, 3, -1], dtype=np.int64)
    i = np.array([1, -1, 2, 8, -1], dtype=np.int64)
    out = np.empty(5)
    K.predict(u, i, table, p["theta"], p["n_items"], p["d"], out)
    np.testing.assert_allclose(out, R.predict(u, i, table, p["theta"], p["n_items"], p["d"]), rtol=1e-13)


def test_sgd_epoch_matches_reference(problem):
    p = problem
    users = np.repeat(np.arange(6), np.diff(p["indptr"]))
    order = np.random.default_rng(1).permutation(len(users))
    table = np.random.default_rng(2).normal(0, 0.1, (6, p["d"]))
    theta, table_ref, theta_ref = p["theta"].copy(), table.copy(), p["theta"].copy()
    K.sgd_epoch(users, p["items"], p["ratings"], p["weights"], order, theta, p["n_items"], table, 0.01, 0.02)
    R.sgd_epoch(users, p["items"], p["ratings"], p["weights"], order, theta_ref, p["n_items"], table_ref, 0.01, 0.02)
    np.testing.assert_allclose(table, table_ref, rtol=1e-12)
    np.testing.assert_allclose(theta, theta_ref, rtol=1e-12)
    assert not np.allclose(theta, p["theta"])


def test_ridge_users_matches_reference(problem):
    p = problem
    users = np.array([1, 3], dtype=np.int64)
    out = np.empty((2, p["d"]))
    K.ridge_users(p["indptr"], p["items"], p["ratings"], p["weights"], users, p["theta"], p["n_items"],
                  p["d"], 0.1, out)
    for b, u in enumerate(users):
        s = slice(p["indptr"][u], p["indptr"][u + 1])
        expected = R.ridge_user(p["items"][s], p["ratings"][s], p["weights"][s], p["theta"], p["n_items"], p["d"], 0.1)
        np.testing.assert_allclose(out[b], expected, rtol=1e-9)


def test_adam_step_matches_formula():
    rng = np.random.default_rng(3)
    theta, grad = rng.normal(size=10), rng.normal(size=10)
    m, v = rng.normal(size=10) * 0.1, rng.uniform(size=10) * 0.1
    m_ref = 0.9 * m + 0.1 * grad
    v_ref = 0.999 * v + 0.001 * grad**2
    theta_ref = theta - 0.01 * (m_ref / (1 - 0.9**3)) / (np.sqrt(v_ref / (1 - 0.999**3)) + 1e-8)
    K.adam_step(theta, grad, m, v, 3, 0.01)
    np.testing.assert_allclose(theta, theta_ref, rtol=1e-13)
    np.testing.assert_allclose(m, m_ref, rtol=1e-13)
    np.testing.assert_allclose(v, v_ref, rtol=1e-13)


def test_jit_falls_back_without_a_cache_directory(monkeypatch):
    # With no usable cache locator Numba raises at decoration time; the
    # package must still import and compile in memory.
    from numba.core import caching

    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])

    def twice(x):
        return 2 * x

    with pytest.raises(RuntimeError):
        import numba

        numba.njit(cache=True)(twice)
    assert K._jit()(twice)(21) == 42
