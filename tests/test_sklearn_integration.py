"""The estimators inside scikit-learn's model-selection and pipeline tools."""

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from sklearn_metarec import FactorizationRecommender, MAMLFactorizationRecommender

from ._contract import small_data


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_grid_search_over_meta_learning_rates(n_jobs):
    X, y = small_data()
    search = GridSearchCV(
        MAMLFactorizationRecommender(n_factors=3, n_epochs=3, random_state=0),
        {"meta_lr": [0.001, 0.01], "inner_lr": [0.05, 0.2]},
        scoring="neg_root_mean_squared_error",
        cv=KFold(3, shuffle=True, random_state=0),
        n_jobs=n_jobs,
        error_score="raise",
    )
    search.fit(X, y)
    assert set(search.best_params_) == {"meta_lr", "inner_lr"}
    scores = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all() and len(np.unique(scores)) == 4
    assert search.best_estimator_.n_iter_ == 3


def test_grid_search_results_do_not_depend_on_n_jobs():
    X, y = small_data()
    grid = {"inner_lr": [0.05, 0.2]}
    kw = dict(scoring="neg_root_mean_squared_error", cv=KFold(3, shuffle=True, random_state=0))
    est = MAMLFactorizationRecommender(n_factors=3, n_epochs=3, random_state=0)
    one = GridSearchCV(est, grid, n_jobs=1, **kw).fit(X, y).cv_results_["mean_test_score"]
    two = GridSearchCV(est, grid, n_jobs=2, **kw).fit(X, y).cv_results_["mean_test_score"]
    np.testing.assert_array_equal(one, two)


def test_pipeline_and_cross_val_score():
    X, y = small_data()
    pipe = make_pipeline(FunctionTransformer(), FactorizationRecommender(n_factors=3, random_state=0))
    scores = cross_val_score(pipe, X, y, cv=3, scoring="neg_mean_absolute_error")
    assert scores.shape == (3,) and np.isfinite(scores).all()
    pipe.fit(X, y)
    assert pipe.predict(X[:5]).shape == (5,)


def test_pandas_input_and_score():
    pd = pytest.importorskip("pandas")
    X, y = small_data()
    frame = pd.DataFrame({"user": X[:, 0], "movie": X[:, 1]})
    model = MAMLFactorizationRecommender(n_factors=3, n_epochs=3, random_state=0).fit(frame, pd.Series(y))
    assert list(model.feature_names_in_) == ["user", "movie"]
    assert model.score(frame, y) > -1.0
    with pytest.warns(UserWarning, match="feature names"):
        from_array = model.predict(X)
    np.testing.assert_array_equal(model.predict(frame), from_array)
