"""Item side features: the table, the meta-gradient of the features' parts,
cold items scored from their features, and the estimator contract with
features (transactions, persistence, model selection)."""

import io
import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.model_selection import KFold, cross_validate

import sklearn_metarec as smr
from sklearn_metarec import _kernels as K
from sklearn_metarec.datasets import make_ratings
from sklearn_metarec.maml import support_bounds

from ._reference import central_difference


def genre_data(n_users=300, n_items=100, n_genres=4, n_new=30, seed=0):
    """Ratings driven by each user's favourite genre (+1.5) and a popular
    genre (+0.5); the last ``n_new`` items are never rated in training."""
    rng = np.random.default_rng(seed)
    genre = rng.integers(0, n_genres, n_items)
    taste = rng.integers(0, n_genres, n_users)
    users = np.repeat(np.arange(n_users), 25)
    items = np.concatenate([rng.choice(n_items, 25, replace=False) for _ in range(n_users)])
    y = 3 + 1.5 * (genre[items] == taste[users]) + 0.5 * (genre[items] == 0) + rng.normal(0, 0.5, len(users))
    X = np.column_stack([users, items])
    new = np.arange(n_items - n_new, n_items)
    table = smr.FeatureTable(pd.DataFrame({"genre": [f"g{g}" for g in genre]}, index=np.arange(n_items)))
    return X, y, new, table, genre, taste


def copies(model):
    """The model saved and loaded (``save_model``), and pickled and unpickled."""
    buffer = io.BytesIO()
    smr.save_model(model, buffer)
    buffer.seek(0)
    return smr.load_model(buffer), pickle.loads(pickle.dumps(model))


def small_table(n_items=25, n_genres=3):
    frame = pd.DataFrame({"genre": [f"g{i % n_genres}" for i in range(n_items)],
                          "old": np.arange(n_items) % 2 == 0}, index=np.arange(n_items))
    return smr.FeatureTable(frame)


# ----------------------------------------------------------------------
# The table


def test_feature_table_reads_a_frame():
    frame = pd.DataFrame({"genre": pd.Categorical(["b", "a", "b"]), "year": [0.5, 0.25, 1.0], "new": [True, False, False]},
                         index=["z", "x", "y"])
    table = smr.FeatureTable(frame)
    assert table.names == ["genre=a", "genre=b", "year", "new"]
    assert list(table.ids) == ["x", "y", "z"]  # rows in id order
    np.testing.assert_array_equal(table.matrix.toarray(), [[1, 0, 0.25, 0], [0, 1, 1.0, 0], [0, 1, 0.5, 1]])
    rows, found = table.rows(np.array(["y", "nope", "x"], dtype=object))
    np.testing.assert_array_equal(found, [True, False, True])
    np.testing.assert_array_equal(rows.toarray(), [[0, 1, 1.0, 0], [0, 0, 0, 0], [1, 0, 0.25, 0]])


def test_feature_table_reads_arrays_and_sparse_matrices():
    dense = smr.FeatureTable(np.array([[1.0, 0.0], [0.0, 2.0]]), ids=[7, 3])
    sparse = smr.FeatureTable(sp.csr_matrix([[1.0, 0.0], [0.0, 2.0]]), ids=[7, 3])
    for table in (dense, sparse):
        np.testing.assert_array_equal(table.ids, [3, 7])
        np.testing.assert_array_equal(table.matrix.toarray(), [[0, 2], [1, 0]])


@pytest.mark.parametrize("make, error, match", [
    (lambda: pd.DataFrame({"a": [1.0, np.nan]}), ValueError, "NaN"),
    (lambda: pd.DataFrame({"a": ["x", None]}), ValueError, "missing"),
    (lambda: pd.DataFrame({"a": [1, 2]}, index=[5, 5]), ValueError, "more than once"),
    (lambda: pd.DataFrame({"a": pd.to_datetime(["2020-01-01", "2020-01-02"])}), TypeError, "dtype"),
    (lambda: pd.DataFrame(index=[1, 2]), ValueError, "no columns"),
    (lambda: np.ones((2, 2)), TypeError, "ids="),
    (lambda: 3, TypeError, "DataFrame or a FeatureTable"),
])
def test_bad_feature_tables_are_refused(make, error, match):
    X, y = make_ratings(n_users=20, n_items=10, random_state=0)
    with pytest.raises(error, match=match):
        smr.MAMLFactorizationRecommender(n_epochs=1).fit(X, y, item_features=make())


