"""Meta-SGD over biased matrix factorization: MAML that also meta-learns the
inner loop's per-dimension step sizes and its L2 strength."""

from numbers import Real

import numpy as np
from sklearn.utils._param_validation import Interval

from . import _kernels as K
from .maml import MAMLFactorizationRecommender


class MetaSGDFactorizationRecommender(MAMLFactorizationRecommender):
    """Meta-SGD: MAML that learns how to learn.

    Next to the item parameters, μ and the user prior φ₀, it meta-learns a
    step size for each component of the user parameters φ = (b, p), the
    vector α of the inner loop φ ← φ − α ⊙ ∇L_S(φ), and, with
    ``learn_inner_reg``, the inner L2 strength λ. Their hypergradients are
    exact and analytic, from the same reverse pass as the meta-gradient
    (``∂L/∂α = −Σ_t v_{t+1} ⊙ g(φ_t)``, ``∂L/∂λ = −2 Σ_t (α ⊙ v_{t+1})ᵀ φ_t``;
    see ``sklearn_metarec._kernels``). Both are learned in log space, so
    they stay positive, with their own Adam state, and on the tasks of
    held-out users (``hyper_holdout``), as hyper-parameters are tuned on
    validation data rather than on the data the model is fitted to.

    Parameters
    ----------
    n_factors : int, default=32
        Number of latent factors k.
    n_inner_steps : int, default=5
        Gradient steps T of the inner loop.
    inner_lr : float or "auto", default=0.15
        Initial value of every step size in α ("auto": MAML's rule). 0.15
        suits both losses here: the learned α grows where larger steps pay.
    inner_reg : float, default=1e-3
        Initial λ when ``learn_inner_reg``, else the fixed λ.
    learn_inner_reg : bool, default=True
        Meta-learn λ as well; it then needs ``inner_reg > 0``.
    meta_lr : float, default=0.005
        Adam step size for the model's parameters.
    hyper_lr : float, default=None
        Adam step size for log α and log λ. None: ``meta_lr /
        hyper_holdout`` (``meta_lr`` with no hold-out), so that α and λ move
        about as far per epoch as if every batch updated them.
    hyper_holdout : float in [0, 1), default=0.1
        Share of the users whose tasks update only α and λ, never the model.
        The model's item parameters have seen the query ratings of the users
        they were trained on; step sizes learned on those users grow to
        exploit that, and transfer badly to new users (MovieLens-100k
        validation users with 5 support ratings: RMSE 0.991 at
        ``hyper_holdout=0``, 0.965 at 0.1, as MAML's 0.965). A user is held
        out or not for good, by a hash of its index, users added by
        ``partial_fit`` included: a held-out user's ratings never train the
        item parameters or the prior.
    shrinkage, reg, item_shrinkage, prior_factors, meta_batch_size, n_epochs, n_support, first_order, \
task_weighting, loss, n_negatives, early_stopping, validation_fraction, \
n_iter_no_change, tol, init_std, context_columns, context_reg, n_jobs, random_state, verbose
        As in :class:`MAMLFactorizationRecommender`. With ``first_order``
        the hypergradients too hold the query gradient v_T fixed through the
        steps (no Hessian terms).

    Attributes
    ----------
    inner_lr_ : ndarray of shape (n_factors + 1,)
        Learned step sizes: the bias's first, then each factor's.
    inner_reg_ : float
        Learned (or fixed) inner L2 strength λ.
    user_ids_, item_ids_, global_mean_, item_biases_, item_factors_, \
user_bias_prior_, user_factors_prior_, user_biases_, user_factors_, item_shrinkage_, \
loss_curve_, n_iter_, n_features_in_, feature_names_in_
        As in :class:`MAMLFactorizationRecommender`.

    See Also
    --------
    MAMLFactorizationRecommender : The same model with fixed α and λ.

    References
    ----------
    Z. Li, F. Zhou, F. Chen and H. Li, "Meta-SGD: Learning to Learn Quickly
    for Few-Shot Learning", arXiv:1707.09835, 2017.

    Examples
    --------
    >>> from sklearn_metarec import MetaSGDFactorizationRecommender
    >>> from sklearn_metarec.datasets import make_ratings
    >>> X, y = make_ratings(n_users=60, n_items=40, random_state=0)
    >>> model = MetaSGDFactorizationRecommender(n_factors=4, n_epochs=2, random_state=0).fit(X, y)
    >>> model.inner_lr_.shape
    (5,)
    """

    _parameter_constraints = {
        **MAMLFactorizationRecommender._parameter_constraints,
        "learn_inner_reg": ["boolean"],
        "hyper_lr": [Interval(Real, 0, None, closed="neither"), None],
        "hyper_holdout": [Interval(Real, 0, 1, closed="left")],
    }
    _learns_hyper = True

    def __init__(
        self,
        n_factors=32,
        *,
        n_inner_steps=5,
        inner_lr=0.15,
        inner_reg=1e-3,
        learn_inner_reg=True,
        shrinkage=10.0,
        meta_lr=0.005,
        hyper_lr=None,
        hyper_holdout=0.1,
        reg="auto",
        item_shrinkage="auto",
        prior_factors="auto",
        meta_batch_size=32,
        n_epochs=40,
        n_support=(3, 20),
        first_order=False,
        task_weighting="ratings",
        loss="squared",
        n_negatives=4,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        init_std=0.1,
        context_columns=None,
        context_reg=0.05,
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        super().__init__(
            n_factors, n_inner_steps=n_inner_steps, inner_lr=inner_lr, inner_reg=inner_reg,
            shrinkage=shrinkage, meta_lr=meta_lr, reg=reg, item_shrinkage=item_shrinkage,
            prior_factors=prior_factors,
            meta_batch_size=meta_batch_size,
            n_epochs=n_epochs, n_support=n_support, first_order=first_order,
            task_weighting=task_weighting, loss=loss, n_negatives=n_negatives,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change, tol=tol, init_std=init_std, context_columns=context_columns,
            context_reg=context_reg,
            n_jobs=n_jobs, random_state=random_state, verbose=verbose,
        )
        self.learn_inner_reg = learn_inner_reg
        self.hyper_lr = hyper_lr
        self.hyper_holdout = hyper_holdout

    @property
    def inner_lr_(self):
        """ndarray of shape (n_factors + 1,): the learned α."""
        return np.exp(self._hyper[:-1])

    @property
    def inner_reg_(self):
        """float: the learned (or fixed) λ."""
        return float(np.exp(self._hyper[-1])) if self.learn_inner_reg else float(self.inner_reg)

    def _validate_params(self):
        super()._validate_params()
        if self.learn_inner_reg and self.inner_reg <= 0:
            raise ValueError(
                "inner_reg must be > 0 when learn_inner_reg=True: λ is learned in log "
                f"space from its initial value; got inner_reg={self.inner_reg}."
            )

    def _init_theta(self, n_items, y, w):
        if self.hyper_holdout > 0:
            # Drawn first, so that who is held out does not depend on the
            # number of items.
            self._holdout_salt = np.uint64(self._rng.randint(np.iinfo(np.int64).max, dtype=np.int64))
        theta = super()._init_theta(n_items, y, w)
        lam = np.log(self.inner_reg) if self.learn_inner_reg else 0.0
        self._hyper = np.r_[np.full(self.n_factors + 1, np.log(self._inner_lr())), lam]
        self._hyper_m = np.zeros_like(self._hyper)
        self._hyper_v = np.zeros_like(self._hyper)
        self._hyper_t = 0
        return theta

    def _hyper_split(self, order):
        if self.hyper_holdout == 0:
            return order, None
        # A hash of the user's index, so that a user stays on one side for
        # good, users added later by partial_fit included.
        with np.errstate(over="ignore"):
            h = (order.astype(np.uint64) + self._holdout_salt) * np.uint64(0x9E3779B97F4A7C15)
        held = (h >> np.uint64(11)).astype(float) < self.hyper_holdout * 2.0**53
        return order[~held], order[held]

    def _alpha(self):
        return self.inner_lr_

    def _inner_reg(self):
        return self.inner_reg_

    def _hyper_step(self, grad_hyper):
        # Chain rule into log space: ∂/∂log α = α ⊙ ∂/∂α, ∂/∂log λ = λ ∂/∂λ.
        g = np.r_[grad_hyper[:-1] * self.inner_lr_, grad_hyper[-1] * self.inner_reg_]
        if not self.learn_inner_reg:
            g[-1] = 0.0
        lr = self.hyper_lr
        if lr is None:
            lr = self.meta_lr / self.hyper_holdout if self.hyper_holdout > 0 else self.meta_lr
        self._hyper_t += 1
        K.adam_step(self._hyper, g, self._hyper_m, self._hyper_v, self._hyper_t, float(lr))

    def _finite(self):
        return super()._finite() and bool(np.isfinite(self._hyper).all())

    def _snapshot(self):
        return {**super()._snapshot(), "_hyper": self._hyper.copy()}
