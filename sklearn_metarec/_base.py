"""What every recommender of the package shares: id handling, the rating
log, fold-in, prediction and the fitted attributes of the factorization model."""

import contextlib
import functools
import numbers
import threading
import warnings
from contextlib import contextmanager

import numba
import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, InvalidParameterError
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _kernels as K
from ._kernels._jit import first_use_notice
from ._context import context_codes, context_row, fit_context, transform_context
from ._features import check_features
from ._data import (
    ContextColumnsIgnoredWarning,
    RatingLog,
    Vocabulary,
    as_2d,
    check_id_column,
    check_ids,
    check_ratings,
    check_weights,
    csr_by_user,
)
from ._onboarding import STRATEGIES, condition, greedy_variance_reduction, melu_scores, prior_covariance


# Below this much work (about multiply-adds) a kernel call runs on the
# calling thread alone: waking a pool costs more than it saves, and far
# more when other processes hold the cores.
SERIAL_WORK = 1_000_000

# Numba's "workqueue" threading layer (used when neither OpenMP nor TBB is
# available) aborts the process when two threads launch parallel kernels at
# once; on that layer launches take this lock.
_WORKQUEUE_LOCK = threading.RLock()
_layer = []


def _threading_layer():
    if not _layer:
        numba.get_num_threads()  # starts the pool, which fixes the layer
        _layer.append(numba.threading_layer())
    return _layer[0]


@contextmanager
def numba_threads(n_jobs, work=None):
    """Run Numba kernels on ``n_jobs`` threads (None: Numba's default;
    negative: all cores but ``-n_jobs - 1``), or on one thread when the
    call's ``work`` is below ``SERIAL_WORK``; the thread count is restored
    after (it is per thread in Numba, so concurrent calls do not interfere).

    An exception raised inside a parallel region (say, an allocation that
    fails) reaches Python as a ``SystemError`` whose cause is the real
    exception; it is re-raised as that exception."""
    first_use_notice()
    available = numba.config.NUMBA_NUM_THREADS
    if work is not None and work < SERIAL_WORK:
        n = 1
    elif n_jobs is None:
        n = None
    else:
        n = int(min(max(n_jobs if n_jobs > 0 else available + 1 + n_jobs, 1), available))
    guard = _WORKQUEUE_LOCK if _threading_layer() == "workqueue" else contextlib.nullcontext()
    with guard:
        previous = numba.get_num_threads()
        if n is not None:
            numba.set_num_threads(n)
        try:
            yield
        except SystemError as exc:
            if isinstance(exc.__cause__, Exception):
                raise exc.__cause__ from None
            raise
        finally:
            numba.set_num_threads(previous)


class DivergenceError(ValueError, FloatingPointError):
    """Training produced non-finite values (learning rate too large)."""


# Bounds of the parameters that size memory or loops in the kernels: beyond
# them a call would allocate without limit or never end, so they are refused.
MAX_FACTORS = 1024
MAX_INNER_STEPS = 1000
MAX_NEGATIVES = 1000


class _ReadWriteLock:
    """Many readers or one writer. A writer waits for the readers in
    progress and holds new ones back (so that a stream of readers cannot
    starve it); the writing thread may enter again, to read or to write."""

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = None
        self._depth = 0
        self._waiting = 0

    @contextmanager
    def reading(self):
        me = threading.get_ident()
        with self._cond:
            if self._writer != me:
                while self._writer is not None or self._waiting:
                    self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def writing(self):
        me = threading.get_ident()
        with self._cond:
            if self._writer != me:
                self._waiting += 1
                while self._writer is not None or self._readers:
                    self._cond.wait()
                self._waiting -= 1
                self._writer = me
            self._depth += 1
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if not self._depth:
                    self._writer = None
                    self._cond.notify_all()


def serialized(method=None, *, in_place=True):
    """Make a state-changing method a transaction: it runs under the
    estimator's write lock, so that concurrent writers (``fit``,
    ``partial_fit``, ``fold_in``) give the model of some serial order and
    readers (``predict``, ``recommend``) see the model before or after it,
    never in between; and if it raises, the estimator is put back exactly as
    it was. ``in_place=False`` declares
    that the method replaces arrays rather than writing into them (but for
    rows past the known users, and its last step, which cannot fail), so
    none is copied: this keeps ``fold_in`` O(its users), not O(the model)."""
    if method is None:
        return functools.partial(serialized, in_place=in_place)

    @functools.wraps(method)
    def transaction(self, *args, **kwargs):
        with self._writer_lock():
            saved = _save_state(self, in_place)
            try:
                return method(self, *args, **kwargs)
            except BaseException:
                _restore_state(self, saved)
                raise

    return transaction


def reads(method):
    """Run a method that only reads the model under the estimator's read
    lock: readers run together, and never while a writer is half done."""

    @functools.wraps(method)
    def read(self, *args, **kwargs):
        with self._reader_lock():
            return method(self, *args, **kwargs)

    return read


def _save_state(est, in_place):
    """What ``_restore_state`` needs to undo a call: the attribute dict, the
    contents of lists, vocabularies and the rating log, the random state,
    and with ``in_place`` copies of every array, which the call may write
    into."""
    state = dict(vars(est))
    inner = {name: dict(vars(value)) for name, value in state.items() if isinstance(value, (Vocabulary, RatingLog))}
    for saved in inner.values():
        if "_chunks" in saved:
            saved["_chunks"] = list(saved["_chunks"])
    lists = {name: list(value) for name, value in state.items() if isinstance(value, list)}
    arrays = {}
    if in_place:
        arrays = {name: value.copy() for name, value in state.items() if isinstance(value, np.ndarray)}
    rng = state.get("_rng")
    return state, inner, lists, arrays, rng.get_state() if rng is not None else None


def _restore_state(est, saved):
    state, inner, lists, arrays, rng_state = saved
    vars(est).clear()
    vars(est).update(state)
    for name, values in inner.items():
        vars(state[name]).clear()
        vars(state[name]).update(values)
    for name, values in lists.items():
        state[name][:] = values
    for name, values in arrays.items():
        state[name][...] = values
    if rng_state is not None:
        state["_rng"].set_state(rng_state)