def test_a_table_that_lists_none_of_the_items_is_refused():
    X, y = make_ratings(n_users=20, n_items=10, random_state=0)
    frame = pd.DataFrame({"genre": ["a"] * 10}, index=[str(i) for i in range(10)])  # strings, X has ints
    with pytest.raises(ValueError, match="none of the items"):
        smr.MAMLFactorizationRecommender(n_epochs=1).fit(X, y, item_features=frame)


def test_feature_table_refuses_infinite_values_and_id_mismatch():
    with pytest.raises(ValueError, match="NaN or infinite"):
        smr.FeatureTable(sp.csr_matrix([[np.inf]]), ids=[1])
    with pytest.raises(ValueError, match="ids"):
        smr.FeatureTable(np.ones((2, 1)), ids=[1, 2, 3])


# ----------------------------------------------------------------------
# The meta-gradient of the features' parts


def small_problem(loss, n_steps, **tables):
    """A small model of ``loss`` with T = ``n_steps`` fitted with
    ``tables`` (feature tables), and a meta-batch of its first 8 users:
    (model, the kernel's data arguments up to ``offsets``, item_reg, outer)."""
    X, y = make_ratings(n_users=30, n_items=20, mean_ratings=8, min_ratings=5, random_state=1)
    if loss == "logistic":
        y = (y >= 4).astype(float)
    elif loss == "bpr":
        X, y = X[y >= 3], None
    model = smr.MAMLFactorizationRecommender(n_factors=3, n_inner_steps=n_steps, loss=loss, n_negatives=2,
                                             inner_lr=0.5, reg=0.3, n_epochs=1, random_state=0)
    model.fit(X, y, **tables)
    indptr, items, ratings, weights = model._log.csr(len(model._user_vocab))
    lo, hi = support_bounds(model.n_support, np.diff(indptr))
    batch = np.arange(8, dtype=np.int64)
    offsets = np.r_[0, np.cumsum((indptr[batch + 1] - indptr[batch]) * (1 + model._n_neg()))].astype(np.int64)
    data = (indptr, items, ratings, weights, batch, lo, hi, 7, offsets)
    return model, data, model._item_reg(items, weights), K.outer_settings(first_order=False, hyper=False,
                                                                           per_rating=True)


