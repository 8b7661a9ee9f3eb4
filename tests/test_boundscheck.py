"""Every kernel path run with Numba's bounds checking on (NUMBA_BOUNDSCHECK=1,
a fresh kernel cache), in a child process: an out-of-range index raises
IndexError there instead of reading stray memory. Small data; every
estimator, every loss, fit, partial_fit, fold_in, predict, recommend, and a
few fuzz cases."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Where conftest.py keeps the child started at collection: (folder, Popen).
CHILD = pytest.StashKey()

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
]
for cls, params, data, target in cases:
    small = {k: v for k, v in dict(n_factors=3, n_epochs=2, n_jobs=2).items() if k in cls._parameter_constraints}
    model = cls(**{**small, **params, "random_state": 0}).fit(data, target)
    new_y = None if target is None else np.resize(target, len(new))
    model.partial_fit(data[:20], None if target is None else target[:20])
    model.fold_in(new, new_y)
    assert np.isfinite(model.predict(np.vstack([data, new, [[-5, -5]]]))).all()
    model.recommend(np.r_[data[:3, 0], 10**6, -5], n=5)
    model.recommend(data[:2, 0], n=3, items=np.r_[data[:4, 1], 12345])
    print("ok", cls.__name__, params)
"""


def _env(folder):
    return {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(Path(folder) / "cache")}


def start(folder):
    """The child running SCRIPT, its output in ``folder``; it fills the
    folder's kernel cache, with bounds checks, for the fuzz cases too."""
    out = open(Path(folder) / "stdout", "w")
    err = open(Path(folder) / "stderr", "w")
    with out, err:
        return subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=out, stderr=err, env=_env(folder))


@pytest.fixture(scope="module")
def child(request, tmp_path_factory):
    """(folder, finished child): the one conftest.py started, or one started now."""
    started = request.config.stash.get(CHILD, None)
    if started is None:
        folder = tmp_path_factory.mktemp("boundscheck")
        started = (None, start(folder))
    else:
        folder = started[0].name
    started[1].wait(timeout=1200)
    return Path(folder), started[1]


def test_every_kernel_path_stays_in_bounds(child):
    folder, process = child
    assert process.returncode == 0, (folder / "stderr").read_text()[-4000:]
    assert (folder / "stdout").read_text().count("ok ") == 12


def test_fuzz_cases_stay_in_bounds(child, tmp_path):
    pytest.importorskip("hypothesis")
    driver = Path(__file__).with_name("_fuzz_driver.py")
    for estimator in ("MAMLFactorizationRecommender", "FactorizationRecommender"):
        log = tmp_path / f"{estimator}.log"
        result = subprocess.run([sys.executable, str(driver), estimator, "60", str(log)], capture_output=True,
                                text=True, timeout=1200, env=_env(child[0]))
        assert result.returncode == 0, (log.read_text()[-3000:], result.stderr[-3000:])
