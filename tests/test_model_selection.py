"""Splitters: every row lands once, test users give exactly their support
to training, time is respected, and scikit-learn takes them as cv=."""

import numpy as np
import pytest
from sklearn.model_selection import cross_validate

from sklearn_metarec import FactorizationRecommender
from sklearn_metarec.datasets import make_ratings
from sklearn_metarec.model_selection import (
    ColdStartSplit,
    TemporalSplit,
    UserHoldoutSplit,
    cold_start_split,
)


@pytest.fixture(scope="module")
def data():
    X, y = make_ratings(n_users=90, n_items=50, mean_ratings=15, min_ratings=3, random_state=0)
    rng = np.random.default_rng(0)
    times = rng.integers(0, 1000, len(y))  # not in row order
    return X, y, times


def _check_partition(train, test, n):
    assert len(np.intersect1d(train, test)) == 0
    np.testing.assert_array_equal(np.sort(np.r_[train, test]), np.arange(n))


@pytest.mark.parametrize("n_support", [0, 3, 5])
def test_cold_start_folds_partition_the_eligible_users(data, n_support):
    X, y, _ = data
    cv = ColdStartSplit(n_splits=4, n_support=n_support, min_query=2, random_state=0)
    counts = dict(zip(*np.unique(X[:, 0], return_counts=True)))
    eligible = {u for u, c in counts.items() if c >= n_support + 2}
    tested = []
    for train, test in cv.split(X):
        _check_partition(train, test, len(X))
        test_users = np.unique(X[test, 0])
        tested.extend(test_users)
        for u in test_users:
            assert np.sum(X[train, 0] == u) == n_support
            assert np.sum(X[test, 0] == u) == counts[u] - n_support
    assert sorted(tested) == sorted(eligible)  # each eligible user tested exactly once
    assert cv.get_n_splits() == 4


def test_cold_start_earliest_support_uses_the_time_column(data):
    X, y, times = data
    Xt = np.column_stack([X, times])
    cv = ColdStartSplit(n_splits=3, n_support=4, support="earliest", time_column=2, random_state=0)
    for train, test in cv.split(Xt):
        for u in np.unique(X[test, 0])[:10]:
            support_times = times[train][X[train, 0] == u]
            assert support_times.max() <= times[test][X[test, 0] == u].min()


def test_cold_start_is_seeded_and_works_on_frames(data):
    pd = pytest.importorskip("pandas")
    X, y, times = data
    a = [t.tolist() for _, t in ColdStartSplit(3, n_support=4, random_state=1).split(X)]
    b = [t.tolist() for _, t in ColdStartSplit(3, n_support=4, random_state=1).split(X)]
    c = [t.tolist() for _, t in ColdStartSplit(3, n_support=4, random_state=2).split(X)]
    assert a == b and a != c
    frame = pd.DataFrame({"user": [f"u{u}" for u in X[:, 0]], "item": X[:, 1], "when": times})
    cv = ColdStartSplit(3, n_support=4, support="earliest", time_column="when", random_state=0)
    for train, test in cv.split(frame):
        _check_partition(train, test, len(frame))


def test_cold_start_shuffle_mode_draws_test_users(data):
    X, y, _ = data
    cv = ColdStartSplit(n_splits=5, n_support=3, test_size=0.2, random_state=0)
    sizes = [len(np.unique(X[test, 0])) for _, test in cv.split(X)]
    n_eligible = sum(c >= 4 for c in np.unique(X[:, 0], return_counts=True)[1])
    assert sizes == [int(np.ceil(0.2 * n_eligible))] * 5
    assert [len(np.unique(X[t, 0])) for _, t in ColdStartSplit(2, n_support=3, test_size=7).split(X)] == [7, 7]


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_support": 500}, "No user has enough ratings"),
        ({"n_splits": 1}, "n_splits must be"),
        ({"support": "latest"}, "support must be"),
        ({"test_size": 1.5}, "test_size"),
        ({"min_query": 0}, "min_query"),
        ({"n_splits": 1000, "n_support": 0}, "greater than the number of eligible"),
    ],
)
def test_cold_start_rejects_bad_settings(data, params, match):
    X, y, _ = data
    with pytest.raises(ValueError, match=match):
        next(ColdStartSplit(**params).split(X))


def test_cold_start_split_function(data):
    X, y, _ = data
    w = np.arange(len(y), dtype=float)
    X_tr, X_te, y_tr, y_te, w_tr, w_te = cold_start_split(X, y, w, n_support=4, test_size=0.3, random_state=0)
    assert len(X_tr) + len(X_te) == len(X)
    assert len(y_te) == len(X_te) == len(w_te)
    train, test = next(ColdStartSplit(1, n_support=4, test_size=0.3, random_state=0).split(X))
    np.testing.assert_array_equal(w_te, w[test])
    for u in np.unique(X_te[:, 0]):
        assert np.sum(X_tr[:, 0] == u) == 4
    with pytest.raises(ValueError, match="n_support"):
        cold_start_split(X, y, n_support=-1)


@pytest.mark.parametrize("test_size", [0.3, 2])
def test_user_holdout_keeps_every_user_in_training(data, test_size):
    X, y, times = data
    cv = UserHoldoutSplit(test_size=test_size, min_train=2, random_state=0)
    train, test = next(cv.split(X))
    _check_partition(train, test, len(X))
    counts = dict(zip(*np.unique(X[:, 0], return_counts=True)))
    for u, c in counts.items():
        n_test = np.sum(X[test, 0] == u)
        expected = int(np.floor(test_size * c)) if isinstance(test_size, float) else test_size
        assert n_test == max(0, min(expected, c - 2))


def test_user_holdout_latest_holds_out_the_latest(data):
    X, y, times = data
    Xt = np.column_stack([X, times])
    train, test = next(UserHoldoutSplit(test_size=2, order="latest", time_column=2).split(Xt))
    for u in np.unique(X[test, 0])[:15]:
        assert times[test][X[test, 0] == u].min() >= times[train][X[train, 0] == u].max()


def test_temporal_split_trains_on_the_past(data):
    X, y, times = data
    Xt = np.column_stack([X, times])
    splits = list(TemporalSplit(n_splits=3, test_size=0.1).split(Xt))
    assert len(splits) == 3
    previous_end = None
    for train, test in splits:
        assert times[train].max() < times[test].min()  # ties go to the test side
        if previous_end is not None:
            assert times[test].min() >= previous_end
        previous_end = times[test].max()
    # Consecutive blocks: each split's training set holds the previous test block.
    assert set(splits[0][1]) <= set(splits[1][0])
    with pytest.raises(ValueError, match="do not fit"):
        next(TemporalSplit(n_splits=20, test_size=0.1).split(Xt))


def test_splitters_as_cv_in_scikit_learn(data):
    X, y, times = data
    Xt = np.column_stack([X, times])
    model = FactorizationRecommender(n_factors=3, n_epochs=3, random_state=0)
    for cv in (ColdStartSplit(3, n_support=4, random_state=0), UserHoldoutSplit(2, random_state=0),
               TemporalSplit(2, test_size=0.1)):
        result = cross_validate(model, Xt, y, cv=cv, scoring="neg_root_mean_squared_error",
                                error_score="raise")
        assert np.isfinite(result["test_score"]).all()
