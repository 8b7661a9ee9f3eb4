"""Fuzz cases for tests/test_fuzz.py, run in a child process so that a
crash (a segfault in a kernel, an abort) fails the test instead of killing
the test run.

    python tests/_fuzz_driver.py ESTIMATOR N_CASES LOG

Each case fits an estimator on generated data with generated parameters,
then makes one more call (partial_fit, fold_in, predict, recommend) with
generated input and parameters. Every call must either raise a ValueError
or TypeError or give finite results; a call that raises must leave the
estimator exactly as it was (its pickle, byte for byte). Before a case runs,
its description is written to LOG, so that a crash names the case. Prints
the number of cases run and how many went how deep.
"""

import math
import pickle
import sys
import traceback
import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sklearn_metarec as smr

ALLOWED = (ValueError, TypeError)

# Values for any parameter: ordinary, at and past the bounds, and of the
# wrong kind.
ODD_VALUES = [0, 1, 2, 3, -1, -3, 0.5, 1e-12, 1e3, 2**31, 2**62, 10**20, math.nan, math.inf, -math.inf, True,
              False, None, "auto", "bogus", "bpr", "logistic", "squared", (1, 3), (0, 10**20), (-5, -1), (3, 1),
              0.1, 0.999, 1000, 1001, 1024, 1025]
# Loop counts that are valid but unbounded by design (as max_iter is):
# kept small so that a case ends.
SMALL_ONLY = {"n_epochs": [0, 1, 2, -1, 0.5, None, True, "bogus"],
              "n_sweeps": [0, 1, 2, -1, 0.5, None, True, "bogus"],
              "n_iter_no_change": [0, 1, 2, -1, 1.5, None]}
SMALL = dict(n_factors=3, n_epochs=2)

ids = st.one_of(
    st.integers(0, 6), st.integers(0, 6), st.integers(0, 6),
    st.sampled_from([-1, 2**63 - 1, 1.5, 2.0, math.nan, math.inf, None, "a", "b", True]),
)
ratings = st.one_of(st.floats(1, 5), st.floats(1, 5), st.sampled_from([0.0, 1.0, math.nan, math.inf, -1e300, 1e300]))


@st.composite
def data(draw, max_rows=30):
    n = draw(st.integers(0, max_rows))
    clean = draw(st.sampled_from([True, True, True, False]))  # most keep ids and ratings valid, to go deep
    if clean:
        X = np.array([[draw(st.integers(0, 6)), draw(st.integers(0, 8))] for _ in range(n)], dtype=np.int64)
        y = np.array([draw(st.floats(1, 5)) for _ in range(n)])
    else:
        rows = [[draw(ids), draw(ids)] for _ in range(n)]
        X = np.array(rows, dtype=object) if rows else np.empty((0, 2))
        y = np.array([draw(ratings) for _ in range(n)])
    shape = draw(st.sampled_from(["as is"] * 12 + ["one column", "three columns", "flat", "y short"]))
    if shape == "one column" and n:
        X = X[:, :1]
    elif shape == "three columns" and n:
        X = np.column_stack([X, np.zeros(n, dtype=X.dtype)])
    elif shape == "flat":
        X = X.ravel()
    elif shape == "y short":
        y = y[:-1]
    label = draw(st.sampled_from(["ratings"] * 6 + ["none", "binary"]))
    if label == "none":
        y = None
    elif label == "binary":
        y = (np.nan_to_num(y) > 3).astype(float)
    weight = draw(st.sampled_from([None] * 8 + ["random", "zeros", "negative", "nan"]))
    w = None
    if weight is not None:
        w = {"random": np.linspace(0.5, 2.0, n), "zeros": np.zeros(n), "negative": -np.ones(n),
             "nan": np.full(n, np.nan)}[weight]
    return X, y, w


@st.composite
def params(draw, estimator):
    names = sorted(estimator._parameter_constraints)
    chosen = draw(st.lists(st.sampled_from(names), max_size=2, unique=True))
    return {name: draw(st.sampled_from(SMALL_ONLY.get(name, ODD_VALUES))) for name in chosen}


def check_finite(values, what):
    values = np.asarray(values, dtype=float)
    bad = ~np.isfinite(values) & ~np.isneginf(values) if what == "recommend" else ~np.isfinite(values)
    if bad.any():
        raise AssertionError(f"{what} returned non-finite values: {values[bad][:5]}")


def unchanged(model, before, call):
    after = pickle.dumps(model)
    if after != before:
        raise AssertionError(f"{call} raised but changed the estimator")


def run(name, n_cases, log_path):
    """Fuzz one estimator; returns its summary line."""
    cls = getattr(smr, name)
    count = [0]
    stats = {"fitted": 0, "updated": 0, "refused": 0}
    log = open(log_path, "w", buffering=1)

    @settings(max_examples=n_cases, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(fit_params=params(cls), fit_data=data(), update=st.sampled_from(
        ["partial_fit", "fold_in", "predict", "recommend"]), update_params=params(cls), update_data=data(10),
        n=st.sampled_from([1, 3, 10**6, 0, -1, 2.5, True]))
    def case(fit_params, fit_data, update, update_params, update_data, n):
        count[0] += 1
        log.write(f"\ncase {count[0]}: {name}({fit_params}) fit on {fit_data!r}; then set_params({update_params})"
                  f".{update}({update_data!r}), n={n!r}\n")
        X, y, w = fit_data
        small = {k: v for k, v in SMALL.items() if k in cls._parameter_constraints}
        model = cls(**{**small, **fit_params})
        try:
            model.fit(X, y, sample_weight=w)
        except ALLOWED:
            return
        stats["fitted"] += 1
        check_finite(model.predict(np.asarray(X)[:5]) if np.ndim(X) == 2 else [], "predict after fit")
        X2, y2, w2 = update_data
        try:
            model.set_params(**update_params)
        except ALLOWED:
            return
        before = pickle.dumps(model)
        try:
            if update == "partial_fit":
                model.partial_fit(X2, y2, sample_weight=w2)
            elif update == "fold_in":
                model.fold_in(X2, y2, sample_weight=w2)
            elif update == "predict":
                check_finite(model.predict(X2), "predict")
            else:
                users = X2[:, 0] if np.ndim(X2) == 2 and len(X2) else X2
                check_finite(model.recommend(users, n=n)[1], "recommend")
        except ALLOWED:
            unchanged(model, before, update)
            stats["refused"] += 1
            return
        stats["updated"] += 1
        if update in ("partial_fit", "fold_in"):
            check_finite(model.predict(np.asarray(X)[:5]) if np.ndim(X) == 2 else [], f"predict after {update}")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        case()
    return (f"{count[0]} cases, {stats['fitted']} fitted, then {stats['updated']} calls done and "
            f"{stats['refused']} refused with the state unchanged")


def main(names, n_cases, log_pattern):
    """Fuzz each of ``names`` (comma-separated) in turn, in this one process
    (an interpreter and the kernels load once), each logging to
    ``log_pattern`` with ``{}`` replaced by its name. Prints one line per
    estimator, ``NAME: summary`` or ``NAME failed:`` and the traceback; the
    exit status is 1 if any failed."""
    failed = False
    for name in names.split(","):
        try:
            print(f"{name}: {run(name, n_cases, log_pattern.format(name))}", flush=True)
        except Exception:
            failed = True
            print(f"{name} failed:\n{traceback.format_exc()}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
