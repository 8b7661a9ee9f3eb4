"""Meta-SGD: the recommender contract, learned step sizes, and the 5-shot gain
over MAML at the same budget. Its hypergradients are checked against finite
differences in test_gradients.py."""

import functools

import numpy as np
import pytest

from sklearn_metarec import MAMLFactorizationRecommender, MetaSGDFactorizationRecommender
from sklearn_metarec.datasets import make_ratings
from sklearn_metarec.metrics import rmse
from sklearn_metarec.model_selection import cold_start_split

from ._contract import RecommenderContract, small_data


class TestMetaSGDContract(RecommenderContract):
    estimator = functools.partial(MetaSGDFactorizationRecommender, n_factors=4, n_epochs=3, random_state=0)


def test_learns_step_sizes_that_beat_maml_at_five_shots():
    X, y = make_ratings(n_users=1500, n_items=400, random_state=0)
    X_old, X_new, y_old, y_new = cold_start_split(X, y, n_support=0, test_size=0.2, random_state=0)
    X_sup, X_q, y_sup, y_q = cold_start_split(X_new, y_new, n_support=5, test_size=1.0, random_state=0)
    budget = dict(n_epochs=10, inner_lr=0.15, random_state=0)
    maml = MAMLFactorizationRecommender(**budget).fit(X_old, y_old).fold_in(X_sup, y_sup)
    meta_sgd = MetaSGDFactorizationRecommender(**budget).fit(X_old, y_old).fold_in(X_sup, y_sup)
    alpha = meta_sgd.inner_lr_
    assert np.mean(np.abs(alpha / 0.15 - 1) > 0.1) > 0.8  # nearly every step size moved
    # Bolder factor steps. (The bias step does not grow: the support
    # pseudo-count already shrinks few-shot users' biases.)
    assert np.median(alpha[1:]) > 0.3 and alpha[0] < 0.15
    assert rmse(y_q, meta_sgd.predict(X_q)) < 0.98 * rmse(y_q, maml.predict(X_q))


def test_fixed_inner_reg_stays_fixed_and_a_learned_one_needs_a_start():
    X, y = small_data()
    model = MetaSGDFactorizationRecommender(n_factors=3, n_epochs=2, inner_reg=0.02, learn_inner_reg=False,
                                            random_state=0).fit(X, y)
    assert model.inner_reg_ == 0.02
    learned = MetaSGDFactorizationRecommender(n_factors=3, n_epochs=2, inner_reg=0.02, random_state=0).fit(X, y)
    assert learned.inner_reg_ != 0.02
    with pytest.raises(ValueError, match="inner_reg must be > 0"):
        MetaSGDFactorizationRecommender(inner_reg=0.0).fit(X, y)


def test_fit_equals_first_partial_fit_and_serving_uses_the_learned_steps():
    X, y = small_data()
    params = dict(n_factors=4, n_epochs=1, random_state=5)
    fitted = MetaSGDFactorizationRecommender(**params).fit(X, y)
    online = MetaSGDFactorizationRecommender(**params).partial_fit(X, y)
    np.testing.assert_array_equal(fitted.predict(X), online.predict(X))
    np.testing.assert_array_equal(fitted.inner_lr_, online.inner_lr_)
    # Folding in with the learned α differs from folding in with the initial one.
    new = np.array([[999, X[0, 1]], [999, X[1, 1]], [999, X[2, 1]]])
    fitted.fold_in(new, [5.0, 1.0, 4.0])
    as_maml = MAMLFactorizationRecommender(**params).fit(X, y)
    as_maml._theta = fitted._theta.copy()
    as_maml.fold_in(new, [5.0, 1.0, 4.0])
    assert not np.allclose(fitted.predict(new), as_maml.predict(new))


def test_divergence_is_reported():
    from sklearn_metarec import DivergenceError

    X, y = small_data()
    with pytest.raises(DivergenceError):
        MetaSGDFactorizationRecommender(n_factors=3, n_epochs=5, inner_lr=5.0, random_state=0).fit(X, y)


