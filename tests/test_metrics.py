"""Metrics against cases worked out by hand, a brute-force reference over
tie orders, scikit-learn's ndcg_score, and a slow catalogue-mode reference."""

import itertools
import math

import numpy as np
import pytest
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import ndcg_score, roc_auc_score
from sklearn.model_selection import GridSearchCV, cross_val_score

from sklearn_metarec import FactorizationRecommender, MAMLFactorizationRecommender
from sklearn_metarec.datasets import make_ratings
from sklearn_metarec.metrics import (
    auc_score,
    hit_rate_at_k,
    mae,
    make_recommender_scorer,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_report,
    recall_at_k,
    rmse,
)
from sklearn_metarec.model_selection import ColdStartSplit, cold_start_split

WITHIN = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "map": map_at_k,
    "hit_rate": hit_rate_at_k,
}


def test_errors_by_hand():
    y, p, users = [3, 3, 5], [4, 2, 5], ["a", "a", "b"]
    assert rmse(y, p) == pytest.approx(math.sqrt(2 / 3))
    assert rmse(y, p, users=users) == pytest.approx(0.5)  # (1 + 0) / 2
    assert mae(y, p) == pytest.approx(2 / 3)
    assert mae(y, p, users=users) == pytest.approx(0.5)


def test_ndcg_by_hand():
    # Ranked worst first: gains 1, 3, 5 against the ideal 5, 3, 1.
    dcg = 1 + 3 / math.log2(3) + 5 / 2
    idcg = 5 + 3 / math.log2(3) + 1 / 2
    assert ndcg_at_k([5, 3, 1], [0.1, 0.5, 0.9], users=[7, 7, 7], k=3) == pytest.approx(dcg / idcg)
    exp_dcg = 1 + 7 / math.log2(3) + 31 / 2
    exp_idcg = 31 + 7 / math.log2(3) + 1 / 2
    assert ndcg_at_k([5, 3, 1], [0.1, 0.5, 0.9], users=[7, 7, 7], k=3, gains="exponential") == (
        pytest.approx(exp_dcg / exp_idcg)
    )


# Three users: "a" ranks relevant, not, relevant, not, relevant; "b" ranks
# its one relevant item second; "c" has nothing relevant and is left out.
Y = [5, 2, 4, 1, 5, 3, 5, 1, 2]
S = [0.9, 0.8, 0.7, 0.6, 0.1, 0.9, 0.1, 0.5, 0.4]
U = ["a"] * 5 + ["b"] * 2 + ["c"] * 2


@pytest.mark.parametrize(
    "k, expected",
    [
        (1, {"precision": (1 + 0) / 2, "recall": (1 / 3 + 0) / 2, "map": (1 + 0) / 2, "hit_rate": 0.5}),
        (
            3,
            {
                "precision": (2 / 3 + 1 / 2) / 2,  # "b" ranks 2 items: 1 hit / min(3, 2)
                "recall": (2 / 3 + 1) / 2,
                "map": ((1 + 2 / 3) / 3 + (1 / 2) / 1) / 2,
                "hit_rate": 1.0,
            },
        ),
    ],
)
def test_binary_metrics_by_hand(k, expected):
    for name, fn in WITHIN.items():
        assert fn(Y, S, users=U, k=k, threshold=4) == pytest.approx(expected[name]), name


# -- ties: the expected value over random orders of tied items --------------


def _one_list(gains, relevant, k):
    """Every metric of one fully ordered list, written plainly."""
    ideal = sorted(gains, reverse=True)
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains[:k]))
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal[:k]))
    n_rel = sum(relevant)
    hits, ap = 0, 0.0
    for i, rel in enumerate(relevant[:k]):
        if rel:
            hits += 1
            ap += hits / (i + 1)
    return {
        "ndcg": dcg / idcg if idcg > 0 else None,
        "precision": hits / min(k, len(gains)) if n_rel else None,
        "recall": hits / n_rel if n_rel else None,
        "map": ap / min(k, n_rel) if n_rel else None,
        "hit_rate": float(hits > 0) if n_rel else None,
    }


def _brute_force(y, s, users, k, threshold):
    per_user = {name: [] for name in ["ndcg", *WITHIN]}
    for user in np.unique(users):
        rows = np.flatnonzero(users == user)
        groups = [list(rows[s[rows] == v]) for v in sorted(set(s[rows]), reverse=True)]
        totals, count = None, 0
        for orders in itertools.product(*(itertools.permutations(g) for g in groups)):
            ranked = [r for group in orders for r in group]
            values = _one_list([y[r] for r in ranked], [y[r] >= threshold for r in ranked], k)
            totals = values if totals is None else {
                n: (None if v is None else totals[n] + v) for n, v in values.items()
            }
            count += 1
        for name, total in totals.items():
            if total is not None:
                per_user[name].append(total / count)
    return {name: np.mean(v) for name, v in per_user.items()}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [1, 2, 4, 7])
