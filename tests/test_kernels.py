"""Each Numba kernel against its slow NumPy reference."""

import numpy as np
import pytest

from sklearn_metarec import _kernels as K
from sklearn_metarec._kernels import _jit, sampling
from sklearn_metarec._kernels.batches import _item_groups

from . import _reference as R
from .test_gradients import random_problem, tasks_of


@pytest.fixture
def problem():
    return random_problem(42, 6, 9, 4)


def test_sample_tasks_are_partitions_within_bounds(problem):
    p = problem
    users = np.array([4, 0, 2], dtype=np.int64)
    tasks = tasks_of(p, users, 99)
    for (items, ratings, weights, n_sup), u in zip(tasks, users):
        rows = slice(p["indptr"][u], p["indptr"][u + 1])
        # The task is a permutation of the user's ratings: compare as sorted rows.
        got = sorted(zip(items, ratings, weights))
        assert got == sorted(zip(p["items"][rows], p["ratings"][rows], p["weights"][rows]))
        assert p["sup_lo"][u] <= n_sup <= p["sup_hi"][u]

    # A task depends on (seed, user) only, not on the batch it is drawn in.
    alone = tasks_of(p, users[1:2], 99)[0]
    for a, b in zip(alone, tasks[1]):
        np.testing.assert_array_equal(a, b)

    # Another seed gives other tasks.
    other = tasks_of(p, users, 100)
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(tasks, other))


def test_sampled_negatives_are_unrated_items_with_the_positives_weights(problem):
    p = dict(problem)
    p["ratings"] = np.ones_like(p["ratings"])
    users = np.arange(6, dtype=np.int64)
    n_neg = 3
    for seed in range(5):
        for (items, y, w, n_sup), u in zip(tasks_of(p, users, seed, n_neg), users):
            rows = slice(p["indptr"][u], p["indptr"][u + 1])
            rated = set(p["items"][rows])
            n = rows.stop - rows.start
            s = n_sup // (1 + n_neg)
            assert len(items) == n * (1 + n_neg)
            # Layout: support positives, their negatives, query positives, theirs.
            positive = np.zeros(len(items), dtype=bool)
            positive[:s] = True
            positive[n_sup : n_sup + n - s] = True
            np.testing.assert_array_equal(y, positive.astype(float))
            negatives = items[~positive]
            assert not rated & set(negatives)
            assert ((negatives >= 0) & (negatives < p["n_items"])).all()
            # Each positive's negatives carry its weight.
            np.testing.assert_array_equal(w[s:n_sup], np.repeat(w[:s], n_neg))
            np.testing.assert_array_equal(w[n_sup + n - s :], np.repeat(w[n_sup : n_sup + n - s], n_neg))


def test_negatives_are_uniform_over_unrated_items():
    # One user who rated items {1, 4, 5} of 8: negatives come from {0, 2, 3, 6, 7}.
    p = dict(indptr=np.array([0, 3]), items=np.array([5, 1, 4]), ratings=np.ones(3), weights=np.ones(3),
             sup_lo=np.array([1]), sup_hi=np.array([2]), n_items=8)
    counts = np.zeros(8)
    for seed in range(400):
        items, y, _, _ = tasks_of(p, np.array([0]), seed, 2)[0]
        np.add.at(counts, items[y == 0], 1)
    assert counts[[1, 4, 5]].sum() == 0
    share = counts[[0, 2, 3, 6, 7]] / counts.sum()
    assert np.abs(share - 0.2).max() < 0.03


def test_kth_unseen_item():
    seen = np.array([0, 1, 3, 7])
    unseen = [2, 4, 5, 6, 8, 9]
    assert [sampling._kth_unseen(seen, r) for r in range(6)] == unseen


