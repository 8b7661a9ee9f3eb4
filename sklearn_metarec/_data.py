"""Input validation, id vocabularies and the rating log.

Everything here runs before any kernel: Numba does no bounds checking, so a
bad index must be caught in Python.
"""

import numbers
import warnings

import numpy as np
from scipy import sparse
from sklearn.exceptions import DataConversionWarning


class ContextColumnsIgnoredWarning(UserWarning):
    """X has columns beyond (user id, item id); they are not used yet."""


def _column(X, j):
    """Column ``j`` of X as a 1-D array of its own dtype.

    Columns are taken one by one so that integer ids in a DataFrame that also
    holds floats are never cast to float (which would merge large ids).
    """
    if hasattr(X, "iloc"):
        return np.asarray(X.iloc[:, j].to_numpy())
    return X[:, j]


def check_id_column(col, name, source="Input X"):
    """``col`` if it can hold ids of kind ``name`` ("user" or "item"): no
    NaN, infinity or missing values, no complex numbers; ``source`` names
    where the ids came from in the errors."""
    if col.dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {source} holds ids.")
    if col.dtype.kind == "f":
        if not np.isfinite(col).all():
            raise ValueError(
                f"{source} contains NaN or infinity in the {name} id column; "
                "every rating needs a user id and an item id."
            )
    elif col.dtype.kind == "O":
        missing = np.equal(col, None)
        try:
            missing |= np.asarray(col != col, dtype=bool)  # NaN is not equal to itself
        except (TypeError, ValueError):  # e.g. pandas.NA, whose truth value is ambiguous
            missing[:] = True
        if missing.any():
            raise ValueError(
                f"{source} contains NaN or missing values in the {name} id column; "
                "every rating needs a user id and an item id."
            )
    elif col.dtype.kind not in "biuUS":
        raise TypeError(f"The {name} id column has unsupported dtype {col.dtype}.")
    return col


def as_2d(X):
    """X as a 2-D array, or the DataFrame itself; rejects sparse input."""
    if X is None:
        raise ValueError("X is None; expected (user id, item id) rows.")
    if sparse.issparse(X):
        raise TypeError(
            "Sparse input is not supported: X holds (user id, item id) rows; "
            "pass a dense array or a DataFrame."
        )
    if not hasattr(X, "iloc"):
        X = np.asarray(X)
        if X.dtype.kind == "c":
            raise ValueError("Complex data not supported: X holds ids.")
        if X.ndim != 2:
            raise ValueError(
                f"Expected a 2D array of (user id, item id) rows, got a {X.ndim}D "
                "array instead. Reshape your data, e.g. array.reshape(-1, 2)."
            )
    return X


def check_ids(X):
    """Validate X and return (user ids, item ids, n_columns).

    X is 2-D array-like or a DataFrame whose first two columns hold the
    user id and the item id.
    """
    X = as_2d(X)
    n_samples, n_columns = X.shape
    if n_samples == 0:
        raise ValueError(
            f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of "
            "1 is required."
        )
    if n_columns < 2:
        raise ValueError(
            f"Found array with {n_columns} feature(s) (shape={X.shape}) while a "
            "minimum of 2 is required: the user id and the item id columns."
        )
    users = check_id_column(_column(X, 0), "user")
    items = check_id_column(_column(X, 1), "item")
    return users, items, n_columns


def _check_vector(v, n_samples, name):
    """A finite float64 vector of length ``n_samples``, with scikit-learn's
    messages. Written out rather than through ``check_array`` because this
    runs on every ``fold_in`` call, where validation dominates the cost."""
    v = np.asarray(v)
    if v.ndim == 2 and v.shape[1] == 1:
        warnings.warn(
            f"A column-vector {name} was passed when a 1d array was expected. Please "
            f"change the shape of {name} to (n_samples, ), for example using ravel().",
            DataConversionWarning,
            stacklevel=4,
        )
        v = v.ravel()
    if v.ndim != 1:
        raise ValueError(f"{name} should be a 1d array, got an array of shape {v.shape} instead.")
    if v.dtype.kind == "c":
        raise ValueError(f"Complex data not supported in {name}.")
    try:
        v = v.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must hold numbers; got dtype {v.dtype}.") from None
    if not np.isfinite(v).all():
        if np.isnan(v).any():
            raise ValueError(f"Input {name} contains NaN.")
        raise ValueError(f"Input {name} contains infinity or a value too large for dtype('float64').")
    if len(v) != n_samples:
        raise ValueError(
            f"Found input variables with inconsistent numbers of samples: [{n_samples}, {len(v)}]"
        )
    return v


def check_ratings(y, n_samples):
    """Ratings as a finite float64 vector of length ``n_samples``."""
    if y is None:
        raise ValueError(
            "This estimator requires y to be passed, but the target y is None."
        )
    return _check_vector(y, n_samples, "y")