@pytest.mark.parametrize("n_steps", [1, 2, 3])
@pytest.mark.parametrize("loss", ["squared", "logistic", "bpr"])
def test_feature_and_own_part_gradients_match_finite_differences(loss, n_steps):
    # The objective with features: the query loss of the rows own + F·(c, E),
    # plus each item's L2 penalty on its own part alone.
    model, data, item_reg, outer = small_problem(loss, n_steps, item_features=small_table())
    rng = np.random.default_rng(2)
    n_items, d = len(model._item_vocab), model.n_factors + 1
    F = model._item_F

    def kernel(own, feat, reg):
        theta = own.copy()
        _, bi, Q = K.unpack(theta, n_items, d)
        part = np.asarray(F @ feat)
        bi += part[:, 0]
        Q += part[:, 1:]
        grad, rows, pen = np.zeros_like(theta), np.empty(n_items, dtype=np.int64), np.full(n_items, np.nan)
        value, n_rows, _ = K.meta_batch_grad(*data, theta, n_items, model._alpha(), reg, model._inner_settings(), outer,
                                          grad, np.empty(d + 1), rows, pen, np.empty((0, d)), np.empty((0, d)),
                                          *K.no_context(d))
        return value, theta, grad, rows[:n_rows], pen

    own = model._theta.copy()
    own[1 + d:] += rng.normal(0.0, 0.2, len(own) - 1 - d)  # away from the start
    feat = rng.normal(0.0, 0.3, model._feat.shape)
    _, theta, grad, rows, pen = kernel(own, feat, item_reg)
    # The penalty's coefficients: its part of the rows' gradient is p_i (b_i, q_i).
    _, _, grad0, rows0, _ = kernel(own, feat, np.zeros(n_items))
    np.testing.assert_array_equal(np.sort(rows), np.sort(rows0))
    _, bi, Q = K.unpack(theta, n_items, d)
    _, gb, gQ = K.unpack(grad, n_items, d)
    _, gb0, gQ0 = K.unpack(grad0, n_items, d)
    np.testing.assert_allclose(gb[rows] - gb0[rows], pen[rows] * bi[rows], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gQ[rows] - gQ0[rows], pen[rows, None] * Q[rows], rtol=1e-9, atol=1e-12)
    assert (pen[rows] >= 0).all() and (pen[rows] > 0).any()  # 0: an item only in support sets

    model._theta, model._feat = theta, feat
    g_feat, _ = model._own_part_grads(grad, rows, pen)
    p = np.zeros(n_items)
    p[rows] = pen[rows]

    def objective(own, feat):
        value = kernel(own, feat, np.zeros(n_items))[0]
        _, ob, oQ = K.unpack(own, n_items, d)
        return value + 0.5 * np.sum(p * (ob**2 + np.sum(oQ**2, axis=1)))

    numeric = central_difference(lambda f: objective(own, f.reshape(feat.shape)), feat.ravel()).reshape(feat.shape)
    eps = 1e-6
    assert np.abs(g_feat).max() > 1e-3  # the features do move the loss
    np.testing.assert_allclose(g_feat, numeric, rtol=1e-5, atol=1e-8)
    # The own parts' gradient, on a few rows the batch touched.
    _, g_own_b, g_own_Q = K.unpack(grad, n_items, d)
    for i in rows[:4]:
        for a in range(d):
            at = 1 + d + i if a == 0 else 1 + d + n_items + i * (d - 1) + a - 1
            up, down = own.copy(), own.copy()
            up[at] += eps
            down[at] -= eps
            expected = (objective(up, feat) - objective(down, feat)) / (2 * eps)
            analytic = g_own_b[i] if a == 0 else g_own_Q[i, a - 1]
            np.testing.assert_allclose(analytic, expected, rtol=1e-5, atol=1e-8)


# ----------------------------------------------------------------------
# Cold items


@pytest.mark.parametrize("cls", [smr.MAMLFactorizationRecommender, smr.MetaSGDFactorizationRecommender])
def test_features_recover_planted_genre_tastes_for_new_items(cls):
    X, y, new, table, genre, taste = genre_data()
    train = ~np.isin(X[:, 1], new)
    results = {}
    for name, features in [("ids", None), ("features", table)]:
        model = cls(inner_lr=1.0, n_epochs=15, random_state=0).fit(X[train], y[train], item_features=features)
        rmse = np.sqrt(np.mean((model.predict(X[~train]) - y[~train]) ** 2))
        ids, scores = model.recommend(np.arange(50), n=5, items=new)
        in_genre = np.mean(genre[ids] == taste[:50, None])
        results[name] = rmse, in_genre
        if features is not None:  # the lists score as predict does
            pairs = np.column_stack([np.repeat(np.arange(50), 5), ids.ravel()])
            np.testing.assert_allclose(model.predict(pairs), scores.ravel(), rtol=1e-12)
    # Chance is 1/4 of the new items in the user's genre; without features
    # new items all score alike.
    assert results["features"][0] < results["ids"][0] - 0.1, results
    assert results["features"][1] > 0.5, results


def test_new_items_score_from_their_features_alone():
    X, y = make_ratings(n_users=30, n_items=20, random_state=0)
    table = small_table(25)  # items 20..24 are never rated
    model = smr.MAMLFactorizationRecommender(n_factors=3, n_epochs=2, random_state=0).fit(X, y, item_features=table)
    F, _ = table.rows(np.array([22]))
    part = np.asarray(F @ model._feat)[0]
    phi = model.user_factors_[0]
    expected = model.global_mean_ + model.user_biases_[0] + part[0] + phi @ part[1:]
    np.testing.assert_allclose(model.predict([[X[0, 0], 22]]), [expected], rtol=1e-12)
    # An item the table does not list still gets no item parameters.
    np.testing.assert_allclose(model.predict([[X[0, 0], 999]]), [model.global_mean_ + model.user_biases_[0]],
                               rtol=1e-12)
    # Folded in, a new item joins with its features' parameters and no own part.
    model.fold_in([[10**6, 22], [10**6, 3]], [4.0, 2.0])
    row = list(model.item_ids_).index(22)
    np.testing.assert_allclose(model.item_factors_[row], part[1:], rtol=1e-12)
    np.testing.assert_allclose(model.item_biases_[row], part[0], rtol=1e-12)
    # Trained on with partial_fit, it adds an own part of its own.
    model.partial_fit([[10**6, 23], [5, 23]], [5.0, 4.0])
    row = list(model.item_ids_).index(23)
    own = model.item_factors_[row] - np.asarray(table.rows(np.array([23]))[0] @ model._feat)[0, 1:]
    assert np.abs(own).max() > 0


