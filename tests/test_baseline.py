import functools

import numpy as np
import pytest

from sklearn_metarec import EmpiricalBayesRecommender
from sklearn_metarec.datasets import make_ratings

from ._contract import RecommenderContract, small_data


class TestEmpiricalBayesContract(RecommenderContract):
    estimator = functools.partial(EmpiricalBayesRecommender, min_ratings=5)

    def test_same_random_state_same_results(self):
        # A closed-form fit: random_state changes nothing.
        X, y = small_data()
        a = self.estimator(random_state=3).fit(X, y).predict(X)
        b = self.estimator(random_state=4).fit(X, y).predict(X)
        np.testing.assert_array_equal(a, b)


def test_fold_in_is_the_shrunk_mean_towards_the_average_user():
    X, y = small_data()
    model = EmpiricalBayesRecommender(min_ratings=5).fit(X, y)
    items = X[:3, 1]
    ratings = np.array([5.0, 4.0, 5.0])
    model.fold_in(np.column_stack([np.full(3, 900), items]), ratings)
    b_i = model.item_biases_[np.searchsorted(model.item_ids_, items)]
    lam = model.user_shrinkage_
    expected = (np.sum(ratings - model.global_mean_ - b_i) + lam * model.user_bias_prior_) / (3 + lam)
    assert model.user_biases_[-1] == pytest.approx(expected, rel=1e-12)
    assert model.user_factors_.shape == (len(model.user_ids_), 0)


def test_new_users_shrink_towards_light_users_level_not_the_mean_rating():
    # Heavy raters rate low and dominate μ; light users rate high. A new user
    # with one rating must start from the average user's level.
    rng = np.random.default_rng(0)
    rows, ratings = [], []
    for u in range(200):
        heavy = u < 20
        n = 200 if heavy else 25
        level = 2.5 if heavy else 4.0
        for i in rng.choice(300, n, replace=False):
            rows.append((u, i))
            ratings.append(np.clip(level + rng.normal(0, 0.8), 1, 5))
    X, y = np.array(rows), np.array(ratings)
    model = EmpiricalBayesRecommender().fit(X, y)
    assert model.global_mean_ < 3.5
    assert model.global_mean_ + model.user_bias_prior_ > 3.6
    assert 0.5 < model.user_shrinkage_ < 50
    # Items have no effect of their own here: their offsets shrink hard.
    assert model.item_shrinkage_ > 100


def test_partial_fit_equals_fit_on_all_ratings():
    X, y = make_ratings(n_users=60, n_items=30, random_state=2)
    half = X[:, 0] < 30
    online = EmpiricalBayesRecommender(min_ratings=5).partial_fit(X[half], y[half]).partial_fit(X[~half], y[~half])
    batch = EmpiricalBayesRecommender(min_ratings=5).fit(X, y)
    np.testing.assert_allclose(online.predict(X), batch.predict(X), rtol=1e-12)
