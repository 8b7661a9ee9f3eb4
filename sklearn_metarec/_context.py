"""Context columns of X: read, encoded as features (categories one-hot,
numbers as they are) and grouped into the distinct combinations the
kernels index ("context codes"). Plain arrays only, so that a fitted model
pickles and saves as before."""

import numbers

import numpy as np


def context_columns(X, columns):
    """[(name, values)] of the context ``columns`` of ``X``: names of a
    DataFrame's columns, or positions (2 or more) in an array."""
    if hasattr(X, "iloc"):
        missing = [c for c in columns if c not in X.columns]
        if missing:
            raise ValueError(f"context_columns names columns that X does not have: {missing}.")
        return [(str(c), _frame_column(X[c])) for c in columns]
    out = []
    for c in columns:
        if isinstance(c, bool) or not isinstance(c, numbers.Integral) or not 2 <= c < X.shape[1]:
            raise ValueError(f"context_columns of an array X are column positions from 2 to {X.shape[1] - 1} "
                             f"(0 and 1 are the user and item ids); got {c!r}.")
        out.append((str(c), np.asarray(X[:, c])))
    return out


def _frame_column(column):
    if str(column.dtype) in ("category", "string"):
        return column.astype(object).to_numpy()
    return column.to_numpy()


def _features(columns):
    """[(feature name, values as float64)]: a numeric column as it is, any
    other column one 0/1 feature per value ("weekday=Mon")."""
    out = []
    for name, values in columns:
        if values.dtype.kind in "biuf":
            numeric = values.astype(np.float64)
            if not np.isfinite(numeric).all():
                raise ValueError(f"context column {name!r} holds NaN or infinite values; fill or drop them first.")
            out.append((name, numeric))
            continue
        if values.dtype.kind not in "OUS":
            raise TypeError(f"context column {name!r} has dtype {values.dtype}, which is neither numeric nor "
                            "categorical; bucket times with sklearn_metarec.datasets.time_context.")
        missing = np.equal(values, None)
        if values.dtype.kind == "O":
            missing |= np.asarray(values != values, dtype=bool)  # NaN is not equal to itself
        if missing.any():
            raise ValueError(f"context column {name!r} holds missing values; fill or drop them first.")
        levels, codes = np.unique(values.astype(str), return_inverse=True)
        codes = codes.ravel()
        for j, level in enumerate(levels):
            out.append((f"{name}={level}", (codes == j).astype(np.float64)))
    return out


def fit_context(X, columns):
    """(feature names, the rows' features (n, n_features)) for a first fit."""
    features = _features(context_columns(X, columns))
    return [n for n, _ in features], np.column_stack([v for _, v in features])


def transform_context(X, columns, names):
    """The rows' features in the fitted ``names`` order; a category never
    seen in fitting adds nothing (its row has zeros there)."""
    return _aligned(context_columns(X, columns), X.shape[0], names)


def context_row(context, columns, names):
    """The features (n_features,) of one context given as a mapping from
    each of ``columns`` to its value."""
    if not hasattr(context, "keys") or set(context.keys()) != set(columns):
        raise ValueError(f"context must map each of the context columns {list(columns)} to a value; got "
                         f"{context!r}.")
    return _aligned([(str(c), np.asarray([context[c]])) for c in columns], 1, names)[0]


def _aligned(columns, n, names):
    matrix = np.zeros((n, len(names)))
    position = {n: j for j, n in enumerate(names)}
    for name, values in _features(columns):
        if name in position:
            matrix[:, position[name]] = values
    return matrix


def context_codes(matrix, combos):
    """(codes of ``matrix``'s rows among ``combos``, combos grown by the
    rows not among them yet). Codes of known combinations never change."""
    both = np.vstack([combos, matrix])
    # Rows grouped by a random projection, a 1-D sort (np.unique of rows
    # sorted them as records, most of a fit's time); exact when the groups'
    # rows are equal, which is checked.
    key = both @ np.random.default_rng(0).uniform(1.0, 2.0, both.shape[1])
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    unique = both[first]
    if not np.array_equal(unique[inverse], both):  # two combinations shared a key
        unique, first, inverse = np.unique(both, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
    # Known combinations keep their codes; new ones follow in order of appearance.
    code_of = np.full(len(unique), -1, dtype=np.int64)
    code_of[inverse[: len(combos)]] = np.arange(len(combos))
    new = np.flatnonzero(code_of < 0)
    new = new[np.argsort(first[new], kind="stable")]
    code_of[new] = len(combos) + np.arange(len(new))
    return code_of[inverse[len(combos):]], np.vstack([combos, unique[new]])