@pytest.mark.parametrize("n", [0, 1, 2, 7, 64])
def test_sorted_unique_is_numpys(n):
    rng = np.random.default_rng(n)
    for high in (3, 1000):
        values = rng.integers(0, high, size=n)
        before = values.copy()
        np.testing.assert_array_equal(sampling._sorted_unique(values), np.unique(values))
        np.testing.assert_array_equal(values, before)


def test_copy_into_copies_a_row():
    rows = np.zeros((2, 3))
    K.maths.copy_into(rows[1], np.arange(3.0))
    np.testing.assert_array_equal(rows, [[0, 0, 0], [0, 1, 2]])


def test_support_sizes_are_uniform_over_the_range():
    p = dict(indptr=np.array([0, 30]), items=np.arange(30), ratings=np.ones(30), weights=np.ones(30),
             sup_lo=np.array([2]), sup_hi=np.array([6]), n_items=30)
    sizes = np.array([tasks_of(p, np.array([0]), seed)[0][3] for seed in range(2000)])
    counts = np.bincount(sizes, minlength=7)[2:7]
    assert counts.min() > 300 and counts.max() < 500


@pytest.mark.parametrize("loss, n_neg", [("squared", 0), ("logistic", 0), ("logistic", 2)])
def test_adapt_users_matches_reference(problem, loss, n_neg):
    p = dict(problem)
    if loss == "logistic":
        p["ratings"] = np.ones_like(p["ratings"]) if n_neg else (p["ratings"] > 3.0).astype(float)
    users = np.arange(6, dtype=np.int64)

    def adapt(order, keys):
        out = np.empty((len(order), p["d"]))
        K.adapt_users(p["indptr"], p["items"], p["ratings"], p["weights"], order, keys, 5, p["theta"],
                      p["n_items"], p["alpha"],
                      K.inner_settings(lam=0.05, kappa=1.5, n_steps=4, logistic=loss == "logistic", n_neg=n_neg),
                      out, np.empty((0, p["d"])), *K.no_context(p["d"])[:2])
        return out

    out = adapt(users, users)
    mu, phi0, bi, Q = R.split_theta(p["theta"], p["n_items"], p["d"])
    counts = np.diff(p["indptr"])
    # Adaptation uses every rating (and its negatives): the task whose
    # support is all of them, drawn with the same seed and key.
    tasks = tasks_of({**p, "sup_lo": counts, "sup_hi": counts}, users, 5, n_neg)
    for u, (items, ratings, weights, n_sup) in zip(users, tasks):
        assert n_sup == len(items) == counts[u] * (1 + n_neg)
        expected = R.adapt(phi0, items, ratings, weights, mu, bi, Q, p["alpha"], 0.05, 4, loss, kappa=1.5)
        np.testing.assert_allclose(out[u], expected, rtol=1e-12, atol=1e-12)
    # Negatives are keyed by the key passed, not by the position in the batch.
    backwards = users[::-1].copy()
    np.testing.assert_array_equal(adapt(backwards, backwards)[::-1], out)
    if n_neg:
        assert not np.allclose(adapt(users, users + 100), out)


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
    none = np.zeros(0, dtype=np.int64)
    K.sgd_epoch(users, p["items"], p["ratings"], p["weights"], order, theta, p["n_items"], table, 0.01, 0.02,
                False, 0, np.zeros(7, dtype=np.int64), none, 0)
    R.sgd_epoch(users, p["items"], p["ratings"], p["weights"], order, theta_ref, p["n_items"], table_ref, 0.01, 0.02)
    np.testing.assert_allclose(table, table_ref, rtol=1e-12)
    np.testing.assert_allclose(theta, theta_ref, rtol=1e-12)
    assert not np.allclose(theta, p["theta"])


def test_ridge_users_matches_reference(problem):
    p = problem
    users = np.array([1, 3], dtype=np.int64)
    out = np.empty((2, p["d"]))
    K.ridge_users(p["indptr"], p["items"], p["ratings"], p["weights"], users, p["theta"], p["n_items"],
                  p["d"], 0.1, np.empty((0, p["d"])), *K.no_context(p["d"])[:2], out)
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