def test_golden_values():
    # Guards against unnoticed changes to the algorithm; update on purpose only.
    # Updated 2026-12-02: lazy Adam's item rows share a second moment per block,
    # their steps capped at meta_lr. Updated 2026-12-03: new defaults (prior
    # factors at zero; for the squared loss reg 0, item_shrinkage estimated and
    # MAML's inner_lr 0.3); the old settings still give the old values
    # (test_old_defaults_give_the_old_values).
    X, y = make_ratings(n_users=30, n_items=20, mean_ratings=10, min_ratings=3, random_state=1)
    model = MetaSGDFactorizationRecommender(n_factors=3, n_epochs=2, random_state=0).fit(X, y)
    np.testing.assert_allclose(
        model.predict(X[:4]), [3.740319232863122, 3.7429159322593417, 3.722495389304321, 3.7232819376177217],
        rtol=1e-7,
    )
    # Without a hold-out, α and λ learn from the model's own batches, as before hyper_holdout existed.
    model = MetaSGDFactorizationRecommender(n_factors=3, n_epochs=2, hyper_holdout=0.0, random_state=0).fit(X, y)
    np.testing.assert_allclose(
        model.predict(X[:4]), [3.7511624737476614, 3.7403387111703212, 3.7429971411835514, 3.7387433164027057],
        rtol=1e-7,
    )


def test_held_out_users_train_only_the_step_sizes():
    X, y = make_ratings(n_users=400, n_items=60, random_state=2)
    model = MetaSGDFactorizationRecommender(n_factors=3, n_epochs=0, random_state=0).fit(X, y)
    users = np.arange(len(model.user_ids_))
    train, held = model._hyper_split(users)
    assert 0.06 < len(held) / len(users) < 0.14 and len(train) + len(held) == len(users)
    # Membership belongs to the user, whatever order or company it comes in.
    shuffled = np.random.default_rng(0).permutation(users)
    np.testing.assert_array_equal(np.sort(model._hyper_split(shuffled)[1]), held)
    np.testing.assert_array_equal(model._hyper_split(held)[1], held)

    # Items that only held-out users rated keep their initial parameters;
    # the others are trained, and so are α and λ.
    held_ids = model.user_ids_[held]
    new_items = 1000 + np.arange(held.size)
    X2 = np.vstack([X, np.c_[held_ids, new_items]])
    y2 = np.r_[y, np.full(held.size, 5.0)]
    start = MetaSGDFactorizationRecommender(n_factors=3, n_epochs=0, random_state=0).fit(X2, y2)
    trained = MetaSGDFactorizationRecommender(n_factors=3, n_epochs=3, random_state=0).fit(X2, y2)
    only_held = np.isin(trained.item_ids_, new_items)
    np.testing.assert_array_equal(trained.item_factors_[only_held], start.item_factors_[only_held])
    np.testing.assert_array_equal(trained.item_biases_[only_held], start.item_biases_[only_held])
    assert not np.allclose(trained.item_factors_[~only_held], start.item_factors_[~only_held])
    assert not np.allclose(trained.inner_lr_, start.inner_lr_)

    # Online, a held-out user's new ratings move α but not the model.
    theta, alpha = trained._theta.copy(), trained.inner_lr_
    trained.partial_fit(np.c_[np.full(3, held_ids[0]), new_items[:3]], [4.0, 2.0, 5.0])
    np.testing.assert_array_equal(trained._theta, theta)
    assert not np.array_equal(trained.inner_lr_, alpha) and np.isfinite(trained.loss_curve_[-1])


def test_step_sizes_learned_in_sample_transfer_worse_than_held_out_ones():
    # Noisy ratings, few per item and many factors: the item parameters
    # memorize the training users' query ratings, which step sizes learned on
    # those same users exploit.
    X, y = make_ratings(n_users=800, n_items=800, n_factors=20, mean_ratings=30, min_ratings=12, noise=1.2,
                        random_state=3)
    X_old, X_new, y_old, y_new = cold_start_split(X, y, n_support=0, test_size=0.25, random_state=0)
    X_sup, X_q, y_sup, y_q = cold_start_split(X_new, y_new, n_support=5, test_size=1.0, random_state=0)
    scores = {}
    for holdout in (0.0, 0.1):
        model = MetaSGDFactorizationRecommender(n_epochs=30, hyper_holdout=holdout, random_state=0)
        model.fit(X_old, y_old).fold_in(X_sup, y_sup)
        scores[holdout] = rmse(y_q, model.predict(X_q)), model.loss_curve_[-1]
    # In sample the training loss is lower, and the new users' error higher.
    assert scores[0.0][1] < 0.9 * scores[0.1][1] and scores[0.1][0] < 0.97 * scores[0.0][0]
