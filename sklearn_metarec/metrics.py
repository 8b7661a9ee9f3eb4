"""Rating and per-user ranking metrics, and scorers for ``GridSearchCV``.

Definitions
-----------
Every ranking metric is computed per user, then averaged over users (each
user counts once, however many ratings it has). For a user, let R be its
ranked list cut at the first ``k`` positions, rank ``i = 1..k``:

* gain ``g_i``: the true rating (``gains="linear"``) or ``2**rating - 1``
  (``gains="exponential"``); 0 for a recommended item the user did not rate;
* relevant: a rated item with rating ``>= threshold``;
* ``DCG@k = Σ_i g_i / log2(i + 1)``; ``nDCG@k = DCG@k / IDCG@k``, IDCG being
  the DCG of the user's rated items sorted by true gain;
* ``precision@k = hits / min(k, n_ranked)``, where ``n_ranked`` is the
  number of items that were ranked (fewer than ``k`` when a user has few
  test ratings);
* ``recall@k = hits / n_relevant``;
* ``MAP@k``: the mean over users of
  ``AP@k = Σ_i rel_i · precision@i / min(k, n_relevant)``;
* ``hit_rate@k``: 1 if a relevant item is in the top ``k``, else 0;
* ``AUC``: the share of (relevant, non-relevant) item pairs of the user
  that the scores order correctly, a tie counting one half; it looks at the
  whole list, not the top ``k``, and leaves out users lacking either kind.

Users with no relevant item (for nDCG: with ``IDCG = 0``) are left out of
the average: no ranking can do well or badly on them. If no user is left,
the metric is NaN and an ``UndefinedMetricWarning`` is raised.

Ties in the predicted scores are not broken by input order: each metric
is its expected value over a random order of the tied items (for nDCG this
is scikit-learn's ``ndcg_score`` rule). A constant predictor therefore
scores what a random ranking scores on average.

Two modes
---------
``mode="within"`` (the MeLU protocol): each user's test items are ranked
by the predicted rating, and only they are ranked. The functions
:func:`ndcg_at_k` … :func:`hit_rate_at_k` take ``(y_true, y_score, users)``
for this mode.

``mode="catalogue"``: the estimator's full-catalogue top-``k`` list from
``recommend`` (items seen in training excluded) is compared with the
user's test ratings; see :func:`ranking_report`. There, AUC pairs each
relevant test item with every other item the user has not seen (rated in
training), which is the usual protocol for implicit feedback.
"""

import numbers
import warnings

import numpy as np
from scipy.special import gammaln
from scipy.stats import rankdata
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.utils.validation import check_is_fitted

from ._data import _check_vector, as_2d, check_ids, check_ratings

RANKING_METRICS = ("ndcg", "precision", "recall", "map", "hit_rate", "auc")
ERROR_METRICS = ("rmse", "mae", "user_rmse", "user_mae")


# --------------------------------------------------------------------------
# Rating errors


def _check_pair(y_true, y_pred, users=None):
    y_true = _check_vector(y_true, np.size(y_true), "y_true")
    y_pred = _check_vector(y_pred, len(y_true), "y_pred")
    if len(y_true) == 0:
        raise ValueError("y_true is empty: there is nothing to score.")
    if users is not None:
        users = np.asarray(users)
        if users.shape != y_true.shape:
            raise ValueError(
                f"users has shape {users.shape}; one id per rating, {y_true.shape}, is needed."
            )
    return y_true, y_pred, users


def _user_mean(values, users):
    _, codes = np.unique(users, return_inverse=True)
    counts = np.bincount(codes)
    return np.bincount(codes, values) / counts, codes


def rmse(y_true, y_pred, *, users=None):
    """Root mean squared error, over ratings or averaged over users.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_ratings,)
        True and predicted ratings.
    users : array-like of shape (n_ratings,), default=None
        User of each rating. When given, each user's RMSE is computed and
        the mean over users is returned, so that heavy raters do not dominate.

    Returns
    -------
    float

    Examples
    --------
    >>> from sklearn_metarec.metrics import rmse
    >>> rmse([1, 2, 3, 4], [1, 2, 3, 6])
    1.0
    >>> rmse([1, 2, 3, 4], [1, 2, 3, 6], users=[0, 0, 0, 1])
    1.0
    """
    y_true, y_pred, users = _check_pair(y_true, y_pred, users)
    sq = (y_true - y_pred) ** 2
    if users is None:
        return float(np.sqrt(sq.mean()))
    per_user, _ = _user_mean(sq, users)
    return float(np.sqrt(per_user).mean())