def test_lazy_adam_matches_its_reference_and_moves_the_given_rows_only():
    rng = np.random.default_rng(4)
    n_items, d = 6, 3
    size = 1 + d + n_items * d
    theta, grad = rng.normal(size=size), rng.normal(size=size)
    m = rng.normal(size=size) * 0.1
    v_head, v_items = rng.uniform(size=1 + d) * 0.1, rng.uniform(size=2) * 0.1
    rows = np.array([4, 1, 0, 5], dtype=np.int64)  # the last entry is past n_rows
    row_steps = np.array([0, 3, 0, 0, 7, 2], dtype=np.int64)
    expected = R.adam_rows(theta, grad, m, v_head, v_items, 5, 0.01, n_items, d, rows[:3], row_steps)
    K.adam_rows(theta, grad, m, v_head, v_items, 5, 0.01, n_items, d, rows, 3, row_steps)
    for got, want in zip((theta, m, v_head, v_items, row_steps), expected):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(row_steps, [1, 4, 0, 0, 8, 2])


def test_lazy_adam_caps_each_step_at_lr():
    # An entry far above its block's RMS steps lr, not a multiple of it.
    n_items, d = 3, 2
    size = 1 + d + n_items * d
    theta, grad = np.zeros(size), np.zeros(size)
    grad[1 + d:1 + d + n_items] = [1e-3, 1e-3, 10.0]
    m, v_head, v_items = np.zeros(size), np.zeros(1 + d), np.zeros(2)
    K.adam_rows(theta, grad, m, v_head, v_items, 1, 0.01, n_items, d, np.arange(3, dtype=np.int64), 3,
                np.zeros(3, dtype=np.int64))
    assert theta[1 + d + 2] == -0.01
    assert -0.01 < theta[1 + d] < 0


def test_lazy_adam_steps_follow_each_items_gradient():
    # One second moment per block: an item with ten times the gradient (say,
    # ten times the ratings in the batch) moves ten times as far, as in SGD,
    # where per-entry Adam would move both by about lr. (Two busy items set
    # the block's scale; their own steps are capped at lr.)
    n_items, d = 4, 2
    size = 1 + d + n_items * d
    theta, grad = np.zeros(size), np.zeros(size)
    grad[1 + d:] = [0.001, 0.01, 0.1, 0.1] * 2  # biases, then factors
    m, v_head, v_items = np.zeros(size), np.zeros(1 + d), np.zeros(2)
    row_steps = np.zeros(n_items, dtype=np.int64)
    K.adam_rows(theta, grad, m, v_head, v_items, 1, 0.01, n_items, d, np.arange(4, dtype=np.int64), 4, row_steps)
    b = theta[1 + d : 1 + d + n_items]
    np.testing.assert_allclose(b[1] / b[0], 10.0, rtol=1e-9)
    np.testing.assert_allclose(theta[1 + d + n_items + 1] / theta[1 + d + n_items], 10.0, rtol=1e-9)
    # At the first step the corrected moments are the gradient and the
    # block's mean square.
    rms = np.sqrt(np.mean(grad[1 + d : 1 + d + n_items] ** 2))
    np.testing.assert_allclose(b[0], -0.01 * 0.001 / rms, rtol=1e-6)
    np.testing.assert_array_equal(b[2:], -0.01)
    assert row_steps.tolist() == [1, 1, 1, 1]


