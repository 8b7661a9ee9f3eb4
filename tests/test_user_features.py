"""User attributes: the meta-gradient into the attributes' parameters, the
attribute-conditioned prior of new users, and the estimator contract with
attributes (fold-in, transactions, persistence, refusals)."""

import pickle

import numpy as np
import pandas as pd
import pytest

import sklearn_metarec as smr
from sklearn_metarec import _kernels as K
from sklearn_metarec.datasets import make_ratings

from ._reference import central_difference
from .test_features import copies, small_problem


def group_data(n_users=300, n_items=60, n_groups=3, n_rated=15, seed=0):
    """Users of group g rate items of genre g about 4.5 and the rest about 2;
    the table lists the users and three new users, one per group."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, n_groups, n_users)
    genre = np.arange(n_items) % n_groups
    users = np.repeat(np.arange(n_users), n_rated)
    items = np.concatenate([rng.choice(n_items, n_rated, replace=False) for _ in range(n_users)])
    y = np.where(genre[items] == group[users], 4.5, 2.0) + rng.normal(0, 0.3, len(users))
    new = np.arange(1000, 1000 + n_groups)
    frame = pd.DataFrame({"group": [f"g{g}" for g in np.r_[group, np.arange(n_groups)]]},
                         index=np.r_[np.arange(n_users), new])
    return np.column_stack([users, items]), y, smr.FeatureTable(frame), new, genre


def assert_attributes_predict_new_users(with_attributes, without, new, genre):
    """The new users' (one per group of ``group_data``) ratings of every item
    are predicted from their attributes' prior far better than from the
    population's; returns the (user, item) rows scored."""
    items = np.arange(len(genre))
    grid = np.column_stack([np.repeat(new, len(items)), np.tile(items, len(new))])
    truth = np.where(genre[grid[:, 1]] == grid[:, 0] - new[0], 4.5, 2.0)
    rmse = {name: np.sqrt(np.mean((m.predict(grid) - truth) ** 2)) for name, m in
            [("attributes", with_attributes), ("none", without)]}
    assert rmse["attributes"] < 0.6 * rmse["none"], rmse
    return grid


def small_users(n_users=30):
    frame = pd.DataFrame({"age": [f"a{u % 3}" for u in range(n_users)], "x": (np.arange(n_users) % 5) / 4.0},
                         index=np.arange(n_users))
    return smr.FeatureTable(frame)


@pytest.mark.parametrize("n_steps", [1, 2, 3])
@pytest.mark.parametrize("loss", ["squared", "logistic", "bpr"])
def test_attribute_gradient_matches_finite_differences(loss, n_steps):
    # Task b starts from φ₀ + G_b·A; the kernel reports each task's
    # ∂loss/∂(its start), and Gᵀ of those is ∂loss/∂A.
    model, data, item_reg, outer = small_problem(loss, n_steps, user_features=small_users())
    n_items, d = len(model._item_vocab), model.n_factors + 1
    batch = data[4]
    G = model._user_G[batch]

    def kernel(priors, g_priors):
        grad = np.zeros_like(model._theta)
        value, _, _ = K.meta_batch_grad(*data, model._theta, n_items, model._alpha(), item_reg,
                                     model._inner_settings(), outer, grad, np.empty(d + 1),
                                     np.empty(n_items, dtype=np.int64), np.empty(n_items), priors, g_priors,
                                     *K.no_context(d))
        return value, grad

    # Every task at φ₀ is the kernel without priors, and the tasks' parts sum to ∂/∂φ₀.
    phi0 = model._theta[1 : 1 + d]
    g_tasks = np.empty((len(batch), d))
    value, grad = kernel(np.tile(phi0, (len(batch), 1)), g_tasks)
    value0, grad0 = kernel(np.empty((0, d)), np.empty((0, d)))
    assert value == value0
    np.testing.assert_array_equal(grad, grad0)
    np.testing.assert_allclose(g_tasks.sum(axis=0), grad0[1 : 1 + d], rtol=1e-12, atol=1e-15)

    A = np.random.default_rng(3).normal(0.0, 0.3, model._ufeat.shape)
    g_tasks = np.empty((len(batch), d))
    kernel(phi0 + np.asarray(G @ A), g_tasks)
    analytic = np.asarray(G.T @ g_tasks)
    numeric = central_difference(
        lambda a: kernel(phi0 + np.asarray(G @ a.reshape(A.shape)), np.empty((0, d)))[0], A.ravel()
    ).reshape(A.shape)
    assert np.abs(analytic).max() > 1e-3
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("cls", [smr.MAMLFactorizationRecommender, smr.MetaSGDFactorizationRecommender])
def test_new_users_get_the_prior_of_their_attributes(cls):
    X, y, table, new, genre = group_data()
    # 40 epochs of 10 batches: the attributes' rows move by at most
    # meta_lr per Adam step, and at 15 epochs they had moved too little.
    # A group's taste is in the prior's factors, which the attributes
    # learn only as p₀ is learned.
    with_attributes = cls(n_epochs=40, prior_factors="learned", random_state=0).fit(X, y, user_features=table)
    without = cls(n_epochs=40, prior_factors="learned", random_state=0).fit(X, y)
    bias_only = cls(n_epochs=40, random_state=0).fit(X, y, user_features=table)
    assert not bias_only._ufeat[:, 1:].any() and bias_only._ufeat[:, 0].any()
    ids, scores = with_attributes.recommend(new, n=10)
    # Before any rating, each new user's list is its group's genre (chance: 1/3).
    assert np.mean(genre[ids] == np.arange(3)[:, None]) > 0.9
    pairs = np.column_stack([np.repeat(new, 10), ids.ravel()])
    np.testing.assert_allclose(with_attributes.predict(pairs), scores.ravel(), rtol=1e-12)
    # The attributes' prior predicts the new users' ratings of every item far
    # better than the population's.
    assert_attributes_predict_new_users(with_attributes, without, new, genre)
    # An unlisted unknown user still gets the population prior.
    unlisted = with_attributes.predict(np.array([[5000, 0], [5000, 1]]))
    np.testing.assert_allclose(unlisted, without.predict(np.array([[5000, 0], [5000, 1]])), atol=0.3)


