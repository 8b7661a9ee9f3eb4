"""The plain biased matrix-factorization baseline (Surprise's SVD)."""

import time
from numbers import Integral, Real

import numpy as np
from scipy.special import logit
from sklearn.utils._param_validation import Interval, StrOptions

from . import _kernels as K
from ._base import MAX_FACTORS, MAX_NEGATIVES, BaseFactorizationRecommender, DivergenceError, serialized
from ._features import check_features


class FactorizationRecommender(BaseFactorizationRecommender):
    """Biased matrix factorization trained by SGD, as Surprise's ``SVD``.

    r̂(u, i) = μ + b_u + b_i + p_uᵀ q_i, with μ the global mean (not
    learned), minimizing Σ w [(r − r̂)² + reg (b_u² + b_i² + ‖p_u‖² + ‖q_i‖²)]
    by SGD with Surprise's update rules and defaults. Unlike Surprise, the
    ratings are visited in a fresh random order every epoch.

    This is the drop-in baseline that the meta-learners replace. Its
    :meth:`fold_in` solves the same regularized least-squares problem for
    (b_u, p_u) exactly, items held fixed, which is the best a fixed
    factorization can do for a user with few ratings.

    With ``loss="logistic"`` it is logistic matrix factorization for
    implicit feedback: SGD on the cross-entropy of σ(r̂), with sampled
    negatives when y holds positives only, μ fixed at the log-odds of a
    positive, and a fold-in that solves the regularized logistic problem
    for (b_u, p_u) by Newton's method.

    Parameters
    ----------
    n_factors : int, default=100
        Number of latent factors.
    n_epochs : int, default=20
        SGD passes over the ratings in :meth:`fit`.
    lr : float, default=0.005
        SGD step size (Surprise's ``lr_all``).
    reg : float, default=0.02
        L2 strength (Surprise's ``reg_all``).
    loss : {"squared", "logistic"}, default="squared"
        Per-rating loss: squared error for ratings, or the binary
        cross-entropy of σ(r̂) for 0/1 labels or positives only (y left
        out); ``predict`` then returns probabilities.
    n_negatives : int, default=4
        With ``loss="logistic"`` and positives only, items the user never
        rated sampled per positive as negatives (target 0), afresh every
        epoch. Ignored otherwise.
    init_std : float, default=0.1
        Standard deviation of the random initial factors.
    context_columns : list of str or int, default=None
        Columns of X (names of a DataFrame, or positions) read as each
        rating's context, as in :class:`MAMLFactorizationRecommender`: a
        rating in context c scores b_c + (p_u + q_i)ᵀe_c more (a
        factorization machine's pairwise terms), each context feature's
        (b_c, e_c) trained by the same SGD steps under ``reg``.
    n_jobs : int, default=None
        Threads for the parallel kernels (prediction, fold-in); SGD itself
        is sequential.
    random_state : int, RandomState instance or None, default=None
        Seeds initialization and the order of the ratings.
    verbose : int, default=0
        Print the training error after every epoch when positive.

    Attributes
    ----------
    user_ids_ : ndarray of shape (n_users,)
    item_ids_ : ndarray of shape (n_items,)
    global_mean_ : float
    item_biases_ : ndarray of shape (n_items,)
    item_factors_ : ndarray of shape (n_items, n_factors)
    user_biases_ : ndarray of shape (n_users,)
    user_factors_ : ndarray of shape (n_users, n_factors)
    user_bias_prior_ : float
        Always 0: an unknown user is predicted by μ + b_i, as in Surprise.
    user_factors_prior_ : ndarray of shape (n_factors,)
        Always 0.
    n_iter_ : int
        Epochs run, :meth:`partial_fit` calls included.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)

    Examples
    --------
    >>> from sklearn_metarec import FactorizationRecommender
    >>> from sklearn_metarec.datasets import make_ratings
    >>> X, y = make_ratings(n_users=60, n_items=40, random_state=0)
    >>> model = FactorizationRecommender(n_factors=4, random_state=0).fit(X, y)
    >>> model.predict([[0, 1]]).shape
    (1,)
    """

    _parameter_constraints = {
        "n_factors": [Interval(Integral, 1, MAX_FACTORS, closed="both")],
        "n_epochs": [Interval(Integral, 0, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "reg": [Interval(Real, 0, None, closed="left")],
        "loss": [StrOptions({"squared", "logistic"})],
        "n_negatives": [Interval(Integral, 0, MAX_NEGATIVES, closed="both")],
        "init_std": [Interval(Real, 0, None, closed="left")],
        "context_columns": [list, tuple, None],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_factors=100,
        *,
        n_epochs=20,
        lr=0.005,
        reg=0.02,
        loss="squared",
        n_negatives=4,
        init_std=0.1,
        context_columns=None,
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        self.n_factors = n_factors
        self.n_epochs = n_epochs
        self.lr = lr
        self.reg = reg
        self.loss = loss
        self.n_negatives = n_negatives
        self.init_std = init_std
        self.context_columns = context_columns
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    _takes_user_features = True

    @serialized
    def fit(self, X, y=None, sample_weight=None, *, item_features=None, user_features=None):
        """Fit by SGD on all ratings.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_columns)
            The first two columns hold the user id and the item id.
        y : array-like of shape (n_samples,), default=None
            Ratings, or 0/1 labels with ``loss="logistic"``, where leaving
            it out means every row is a positive.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each rating: it scales that rating's SGD step.
        item_features : FeatureTable or DataFrame, default=None
            Side features of items, as in
            :meth:`MAMLFactorizationRecommender.fit`. An item is then its
            own part plus the sum of its features' parts (LightFM's model,
            with the squared or the logistic loss): each SGD step moves the
            own part and, scaled by each feature's value, the features'
            parts, all under ``reg``. Items listed but never rated are
            scored from their features; after training, the features'
            biases are set to the regression of the items' biases on their
            features, each item weighted by its ratings.
        user_features : FeatureTable or DataFrame, default=None
            Attributes of users, read as ``item_features`` is: a user is
            likewise its own part plus the sum of its attributes' parts
            (LightFM's user features), all trained by the same steps. A new
            user listed here (or in the table given to ``fold_in``) is
            scored from its attributes before any rating, and ``fold_in``
            shrinks its parameters towards them rather than towards zero.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        table = check_features(item_features)
        user_table = check_features(user_features, "user_features")
        users, items, y, w = self._prepare(X, y, sample_weight, reset=True)
        ctx = self._context_codes(self._read_context(X, reset=True)) if self.context_columns else None
        self._add_ratings(users, items, y, w, new_items="random", ctx=ctx)
        if table is not None:
            self._attach_item_features(table)
        if user_table is not None:
            self._attach_user_features(user_table)
        self._sgd(np.arange(len(y)), self.n_epochs)
        self._fit_feature_biases()
        return self

    @serialized
    def partial_fit(self, X, y=None, sample_weight=None, *, item_features=None, user_features=None):
        """One SGD pass over new ratings; new users and items join the model.

        The first call on an unfitted estimator initializes it as
        :meth:`fit` does.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_columns)
            (user id, item id) rows.
        y : array-like of shape (n_samples,), default=None
            Ratings, or labels, as in :meth:`fit`.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each rating.
        item_features : FeatureTable or DataFrame, default=None
            As in :meth:`fit` on the first call; later, the table new items
            take their features from (the same features).
        user_features : FeatureTable or DataFrame, default=None
            Likewise for users; attributes cannot be added to a model
            fitted without them.

        Returns
        -------
        self : object
            The updated estimator.
        """
        table = check_features(item_features)
        reset = not hasattr(self, "_theta")
        user_table = check_features(user_features, "user_features") if reset else self._check_user_table(user_features)
        if table is not None and not reset:
            if getattr(self, "_item_table", None) is None:
                raise ValueError("item_features can be added by partial_fit only to a model that has them; "
                                 "call fit with item_features.")
            table = table.aligned(self._item_table.names)
            self._item_table = table  # before new items join, so that they use it
        users, items, y, w = self._prepare(X, y, sample_weight, reset=reset)
        if user_table is not None and not reset:
            self._user_table = user_table  # before new users join, so that they use it
        n_old = len(self._log)
        ctx = self._context_codes(self._read_context(X, reset=reset)) if self.context_columns else None
        self._add_ratings(users, items, y, w, new_items="random", ctx=ctx)
        if table is not None and reset:
            self._attach_item_features(table)
        if user_table is not None and reset:
            self._attach_user_features(user_table)
        self._sgd(np.arange(n_old, n_old + len(y)), 1)
        self._fit_feature_biases()
        return self

    # ------------------------------------------------------------------

    def _init_theta(self, n_items, y, w):
        d = self.n_factors + 1
        theta = np.zeros(1 + d + n_items + n_items * (d - 1))
        theta[0] = np.average(y, weights=w)
        if self._logistic:
            share = theta[0] / (1 + self._n_neg())
            theta[0] = logit(np.clip(share, 1e-3, 1 - 1e-3))
        theta[1 + d + n_items :] = self._rng.normal(0.0, self.init_std, n_items * (d - 1))
        return theta

    def _add_ratings(self, users, items, y, w, new_items, ctx=None):
        n_users_old = len(self._user_vocab)
        out = super()._add_ratings(users, items, y, w, new_items, ctx)
        n_new = len(self._user_vocab) - n_users_old
        # Surprise's random start for new users' own factors (added to what
        # their attributes give), for training only: fold_in solves for them
        # exactly and must not draw from the training random stream.
        if n_new and new_items == "random":
            self._users[n_users_old:, 1:] += self._rng.normal(0.0, self.init_std, (n_new, self.n_factors))
        return out

    def _sgd(self, positions, n_epochs):
        users, items, ratings, weights, *extra = self._log.coo()
        n_items = len(self._item_vocab)
        n_neg = self._n_neg()
        seen_indptr, seen_items = _rated_items(users, items, len(self._user_vocab), n_items, n_neg)
        for _ in range(n_epochs):
            start = time.perf_counter()
            order = self._rng.permutation(positions)
            seed = self._rng.randint(np.iinfo(np.int64).max, dtype=np.int64) if n_neg else 0
            args = (users, items, ratings, weights, order, self._theta, n_items, self._users,
                    float(self.lr), float(self.reg), self._logistic, n_neg, seen_indptr, seen_items, seed)
            F, G = getattr(self, "_item_F", None), getattr(self, "_user_G", None)
            if F is None and G is None and not self._has_context():
                sse = K.sgd_epoch(*args)
            else:
                d = self.n_factors + 1
                F, feat = (F, self._feat) if F is not None else _no_features(n_items, d)
                G, ufeat = (G, self._ufeat) if G is not None else _no_features(len(self._user_vocab), d)
                if self._has_context():
                    context = (extra[0], self._ctx_combos, self._ctx_E)
                else:
                    context = (np.zeros(0, dtype=np.int64), np.zeros((0, 1)), np.zeros((1, d)))
                sse = K.sgd_epoch_features(*args, F.indptr, F.indices, F.data, feat, G.indptr, G.indices, G.data,
                                           ufeat, *context)
            if not (np.isfinite(sse) and np.isfinite(self._users).all() and np.isfinite(self._theta).all()):
                raise DivergenceError(
                    f"SGD diverged in epoch {self.n_iter_ + 1}: parameters became NaN "
                    f"or infinite. Try a smaller lr (now {self.lr})."
                )
            self.n_iter_ += 1
            if self.verbose:
                mean = sse / (weights[positions].sum() * (1 + n_neg))
                what = f"cross-entropy {mean:.5f}" if self._logistic else f"RMSE {np.sqrt(mean):.5f}"
                print(f"-- Epoch {self.n_iter_}: training {what}, {time.perf_counter() - start:.2f} s")

    def _solve_users(self, indptr, items, ratings, weights, users, keys, ctxs=None):
        d = self.n_factors + 1
        out = np.empty((len(users), d))
        args = (indptr, items, ratings, weights, users)
        # With user attributes the penalty pulls each user towards what its
        # attributes give, its own part towards zero.
        centers = self._user_priors(keys) if getattr(self, "_user_G", None) is not None else np.empty((0, d))
        if ctxs is not None and self._has_context():
            context = (np.ascontiguousarray(ctxs), np.ascontiguousarray(self._ctx_combos @ self._ctx_E))
        else:
            context = K.no_context(d)[:2]
        if self._logistic:
            K.logistic_users(*args, keys, self._serve_seed, self._theta, len(self._item_vocab),
                             d, float(self.reg), self._n_neg(), centers, *context, out)
        else:
            K.ridge_users(*args, self._theta, len(self._item_vocab), d, float(self.reg), centers, *context, out)
        return out


def _no_features(n_rows, d):
    """A feature matrix of ``n_rows`` empty rows, and one zero feature."""
    import scipy.sparse as sp

    return sp.csr_matrix((n_rows, 1)), np.zeros((1, d))


def _rated_items(users, items, n_users, n_items, n_neg):
    """CSR of each user's rated items, sorted and unique, for drawing
    negatives (empty when none are drawn)."""
    if not n_neg:
        return np.zeros(n_users + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    pairs = np.unique(users * n_items + items)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(pairs // n_items, minlength=n_users), out=indptr[1:])
    return indptr, pairs % n_items
