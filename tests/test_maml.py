import functools
import pickle

import numpy as np
import pytest

from sklearn_metarec import (
    DivergenceError,
    EmpiricalBayesRecommender,
    FactorizationRecommender,
    MAMLFactorizationRecommender,
    ReptileFactorizationRecommender,
)
from sklearn_metarec.__main__ import rank_within_user
from sklearn_metarec.datasets import make_ratings
from sklearn_metarec.maml import support_bounds

from ._contract import RecommenderContract, small_data


class TestMAMLContract(RecommenderContract):
    estimator = functools.partial(MAMLFactorizationRecommender, n_factors=4, n_epochs=3, random_state=0)


def test_fit_equals_first_partial_fit():
    X, y = small_data()
    params = dict(n_factors=4, n_epochs=1, random_state=5)
    fitted = MAMLFactorizationRecommender(**params).fit(X, y)
    online = MAMLFactorizationRecommender(**params).partial_fit(X, y)
    np.testing.assert_array_equal(fitted.predict(X), online.predict(X))
    assert fitted.loss_curve_ == online.loss_curve_


def test_partial_fit_keeps_learning_and_changes_touched_users_only():
    X, y = small_data()
    model = MAMLFactorizationRecommender(n_factors=4, n_epochs=2, random_state=0).fit(X, y)
    untouched = X[X[:, 0] == 1]
    adapted_before = model.user_factors_.copy()
    new = np.array([[0, 3], [0, 4], [10_000, 3]])
    model.partial_fit(new, [5.0, 1.0, 4.0])
    assert model.n_iter_ == 3 and len(model.loss_curve_) == 3
    assert len(model.user_ids_) == len(np.unique(X[:, 0])) + 1
    row0 = 0  # user 0 sorts first among int ids
    assert not np.allclose(model.user_factors_[row0], adapted_before[row0])
    # Users not in the batch keep their cached parameters until refreshed.
    np.testing.assert_array_equal(model.user_factors_[1], adapted_before[1])
    assert np.isfinite(model.predict(untouched)).all()


@pytest.mark.parametrize("n_jobs", [1, 2])
@pytest.mark.parametrize("cls", [MAMLFactorizationRecommender, ReptileFactorizationRecommender])
def test_results_do_not_depend_on_thread_count(cls, n_jobs):
    # Item rows are reduced by several threads, each row in a fixed order.
    X, y = small_data()
    reference = cls(n_factors=4, n_epochs=3, random_state=0, n_jobs=1).fit(X, y)
    model = cls(n_factors=4, n_epochs=3, random_state=0, n_jobs=n_jobs).fit(X, y)
    np.testing.assert_array_equal(model.predict(X), reference.predict(X))


def test_n_jobs_restores_numba_threads():
    import numba

    before = numba.get_num_threads()
    X, y = small_data()
    MAMLFactorizationRecommender(n_factors=4, n_epochs=1, n_jobs=1).fit(X, y)
    assert numba.get_num_threads() == before


def test_divergence_is_reported_not_returned():
    X, y = small_data()
    with pytest.raises(DivergenceError, match="smaller inner_lr"):
        MAMLFactorizationRecommender(n_factors=4, inner_lr=50.0, n_epochs=5, random_state=0).fit(X, y)


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(inner_lr=-0.1), "inner_lr"),
        (dict(meta_lr=0.0), "meta_lr"),
        (dict(n_factors=0), "n_factors"),
        (dict(meta_batch_size=0), "meta_batch_size"),
        (dict(n_support=(5, 2)), "n_support"),
        (dict(n_support=1.5), "n_support"),
        (dict(n_support="many"), "n_support"),
        (dict(shrinkage=-1.0), "shrinkage"),
        (dict(task_weighting="items"), "task_weighting"),
    ],
)
def test_bad_hyper_parameters_are_rejected(params, match):
    X, y = small_data()
    with pytest.raises(ValueError, match=match):
        MAMLFactorizationRecommender(**params).fit(X, y)


def test_support_bounds():
    counts = np.array([1, 2, 5, 30])
    np.testing.assert_array_equal(support_bounds(10, counts)[0], [0, 1, 4, 10])
    lo, hi = support_bounds((3, 20), counts)
    np.testing.assert_array_equal(lo, [0, 1, 3, 3])
    np.testing.assert_array_equal(hi, [0, 1, 4, 20])
    np.testing.assert_array_equal(support_bounds(0.5, counts)[1], [0, 1, 2, 15])


