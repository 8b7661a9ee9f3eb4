"""Data sets: a synthetic generator of ratings with taste clusters."""

import numpy as np
from sklearn.utils import check_random_state


def make_ratings(
    n_users=1000,
    n_items=300,
    *,
    n_clusters=6,
    n_factors=8,
    mean_ratings=40,
    min_ratings=5,
    noise=0.5,
    rating_scale=(1, 5),
    integer=True,
    random_state=None,
):
    """Generate explicit ratings from a biased factorization model.

    Users are drawn around a few taste clusters, so that a few ratings say
    much about a user's cluster: the setting where meta-learning pays.
    Activity is long-tailed (log-normal), items are picked with a long-tailed
    popularity, and ratings get Gaussian noise, then are clipped to
    ``rating_scale`` (and rounded when ``integer``).

    Parameters
    ----------
    n_users : int, default=1000
        Number of users.
    n_items : int, default=300
        Number of items.
    n_clusters : int, default=6
        Number of taste clusters.
    n_factors : int, default=8
        Dimension of the true latent factors.
    mean_ratings : float, default=40
        Mean number of ratings per user.
    min_ratings : int, default=5
        Fewest ratings a user has.
    noise : float, default=0.5
        Standard deviation of the rating noise.
    rating_scale : (float, float), default=(1, 5)
        Lowest and highest rating.
    integer : bool, default=True
        Round ratings to integers.
    random_state : int, RandomState instance or None, default=None
        Seed.

    Returns
    -------
    X : ndarray of shape (n_ratings, 2), dtype int64
        (user id, item id) rows, grouped by user.
    y : ndarray of shape (n_ratings,)
        Ratings.

    Examples
    --------
    >>> from sklearn_metarec.datasets import make_ratings
    >>> X, y = make_ratings(n_users=50, n_items=30, random_state=0)
    >>> X.shape[1], float(y.min()) >= 1, float(y.max()) <= 5
    (2, True, True)
    """
    if min(n_users, n_items, n_clusters, n_factors, min_ratings) < 1:
        raise ValueError("n_users, n_items, n_clusters, n_factors and min_ratings must be >= 1.")
    if min_ratings > n_items:
        raise ValueError(f"min_ratings={min_ratings} exceeds n_items={n_items}.")
    if mean_ratings < min_ratings:
        raise ValueError(f"mean_ratings={mean_ratings} is below min_ratings={min_ratings}.")
    low, high = rating_scale
    if not low < high:
        raise ValueError(f"rating_scale must be (low, high) with low < high; got {rating_scale}.")
    rng = check_random_state(random_state)

    centers = rng.normal(0.0, 1.0, (n_clusters, n_factors))
    cluster = rng.randint(n_clusters, size=n_users)
    P = centers[cluster] + rng.normal(0.0, 0.3, (n_users, n_factors))
    Q = rng.normal(0.0, 0.8 / np.sqrt(n_factors), (n_items, n_factors))
    # Cluster-level bias too, so that a user's bias is partly predictable.
    user_bias = rng.normal(0.0, 0.3, n_clusters)[cluster] + rng.normal(0.0, 0.2, n_users)
    item_bias = rng.normal(0.0, 0.4, n_items)
    mid = (low + high) / 2 + 0.25 * (high - low) / 4

    extra = mean_ratings - min_ratings
    counts = min_ratings + np.floor(rng.lognormal(np.log(max(extra, 1e-9)) - 0.5, 1.0, n_users))
    counts = np.minimum(counts, n_items).astype(np.int64)
    log_pop = -0.8 * np.log1p(rng.permutation(n_items))

    users, items = [], []
    chunk = max(1, 2_000_000 // n_items)  # bounds the Gumbel matrix's memory
    for start in range(0, n_users, chunk):
        stop = min(start + chunk, n_users)
        # Gumbel top-k: each user's items, without replacement, by popularity.
        keys = log_pop + rng.gumbel(size=(stop - start, n_items))
        ranked = np.argsort(-keys, axis=1)
        take = np.arange(n_items) < counts[start:stop, None]
        users.append(np.repeat(np.arange(start, stop), counts[start:stop]))
        items.append(ranked[take])
    users = np.concatenate(users)
    items = np.concatenate(items)

    y = mid + user_bias[users] + item_bias[items] + np.einsum("nf,nf->n", P[users], Q[items])
    y = y + rng.normal(0.0, noise, len(y))
    if integer:
        y = np.rint(y)
    y = np.clip(y, low, high)
    return np.column_stack([users, items]).astype(np.int64), y
