"""Reptile over biased matrix factorization: first-order meta-learning by
interpolation toward each user's adapted parameters."""

import numbers

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from . import _kernels as K
from .maml import MAMLFactorizationRecommender


class ReptileFactorizationRecommender(MAMLFactorizationRecommender):
    """Reptile: meta-learning by moving toward adapted parameters.

    For each user of a meta-batch, the user parameters φ (from the prior
    φ₀) and, with ``adapt_items``, the parameters of the items in the user's
    support set are adapted by ``n_inner_steps`` gradient steps on the
    support loss. The meta-parameters then move toward the adapted ones:
    ``θ ← θ + meta_lr · mean(θ̃ − θ)``. No gradient flows through the inner
    loop, so a meta-step costs about one inner loop per task. μ stays at the
    global mean of the ratings fitted first.

    Serving is as in :class:`MAMLFactorizationRecommender`: users are
    adapted from φ₀ by ``n_inner_steps`` steps on their ratings.

    ``fit(..., item_features=..., user_features=...)`` takes the tables
    MAML takes. With no gradient to chain into them, each item feature's
    part moves by ``meta_lr`` times the mean Reptile direction of the
    batch's items that have it, and every item follows its features; each
    user attribute's part moves likewise toward its users' adapted
    parameters beyond φ₀'s move. New items and users listed in the tables
    are scored from their features before any rating.

    Parameters
    ----------
    n_factors : int, default=32
        Number of latent factors k.
    n_inner_steps : int, default=5
        Gradient steps T of the inner loop.
    inner_lr : float or "auto", default=0.15
        Step size α for the user parameters ("auto": MAML's rule). Unlike
        MAML's, Reptile's best step on implicit data measured here is 0.15
        as well: its items adapt with the users, and larger steps overfit.
    inner_reg : float, default=0.0
        L2 strength λ on the user parameters in the inner loop.
    shrinkage : float, default=10.0
        Pseudo-count κ of the support loss, as in
        :class:`MAMLFactorizationRecommender`: users with few ratings take
        shorter steps.
    adapt_items : bool, default=True
        Adapt the support items' biases and factors in the inner loop too.
        Without it only φ₀ is meta-learned and the items keep their start.
    item_lr : float, default=None
        Step size for the item parameters; ``inner_lr`` when None.
    meta_lr : float, default=1.0
        Interpolation step ε in (0, 1] toward the adapted parameters.
    meta_batch_size : int, default=32
        Users (tasks) per meta-update.
    n_epochs : int, default=40
        Passes over the training users in :meth:`fit`.
    n_support : int, float or (int, int), default=(3, 20)
        Ratings a task adapts on, as in :class:`MAMLFactorizationRecommender`.
    loss : {"squared", "logistic"}, default="squared"
        Per-rating loss; see :class:`MAMLFactorizationRecommender`.
    n_negatives : int, default=4
        Sampled negatives per positive with ``loss="logistic"`` and
        positives only; see :class:`MAMLFactorizationRecommender`.
    init_std : float, default=0.1
        Standard deviation of the random initial factors.
    context_columns : list of str or int, default=None
        Columns of X read as each rating's context, as in
        :class:`MAMLFactorizationRecommender`. Each support entry's copy of
        its context's (b_c, e_c) adapts with the items' (step
        ``item_lr``), and each context feature's parameters move by
        ``meta_lr`` times the mean direction of the copies that have it.
    n_jobs : int, default=None
        Threads for the Numba kernels; results are identical for any number.
    random_state : int, RandomState instance or None, default=None
        Seeds initialization and task sampling.
    verbose : int, default=0
        Print the support loss after every epoch when positive.

    Attributes
    ----------
    user_ids_, item_ids_, global_mean_, item_biases_, item_factors_, \
user_bias_prior_, user_factors_prior_, user_biases_, user_factors_, \
n_iter_, n_features_in_, feature_names_in_
        As in :class:`MAMLFactorizationRecommender`.
    loss_curve_ : list of float
        Mean support loss at the meta-parameters, before adaptation, per epoch.

    References
    ----------
    A. Nichol, J. Achiam and J. Schulman, "On First-Order Meta-Learning
    Algorithms", arXiv:1803.02999, 2018.

    Examples
    --------
    >>> from sklearn_metarec import ReptileFactorizationRecommender
    >>> from sklearn_metarec.datasets import make_ratings
    >>> X, y = make_ratings(n_users=60, n_items=40, random_state=0)
    >>> model = ReptileFactorizationRecommender(n_factors=4, n_epochs=2, random_state=0)
    >>> model.fit(X, y).predict([[0, 1], ["new user", 1]]).shape
    (2,)
    """

    _parameter_constraints = {
        **{key: value for key, value in MAMLFactorizationRecommender._parameter_constraints.items()
           if key not in ("first_order", "reg", "item_shrinkage", "prior_factors", "task_weighting", "early_stopping",
                          "validation_fraction", "n_iter_no_change", "tol", "context_reg")},
        # Reptile's direction is taken per entry, not per pair: no BPR.
        "loss": [StrOptions({"squared", "logistic"})],
        "adapt_items": ["boolean"],
        "item_lr": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "meta_lr": [Interval(numbers.Real, 0, 1, closed="right")],
    }

    # Not a parameter: Reptile's outer loop has no query loss to validate on.
    early_stopping = False

    def __init__(
        self,
        n_factors=32,
        *,
        n_inner_steps=5,
        inner_lr=0.15,
        inner_reg=0.0,
        shrinkage=10.0,
        adapt_items=True,
        item_lr=None,
        meta_lr=1.0,
        meta_batch_size=32,
        n_epochs=40,
        n_support=(3, 20),
        loss="squared",
        n_negatives=4,
        init_std=0.1,
        context_columns=None,
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        self.n_factors = n_factors
        self.n_inner_steps = n_inner_steps
        self.inner_lr = inner_lr
        self.inner_reg = inner_reg
        self.shrinkage = shrinkage
        self.adapt_items = adapt_items
        self.item_lr = item_lr
        self.meta_lr = meta_lr
        self.meta_batch_size = meta_batch_size
        self.n_epochs = n_epochs
        self.n_support = n_support
        self.loss = loss
        self.n_negatives = n_negatives
        self.init_std = init_std
        self.context_columns = context_columns
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def _learns_prior_factors(self):
        return True  # Reptile's step moves φ₀ as a whole

    def _resolve_item_shrinkage(self):
        pass  # Reptile's step has no item prior

    # Features without a gradient to chain into them: each item feature's
    # part follows the mean Reptile move of the batch's items that have it,
    # and every item follows its features, so that rarely rated and new
    # items move with their kind; each user attribute's part follows the
    # mean move of its users' priors beyond the population's.
    _distributed = False  # its kernel is not split over workers
    _takes_item_features = True
    _takes_user_features = True

    def _meta_epoch(self, indptr, items, ratings, weights, order, lo, hi, seed):
        """One pass over ``order`` in meta-batches: one kernel call for the
        Reptile direction of each batch, then the interpolation step."""
        n_items = len(self._item_vocab)
        alpha = self._alpha()
        item_lr = self._inner_lr() if self.item_lr is None else self.item_lr
        step = K.reptile_settings(item_lr=item_lr, adapt_items=self.adapt_items)
        d = self.n_factors + 1
        delta = np.empty_like(self._theta)
        rows = np.empty(n_items, dtype=np.int64)
        features = getattr(self, "_item_F", None) is not None
        attributes = getattr(self, "_user_G", None) is not None
        context = self._has_context()
        losses = []
        for batch, offsets in self._batches(indptr, order):
            priors, d_priors = self._task_priors(batch)
            ctxs, off, d_off = self._context_args()
            n_copies = np.zeros(len(off), dtype=np.int64)
            loss, n_rows = K.reptile_batch(
                indptr, items, ratings, weights, batch, lo, hi, seed, offsets, self._theta, n_items,
                alpha, self._inner_settings(), step, delta, rows, priors, d_priors, ctxs, off, d_off, n_copies,
            )
            losses.append(loss)
            if not loss < self._loss_limit:  # also catches NaN
                break
            if features:
                self._features_follow(delta, rows[:n_rows])
            if attributes:
                self._attributes_follow(batch, d_priors - delta[1 : 1 + d])
            if context:
                self._context_follows(d_off, n_copies)
            K.step_rows(self._theta, delta, float(self.meta_lr), n_items, d, rows, n_rows)
        return np.array(losses)

    def _context_follows(self, d_off, n_copies):
        """Move each context feature's (b_c, e_c) by the meta step times the
        mean Reptile direction of the batch's context combinations that have
        it (over their adapted copies, weighted by the feature's values)."""
        used = n_copies > 0
        combos = self._ctx_combos[used]
        mass = np.abs(combos).T @ n_copies[used].astype(float)
        direction = combos.T @ (d_off[used] * n_copies[used, None])
        self._ctx_E += float(self.meta_lr) * np.divide(direction, mass[:, None], out=np.zeros_like(direction),
                                                       where=mass[:, None] > 0)

    def _attributes_follow(self, batch, beyond):
        """Move each attribute's part of the prior by the meta step times the
        mean, over the batch's users that have it (weighted by its values),
        of ``beyond``: their priors' Reptile moves less the population's
        (φ₀'s move, the mean of them all)."""
        self._ufeat += float(self.meta_lr) * _feature_means(self._user_G, batch, np.ascontiguousarray(beyond))

    def _features_follow(self, delta, rows):
        """Move each feature's part (c, E) by the meta step times the mean
        Reptile direction of the batch's ``rows`` that have it (weighted by
        the feature's values), and every item by its features' moves. The
        batch's rows keep their Reptile step exactly: ``delta``'s rows lose
        what their features' moves give them."""
        F, d, n_items = self._item_F, self.n_factors + 1, len(self._item_vocab)
        _, d_b, d_Q = K.unpack(delta, n_items, d)
        D = np.column_stack([d_b[rows], d_Q[rows]])
        mean = _feature_means(F, rows, D)
        K.add_rows_times(F.indptr, F.indices, F.data, rows, -mean, D)
        d_b[rows], d_Q[rows] = D[:, 0], D[:, 1:]
        move = float(self.meta_lr) * mean
        self._feat += move
        K.follow_features(F.indptr, F.indices, F.data, move, self._theta, n_items)


def _feature_means(M, codes, D):
    """Per feature (column of the CSR matrix M): the mean of the rows of D
    whose ``codes`` have it, weighted by its values; 0 where none has it."""
    total = np.empty((M.shape[1], D.shape[1]))
    K.rows_transpose_times(M.indptr, M.indices, M.data, codes, D, total)
    mass = np.empty((M.shape[1], 1))
    K.rows_transpose_times(M.indptr, M.indices, np.abs(M.data), codes, np.ones((len(codes), 1)), mass)
    return np.divide(total, mass, out=np.zeros_like(total), where=mass > 0)