def test_ties_match_brute_force_over_orders(seed, k):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 7, 6)
    users = np.repeat(np.arange(6), sizes)
    y = rng.integers(1, 6, len(users)).astype(float)
    s = rng.integers(0, 3, len(users)).astype(float)  # many ties
    expected = _brute_force(y, s, users, k, threshold=4)
    assert ndcg_at_k(y, s, users=users, k=k) == pytest.approx(expected["ndcg"], rel=1e-12)
    for name, fn in WITHIN.items():
        assert fn(y, s, users=users, k=k, threshold=4) == pytest.approx(expected[name], rel=1e-12), name


def test_ndcg_agrees_with_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(1, 6, (40, 9)).astype(float)
    s = rng.integers(0, 4, (40, 9)).astype(float)
    users = np.repeat(np.arange(40), 9)
    for k in (1, 3, 9):
        assert ndcg_at_k(y.ravel(), s.ravel(), users=users, k=k) == pytest.approx(
            ndcg_score(y, s, k=k), rel=1e-12
        )


def test_auc_agrees_with_scikit_learn_per_user():
    # Coarse scores make many ties, which roc_auc_score counts one half.
    rng = np.random.default_rng(3)
    users = rng.integers(0, 30, 400)
    y = rng.integers(0, 2, 400).astype(float)
    s = rng.integers(0, 5, 400).astype(float)
    expected = [
        roc_auc_score(y[users == u], s[users == u])
        for u in np.unique(users)
        if 0 < y[users == u].sum() < (users == u).sum()
    ]
    assert auc_score(y, s, users=users, threshold=1) == pytest.approx(np.mean(expected), rel=1e-12)
    perm = rng.permutation(400)
    assert auc_score(y[perm], s[perm], users=users[perm], threshold=1) == pytest.approx(np.mean(expected))


def test_auc_of_a_constant_score_is_one_half_and_users_of_one_kind_are_left_out():
    assert auc_score([1, 0, 0, 1, 1], [2.0] * 5, users=[0, 0, 0, 1, 1], threshold=1) == 0.5
    with pytest.warns(UndefinedMetricWarning, match="AUC"):
        assert math.isnan(auc_score([1, 1], [0.1, 0.2], users=[0, 0], threshold=1))


def test_row_order_and_user_labels_do_not_matter():
    rng = np.random.default_rng(1)
    users = rng.integers(0, 20, 300)
    y = rng.integers(1, 6, 300).astype(float)
    s = rng.normal(size=300)
    perm = rng.permutation(300)
    names = np.array([f"user{u}" for u in users], dtype=object)
    for fn in (ndcg_at_k, *WITHIN.values()):
        assert fn(y, s, users=users, k=5) == pytest.approx(fn(y[perm], s[perm], users=names[perm], k=5))


def test_no_relevant_item_gives_nan_with_a_warning():
    with pytest.warns(UndefinedMetricWarning, match="undefined"):
        assert math.isnan(precision_at_k([1, 2], [0.1, 0.2], users=[0, 0], threshold=4))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: rmse([1, np.nan], [1, 2]), ValueError, "NaN"),
        (lambda: rmse([1, 2], [1, 2, 3]), ValueError, "inconsistent"),
        (lambda: rmse([], []), ValueError, "empty"),
        (lambda: rmse([1, 2], [1, 2], users=[0]), ValueError, "one id per rating"),
        (lambda: ndcg_at_k([1, 2], [1, 2], users=None), TypeError, "users is required"),
        (lambda: ndcg_at_k([1, 2], [1, 2], users=[0, 0], k=0), ValueError, "k must be"),
        (lambda: ndcg_at_k([1, 2], [1, 2], users=[0, 0], gains="log"), ValueError, "gains"),
        (lambda: make_recommender_scorer("roc"), ValueError, "Unknown metric"),
        (lambda: make_recommender_scorer("ndcg", mode="all"), ValueError, "mode"),
    ],
)
def test_bad_input_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


# -- the estimator-level report and scorers -----------------------------------


@pytest.fixture(scope="module")
def cold_start():
    X, y = make_ratings(n_users=120, n_items=60, random_state=0)
    X_train, X_test, y_train, y_test = cold_start_split(X, y, n_support=5, test_size=0.25, random_state=0)
    model = FactorizationRecommender(n_factors=4, n_epochs=10, random_state=0).fit(X_train, y_train)
    return model, X_train, X_test, y_test