def mae(y_true, y_pred, *, users=None):
    """Mean absolute error, over ratings or averaged over users.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_ratings,)
        True and predicted ratings.
    users : array-like of shape (n_ratings,), default=None
        User of each rating; when given, the mean of the per-user MAEs.

    Returns
    -------
    float

    Examples
    --------
    >>> from sklearn_metarec.metrics import mae
    >>> mae([1, 2, 3, 4], [2, 2, 3, 7], users=["a", "a", "b", "b"])
    1.0
    """
    y_true, y_pred, users = _check_pair(y_true, y_pred, users)
    err = np.abs(y_true - y_pred)
    if users is None:
        return float(err.mean())
    return float(_user_mean(err, users)[0].mean())


# --------------------------------------------------------------------------
# Ranking: one engine for both modes


def _check_k(k):
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}.")
    return int(k)


def _gain(y, gains):
    if gains == "linear":
        return y
    if gains == "exponential":
        return np.exp2(y) - 1.0
    raise ValueError(f"gains must be 'linear' or 'exponential'; got {gains!r}.")


class _RankedLists:
    """Users' ranked lists, flattened and sorted by (user, rank).

    ``group`` numbers runs of tied scores (non-decreasing, one run never
    spans two users); ``n_ranked``, ``n_relevant`` and ``idcg`` are per user.
    """

    def __init__(self, user, rank, group, gain, relevant, n_ranked, n_relevant, idcg, k):
        self.user, self.rank, self.group = user, rank, group
        self.gain, self.relevant = gain, relevant
        self.n_ranked, self.n_relevant, self.idcg, self.k = n_ranked, n_relevant, idcg, k
        size = np.bincount(group)
        self.size = size
        self.n_rel_group = np.bincount(group, relevant, minlength=len(size))
        self.mean_gain = np.bincount(group, gain, minlength=len(size)) / size
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        self.group_rank0 = rank[starts]
        self.group_user = user[starts]
        self.top = rank < k

    def _per_user(self, values):
        return np.bincount(self.user[self.top], values[self.top], minlength=len(self.n_ranked))

    def expected_hits(self):
        rho = self.n_rel_group / self.size
        return self._per_user(rho[self.group])

    def ndcg(self):
        discount = 1.0 / np.log2(self.rank + 2.0)
        dcg = self._per_user(self.mean_gain[self.group] * discount)
        return _average(dcg, self.idcg, self.idcg > 0, "nDCG")

    def precision(self):
        return _average(self.expected_hits(), np.minimum(self.k, self.n_ranked),
                        self.n_relevant > 0, "precision")

    def recall(self):
        return _average(self.expected_hits(), self.n_relevant, self.n_relevant > 0, "recall")

    def map(self):
        g, r = self.size, self.n_rel_group
        rho = r / g
        # Relevant items in the earlier groups of the same user: those lie
        # wholly above the group, so their count is exact.
        before = np.cumsum(r) - r
        first = np.searchsorted(self.group_user, self.group_user, side="left")
        before = before - before[first]
        with np.errstate(invalid="ignore", divide="ignore"):
            pair = np.where(g > 1, r * (r - 1) / (g * (g - 1.0)), 0.0)
        grp = self.group
        within = self.rank - self.group_rank0[grp]
        # E[rel_i · #relevant in ranks 1..i] over random orders of the ties.
        term = (rho[grp] * before[grp] + within * pair[grp] + rho[grp]) / (self.rank + 1.0)
        return _average(self._per_user(term), np.minimum(self.k, self.n_relevant),
                        self.n_relevant > 0, "MAP")

    def hit_rate(self):
        g, r, k = self.size, self.n_rel_group, self.k
        end = self.group_rank0 + g  # one past the group's last rank
        n_users = len(self.n_ranked)
        inside = end <= k
        sure = np.bincount(self.group_user[inside], r[inside], minlength=n_users) > 0
        # The group cut by position k: m of its g places are in the top k.
        cut = (self.group_rank0 < k) & (end > k)
        m = k - self.group_rank0[cut]
        gc, rc = g[cut], r[cut]
        miss = np.zeros(len(m))
        ok = gc - rc >= m
        # P(no relevant item among m places drawn from g holding r relevant).
        miss[ok] = np.exp(
            gammaln(gc[ok] - rc[ok] + 1) - gammaln(gc[ok] - rc[ok] - m[ok] + 1)
            - gammaln(gc[ok] + 1) + gammaln(gc[ok] - m[ok] + 1)
        )
        p_hit = sure.astype(float)
        p_hit[self.group_user[cut]] = np.where(sure[self.group_user[cut]], 1.0, 1.0 - miss)
        return _average(p_hit, np.ones(n_users), self.n_relevant > 0, "hit rate")

    def auc(self):
        # Over the whole list, group by group: a group's relevant items beat
        # every non-relevant item in later groups and half of those in it.
        n_users = len(self.n_ranked)
        r = self.n_rel_group
        neg = self.size - r
        n_neg = np.bincount(self.group_user, neg, minlength=n_users)
        above = np.cumsum(neg) - neg
        first = np.searchsorted(self.group_user, self.group_user, side="left")
        above = above - above[first]
        below = n_neg[self.group_user] - above - neg
        won = np.bincount(self.group_user, r * (below + 0.5 * neg), minlength=n_users)
        return _average(won, self.n_relevant * n_neg, (self.n_relevant > 0) & (n_neg > 0), "AUC")