def test_meta_gradient_writes_only_the_batch_rows(problem):
    # Entries of items outside the batch keep whatever the buffer held; with a
    # zeroed buffer the result is the dense gradient, which the gradient
    # tests check. The touched rows are exactly the batch's items.
    p = problem
    users = np.array([0, 2], dtype=np.int64)
    offsets = np.r_[0, np.cumsum(np.diff(p["indptr"])[users])].astype(np.int64)
    rows = np.empty(p["n_items"], dtype=np.int64)

    def grad_from(start):
        grad = start.copy()
        loss, n, _ = K.meta_batch_grad(p["indptr"], p["items"], p["ratings"], p["weights"], users, p["sup_lo"],
                                    p["sup_hi"], 3, offsets, p["theta"], p["n_items"], p["alpha"],
                                    np.full(p["n_items"], 0.1),
                                    K.inner_settings(lam=0.05, kappa=2.0, n_steps=2, logistic=False, n_neg=0),
                                    K.outer_settings(first_order=False, hyper=False, per_rating=True),
                                    grad, np.empty(p["d"] + 1), rows, np.empty(p["n_items"]),
                                    np.empty((0, p["d"])), np.empty((0, p["d"])), *K.no_context(p["d"]))
        return grad, n

    dense, n = grad_from(np.zeros_like(p["theta"]))
    stale, n_again = grad_from(np.full_like(p["theta"], 7.0))
    batch_items = np.unique(np.concatenate([p["items"][p["indptr"][u] : p["indptr"][u + 1]] for u in users]))
    assert n == n_again and np.array_equal(np.sort(rows[:n]), batch_items)
    d, k = p["d"], p["d"] - 1
    mask = np.zeros(len(dense), dtype=bool)
    mask[: 1 + d] = True
    for i in batch_items:
        mask[1 + d + i] = True
        mask[1 + d + p["n_items"] + i * k : 1 + d + p["n_items"] + (i + 1) * k] = True
    np.testing.assert_array_equal(stale[mask], dense[mask])
    assert (stale[~mask] == 7.0).all() and (dense[~mask] == 0.0).all() and (~mask).any()


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
    assert _jit.jit()(twice)(21) == 42


def test_fold_ins_shrink_towards_their_centers(problem):
    # With user attributes the penalty is reg ||phi - c||^2: the ridge solves
    # (X'WX + reg w I) phi = X'W t + reg w c, and the logistic Newton
    # solution is the minimizer of the centred objective.
    from scipy.optimize import minimize

    p = problem
    users = np.array([1, 3], dtype=np.int64)
    centers = np.random.default_rng(5).normal(0, 0.5, (2, p["d"]))
    mu, _, bi, Q = R.split_theta(p["theta"], p["n_items"], p["d"])
    out = np.empty((2, p["d"]))
    K.ridge_users(p["indptr"], p["items"], p["ratings"], p["weights"], users, p["theta"], p["n_items"],
                  p["d"], 0.1, centers, *K.no_context(p["d"])[:2], out)
    for b, u in enumerate(users):
        s = slice(p["indptr"][u], p["indptr"][u + 1])
        items, w = p["items"][s], p["weights"][s]
        X = np.hstack([np.ones((len(items), 1)), Q[items]])
        A = X.T @ (w[:, None] * X) + 0.1 * w.sum() * np.eye(p["d"])
        rhs = X.T @ (w * (p["ratings"][s] - mu - bi[items])) + 0.1 * w.sum() * centers[b]
        np.testing.assert_allclose(out[b], np.linalg.solve(A, rhs), rtol=1e-9)
    ones = np.ones_like(p["ratings"])
    K.logistic_users(p["indptr"], p["items"], ones, p["weights"], users, users, 3, p["theta"], p["n_items"],
                     p["d"], 0.1, 0, centers, *K.no_context(p["d"])[:2], out)
    for b, u in enumerate(users):
        s = slice(p["indptr"][u], p["indptr"][u + 1])
        items, w = p["items"][s], p["weights"][s]
        X = np.hstack([np.ones((len(items), 1)), Q[items]])

        def objective(phi):
            return (np.sum(w * R.loss_value(mu + bi[items] + X @ phi, ones[s], "logistic"))
                    + 0.1 * w.sum() * (phi - centers[b]) @ (phi - centers[b]))

        best = minimize(objective, centers[b], method="BFGS", options={"gtol": 1e-10}).x
        assert objective(out[b]) <= objective(best) + 1e-10
        np.testing.assert_allclose(out[b], best, rtol=1e-5, atol=1e-6)


