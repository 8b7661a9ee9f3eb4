"""Cross-validation splitters for recommenders, usable as ``cv=`` anywhere
scikit-learn takes one, and :func:`cold_start_split`.

Every splitter reads user ids from the first column of X and yields
(train, test) arrays of row indices. Rows are never lost: each row of X is
in exactly one of train and test, or, for :class:`TemporalSplit`, in
neither when it is later than the test block.
"""

import numbers

import numpy as np
from sklearn.model_selection import BaseCrossValidator
from sklearn.utils import _safe_indexing, check_random_state, indexable
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ._data import Vocabulary, as_2d, check_ids


def _users_of(X):
    users, _, _ = check_ids(as_2d(X))
    return Vocabulary("user").fit(users)


def _times_of(X, time_column, n_rows):
    """Timestamps from a column of X, or the row order when None."""
    if time_column is None:
        return np.arange(n_rows, dtype=np.float64)
    if hasattr(X, "columns") and not isinstance(time_column, numbers.Integral):
        t = np.asarray(X[time_column])
    else:
        t = np.asarray(X)[:, time_column] if not hasattr(X, "iloc") else np.asarray(X.iloc[:, time_column])
    try:
        t = t.astype(np.float64)
    except (TypeError, ValueError):
        t = np.asarray(t, dtype="datetime64[ns]").astype(np.int64).astype(np.float64)
    if np.isnan(t).any():
        raise ValueError("The time column holds NaN.")
    return t


def _by_user(codes, order_key, rng, mode):
    """Row indices sorted by user, each user's rows in support order
    (random or chronological), and each row's rank within its user."""
    n = len(codes)
    if mode == "random":
        key = rng.permutation(n)
    else:
        key = np.lexsort((np.arange(n), order_key)).argsort()  # chronological, stable
    order = np.lexsort((key, codes))
    counts = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts[codes[order]]
    return rank, counts


class _RatingSplitter(BaseCrossValidator):
    """What the splitters share: ``n_splits`` splits of the rows of X."""

    def get_n_splits(self, X=None, y=None, groups=None):
        """Number of splits: ``n_splits``."""
        return self.n_splits

    def split(self, X, y=None, groups=None):
        """Yield (train, test) row indices of each split.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_ratings, n_columns)
            (user id, item id, ...) rows, with timestamps in ``time_column``
            where the splitter uses time.
        y, groups : ignored
            Present for scikit-learn's API.

        Yields
        ------
        train, test : ndarray of int
        """
        X, = indexable(X)
        yield from self._split(X)

    def _iter_test_indices(self, X=None, y=None, groups=None):  # pragma: no cover
        raise NotImplementedError("split is overridden")


class ColdStartSplit(_RatingSplitter):
    """Cold-start cross-validation: test users are seen through a few ratings.

    Users (not ratings) are split into folds. A test-fold user gives its
    first ``n_support`` ratings (at random, or its earliest) to the training
    indices, as the support set a new user would provide, and the rest to
    the test indices, as its query set. The other users' ratings all go to
    training. Users with fewer than ``n_support + min_query`` ratings are
    never test users.

    Parameters
    ----------
    n_splits : int, default=5
        Number of folds.
    n_support : int, default=10
        Ratings of each test user that go to training.
    test_size : float or int, default=None
        None: users are partitioned into ``n_splits`` folds (each eligible
        user is tested once). A float in (0, 1] or an int: each split draws
        that share (or number) of the eligible users at random, as
        ``ShuffleSplit`` does; 1.0 tests every eligible user.
    support : {"random", "earliest"}, default="random"
        Which ratings form the support set.
    time_column : int or str, default=None
        Column of X with the timestamps used by ``support="earliest"``. None
        takes each user's rows in the order given as chronological.
    min_query : int, default=1
        Fewest query ratings a test user must have.
    random_state : int, RandomState instance or None, default=None
        Seed of the user folds and of the random support sets.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_metarec.model_selection import ColdStartSplit
    >>> X = np.array([[u, i] for u in range(4) for i in range(5)])
    >>> cv = ColdStartSplit(n_splits=2, n_support=2, random_state=0)
    >>> for train, test in cv.split(X):
    ...     print(len(train), len(test), np.unique(X[test, 0]))
    14 6 [0 1]
    14 6 [2 3]
    """

    def __init__(self, n_splits=5, *, n_support=10, test_size=None, support="random",
                 time_column=None, min_query=1, random_state=None):
        self.n_splits = n_splits
        self.n_support = n_support
        self.test_size = test_size
        self.support = support
        self.time_column = time_column
        self.min_query = min_query
        self.random_state = random_state

    def _check(self):
        _check_int(self.n_splits, "n_splits", 2 if self.test_size is None else 1)
        _check_int(self.n_support, "n_support", 0)
        _check_int(self.min_query, "min_query", 1)
        if self.support not in ("random", "earliest"):
            raise ValueError(f"support must be 'random' or 'earliest'; got {self.support!r}.")
        if self.test_size is not None:
            _check_size(self.test_size, "test_size")

    def _split(self, X):
        self._check()
        codes = _users_of(X)
        rng = check_random_state(self.random_state)
        times = _times_of(X, self.time_column, len(codes)) if self.support == "earliest" else None
        rank, counts = _by_user(codes, times, rng, self.support)
        eligible = np.flatnonzero(counts >= self.n_support + self.min_query)
        n_test = _n_test_users(self.test_size, len(eligible), self.n_splits)
        if self.test_size is None:
            folds = np.array_split(rng.permutation(eligible), self.n_splits)
        else:
            folds = (rng.choice(eligible, n_test, replace=False) for _ in range(self.n_splits))
        for fold in folds:
            is_test_user = np.zeros(len(counts), dtype=bool)
            is_test_user[fold] = True
            test = is_test_user[codes] & (rank >= self.n_support)
            yield np.flatnonzero(~test), np.flatnonzero(test)



