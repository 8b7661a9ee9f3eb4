import functools

import numpy as np
import pytest

from sklearn_metarec import FactorizationRecommender

from . import _reference as R
from ._contract import RecommenderContract, small_data


class TestFactorizationContract(RecommenderContract):
    estimator = functools.partial(FactorizationRecommender, n_factors=4, n_epochs=5, random_state=0)


def test_defaults_are_surprise_svd_defaults():
    params = FactorizationRecommender().get_params()
    assert (params["n_factors"], params["n_epochs"], params["lr"], params["reg"], params["init_std"]) == (
        100, 20, 0.005, 0.02, 0.1
    )


def test_fold_in_is_the_exact_ridge_solution():
    X, y = small_data()
    model = FactorizationRecommender(n_factors=4, random_state=0).fit(X, y)
    new_items = X[:4, 1]
    ratings = np.array([5.0, 1.0, 4.0, 2.0])
    model.fold_in(np.column_stack([np.full(4, 5000), new_items]), ratings)
    row = np.flatnonzero(model.user_ids_ == 5000)[0]
    codes = np.searchsorted(model.item_ids_, new_items)
    expected = R.ridge_user(codes, ratings, np.ones(4), model._theta, len(model.item_ids_), 5, model.reg)
    np.testing.assert_allclose(model._users[row], expected, rtol=1e-9)


def test_fit_equals_first_partial_fit():
    X, y = small_data()
    a = FactorizationRecommender(n_factors=4, n_epochs=1, random_state=2).fit(X, y)
    b = FactorizationRecommender(n_factors=4, n_epochs=1, random_state=2).partial_fit(X, y)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


def test_training_reduces_error():
    X, y = small_data()
    short = FactorizationRecommender(n_factors=4, n_epochs=1, lr=0.02, random_state=0).fit(X, y)
    long = FactorizationRecommender(n_factors=4, n_epochs=30, lr=0.02, random_state=0).fit(X, y)
    assert np.mean((long.predict(X) - y) ** 2) < 0.8 * np.mean((short.predict(X) - y) ** 2)


def test_divergence_is_reported():
    X, y = small_data()
    with pytest.raises(ValueError, match="smaller lr"):
        FactorizationRecommender(n_factors=4, lr=1e3, n_epochs=20, random_state=0).fit(X, y * 1e3)


def test_fold_in_does_not_draw_from_the_training_random_stream():
    X, y = small_data()
    folded = FactorizationRecommender(n_factors=4, n_epochs=2, random_state=0).fit(X, y)
    plain = FactorizationRecommender(n_factors=4, n_epochs=2, random_state=0).fit(X, y)
    folded.fold_in([[5000, X[0, 1]], [5001, X[1, 1]]], [4.0, 2.0])
    state_folded, state_plain = folded._rng.get_state(), plain._rng.get_state()
    np.testing.assert_array_equal(state_folded[1], state_plain[1])
    assert state_folded[2] == state_plain[2]