def check_weights(sample_weight, n_samples):
    """Sample weights: None means ones; otherwise finite, >= 0, not all zero."""
    if sample_weight is None:
        return np.ones(n_samples)
    if isinstance(sample_weight, numbers.Number):
        sample_weight = np.full(n_samples, float(sample_weight))
    w = np.asarray(sample_weight)
    if w.ndim != 1 or w.shape[0] != n_samples:
        raise ValueError(f"sample_weight.shape == {w.shape}, expected ({n_samples},)!")
    w = _check_vector(w, n_samples, "sample_weight")
    if (w < 0).any():
        raise ValueError("Negative values in data passed to sample_weight.")
    if not w.any():
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return w


def _typed_key(v):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, numbers.Number) and not isinstance(v, bool):
        if isinstance(v, float) and v.is_integer():
            v = int(v)  # 3.0 and 3 are one id, as in numeric columns
        return f"number:{v!r}"
    if isinstance(v, str):
        return f"str:{v}"
    return f"{type(v).__qualname__}:{v!r}"


def _typed_keys(values):
    """Comparable keys for columns whose ids cannot be compared to each other
    (mixed kinds): each id's kind and repr. This path is a Python loop and is
    meant only for such unusual columns."""
    return np.array([_typed_key(v) for v in values], dtype=object)


def _kind(ids):
    if ids.dtype.kind in "biuf":
        return "number"
    if ids.dtype.kind in "US":
        return "string"
    return "object"


class Vocabulary:
    """Raw ids of one column and their row numbers (codes).

    ``ids[code]`` is the raw id of a row. Codes are assigned in sorted order
    by ``fit`` and appended in sorted order by ``extend``; lookups go through
    a sorted copy of the keys with ``searchsorted``.
    """

    def __init__(self, name):
        self.name = name
        self.ids = None

    def __len__(self):
        return 0 if self.ids is None else len(self.ids)

    def _set(self, ids, mixed):
        keys = _typed_keys(ids) if mixed else ids
        order = np.argsort(keys, kind="stable")
        self.ids, self.mixed, self._order, self._sorted = ids, mixed, order, keys[order]

    def fit(self, values):
        """Build the vocabulary; returns the codes of ``values``."""
        try:
            ids, codes = np.unique(values, return_inverse=True)
            mixed = False
        except TypeError:  # ids of several kinds in one object column
            _, first, codes = np.unique(_typed_keys(values), return_index=True, return_inverse=True)
            ids, mixed = values[first], True
        self._set(ids, mixed)
        return codes.astype(np.int64).ravel()

    def lookup(self, values):
        """Codes of ``values``; −1 for ids not in the vocabulary."""
        codes = np.full(len(values), -1, dtype=np.int64)
        if self.ids is None or len(values) == 0:
            return codes
        if {_kind(self.ids), _kind(values)} == {"number", "string"}:
            return codes  # a number is never equal to a string id
        keys = _typed_keys(values) if self.mixed else values
        try:
            pos = np.minimum(np.searchsorted(self._sorted, keys), len(self._sorted) - 1)
            hit = np.asarray(self._sorted[pos] == keys, dtype=bool)
        except TypeError:  # incomparable ids: match them one by one (unusual columns only)
            table = dict(zip(_typed_keys(self.ids), range(len(self.ids))))
            return np.array([table.get(key, -1) for key in _typed_keys(values)], dtype=np.int64)
        codes[hit] = self._order[pos[hit]]
        return codes

    def extend(self, values):
        """Codes of ``values``, appending unknown ids; returns (codes, n_new)."""
        if self.ids is None:
            codes = self.fit(values)
            return codes, len(self.ids)
        codes = self.lookup(values)
        unknown = codes < 0
        if not unknown.any():
            return codes, 0
        new = Vocabulary(self.name)
        new_codes = new.fit(values[unknown])
        n_old = len(self.ids)
        kinds = {_kind(self.ids), _kind(new.ids)}
        if len(kinds) > 1:  # keep ints from turning into strings, and so on
            combined = np.concatenate([self.ids.astype(object), new.ids.astype(object)])
        elif {self.ids.dtype.kind, new.ids.dtype.kind} == {"i", "u"}:
            # int64 and uint64 meet only in float64, which merges large ids:
            # Python ints keep every id exact.
            combined = np.concatenate([self.ids.astype(object), new.ids.astype(object)])
        else:
            combined = np.concatenate([self.ids, new.ids])
        if self.ids.dtype.kind in "iu" and combined.dtype.kind == "f":
            if not np.array_equal(combined[:n_old].astype(self.ids.dtype), self.ids):
                raise TypeError(
                    f"New {self.name} ids are floats, and merging them with the known "
                    "integer ids would lose precision; pass integer ids."
                )
        if self.mixed or new.mixed:
            self._set(combined, True)
        else:
            try:
                if "number" in kinds and len(kinds) > 1:
                    raise TypeError
                self._set(combined, False)
            except TypeError:
                raise TypeError(
                    f"New {self.name} ids are not of the same kind as the known ones "
                    f"({self.ids.dtype} and {new.ids.dtype}); ids in one column must be "
                    "of one kind."
                ) from None
        codes[unknown] = n_old + new_codes
        return codes, len(new.ids)


