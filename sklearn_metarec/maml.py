"""MAML over biased matrix factorization, with exact analytic meta-gradients."""

import time
from numbers import Integral, Real

import numpy as np
from scipy.special import logit
from sklearn.utils._param_validation import Interval, StrOptions

from . import _kernels as K
from . import distributed as dask_input
from ._base import (MAX_FACTORS, MAX_INNER_STEPS, MAX_NEGATIVES, BaseFactorizationRecommender, DivergenceError,
                    numba_threads, serialized)
from ._features import check_features
from .baseline import shrinkage_strengths


def support_bounds(n_support, counts):
    """Smallest and largest support size of each user, leaving at least one
    rating for the query set (a user with one rating is a zero-shot task that
    trains the population prior)."""
    cap = np.maximum(counts - 1, 0)
    if isinstance(n_support, (tuple, list)):
        return np.minimum(n_support[0], cap), np.minimum(n_support[1], cap)
    if isinstance(n_support, Integral):
        size = np.minimum(n_support, cap)
    else:
        size = np.minimum(np.maximum(np.rint(n_support * counts), 1), cap).astype(np.int64)
    return size, size


def _check_n_support(n_support):
    if isinstance(n_support, (tuple, list)):
        ok = (
            len(n_support) == 2
            and all(isinstance(s, Integral) and not isinstance(s, bool) for s in n_support)
            and 0 <= n_support[0] <= n_support[1] <= np.iinfo(np.int64).max
        )
        if not ok:
            raise ValueError(
                "n_support as a range must be a pair of integers (min, max) with "
                f"0 <= min <= max < 2**63; got {n_support!r}."
            )