# ----------------------------------------------------------------------
# The estimator contract with features


def test_a_failing_call_with_features_changes_nothing():
    X, y = make_ratings(n_users=30, n_items=20, random_state=0)
    model = smr.MAMLFactorizationRecommender(n_factors=3, n_epochs=2, random_state=0)
    model.fit(X, y, item_features=small_table())
    probe = np.array([[0, 1], [3, 22], [999, 24]])
    before, saved = model.predict(probe), pickle.dumps(model)
    with pytest.raises(ValueError, match="NaN"):
        model.fit(X, y, item_features=pd.DataFrame({"a": [np.nan]}, index=[1]))
    other = smr.FeatureTable(pd.DataFrame({"colour": ["red"] * 25}, index=np.arange(25)))
    with pytest.raises(ValueError, match="features the model was fitted with"):
        model.partial_fit(X[:5], y[:5], item_features=other)
    np.testing.assert_array_equal(model.predict(probe), before)
    assert pickle.dumps(model) == saved


def test_features_added_to_a_trained_model_change_nothing_learned():
    X, y = make_ratings(n_users=30, n_items=20, random_state=0)
    model = smr.MAMLFactorizationRecommender(n_factors=3, n_epochs=2, random_state=0).fit(X, y)
    theta = model._theta.copy()
    # Attaching the features alone (before the partial_fit's update) keeps every parameter.
    model._attach_item_features(small_table(), fresh=False)
    np.testing.assert_array_equal(model._theta, theta)
    assert not model._feat.any()
    refit = smr.MAMLFactorizationRecommender(n_factors=3, n_epochs=2, random_state=0).fit(X, y)
    refit.partial_fit(X[:10], y[:10], item_features=small_table())
    assert np.isfinite(refit.predict([[0, 22], [1, 3]])).all() and refit._feat.shape == (4, 4)


def test_models_with_features_save_and_load_to_identical_predictions():
    X, y = make_ratings(n_users=30, n_items=20, random_state=0)
    model = smr.MetaSGDFactorizationRecommender(n_factors=3, n_epochs=2, random_state=0)
    model.fit(X, y, item_features=small_table())
    probe = np.array([[0, 1], [3, 22], [999, 24]])
    for loaded in copies(model):
        np.testing.assert_array_equal(loaded.predict(probe), model.predict(probe))
        np.testing.assert_array_equal(loaded.recommend([0, 3], items=np.arange(25))[0],
                                      model.recommend([0, 3], items=np.arange(25))[0])


def test_same_random_state_same_model_with_features():
    X, y = make_ratings(n_users=30, n_items=20, random_state=0)
    fits = [smr.MAMLFactorizationRecommender(n_factors=3, n_epochs=2, random_state=4).fit(
        X, y, item_features=small_table()) for _ in range(2)]
    probe = np.array([[0, 1], [3, 22]])
    np.testing.assert_array_equal(fits[0].predict(probe), fits[1].predict(probe))


def test_early_stopping_keeps_the_best_features():
    X, y = make_ratings(n_users=60, n_items=20, random_state=0)
    model = smr.MAMLFactorizationRecommender(n_factors=3, n_epochs=6, early_stopping=True, n_iter_no_change=2,
                                             random_state=0).fit(X, y, item_features=small_table())
    assert model.best_iteration_ >= 1 and np.isfinite(model.predict([[0, 22]])).all()