def test_catalogue_mode_matches_a_slow_reference(cold_start):
    model, X_train, X_test, y_test = cold_start
    k = 10
    report = ranking_report(model, X_test, y_test, k=k, mode="catalogue")
    users = np.unique(X_test[:, 0])
    recs, _ = model.recommend(users, n=k)
    per_user = {name: [] for name in ["ndcg", *WITHIN]}
    for user, rec in zip(users, recs):
        rated = dict(zip(X_test[X_test[:, 0] == user, 1], y_test[X_test[:, 0] == user]))
        gains = [rated.get(item, 0.0) for item in rec]
        relevant = [rated.get(item, 0.0) >= 4 for item in rec]
        n_rel = sum(v >= 4 for v in rated.values())
        ideal = sorted(rated.values(), reverse=True)[:k]
        dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
        per_user["ndcg"].append(dcg / sum(g / math.log2(i + 2) for i, g in enumerate(ideal)))
        if n_rel:
            hits = np.cumsum(relevant)
            per_user["precision"].append(hits[-1] / k)
            per_user["recall"].append(hits[-1] / n_rel)
            per_user["map"].append(sum(h / (i + 1) for i, (h, r) in enumerate(zip(hits, relevant)) if r)
                                   / min(k, n_rel))
            per_user["hit_rate"].append(float(hits[-1] > 0))
    for name, values in per_user.items():
        assert report[name] == pytest.approx(np.mean(values), rel=1e-12), name
    assert report["recall"] > 0  # the check above is not vacuous


def test_catalogue_auc_pairs_relevant_test_items_with_every_unseen_item(cold_start):
    model, X_train, X_test, y_test = cold_start
    aucs = []
    for user in np.unique(X_test[:, 0]):
        seen = set(X_train[X_train[:, 0] == user, 1])
        rated = dict(zip(X_test[X_test[:, 0] == user, 1], y_test[X_test[:, 0] == user]))
        candidates = np.array([i for i in model.item_ids_ if i not in seen])
        labels = np.array([rated.get(i, 0.0) >= 4 for i in candidates])
        if 0 < labels.sum() < len(labels):
            scores = model.predict(np.column_stack([np.full(len(candidates), user), candidates]))
            aucs.append(roc_auc_score(labels, scores))
    report = ranking_report(model, X_test, y_test, mode="catalogue", metrics=["auc"])
    assert report["auc"] == pytest.approx(np.mean(aucs), rel=1e-12)
    assert report["auc"] > 0.55


def test_report_errors_and_within_mode(cold_start):
    model, _, X_test, y_test = cold_start
    report = ranking_report(model, X_test, y_test, k=5)
    y_pred = model.predict(X_test)
    assert report["rmse"] == pytest.approx(rmse(y_test, y_pred))
    assert report["user_mae"] == pytest.approx(mae(y_test, y_pred, users=X_test[:, 0]))
    assert report["ndcg"] == pytest.approx(ndcg_at_k(y_test, y_pred, users=X_test[:, 0], k=5))


def test_scorers_in_cross_validation():
    X, y = make_ratings(n_users=80, n_items=40, random_state=1)
    cv = ColdStartSplit(n_splits=3, n_support=5, random_state=0)
    model = FactorizationRecommender(n_factors=4, n_epochs=5, random_state=0)
    neg = cross_val_score(model, X, y, cv=cv, scoring=make_recommender_scorer("rmse"))
    train, test = next(cv.split(X))
    fitted = FactorizationRecommender(n_factors=4, n_epochs=5, random_state=0).fit(X[train], y[train])
    assert neg[0] == pytest.approx(-rmse(y[test], fitted.predict(X[test])))
    ndcg = cross_val_score(model, X, y, cv=cv, scoring=make_recommender_scorer("ndcg", k=5))
    assert ((ndcg > 0) & (ndcg <= 1)).all()
    assert "ndcg" in repr(make_recommender_scorer("ndcg"))


def test_grid_search_with_cold_start_split_and_catalogue_scorer():
    X, y = make_ratings(n_users=80, n_items=40, random_state=2)
    search = GridSearchCV(
        MAMLFactorizationRecommender(n_factors=3, n_epochs=2, random_state=0),
        {"inner_lr": [0.05, 0.2]},
        cv=ColdStartSplit(n_splits=2, n_support=5, random_state=0),
        scoring={"ndcg": make_recommender_scorer("ndcg", k=5, mode="catalogue"),
                 "rmse": make_recommender_scorer("rmse")},
        refit="rmse",
        error_score="raise",
    )
    search.fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_ndcg"]).all()
    assert (search.cv_results_["mean_test_rmse"] < 0).all()


def test_catalogue_mode_with_only_unknown_test_items(cold_start):
    model, _, X_test, _ = cold_start
    user = X_test[0, 0]
    report = ranking_report(model, [[user, 10**6], [user, 10**6 + 1]], [5.0, 2.0], mode="catalogue",
                            metrics=["recall", "ndcg", "hit_rate"])
    assert report == {"recall": 0.0, "ndcg": 0.0, "hit_rate": 0.0}