def _average(numerator, denominator, eligible, name):
    if not eligible.any():
        warnings.warn(
            f"{name} is undefined: no user has a relevant item (or any gain) "
            "among its rated items; returning NaN.",
            UndefinedMetricWarning,
            stacklevel=4,
        )
        return float("nan")
    return float(np.mean(numerator[eligible] / denominator[eligible]))


def _ideal_dcg(user_codes, gain, n_users, k):
    order = np.lexsort((-gain, user_codes))
    u = user_codes[order]
    starts = np.searchsorted(u, np.arange(n_users))
    rank = np.arange(len(u)) - starts[u]
    top = rank < k
    return np.bincount(u[top], gain[order][top] / np.log2(rank[top] + 2.0), minlength=n_users)


def _within_lists(y_true, y_score, users, k, threshold, gains):
    y_true, y_score, users = _check_pair(y_true, y_score, users)
    if users is None:
        raise TypeError("users is required: ranking metrics are computed per user.")
    k = _check_k(k)
    _, u = np.unique(users, return_inverse=True)
    n_users = u.max() + 1
    gain = _gain(y_true, gains)
    order = np.lexsort((-y_score, u))
    su, ss = u[order], y_score[order]
    starts = np.searchsorted(su, np.arange(n_users))
    rank = np.arange(len(su)) - starts[su]
    new_group = np.r_[True, (su[1:] != su[:-1]) | (ss[1:] != ss[:-1])]
    relevant = (y_true >= threshold).astype(float)
    return _RankedLists(
        user=su, rank=rank, group=np.cumsum(new_group) - 1, gain=gain[order],
        relevant=relevant[order], n_ranked=np.bincount(u),
        n_relevant=np.bincount(u, relevant, minlength=n_users),
        idcg=_ideal_dcg(u, gain, n_users, k), k=k,
    )


_WITHIN_DOC = """
    Parameters
    ----------
    y_true : array-like of shape (n_ratings,)
        True ratings of the test items.
    y_score : array-like of shape (n_ratings,)
        Predicted ratings (or any score; higher ranks first).
    users : array-like of shape (n_ratings,)
        User of each rating; each user's items are ranked among themselves.
    k : int, default=10
        Cut-off.
    {extra}
    Returns
    -------
    float
        The mean over users, as defined in :mod:`sklearn_metarec.metrics`.
"""
_THRESHOLD_DOC = """threshold : float, default=4.0
        A rating at least this high is relevant (pass 1 for 0/1 data).
"""