def test_a_wrapped_table_reaches_every_fold_whole():
    # scikit-learn cuts a fit parameter with as many rows as X into the
    # folds' rows; the wrapper is not array-like and passes whole.
    X, y = make_ratings(n_users=30, n_items=20, random_state=0)
    ids = np.arange(len(X))  # a table of exactly len(X) rows
    frame = pd.DataFrame({"genre": [f"g{i % 3}" for i in ids]}, index=ids)
    model = smr.MAMLFactorizationRecommender(n_factors=3, n_epochs=1, random_state=0)
    cv = KFold(2, shuffle=True, random_state=0)
    wrapped = cross_validate(model, X, y, cv=cv, params={"item_features": smr.FeatureTable(frame)},
                             return_estimator=True)
    assert all(est._item_table.matrix.shape[0] == len(X) for est in wrapped["estimator"])
    bare = cross_validate(model, X, y, cv=cv, params={"item_features": frame}, return_estimator=True)
    assert all(est._item_table.matrix.shape[0] < len(X) for est in bare["estimator"])


def test_estimators_without_features_say_so():
    X, y = make_ratings(n_users=20, n_items=10, random_state=0)
    with pytest.raises(TypeError, match="item_features"):
        smr.EmpiricalBayesRecommender().fit(X, y, item_features=small_table())


def test_reptile_scores_new_items_by_their_features():
    # Reptile has no gradient to chain into the features: each feature's part
    # follows the mean move of its items, and every item follows its features.
    X, y, new, table, genre, taste = genre_data()
    train = ~np.isin(X[:, 1], new)
    results = {}
    for name, features in [("ids", None), ("features", table)]:
        # inner_lr=1.0, as for MAML above: the default adapts a user too
        # little to pick up a 1.5-point taste from 25 ratings.
        model = smr.ReptileFactorizationRecommender(inner_lr=1.0, random_state=0).fit(X[train], y[train],
                                                                                     item_features=features)
        rmse = np.sqrt(np.mean((model.predict(X[~train]) - y[~train]) ** 2))
        ids, _ = model.recommend(np.arange(50), n=5, items=new)
        results[name] = rmse, np.mean(genre[ids] == taste[:50, None])
    assert results["features"][0] < results["ids"][0] - 0.1, results
    assert results["features"][1] > 0.7 > results["ids"][1] + 0.3, results
    # As for MAML: a table that lists none of the items is refused, new items
    # join with their features, and persistence keeps it all.
    bare = smr.ReptileFactorizationRecommender(n_factors=3, n_epochs=2, random_state=0)
    empty = smr.FeatureTable(pd.DataFrame({"genre": ["g0"]}, index=[10**6]))
    with pytest.raises(ValueError, match="lists none"):
        bare.fit(X[train], y[train], item_features=empty)
    model.partial_fit(np.array([[0, 200]]), np.array([4.0]),
                      item_features=smr.FeatureTable(pd.DataFrame({"genre": ["g1"]}, index=[200])))
    probe = np.array([[1, 200], [2, new[0]], [3, 5]])
    for loaded in copies(model):
        np.testing.assert_array_equal(loaded.predict(probe), model.predict(probe))


def test_a_table_of_a_few_new_items_lines_up_with_the_fitted_features():
    # One new item's table knows one genre only; its one-hot columns must
    # still mean what the model's do.
    X, y = make_ratings(n_users=30, n_items=20, random_state=0)
    model = smr.MAMLFactorizationRecommender(n_factors=3, n_epochs=2, random_state=0)
    model.fit(X, y, item_features=small_table())
    few = smr.FeatureTable(pd.DataFrame({"genre": ["g2"], "old": [True]}, index=[40]))
    model.partial_fit(np.array([[0, 40]]), np.array([4.0]), item_features=few)
    row = model._item_F[model._item_vocab.lookup(np.array([40]))[0]].toarray()[0]
    assert dict(zip(model._item_table.names, row)) == {"genre=g0": 0, "genre=g1": 0, "genre=g2": 1, "old": 1}


# ----------------------------------------------------------------------
# The factorization baseline with features (LightFM's model)