class BaseFactorizationRecommender(RegressorMixin, BaseEstimator):
    """Base class: biased matrix factorization r̂ = μ + b_u + b_i + p_uᵀq_i
    over an explicit id vocabulary.

    Subclasses implement ``_init_theta``, ``_train`` and ``_solve_users``.
    The meta-parameter layout is documented in ``sklearn_metarec._kernels``.
    """

    # ------------------------------------------------------------------
    # Fitted attributes: views of the private state, so that nothing is
    # stored twice (and pickles cannot drift apart).

    @property
    def user_ids_(self):
        """ndarray of shape (n_users,): raw user id of each row of ``user_factors_``."""
        return self._user_vocab.ids

    @property
    def item_ids_(self):
        """ndarray of shape (n_items,): raw item id of each row of ``item_factors_``."""
        return self._item_vocab.ids

    @property
    def global_mean_(self):
        """float: μ."""
        return float(self._theta[0])

    @property
    def item_biases_(self):
        """ndarray of shape (n_items,): b_i."""
        return self._unpacked()[1]

    @property
    def item_factors_(self):
        """ndarray of shape (n_items, n_factors): q_i."""
        return self._unpacked()[2]

    @property
    def user_biases_(self):
        """ndarray of shape (n_users,): b_u of each known user."""
        return self._users[:, 0]

    @property
    def user_factors_(self):
        """ndarray of shape (n_users, n_factors): p_u of each known user."""
        return self._users[:, 1:]

    @property
    def user_bias_prior_(self):
        """float: the bias b₀ an unknown user gets."""
        return float(self._theta[1])

    @property
    def user_factors_prior_(self):
        """ndarray of shape (n_factors,): the factors p₀ an unknown user gets."""
        return self._unpacked()[0][1:]

    @property
    def _users(self):
        """Parameters of the known users, one row each: (b_u, p_u)."""
        return self._user_buf[: len(self._user_vocab)]

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_lock", None)  # a lock is per process; a copy gets its own
        if "_user_buf" in state:  # no spare capacity in pickles
            state["_user_buf"] = self._users.copy()
        return state

    def _rwlock(self):
        # setdefault is atomic, so two threads never get different locks.
        return self.__dict__.setdefault("_lock", _ReadWriteLock())

    def _writer_lock(self):
        return self._rwlock().writing()

    def _reader_lock(self):
        return self._rwlock().reading()

    def _unpacked(self):
        return K.unpack(self._theta, len(self._item_vocab), self._users.shape[1])

    # ------------------------------------------------------------------
    # Validation

    def _check_X(self, X, reset):
        X = as_2d(X)
        if not reset:  # a column-count mismatch is named as scikit-learn names it
            validate_data(self, X, reset=False, skip_check_array=True)
        users, items, n_columns = check_ids(X)
        if reset:
            validate_data(self, X, reset=True, skip_check_array=True)
        if reset and n_columns > 2 + len(getattr(self, "context_columns", None) or ()):
            warnings.warn(
                f"X has {n_columns} columns; only the first two (user id, item id) "
                "are used. Further columns are reserved for context features.",
                ContextColumnsIgnoredWarning,
                stacklevel=3,
            )
        return users, items

    def _check_ratings(self, X, y, sample_weight, reset):
        users, items = self._check_X(X, reset)
        if y is None and self._implicit:
            y = np.ones(len(users))  # implicit feedback: every row is a positive
        y = check_ratings(y, len(users))
        if self._pairwise and (y != 1.0).any():
            raise ValueError(
                "loss='bpr' learns from positives only: leave y out (every row a positive) or pass "
                f"y of ones; y holds values in [{y.min():g}, {y.max():g}]. For 0/1 labels, use "
                "loss='logistic'."
            )
        if self._logistic and (y.min() < 0.0 or y.max() > 1.0):
            raise ValueError(
                "loss='logistic' needs targets in [0, 1] (0/1 labels, or leave y out "
                f"for positives only); y holds values in [{y.min():g}, {y.max():g}]."
            )
        w = check_weights(sample_weight, len(users))
        return users, items, y, w

    def _validate_params(self):
        super()._validate_params()
        params = self.get_params(deep=False)
        for name, value in params.items():
            # bool is an int to Python and to scikit-learn's constraints.
            constraints = self._parameter_constraints.get(name, [])
            if isinstance(value, bool) and any(isinstance(c, Interval) for c in constraints):
                raise InvalidParameterError(
                    f"The {name!r} parameter of {type(self).__name__} must be a number, not a bool; got {value!r}."
                )

    def _params_key(self):
        """The parameters' values, comparable with ``==``, or None when one
        of them could change in place unseen (a list, say)."""
        values = []
        for name in sorted(self._parameter_constraints):
            value = getattr(self, name)
            if isinstance(value, list):
                value = ("list", tuple(value))
            elif not (value is None or isinstance(value, (bool, int, float, str, tuple, np.random.RandomState))):
                return None
            values.append((name, value))
        return tuple(values)

    def _check_update(self):
        """Validate the parameters again before a call that updates a
        fitted model, and refuse changes to those that fix its structure.
        Validation is skipped when the parameters are those validated last:
        it is most of the cost of a one-user fold-in."""
        key = self._params_key()
        if key is None or key != self.__dict__.get("_validated"):
            self._validate_params()
            self._validated = key
        now = self._structural_params()
        for name in {**self._structure, **now}:
            if now.get(name) != self._structure.get(name):
                raise ValueError(
                    f"{name} was {self._structure.get(name)!r} when the model was fitted and is now "
                    f"{now.get(name)!r}; "
                    f"it fixes the model's structure, so call fit to change it."
                )

    def _structural_params(self):
        params = {"n_factors": self.n_factors, "loss": getattr(self, "loss", "squared")}
        if getattr(self, "context_columns", None) is not None:
            params["context_columns"] = tuple(self.context_columns)
        return params

    def _prepare(self, X, y, sample_weight, reset):
        """Validate a fit-like call; ``reset`` (fit, or a first partial_fit)
        starts from scratch, and any other call may not change the model's
        structure."""
        first_use_notice()
        if reset:
            self._validate_params()
        else:
            self._check_update()
        users, items, y, w = self._check_ratings(X, y, sample_weight, reset=reset)
        if reset:
            self._start(check_random_state(self.random_state))
            if self._implicit and self.n_negatives == 0 and (y == 1.0).all():
                raise ValueError(
                    "y holds only positives (or was left out) and n_negatives=0: "
                    f"loss={self.loss!r} needs negatives; set n_negatives >= 1"
                    + (" or pass 0/1 labels." if self._logistic else ".")
                )
        return users, items, y, w

    # ------------------------------------------------------------------
    # The loss

    @property
    def _logistic(self):
        """Whether predictions are probabilities σ(r̂)."""
        return getattr(self, "loss", "squared") == "logistic"

    @property
    def _pairwise(self):
        return getattr(self, "loss", "squared") == "bpr"

    @property
    def _implicit(self):
        """Whether the loss is for implicit feedback: y may be left out, and
        positives-only data get sampled negatives."""
        return self._logistic or self._pairwise

    def _n_neg(self):
        """Negatives to sample per rating: ``n_negatives`` under an implicit
        loss when every rating so far is a positive, else none."""
        return int(self.n_negatives) if self._implicit and self._all_positive else 0

    # ------------------------------------------------------------------
    # State

    def _start(self, rng):
        for name in ("_theta", "_user_buf", "_adam_m", "_adam_v", "_adam_v_items", "_adam_row_steps",
                     "loss_curve_", "_item_table", "_item_F", "_feat", "_feat_m", "_feat_v",
                     "_user_table", "_user_G", "_ufeat", "_ufeat_m", "_ufeat_v",
                     "_ctx_names", "_ctx_combos", "_ctx_mean", "_ctx_E", "_ctx_m", "_ctx_v"):
            self.__dict__.pop(name, None)  # a refit starts from scratch
        self._rng = rng
        self._structure = self._structural_params()
        self._user_vocab = Vocabulary("user")
        self._item_vocab = Vocabulary("item")
        self._log = RatingLog()
        self._all_positive = True
        if self._implicit:
            # Serving draws its own negatives; a seed of their own keeps
            # fold-in from consuming the training stream.
            self._serve_seed = int(rng.randint(np.iinfo(np.int64).max, dtype=np.int64))
        self.n_iter_ = 0

    def _add_ratings(self, users, items, y, w, new_items, ctx=None):
        """Encode and log ratings, growing the vocabularies and parameters.

        New items get zero parameters (``new_items="zeros"``, which predicts
        exactly as an unknown item does) or a random start for training.
        ``ctx``: each rating's context code, logged with it. Returns the
        codes of the users touched and the coded ratings.
        """
        n_users_old = len(self._user_vocab)
        n_items_old = len(self._item_vocab)
        u, _ = self._user_vocab.extend(users)
        i, n_new_items = self._item_vocab.extend(items)
        self._all_positive = self._all_positive and bool((y == 1.0).all())
        d = self.n_factors + 1
        if not hasattr(self, "_theta"):
            self._theta = self._init_theta(len(self._item_vocab), y, w)
            self._adam_m = np.zeros_like(self._theta)
            # Second moments of (μ, φ₀), and one per block of item
            # parameters (see ``adam_rows``).
            self._adam_v = np.zeros(1 + d)
            self._adam_v_items = np.zeros(2)
            self._adam_step = 0
            # Adam's update count of each item row (lazy Adam corrects each
            # row for bias by its own count).
            self._adam_row_steps = np.zeros(len(self._item_vocab), dtype=np.int64)
            self._user_buf = np.empty((0, d))
        elif n_new_items:
            if new_items == "zeros":
                q_new = np.zeros((n_new_items, d - 1))
            else:
                q_new = self._rng.normal(0.0, self.init_std, (n_new_items, d - 1))
            self._theta = _grow_items(self._theta, n_items_old, d, q_new)
            zeros = np.zeros((n_new_items, d - 1))
            self._adam_m = _grow_items(self._adam_m, n_items_old, d, zeros)
            self._adam_row_steps = np.r_[self._adam_row_steps, np.zeros(n_new_items, dtype=np.int64)]
            if getattr(self, "_item_F", None) is not None:
                self._grow_item_features(n_items_old)
        n_users = len(self._user_vocab)
        if n_users > len(self._user_buf):
            # Capacity doubles, so that folding in users one at a time costs
            # amortized O(1) rather than a copy of the whole table per call.
            buf = np.empty((max(n_users, 2 * len(self._user_buf)), d))
            buf[:n_users_old] = self._user_buf[:n_users_old]
            self._user_buf = buf
        if getattr(self, "_user_G", None) is not None and n_users > n_users_old:
            self._grow_user_features(n_users_old)
        self._user_buf[n_users_old:n_users] = self._user_priors(np.arange(n_users_old, n_users))
        extra = () if ctx is None else (ctx,)
        self._log.append(u, i, y, w, *extra)
        return np.unique(u), (u, i, y, w, *extra), n_users_old

    def _refresh_users(self, users, fresh=None, n_users_old=None):
        """Recompute the parameters of ``users`` from their whole history.

        When every one of them is new, only the fresh ratings are needed and
        the full log is not re-sorted: this keeps fold-in of a new user cheap.
        """
        if fresh is not None and users.min() >= n_users_old:
            u, i, y, w, *extra = fresh
            csr = csr_by_user(u - n_users_old, i, y, w, len(users), *extra)
            local = users - n_users_old
        elif 4 * len(users) < len(self._user_vocab):
            # A few users: their ratings alone, without re-sorting the log.
            csr = self._log.user_csr(users, len(self._user_vocab))
            local = np.arange(len(users), dtype=np.int64)
        else:
            csr = self._log.csr(len(self._user_vocab))
            local = users
        indptr = csr[0]
        # About (1 + n_neg) · T · d multiply-adds per rating (T, negatives:
        # a few), enough to tell a serving call from a batch.
        work = 8 * self._users.shape[1] * int(np.sum(indptr[local + 1] - indptr[local]))
        with numba_threads(self.n_jobs, work):
            # ``users`` (the global codes) key each user's sampled negatives,
            # so a user's fold-in does not depend on who is folded in with it.
            indptr, items, ratings, weights, *extra = csr
            rows = self._solve_users(indptr, items, ratings, weights, local, users, *extra)
        if not np.isfinite(rows).all():
            raise DivergenceError(
                "Adapting users diverged: parameters became NaN or infinite. "
                "Try a smaller learning rate."
            )
        self._users[users] = rows

    # ------------------------------------------------------------------
    # Public API shared by all estimators

    @reads
    def predict(self, X):
        """Predict ratings for (user id, item id) rows.

        A known user uses its fitted parameters; an unknown user gets the
        population prior (``user_bias_prior_``, ``user_factors_prior_``), or,
        if the model was fitted with ``user_features`` that list it, the
        prior its attributes give; an
        unknown item contributes no bias and no factors, unless the model was
        fitted with ``item_features`` that list it: it is then scored by its
        features alone. A row's prediction
        never depends on the other rows passed with it.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_columns)
            The first two columns hold the user id and the item id.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predicted ratings; with ``loss="logistic"``, the probabilities
            σ(r̂) of a positive; with ``loss="bpr"``, ranking scores r̂.
        """
        check_is_fitted(self)
        users, items = self._check_X(X, reset=False)
        u, table = self._serving_users(users, self._user_vocab.lookup(users))
        i, theta, n_items = self._serving_items(items, self._item_vocab.lookup(items))
        out = np.empty(len(u))
        with numba_threads(self.n_jobs, len(u) * table.shape[1]):
            K.predict(u, i, table, theta, n_items, table.shape[1], out)
        if self._has_context():
            out += self._context_scores(u, i, table, theta, n_items, self._read_context(X, reset=False))
        return expit(out) if self._logistic else out

    @serialized(in_place=False)
    def fold_in(self, X, y=None, sample_weight=None, *, user_features=None):
        """Fold new ratings into the users' parameters; the cheap serving path.

        Each user in ``X`` (new or known) gets parameters recomputed from all
        its ratings, the new ones included, while every item parameter and the
        population prior stay as they are. New users join the vocabulary. New
        items join it with zero parameters, so they predict exactly as unknown
        items do until ``partial_fit`` trains them. The ratings are kept, so a
        later ``partial_fit`` or ``fold_in`` sees them.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_columns)
            (user id, item id) rows.
        y : array-like of shape (n_samples,), default=None
            Ratings, 0/1 labels with ``loss="logistic"``, or ones with
            ``loss="bpr"``; None (implicit losses only) means every row is a
            positive.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each rating.
        user_features : FeatureTable or DataFrame, default=None
            Estimators fitted with ``user_features`` only: the table that new
            users take their attributes (and so their prior) from, in place
            of the one given to ``fit``; it must have the same features.

        Returns
        -------
        self : object
            The estimator, with the users of ``X`` updated.
        """
        check_is_fitted(self)
        self._check_update()
        table = self._check_user_table(user_features)
        users, items, y, w = self._check_ratings(X, y, sample_weight, reset=False)
        if table is not None:
            self._user_table = table
        ctx = self._context_codes(self._read_context(X, reset=False)) if self._has_context() else None
        touched, fresh, n_users_old = self._add_ratings(users, items, y, w, new_items="zeros", ctx=ctx)
        self._refresh_users(touched, fresh, n_users_old)
        return self

    @reads
    def explain(self, X, *, method="leave_one_out", n=None):
        """Which of each user's ratings made each prediction, and by how much.

        ``method="leave_one_out"``: for each (user, item) row of X, every
        rating of the user is taken out in turn and the user folded in again
        from the rest (its T inner steps, or the baseline's exact solve); the
        rating's contribution is the prediction with all the user's ratings
        less the prediction without it. Exact, one fold-in per rating.
        ``method="influence"`` (the meta-learners): the exact derivative of
        the prediction with respect to the rating's weight, through the T
        inner steps (one reverse pass per row), times the weight: the
        first-order estimate of the same difference, for the cost of one
        fold-in. The prediction with all ratings is the fold-in's (for the
        meta-learners, what ``predict`` gives; the SGD-trained baseline's
        own user rows differ).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_columns)
            (user id, item id) rows, with the context columns of a model
            fitted with ``context_columns``.
        method : {"leave_one_out", "influence"}, default="leave_one_out"
            How contributions are measured.
        n : int, default=None
            Keep each row's ``n`` largest contributions by size; all when None.

        Returns
        -------
        explanation : structured ndarray
            One record per (row, rated item), each row's by decreasing size of
            contribution: ``row`` (index into X), ``user``, ``item``,
            ``prediction`` (with all ratings), ``prior`` (the user's prior,
            before any rating), ``rated_item``, ``rating`` and
            ``contribution``. A row of an unknown user, or of one without
            ratings, has no records.

        Examples
        --------
        >>> from sklearn_metarec import MAMLFactorizationRecommender
        >>> from sklearn_metarec.datasets import make_ratings
        >>> X, y = make_ratings(n_users=40, n_items=20, random_state=0)
        >>> model = MAMLFactorizationRecommender(n_factors=4, n_epochs=2, random_state=0).fit(X, y)
        >>> why = model.explain([[0, 3]], n=2)
        >>> len(why), bool(abs(why["contribution"][0]) >= abs(why["contribution"][1]))
        (2, True)
        """
        check_is_fitted(self)
        if method not in ("leave_one_out", "influence"):
            raise ValueError(f"method must be 'leave_one_out' or 'influence'; got {method!r}.")
        influence = method == "influence"
        if influence and not hasattr(self, "_inner_settings"):
            raise ValueError(f"method='influence' differentiates the inner steps of a meta-learner; "
                             f"{type(self).__name__} has none: use method='leave_one_out'.")
        if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1):
            raise ValueError(f"n must be a positive integer or None; got {n!r}.")
        users, items = self._check_X(X, reset=False)
        u = self._user_vocab.lookup(users)
        i, theta, n_items = self._serving_items(items, self._item_vocab.lookup(items))
        matrix = self._read_context(X, reset=False) if self._has_context() else None
        known = np.unique(u[u >= 0])
        indptr, rated, ratings, weights, *extra = self._log.user_csr(known, len(self._user_vocab))
        counts = np.diff(indptr)
        # Per known user b: copy 0 has all its ratings; for leave-one-out, copy
        # 1 + j lacks rating j (weight 0).
        copies = np.ones_like(counts) if influence else counts + 1
        owner = np.repeat(np.arange(len(known)), copies)
        left_out = np.arange(copies.sum()) - np.repeat(np.cumsum(copies) - copies, copies) - 1
        sizes = counts[owner]
        v_indptr = np.r_[0, np.cumsum(sizes)].astype(np.int64)
        pos = np.repeat(indptr[owner] - v_indptr[:-1], sizes) + np.arange(v_indptr[-1])
        w = weights[pos].copy()
        w[(pos - np.repeat(indptr[owner], sizes)) == np.repeat(left_out, sizes)] = 0.0
        d = self._users.shape[1]
        with numba_threads(self.n_jobs, 8 * d * len(pos)):
            phis = self._solve_users(v_indptr, np.ascontiguousarray(rated[pos]), np.ascontiguousarray(ratings[pos]),
                                     w, np.arange(len(owner), dtype=np.int64), known[owner],
                                     *(np.ascontiguousarray(e[pos]) for e in extra))
        if not np.isfinite(phis).all():
            raise DivergenceError("Adapting users diverged while explaining: parameters became NaN or infinite.")
        # Records: for each row with a known user, one per rating of that user.
        b_of_row = np.searchsorted(known, u)
        rows = np.flatnonzero(u >= 0)
        per_row = counts[b_of_row[rows]]
        rec_row = np.repeat(rows, per_row)
        rec_j = np.arange(per_row.sum()) - np.repeat(np.cumsum(per_row) - per_row, per_row)
        rec_b = b_of_row[rec_row]
        first_copy = np.cumsum(copies) - copies
        table = np.concatenate([phis, self._user_priors(known)])

        def scores(codes):
            out = np.empty(len(rec_row))
            K.predict(np.ascontiguousarray(codes, dtype=np.int64), np.ascontiguousarray(i[rec_row]), table, theta,
                      n_items, d, out)
            if matrix is not None:
                out += self._context_scores(codes, i[rec_row], table, theta, n_items, matrix[rec_row])
            return expit(out) if self._logistic else out

        full, prior = scores(first_copy[rec_b]), scores(len(phis) + rec_b)
        rated_pos = indptr[rec_b] + rec_j
        if influence:
            contribution = weights[rated_pos] * self._influence(rows, b_of_row, known, indptr, rated, ratings,
                                                                weights, extra, i, theta, n_items, matrix)
            if self._logistic:  # the derivative of σ(ŝ), the probability predict gives
                contribution *= full * (1.0 - full)
        else:
            contribution = full - scores(first_copy[rec_b] + 1 + rec_j)
        order = np.lexsort((-np.abs(contribution), rec_row))
        if n is not None:
            rank = np.arange(len(order)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
            order = order[rank < n]
        record = np.dtype([("row", np.int64), ("user", users.dtype), ("item", items.dtype),
                           ("prediction", np.float64), ("prior", np.float64), ("rated_item", self.item_ids_.dtype),
                           ("rating", np.float64), ("contribution", np.float64)])
        out = np.empty(len(order), dtype=record)
        out["row"], out["user"], out["item"] = rec_row[order], users[rec_row[order]], items[rec_row[order]]
        out["prediction"], out["prior"] = full[order], prior[order]
        out["rated_item"] = self.item_ids_[rated[rated_pos[order]]]
        out["rating"], out["contribution"] = ratings[rated_pos[order]], contribution[order]
        return out

    def _influence(self, rows, b_of_row, known, indptr, rated, ratings, weights, extra, i, theta, n_items, matrix):
        """∂ŝ/∂w_j of each row's prediction for each of its user's ratings,
        concatenated in row order (see ``_kernels.influence``)."""
        d = self.n_factors + 1
        _, _, Q = K.unpack(theta, n_items, d)
        items = i[rows]
        x = np.zeros((len(rows), d))
        x[:, 0] = 1.0
        x[items >= 0, 1:] = Q[items[items >= 0]]
        if matrix is not None:
            off = self._ctx_combos @ self._ctx_E
            x[:, 1:] += (matrix[rows] @ self._ctx_E)[:, 1:]
            ctxs = np.ascontiguousarray(extra[0])
        else:
            off, ctxs = K.no_context(d)[1], K.no_context(d)[0]
        b = b_of_row[rows]
        out_indptr = np.r_[0, np.cumsum(np.diff(indptr)[b])].astype(np.int64)
        out = np.empty(out_indptr[-1])
        with numba_threads(self.n_jobs, 8 * d * len(out)):
            K.influence_users(indptr, rated, ratings, weights, np.ascontiguousarray(b, dtype=np.int64),
                              np.ascontiguousarray(known[b]), getattr(self, "_serve_seed", 0), theta, n_items,
                              self._alpha(), self._inner_settings(), self._user_priors(known[b]), ctxs,
                              np.ascontiguousarray(off), x, out_indptr, out)
        return out

    @reads
    def explain_features(self, X):
        """How each prediction splits between the user, the item, the item's
        features, the user's attributes and the rating's context.

        The score is linear in each of these parts, so the split is exact:
        ``user`` is μ + b_u less what the user's attributes give its bias
        (each such ``user attribute`` a record); ``item`` is the item's own
        part of b_i + p_uᵀq_i, each ``item feature`` f adding
        F_if·(c_f + p_uᵀe_f) (an item is its own part plus its features'
        parts); each ``context`` feature c adds m_c·(b_c + (p_u + q_i)ᵀe_c).
        The records of a row sum to its score: ``predict``'s rating, or
        for ``loss="logistic"`` its log-odds. Which of a user's ratings
        moved p_u is :meth:`explain`'s question.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_columns)
            (user id, item id) rows, with the context columns of a model
            fitted with ``context_columns``.

        Returns
        -------
        explanation : structured ndarray
            One record per (row, part) with a non-zero share: ``row``
            (index into X), ``user``, ``item``, ``part`` ("user", "user
            attribute", "item", "item feature" or "context"), ``name`` (the
            feature's name, empty for "user" and "item") and
            ``contribution``, each row's records in that order of parts.

        Examples
        --------
        >>> from sklearn_metarec import MAMLFactorizationRecommender
        >>> from sklearn_metarec.datasets import make_ratings
        >>> X, y = make_ratings(n_users=40, n_items=20, random_state=0)
        >>> model = MAMLFactorizationRecommender(n_factors=4, n_epochs=2, random_state=0).fit(X, y)
        >>> parts = model.explain_features([[0, 3]])
        >>> parts["part"].tolist(), bool(abs(parts["contribution"].sum() - model.predict([[0, 3]])[0]) < 1e-9)
        (['user', 'item'], True)
        """
        import scipy.sparse as sp

        check_is_fitted(self)
        users, items = self._check_X(X, reset=False)
        u, table = self._serving_users(users, self._user_vocab.lookup(users))
        i, theta, n_items = self._serving_items(items, self._item_vocab.lookup(items))
        d = self.n_factors + 1
        _, bi, Q = K.unpack(theta, n_items, d)
        phi = np.where((u >= 0)[:, None], table[np.maximum(u, 0)], theta[1 : 1 + d])
        b = np.where(i >= 0, bi[np.maximum(i, 0)], 0.0)
        q = np.where((i >= 0)[:, None], Q[np.maximum(i, 0)], 0.0)
        n = len(u)
        parts = []  # (part, names, matrix of shares (n, n_names))

        def side_rows(ids, codes, n_known, fitted, table_):
            """Each row's feature row: the fitted one of a known id, the
            table's for an id the table lists (zero otherwise)."""
            rows = fitted[np.clip(codes, 0, n_known - 1)].multiply(((codes >= 0) & (codes < n_known))[:, None])
            rows, later = sp.csr_matrix(rows), (codes < 0) | (codes >= n_known)
            if later.any():
                rows = sp.lil_matrix(rows)
                rows[np.flatnonzero(later)] = table_.rows(ids[later])[0]
            return sp.csr_matrix(rows)

        user_part = theta[0] + phi[:, 0]
        if getattr(self, "_user_G", None) is not None:
            G = side_rows(users, u, len(self._user_vocab), self._user_G, self._user_table)
            shares = sp.csr_matrix(G.multiply(self._ufeat[:, 0][None, :]))
            user_part = user_part - np.asarray(shares.sum(axis=1)).ravel()
            parts.append(("user attribute", self._user_table.names, shares))
        item_part = b + np.sum(q * phi[:, 1:], axis=1)
        if getattr(self, "_item_F", None) is not None:
            F = side_rows(items, i, len(self._item_vocab), self._item_F, self._item_table)
            shares = sp.csr_matrix(F.multiply(self._feat[:, 0][None, :] + phi[:, 1:] @ self._feat[:, 1:].T))
            item_part = item_part - np.asarray(shares.sum(axis=1)).ravel()
            parts.append(("item feature", self._item_table.names, shares))
        if self._has_context():
            matrix = self._read_context(X, reset=False)
            E = self._ctx_E
            shares = sp.csr_matrix(matrix * (E[:, 0][None, :] + (phi[:, 1:] + q) @ E[:, 1:].T))
            parts.append(("context", self._ctx_names, shares))
        # Records: user, user attributes, item, item features, context.
        order = ["user", "user attribute", "item", "item feature", "context"]
        pieces = [("user", np.arange(n), np.full(n, ""), user_part), ("item", np.arange(n), np.full(n, ""), item_part)]
        for part, names, shares in parts:
            coo = shares.tocoo()
            keep = coo.data != 0
            pieces.append((part, coo.row[keep], np.asarray(names, dtype=object)[coo.col[keep]], coo.data[keep]))
        rows = np.concatenate([p[1] for p in pieces])
        kinds = np.concatenate([np.full(len(p[1]), order.index(p[0])) for p in pieces])
        names = np.concatenate([np.asarray(p[2], dtype=str) for p in pieces])
        values = np.concatenate([p[3] for p in pieces])
        sort = np.lexsort((kinds, rows))
        record = np.dtype([("row", np.int64), ("user", users.dtype), ("item", items.dtype), ("part", "U14"),
                           ("name", names.dtype), ("contribution", np.float64)])
        out = np.empty(len(sort), dtype=record)
        out["row"], out["user"], out["item"] = rows[sort], users[rows[sort]], items[rows[sort]]
        out["part"] = np.asarray(order)[kinds[sort]]
        out["name"], out["contribution"] = names[sort], values[sort]
        return out

    @reads
    def select_items(self, n=10, *, user=None, candidates=None, strategy="uncertainty", random_state=None):
        """Items to ask a user to rate, most useful first (onboarding).

        ``strategy="uncertainty"`` (the default) treats the user's parameters
        φ = (b_u, p_u) as uncertain around their prior, with the spread that
        the known users have about theirs, and picks, one at a time, the
        rating that most reduces the expected variance of the user's
        predictions over the candidates (or, without candidates, over the
        catalogue, items weighted by their number of ratings), given the
        ratings already picked, each item's ratings as noisy as its
        residuals: a greedy Bayesian experimental design on the model's own
        item vectors (1, q_i); a logistic model is linearized at the user's
        estimate. It prefers items that users rate differently and that
        differ from those already picked. ``"melu"``: MeLU's evidence candidates, the
        item's mean gradient norm of the loss at the users' prior over its
        training ratings, times its popularity (each scaled to at most 1).
        ``"popularity"``: most rated first. ``"random"``: a random order.

        A known ``user`` is asked about items it has not rated, and under
        ``"uncertainty"`` starts from what its ratings already tell.
        Context, for a model fitted with ``context_columns``, is left out.

        Parameters
        ----------
        n : int, default=10
            Number of items; fewer when fewer candidates are left.
        user : user id, default=None
            The user to ask; None (or an id the model does not know, unless
            the user feature table lists it) for a new user.
        candidates : array-like of item ids, default=None
            The items to choose from, for example those a new user is
            likely to know; every item when None. Ids the model does not
            know are allowed (items in the feature table get their
            features' vectors).
        strategy : {"uncertainty", "melu", "popularity", "random"}, default="uncertainty"
            The rule; ties are broken by popularity, then by order of the
            candidates.
        random_state : int, RandomState instance or None, default=None
            The order for ``strategy="random"``.

        Returns
        -------
        items : ndarray of shape (n_selected,)
            Item ids, most useful first.

        Examples
        --------
        >>> from sklearn_metarec import MAMLFactorizationRecommender
        >>> from sklearn_metarec.datasets import make_ratings
        >>> X, y = make_ratings(n_users=40, n_items=20, random_state=0)
        >>> model = MAMLFactorizationRecommender(n_factors=4, n_epochs=2, random_state=0).fit(X, y)
        >>> ask = model.select_items(5)
        >>> len(ask), len(set(ask.tolist()))
        (5, 5)
        """
        check_is_fitted(self)
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"n must be a positive integer; got {n!r}.")
        if not isinstance(strategy, str) or strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}; got {strategy!r}.")
        if user is not None:
            if np.ndim(user) != 0:
                raise ValueError(f"user must be a single user id; got an array of shape {np.shape(user)}.")
            check_id_column(np.atleast_1d(np.asarray(user)), "user", source="user")
        if candidates is None:
            candidate_ids = self.item_ids_
        else:
            candidate_ids = np.asarray(candidates)
            if candidate_ids.ndim != 1 or len(candidate_ids) == 0:
                raise ValueError("candidates must be a non-empty 1-D array of item ids.")
            check_id_column(candidate_ids, "item", source="candidates")
        rng = check_random_state(random_state)
        codes, theta, n_items = self._serving_items(candidate_ids, self._item_vocab.lookup(candidate_ids))
        if candidates is not None:
            _, first = np.unique(codes, return_index=True)
            keep = np.zeros(len(codes), dtype=bool)
            keep[first] = True
            keep |= codes < 0  # unknown ids all share code −1; each is its own item
            codes, candidate_ids = codes[keep], candidate_ids[keep]
        n_users, d = len(self._user_vocab), self.n_factors + 1
        indptr, rated, ratings, weights, *_ = self._log.csr(n_users)
        u = np.atleast_1d(self._user_vocab.lookup(np.atleast_1d(np.asarray(user)))) if user is not None else [-1]
        user_code = int(u[0])
        mine = rated[indptr[user_code] : indptr[user_code + 1]] if user_code >= 0 else rated[:0]
        fresh = ~np.isin(codes, mine) | (codes < 0)
        codes, candidate_ids = codes[fresh], candidate_ids[fresh]
        if len(codes) == 0:
            return candidate_ids
        positive = ratings > 0 if self._implicit else np.ones(len(ratings), dtype=bool)
        popularity = np.bincount(rated[positive], minlength=n_items).astype(np.float64)
        pop = np.where(codes >= 0, popularity[np.maximum(codes, 0)], 0.0)
        order = np.lexsort((np.arange(len(codes)), -pop))  # ties: popular first, then as given
        codes, candidate_ids, pop = codes[order], candidate_ids[order], pop[order]
        if strategy == "random":
            return candidate_ids[rng.permutation(len(codes))[:n]]
        if strategy == "popularity":
            return candidate_ids[:n]
        _, b_items, Q = K.unpack(theta, n_items, d)
        X_items = np.hstack([np.ones((n_items, 1)), Q])
        if self._pairwise:  # a user's bias cancels from every pair
            X_items[:, 0] = 0.0
        X_cand = np.where(codes[:, None] >= 0, X_items[np.maximum(codes, 0)], np.eye(1, d))
        log_users = np.repeat(np.arange(n_users), np.diff(indptr))
        if strategy == "melu":
            s0 = np.empty(len(rated))
            K.predict(log_users, rated, self._user_priors(np.arange(n_users)), self._theta,
                      len(self._item_vocab), d, s0)
            error = np.abs(expit(s0) - (ratings > 0)) if self._implicit else np.abs(s0 - ratings)
            grad = np.bincount(rated, weights=error, minlength=n_items) / np.maximum(
                np.bincount(rated, minlength=n_items), 1)
            grad = grad * np.linalg.norm(X_items, axis=1)
            score = melu_scores(np.where(codes >= 0, grad[np.maximum(codes, 0)], 0.0), pop)
            return candidate_ids[np.argsort(-score, kind="stable")[:n]]
        phi = self._theta[1 : 1 + d]
        if user is not None:
            ucodes, table = self._serving_users(np.atleast_1d(np.asarray(user)), np.asarray(u, dtype=np.int64))
            phi = table[ucodes[0]] if ucodes[0] >= 0 else phi
        if self._implicit:
            # Laplace's approximation: a logistic rating informs as a Gaussian
            # one of variance 1 / p(1 − p) at the user's present estimate.
            p = expit(self._theta[0] + b_items + X_items @ phi)
            p_cand = np.where(codes >= 0, p[np.maximum(codes, 0)], expit(self._theta[0] + X_cand @ phi))
            X_items, X_cand = X_items * np.sqrt(p * (1 - p))[:, None], X_cand * np.sqrt(p_cand * (1 - p_cand))[:, None]
            item_noise, noise = np.ones(n_items), 1.0
        else:
            fitted = np.empty(len(rated))
            K.predict(log_users, rated, self._users, self._theta, len(self._item_vocab), d, fitted)
            noise = float(np.average((ratings - fitted) ** 2, weights=weights)) if weights.sum() > 0 else 1.0
            # An item's ratings are as noisy as its residuals, shrunk to the
            # mean noise by a prior worth 10 ratings.
            sq = np.bincount(rated, weights=weights * (ratings - fitted) ** 2, minlength=n_items)
            wsum = np.bincount(rated, weights=weights, minlength=n_items)
            item_noise = np.maximum((sq + 10.0 * noise) / (wsum + 10.0), 1e-12)
        sigma = prior_covariance(self._users - self._user_priors(np.arange(n_users)))
        sigma = condition(sigma, X_items[mine] / np.sqrt(item_noise[mine])[:, None])
        # The predictions to make certain: those of the candidates (items the
        # user knows, so likely the ones that matter), or of the catalogue,
        # each item weighted by its number of ratings.
        if candidates is None:
            target = X_items.T @ (X_items * (popularity / max(popularity.sum(), 1.0))[:, None])
        else:
            target = X_cand.T @ X_cand / len(X_cand)
        noise = np.where(codes >= 0, item_noise[np.maximum(codes, 0)], max(noise, 1e-12))
        return candidate_ids[greedy_variance_reduction(X_cand, sigma, target, noise, n)]

    @reads
    def recommend(self, users, n=10, *, exclude_seen=True, items=None, context=None):
        """Top-``n`` items for each user, best first.

        Items are ranked by the predicted rating, exactly as ``predict``
        scores them (with ``loss="logistic"``, by the score r̂, whose order
        is that of the probabilities). An unknown user is ranked with the population prior, so
        every unknown user gets the same list. Ties go to the item listed
        first (in ``items``, or in ``item_ids_``).

        Parameters
        ----------
        users : array-like of shape (n_users,) or a single id
            Raw user ids.
        n : int, default=10
            Length of each list; at most the number of candidate items.
        exclude_seen : bool, default=True
            Leave out the items each user rated in ``fit``, ``partial_fit`` or
            ``fold_in``.
        items : array-like of shape (n_candidates,), default=None
            Candidate item ids; all known items when None. An unknown
            candidate is scored as ``predict`` scores an unknown item (by its
            features, if ``item_features`` list it).
        context : dict, default=None
            Models fitted with ``context_columns`` only: the context to rank
            in, a value for each context column (``{"weekday": "Sat"}``).
            None ranks in the training ratings' mean context.

        Returns
        -------
        item_ids : ndarray of shape (n_users, n_out)
            Recommended item ids, ``n_out = min(n, n_candidates)``; 1-D if
            ``users`` is a single id.
        scores : ndarray of shape (n_users, n_out)
            Their predictions, as ``predict`` gives them. A user left with fewer than ``n_out``
            eligible items gets ``-inf`` in the trailing slots (whose ids are
            excluded items).

        Examples
        --------
        >>> from sklearn_metarec import FactorizationRecommender
        >>> from sklearn_metarec.datasets import make_ratings
        >>> X, y = make_ratings(n_users=30, n_items=20, random_state=0)
        >>> model = FactorizationRecommender(n_factors=4, random_state=0).fit(X, y)
        >>> ids, scores = model.recommend([0, 1, 999], n=3)  # 999 is new
        >>> ids.shape, bool((scores[:, :-1] >= scores[:, 1:]).all())
        ((3, 3), True)
        """
        check_is_fitted(self)
        single = np.ndim(users) == 0
        users = np.atleast_1d(np.asarray(users))
        if users.ndim != 1:
            raise ValueError(f"users must be a 1-D array of ids; got shape {users.shape}.")
        check_id_column(users, "user", source="users")
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"n must be a positive integer; got {n!r}.")
        if items is None:
            candidates = None
            candidate_ids = self.item_ids_
        else:
            candidate_ids = np.asarray(items)
            if candidate_ids.ndim != 1 or len(candidate_ids) == 0:
                raise ValueError("items must be a non-empty 1-D array of item ids.")
            check_id_column(candidate_ids, "item", source="items")
            candidates = self._item_vocab.lookup(candidate_ids)
            known = candidates[candidates >= 0]
            if len(np.unique(known)) < len(known):
                raise ValueError("items holds the same item id more than once.")
        theta, n_items = None, None
        if candidates is not None:
            candidates, theta, n_items = self._serving_items(candidate_ids, candidates)
        codes, table = self._serving_users(users, self._user_vocab.lookup(users))
        if context is not None and not self._has_context():
            raise ValueError("context is for models fitted with context_columns.")
        if self._has_context():
            if theta is None:
                theta, n_items = self._theta, len(self._item_vocab)
            theta, table = self._in_context(theta, n_items, table, context)
        pos, scores = self._top_n(codes, int(n), exclude_seen, candidates, theta, n_items, table)
        if self._logistic:  # −∞ stays the mark of an excluded item
            scores = np.where(np.isneginf(scores), -np.inf, expit(scores))
        ids = candidate_ids[pos]
        return (ids[0], scores[0]) if single else (ids, scores)

    def _top_n(self, user_codes, n, exclude_seen, candidates=None, theta=None, n_items=None, table=None):
        """Positions in ``candidates`` (item codes; all items when None) of
        each user's top ``min(n, len(candidates))``, and their scores.
        ``theta`` and ``n_items``: the parameters to score with, when
        ``_serving_items`` extended them; ``table``: the users' rows, when
        ``_serving_users`` extended them (its extra users have rated nothing)."""
        if theta is None:
            theta, n_items = self._theta, len(self._item_vocab)
        if table is None:
            table = self._users
        if candidates is None:
            candidates = np.arange(n_items, dtype=np.int64)
        candidate_pos = np.full(n_items, -1, dtype=np.int64)
        candidate_pos[candidates[candidates >= 0]] = np.flatnonzero(candidates >= 0)
        n_out = min(n, len(candidates))
        # The rated items of the known users asked for: O(their ratings).
        n_known = len(self._user_vocab)
        known, seen_rows = np.unique(np.where(user_codes < n_known, user_codes, -1), return_inverse=True)
        seen_rows = seen_rows.ravel().astype(np.int64)
        if len(known) and known[0] < 0:
            seen_rows -= 1  # −1: an unknown user, who has rated nothing
            known = known[1:]
        indptr, seen, *_ = self._log.user_csr(known, len(self._user_vocab))
        pos = np.empty((len(user_codes), n_out), dtype=np.int64)
        scores = np.empty((len(user_codes), n_out))
        with numba_threads(self.n_jobs, len(user_codes) * len(candidates) * table.shape[1]):
            K.top_n(user_codes, table, theta, n_items, table.shape[1],
                    candidates, candidate_pos, indptr, seen, seen_rows, bool(exclude_seen), n_out, pos, scores)
        return pos, scores

    # ------------------------------------------------------------------
    # Item features: an item's (b_i, q_i) is its own part plus the sum of
    # its features' parts, F_i·(c, E). ``_theta`` holds the sums, which is
    # all that the kernels and serving read; the item's own part is
    # ``_theta``'s row minus F_i·(c, E), so it is never stored.

    def _attach_item_features(self, table, fresh=True):
        """Give the items their feature rows and the features their parts
        (c, E). ``fresh`` (a model just initialized): random factors E, and
        the items' own factors at zero. Otherwise (features added to a
        trained model) (c, E) start at zero, so that nothing learned changes."""
        self._item_table = table
        self._item_F, self._feat, self._feat_m, self._feat_v = self._feature_block(table, self.item_ids_, "item")
        if not fresh:
            return
        self._feat[:, 1:] = self._rng.normal(0.0, self.init_std, (len(self._feat), self.n_factors))
        # Items with features start from them alone, their own factors at
        # zero: what the items share is then learned first, and an item's
        # own part only what its ratings add.
        _, _, Q = self._unpacked()
        has = np.diff(self._item_F.indptr) > 0
        Q[has] = np.asarray(self._item_F[has] @ self._feat[:, 1:])

    def _feature_block(self, table, ids, side):
        """(rows of ``ids`` in ``table``, zero parameters of its features and
        their two Adam moments); a table that lists none of ``ids`` is an error."""
        rows, found = table.rows(ids)
        if not found.any():
            raise ValueError(
                f"{side}_features lists none of the {side}s in X (are its ids of another kind, strings against "
                f"ints?): X's {side} ids look like {ids[:3].tolist()}, the table's like {table.ids[:3].tolist()}."
            )
        shape = (table.matrix.shape[1], self.n_factors + 1)
        return rows, np.zeros(shape), np.zeros(shape), np.zeros(shape)

    def _fit_feature_biases(self):
        """Set the features' bias parts c to the regression of the trained
        items' biases on their features, b_i ≈ F_i·c, each item weighted by
        its number of ratings n_i times the reliability of its bias,
        n_i / (n_i + γ) (γ: ``item_shrinkage_`` where the model has one),
        with a unit ridge. The trained items keep their biases (their own
        parts take up the change); a new item's bias F·c is then what items
        with its features are rated at, rating for rating. Training's own c
        follows the meta-gradient of the known items' losses, where it only
        sets how far their own parts are pulled; weighting items equally, it
        let rarely rated items' noisy biases set new items' level (MovieLens-
        100k, existing users' ratings of new items: RMSE 1.0282 → 1.0064,
        5 seeds; ``benchmarks/item_cold_start.py``)."""
        F = getattr(self, "_item_F", None)
        if F is None:
            return
        n_items = len(self._item_vocab)
        _, items, _, weights = self._log.coo()[:4]
        counts = np.bincount(items, weights=weights, minlength=n_items)
        gamma = float(getattr(self, "item_shrinkage_", 0.0))
        w = counts * counts / (counts + gamma) if gamma > 0 else counts
        import scipy.sparse as sp
        from scipy.sparse.linalg import spsolve

        biases = self._unpacked()[1]
        # Sparse: a table may have many features (tags), each on few items.
        A = (F.T @ sp.csr_matrix(F.multiply(w[:, None])) + sp.identity(F.shape[1])).tocsc()
        self._feat[:, 0] = np.atleast_1d(spsolve(A, F.T @ (w * biases)))

    def _feature_rows(self, F):
        """(b, Q) of items with feature rows ``F`` from the features alone."""
        part = np.asarray(F @ self._feat)
        return part[:, 0], part[:, 1:]

    def _grow_item_features(self, n_items_old):
        """Give the items added since ``n_items_old`` their feature rows and
        add the features' part to their parameters."""
        import scipy.sparse as sp

        F_new = self._item_table.rows(self.item_ids_[n_items_old:])[0]
        self._item_F = sp.vstack([self._item_F, F_new], format="csr")
        _, bi, Q = self._unpacked()
        b_new, q_new = self._feature_rows(F_new)
        bi[n_items_old:] += b_new
        Q[n_items_old:] += q_new

    def _serving_items(self, item_ids, codes):
        """(codes, theta, n_items) to score ``item_ids`` with: unknown items
        that the feature table lists get rows of their own, appended to a
        copy of the parameters, from their features alone."""
        n_items = len(self._item_vocab)
        if getattr(self, "_item_F", None) is None or (codes >= 0).all():
            return codes, self._theta, n_items
        unknown = np.flatnonzero(codes < 0)
        F, found = self._item_table.rows(np.asarray(item_ids)[unknown])
        if not found.any():
            return codes, self._theta, n_items
        d = self.n_factors + 1
        b_new, q_new = self._feature_rows(F[found])
        theta = np.concatenate([self._theta[: 1 + d + n_items], b_new, self._theta[1 + d + n_items :],
                                q_new.ravel()])
        codes = codes.copy()
        codes[unknown[found]] = n_items + np.arange(found.sum())
        return codes, theta, n_items + int(found.sum())

    # ------------------------------------------------------------------
    # Context: the features of each rating's context (columns of X named by
    # ``context_columns``), their parameters E = (b_c, e_c) per feature, and
    # the distinct feature rows the log's ratings have, which the kernels
    # index by code.

    def _has_context(self):
        return getattr(self, "_ctx_E", None) is not None

    def _read_context(self, X, reset):
        """Context features (n, n_features) of X's rows; ``reset`` (a first
        fit) fixes the features and gives them zero parameters."""
        X = as_2d(X)
        if not reset:
            return transform_context(X, self.context_columns, self._ctx_names)
        names, matrix = fit_context(X, self.context_columns)
        shape = (len(names), self.n_factors + 1)
        self._ctx_names, self._ctx_combos, self._ctx_mean = names, np.empty((0, len(names))), matrix.mean(axis=0)
        self._ctx_E, self._ctx_m, self._ctx_v = np.zeros(shape), np.zeros(shape), np.zeros(shape)
        return matrix

    def _context_codes(self, matrix):
        codes, self._ctx_combos = context_codes(matrix, self._ctx_combos)
        return codes

    def _context_scores(self, u, i, table, theta, n_items, matrix):
        """b_c + (p_u + q_i)ᵀe_c of each (user, item) row with context
        features ``matrix``; an unknown user has the prior's p₀, an unknown
        item no q_i."""
        d = self.n_factors + 1
        off = matrix @ self._ctx_E
        _, _, Q = K.unpack(theta, n_items, d)
        p = np.where((u >= 0)[:, None], table[np.maximum(u, 0), 1:], theta[2 : 1 + d])
        q = np.where((i >= 0)[:, None], Q[np.maximum(i, 0)], 0.0)
        return off[:, 0] + np.sum((p + q) * off[:, 1:], axis=1)

    def _in_context(self, theta, n_items, table, context):
        """Copies of (theta, users' rows) that score in one context: every
        item gains b_c + q_iᵀe_c and every user (the prior too) p_uᵀe_c."""
        d = self.n_factors + 1
        features = self._ctx_mean if context is None else context_row(context, self.context_columns,
                                                                      self._ctx_names)
        off = features @ self._ctx_E
        theta = theta.copy()
        phi0, bi, Q = K.unpack(theta, n_items, d)
        bi += off[0] + Q @ off[1:]
        phi0[0] += phi0[1:] @ off[1:]
        table = table.copy()
        table[:, 0] += table[:, 1:] @ off[1:]
        return theta, table

    # ------------------------------------------------------------------
    # User features: a user's prior is φ₀ + G_u·A, its attributes' rows G_u
    # times their parameters A (one (bias, factors) row per attribute).

    _takes_user_features = False

    def _check_user_table(self, user_features):
        """The table of ``user_features`` for an update of a fitted model."""
        if user_features is None:
            return None
        if not self._takes_user_features:
            raise TypeError(f"{type(self).__name__} does not take user_features yet; "
                            "MAMLFactorizationRecommender and MetaSGDFactorizationRecommender do.")
        table = check_features(user_features, "user_features")
        if getattr(self, "_user_table", None) is None:
            raise ValueError("user_features can only be given to fold_in or partial_fit of a model that was "
                             "fitted with user_features.")
        return table.aligned(self._user_table.names, "user_features")

    def _attach_user_features(self, table):
        """Give the users their attribute rows and the attributes zero
        parameters: the prior starts as the population's and learns what
        the attributes add."""
        self._user_table = table
        self._user_G, self._ufeat, self._ufeat_m, self._ufeat_v = self._feature_block(table, self.user_ids_, "user")

    def _grow_user_features(self, n_users_old):
        import scipy.sparse as sp

        G_new = self._user_table.rows(self.user_ids_[n_users_old:])[0]
        self._user_G = sp.vstack([self._user_G, G_new], format="csr")

    def _user_priors(self, codes):
        """Rows (n, d): the prior of the users ``codes``, φ₀ plus, with user
        features, their attributes' part."""
        d = self.n_factors + 1
        priors = np.tile(self._theta[1 : 1 + d], (len(codes), 1))
        G = getattr(self, "_user_G", None)
        if G is not None:
            K.add_rows_times(G.indptr, G.indices, G.data, np.ascontiguousarray(codes, dtype=np.int64),
                             self._ufeat, priors)
        return priors

    def _serving_users(self, user_ids, codes):
        """(codes, table of user rows) to score ``user_ids`` with: unknown
        users that the user feature table lists get rows of their own, their
        attributes' prior, appended to a copy of the users' rows."""
        if getattr(self, "_user_G", None) is None or (codes >= 0).all():
            return codes, self._users
        unknown = np.flatnonzero(codes < 0)
        G, found = self._user_table.rows(np.asarray(user_ids)[unknown])
        if not found.any():
            return codes, self._users
        rows = np.tile(self._theta[1 : 2 + self.n_factors], (int(found.sum()), 1))
        rows += np.asarray(G[found] @ self._ufeat)
        codes = codes.copy()
        codes[unknown[found]] = len(self._user_vocab) + np.arange(found.sum())
        return codes, np.concatenate([self._users, rows])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        tags.regressor_tags.poor_score = True
        return tags


def _grow_items(theta, n_items, d, q_new):
    """``theta`` with ``len(q_new)`` items appended: zero biases, factors ``q_new``."""
    head = theta[: 1 + d + n_items]
    factors = theta[1 + d + n_items :]
    return np.concatenate([head, np.zeros(len(q_new)), factors, q_new.ravel()])