def ndcg_at_k(y_true, y_score, *, users, k=10, gains="linear"):
    return _within_lists(y_true, y_score, users, k, np.inf, gains).ndcg()


def precision_at_k(y_true, y_score, *, users, k=10, threshold=4.0):
    return _within_lists(y_true, y_score, users, k, threshold, "linear").precision()


def recall_at_k(y_true, y_score, *, users, k=10, threshold=4.0):
    return _within_lists(y_true, y_score, users, k, threshold, "linear").recall()


def map_at_k(y_true, y_score, *, users, k=10, threshold=4.0):
    return _within_lists(y_true, y_score, users, k, threshold, "linear").map()


def hit_rate_at_k(y_true, y_score, *, users, k=10, threshold=4.0):
    return _within_lists(y_true, y_score, users, k, threshold, "linear").hit_rate()


def auc_score(y_true, y_score, *, users, threshold=4.0):
    """Per-user AUC: each user's relevant test items against its other test
    items, averaged over users.

    Parameters
    ----------
    y_true : array-like of shape (n_ratings,)
        True ratings or 0/1 labels of the test items.
    y_score : array-like of shape (n_ratings,)
        Predicted ratings, probabilities or any score; higher ranks first.
    users : array-like of shape (n_ratings,)
        User of each rating.
    threshold : float, default=4.0
        A rating at least this high is relevant (pass 1 for 0/1 data).

    Returns
    -------
    float
        The mean over users that have both relevant and non-relevant items
        of the share of such pairs ordered correctly (ties count one half).

    Examples
    --------
    >>> from sklearn_metarec.metrics import auc_score
    >>> auc_score([1, 0, 0, 1, 0], [0.9, 0.2, 0.9, 0.1, 0.5], users=[0, 0, 0, 1, 1], threshold=1)
    0.375
    """
    return _within_lists(y_true, y_score, users, 1, threshold, "linear").auc()


ndcg_at_k.__doc__ = (
    "nDCG@k with graded gains, each user's test items ranked among themselves.\n"
    + _WITHIN_DOC.format(extra="""gains : {"linear", "exponential"}, default="linear"
        Gain of a rating r: r, or 2**r − 1.
""")
    + """
    Examples
    --------
    >>> from sklearn_metarec.metrics import ndcg_at_k
    >>> round(ndcg_at_k([5, 3, 1], [0.9, 0.5, 0.1], users=[0, 0, 0]), 6)
    1.0
    >>> round(ndcg_at_k([1, 3, 5], [0.9, 0.5, 0.1], users=[0, 0, 0], k=1), 6)
    0.2
"""
)
for _f, _what in (
    (precision_at_k, "Precision@k"),
    (recall_at_k, "Recall@k"),
    (map_at_k, "MAP@k (mean average precision)"),
    (hit_rate_at_k, "Hit rate@k"),
):
    _f.__doc__ = (
        f"{_what}, each user's test items ranked among themselves.\n"
        + _WITHIN_DOC.format(extra=_THRESHOLD_DOC)
    )


# --------------------------------------------------------------------------
# Full-catalogue mode and the report both modes share


def _catalogue_lists(estimator, users, items, y_true, k, threshold, gains):
    test_users, u = np.unique(users, return_inverse=True)
    n_users = len(test_users)
    pos, _ = estimator._top_n(estimator._user_vocab.lookup(test_users), k, True)
    n_items = len(estimator._item_vocab)
    test_items = estimator._item_vocab.lookup(items)
    gain = _gain(y_true, gains)
    relevant = (y_true >= threshold).astype(float)
    # Key each known (user, item) test pair once; an item the model does not
    # know cannot be recommended, yet still counts in recall's denominator.
    known = test_items >= 0
    keys = u[known] * n_items + test_items[known]
    order = np.argsort(keys, kind="stable")
    keys = np.r_[keys[order], -1]  # a sentinel no recommendation matches
    rec_keys = (np.arange(n_users)[:, None] * n_items + pos).ravel()
    at = np.searchsorted(keys[:-1], rec_keys)
    match = keys[at] == rec_keys
    rec_gain = np.where(match, np.r_[gain[known][order], 0.0][at], 0.0)
    rec_rel = np.where(match, np.r_[relevant[known][order], 0.0][at], 0.0)
    n_out = pos.shape[1]
    return _RankedLists(
        user=np.repeat(np.arange(n_users), n_out), rank=np.tile(np.arange(n_out), n_users),
        group=np.arange(n_users * n_out), gain=rec_gain, relevant=rec_rel,
        n_ranked=np.full(n_users, n_out), n_relevant=np.bincount(u, relevant, minlength=n_users),
        idcg=_ideal_dcg(u, gain, n_users, k), k=k,
    )