def test_logistic_users_minimize_the_regularized_cross_entropy(problem):
    from scipy.optimize import minimize

    p = dict(problem)
    p["ratings"] = np.ones_like(p["ratings"])
    users = np.array([1, 4], dtype=np.int64)
    out = np.empty((2, p["d"]))
    K.logistic_users(p["indptr"], p["items"], p["ratings"], p["weights"], users, users, 3, p["theta"],
                     p["n_items"], p["d"], 0.1, 2, np.empty((0, p["d"])), *K.no_context(p["d"])[:2], out)
    counts = np.diff(p["indptr"])
    tasks = tasks_of({**p, "sup_lo": counts, "sup_hi": counts}, users, 3, 2)
    mu, _, bi, Q = R.split_theta(p["theta"], p["n_items"], p["d"])
    for b, (items, y, w, _) in enumerate(tasks):
        X = np.hstack([np.ones((len(items), 1)), Q[items]])

        def objective(phi):
            s = mu + bi[items] + X @ phi
            return np.sum(w * R.loss_value(s, y, "logistic")) + 0.1 * w.sum() * phi @ phi

        best = minimize(objective, np.zeros(p["d"]), method="BFGS", options={"gtol": 1e-10}).x
        np.testing.assert_allclose(out[b], best, rtol=1e-5, atol=1e-6)
        assert objective(out[b]) <= objective(best) + 1e-10


def test_logistic_sgd_epoch_steps_along_label_minus_probability():
    # One positive and its sampled negatives: each step moves along
    # err = y − σ(r̂), Surprise's update with the cross-entropy's residual.
    users, items = np.array([0]), np.array([1])
    theta = np.zeros(1 + 3 + 4 + 4 * 2)
    theta[-8:] = np.arange(8) * 0.1
    table = np.array([[0.0, 0.3, -0.2]])
    seen_indptr, seen_items = np.array([0, 1]), np.array([1])
    ref_theta, ref_table = theta.copy(), table.copy()
    K.sgd_epoch(users, items, np.ones(1), np.ones(1), np.array([0]), theta, 4, table, 0.5, 0.01,
                True, 3, seen_indptr, seen_items, 9)
    # Replay with the same negatives, drawn as the kernel draws them.
    state = sampling._task_state(9, 0)
    negatives = []
    for _ in range(3):
        # The state is a uint64 inside the kernels; a Python int would be
        # typed int64 below 2**63 and mix into float arithmetic.
        state, r = sampling._randbelow(np.uint64(state), 3)
        negatives.append(sampling._kth_unseen(seen_items, r))
    assert 1 not in negatives
    mu, _, bi, Q = R.split_theta(ref_theta, 4, 3)
    for i, y in [(1, 1.0), *[(n, 0.0) for n in negatives]]:
        phi = ref_table[0]
        err = y - 1 / (1 + np.exp(-(mu + bi[i] + phi[0] + Q[i] @ phi[1:])))
        b_old, q_old, p_old = bi[i], Q[i].copy(), phi[1:].copy()
        phi[0] += 0.5 * (err - 0.01 * phi[0])
        bi[i] = b_old + 0.5 * (err - 0.01 * b_old)
        phi[1:] = p_old + 0.5 * (err * q_old - 0.01 * p_old)
        Q[i] = q_old + 0.5 * (err * p_old - 0.01 * q_old)
    np.testing.assert_allclose(table, ref_table, rtol=1e-12)
    np.testing.assert_allclose(theta, ref_theta, rtol=1e-12)