def test_fold_in_starts_a_listed_new_user_from_its_attributes_prior():
    X, y, table, new, genre = group_data(n_users=120)
    model = smr.MAMLFactorizationRecommender(n_epochs=5, random_state=0).fit(X, y, user_features=table)
    rated = np.array([[new[1], 0], [new[1], 4]])
    model.fold_in(rated, np.array([4.0, 2.0]))
    d = model.n_factors + 1
    indptr, items = np.array([0, 2], dtype=np.int64), model._item_vocab.lookup(rated[:, 1])
    expected = np.empty((1, d))
    K.adapt_users(indptr, items, np.array([4.0, 2.0]), np.ones(2), np.zeros(1, dtype=np.int64),
                  np.zeros(1, dtype=np.int64), 0, model._theta, len(model._item_vocab), model._alpha(),
                  model._inner_settings(), expected, model._user_priors(model._user_vocab.lookup(new[1:2])),
                  *K.no_context(d)[:2])
    code = model._user_vocab.lookup(new[1:2])[0]
    np.testing.assert_allclose(model._users[code], expected[0], rtol=1e-12)
    # The same ratings from an unlisted user start from φ₀ instead.
    model.fold_in(np.array([[7000, 0], [7000, 4]]), np.array([4.0, 2.0]))
    assert not np.allclose(model._users[model._user_vocab.lookup(np.array([7000]))[0]], expected[0])


def test_fold_in_and_partial_fit_take_a_table_for_new_users():
    X, y, table, new, genre = group_data(n_users=120)
    model = smr.MAMLFactorizationRecommender(n_epochs=5, random_state=0).fit(X, y, user_features=table)
    extra = smr.FeatureTable(pd.DataFrame({"group": ["g2"]}, index=[2000]))
    before = model.predict(np.array([[2000, 2]]))
    model.fold_in(np.array([[2000, 5]]), np.array([2.0]), user_features=extra)
    code = model._user_vocab.lookup(np.array([2000]))[0]
    assert model._user_G[code].toarray().tolist() == [[0.0, 0.0, 1.0]]
    assert model.predict(np.array([[2000, 2]]))[0] != before[0]
    model.partial_fit(np.array([[2001, 5]]), np.array([2.0]),
                      user_features=smr.FeatureTable(pd.DataFrame({"group": ["g0"]}, index=[2001])))
    assert model._user_G[model._user_vocab.lookup(np.array([2001]))[0]].toarray().tolist() == [[1.0, 0.0, 0.0]]


def test_bad_user_tables_are_refused_and_change_nothing():
    X, y, table, new, genre = group_data(n_users=60)
    model = smr.MAMLFactorizationRecommender(n_epochs=2, random_state=0).fit(X, y, user_features=table)
    state = pickle.dumps(model)
    other = smr.FeatureTable(pd.DataFrame({"age": ["old"]}, index=[3000]))
    with pytest.raises(ValueError, match="features the model was fitted with"):
        model.fold_in(np.array([[3000, 1]]), np.array([3.0]), user_features=other)
    with pytest.raises(ValueError, match="user_features: .*NaN"):
        model.partial_fit(X[:3], y[:3], user_features=pd.DataFrame({"group": [np.nan]}, index=[0]))
    assert pickle.dumps(model) == state
    plain = smr.MAMLFactorizationRecommender(n_epochs=1, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="fitted with user_features"):
        plain.fold_in(X[:2], y[:2], user_features=table)
    with pytest.raises(ValueError, match="none of the users"):
        smr.MAMLFactorizationRecommender(n_epochs=1).fit(
            X, y, user_features=pd.DataFrame({"g": ["a"]}, index=["not-an-int-id"]))


