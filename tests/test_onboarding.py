"""select_items(): which items to ask a user to rate."""

import pickle

import numpy as np
import pytest

import sklearn_metarec as smr
from sklearn_metarec._onboarding import condition, greedy_variance_reduction, melu_scores, prior_covariance
from sklearn_metarec.datasets import make_ratings

STRATEGIES = ["uncertainty", "melu", "popularity", "random"]


@pytest.fixture(scope="module")
def data():
    return make_ratings(n_users=60, n_items=25, mean_ratings=10, min_ratings=5, random_state=0)


@pytest.fixture(scope="module")
def maml(data):
    X, y = data
    return smr.MAMLFactorizationRecommender(n_factors=4, n_epochs=3, random_state=0).fit(X, y)


def test_greedy_picks_match_the_posterior_computed_by_brute_force():
    rng = np.random.RandomState(0)
    d, m = 4, 12
    X = rng.normal(size=(m, d))
    A = rng.normal(size=(d, d))
    sigma = A @ A.T + 0.1 * np.eye(d)
    targets, weights = rng.normal(size=(30, d)), rng.random_sample(30)
    W = targets.T @ (targets * weights[:, None])
    noise = rng.uniform(0.2, 2.0, m)

    def predictive_variance(chosen):
        # The posterior covariance from scratch, then the weighted variance of
        # the targets' predictions.
        post = np.linalg.inv(np.linalg.inv(sigma) + sum(np.outer(X[j], X[j]) / noise[j] for j in chosen))
        return float(np.sum(weights * np.einsum("ij,jk,ik->i", targets, post, targets)))

    picks = greedy_variance_reduction(X, sigma, W, noise, 4)
    chosen = []
    for pick in picks:
        left = [j for j in range(m) if j not in chosen]
        best = min(left, key=lambda j: predictive_variance(chosen + [j]))
        assert pick == best
        chosen.append(best)
    assert len(set(picks.tolist())) == 4


def test_condition_equals_the_rank_one_updates():
    rng = np.random.RandomState(1)
    A = rng.normal(size=(3, 3))
    sigma = A @ A.T + np.eye(3)
    X = rng.normal(size=(5, 3))
    step = sigma.copy()
    for x in X:
        s = step @ x
        step = step - np.outer(s, s) / (x @ s + 1.0)
    np.testing.assert_allclose(condition(sigma, X), step, rtol=1e-10)
    assert condition(sigma, X[:0]) is sigma


def test_prior_covariance_and_melu_scores():
    dev = np.array([[1.0, 0.0], [-1.0, 2.0]])
    np.testing.assert_allclose(prior_covariance(dev, ridge=0.0), [[1.0, -1.0], [-1.0, 2.0]])
    assert np.linalg.matrix_rank(prior_covariance(np.zeros((3, 2)))) == 2  # invertible with no spread
    np.testing.assert_allclose(melu_scores(np.array([1.0, 2.0, 4.0]), np.array([10.0, 5.0, 0.0])), [0.25, 0.25, 0.0])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_returns_distinct_candidates_and_leaves_the_model_alone(maml, data, strategy):
    X, _ = data
    before = maml.predict(X[:50])
    state = pickle.dumps(maml)
    ask = maml.select_items(6, strategy=strategy, random_state=0)
    assert len(ask) == 6 and len(set(ask.tolist())) == 6 and np.isin(ask, maml.item_ids_).all()
    candidates = np.array([3, 5, 7, 11, 13])
    some = maml.select_items(3, candidates=candidates, strategy=strategy, random_state=0)
    assert len(some) == 3 and np.isin(some, candidates).all()
    assert len(maml.select_items(50, candidates=candidates, strategy=strategy, random_state=0)) == 5
    # A known user is not asked about what it rated.
    rated = X[X[:, 0] == 4, 1]
    mine = maml.select_items(50, user=4, strategy=strategy, random_state=0)
    assert not np.isin(mine, rated).any() and len(mine) == len(maml.item_ids_) - len(np.unique(rated))
    np.testing.assert_array_equal(maml.predict(X[:50]), before)
    assert pickle.dumps(maml) == state


def test_deterministic_with_random_state(maml):
    a = maml.select_items(8, strategy="random", random_state=3)
    np.testing.assert_array_equal(a, maml.select_items(8, strategy="random", random_state=3))
    assert not np.array_equal(a, maml.select_items(8, strategy="random", random_state=4))
    np.testing.assert_array_equal(maml.select_items(8), maml.select_items(8))