def test_kernel_cache_is_keyed_on_every_kernel_module(tmp_path, monkeypatch):
    # Numba checks only a cached function's own file; a helper edited in
    # another module must move the whole cache to a fresh folder.
    import shutil
    from pathlib import Path

    from numba.core import config

    copy = tmp_path / "kernels"
    shutil.copytree(Path(_jit.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(_jit, "__file__", str(copy / "_jit.py"))
    monkeypatch.setattr(config, "CACHE_DIR", str(tmp_path / "cache"))
    before = _jit._cache_dir()
    assert Path(before).parent == tmp_path / "cache" and Path(before).is_dir()
    assert _jit._cache_dir() == before
    maths = copy / "maths.py"
    maths.write_text(maths.read_text() + "\n# an edit\n")
    assert _jit._cache_dir() != before


def test_kernels_cache_in_the_hashed_folder():
    if _jit._CACHE_DIR is None:
        pytest.skip("no writable cache folder here")
    cache = K.meta_batch_grad.stats.cache_path
    assert cache.startswith(_jit._CACHE_DIR)


def test_settings_records_are_keyword_only_and_typed():
    # A kernel's scalars travel in records built by keyword, so two swapped
    # settings cannot compile silently.
    with pytest.raises(TypeError):
        K.inner_settings(0.1, 2.0, 3, False, 0)
    inner = K.inner_settings(lam=0, kappa=2, n_steps=3.0, logistic=0, n_neg=np.int32(4))
    assert inner == (0.0, 2.0, 3, False, 4, False)
    assert [type(v) for v in inner] == [float, float, int, bool, int, bool]
    # BPR is the logistic loss of (positive, negative) pairs: it needs both.
    with pytest.raises(ValueError, match="pairwise"):
        K.inner_settings(lam=0, kappa=2, n_steps=3, logistic=True, n_neg=0, pairwise=True)
    with pytest.raises(ValueError, match="pairwise"):
        K.inner_settings(lam=0, kappa=2, n_steps=3, logistic=False, n_neg=2, pairwise=True)
    outer = K.outer_settings(first_order=0, hyper=1, per_rating=1)
    assert [type(v) for v in outer] == [bool, bool, bool]


@pytest.mark.parametrize("n_items", [3, 50, 10**12])
def test_item_groups_list_each_items_entries_in_entry_order(n_items):
    # The grouping behind the item-row reduction: every kept entry once, under
    # its item's row, in entry order, whatever the item codes (colliding
    # hashes, codes far beyond the batch's size).
    rng = np.random.RandomState(n_items % 97)
    lengths = rng.randint(0, 30, size=9)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    ends = offsets[:-1] + rng.randint(0, lengths + 1)
    codes = rng.choice(n_items, size=min(n_items, 40), replace=False) if n_items < 10**6 else \
        rng.randint(0, n_items, size=40, dtype=np.int64)
    t_items = codes[rng.randint(0, len(codes), size=offsets[-1])].astype(np.int64)
    rows = np.empty(offsets[-1] + 1, dtype=np.int64)
    entries, starts, task_of, n = _item_groups(t_items, offsets, ends, rows)
    kept = np.concatenate([np.arange(a, b) for a, b in zip(offsets[:-1], ends)]).astype(np.int64)
    assert sorted(rows[:n]) == sorted(set(t_items[kept]))
    for r in range(n):
        np.testing.assert_array_equal(entries[starts[r] : starts[r + 1]], kept[t_items[kept] == rows[r]])
    np.testing.assert_array_equal(task_of, np.repeat(np.arange(len(lengths)), lengths))


@pytest.mark.parametrize("d", [1, 4, 33])
def test_spd_solve_matches_numpy(d):
    # The baselines' exact fold-in solves with it (Cholesky, in place).
    from sklearn_metarec._kernels.serving import _solve_spd

    rng = np.random.RandomState(d)
    M = rng.randn(d + 3, d)
    A = M.T @ M + 0.1 * np.eye(d)
    b = rng.randn(d)
    out = np.empty(d)
    _solve_spd(A.copy(), b, out)
    np.testing.assert_allclose(out, np.linalg.solve(A, b), rtol=1e-10, atol=1e-12)