@pytest.mark.parametrize(
    "param, value",
    [
        ("n_factors", 6), ("n_inner_steps", 2), ("inner_lr", 0.5), ("inner_reg", 0.2),
        ("meta_lr", 0.01), ("reg", 0.2), ("meta_batch_size", 8), ("n_epochs", 4),
        ("n_support", 2), ("first_order", True), ("init_std", 0.3), ("shrinkage", 0.0),
        ("task_weighting", "users"), ("item_shrinkage", 5.0), ("item_shrinkage", 0.0),
    ],
)
def test_each_hyper_parameter_changes_the_result(param, value):
    X, y = small_data()
    base = dict(n_factors=4, n_epochs=3, random_state=0)
    reference = MAMLFactorizationRecommender(**base).fit(X, y).predict(X)
    changed = MAMLFactorizationRecommender(**{**base, param: value}).fit(X, y).predict(X)
    assert not np.allclose(changed, reference)


def test_item_shrinkage_pulls_rare_items_in_more_than_frequent_ones():
    # β_i = reg + γ / n_i: the penalty adds up to about γ per item, so it
    # dominates for an item with 2 ratings and barely matters at 150.
    X, y = make_ratings(n_users=200, n_items=40, random_state=3)
    rare = np.array([[u, 1000 + j] for j in range(10) for u in (2 * j, 2 * j + 1)])
    X = np.vstack([X, rare])
    y = np.r_[y, np.full(len(rare), 5.0)]

    def norms(gamma):
        model = MAMLFactorizationRecommender(n_factors=4, n_epochs=10, item_shrinkage=gamma, random_state=0)
        model.fit(X, y)
        size = np.sqrt(model.item_biases_**2 + (model.item_factors_**2).sum(axis=1))
        is_rare = model.item_ids_ >= 1000
        return size[is_rare].mean(), size[~is_rare].mean()

    (rare0, freq0), (rare1, freq1) = norms(0.0), norms(20.0)
    # Measured: rare items shrink to 0.63 of their size, frequent ones to 0.81.
    assert rare1 / rare0 < 0.7
    assert rare1 / rare0 < freq1 / freq0 - 0.15


def test_shrinkage_moves_few_rating_users_less():
    # The support pseudo-count κ scales a user's steps by W / (W + κ): with
    # one inner step from the same prior, a 2-rating user moves 2/12 as far
    # with κ = 10 as with κ = 0, and a 40-rating user 40/50 as far.
    X, y = small_data()
    model = MAMLFactorizationRecommender(n_factors=4, n_epochs=2, n_inner_steps=1, random_state=0).fit(X, y)
    rng = np.random.RandomState(0)
    few = np.column_stack([np.full(2, 10**6), rng.choice(model.item_ids_, 2, replace=False)])
    many = np.column_stack([np.full(40, 10**7), rng.choice(model.item_ids_, 40)])
    new, ratings = np.vstack([few, many]), rng.uniform(1, 5, 42)
    prior = np.r_[model.user_bias_prior_, model.user_factors_prior_]
    moves = {}
    for kappa in (0.0, 10.0):
        folded = pickle.loads(pickle.dumps(model)).set_params(shrinkage=kappa).fold_in(new, ratings)
        rows = np.searchsorted(folded.user_ids_, [10**6, 10**7])
        moves[kappa] = np.c_[folded.user_biases_[rows], folded.user_factors_[rows]] - prior
    np.testing.assert_allclose(moves[10.0][0], moves[0.0][0] * 2 / 12, rtol=1e-10)
    np.testing.assert_allclose(moves[10.0][1], moves[0.0][1] * 40 / 50, rtol=1e-10)


def test_golden_values():
    # Guards against unnoticed changes to the algorithm; update on purpose only.
    # Updated 2026-12-02: lazy Adam's item rows share a second moment per block,
    # their steps capped at meta_lr. Updated 2026-12-03: new defaults (prior
    # factors at zero; for the squared loss reg 0, item_shrinkage estimated and
    # MAML's inner_lr 0.3); the old settings still give the old values
    # (test_old_defaults_give_the_old_values).
    X, y = make_ratings(n_users=30, n_items=20, mean_ratings=10, min_ratings=3, random_state=1)
    model = MAMLFactorizationRecommender(n_factors=3, n_epochs=2, random_state=0).fit(X, y)
    np.testing.assert_allclose(model.predict(X[:4]), GOLDEN, rtol=1e-7)


