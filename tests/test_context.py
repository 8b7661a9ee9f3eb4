"""Context: each rating's context (b_c, e_c) enters its score as
b_c + q_i·e_c + φ·e_c. The meta-gradient with respect to the contexts'
parameters and the items', through the inner loop, against finite
differences."""

import pickle
import warnings

import numpy as np
import pytest

import sklearn_metarec as smr
from sklearn_metarec import _kernels as K

from ._reference import central_difference
from .test_features import copies, small_problem


@pytest.mark.parametrize("n_steps", [1, 2, 3])
@pytest.mark.parametrize("loss", ["squared", "logistic", "bpr"])
def test_context_and_item_gradients_match_finite_differences(loss, n_steps):
    model, data, item_reg, outer = small_problem(loss, n_steps)
    indptr = data[0]
    n_items, d = len(model._item_vocab), model.n_factors + 1
    rng = np.random.default_rng(4)
    ctxs = rng.integers(0, 3, indptr[-1]).astype(np.int64)  # 3 contexts, one per rating
    off0 = rng.normal(0.0, 0.4, (3, d))

    def kernel(theta, off, g_off=None):
        grad = np.zeros_like(theta)
        rows = np.empty(n_items, dtype=np.int64)
        value, n_rows, _ = K.meta_batch_grad(*data, theta, n_items, model._alpha(), item_reg, model._inner_settings(),
                                          outer, grad, np.empty(d + 1), rows, np.empty(n_items),
                                          np.empty((0, d)), np.empty((0, d)), ctxs, off,
                                          np.empty_like(off) if g_off is None else g_off)
        return value, grad, rows[:n_rows]

    # Without context parameters the kernel is the context-free one.
    theta = model._theta.copy()
    value0, grad0, _ = kernel(theta, np.zeros((3, d)))
    plain = np.zeros_like(theta)
    value_none, _, _ = K.meta_batch_grad(*data, theta, n_items, model._alpha(), item_reg, model._inner_settings(),
                                      outer, plain, np.empty(d + 1), np.empty(n_items, dtype=np.int64),
                                      np.empty(n_items), np.empty((0, d)), np.empty((0, d)), *K.no_context(d))
    assert value0 == value_none
    np.testing.assert_array_equal(grad0, plain)

    g_off = np.empty((3, d))
    value, grad, rows = kernel(theta, off0, g_off)
    assert value != value0  # the contexts move the loss
    numeric = central_difference(lambda o: kernel(theta, o.reshape(off0.shape))[0], off0.ravel()).reshape(off0.shape)
    assert np.abs(g_off).max() > 1e-3
    if loss == "bpr":  # a pair's context bias cancels
        np.testing.assert_allclose(g_off[:, 0], 0.0, atol=1e-12)
    np.testing.assert_allclose(g_off, numeric, rtol=1e-5, atol=1e-8)
    # The items' rows, through c = ... + q_i·e_c too (a few touched rows).
    for i in rows[:4]:
        for a in range(d):
            at = 1 + d + i if a == 0 else 1 + d + n_items + i * (d - 1) + a - 1
            up, down = theta.copy(), theta.copy()
            up[at] += 1e-6
            down[at] -= 1e-6
            expected = (kernel(up, off0)[0] - kernel(down, off0)[0]) / 2e-6
            np.testing.assert_allclose(grad[at], expected, rtol=1e-5, atol=1e-8)
    # φ₀'s gradient too.
    for a in range(d):
        up, down = theta.copy(), theta.copy()
        up[1 + a] += 1e-6
        down[1 + a] -= 1e-6
        np.testing.assert_allclose(grad[1 + a], (kernel(up, off0)[0] - kernel(down, off0)[0]) / 2e-6,
                                   rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_fold_in_in_context_matches_a_direct_adaptation(loss):
    # adapt_users with contexts equals T gradient steps on the context-shifted
    # scores, written out in NumPy.
    model, data, item_reg, outer = small_problem(loss, 3)
    indptr, items, ratings, weights = data[:4]
    n_items, d = len(model._item_vocab), model.n_factors + 1
    rng = np.random.default_rng(5)
    ctxs = rng.integers(0, 2, indptr[-1]).astype(np.int64)
    off = rng.normal(0.0, 0.4, (2, d))
    user = np.array([3], dtype=np.int64)
    out = np.empty((1, d))
    inner = K.inner_settings(lam=0.05, kappa=0.0, n_steps=3, logistic=loss == "logistic", n_neg=0)
    alpha = np.full(d, 0.2)
    K.adapt_users(indptr, items, ratings, weights, user, user, 0, model._theta, n_items, alpha, inner, out,
                  np.empty((0, d)), ctxs, off)
    mu = model._theta[0]
    phi0, bi, Q = K.unpack(model._theta, n_items, d)
    lo, hi = indptr[3], indptr[4]
    it, y, w, c = items[lo:hi], ratings[lo:hi], weights[lo:hi], ctxs[lo:hi]
    X = np.column_stack([np.ones(hi - lo), Q[it] + off[c, 1:]])
    base = mu + bi[it] + off[c, 0] + np.sum(Q[it] * off[c, 1:], axis=1)
    phi = phi0.copy()
    for _ in range(3):
        s = base + X @ phi
        slope = 2 * (s - y) if loss == "squared" else 1 / (1 + np.exp(-s)) - y
        phi = phi - alpha * (2 * 0.05 * phi + X.T @ (w * slope) / w.sum())
    np.testing.assert_allclose(out[0], phi, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------
# The estimators with context_columns


def weekend_data(n_users=200, n_items=40, n_rated=30, seed=0):
    """On weekdays everybody prefers genre 0, at weekends genre 1 (+1.2);
    X is (user, item, "weekday" or "weekend")."""
    rng = np.random.default_rng(seed)
    genre = np.arange(n_items) % 2
    users = np.repeat(np.arange(n_users), n_rated)
    items = np.concatenate([rng.choice(n_items, n_rated, replace=False) for _ in range(n_users)])
    weekend = rng.integers(0, 2, len(users))
    y = (3 + 1.2 * np.where(weekend == 1, genre[items] == 1, genre[items] == 0)
         + 0.3 * rng.normal(0, 1, n_users)[users] + rng.normal(0, 0.4, len(users)))
    X = np.empty((len(users), 3), dtype=object)
    X[:, 0], X[:, 1], X[:, 2] = users, items, np.where(weekend == 1, "weekend", "weekday")
    return X, y, genre


def planted_context_fits(make):
    """``make(context_columns)`` fitted on ``weekend_data``'s known users with
    and without the context column, the new users (160 on) folded in from
    10 ratings each: (their other ratings' RMSE by "ids" and "context", the
    model with context, the items' genres)."""
    X, y, genre = weekend_data()
    new = X[:, 0] >= 160
    support = new & (np.arange(len(X)) % 30 < 10)  # new users: 10 ratings each
    query = new & ~support
    rmse = {}
    for name, columns in [("ids", None), ("context", [2])]:
        cols = slice(None) if columns else slice(0, 2)
        model = make(columns)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", smr.ContextColumnsIgnoredWarning)
            model.fit(X[~new][:, cols], y[~new]).fold_in(X[support][:, cols], y[support])
        rmse[name] = np.sqrt(np.mean((model.predict(X[query][:, cols]) - y[query]) ** 2))
    return rmse, model, genre


def assert_the_context_is_recovered(rmse, model, genre):
    # The effect is 1.2 on half the ratings; without context it is noise.
    assert rmse["context"] < 0.8 * rmse["ids"], rmse
    # New users have rated 10 of the 40 items: 15 of each genre are left.
    lists = {c: model.recommend([160, 161, 162], n=8, context={2: c})[0].astype(int)
             for c in ("weekday", "weekend")}
    assert (genre[lists["weekday"]] == 0).mean() > 0.9 and (genre[lists["weekend"]] == 1).mean() > 0.9


@pytest.mark.parametrize("cls", [smr.MAMLFactorizationRecommender, smr.MetaSGDFactorizationRecommender])
def test_a_planted_context_effect_is_recovered(cls):
    # The weak penalty of a context known to matter (the default ties on
    # MovieLens's uninformative contexts and recovers less of this one).
    rmse, model, genre = planted_context_fits(
        lambda columns: cls(n_epochs=20, context_columns=columns, context_reg=0.005, random_state=0))
    assert_the_context_is_recovered(rmse, model, genre)
    # recommend scores as predict does, in the same context.
    ids, scores = model.recommend([161], n=5, context={2: "weekend"})
    rows = np.column_stack([np.full(5, 161, dtype=object), ids[0], np.full(5, "weekend", dtype=object)])
    np.testing.assert_allclose(model.predict(rows), scores[0], rtol=1e-12)


def test_context_reg_holds_the_contexts_in():
    X, y, genre = weekend_data(n_users=60)
    sizes = [np.abs(smr.MAMLFactorizationRecommender(n_epochs=5, context_columns=[2], context_reg=reg,
                                                     random_state=0).fit(X, y)._ctx_E).max()
             for reg in (0.0, 100.0)]
    assert sizes[1] < 0.1 * sizes[0], sizes


def test_context_from_a_frame_survives_partial_fit_fold_in_pickle_and_save():
    pd = pytest.importorskip("pandas")
    X, y, genre = weekend_data(n_users=60)
    frame = pd.DataFrame({"user": X[:, 0].astype(int), "item": X[:, 1].astype(int), "when": X[:, 2],
                          "hour": (np.arange(len(X)) % 24) / 24.0})
    model = smr.MAMLFactorizationRecommender(n_epochs=3, context_columns=["when", "hour"], random_state=0)
    model.fit(frame[:1200], y[:1200])
    assert model._ctx_names == ["when=weekday", "when=weekend", "hour"]
    model.partial_fit(frame[1200:1500], y[1200:1500])
    unseen = frame[1500:1510].assign(when="holiday")  # a category never seen adds nothing
    model.fold_in(unseen, y[1500:1510])
    probe = frame[:20]
    for loaded in copies(model):
        np.testing.assert_array_equal(loaded.predict(probe), model.predict(probe))
        np.testing.assert_array_equal(loaded.recommend([0, 1], n=4, context={"when": "weekend", "hour": 0.5})[0],
                                      model.recommend([0, 1], n=4, context={"when": "weekend", "hour": 0.5})[0])
    features = model._read_context(unseen, reset=False)
    np.testing.assert_array_equal(features, np.column_stack([np.zeros((10, 2)), unseen["hour"]]))
    assert np.isfinite(model.predict(unseen)).all()


def test_bad_context_is_refused_and_changes_nothing():
    X, y, genre = weekend_data(n_users=40)
    model = smr.MAMLFactorizationRecommender(n_epochs=2, context_columns=[2], random_state=0).fit(X, y)
    state = pickle.dumps(model)
    with pytest.raises(ValueError, match="positions from 2"):
        smr.MAMLFactorizationRecommender(n_epochs=1, context_columns=[5]).fit(X, y)
    with pytest.raises(ValueError, match="missing values"):
        model.fold_in(np.array([[0, 1, None]], dtype=object), np.array([3.0]))
    numeric = np.column_stack([X[:, :2].astype(float), np.where(X[:, 2] == "weekend", np.nan, 1.0)])
    with pytest.raises(ValueError, match="NaN"):
        smr.MAMLFactorizationRecommender(n_epochs=1, context_columns=[2]).fit(numeric, y)
    with pytest.raises(ValueError, match="context must map"):
        model.recommend([0], context={"day": "weekend"})
    model.set_params(context_columns=None)
    with pytest.raises(ValueError, match="context_columns was"):
        model.partial_fit(X[:5, :2], y[:5])
    model.set_params(context_columns=[2])
    assert pickle.dumps(model) == state
    plain = smr.MAMLFactorizationRecommender(n_epochs=1, random_state=0).fit(X[:, :2], y)
    with pytest.raises(ValueError, match="context_columns"):
        plain.recommend([0], context={2: "weekend"})


def test_time_context_buckets_unix_times():
    from sklearn_metarec.datasets import time_context

    hours = np.array([0, 7, 13, 19, 24 * 3 + 1]) * 3600
    assert time_context(hours).tolist() == [["Thu", "night"], ["Thu", "morning"], ["Thu", "afternoon"],
                                            ["Thu", "evening"], ["Sun", "night"]]
    assert time_context([0], utc_offset_hours=-1).tolist() == [["Wed", "evening"]]
    with pytest.raises(ValueError, match="finite"):
        time_context([np.nan])


def test_grid_search_over_the_context_penalty_with_cold_start_folds():
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV

    from sklearn_metarec.model_selection import ColdStartSplit

    X, y, genre = weekend_data(n_users=80)
    model = smr.MAMLFactorizationRecommender(n_epochs=3, context_columns=[2], random_state=0)
    search = GridSearchCV(model, {"context_reg": [0.005, 0.5]}, scoring="neg_root_mean_squared_error",
                          cv=ColdStartSplit(n_splits=2, n_support=10, test_size=0.25, random_state=0)).fit(X, y)
    assert search.best_params_["context_reg"] in (0.005, 0.5)
    assert np.isfinite(search.best_estimator_.predict(X[:5])).all()
    assert clone(model).get_params()["context_columns"] == [2]


# ----------------------------------------------------------------------
# The factorization baseline with context (a factorization machine's terms)


def test_one_sgd_step_in_context_is_the_fm_update():
    # One rating in a context of two features (values 1 and 0.5): the score
    # gains b_c + (p_u + q_i).e_c with (b_c, e_c) = m.E; user, item and
    # each context feature's row step along their own derivatives.
    d, n_items = 3, 2
    rng = np.random.default_rng(2)
    theta = rng.normal(0, 0.5, 1 + d + n_items * d)
    table = rng.normal(0, 0.5, (1, d))
    E = rng.normal(0, 0.5, (2, d))
    combos = np.array([[1.0, 0.5]])
    mu = theta[0]
    _, bi, Q = K.unpack(theta, n_items, d)
    phi, row = table[0].copy(), np.r_[bi[0], Q[0]]
    o = combos[0] @ E
    err = 4.0 - (mu + phi[0] + row[0] + phi[1:] @ row[1:] + o[0] + (phi[1:] + row[1:]) @ o[1:])
    lr, reg = 0.1, 0.05
    phi_new = phi + lr * (err * np.r_[1.0, row[1:] + o[1:]] - reg * phi)
    row_new = row + lr * (err * np.r_[1.0, phi[1:] + o[1:]] - reg * row)
    E_new = E + lr * (np.outer(combos[0], err * np.r_[1.0, phi[1:] + row[1:]]) - reg * E)
    none = (np.zeros(n_items + 1, dtype=np.int32), np.zeros(0, dtype=np.int32), np.zeros(0))
    no_users = (np.zeros(2, dtype=np.int32), np.zeros(0, dtype=np.int32), np.zeros(0))
    K.sgd_epoch_features(np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), np.array([4.0]), np.ones(1),
                         np.zeros(1, dtype=np.int64), theta, n_items, table, lr, reg, False, 0,
                         np.zeros(2, dtype=np.int64), np.zeros(0, dtype=np.int64), 0, *none, np.zeros((1, d)),
                         *no_users, np.zeros((1, d)), np.zeros(1, dtype=np.int64), combos, E)
    np.testing.assert_allclose(table[0], phi_new, rtol=1e-12)
    np.testing.assert_allclose(np.r_[bi[0], Q[0]], row_new, rtol=1e-12)
    np.testing.assert_allclose(E, E_new, rtol=1e-12)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_factorization_fold_in_in_context_is_the_exact_solution(loss):
    from scipy.optimize import minimize
    from scipy.special import expit

    X, y, genre = weekend_data(n_users=60)
    if loss == "logistic":
        y = (y > 3.5).astype(float)  # labels: no sampled negatives
    model = smr.FactorizationRecommender(n_factors=4, n_epochs=3, loss=loss, context_columns=[2],
                                         random_state=0).fit(X, y)
    rated = np.array([[9000, 3, "weekend"], [9000, 4, "weekday"], [9000, 7, "weekend"]], dtype=object)
    target = np.array([4.5, 2.0, 4.0]) if loss == "squared" else np.array([1.0, 0.0, 1.0])
    model.fold_in(rated, target)
    phi = model._users[model._user_vocab.lookup(np.array([9000]))[0]]
    # The objective in the model's own terms: predict in context, as a function of phi.
    items = model._item_vocab.lookup(rated[:, 1].astype(int))
    off = model._read_context(rated, reset=False) @ model._ctx_E
    b, Q = model.item_biases_[items], model.item_factors_[items]
    Xd = np.column_stack([np.ones(3), Q + off[:, 1:]])
    base = model.global_mean_ + b + off[:, 0] + np.sum(Q * off[:, 1:], axis=1)
    def objective(p):
        s = base + Xd @ p
        fit = (s - target) ** 2 if loss == "squared" else -np.log(expit(np.where(target == 1, s, -s)))
        return fit.sum() + model.reg * 3 * p @ p

    best = minimize(objective, np.zeros(len(phi)), method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(phi, best, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict(rated), (base + Xd @ phi) if loss == "squared" else
                               expit(base + Xd @ phi), rtol=1e-10)


def test_factorization_recovers_a_planted_context_effect():
    rmse, model, genre = planted_context_fits(
        lambda columns: smr.FactorizationRecommender(context_columns=columns, random_state=0))  # defaults
    assert_the_context_is_recovered(rmse, model, genre)
    X, _, _ = weekend_data()
    for loaded in copies(model):
        np.testing.assert_array_equal(loaded.predict(X[-20:]), model.predict(X[-20:]))