class UserHoldoutSplit(_RatingSplitter):
    """Warm-start split: hold out part of every user's ratings.

    Each user keeps at least ``min_train`` ratings in training; of the rest,
    a share (``test_size`` float) or a number (``test_size`` int) goes to
    the test indices: at random, or the user's latest ratings.

    Parameters
    ----------
    n_splits : int, default=1
        Number of splits. With ``order="random"`` each split draws anew;
        with ``order="latest"`` every split is the same, so keep 1.
    test_size : float or int, default=0.2
        Share (in (0, 1), rounded down per user) or number of each user's
        ratings held out.
    order : {"random", "latest"}, default="random"
        Which ratings are held out.
    time_column : int or str, default=None
        Column of X with timestamps for ``order="latest"``. None takes each
        user's rows in the order given as chronological.
    min_train : int, default=1
        Fewest ratings a user keeps in training.
    random_state : int, RandomState instance or None, default=None
        Seed of the random hold-out.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_metarec.model_selection import UserHoldoutSplit
    >>> X = np.array([[u, i] for u in range(3) for i in range(5)])
    >>> train, test = next(UserHoldoutSplit(test_size=2, order="latest").split(X))
    >>> X[test].tolist()
    [[0, 3], [0, 4], [1, 3], [1, 4], [2, 3], [2, 4]]
    """

    def __init__(self, n_splits=1, *, test_size=0.2, order="random", time_column=None,
                 min_train=1, random_state=None):
        self.n_splits = n_splits
        self.test_size = test_size
        self.order = order
        self.time_column = time_column
        self.min_train = min_train
        self.random_state = random_state

    def _split(self, X):
        _check_int(self.n_splits, "n_splits", 1)
        _check_int(self.min_train, "min_train", 0)
        _check_size(self.test_size, "test_size")
        if self.order not in ("random", "latest"):
            raise ValueError(f"order must be 'random' or 'latest'; got {self.order!r}.")
        codes = _users_of(X)
        rng = check_random_state(self.random_state)
        times = _times_of(X, self.time_column, len(codes)) if self.order == "latest" else None
        for _ in range(self.n_splits):
            # Rank from the end: the held-out ratings are ranks 0..n_out-1.
            rank, counts = _by_user(codes, None if times is None else -times, rng, self.order)
            if isinstance(self.test_size, numbers.Integral):
                n_out = np.full(len(counts), int(self.test_size))
            else:
                n_out = np.floor(self.test_size * counts).astype(np.int64)
            n_out = np.clip(np.minimum(n_out, counts - self.min_train), 0, None)
            test = rank < n_out[codes]
            yield np.flatnonzero(~test), np.flatnonzero(test)



