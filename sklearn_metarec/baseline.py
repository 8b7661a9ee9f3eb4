"""The empirical-Bayes bias model: μ + b_u + b_i with estimated shrinkage."""

from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval

from ._base import BaseFactorizationRecommender, serialized


def _shrunk_means(groups, residual, weights, n_groups, lam, prior):
    """Posterior means of per-group offsets: (Σ w·residual + λ prior) / (W + λ)."""
    total = np.bincount(groups, weights * residual, n_groups)
    return (total + lam * prior) / (np.bincount(groups, weights, n_groups) + lam)


def _spread(groups, residual, weights, n_groups, min_ratings):
    """(τ², σ²): the spread of the groups' true mean residuals, sampling noise
    taken out, and the within-group variance, over the groups with at least
    ``min_ratings`` ratings (all groups with two or more if none has).
    None when no group has two ratings."""
    n = np.bincount(groups, weights, n_groups)
    mean = np.bincount(groups, weights * residual, n_groups) / np.maximum(n, 1e-12)
    within = np.bincount(groups, weights * (residual - mean[groups]) ** 2, n_groups) / np.maximum(n - 1, 1)
    fit = n >= min_ratings
    if fit.sum() < 2:
        fit = n >= 2
    if fit.sum() < 2:
        return None
    sigma2 = max(np.average(within[fit], weights=n[fit] - 1), 1e-6)
    return max(mean[fit].var() - np.mean(sigma2 / n[fit]), 1e-3), sigma2, mean, fit


def shrinkage_strengths(users, items, residual, weights, n_users, n_items, min_ratings=20):
    """(λ_u, λ_i): the pseudo-counts σ²/τ² of the users' and the items'
    offsets, estimated from ratings less their mean (see
    :class:`EmpiricalBayesRecommender`); 1 where a side has no group with
    two ratings."""
    item_spread = _spread(items, residual, weights, n_items, min_ratings)
    lam_i = 1.0 if item_spread is None else item_spread[1] / item_spread[0]
    # The users' spread is measured after a rough item correction.
    rough = _shrunk_means(items, residual, weights, n_items, lam_i, 0.0)
    user_spread = _spread(users, residual - rough[items], weights, n_users, min_ratings)
    if user_spread is None:
        return 1.0, lam_i
    tau_u, sigma2 = user_spread[:2]
    if item_spread is not None:
        lam_i = sigma2 / item_spread[0]
    return sigma2 / tau_u, lam_i


