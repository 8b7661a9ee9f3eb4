"""A bias model with empirical-Bayes shrinkage and optional side features,
for ``side_information.py`` (without features it is the package's
``EmpiricalBayesRecommender``).

r̂ = μ + b_u + b_i (+ a taste term), fitted by alternating shrunk means.
Two things set it apart from Surprise's BaselineOnly, and both matter to
new users:

- Light users and rare items sit at other levels than the heavy ones that
  dominate μ. A user's offset shrinks towards the average user's, not
  towards 0, and likewise an item's.
- The shrinkage is not tuned but estimated: λ = σ²/τ², with τ² the spread
  of the heavy users' (items') true mean residuals and σ² the rating noise.

With side features, a ridge fit on them replaces the average as the prior
mean: of a user's level (``user_x``), of an item's bias (``item_x``), and a
taste term, demographics ⊗ genres (``taste``). ``side_information.py``
measures what each is worth.
"""

import numpy as np
from scipy import sparse
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_val_predict

ALPHAS = np.logspace(-2, 4, 25)
# Groups with fewer ratings have mean residuals too noisy to fit priors to.
MIN_RATINGS = 20


def _means(groups, residual, n_groups):
    """Per-group mean residuals (0 for a group with none) and counts."""
    n = np.bincount(groups, minlength=n_groups)
    return np.bincount(groups, residual, n_groups) / np.maximum(n, 1), n


def _shrunk_means(groups, residual, n_groups, lam, prior):
    """Posterior means of per-group offsets: (Σ residual + λ prior) / (n + λ)."""
    n = np.bincount(groups, minlength=n_groups)
    return (np.bincount(groups, residual, n_groups) + lam * prior) / (n + lam)


def _spread(groups, residual, n_groups):
    """(τ², σ²): the spread of the groups' true mean residuals (sampling noise
    taken out) and the within-group variance, over groups with enough ratings."""
    mean, n = _means(groups, residual, n_groups)
    within = np.bincount(groups, (residual - mean[groups]) ** 2, n_groups) / np.maximum(n - 1, 1)
    fit = n >= MIN_RATINGS
    sigma2 = np.average(within[fit], weights=n[fit] - 1)
    return max(mean[fit].var() - np.mean(sigma2 / n[fit]), 1e-3), sigma2


def _prior(features, offsets, counts):
    """Prior means of the offsets, fitted on the groups with enough ratings:
    their average (``features`` None), or a ridge prediction from the
    features; and the variance the features explain beyond the average, out
    of sample (5-fold CV)."""
    fit = counts >= MIN_RATINGS
    if features is None:
        return np.full(len(offsets), offsets[fit].mean()), 0.0
    ridge = RidgeCV(alphas=ALPHAS)
    cv = cross_val_predict(ridge, features[fit], offsets[fit], cv=KFold(5, shuffle=True, random_state=0))
    explained = offsets[fit].var() - np.mean((offsets[fit] - cv) ** 2)
    return ridge.fit(features[fit], offsets[fit]).predict(features), max(explained, 0.0)


def taste_design(u, i, demographics, genres):
    """Sparse rows of demographics ⊗ genres, one per rating; ``demographics``
    has the same number of ones in every row (one per attribute)."""
    per_user = np.nonzero(demographics)[1].reshape(len(demographics), -1)
    entry = sparse.csr_matrix(genres)[i].tocoo()
    columns = per_user[u[entry.row]] * genres.shape[1] + entry.col[:, None]
    rows = np.repeat(entry.row, per_user.shape[1])
    return sparse.csr_matrix((np.ones(len(rows)), (rows, columns.ravel())),
                             shape=(len(u), demographics.shape[1] * genres.shape[1]))


class BiasModel:
    """μ + b_u + b_i (+ taste) on user and item indices. ``user_x`` and
    ``item_x``: feature rows per user and item index, or None; ``taste``:
    (demographics, genres), or None."""

    def __init__(self, user_x=None, item_x=None, taste=None, sweeps=10):
        self.user_x, self.item_x, self.taste, self.sweeps = user_x, item_x, taste, sweeps

    def fit(self, u, i, y, n_users, n_items):
        self.mu = y.mean()
        r = y - self.mu
        self.user_prior, self.item_prior = np.zeros(n_users), np.zeros(n_items)
        tau_i, _ = _spread(i, r, n_items)
        # The users' spread is measured after a rough item correction (noise
        # taken as 1 until σ² is known).
        tau_u, sigma2 = _spread(u, r - _shrunk_means(i, r, n_items, 1.0 / tau_i, 0.0)[i], n_users)
        b_u, b_i = self._alternate(u, i, r, sigma2 / tau_u, sigma2 / tau_i)
        self.user_prior, explained_u = _prior(self.user_x, *_means(u, r - b_i[i], n_users))
        self.item_prior, explained_i = _prior(self.item_x, *_means(i, r - b_u[u], n_items))
        self.explained = {"user level": explained_u, "item bias": explained_i}
        self.spread = {"user level": tau_u, "item bias": tau_i}
        if self.taste is not None:
            self.taste_model = RidgeCV(alphas=ALPHAS).fit(taste_design(u, i, *self.taste), r - b_u[u] - b_i[i])
            r = r - self._taste(u, i)
        # Empirical Bayes: what spread the features leave sets the shrinkage
        # towards their prior mean.
        lam_u = sigma2 / max(tau_u - explained_u, 1e-3)
        lam_i = sigma2 / max(tau_i - explained_i, 1e-3)
        self.b_u, self.b_i = self._alternate(u, i, r, lam_u, lam_i)
        return self

    def _alternate(self, u, i, r, lam_u, lam_i):
        b_u = np.zeros(len(self.user_prior))
        for _ in range(self.sweeps):
            b_i = _shrunk_means(i, r - b_u[u], len(self.item_prior), lam_i, self.item_prior)
            b_u = _shrunk_means(u, r - b_i[i], len(self.user_prior), lam_u, self.user_prior)
        return b_u, b_i

    def _taste(self, u, i):
        return 0.0 if self.taste is None else self.taste_model.predict(taste_design(u, i, *self.taste))

    def predict(self, u, i):
        """Ratings of (u, i) index pairs; a negative index is an unknown user
        or item, who gets the average prior (no taste term)."""
        known = (u >= 0) & (i >= 0)
        b_u = np.where(u >= 0, self.b_u[u], self.user_prior.mean())
        b_i = np.where(i >= 0, self.b_i[i], self.item_prior.mean())
        taste = np.zeros(len(u))
        if self.taste is not None and known.any():
            taste[known] = self._taste(u[known], i[known])
        return np.clip(self.mu + b_u + b_i + taste, 1.0, 5.0)
