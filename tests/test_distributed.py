"""The Dask tests (``_distributed_cases.py``) run as a child pytest in the
background lane (see ``tests/_background.py``): their cluster's worker
processes keep the cores busy while this process would only wait, and the
other lane has the room. This test reports their outcome."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from . import _background

CASES = Path(__file__).with_name("_distributed_cases.py")


def BACKGROUND(folder):
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:logging", "-rs",
            "--rootdir", str(CASES.parent.parent), str(CASES)]
    return {"distributed": (argv, None, 900)}


def test_the_dask_cases_pass(request, tmp_path):
    pytest.importorskip("distributed")
    pytest.importorskip("dask.dataframe")
    code, out, err, _ = _background.outcome(request, sys.modules[__name__], "distributed", tmp_path)
    assert code == 0, (out[-6000:], err[-3000:])
    summary = out.strip().splitlines()[-1]
    # Every case ran: none skipped, none deselected.
    assert re.fullmatch(r"=* ?\d+ passed(, \d+ warnings?)? in .*", summary), summary
    assert int(re.search(r"(\d+) passed", summary).group(1)) >= 22, summary


def test_a_round_average_weights_the_head_by_tasks_and_each_row_by_the_workers_that_moved_it():
    from sklearn_metarec.distributed import _average_rounds

    d = 2
    # (tasks, head, rows moved, their values, hyper)
    parts = [(1, np.array([0.0, 3.0, 3.0]), np.array([4, 1]), np.array([[4.0, 4.0], [1.0, 1.0]]), np.array([1.0])),
             (3, np.array([4.0, 7.0, 3.0]), np.array([1, 2]), np.array([[5.0, 9.0], [2.0, 2.0]]), np.array([5.0]))]
    head, rows, values, hyper = _average_rounds(parts, d)
    np.testing.assert_allclose(head, [3.0, 6.0, 3.0])
    np.testing.assert_allclose(hyper, [4.0])
    np.testing.assert_array_equal(rows, [1, 2, 4])
    # Row 1 moved on both: their task-weighted mean; rows 2 and 4 keep the one move.
    np.testing.assert_allclose(values, [[4.0, 7.0], [2.0, 2.0], [4.0, 4.0]])
    assert _average_rounds([(p[0], *p[1:4], None) for p in parts], d)[3] is None


@pytest.mark.parametrize("local_steps, client, error, match", [
    (0, object(), ValueError, "at least 1"),
    (-3, object(), ValueError, "at least 1"),
    (2.5, object(), TypeError, "must be an int"),
    (True, object(), TypeError, "must be an int"),
    ("4", object(), TypeError, "must be an int"),
    (4, None, ValueError, "pass a client"),
])
def test_bad_local_steps_are_refused_before_anything_changes(local_steps, client, error, match):
    from sklearn_metarec import MAMLFactorizationRecommender
    from sklearn_metarec.datasets import make_ratings

    X, y = make_ratings(n_users=20, n_items=10, random_state=0)
    model = MAMLFactorizationRecommender(n_factors=2, n_epochs=1, random_state=0)
    with pytest.raises(error, match=match):
        model.fit(X, y, client=client, local_steps=local_steps)
    assert not hasattr(model, "_theta")
    fitted = MAMLFactorizationRecommender(n_factors=2, n_epochs=1, random_state=0).fit(X, y)
    before = fitted.predict(X)
    with pytest.raises(error, match=match):
        fitted.partial_fit(X, y, client=client, local_steps=local_steps)
    np.testing.assert_array_equal(fitted.predict(X), before)
    assert fitted.n_iter_ == 1