class TemporalSplit(_RatingSplitter):
    """Global temporal split: train on the past, test on what came next.

    Ratings are ordered by time. The last ``n_splits`` blocks of
    ``test_size`` ratings each are the test sets, oldest first; each split
    trains on every rating before its block, as ``TimeSeriesSplit`` does.
    Ratings with the same timestamp as the block's first rating all go to
    the test side, so nothing from the test moment leaks into training.

    Parameters
    ----------
    n_splits : int, default=1
        Number of consecutive test blocks.
    test_size : float or int, default=0.2
        Size of each block: a share of all ratings or a number.
    time_column : int or str, default=2
        Column of X with timestamps; None uses the row order.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_metarec.model_selection import TemporalSplit
    >>> X = np.array([[0, 0, 5], [1, 1, 1], [0, 2, 3], [1, 0, 4], [2, 2, 2]])
    >>> train, test = next(TemporalSplit(test_size=2).split(X))
    >>> train.tolist(), test.tolist()
    ([1, 4, 2], [3, 0])
    """

    def __init__(self, n_splits=1, *, test_size=0.2, time_column=2):
        self.n_splits = n_splits
        self.test_size = test_size
        self.time_column = time_column

    def _split(self, X):
        _check_int(self.n_splits, "n_splits", 1)
        _check_size(self.test_size, "test_size")
        n = len(X)
        times = _times_of(X, self.time_column, n)
        order = np.argsort(times, kind="stable")
        t = times[order]
        size = int(self.test_size) if isinstance(self.test_size, numbers.Integral) \
            else int(np.floor(self.test_size * n))
        if size < 1 or self.n_splits * size >= n:
            raise ValueError(
                f"{self.n_splits} test blocks of {size} ratings do not fit in {n} ratings "
                "with a non-empty training set."
            )
        for s in range(self.n_splits, 0, -1):
            lo = np.searchsorted(t, t[n - s * size], side="left")
            hi = n if s == 1 else np.searchsorted(t, t[n - (s - 1) * size], side="left")
            if lo == 0:
                raise ValueError("Every rating shares the test block's first timestamp; "
                                 "no training data is left.")
            yield order[:lo], order[lo:hi]



@validate_params(
    {
        "n_support": [Interval(numbers.Integral, 0, None, closed="left")],
        "test_size": [Interval(numbers.Real, 0, 1, closed="right"),
                      Interval(numbers.Integral, 1, None, closed="left")],
        "support": [StrOptions({"random", "earliest"})],
        "min_query": [Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def cold_start_split(*arrays, n_support=10, test_size=0.2, support="random", time_column=None,
                     min_query=1, random_state=None):
    """Split ratings into training and cold-start test sets, as
    ``train_test_split`` does for rows.

    A ``test_size`` share of the eligible users become test users; each
    gives ``n_support`` ratings to the training side and the rest to the
    test side. See :class:`ColdStartSplit`.

    Parameters
    ----------
    *arrays : sequence of indexables with the same length
        X first (user ids in its first column), then y, weights, ...
    n_support : int, default=10
        Ratings of each test user that go to training.
    test_size : float or int, default=0.2
        Share or number of the eligible users that become test users (1.0:
        all of them).
    support : {"random", "earliest"}, default="random"
        Which ratings form the support set.
    time_column : int or str, default=None
        Timestamp column of X for ``support="earliest"``.
    min_query : int, default=1
        Fewest query ratings a test user must have.
    random_state : int, RandomState instance or None, default=None
        Seed.

    Returns
    -------
    splitting : list
        Train and test parts of each array: ``X_train, X_test, y_train, ...``.

    Examples
    --------
    >>> from sklearn_metarec.datasets import make_ratings
    >>> from sklearn_metarec.model_selection import cold_start_split
    >>> X, y = make_ratings(n_users=100, n_items=40, random_state=0)
    >>> X_train, X_test, y_train, y_test = cold_start_split(
    ...     X, y, n_support=5, test_size=0.25, random_state=0)
    >>> len(set(X_test[:, 0]))
    25
    """
    if not arrays:
        raise ValueError("At least one array required as input.")
    arrays = indexable(*arrays)
    cv = ColdStartSplit(n_splits=1, n_support=n_support, test_size=test_size, support=support,
                        time_column=time_column, min_query=min_query, random_state=random_state)
    train, test = next(cv.split(arrays[0]))
    return [part for a in arrays for part in (_safe_indexing(a, train), _safe_indexing(a, test))]


def _check_int(value, name, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")


def _check_size(value, name):
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a float in (0, 1] or a positive integer; got {value!r}.")
    if isinstance(value, numbers.Integral):
        if value < 1:
            raise ValueError(f"{name} must be a float in (0, 1] or a positive integer; got {value!r}.")
    elif not isinstance(value, numbers.Real) or not 0 < value <= 1:
        raise ValueError(f"{name} must be a float in (0, 1] or a positive integer; got {value!r}.")


def _n_test_users(test_size, n_eligible, n_splits):
    if n_eligible == 0:
        raise ValueError(
            "No user has enough ratings to be a test user (n_support + min_query)."
        )
    if test_size is None:
        if n_eligible < n_splits:
            raise ValueError(
                f"Cannot have n_splits={n_splits} greater than the number of eligible "
                f"test users: {n_eligible}."
            )
        return None
    n = int(test_size) if isinstance(test_size, numbers.Integral) else int(np.ceil(test_size * n_eligible))
    if n > n_eligible:
        raise ValueError(f"test_size={test_size} exceeds the {n_eligible} eligible test users.")
    return max(n, 1)