def csr_by_user(users, items, ratings, weights, n_users, *extra):
    """Sort ratings by user (stably) into CSR arrays (indptr, items, ratings,
    weights, and each per-rating array of ``extra``, such as context codes)."""
    order = np.argsort(users, kind="stable")
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    return (indptr, *(np.ascontiguousarray(a[order]) for a in (items, ratings, weights, *extra)))


class RatingLog:
    """Every rating the estimator has been given, as coded arrays.

    Appends are O(new ratings). Two views: ``csr``, every user's ratings by
    user (for training), rebuilt only when asked for after an append; and
    ``user_csr``, the ratings of a few users, which costs O(their ratings +
    the ratings appended since the last full view) and never re-sorts the
    log, so that serving calls (fold-in of a known user, ``recommend``)
    stay O(user). The ratings appended since the last full view are merged
    into it once they pass ``MERGE_AFTER`` (amortized O(1) per rating).
    """

    MERGE_AFTER = 1 << 16

    def __init__(self):
        self._chunks = []
        self._csr = None
        self._n_users = 0
        self._n_base = 0  # ratings in the full view ``_csr``

    def append(self, users, items, ratings, weights, *extra):
        """Log ratings; ``extra``: further per-rating arrays (a model with
        context logs each rating's context code), the same in every call."""
        self._chunks.append(
            (users.astype(np.int64), items.astype(np.int64),
             ratings.astype(np.float64), weights.astype(np.float64), *extra)
        )
        if len(self._chunks) > 64:  # few chunks, so that reading the tail stays cheap
            self._chunks[1:] = [tuple(np.concatenate(parts) for parts in zip(*self._chunks[1:]))]

    def _tail(self):
        """The ratings appended since the full view was built. The chunks
        they fill are merged into one on the way, so that the next call
        concatenates two chunks, not one per call since the full view."""
        skip, j = self._n_base, 0
        while skip >= len(self._chunks[j][0]):
            skip -= len(self._chunks[j][0])
            j += 1
        if skip == 0 and len(self._chunks) - j > 1:
            self._chunks[j:] = [tuple(np.concatenate(parts) for parts in zip(*self._chunks[j:]))]
        parts = [tuple(a[skip:] for a in self._chunks[j])] + self._chunks[j + 1:]
        return parts[0] if len(parts) == 1 else tuple(np.concatenate(p) for p in zip(*parts))

    def __len__(self):
        return sum(len(c[0]) for c in self._chunks)

    def coo(self):
        """(users, items, ratings, weights, *extra) in the order they were appended."""
        if len(self._chunks) > 1:
            self._chunks = [tuple(np.concatenate(parts) for parts in zip(*self._chunks))]
        return self._chunks[0]

    def csr(self, n_users):
        """CSR arrays by user: (indptr, items, ratings, weights, *extra)."""
        if self._csr is None or self._n_users != n_users or self._n_base != len(self):
            users, items, ratings, weights, *extra = self.coo()
            self._csr = csr_by_user(users, items, ratings, weights, n_users, *extra)
            self._n_users = n_users
            self._n_base = len(self)
        return self._csr

    def user_csr(self, users, n_users):
        """CSR arrays (indptr, items, ratings, weights, *extra) of the ratings of
        ``users`` (distinct codes), row b for ``users[b]``, each user's in
        the order they were appended, as in :meth:`csr`."""
        tail = len(self) - self._n_base
        if self._csr is None or tail > self.MERGE_AFTER:
            self.csr(n_users)
            tail = 0
        indptr, *columns = self._csr
        old = np.where(users < self._n_users, users, 0)
        counts = np.where(users < self._n_users, indptr[old + 1] - indptr[old], 0)
        # The full view's entries of each user, by a running index.
        starts = np.repeat(indptr[old] - (np.cumsum(counts) - counts), counts)
        pos = starts + np.arange(counts.sum())
        parts = [(np.repeat(np.arange(len(users)), counts), *(c[pos] for c in columns))]
        if tail:
            u, *rest = self._tail()
            order = np.argsort(users, kind="stable")
            at = np.searchsorted(users[order], u)
            hit = (at < len(users)) & (users[order[np.minimum(at, len(users) - 1)]] == u)
            parts.append((order[at[hit]], *(c[hit] for c in rest)))
        rows, i, r, w, *extra = (np.concatenate(c) for c in zip(*parts))
        # Stable: each user's older ratings, then those appended since.
        return csr_by_user(rows, i, r, w, len(users), *extra)
