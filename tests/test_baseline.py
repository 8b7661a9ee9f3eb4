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


def test_new_users_shrink_towards_the_average_user_not_the_mean_rating():
    # Heavy users rate 3, light users 4: the rating mean μ (about 3.17) is
    # the heavy users' level, the average user's is 3.5.
    rng = np.random.default_rng(0)
    rows, y = [], []
    for user in range(200):
        heavy = user < 100
        items = rng.choice(150, 100 if heavy else 20, replace=False)
        rows += [(user, item) for item in items]
        y += list((3.0 if heavy else 4.0) + rng.normal(0.0, 0.5, len(items)))
    rows += [(500, 0), (500, 1)]  # a new user with two 5s
    y += [5.0, 5.0]
    X, y = np.array(rows), np.array(y)
    model = EmpiricalBayesRecommender().fit(X, y)
    unknown_user, new_user, unknown_item = model.predict(np.array([[999, 3], [500, 3], [0, 999]]))
    assert abs(y.mean() - 3.17) < 0.05
    assert abs(unknown_user - 3.5) < 0.1
    assert 3.6 < new_user < 4.9  # pulled up by its ratings, held back by the prior
    assert abs(unknown_item - model.predict(np.array([[0, 3]]))[0]) < 0.2
    # A heavy user's own level is learned, not shrunk away.
    assert abs(model.predict(np.array([[1, 3]]))[0] - 3.0) < 0.1
    assert 0.5 < model.user_shrinkage_ < 50


def test_partial_fit_equals_fit_on_all_ratings():
    X, y = make_ratings(n_users=60, n_items=30, random_state=2)
    half = X[:, 0] < 30
    online = EmpiricalBayesRecommender(min_ratings=5).partial_fit(X[half], y[half]).partial_fit(X[~half], y[~half])
    batch = EmpiricalBayesRecommender(min_ratings=5).fit(X, y)
    np.testing.assert_allclose(online.predict(X), batch.predict(X), rtol=1e-12)