def test_sgd_with_featureless_items_is_plain_sgd():
    X, y = make_ratings(n_users=30, n_items=20, random_state=0)
    model = smr.FactorizationRecommender(n_factors=3, n_epochs=1, random_state=0).fit(X, y)
    users, items, ratings, weights = model._log.coo()[:4]
    d, n_items = 4, len(model._item_vocab)
    order = np.random.default_rng(0).permutation(len(users))
    empty = sp.csr_matrix((n_items, 2))
    out = []
    for features in (False, True):
        theta, table = model._theta.copy(), model._users.copy()
        args = (users, items, ratings, weights, order, theta, n_items, table, 0.01, 0.02, False, 0,
                np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64), 0)
        if features:
            no_users = sp.csr_matrix((len(table), 2))
            K.sgd_epoch_features(*args, empty.indptr, empty.indices, empty.data, np.zeros((2, d)),
                                 no_users.indptr, no_users.indices, no_users.data, np.zeros((2, d)),
                                 np.zeros(0, dtype=np.int64), np.zeros((0, 1)), np.zeros((1, d)))
        else:
            K.sgd_epoch(*args)
        out.append((theta, table))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])


def test_one_sgd_step_with_features_is_lightfms_update():
    # One rating of an item with two features by a user with two attributes:
    # each row is own part + features' parts (F·E, G·A); the step moves the
    # own parts and each feature's part by its value.
    d, n_items = 3, 2
    rng = np.random.default_rng(1)
    theta = rng.normal(0, 0.5, 1 + d + n_items * d)
    feat, ufeat = rng.normal(0, 0.5, (2, d)), rng.normal(0, 0.5, (2, d))
    F = sp.csr_matrix(np.array([[1.0, 0.5], [0.0, 1.0]]))
    G = sp.csr_matrix(np.array([[0.5, 1.0]]))
    table = rng.normal(0, 0.5, (1, d))
    mu = theta[0]
    _, bi, Q = K.unpack(theta, n_items, d)
    row = np.r_[bi[0], Q[0]]
    own = row - F[0].toarray()[0] @ feat
    own_other = np.r_[bi[1], Q[1]] - F[1].toarray()[0] @ feat  # item 1, not rated here
    phi = table[0].copy()
    g_row = G[0].toarray()[0]
    u_own = phi - g_row @ ufeat
    err = 4.0 - (mu + phi[0] + row[0] + phi[1:] @ row[1:])
    lr, reg = 0.1, 0.05
    x = np.r_[1.0, row[1:]]  # ∂r̂/∂φ
    g_item = np.r_[1.0, phi[1:]]  # ∂r̂/∂(b_i, q_i)
    u_own_new = u_own + lr * (err * x - reg * u_own)
    ufeat_new = ufeat + lr * (np.outer(g_row, err * x) - reg * ufeat)
    own_new = own + lr * (err * g_item - reg * own)
    feat_new = feat + lr * (np.outer(F[0].toarray()[0], err * g_item) - reg * feat * (F[0].toarray()[0] != 0)[:, None])
    K.sgd_epoch_features(np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), np.array([4.0]), np.ones(1),
                         np.zeros(1, dtype=np.int64), theta, n_items, table, lr, reg, False, 0,
                         np.zeros(2, dtype=np.int64), np.zeros(0, dtype=np.int64), 0, F.indptr, F.indices, F.data,
                         feat, G.indptr, G.indices, G.data, ufeat, np.zeros(0, dtype=np.int64), np.zeros((0, 1)),
                         np.zeros((1, d)))
    np.testing.assert_allclose(ufeat, ufeat_new, rtol=1e-12)
    np.testing.assert_allclose(table[0], u_own_new + g_row @ ufeat_new, rtol=1e-12)
    np.testing.assert_allclose(feat, feat_new, rtol=1e-12)
    _, bi, Q = K.unpack(theta, n_items, d)
    np.testing.assert_allclose(np.r_[bi[0], Q[0]], own_new + F[0].toarray()[0] @ feat_new, rtol=1e-12)
    # Item 1 keeps its own part and follows its feature's move.
    np.testing.assert_allclose(np.r_[bi[1], Q[1]], own_other + F[1].toarray()[0] @ feat_new, rtol=1e-12)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_factorization_baseline_scores_new_items_by_their_features(loss):
    X, y, new, table, genre, taste = genre_data()
    if loss == "logistic":
        y = (y >= 4).astype(float)
    train = ~np.isin(X[:, 1], new)
    results = {}
    for name, features in [("ids", None), ("features", table)]:
        model = smr.FactorizationRecommender(loss=loss, random_state=0).fit(X[train], y[train],
                                                                             item_features=features)
        rmse = np.sqrt(np.mean((model.predict(X[~train]) - y[~train]) ** 2))
        ids, _ = model.recommend(np.arange(50), n=5, items=new)
        results[name] = rmse, np.mean(genre[ids] == taste[:50, None])
    assert results["features"][0] < results["ids"][0] - 0.05, results
    assert results["features"][1] > 0.7 > results["ids"][1] + 0.3, results
    # New items join with their features' parameters; persistence keeps them.
    model.partial_fit(np.array([[0, 200]]), np.array([1.0]),
                      item_features=smr.FeatureTable(pd.DataFrame({"genre": ["g1"]}, index=[200])))
    probe = np.array([[1, 200], [2, new[0]], [3, 5]])
    for loaded in copies(model):
        np.testing.assert_array_equal(loaded.predict(probe), model.predict(probe))


