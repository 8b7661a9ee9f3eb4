"""Every kernel path run with Numba's bounds checking on (NUMBA_BOUNDSCHECK=1,
a fresh kernel cache), in a child process: an out-of-range index raises
IndexError there instead of reading stray memory. Small data; every
estimator, every loss, fit, partial_fit, fold_in, predict, recommend, and a
few fuzz cases."""

import os
import re
import sys
from pathlib import Path

import pytest

from . import _background

SCRIPT = r"""
import numpy as np
import numba
assert numba.config.BOUNDSCHECK, "bounds checking is off"
import sklearn_metarec as smr
from sklearn_metarec.datasets import make_ratings

X, y = make_ratings(n_users=25, n_items=15, mean_ratings=6, min_ratings=3, random_state=0)
new = np.column_stack([np.repeat([10**6, 10**7], 3), X[:6, 1]])
new[0, 1] = 999  # a new item as well
positives = X[y >= 4]
cases = [
    (smr.MAMLFactorizationRecommender, dict(), X, y),
    (smr.MAMLFactorizationRecommender, dict(first_order=True, item_shrinkage=2.0, early_stopping=True,
                                            validation_fraction=0.2, n_iter_no_change=1), X, y),
    (smr.MAMLFactorizationRecommender, dict(loss="logistic"), positives, None),
    (smr.MAMLFactorizationRecommender, dict(loss="logistic"), X, (y >= 4).astype(float)),
    (smr.MAMLFactorizationRecommender, dict(loss="bpr", n_negatives=3), positives, None),
    (smr.MetaSGDFactorizationRecommender, dict(), X, y),
    (smr.MetaSGDFactorizationRecommender, dict(loss="bpr", first_order=True), positives, None),
    (smr.ReptileFactorizationRecommender, dict(), X, y),
    (smr.ReptileFactorizationRecommender, dict(loss="logistic"), positives, None),
    (smr.FactorizationRecommender, dict(), X, y),
    (smr.FactorizationRecommender, dict(loss="logistic"), positives, None),
    (smr.EmpiricalBayesRecommender, dict(), X, y),
    (smr.MAMLFactorizationRecommender, dict(item_features=smr.FeatureTable(
        np.eye(3)[np.arange(20) % 3], ids=np.r_[np.arange(15), 999, 1000, 1001, 1002, 1003])), X, y),
    (smr.ReptileFactorizationRecommender, dict(item_features=smr.FeatureTable(
        np.eye(3)[np.arange(20) % 3], ids=np.r_[np.arange(15), 999, 1000, 1001, 1002, 1003])), X, y),
    # Users' attributes: tasks and fold-ins start from their own priors;
    # 10**6 + 1 (recommended for below) is an unknown user the table lists.
    (smr.FactorizationRecommender, dict(loss="logistic", item_features=smr.FeatureTable(
        np.eye(3)[np.arange(20) % 3], ids=np.r_[np.arange(15), 999, 1000, 1001, 1002, 1003]),
        user_features=smr.FeatureTable(np.eye(2)[np.arange(27) % 2], ids=np.r_[np.arange(25), 10**6, 10**6 + 1])),
     positives, None),
    (smr.FactorizationRecommender, dict(user_features=smr.FeatureTable(
        np.eye(2)[np.arange(27) % 2], ids=np.r_[np.arange(25), 10**6, 10**6 + 1])), X, y),
    # Context: each rating's code indexes the combinations' parameters.
    (smr.MAMLFactorizationRecommender, dict(context_columns=[2]),
     np.column_stack([X, np.arange(len(X)) % 3]), y),
    (smr.ReptileFactorizationRecommender, dict(loss="logistic", context_columns=[2]),
     np.column_stack([positives, np.arange(len(positives)) % 3]), None),
    (smr.FactorizationRecommender, dict(loss="logistic", context_columns=[2]),
     np.column_stack([X, np.arange(len(X)) % 3]), (y >= 4).astype(float)),
    (smr.MetaSGDFactorizationRecommender, dict(user_features=smr.FeatureTable(
        np.eye(2)[np.arange(22) % 2], ids=np.r_[np.arange(20), 10**6, 10**6 + 1])), X, y),
]
for cls, params, data, target in cases:
    small = {k: v for k, v in dict(n_factors=3, n_epochs=2, n_jobs=2).items() if k in cls._parameter_constraints}
    fit_params = {k: params.pop(k) for k in list(params) if k in ("item_features", "user_features")}
    model = cls(**{**small, **params, "random_state": 0}).fit(data, target, **fit_params)
    new_y = None if target is None else np.resize(target, len(new))
    model.partial_fit(data[:20], None if target is None else target[:20])
    # A context column's new rows take a value never seen: a new combination.
    extra = np.full((len(new) + 1, data.shape[1] - 2), 7)
    with_context = np.column_stack([np.vstack([new, [[-5, -5]]]), extra])
    model.fold_in(with_context[:-1], new_y)
    assert np.isfinite(model.predict(np.vstack([data, with_context]))).all()
    model.recommend(np.r_[data[:3, 0], 10**6, 10**6 + 1, -5], n=5)
    model.recommend(data[:2, 0], n=3, items=np.r_[data[:4, 1], 12345])
    for method in ("leave_one_out", "influence") if hasattr(model, "_inner_settings") else ("leave_one_out",):
        assert np.isfinite(model.explain(np.vstack([data[:3], with_context[-2:]]), method=method, n=2)["contribution"]).all()
    print("ok", cls.__name__, params)

# Numba drops bounds checks inside prange bodies (numba/numba#9380); the
# package compiles its parallel kernels serially here so that they are checked.
from sklearn_metarec import _kernels

n_items, d = 3, 4
theta = np.zeros(1 + d + n_items * d)
try:
    _kernels.predict(np.array([0, 5]), np.array([0, 1]), np.zeros((2, d)), theta, n_items, d, np.empty(2))
except IndexError:
    print("checked inside prange bodies")
"""


FUZZED = ("MAMLFactorizationRecommender", "FactorizationRecommender")


def BACKGROUND(folder):
    """The children (see tests/_background.py): SCRIPT first, which fills a
    kernel cache compiled with bounds checks, then fuzz cases on that cache."""
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(Path(folder) / "boundscheck-cache")}
    driver = Path(__file__).with_name("_fuzz_driver.py")
    jobs = {"boundscheck": ([sys.executable, "-c", SCRIPT], env, 1200)}
    pattern = str(Path(folder) / "boundscheck-{}.log")
    jobs["boundscheck-fuzz"] = ([sys.executable, str(driver), ",".join(FUZZED), "60", pattern], env, 1200)
    return jobs


def test_every_kernel_path_stays_in_bounds(request, tmp_path):
    code, out, err, _ = _background.outcome(request, sys.modules[__name__], "boundscheck", tmp_path)
    assert code == 0, err[-4000:]
    assert out.count("ok ") == 20
    assert "checked inside prange bodies" in out


def test_fuzz_cases_stay_in_bounds(request, tmp_path):
    pytest.importorskip("hypothesis")
    code, out, err, _ = _background.outcome(request, sys.modules[__name__], "boundscheck-fuzz", tmp_path)
    assert code == 0, (out[-3000:], err[-3000:])
    for estimator in FUZZED:
        assert re.search(rf"^{estimator}: 60 cases", out, re.M), out[-3000:]