def test_old_defaults_give_the_old_values():
    X, y = make_ratings(n_users=30, n_items=20, mean_ratings=10, min_ratings=3, random_state=1)
    model = MAMLFactorizationRecommender(n_factors=3, n_epochs=2, inner_lr=0.15, reg=0.01, item_shrinkage=0.0,
                                         prior_factors="learned", random_state=0).fit(X, y)
    np.testing.assert_allclose(model.predict(X[:4]), [3.7555216622542047, 3.7381198349580345, 3.7485375234560827,
                                                      3.7708963412457135], rtol=1e-7)


GOLDEN = [3.8713831875012104, 3.856759348597502, 3.86417904763565, 3.8579105308340327]


def test_maml_beats_factorization_fold_in_on_five_rating_users():
    X, y = make_ratings(n_users=900, n_items=300, random_state=0)
    rng = np.random.RandomState(0)
    test_users = rng.permutation(900)[:200]
    is_test = np.isin(X[:, 0], test_users)
    X_train, y_train, X_test, y_test = X[~is_test], y[~is_test], X[is_test], y[is_test]
    rank = rank_within_user(X_test[:, 0], rng)
    counts = np.bincount(X_test[:, 0], minlength=900)[X_test[:, 0]]
    support = (counts >= 10) & (rank < 5)
    query = (counts >= 10) & (rank >= 5)
    rmse = {}
    for model in (MAMLFactorizationRecommender(random_state=0), FactorizationRecommender(random_state=0)):
        model.fit(X_train, y_train).fold_in(X_test[support], y_test[support])
        rmse[type(model).__name__] = np.sqrt(np.mean((model.predict(X_test[query]) - y_test[query]) ** 2))
    assert rmse["MAMLFactorizationRecommender"] < 0.98 * rmse["FactorizationRecommender"], rmse


def test_early_stopping_keeps_the_best_epoch_and_trains_nothing_on_validation_users():
    X, y = make_ratings(n_users=120, n_items=40, random_state=5)
    base = dict(n_factors=4, meta_lr=0.05, n_epochs=30, early_stopping=True, validation_fraction=0.2,
                n_iter_no_change=3, random_state=0)
    model = MAMLFactorizationRecommender(**base).fit(X, y)
    assert model.n_iter_ < 30 and len(model.validation_scores_) == model.n_iter_ == len(model.loss_curve_)
    assert model.best_validation_score_ == max(model.validation_scores_)
    assert model.validation_scores_[model.best_iteration_ - 1] == model.best_validation_score_
    assert model.n_iter_ - model.best_iteration_ >= 3
    # The kept parameters are those of the best epoch: a run that stops there
    # (same random draws up to that epoch) ends with the same model.
    short = MAMLFactorizationRecommender(**{**base, "n_epochs": model.best_iteration_, "n_iter_no_change": 99})
    np.testing.assert_array_equal(short.fit(X, y).predict(X), model.predict(X))
    # Every user, validation users included, is adapted and known afterwards.
    assert len(model.user_ids_) == 120


def test_early_stopping_never_trains_on_validation_users():
    X, y = make_ratings(n_users=100, n_items=30, random_state=6)
    model = MAMLFactorizationRecommender(n_factors=3, n_epochs=3, early_stopping=True, validation_fraction=0.3,
                                         random_state=0)
    start = MAMLFactorizationRecommender(n_factors=3, n_epochs=0, random_state=0).fit(X, y)
    # Give each user an item nobody else rates: exactly the validation
    # users' items must keep their initial parameters.
    extra = np.array([[u, 1000 + u] for u in range(100)])
    X2, y2 = np.vstack([X, extra]), np.r_[y, np.full(100, 5.0)]
    model.fit(X2, y2)
    start.fit(X2, y2)
    moved = ~np.isclose(model.item_biases_, start.item_biases_)
    own = model.item_ids_ >= 1000
    moved_users = model.item_ids_[own & moved] - 1000
    assert 0 < len(moved_users) < 100
    held = np.setdiff1d(np.arange(100), moved_users)
    assert len(held) == 30