def ranking_report(estimator, X, y, *, k=10, mode="within", metrics=None, threshold=4.0,
                   gains="linear"):
    """Per-user metrics of a fitted recommender on test ratings, in one pass.

    Parameters
    ----------
    estimator : fitted recommender of this package
        Its training data must not include the test ratings.
    X : array-like or DataFrame of shape (n_ratings, n_columns)
        Test (user id, item id) rows.
    y : array-like of shape (n_ratings,)
        Test ratings.
    k : int, default=10
        Cut-off of the ranking metrics.
    mode : {"within", "catalogue"}, default="within"
        Rank each user's test items among themselves, or take the
        estimator's top-``k`` over the whole catalogue (seen items excluded);
        see :mod:`sklearn_metarec.metrics`.
    metrics : sequence of str, default=None
        Among ``"rmse"``, ``"mae"``, ``"user_rmse"``, ``"user_mae"``,
        ``"ndcg"``, ``"precision"``, ``"recall"``, ``"map"``, ``"hit_rate"``,
        ``"auc"``; all of them when None.
    threshold : float, default=4.0
        Relevance threshold of the binary ranking metrics.
    gains : {"linear", "exponential"}, default="linear"
        Gains of nDCG.

    Returns
    -------
    dict
        Metric name to value (errors are positive: lower is better).

    Examples
    --------
    >>> from sklearn_metarec import FactorizationRecommender
    >>> from sklearn_metarec.datasets import make_ratings
    >>> from sklearn_metarec.metrics import ranking_report
    >>> X, y = make_ratings(n_users=40, n_items=30, random_state=0)
    >>> model = FactorizationRecommender(n_factors=4, random_state=0).fit(X[::2], y[::2])
    >>> sorted(ranking_report(model, X[1::2], y[1::2], metrics=["ndcg", "rmse"]))
    ['ndcg', 'rmse']
    """
    check_is_fitted(estimator)
    names = _check_metrics(metrics)
    if mode not in ("within", "catalogue"):
        raise ValueError(f"mode must be 'within' or 'catalogue'; got {mode!r}.")
    users, items, _ = check_ids(as_2d(X))
    y = check_ratings(y, len(users))
    k = _check_k(k)
    report = {}
    need_pred = mode == "within" or any(n in ERROR_METRICS for n in names)
    y_pred = estimator.predict(X) if need_pred else None
    for name in names:
        if name in ERROR_METRICS:
            fn = rmse if name.endswith("rmse") else mae
            report[name] = fn(y, y_pred, users=users if name.startswith("user_") else None)
    ranked = [n for n in names if n in RANKING_METRICS]
    if ranked:
        if mode == "within":
            lists = _within_lists(y, y_pred, users, k, threshold, gains)
        else:
            lists = _catalogue_lists(estimator, users, items, y, k, threshold, gains)
        for name in ranked:
            if name == "auc" and mode == "catalogue":
                report[name] = _catalogue_auc(estimator, users, items, y, threshold)
            else:
                report[name] = getattr(lists, name)()
    return report


