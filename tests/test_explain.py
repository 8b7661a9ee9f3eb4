"""explain(): each rating's leave-one-out contribution to a prediction."""

import pickle

import numpy as np
import pytest

import sklearn_metarec as smr
from sklearn_metarec.datasets import make_ratings


@pytest.fixture(scope="module")
def data():
    return make_ratings(n_users=40, n_items=20, mean_ratings=8, min_ratings=5, random_state=0)


@pytest.mark.parametrize("cls", [smr.MAMLFactorizationRecommender, smr.MetaSGDFactorizationRecommender])
def test_contributions_are_exact_leave_one_out_fold_ins(cls, data):
    X, y = data
    model = cls(n_factors=4, n_epochs=3, random_state=0).fit(X, y)
    rows = np.array([[0, 3], [2, 7]])
    why = model.explain(rows)
    np.testing.assert_allclose(why["prediction"][why["row"] == 0][0], model.predict(rows[:1])[0], rtol=1e-12)
    np.testing.assert_allclose(why["prediction"][why["row"] == 1][0], model.predict(rows[1:])[0], rtol=1e-12)
    # The reference: the user's other ratings folded in as a new user.
    mine = np.flatnonzero(X[:, 0] == 2)
    assert (why["row"] == 1).sum() == len(mine)
    for record in why[why["row"] == 1][:3]:
        rest = mine[X[mine, 1] != record["rated_item"]]
        copy = pickle.loads(pickle.dumps(model))
        copy.fold_in(np.column_stack([np.full(len(rest), 10**6), X[rest, 1]]), y[rest])
        without = copy.predict([[10**6, 7]])[0]
        np.testing.assert_allclose(record["contribution"], record["prediction"] - without, rtol=1e-9, atol=1e-12)
    # The prior is what a user without ratings gets.
    np.testing.assert_allclose(why["prior"][0], model.predict([[10**7, 3]])[0], rtol=1e-12)


def test_records_are_ordered_and_cut_per_row(data):
    X, y = data
    model = smr.MAMLFactorizationRecommender(n_factors=4, n_epochs=2, random_state=0).fit(X, y)
    rows = np.array([[0, 3], [999, 3], [1, 5]])  # 999: unknown, no records
    full = model.explain(rows)
    top = model.explain(rows, n=2)
    assert set(full["row"]) == {0, 2} and list(top["row"]) == [0, 0, 2, 2]
    for r in (0, 2):
        sizes = np.abs(full["contribution"][full["row"] == r])
        assert (sizes[:-1] >= sizes[1:]).all()
        np.testing.assert_array_equal(top["contribution"][top["row"] == r], full["contribution"][full["row"] == r][:2])
    rated = X[X[:, 0] == 1]
    assert set(full["rated_item"][full["row"] == 2]) == set(rated[:, 1])
    with pytest.raises(ValueError, match="method"):
        model.explain(rows, method="influence-ish")
    with pytest.raises(ValueError, match="positive integer"):
        model.explain(rows, n=0)


@pytest.mark.parametrize("cls", [smr.FactorizationRecommender, smr.EmpiricalBayesRecommender,
                                 smr.ReptileFactorizationRecommender])
def test_baselines_explain_through_their_fold_in(cls, data):
    X, y = data
    params = {"n_factors": 3, "n_epochs": 2} if "n_epochs" in cls().get_params() else {}
    model = cls(**params).fit(X, y)
    why = model.explain([[4, 2]], n=3)
    assert len(why) == 3 and np.isfinite(why["contribution"]).all()
    if cls is not smr.FactorizationRecommender:  # its user rows come from SGD, not from its fold-in
        np.testing.assert_allclose(why["prediction"][0], model.predict([[4, 2]])[0], rtol=1e-12)


def test_explanations_in_context(data):
    X, y = data
    when = np.where(np.arange(len(X)) % 2, "weekday", "weekend")
    Xc = np.column_stack([X.astype(object), when])
    model = smr.MAMLFactorizationRecommender(n_factors=3, n_epochs=2, context_columns=[2], random_state=0).fit(Xc, y)
    rows = np.array([[0, 3, "weekend"], [0, 3, "weekday"]], dtype=object)
    why = model.explain(rows)
    np.testing.assert_allclose([why["prediction"][why["row"] == r][0] for r in (0, 1)], model.predict(rows),
                               rtol=1e-12)