def test_early_stopping_needs_validation_users():
    X, y = make_ratings(n_users=5, n_items=10, random_state=0)
    with pytest.raises(ValueError, match="validation users"):
        MAMLFactorizationRecommender(early_stopping=True, validation_fraction=0.01).fit(X, y)


def test_auto_item_shrinkage_is_the_empirical_bayes_estimate():
    X, y = small_data()
    model = MAMLFactorizationRecommender(n_factors=3, n_epochs=2, random_state=0).fit(X, y)
    assert model.item_shrinkage_ == pytest.approx(EmpiricalBayesRecommender().fit(X, y).item_shrinkage_, rel=1e-12)
    same = MAMLFactorizationRecommender(n_factors=3, n_epochs=2, reg=0.0, item_shrinkage=model.item_shrinkage_,
                                        random_state=0).fit(X, y)
    np.testing.assert_array_equal(same.predict(X), model.predict(X))
    # The estimate follows the data: items whose levels differ more need less shrinkage.
    spread = y + np.repeat([-1.0, 1.0], len(y) // 2 + 1)[:len(y)][np.argsort(np.argsort(X[:, 1]))]
    wider = MAMLFactorizationRecommender(n_factors=3, n_epochs=1, random_state=0).fit(X, spread)
    assert wider.item_shrinkage_ < model.item_shrinkage_


@pytest.mark.parametrize("loss", ["logistic", "bpr"])
def test_auto_regularization_of_the_implicit_losses_is_unchanged(loss):
    X, _ = small_data()
    auto = MAMLFactorizationRecommender(n_factors=3, n_epochs=2, loss=loss, random_state=0).fit(X)
    fixed = MAMLFactorizationRecommender(n_factors=3, n_epochs=2, loss=loss, reg=0.01, item_shrinkage=0.0,
                                         random_state=0).fit(X)
    np.testing.assert_array_equal(auto.predict(X), fixed.predict(X))
    assert auto.item_shrinkage_ == 0.0


def test_a_users_fold_in_does_not_depend_on_its_row():
    # Bit for bit, however many users were folded in before it, so that
    # concurrent fold-ins (serialized in any order) equal serial ones.
    X, y = small_data()
    model = MAMLFactorizationRecommender(n_factors=3, n_epochs=1, random_state=0).fit(X, y)
    rng = np.random.RandomState(0)
    new = np.column_stack([np.full(6, 10**6), rng.choice(model.item_ids_, 6, replace=False)])
    ratings = rng.uniform(1, 5, 6)
    rows = []
    for n_before in range(6):
        folded = pickle.loads(pickle.dumps(model))
        for u in range(n_before):
            folded.fold_in([[10**7 + u, model.item_ids_[u]]], [4.0])
        folded.fold_in(new, ratings)
        rows.append(folded.predict([[10**6, i] for i in model.item_ids_]))
    for row in rows[1:]:
        np.testing.assert_array_equal(row, rows[0])


@pytest.mark.parametrize("loss", ["squared", "logistic", "bpr"])
def test_prior_factors_stay_at_zero_unless_learned(loss):
    X, y = small_data()
    y = None if loss != "squared" else y
    zero = MAMLFactorizationRecommender(n_factors=3, n_epochs=2, loss=loss, prior_factors="zero",
                                        random_state=0).fit(X, y)
    assert not zero.user_factors_prior_.any() and zero.user_factors_.any()
    auto = MAMLFactorizationRecommender(n_factors=3, n_epochs=2, loss=loss, random_state=0).fit(X, y)
    assert auto.user_factors_prior_.any() == (loss != "squared")
    learned = MAMLFactorizationRecommender(n_factors=3, n_epochs=2, loss=loss, prior_factors="learned",
                                           random_state=0).fit(X, y)
    assert learned.user_factors_prior_.all()
    # The items start from the same draws either way.
    first = MAMLFactorizationRecommender(n_factors=3, n_epochs=0, loss=loss, random_state=0).fit(X, y)
    again = MAMLFactorizationRecommender(n_factors=3, n_epochs=0, loss=loss, prior_factors="learned",
                                         random_state=0).fit(X, y)
    np.testing.assert_array_equal(first.item_factors_, again.item_factors_)