def _catalogue_auc(estimator, users, items, y_true, threshold):
    """AUC of each user's relevant test items against every item it has not
    seen, from the full-catalogue ranking (ties count one half)."""
    test_users, u = np.unique(users, return_inverse=True)
    n_items = len(estimator._item_vocab)
    pos, scores = estimator._top_n(estimator._user_vocab.lookup(test_users), n_items, True)
    codes = estimator._item_vocab.lookup(items)
    hit = (codes >= 0) & (y_true >= threshold)
    relevant = np.zeros((len(test_users), n_items))
    relevant[u[hit], codes[hit]] = 1.0
    relevant = np.take_along_axis(relevant, pos, axis=1)
    eligible = np.isfinite(scores)
    n_pos = (relevant * eligible).sum(axis=1)
    n_neg = eligible.sum(axis=1) - n_pos
    # Midranks from the bottom; seen items (−∞) rank lowest and are dropped.
    rank = rankdata(np.where(eligible, scores, -np.inf), axis=1) - (~eligible).sum(axis=1, keepdims=True)
    won = (relevant * eligible * rank).sum(axis=1) - n_pos * (n_pos + 1) / 2
    return _average(won, n_pos * n_neg, (n_pos > 0) & (n_neg > 0), "AUC")


def _check_metrics(metrics):
    known = ERROR_METRICS + RANKING_METRICS
    names = known if metrics is None else ([metrics] if isinstance(metrics, str) else list(metrics))
    for name in names:
        if name not in known:
            raise ValueError(f"Unknown metric {name!r}; choose among {', '.join(known)}.")
    return list(names)


class RecommenderScorer:
    """A ``scoring=`` callable for scikit-learn's model selection.

    Made by :func:`make_recommender_scorer`; see there.
    """

    def __init__(self, metric, k, mode, threshold, gains):
        self.metric, self.k, self.mode, self.threshold, self.gains = metric, k, mode, threshold, gains

    def __call__(self, estimator, X, y):
        value = ranking_report(
            estimator, X, y, k=self.k, mode=self.mode, metrics=[self.metric],
            threshold=self.threshold, gains=self.gains,
        )[self.metric]
        return -value if self.metric in ERROR_METRICS else value

    def __repr__(self):
        return (f"make_recommender_scorer({self.metric!r}, k={self.k}, mode={self.mode!r}, "
                f"threshold={self.threshold}, gains={self.gains!r})")


def make_recommender_scorer(metric, *, k=10, mode="within", threshold=4.0, gains="linear"):
    """Make a scorer for ``GridSearchCV``, ``cross_validate`` and friends.

    The scorer reads user ids from the first column of the test X and
    computes ``metric`` per user, as :func:`ranking_report` does. Error
    metrics are negated (``"rmse"`` scores ``-RMSE``), so that greater is
    better, as scikit-learn's ``neg_root_mean_squared_error`` is.

    Parameters
    ----------
    metric : str
        ``"ndcg"``, ``"precision"``, ``"recall"``, ``"map"``, ``"hit_rate"``,
        ``"auc"``, ``"rmse"``, ``"mae"``, ``"user_rmse"`` or ``"user_mae"``.
    k : int, default=10
        Cut-off of the ranking metrics.
    mode : {"within", "catalogue"}, default="within"
        Ranking mode; see :mod:`sklearn_metarec.metrics`.
    threshold : float, default=4.0
        Relevance threshold of the binary ranking metrics.
    gains : {"linear", "exponential"}, default="linear"
        Gains of nDCG.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y) -> float``.

    Examples
    --------
    >>> from sklearn.model_selection import cross_val_score
    >>> from sklearn_metarec import FactorizationRecommender
    >>> from sklearn_metarec.datasets import make_ratings
    >>> from sklearn_metarec.metrics import make_recommender_scorer
    >>> from sklearn_metarec.model_selection import ColdStartSplit
    >>> X, y = make_ratings(n_users=60, n_items=30, random_state=0)
    >>> scores = cross_val_score(
    ...     FactorizationRecommender(n_factors=4, random_state=0), X, y,
    ...     cv=ColdStartSplit(n_splits=3, n_support=5, random_state=0),
    ...     scoring=make_recommender_scorer("ndcg", k=5))
    >>> scores.shape
    (3,)
    """
    _check_metrics([metric])
    if mode not in ("within", "catalogue"):
        raise ValueError(f"mode must be 'within' or 'catalogue'; got {mode!r}.")
    _gain(np.zeros(1), gains)
    return RecommenderScorer(metric, _check_k(k), mode, threshold, gains)