def test_popularity_and_melu_follow_their_definitions(maml, data):
    X, y = data
    counts = np.bincount(np.searchsorted(maml.item_ids_, X[:, 1]), minlength=len(maml.item_ids_))
    order = np.lexsort((np.arange(len(counts)), -counts))
    np.testing.assert_array_equal(maml.select_items(10, strategy="popularity"), maml.item_ids_[order[:10]])
    # MeLU: each item's mean |error| of the prior's prediction over its ratings,
    # times the norm of (1, q_i), times its popularity, each scaled to max 1.
    prior = maml.predict(np.column_stack([np.full(len(X), -1), X[:, 1]]))
    codes = np.searchsorted(maml.item_ids_, X[:, 1])
    grad = np.bincount(codes, weights=np.abs(prior - y)) / counts
    grad *= np.linalg.norm(np.c_[np.ones(len(counts)), maml.item_factors_], axis=1)
    score = (grad / grad.max()) * (counts / counts.max())
    expected = maml.item_ids_[np.lexsort((np.arange(len(counts)), -counts))]
    expected = expected[np.argsort(-score[np.searchsorted(maml.item_ids_, expected)], kind="stable")]
    np.testing.assert_array_equal(maml.select_items(10, strategy="melu"), expected[:10])


def test_uncertainty_asks_about_the_items_users_disagree_on():
    # Two kinds of users, who rate items 0-7 oppositely; everyone rates items
    # 8-23 about alike, and those are the popular ones.
    rng = np.random.RandomState(0)
    rows, ratings = [], []
    for user in range(200):
        taste = 1 if user % 2 else -1
        for item in range(24):
            if item < 8 and rng.random_sample() < 0.5:
                rows.append((user, item))
                ratings.append(3.0 + 1.5 * taste * (1 if item % 2 else -1) + rng.normal(0, 0.3))
            elif item >= 8:
                rows.append((user, item))
                ratings.append(3.5 + rng.normal(0, 0.3))
    X, y = np.array(rows), np.clip(np.array(ratings), 1, 5)
    model = smr.MAMLFactorizationRecommender(n_factors=4, n_epochs=20, random_state=0).fit(X, y)
    assert (model.select_items(4, strategy="popularity") >= 8).all()
    assert (model.select_items(4) < 8).all()


@pytest.mark.parametrize("make", [
    lambda: smr.MAMLFactorizationRecommender(n_factors=3, n_epochs=2, loss="logistic", random_state=0),
    lambda: smr.MAMLFactorizationRecommender(n_factors=3, n_epochs=2, loss="bpr", random_state=0),
    lambda: smr.MetaSGDFactorizationRecommender(n_factors=3, n_epochs=2, random_state=0),
    lambda: smr.ReptileFactorizationRecommender(n_factors=3, n_epochs=2, random_state=0),
    lambda: smr.FactorizationRecommender(n_factors=3, n_epochs=2, random_state=0),
    lambda: smr.EmpiricalBayesRecommender(),
])
def test_every_estimator_and_loss(make, data):
    X, y = data
    model = make()
    model.fit(X, None if getattr(model, "loss", "squared") != "squared" else y)
    for strategy in STRATEGIES:
        ask = model.select_items(5, user=2, strategy=strategy, random_state=0)
        assert len(ask) == 5 and not np.isin(ask, X[X[:, 0] == 2, 1]).any()


def test_new_items_and_unknown_ids_can_be_candidates(data):
    pd = pytest.importorskip("pandas")
    X, y = data
    genres = pd.DataFrame({"genre": np.arange(26) % 3}, index=np.arange(26)).astype({"genre": "category"})
    model = smr.MAMLFactorizationRecommender(n_factors=3, n_epochs=2, random_state=0)
    model.fit(X, y, item_features=genres)  # item 25 is in the table, not in X
    assert 25 not in model.item_ids_
    ask = model.select_items(4, candidates=[0, 1, 25, 999])
    assert sorted(ask.tolist()) == [0, 1, 25, 999]


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=0), "n must be a positive integer"),
    (dict(n=True), "n must be a positive integer"),
    (dict(strategy="entropy"), "strategy must be one of"),
    (dict(candidates=[]), "candidates must be a non-empty"),
    (dict(candidates=[[1, 2]]), "candidates must be a non-empty"),
    (dict(user=[1, 2]), "user must be a single user id"),
])
def test_bad_arguments_are_refused(maml, kwargs, message):
    kwargs = {"n": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        maml.select_items(**kwargs)