class EmpiricalBayesRecommender(BaseFactorizationRecommender):
    """Bias model μ + b_u + b_i whose shrinkage is estimated from the data.

    The strongest simple peer for users with few ratings. Two things set it
    apart from Surprise's ``BaselineOnly``, and both matter to new users:

    - Users (items) with few ratings sit at other levels than the heavy ones
      that dominate μ. A user's offset shrinks towards the average user's,
      b₀ (``user_bias_prior_``), not towards 0.
    - Nothing is tuned. The shrinkage λ = σ²/τ² is a pseudo-count of
      ratings: τ² is the spread of the true mean offsets of the users
      (items) with at least ``min_ratings`` ratings, sampling noise taken
      out, and σ² the rating noise.

    The offsets are fitted by alternating shrunk means,
    b_u = (Σ w (r − μ − b_i) + λ_u b₀) / (W_u + λ_u), and likewise b_i
    towards the average item's offset. :meth:`fold_in` gives a user exactly
    that b_u from its ratings, items fixed; an unknown user gets b₀, and an
    unknown item the average item's offset (folded into μ). It is
    the biased factorization with no factors, so it shares the package's
    API: ``user_factors_`` and ``item_factors_`` have zero columns.

    Parameters
    ----------
    n_sweeps : int, default=10
        Alternating passes over (b_i, b_u).
    min_ratings : int, default=20
        Users and items with fewer ratings are too noisy to measure the
        spread of offsets from (all with two or more are used if none has
        that many; λ = 1 if none has two).
    n_jobs : int, default=None
        Threads for prediction and top-n selection.
    random_state : None
        Accepted for a uniform interface with the other estimators; the
        fit is deterministic.

    Attributes
    ----------
    user_ids_, item_ids_, global_mean_, item_biases_, user_biases_, \
user_bias_prior_, item_factors_, user_factors_, user_factors_prior_
        As in :class:`MAMLFactorizationRecommender`; the factor arrays have
        zero columns.
    user_shrinkage_ : float
        λ_u, in ratings.
    item_shrinkage_ : float
        λ_i, in ratings.
    n_iter_ : int
        Fits run, :meth:`partial_fit` calls included.
    n_features_in_ : int
        Number of columns of X seen in :meth:`fit`.

    Examples
    --------
    >>> from sklearn_metarec import EmpiricalBayesRecommender
    >>> from sklearn_metarec.datasets import make_ratings
    >>> X, y = make_ratings(n_users=60, n_items=40, random_state=0)
    >>> model = EmpiricalBayesRecommender().fit(X, y)
    >>> model.fold_in([[500, 1], [500, 2]], [5, 4]).predict([[500, 3], [600, 3]]).shape
    (2,)
    """

    n_factors = 0  # not a parameter: the layout of a factorization with none

    _parameter_constraints = {
        "n_sweeps": [Interval(Integral, 1, None, closed="left")],
        "min_ratings": [Interval(Integral, 2, None, closed="left")],
        "n_jobs": [Integral, None],
        "random_state": [None, "random_state"],
    }

    def __init__(self, *, n_sweeps=10, min_ratings=20, n_jobs=None, random_state=None):
        self.n_sweeps = n_sweeps
        self.min_ratings = min_ratings
        self.n_jobs = n_jobs
        self.random_state = random_state

    @serialized
    def fit(self, X, y, sample_weight=None):
        """Estimate the shrinkage and fit μ, b_i, b₀ and every b_u.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_columns)
            The first two columns hold the user id and the item id.
        y : array-like of shape (n_samples,)
            Ratings.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each rating; it counts as that many ratings.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        users, items, y, w = self._prepare(X, y, sample_weight, reset=True)
        touched, _, _ = self._add_ratings(users, items, y, w, new_items="zeros")
        self._fit_offsets()
        self._refresh_users(touched)
        return self

    @serialized
    def partial_fit(self, X, y, sample_weight=None):
        """Add ratings and refit on all ratings seen so far.

        The fit is a closed form, cheap in the number of ratings, so there
        is nothing to do incrementally: the result equals :meth:`fit` on all
        the ratings given so far (:meth:`fold_in` included).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_columns)
            (user id, item id) rows.
        y : array-like of shape (n_samples,)
            Ratings.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each rating.

        Returns
        -------
        self : object
            The updated estimator.
        """
        users, items, y, w = self._prepare(X, y, sample_weight, reset=not hasattr(self, "_theta"))
        self._add_ratings(users, items, y, w, new_items="zeros")
        self._fit_offsets()
        self._refresh_users(np.arange(len(self._user_vocab)))
        return self

    # ------------------------------------------------------------------

    def _init_theta(self, n_items, y, w):
        return np.zeros(2 + n_items)  # [μ, b₀, b_i...]

    def _fit_offsets(self):
        u, i, r, w = self._log.coo()[:4]
        n_users, n_items = len(self._user_vocab), len(self._item_vocab)
        mu = np.average(r, weights=w)
        r = r - mu
        lam_u, lam_i = shrinkage_strengths(u, i, r, w, n_users, n_items, self.min_ratings)
        b_u = np.zeros(n_users)
        prior_u = prior_i = 0.0
        for _ in range(self.n_sweeps):
            b_i = _shrunk_means(i, r - b_u[u], w, n_items, lam_i, prior_i)
            b_u = _shrunk_means(u, r - b_i[i], w, n_users, lam_u, prior_u)
            prior_u = _average_offset(u, r - b_i[i], w, n_users, self.min_ratings)
            prior_i = _average_offset(i, r - b_u[u], w, n_items, self.min_ratings)
        # μ absorbs the average item's offset, so that an unknown item (no
        # bias) is predicted at the level an item with no ratings shrinks to.
        self._theta = np.r_[mu + prior_i, prior_u, b_i - prior_i]
        self._lam = (lam_u, lam_i)
        self.n_iter_ += 1

    @property
    def user_shrinkage_(self):
        """float: λ_u, in ratings."""
        return float(self._lam[0])

    @property
    def item_shrinkage_(self):
        """float: λ_i, in ratings."""
        return float(self._lam[1])

    def _solve_users(self, indptr, items, ratings, weights, users, keys):
        counts = indptr[users + 1] - indptr[users]
        # Each chosen user's slice of the CSR, laid end to end.
        starts = np.repeat(indptr[users] - np.r_[0, np.cumsum(counts)[:-1]], counts)
        pos = starts + np.arange(counts.sum())
        owner = np.repeat(np.arange(len(users)), counts)
        mu, prior = self._theta[0], self._theta[1]
        residual = ratings[pos] - mu - self._theta[2 + items[pos]]
        b_u = _shrunk_means(owner, residual, weights[pos], len(users), self._lam[0], prior)
        return b_u[:, None]


def _average_offset(groups, residual, weights, n_groups, min_ratings):
    """Mean offset of the groups with at least ``min_ratings`` ratings (of all
    groups if none has), the prior a new user (item) shrinks towards."""
    n = np.bincount(groups, weights, n_groups)
    mean = np.bincount(groups, weights * residual, n_groups) / np.maximum(n, 1e-12)
    heavy = n >= min_ratings
    chosen = heavy if heavy.any() else n > 0
    return float(mean[chosen].mean())