@pytest.mark.parametrize("context", [False, True])
@pytest.mark.parametrize("n_steps", [1, 2, 3])
@pytest.mark.parametrize("loss", ["squared", "logistic", "bpr"])
def test_influence_is_the_derivative_of_the_prediction(loss, n_steps, context):
    from sklearn_metarec import _kernels as K

    from ._reference import central_difference
    from .test_features import small_problem

    model, data, _, _ = small_problem(loss, n_steps)
    indptr, items, ratings, weights = data[:4]
    n_items, d = len(model._item_vocab), model.n_factors + 1
    rng = np.random.default_rng(6)
    if context:
        ctxs, off = rng.integers(0, 3, indptr[-1]).astype(np.int64), rng.normal(0, 0.3, (3, d))
    else:
        ctxs, off = K.no_context(d)[:2]
    user = np.array([3], dtype=np.int64)
    start = model._user_priors(user) + rng.normal(0, 0.1, (1, d))
    x = np.r_[1.0, rng.normal(0, 1, d - 1)][None]
    inner = K.inner_settings(lam=0.05, kappa=2.0, n_steps=n_steps, logistic=loss != "squared",
                             n_neg=model._n_neg(), pairwise=loss == "bpr")
    lo, hi = indptr[3], indptr[4]
    out = np.empty(hi - lo)
    K.influence_users(indptr, items, ratings, weights, user, user, 5, model._theta, n_items, model._alpha(), inner,
                      start, ctxs, off, x, np.array([0, hi - lo], dtype=np.int64), out)

    def prediction(w_user):
        w = weights.copy()
        w[lo:hi] = w_user
        phi = np.empty((1, d))
        K.adapt_users(indptr, items, ratings, w, user, user, 5, model._theta, n_items, model._alpha(), inner, phi,
                      start, ctxs, off)
        return float(x[0] @ phi[0])

    numeric = central_difference(prediction, weights[lo:hi].copy())
    assert np.abs(out).max() > 1e-4
    np.testing.assert_allclose(out, numeric, rtol=1e-5, atol=1e-9)


def test_influence_estimates_leave_one_out_and_is_for_meta_learners(data):
    X, y = data
    model = smr.MAMLFactorizationRecommender(n_factors=4, n_epochs=3, random_state=0).fit(X, y)
    rows = np.array([[0, 3], [1, 5], [2, 7]])
    exact, fast = model.explain(rows), model.explain(rows, method="influence")
    key = lambda why: {(r, i): c for r, i, c in zip(why["row"], why["rated_item"], why["contribution"])}
    a, b = key(exact), key(fast)
    pairs = np.array([(a[k], b[k]) for k in a])
    assert np.corrcoef(pairs.T)[0, 1] > 0.95
    np.testing.assert_array_equal(exact["prediction"][:1], fast["prediction"][:1])
    with pytest.raises(ValueError, match="leave_one_out"):
        smr.EmpiricalBayesRecommender().fit(X, y).explain(rows, method="influence")


# ----------------------------------------------------------------------
# explain_features: the score split by part


def _sums(parts, n_rows):
    return np.bincount(parts["row"], weights=parts["contribution"], minlength=n_rows)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_feature_parts_sum_to_the_score(loss):
    import pandas as pd
    from scipy.special import logit

    X, y = make_ratings(n_users=40, n_items=20, mean_ratings=8, min_ratings=5, random_state=0)
    if loss == "logistic":
        y = (y >= 4).astype(float)
    weekday = np.arange(len(X)) % 2
    frame = pd.DataFrame({"user": X[:, 0], "item": X[:, 1], "weekday": np.where(weekday, "sat", "mon")})
    items = smr.FeatureTable(pd.DataFrame({"genre": [f"g{i % 3}" for i in range(22)]}, index=np.arange(22)))
    users = smr.FeatureTable(pd.DataFrame({"group": [f"a{u % 2}" for u in range(41)]}, index=np.r_[np.arange(40), 99]))
    model = smr.MAMLFactorizationRecommender(n_factors=3, n_epochs=3, loss=loss, prior_factors="learned",
                                             context_columns=["weekday"], random_state=0)
    model.fit(frame, y, item_features=items, user_features=users)
    rows = pd.DataFrame({"user": [0, 1, 99, 5000], "item": [3, 21, 4, 7], "weekday": ["sat", "mon", "sat", "sun"]})
    parts = model.explain_features(rows)
    score = model.predict(rows)
    np.testing.assert_allclose(_sums(parts, 4), logit(score) if loss == "logistic" else score, rtol=1e-10)
    mine = parts[parts["row"] == 1]
    assert mine["part"].tolist()[:2] == ["user", "user attribute"] and mine["name"][1] == "group=a1"
    # Item 21 was never rated: no own part, all of it its genre's.
    assert abs(mine["contribution"][mine["part"] == "item"][0]) < 1e-12
    assert mine["name"][mine["part"] == "item feature"].tolist() == ["genre=g0"]
    assert "context" in parts["part"][parts["row"] == 0]
    # An unseen context category and an unlisted new user add no records of theirs.
    assert not ((parts["row"] == 3) & np.isin(parts["part"], ["context", "user attribute"])).any()


@pytest.mark.parametrize("make", [
    lambda: smr.FactorizationRecommender(n_factors=3, n_epochs=2, random_state=0),
    lambda: smr.EmpiricalBayesRecommender(),
    lambda: smr.ReptileFactorizationRecommender(n_factors=3, n_epochs=2, random_state=0),
])
def test_feature_parts_of_every_estimator(make, data):
    X, y = data
    model = make().fit(X, y)
    rows = np.array([[0, 3], [1, 4], [777, 5]])
    parts = model.explain_features(rows)
    np.testing.assert_allclose(_sums(parts, 3), model.predict(rows), rtol=1e-10)
    assert parts["part"].tolist() == ["user", "item"] * 3