class MAMLFactorizationRecommender(BaseFactorizationRecommender):
    """Meta-learned biased matrix factorization for few-shot users (MAML).

    Each user is a task. The model meta-learns item parameters, the global
    mean and an initialization φ₀ = (b₀, p₀) of every user's parameters, so
    that ``n_inner_steps`` gradient steps on a user's few ratings (the
    support set) give good predictions on the rest (the query set).
    The meta-gradient is exact (second-order terms included) and analytic;
    see ``sklearn_metarec._kernels`` for the notation and formulas.

    After meta-training, every known user is adapted from φ₀ on its whole
    history; :meth:`fold_in` does the same for new ratings at serving time.

    Parameters
    ----------
    n_factors : int, default=32
        Number of latent factors k.
    n_inner_steps : int, default=5
        Gradient steps T of the inner loop (adaptation to one user).
    inner_lr : float or "auto", default="auto"
        Step size α of the inner loop; "auto" is 0.3 for the squared loss
        and 1.0 for the implicit ones. The squared loss's curvature in the
        user bias is 2, so α = 0.5 is a full Newton step on the bias and
        α >= 1 oscillates; the cross-entropy's is at most 1/4, hence the
        larger step. Smaller steps act as shrinkage toward the meta-learned
        prior, which few-shot users need, but the factors' curvature is
        smaller than the bias's: measured on MovieLens-100k and two of its
        variants (``benchmarks/robustness.py``, K = 10, 3 seeds), 0.3
        against 0.15 moves new users' RMSE from 0.955 to 0.951 and their
        catalogue nDCG@10 from 0.160 to 0.185; with 30% of the users 0.983
        to 0.978 and 0.056 to 0.100; with a long item tail RMSE 1.003 to
        1.004.
    inner_reg : float, default=0.0
        L2 strength λ on the user parameters in the inner loop.
    shrinkage : float, default=10.0
        Pseudo-count κ of the support loss, Σ w ℓ / (W + κ) over a user's W
        support ratings (weights): a user with few ratings takes shorter
        steps away from the prior, W / (W + κ) as long, as a Bayesian prior
        worth κ ratings would shrink it. 0 gives the plain mean of the
        original MAML, where 3 ratings move a user as far as 300.
    meta_lr : float, default=0.005
        Adam step size of the outer loop.
    reg : float or "auto", default="auto"
        L2 strength β on item parameters in the outer loop, per query
        rating; "auto" is 0 for the squared loss (``item_shrinkage`` is its
        prior) and 0.01 for the implicit ones. A strength per rating
        penalizes an item in proportion to its ratings, so it pulls the
        well-known items in hardest: at β = 0.05 instead of 0.01 (the
        default until 2026-12-03, with γ = 0), new users' catalogue nDCG@10
        on MovieLens-100k falls from 0.16 to 0.07.
    item_shrinkage : float or "auto", default="auto"
        Pseudo-count γ of ratings that pull each item's (b_i, q_i) towards
        zero in the outer loop: item i's L2 strength per query rating is
        β + γ / n_i, with n_i its ratings (weights; under the logistic loss
        with sampled negatives, plus the negatives it gets on average), so
        the penalty adds up to about γ·(b_i² + ‖q_i‖²) per pass whatever the
        item's count, as a prior worth γ ratings would. Items with a handful
        of ratings stay nearer the population instead of memorizing their
        few ratings, which would put them atop every catalogue-wide list.
        "auto", for the squared loss, estimates γ from the data as
        :class:`EmpiricalBayesRecommender` estimates the items' shrinkage,
        σ²/τ² (the rating noise over the spread of the items' true mean
        offsets; 3.2 on MovieLens-100k, 4.1 with a long item tail), and is
        0 for the implicit losses (whose figures were measured so). Measured
        with 10 support ratings, ``inner_lr`` 0.3 (RMSE / catalogue nDCG@10
        of new users, ``benchmarks/robustness.py``, 3 seeds):
        MovieLens-100k 0.953 / 0.204 at β = 0.01, γ = 3 and 0.952 / 0.225
        at β = 0, γ = 3; with 30% of the users, 0.982 / 0.096 and 0.981 /
        0.102.
    prior_factors : {"auto", "zero", "learned"}, default="auto"
        The factors p₀ every user starts from. "learned" meta-learns them
        with the rest of φ₀, as MAML learns an initialization; "zero" keeps
        them at 0, so that what all users share about an item is its bias
        b_i alone; "auto" is "zero" for the squared loss and "learned" for
        the implicit ones. A learned p₀ gives every item a second, shared bias
        p₀·q_i that ``item_shrinkage`` cannot hold in: p₀ is not penalized,
        so it grows (norm 1.2 to 1.9 on MovieLens-100k) and an item with one
        rating keeps most of its offset in q_i, which puts such items atop
        the catalogue-wide lists. Measured with 10 support ratings (RMSE /
        catalogue nDCG@10 of new users, ``benchmarks/robustness.py``, 3
        seeds), learned then zero: MovieLens-100k 0.952 / 0.225 and 0.953 /
        0.280; with 30% of the users 0.984 / 0.111 and 0.982 / 0.272; with
        a long item tail 1.008 / 0.025 and 1.001 / 0.032 (the
        empirical-Bayes bias model: 0.964 / 0.196, 0.985 / 0.168, 0.999 /
        0.034). Under the implicit losses the evidence is mixed: on
        MovieLens-100k as clicks (K = 10, ``inner_lr=10``) zero gives
        recall@20 0.264 against 0.261 (logistic) and 0.249 against 0.246
        (BPR), but on the synthetic clicks of ``examples/implicit_feedback.py``
        BPR's AUC falls from 0.758 to 0.737, below popularity's 0.741.
    meta_batch_size : int, default=32
        Users (tasks) per meta-update.
    n_epochs : int, default=40
        Passes over the training users in :meth:`fit`.
    n_support : int, float or (int, int), default=(3, 20)
        Support size of a training task, drawn afresh every epoch: an int
        for a fixed size, a pair for a size drawn uniformly in [min, max],
        or a float in (0, 1) for that fraction of the user's ratings. It is
        capped so that at least one rating is left for the query set. The
        default mimics few-shot use with 3 to 20 known ratings.
    first_order : bool, default=False
        Drop the second-order terms (FOMAML).
    task_weighting : {"ratings", "users"}, default="ratings"
        How a meta-batch's query losses add up. "ratings": every query
        rating counts once, which is what RMSE and a rating-level loss
        measure, and trains items on the ratings in proportion as SGD
        factorization does. "users": every user (task) counts once, as in
        the MAML paper, so users with many ratings weigh no more than the
        rest.
    loss : {"squared", "logistic", "bpr"}, default="squared"
        Loss of the inner and outer loops alike: the squared error for
        ratings; the binary cross-entropy of σ(r̂) for implicit feedback
        (clicks, plays, purchases), where y holds 0/1 labels or is left out
        (every row a positive), and ``predict`` returns probabilities; or
        "bpr", Bayesian personalized ranking: −log σ(r̂_p − r̂_n) for each
        positive p and each of its sampled negatives n, a ranking loss on
        positives only (y left out, or all ones), for which ``predict``
        returns the score r̂ (only its order means something: μ and the
        user bias cancel in r̂_p − r̂_n and stay at 0). Ratings read as
        implicit feedback (every rated item a positive) suit both implicit
        losses.
    n_negatives : int, default=4
        With an implicit loss and positives only, the number of items a
        user never rated that are sampled, per positive, as negatives
        (target 0, or BPR's pairs, with the positive's weight). Each task's
        support and query sets get their own, drawn afresh every epoch from
        ``random_state``. Ignored when y holds 0/1 labels or the loss is
        squared.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the users in :meth:`fit` as
        validation users, as cold start would: each keeps a support set
        drawn as for training and is scored on the rest, the same draw every
        epoch. Their ratings train nothing. Training stops when the
        validation score has not improved by at least ``tol`` for
        ``n_iter_no_change`` epochs, and the parameters of the best epoch
        are kept. :meth:`partial_fit` never holds users out.
    validation_fraction : float in (0, 1), default=0.1
        Share of the users held out with ``early_stopping``.
    n_iter_no_change : int, default=10
        Epochs without improvement before stopping. Validation scores are
        noisy from epoch to epoch (MovieLens-100k, 94 validation users:
        about ±0.003 around a trend that still improves at epoch 60), so
        scikit-learn's 5 stops too early. Measured there, K = 10, up to 100
        epochs: MAML stops at 79 (best 69) with the same test RMSE as 40
        fixed epochs (0.958); Meta-SGD stops at 25 (best 15), RMSE 0.964
        against 0.961. Hence off by default.
    tol : float, default=1e-4
        Smallest rise of the validation score that counts as improvement.
    init_std : float, default=0.1
        Standard deviation of the random initial factors.
    context_columns : list of str or int, default=None
        Columns of X beyond the two ids that hold each rating's context
        (names in a DataFrame, positions from 2 in an array). Categories
        are one-hot ("weekday=Mon"), numbers used as they are; bucket a
        timestamp with :func:`sklearn_metarec.datasets.time_context`. Each
        context feature gets a bias b_c and a factor vector e_c, meta-trained
        with the rest: a rating in context scores r̂ + b_c + q_iᵀe_c + p_uᵀe_c
        (the pairwise terms of a factorization machine), still linear in
        the user's parameters, so the inner loop and the exact meta-gradient
        carry over. ``predict`` and ``fold_in`` read the rows' contexts
        (a category never seen in training adds nothing); ``recommend``
        ranks for a given ``context``. The contexts' parameters start at
        zero.
    context_reg : float, default=0.05
        L2 strength on the contexts' parameters (the meta-objective gains
        ``context_reg`` ‖E‖²). A context's q_iᵀe_c acts as an item bias per
        context that ``item_shrinkage`` does not hold in: without this
        penalty, MovieLens-100k's weekday and part of day (the time of data
        entry, not of watching) raised cold-start RMSE by 0.03, and 0.05
        ties it; a strong planted context is still recovered. Lower it
        (0.005) when the context is known to matter
        (``benchmarks/results/context.md``).
    n_jobs : int, default=None
        Threads for the Numba kernels; None uses Numba's default. Results are
        identical for any number of threads.
    random_state : int, RandomState instance or None, default=None
        Seeds initialization and task sampling.
    verbose : int, default=0
        Print the meta-loss after every epoch when positive.

    Attributes
    ----------
    user_ids_ : ndarray of shape (n_users,)
        Raw id of each known user, in row order.
    item_ids_ : ndarray of shape (n_items,)
        Raw id of each known item, in row order.
    global_mean_ : float
        Meta-learned μ.
    item_biases_ : ndarray of shape (n_items,)
    item_factors_ : ndarray of shape (n_items, n_factors)
    user_bias_prior_ : float
        Meta-learned b₀, the bias of an unknown user.
    user_factors_prior_ : ndarray of shape (n_factors,)
        Meta-learned p₀, the factors of an unknown user.
    user_biases_ : ndarray of shape (n_users,)
        Adapted b_u of each known user.
    user_factors_ : ndarray of shape (n_users, n_factors)
        Adapted p_u of each known user.
    item_shrinkage_ : float
        The γ of the last ``fit`` or ``partial_fit`` call, ``item_shrinkage``
        resolved (estimated from the whole rating log when "auto").
    loss_curve_ : list of float
        Mean query loss of each epoch.
    validation_scores_ : list of float
        With ``early_stopping``: minus the validation users' mean query loss
        after each epoch (higher is better, as scikit-learn's scores).
    best_validation_score_ : float
        With ``early_stopping``: the best of ``validation_scores_``.
    best_iteration_ : int
        With ``early_stopping``: the epoch (from 1) whose parameters were kept.
    n_iter_ : int
        Epochs run, :meth:`partial_fit` calls included.
    n_features_in_ : int
        Number of columns of X seen in :meth:`fit`.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names of X, when X is a DataFrame with string column names.

    See Also
    --------
    FactorizationRecommender : The plain SGD factorization baseline.

    Examples
    --------
    >>> from sklearn_metarec import MAMLFactorizationRecommender
    >>> from sklearn_metarec.datasets import make_ratings
    >>> X, y = make_ratings(n_users=60, n_items=40, random_state=0)
    >>> model = MAMLFactorizationRecommender(n_factors=4, n_epochs=2, random_state=0)
    >>> model.fit(X, y).predict([[0, 1], ["new user", 1]]).shape
    (2,)
    """

    _parameter_constraints = {
        "n_factors": [Interval(Integral, 1, MAX_FACTORS, closed="both")],
        "n_inner_steps": [Interval(Integral, 0, MAX_INNER_STEPS, closed="both")],
        "inner_lr": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "inner_reg": [Interval(Real, 0, None, closed="left")],
        "meta_lr": [Interval(Real, 0, None, closed="neither")],
        "reg": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "item_shrinkage": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "prior_factors": [StrOptions({"auto", "zero", "learned"})],
        "meta_batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_epochs": [Interval(Integral, 0, None, closed="left")],
        "n_support": [
            Interval(Integral, 0, np.iinfo(np.int64).max, closed="both"),
            Interval(Real, 0, 1, closed="neither"),
            tuple,
            list,
        ],
        "first_order": ["boolean"],
        "shrinkage": [Interval(Real, 0, None, closed="left")],
        "task_weighting": [StrOptions({"ratings", "users"})],
        "loss": [StrOptions({"squared", "logistic", "bpr"})],
        "n_negatives": [Interval(Integral, 0, MAX_NEGATIVES, closed="both")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "init_std": [Interval(Real, 0, None, closed="left")],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "context_columns": [list, tuple, None],
        "context_reg": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        n_factors=32,
        *,
        n_inner_steps=5,
        inner_lr="auto",
        inner_reg=0.0,
        shrinkage=10.0,
        meta_lr=0.005,
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
        self.n_factors = n_factors
        self.n_inner_steps = n_inner_steps
        self.inner_lr = inner_lr
        self.inner_reg = inner_reg
        self.shrinkage = shrinkage
        self.meta_lr = meta_lr
        self.reg = reg
        self.item_shrinkage = item_shrinkage
        self.prior_factors = prior_factors
        self.meta_batch_size = meta_batch_size
        self.n_epochs = n_epochs
        self.n_support = n_support
        self.first_order = first_order
        self.task_weighting = task_weighting
        self.loss = loss
        self.n_negatives = n_negatives
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.init_std = init_std
        self.context_columns = context_columns
        self.context_reg = context_reg
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def _validate_params(self):
        super()._validate_params()
        _check_n_support(self.n_support)

    @serialized
    def fit(self, X, y=None, sample_weight=None, *, item_features=None, user_features=None, client=None,
            local_steps=1):
        """Meta-train on all users, then adapt every known user.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_columns)
            The first two columns hold the user id and the item id, of any
            one kind each (ints or strings). Further columns are ignored
            with a warning.
        y : array-like of shape (n_samples,), default=None
            Ratings, 0/1 labels with ``loss="logistic"``, or ones with
            ``loss="bpr"``. It may be left out only with an implicit loss:
            every row is then a positive.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each rating in the support and query losses.
        item_features : FeatureTable or DataFrame, default=None
            Side features of items, one row per raw item id (see
            :class:`FeatureTable`; wrap a DataFrame in it inside
            ``GridSearchCV``). Each feature gets a bias and a factor vector,
            meta-trained with the rest; an item's parameters are its own
            part plus the sum of its features', so an item that no rating
            reached, listed here, is scored from its features alone. The
            items' L2 penalty (``reg``, ``item_shrinkage``) then falls on
            their own parts: a rarely rated item is pulled towards what its
            features predict. After training, the features' biases are set
            to the regression of the items' biases on their features, each
            item weighted by its ratings (the trained items keep theirs).
        user_features : FeatureTable or DataFrame, default=None
            Attributes of users (age group, occupation, ...), one row per
            raw user id, read as ``item_features`` is. Each attribute gets a
            (bias, factors) row that shifts the prior of the users who have
            it, meta-trained through the exact meta-gradient: a user's
            inner loop starts from φ₀ + Σ_a G_ua·A_a. A new user listed here
            (in this table or the one given to ``fold_in``) is predicted and
            recommended for from that prior before any rating. The
            attributes' factors are learned only where p₀'s are
            (``prior_factors``): else they shift the user bias alone, since
            a factor prior per group acts as an item bias per group that
            ``item_shrinkage`` does not hold in (on MovieLens-100k, with age,
            gender and occupation, it raised new users' RMSE by 0.049).
        client : distributed.Client, default=None
            Meta-train on this Dask cluster: each worker computes the exact
            meta-gradient of its users' tasks (see
            :mod:`sklearn_metarec.distributed`); the result equals the
            one-process fit up to the order of floating-point sums. With
            ``X`` a Dask DataFrame (and ``y``, ``sample_weight`` Dask Series
            or None), the current client is used if there is one, and the
            id vocabularies are built on the cluster (its partitions'
            distinct ids, combined in a tree), which then encodes each
            partition, so that ids reach this process once each and ratings
            as codes. Not with item or user features or context.
        local_steps : int, default=1
            With a ``client``: how many Adam steps each worker takes on its
            own users' meta-batches between synchronizations. 1 is the exact
            algorithm above; more is opt-in and approximate (the workers'
            moves are averaged every ``local_steps`` steps, see
            :mod:`sklearn_metarec.distributed`), for fewer round trips.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        X, y, sample_weight, client, vocabularies = dask_input.in_memory(
            X, y, sample_weight, client, encode=item_features is None and user_features is None)
        local_steps = dask_input.check_local_steps(local_steps, client)
        table = self._check_features(item_features)
        user_table = self._check_features(user_features, "user_features")
        users, items, y, w = self._prepare(X, y, sample_weight, reset=True)
        ctx = self._context_codes(self._read_context(X, reset=True)) if self._wants_context() else None
        touched, _, _ = self._add_ratings(users, items, y, w, new_items="random", ctx=ctx)
        if table is not None:
            self._attach_item_features(table)
        if user_table is not None:
            self._attach_user_features(user_table)
        held = None
        if self.early_stopping:
            n_held = int(round(self.validation_fraction * len(touched)))
            if not 0 < n_held < len(touched):
                raise ValueError(
                    f"early_stopping needs validation users: validation_fraction={self.validation_fraction} "
                    f"of {len(touched)} users holds out {n_held}."
                )
            held = np.zeros(len(touched), dtype=bool)
            held[self._rng.permutation(len(touched))[:n_held]] = True
            touched, held = touched[~held], touched[held]
        self._train(touched, self.n_epochs, held, client=client, local_steps=local_steps)
        self._fit_feature_biases()
        self._refresh_users(np.sort(np.r_[touched, held]) if held is not None else touched)
        if vocabularies is not None:  # the ids, built on the cluster, for the codes the fit saw
            self._user_vocab, self._item_vocab = vocabularies
        return self

    @serialized
    def partial_fit(self, X, y=None, sample_weight=None, *, item_features=None, user_features=None, client=None,
                    local_steps=1):
        """Add ratings and meta-train online on the users they touch.

        The first call on an unfitted estimator initializes it, exactly as
        :meth:`fit` does, so that ``fit`` with ``n_epochs=1`` equals one
        ``partial_fit`` call with the same ``random_state``. Each call runs
        one epoch of meta-updates over the tasks of the users in ``X`` (built
        from their whole history), then re-adapts those users. New users and
        items grow the vocabulary; nothing learned before is dropped.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_columns)
            (user id, item id) rows.
        y : array-like of shape (n_samples,), default=None
            Ratings, or labels, as in :meth:`fit`.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each rating.
        item_features : FeatureTable or DataFrame, default=None
            As in :meth:`fit`. On a fitted model it replaces the table that
            new items take their features from (the known items keep
            theirs) and must have the same features.
        user_features : FeatureTable or DataFrame, default=None
            As in :meth:`fit` on the first call; later, the table that new
            users take their attributes from (same features). Attributes
            cannot be added to a model fitted without them.
        client : distributed.Client, default=None
            As in :meth:`fit`. A Dask DataFrame ``X`` is streamed: one
            call per partition, in order.
        local_steps : int, default=1
            As in :meth:`fit`.

        Returns
        -------
        self : object
            The updated estimator.
        """
        if dask_input.is_dask(X):
            client = client or dask_input.current_client()
            dask_input.check_local_steps(local_steps, client)
            for part_X, part_y, part_w in dask_input.partitions(X, y, sample_weight):
                self.partial_fit(part_X, part_y, part_w, item_features=item_features, user_features=user_features,
                                 client=client, local_steps=local_steps)
            return self
        local_steps = dask_input.check_local_steps(local_steps, client)
        table = self._check_features(item_features)
        reset = not hasattr(self, "_theta")
        user_table = (self._check_features(user_features, "user_features") if reset
                      else self._check_user_table(user_features))
        if table is not None and not reset and getattr(self, "_item_table", None) is not None:
            table = table.aligned(self._item_table.names)
        users, items, y, w = self._prepare(X, y, sample_weight, reset=reset)
        if table is not None and getattr(self, "_item_F", None) is not None:
            self._item_table = table  # before new items join, so that they use it
        if user_table is not None and not reset:
            self._user_table = user_table  # likewise for new users
        ctx = None
        if self._wants_context():
            ctx = self._context_codes(self._read_context(X, reset=reset))
        touched, _, _ = self._add_ratings(users, items, y, w, new_items="random", ctx=ctx)
        if table is not None and getattr(self, "_item_F", None) is None:
            self._attach_item_features(table, fresh=reset)
        if user_table is not None and reset:
            self._attach_user_features(user_table)
        self._train(touched, 1, client=client, local_steps=local_steps)
        self._fit_feature_biases()
        self._refresh_users(touched)
        return self

    # ------------------------------------------------------------------

    def _init_theta(self, n_items, y, w):
        d = self.n_factors + 1
        theta = np.zeros(1 + d + n_items + n_items * (d - 1))
        if self._pairwise:
            # Pairs' scores r̂_p − r̂_n do not depend on μ; the loss, like the
            # cross-entropy, grows like |r̂| when the inner loop is unstable.
            self._loss_limit = 1e3
        elif self._logistic:
            # μ starts at the log-odds of a positive, sampled negatives counted.
            share = np.average(y, weights=w) / (1 + self._n_neg())
            theta[0] = logit(np.clip(share, 1e-3, 1 - 1e-3))
            # The cross-entropy grows like |r̂|: scores in the thousands mean
            # the inner loop is unstable.
            self._loss_limit = 1e3
        else:
            theta[0] = np.average(y, weights=w)
            # A query loss 1e4 times the mean square rating means predictions
            # ~100 times the ratings' size: the inner loop is unstable.
            self._loss_limit = 1e4 * (np.average(y**2, weights=w) + 1.0)
        theta[2 : 1 + d] = self._rng.normal(0.0, self.init_std, d - 1)
        if not self._learns_prior_factors():
            theta[2 : 1 + d] = 0.0  # drawn all the same: the items' draws do not depend on it
        theta[1 + d + n_items :] = self._rng.normal(0.0, self.init_std, n_items * (d - 1))
        return theta

    # Meta-SGD (a subclass) learns the inner step sizes and L2 strength too.
    _learns_hyper = False
    _distributed = True  # fit(client=...): see distributed.py
    _takes_item_features = True
    _takes_user_features = True

    def _check_features(self, features, name="item_features"):
        takes = self._takes_item_features if name == "item_features" else self._takes_user_features
        if features is not None and not takes:
            raise TypeError(f"{type(self).__name__} does not take {name} yet; "
                            "MAMLFactorizationRecommender and MetaSGDFactorizationRecommender do.")
        return check_features(features, name)

    def _learns_prior_factors(self):
        if self.prior_factors == "auto":
            return self._implicit
        return self.prior_factors == "learned"

    def _inner_lr(self):
        """The inner step size, "auto" resolved for the loss."""
        if self.inner_lr == "auto":
            return 1.0 if self._implicit else 0.3
        return float(self.inner_lr)

    def _alpha(self):
        return np.full(self.n_factors + 1, self._inner_lr())

    def _inner_reg(self):
        return float(self.inner_reg)

    def _resolve_item_shrinkage(self):
        """Set ``item_shrinkage_``, the γ of ``item_shrinkage`` (estimated
        from the whole rating log when "auto"), once per ``_train`` call."""
        if self.item_shrinkage != "auto":
            self.item_shrinkage_ = float(self.item_shrinkage)
        elif self._implicit:
            self.item_shrinkage_ = 0.0
        else:
            u, i, r, w = self._log.coo()[:4]
            self.item_shrinkage_ = shrinkage_strengths(u, i, r - np.average(r, weights=w), w,
                                                       len(self._user_vocab), len(self._item_vocab))[1]

    def _item_reg(self, items, weights):
        """β_i = reg + item_shrinkage_ / n_i of every item (see
        ``item_shrinkage``), from the rating log's item codes and weights."""
        n_items = len(self._item_vocab)
        counts = np.bincount(items, weights, minlength=n_items)
        # Sampled negatives fall on an item about n_neg·W / n_items times.
        counts += self._n_neg() * weights.sum() / n_items
        reg = (0.01 if self._implicit else 0.0) if self.reg == "auto" else float(self.reg)
        return reg + self.item_shrinkage_ / np.maximum(counts, 1.0)

    def _inner_settings(self):
        return K.inner_settings(lam=self._inner_reg(), kappa=self.shrinkage, n_steps=self.n_inner_steps,
                                logistic=self._implicit, n_neg=self._n_neg(), pairwise=self._pairwise)

    def _train(self, users, n_epochs, validation_users=None, client=None, local_steps=1):
        """Meta-train on the tasks of ``users`` for ``n_epochs``; with
        ``validation_users``, stop early on their score and keep the best
        epoch's parameters. With a Dask ``client``, the meta-batches'
        tasks are computed on its workers (``local_steps`` apart)."""
        if not hasattr(self, "loss_curve_"):
            self.loss_curve_ = []
        indptr, items, ratings, weights, *_ = self._log.csr(len(self._user_vocab))
        lo, hi = support_bounds(self.n_support, np.diff(indptr))
        self._resolve_item_shrinkage()
        csr = (indptr, items, ratings, weights)
        if client is not None:
            self._check_shardable()
            self._shards = dask_input.TaskShards(client, self, csr, lo, hi, local_steps)
        try:
            self._train_epochs(users, n_epochs, validation_users, csr, lo, hi)
            if client is not None and local_steps > 1:
                self._shards.take_optimizer(self)
        finally:
            if client is not None:
                self.__dict__.pop("_shards").close()

    def _check_shardable(self):
        if not self._distributed:
            raise TypeError(f"{type(self).__name__} does not meta-train on a Dask cluster (MAML and Meta-SGD do).")
        if getattr(self, "_item_F", None) is not None or getattr(self, "_user_G", None) is not None \
                or self._has_context():
            raise TypeError(f"{type(self).__name__}.fit with a Dask client takes ratings only: item or user "
                            "features and context are not distributed.")

    def _train_epochs(self, users, n_epochs, validation_users, csr, lo, hi):
        indptr, items, ratings, weights = csr
        if validation_users is not None:
            stopper = _EarlyStopping(self, validation_users, (indptr, items, ratings, weights, lo, hi))
        for _ in range(n_epochs):
            start = time.perf_counter()
            order = self._rng.permutation(users)
            seed = self._rng.randint(np.iinfo(np.int64).max, dtype=np.int64)
            shards = getattr(self, "_shards", None)
            with numba_threads(self.n_jobs):
                if shards is not None and shards.local_steps > 1:
                    losses = shards.local_epoch(self, order, seed, self._item_reg(items, weights))
                else:
                    losses = self._meta_epoch(indptr, items, ratings, weights, order, lo, hi, seed)
            if not (np.all(losses < self._loss_limit) and self._finite()):
                raise DivergenceError(
                    f"Meta-training diverged in epoch {self.n_iter_ + 1}: the query "
                    f"loss became NaN, infinite or exploded. Try a smaller inner_lr (now "
                    f"{self._inner_lr()}) or meta_lr (now {self.meta_lr})."
                )
            self.n_iter_ += 1
            self.loss_curve_.append(float(np.mean(losses)))
            if self.verbose:
                print(
                    f"-- Epoch {self.n_iter_}: query loss {self.loss_curve_[-1]:.5f}, "
                    f"{time.perf_counter() - start:.2f} s"
                )
            if validation_users is not None and stopper.should_stop():
                break
        if validation_users is not None:
            stopper.restore_best()

    def _validation_loss(self, csr, users, seed):
        """Mean query loss (without the items' L2 penalty) of the tasks of
        ``users`` (drawn from ``seed``), weighted by their ratings; nothing
        is updated."""
        indptr, items, ratings, weights, lo, hi = csr
        n_items = len(self._item_vocab)
        grad = np.zeros_like(self._theta)
        grad_hyper = np.empty(self.n_factors + 2)
        rows = np.empty(n_items, dtype=np.int64)
        outer = K.outer_settings(first_order=True, hyper=False, per_rating=self.task_weighting == "ratings")
        no_penalty = np.zeros(n_items)  # the score is the loss alone, not the items' L2
        total, weight = 0.0, 0.0
        for start in range(0, len(users), 1024):
            batch = users[start : start + 1024]
            counts = (indptr[batch + 1] - indptr[batch]) * (1 + self._n_neg())
            offsets = np.r_[0, np.cumsum(counts)].astype(np.int64)
            with numba_threads(self.n_jobs):
                loss, _, _ = K.meta_batch_grad(
                    indptr, items, ratings, weights, batch, lo, hi, seed, offsets, self._theta, n_items,
                    self._alpha(), no_penalty, self._inner_settings(), outer, grad, grad_hyper, rows,
                    np.empty(n_items), *self._task_priors(batch), *self._context_args(),
                )
            total += loss * offsets[-1]
            weight += offsets[-1]
        return total / weight

    def _batches(self, indptr, order):
        """Meta-batches of ``order`` and the running sums of their users'
        task lengths (ratings and sampled negatives), which the kernels use
        to lay out their tasks."""
        counts = (indptr[order + 1] - indptr[order]) * (1 + self._n_neg())
        for start in range(0, len(order), self.meta_batch_size):
            batch = order[start : start + self.meta_batch_size]
            offsets = np.zeros(len(batch) + 1, dtype=np.int64)
            np.cumsum(counts[start : start + len(batch)], out=offsets[1:])
            yield batch, offsets

    def _finite(self):
        return bool(np.isfinite(self._theta).all())

    def _snapshot(self):
        """Copies of what early stopping restores: the learned parameters."""
        snapshot = {"_theta": self._theta.copy()}
        if getattr(self, "_item_F", None) is not None:
            snapshot["_feat"] = self._feat.copy()
        if getattr(self, "_user_G", None) is not None:
            snapshot["_ufeat"] = self._ufeat.copy()
        if self._has_context():
            snapshot["_ctx_E"] = self._ctx_E.copy()
        return snapshot

    def _wants_context(self):
        return bool(getattr(self, "context_columns", None))  # Reptile has no context_columns

    def _context_args(self):
        """(each logged rating's context code, the codes' parameters
        (b_c, e_c) = combos·E, room for their gradient) for the kernels;
        empty without context."""
        d = self.n_factors + 1
        if not self._has_context():
            return K.no_context(d)
        ctxs = self._log.csr(len(self._user_vocab))[4]
        return ctxs, np.ascontiguousarray(self._ctx_combos @ self._ctx_E), np.empty((len(self._ctx_combos), d))

    def _task_priors(self, users):
        """(priors, gradient buffer) for the kernel's tasks of ``users``: each
        task's prior given its user's attributes, and room for the tasks'
        ∂loss/∂prior; both empty without user features (every task starts
        from φ₀)."""
        if getattr(self, "_user_G", None) is None:
            empty = np.empty((0, self.n_factors + 1))
            return empty, empty
        return self._user_priors(users), np.empty((len(users), self.n_factors + 1))

    def _own_part_grads(self, grad, rows, pen_rows):
        """With item features, the L2 penalty falls on an item's own part
        o_i = (b_i, q_i) − F_i·(c, E), so that an item with few ratings is
        pulled towards what its features predict, not towards zero. The
        kernel penalized the whole row, adding p_i (b_i, q_i) to its
        gradient (p_i: ``pen_rows``); here that becomes p_i o_i, in
        ``grad``'s rows ``rows`` (the gradient of the own parts), and the
        features' parts get the chain rule of the rest: Fᵀ(∂loss/∂rows),
        the penalty not depending on them. Returns (∂loss/∂(c, E), the
        change of the batch's loss from the penalty's move)."""
        F = self._item_F
        g_feat = np.empty_like(self._feat)
        correction = K.own_part_grads(F.indptr, F.indices, F.data, self._feat,
                                      self._theta, len(self._item_vocab), np.ascontiguousarray(rows), pen_rows,
                                      grad, g_feat)
        return g_feat, correction

    def _feature_step(self, g_feat):
        """Adam on (c, E), then every item's parameters follow."""
        F = self._item_F
        K.feature_step(F.indptr, F.indices, F.data, self._feat, np.ascontiguousarray(g_feat), self._feat_m,
                       self._feat_v, self._adam_step, float(self.meta_lr), self._theta, len(self._item_vocab))

    def _restore(self, snapshot):
        for name, value in snapshot.items():
            setattr(self, name, value)

    def _hyper_split(self, order):
        """(users whose tasks update the model, users whose tasks only update
        α and λ); None for the second when both come from the same tasks."""
        return order, None

    def _meta_epoch(self, indptr, items, ratings, weights, order, lo, hi, seed, item_reg=None):
        """One pass over the tasks of ``order`` in meta-batches, each a single
        kernel call followed by an Adam step (of the model, or of α and λ
        for held-out users' batches). Stops at a non-finite loss, before the
        update, and returns the losses of the model's batches run (of the
        held-out ones if there were none), the failing one included.
        ``item_reg``: the items' penalties, if not from this log (a Dask
        worker holds part of it)."""
        n_items = len(self._item_vocab)
        d = self.n_factors + 1
        grad = np.zeros_like(self._theta)
        grad_hyper = np.empty(d + 1)
        rows = np.empty(n_items, dtype=np.int64)
        pen_rows = np.empty(n_items)
        if item_reg is None:
            item_reg = self._item_reg(items, weights)
        features = getattr(self, "_item_F", None) is not None
        attributes = getattr(self, "_user_G", None) is not None
        context = self._has_context()
        g_feat = g_ctx = None
        g_ufeat = np.empty_like(self._ufeat) if attributes else None

        def batch_grad(batch, offsets, hyper):
            nonlocal g_feat, g_ctx
            outer = K.outer_settings(first_order=self.first_order, hyper=hyper,
                                     per_rating=self.task_weighting == "ratings")
            priors, g_priors = self._task_priors(batch)
            ctxs, off, g_off = self._context_args()
            args = (batch, lo, hi, seed, offsets, self._theta, n_items, self._alpha(), item_reg,
                    self._inner_settings(), outer, grad, grad_hyper, rows, pen_rows)
            shards = getattr(self, "_shards", None)
            if shards is not None:  # a Dask cluster's workers hold the tasks (see ``distributed``)
                loss, n_rows = shards.batch_grad(*args)
            else:
                loss, n_rows, _ = K.meta_batch_grad(indptr, items, ratings, weights, *args, priors, g_priors,
                                                    ctxs, off, g_off)
            if context:  # the chain rule from the combinations' (b_c, e_c) to the features'
                g_ctx = self._ctx_combos.T @ g_off + 2.0 * self.context_reg * self._ctx_E
                loss += self.context_reg * float(np.sum(self._ctx_E**2))
            if features:
                g_feat, correction = self._own_part_grads(grad, rows[:n_rows], pen_rows)
                loss += correction
            if attributes:
                # The chain rule from each task's prior to its user's attributes.
                G = self._user_G
                K.rows_transpose_times(G.indptr, G.indices, G.data, batch, g_priors, g_ufeat)
            return loss, n_rows

        order, hyper_order = self._hyper_split(order)
        together = hyper_order is None and self._learns_hyper
        steps = [(i + 1, False, b) for i, b in enumerate(self._batches(indptr, order))]
        if hyper_order is not None:
            # Held-out batches spread evenly through the epoch, so that α and
            # λ follow the model as it trains.
            held = list(self._batches(indptr, hyper_order))
            steps += [((j + 1) * len(steps) / len(held), True, b) for j, b in enumerate(held)]
            steps.sort(key=lambda step: step[:2])
        losses, held_losses = [], []
        for _, held_out, (batch, offsets) in steps:
            loss, n_rows = batch_grad(batch, offsets, together or held_out)
            (held_losses if held_out else losses).append(loss)
            if not loss < self._loss_limit:  # also catches NaN
                return np.array(losses + held_losses)
            if not held_out:
                if not self._learns_prior_factors():
                    grad[2 : 1 + d] = 0.0  # Adam then leaves p₀ where it is
                self._adam_step += 1
                K.adam_rows(self._theta, grad, self._adam_m, self._adam_v, self._adam_v_items,
                            self._adam_step, float(self.meta_lr), n_items, d, rows, n_rows,
                            self._adam_row_steps)
                if features:
                    self._feature_step(g_feat)
                if attributes:
                    if not self._learns_prior_factors():
                        g_ufeat[:, 1:] = 0.0  # as p₀: the attributes shift the bias prior only
                    K.adam_step(self._ufeat.reshape(-1), g_ufeat.reshape(-1), self._ufeat_m.reshape(-1),
                                self._ufeat_v.reshape(-1), self._adam_step, float(self.meta_lr))
                if context:
                    K.adam_step(self._ctx_E.reshape(-1), np.ascontiguousarray(g_ctx).reshape(-1),
                                self._ctx_m.reshape(-1), self._ctx_v.reshape(-1), self._adam_step,
                                float(self.meta_lr))
            if together or held_out:
                self._hyper_step(grad_hyper)
        return np.array(losses or held_losses)

    def _solve_users(self, indptr, items, ratings, weights, users, keys, ctxs=None):
        out = np.empty((len(users), self.n_factors + 1))
        if ctxs is None:
            context = K.no_context(self.n_factors + 1)[:2]
        else:
            context = (ctxs, np.ascontiguousarray(self._ctx_combos @ self._ctx_E))
        K.adapt_users(
            indptr, items, ratings, weights, np.ascontiguousarray(users), np.ascontiguousarray(keys),
            getattr(self, "_serve_seed", 0),
            self._theta, len(self._item_vocab), self._alpha(), self._inner_settings(), out,
            self._task_priors(keys)[0], *context,
        )
        return out


class _EarlyStopping:
    """scikit-learn's rule (as in ``SGDRegressor``): stop after
    ``n_iter_no_change`` epochs without the validation score rising by
    ``tol`` over the best so far; keep the best epoch's parameters."""

    def __init__(self, model, users, csr):
        self.model, self.users, self.csr = model, users, csr
        # One draw of support and query sets for every epoch, so that the
        # scores are comparable.
        self.seed = model._rng.randint(np.iinfo(np.int64).max, dtype=np.int64)
        model.validation_scores_ = []
        model.best_validation_score_ = -np.inf
        model.best_iteration_ = 0
        self.best = None
        self.stale = 0

    def should_stop(self):
        model = self.model
        score = -model._validation_loss(self.csr, self.users, self.seed)
        model.validation_scores_.append(float(score))
        if score > model.best_validation_score_ + model.tol:
            self.stale = 0
        else:
            self.stale += 1
        if score > model.best_validation_score_:
            model.best_validation_score_ = float(score)
            model.best_iteration_ = model.n_iter_
            self.best = model._snapshot()
        return self.stale >= model.n_iter_no_change

    def restore_best(self):
        if self.best is not None:
            self.model._restore(self.best)

