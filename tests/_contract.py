"""The recommender contract: tests every estimator's test class inherits.

A subclass sets ``estimator`` (a factory of a small, fast instance).
"""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from sklearn_metarec.datasets import make_ratings


def small_data(seed=0):
    return make_ratings(n_users=40, n_items=25, mean_ratings=12, min_ratings=3, random_state=seed)


class RecommenderContract:
    estimator = None

    def fitted(self, **params):
        X, y = small_data()
        return self.estimator(**params).fit(X, y), X, y

    # -- unknown ids --------------------------------------------------------

    def test_unknown_user_gets_the_prior(self):
        model, X, y = self.fitted()
        known_item = X[0, 1]
        pred = model.predict([[10_000, known_item], [20_000, known_item]])
        assert np.all(np.isfinite(pred))
        assert pred[0] == pred[1]
        q = model.item_factors_[model.item_ids_ == known_item][0]
        b = model.item_biases_[model.item_ids_ == known_item][0]
        expected = model.global_mean_ + model.user_bias_prior_ + b + model.user_factors_prior_ @ q
        assert pred[0] == pytest.approx(expected, rel=1e-12)

    def test_unknown_item_contributes_nothing(self):
        model, X, y = self.fitted()
        user = X[0, 0]
        row = np.flatnonzero(model.user_ids_ == user)[0]
        pred = model.predict([[user, 99_999]])
        assert pred[0] == pytest.approx(model.global_mean_ + model.user_biases_[row], rel=1e-12)

    def test_unknown_ids_of_another_kind_never_error(self):
        model, X, y = self.fitted()
        pred = model.predict(np.array([["someone", "something"]], dtype=object))
        assert np.isfinite(pred).all()

    # -- shapes and dtypes --------------------------------------------------

    def test_empty_input_is_rejected(self):
        with pytest.raises(ValueError, match="0 sample"):
            self.estimator().fit(np.empty((0, 2)), np.empty(0))
        model, _, _ = self.fitted()
        with pytest.raises(ValueError, match="0 sample"):
            model.predict(np.empty((0, 2)))

    def test_predict_is_batch_invariant(self):
        model, X, y = self.fitted()
        rows = np.vstack([X[:30], [[12345, X[0, 1]], [X[0, 0], 54321]]])
        full = model.predict(rows)
        one_by_one = np.array([model.predict(rows[n : n + 1])[0] for n in range(len(rows))])
        np.testing.assert_array_equal(full, one_by_one)
        np.testing.assert_array_equal(model.predict(rows[::-1]), full[::-1])

    def test_pickle_round_trip(self):
        model, X, y = self.fitted()
        restored = pickle.loads(pickle.dumps(model))
        np.testing.assert_array_equal(restored.predict(X), model.predict(X))
        # The restored model keeps learning exactly as the original does.
        new = np.array([[0, 1], [999, 2], [999, 3]])
        model.fold_in(new, [4.0, 2.0, 5.0])
        restored.fold_in(new, [4.0, 2.0, 5.0])
        np.testing.assert_array_equal(restored.predict(new), model.predict(new))

    def test_id_dtypes(self):
        X, y = small_data()
        reference = self.estimator().fit(X, y).predict(X)
        # Zero-padded strings sort as the ints do, so rows get the same codes.
        padded = np.char.zfill(X.astype(str), 6)
        for ids in (X.astype(np.int32), X.astype(np.float64), padded, padded.astype(object), X.astype(object)):
            np.testing.assert_allclose(self.estimator().fit(ids, y).predict(ids), reference, rtol=1e-10)

    def test_string_ids_and_large_ints_in_a_dataframe(self):
        pd = pytest.importorskip("pandas")
        X, y = small_data()
        big = 2**62 + X[:, 0]  # would merge if cast to float64
        frame = pd.DataFrame({"user": big, "item": ["item%06d" % i for i in X[:, 1]]})
        model = self.estimator().fit(frame, y)
        assert model.user_ids_.dtype == np.int64
        assert len(model.user_ids_) == len(np.unique(X[:, 0]))
        np.testing.assert_array_equal(model.feature_names_in_, ["user", "item"])
        reference = self.estimator().fit(X, y).predict(X)
        np.testing.assert_allclose(model.predict(frame), reference, rtol=1e-10)

    def test_extra_columns_warn(self):
        from sklearn_metarec import ContextColumnsIgnoredWarning

        X, y = small_data()
        with pytest.warns(ContextColumnsIgnoredWarning, match="first two"):
            self.estimator().fit(np.column_stack([X, X[:, 0]]), y)

    # -- bad input ----------------------------------------------------------

    @pytest.mark.parametrize("bad, match", [(np.nan, "NaN"), (np.inf, "infinity")])
    def test_non_finite_ratings_are_rejected(self, bad, match):
        X, y = small_data()
        y = y.copy()
        y[3] = bad
        with pytest.raises(ValueError, match=match):
            self.estimator().fit(X, y)

    def test_non_finite_ids_are_rejected(self):
        X, y = small_data()
        X = X.astype(float)
        X[2, 1] = np.nan
        with pytest.raises(ValueError, match="item id"):
            self.estimator().fit(X, y)

    def test_wrong_shapes_are_rejected(self):
        X, y = small_data()
        with pytest.raises(ValueError, match="1 feature"):
            self.estimator().fit(X[:, :1], y)
        with pytest.raises(ValueError, match="1D"):
            self.estimator().fit(X[:, 0], y)
        with pytest.raises(ValueError, match="inconsistent numbers of samples"):
            self.estimator().fit(X, y[:-1])
        with pytest.raises(ValueError, match="y is None"):
            self.estimator().fit(X, None)
        with pytest.raises(TypeError, match="[Ss]parse"):
            from scipy import sparse

            self.estimator().fit(sparse.csr_matrix(X), y)
        model = self.estimator().fit(X, y)
        with pytest.raises(ValueError, match="features"):
            model.predict(np.column_stack([X, X]))

    def test_bad_sample_weights_are_rejected(self):
        X, y = small_data()
        with pytest.raises(ValueError, match="Negative"):
            self.estimator().fit(X, y, sample_weight=-np.ones(len(y)))
        with pytest.raises(ValueError, match="zero"):
            self.estimator().fit(X, y, sample_weight=np.zeros(len(y)))
        with pytest.raises(ValueError, match="shape"):
            self.estimator().fit(X, y, sample_weight=np.ones(3))

    def test_unfitted(self):
        with pytest.raises(NotFittedError):
            self.estimator().predict([[0, 1]])
        with pytest.raises(NotFittedError):
            self.estimator().fold_in([[0, 1]], [3.0])

    # -- state --------------------------------------------------------------

    def test_same_random_state_same_results(self):
        X, y = small_data()
        a = self.estimator(random_state=3).fit(X, y).predict(X)
        b = self.estimator(random_state=3).fit(X, y).predict(X)
        c = self.estimator(random_state=4).fit(X, y).predict(X)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)

    def test_clone_is_unfitted_with_same_params(self):
        model, _, _ = self.fitted()
        copy = clone(model)
        assert copy.get_params() == model.get_params()
        assert not hasattr(copy, "n_iter_")

    def test_fold_in_personalizes_a_new_user_without_touching_items(self):
        model, X, y = self.fitted()
        items_before = model.item_factors_.copy()
        new = 10**6
        prior_before = model.predict([[new, X[0, 1]]])
        model.fold_in([[new, X[0, 1]], [new, X[1, 1]], [new, X[2, 1]]], [5.0, 5.0, 5.0])
        assert model.predict([[new, X[0, 1]]])[0] > prior_before[0]
        np.testing.assert_array_equal(model.item_factors_, items_before)
        assert new in model.user_ids_

    def test_ids_of_another_kind_are_rejected_when_added(self):
        model, X, y = self.fitted()
        with pytest.raises(TypeError, match="one kind"):
            model.fold_in([["newcomer", X[0, 1]]], [4.0])
        assert np.isfinite(model.predict(X)).all()

    def test_fold_in_new_item_predicts_as_unknown(self):
        model, X, y = self.fitted()
        before = model.predict([[X[0, 0], 777_777]])
        model.fold_in([[X[0, 0], 777_777]], [3.0])
        assert 777_777 in model.item_ids_
        after_known_user = model.predict([[X[5, 0], 777_777]])
        unknown = model.predict([[X[5, 0], 888_888]])
        np.testing.assert_array_equal(after_known_user, unknown)
        assert np.isfinite(before).all()

    def test_partial_fit_with_unseen_users_and_items(self):
        X, y = small_data()
        first = X[:, 0] < 20
        model = self.estimator().partial_fit(X[first], y[first])
        n_users, n_items = len(model.user_ids_), len(model.item_ids_)
        old_items = model.item_ids_.copy()
        model.partial_fit(X[~first], y[~first])
        assert len(model.user_ids_) == len(np.unique(X[:, 0])) > n_users
        assert len(model.item_ids_) >= n_items
        np.testing.assert_array_equal(model.item_ids_[: len(old_items)], old_items)
        assert model.n_iter_ >= 2
        assert np.isfinite(model.predict(X)).all()

    def test_sample_weight_changes_the_fit(self):
        X, y = small_data()
        w = np.ones(len(y))
        np.testing.assert_array_equal(
            self.estimator().fit(X, y, sample_weight=w).predict(X), self.estimator().fit(X, y).predict(X)
        )
        w[: len(y) // 2] = 5.0
        assert not np.allclose(
            self.estimator().fit(X, y, sample_weight=w).predict(X), self.estimator().fit(X, y).predict(X)
        )

    def test_failed_fold_in_changes_nothing(self):
        model, X, y = self.fitted()
        before = model.predict(X)
        n_users = len(model.user_ids_)
        with pytest.raises(TypeError, match="one kind"):
            model.fold_in(np.array([[10**7, "an item"]], dtype=object), [4.0])
        assert len(model.user_ids_) == n_users
        np.testing.assert_array_equal(model.predict(X), before)

    # -- recommend ------------------------------------------------------------

    def _reference_top_n(self, model, user, X, n, exclude_seen=True):
        """Rank every item with ``predict`` and a stable sort: the slow truth."""
        items = model.item_ids_
        scores = model.predict(np.column_stack([np.full(len(items), user), items]))
        if exclude_seen:
            scores[np.isin(items, X[X[:, 0] == user, 1])] = -np.inf
        order = np.argsort(-scores, kind="stable")[:n]
        return items[order], scores[order]

    def test_recommend_matches_ranking_by_predict(self):
        model, X, y = self.fitted()
        users = np.unique(X[:, 0])[:6]
        ids, scores = model.recommend(users, n=7)
        assert ids.shape == scores.shape == (6, 7)
        for row, user in enumerate(users):
            ref_ids, ref_scores = self._reference_top_n(model, user, X, 7)
            np.testing.assert_array_equal(ids[row], ref_ids)
            np.testing.assert_array_equal(scores[row], ref_scores)  # bit for bit

    def test_recommend_excludes_seen_items_unless_asked(self):
        model, X, y = self.fitted()
        user = X[0, 0]
        seen = X[X[:, 0] == user, 1]
        n_items = len(model.item_ids_)
        ids, scores = model.recommend(user, n=n_items)
        eligible = n_items - len(np.unique(seen))
        assert not np.isin(ids[:eligible], seen).any()
        assert np.isneginf(scores[eligible:]).all() and np.isfinite(scores[:eligible]).all()
        ids_all, scores_all = model.recommend(user, n=n_items, exclude_seen=False)
        assert np.isfinite(scores_all).all()
        assert sorted(ids_all.tolist()) == sorted(model.item_ids_.tolist())
        # Folded-in ratings count as seen too.
        top = ids[0]
        model.fold_in([[user, top]], [1.0])
        assert top not in model.recommend(user, n=5)[0]

    def test_recommend_unknown_users_get_the_prior_list(self):
        model, X, y = self.fitted()
        ids, scores = model.recommend([10**6, 10**7], n=5)
        np.testing.assert_array_equal(ids[0], ids[1])
        ref_ids, ref_scores = self._reference_top_n(model, 10**6, X, 5)
        np.testing.assert_array_equal(ids[0], ref_ids)
        np.testing.assert_array_equal(scores[0], ref_scores)

    def test_recommend_is_batch_invariant(self):
        model, X, y = self.fitted()
        users = np.r_[np.unique(X[:, 0])[:8], 10**6]
        ids, scores = model.recommend(users, n=4)
        for row, user in enumerate(users):
            one_ids, one_scores = model.recommend([user], n=4)
            np.testing.assert_array_equal(one_ids[0], ids[row])
            np.testing.assert_array_equal(one_scores[0], scores[row])

    def test_recommend_among_candidates(self):
        model, X, y = self.fitted()
        user = X[0, 0]
        candidates = np.array([model.item_ids_[3], 555_555, model.item_ids_[1]])
        ids, scores = model.recommend(user, n=10, items=candidates, exclude_seen=False)
        assert sorted(ids.tolist()) == sorted(candidates.tolist())
        expected = model.predict(np.column_stack([np.full(3, user), candidates]))
        order = np.argsort(-expected, kind="stable")
        np.testing.assert_array_equal(ids, candidates[order])
        np.testing.assert_array_equal(scores, expected[order])
        with pytest.raises(ValueError, match="more than once"):
            model.recommend(user, items=[candidates[0], candidates[0]])

    @pytest.mark.parametrize("n", [0, -1, 2.5, True])
    def test_recommend_rejects_bad_n(self, n):
        model, X, y = self.fitted()
        with pytest.raises(ValueError, match="n must be a positive integer"):
            model.recommend([X[0, 0]], n=n)

    def test_recommend_unfitted(self):
        with pytest.raises(NotFittedError):
            self.estimator().recommend([0])