def test_reptile_new_users_get_the_prior_of_their_attributes():
    # Reptile has no gradient to chain into the attributes: each attribute's
    # part follows the mean move of its users' priors beyond φ₀'s.
    X, y, table, new, genre = group_data()
    with_attributes = smr.ReptileFactorizationRecommender(random_state=0).fit(X, y, user_features=table)
    without = smr.ReptileFactorizationRecommender(random_state=0).fit(X, y)
    ids, _ = with_attributes.recommend(new, n=10)
    assert np.mean(genre[ids] == np.arange(3)[:, None]) > 0.9
    grid = assert_attributes_predict_new_users(with_attributes, without, new, genre)
    for loaded in copies(with_attributes):
        np.testing.assert_array_equal(loaded.predict(grid), with_attributes.predict(grid))


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_factorization_baseline_takes_user_attributes(loss):
    # LightFM's user features: a user is its own part plus its attributes'.
    X, y, table, new, genre = group_data()
    if loss == "logistic":
        X, y = X[y > 3], None  # the liked items as positives
    model = smr.FactorizationRecommender(loss=loss, random_state=0)
    with_attributes = model.fit(X, y, user_features=table)
    without = smr.FactorizationRecommender(loss=loss, random_state=0).fit(X, y)
    ids, _ = with_attributes.recommend(new, n=10)
    assert np.mean(genre[ids] == np.arange(3)[:, None]) > 0.9
    if loss == "squared":
        assert_attributes_predict_new_users(with_attributes, without, new, genre)
    # A listed new user's fold-in shrinks towards its attributes' part, not
    # towards zero: the ridge (or logistic) problem centred there.
    rated = np.array([[new[1], 0], [new[1], 4]])
    with_attributes.fold_in(rated, None if y is None else np.array([2.0, 4.5]))
    code = with_attributes._user_vocab.lookup(new[1:2])[0]
    d = with_attributes.n_factors + 1
    out = np.empty((1, d))
    centers = with_attributes._user_priors(np.array([code]))
    args = (np.array([0, 2], dtype=np.int64), with_attributes._item_vocab.lookup(rated[:, 1]),
            np.array([1.0, 1.0]) if y is None else np.array([2.0, 4.5]), np.ones(2), np.zeros(1, dtype=np.int64))
    if loss == "squared":
        K.ridge_users(*args, with_attributes._theta, len(with_attributes._item_vocab), d, 0.02, centers,
                      *K.no_context(d)[:2], out)
        np.testing.assert_allclose(with_attributes._users[code], out[0], rtol=1e-10)
    assert np.abs(centers).sum() > 0
    for loaded in copies(with_attributes):
        np.testing.assert_array_equal(loaded.predict(rated), with_attributes.predict(rated))
    # partial_fit takes a table of new users.
    with_attributes.partial_fit(np.array([[2001, 5]]), None if y is None else np.array([2.0]),
                                user_features=smr.FeatureTable(pd.DataFrame({"group": ["g0"]}, index=[2001])))
    assert with_attributes._user_G[with_attributes._user_vocab.lookup(np.array([2001]))[0]].toarray().tolist() == \
        [[1.0, 0.0, 0.0]]


def test_estimators_without_attributes_say_so():
    X, y = make_ratings(n_users=20, n_items=10, random_state=0)
    with pytest.raises(TypeError, match="user_features"):
        smr.EmpiricalBayesRecommender().fit(X, y, user_features=small_users(20))
    model = smr.EmpiricalBayesRecommender().fit(X, y)
    with pytest.raises(TypeError, match="user_features"):
        model.fold_in(X[:2], y[:2], user_features=small_users(20))


def test_attributes_survive_pickle_save_load_and_early_stopping():
    X, y, table, new, genre = group_data(n_users=120)
    model = smr.MetaSGDFactorizationRecommender(n_epochs=6, early_stopping=True, n_iter_no_change=2,
                                                random_state=0).fit(X, y, user_features=table)
    again = smr.MetaSGDFactorizationRecommender(n_epochs=6, early_stopping=True, n_iter_no_change=2,
                                                random_state=0).fit(X, y, user_features=table)
    pairs = np.column_stack([np.repeat(new, 4), np.tile(np.arange(4), 3)])
    np.testing.assert_array_equal(model.predict(pairs), again.predict(pairs))
    for loaded in copies(model):
        np.testing.assert_array_equal(loaded.predict(pairs), model.predict(pairs))
        np.testing.assert_array_equal(loaded.recommend(new, n=5)[0], model.recommend(new, n=5)[0])