@pytest.mark.parametrize("make", [
    lambda: smr.MAMLFactorizationRecommender(n_factors=3, n_epochs=2, random_state=0),
    lambda: smr.ReptileFactorizationRecommender(n_factors=3, n_epochs=2, random_state=0),
    lambda: smr.FactorizationRecommender(n_factors=3, n_epochs=2, random_state=0),
])
def test_features_bias_parts_are_the_rating_weighted_regression_of_item_biases(make):
    X, y = make_ratings(n_users=40, n_items=20, random_state=0)
    model = make().fit(X, y, item_features=small_table())
    F = model._item_F.toarray()
    n = np.bincount(model._item_vocab.lookup(X[:, 1]), minlength=len(model.item_ids_)).astype(float)
    gamma = getattr(model, "item_shrinkage_", 0.0)
    w = n * n / (n + gamma) if gamma > 0 else n
    expected = np.linalg.solve(F.T @ (w[:, None] * F) + np.eye(F.shape[1]), F.T @ (w * model.item_biases_))
    np.testing.assert_allclose(model._feat[:, 0], expected, rtol=1e-9, atol=1e-12)
    # The known items keep their biases; a new item's is its features'.
    known = model.predict(X[:30])
    model._fit_feature_biases()
    np.testing.assert_allclose(model.predict(X[:30]), known, rtol=1e-12)
    new_item = model.predict([[X[0, 0], 22]]) - model.predict([[X[0, 0], 10**6]])  # 22: in the table, never rated
    row = small_table().rows(np.array([22]))[0].toarray()[0]
    np.testing.assert_allclose(new_item[0], row @ model._feat[:, 0] + row @ model._feat[:, 1:] @
                               model._users[model._user_vocab.lookup(X[:1, 0])[0], 1:], rtol=1e-9)


@pytest.mark.parametrize("cls", [smr.MAMLFactorizationRecommender, smr.ReptileFactorizationRecommender,
                                 smr.FactorizationRecommender])
def test_tables_follow_metadata_routing(cls):
    import sklearn
    from sklearn.model_selection import GridSearchCV

    X, y = make_ratings(n_users=30, n_items=20, random_state=0)
    users = smr.FeatureTable(pd.DataFrame({"group": [f"a{u % 2}" for u in range(30)]}, index=np.arange(30)))
    with sklearn.config_context(enable_metadata_routing=True):
        model = cls(n_factors=3, n_epochs=1, random_state=0).set_fit_request(item_features=True, user_features=True)
        cv = KFold(2, shuffle=True, random_state=0)
        out = cross_validate(model, X, y, cv=cv, params={"item_features": small_table(), "user_features": users},
                             return_estimator=True)
        assert all(est._item_F.shape[1] == 4 and est._user_G.shape[1] == 2 for est in out["estimator"])
        grid = GridSearchCV(model, {"n_factors": [2, 3]}, cv=cv).fit(X, y, item_features=small_table())
        assert grid.best_estimator_._item_F is not None
        with pytest.raises(sklearn.exceptions.UnsetMetadataPassedError, match="item_features"):
            cross_validate(cls(n_factors=3, n_epochs=1), X, y, cv=cv, params={"item_features": small_table()})
