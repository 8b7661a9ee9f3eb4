"""Implicit feedback: cold-start users who clicked 5 items.

Keeps only the "liked" rows of synthetic data (positives, no ratings), gives
each held-out user 5 of them, and ranks the whole catalogue for that user.
Every estimator is fitted with ``loss="logistic"`` and no y: each one
samples ``n_negatives`` unclicked items per positive. The metrics compare
the held-out positives with every other item the user has not clicked.

    python examples/implicit_feedback.py
"""

import time

import numpy as np

from sklearn_metarec import (
    FactorizationRecommender,
    MAMLFactorizationRecommender,
    MetaSGDFactorizationRecommender,
    ReptileFactorizationRecommender,
)
from sklearn_metarec.datasets import make_ratings
from sklearn_metarec.metrics import auc_score, ndcg_at_k, recall_at_k
from sklearn_metarec.model_selection import cold_start_split


def catalogue_table(support, query, n_items, users):
    """(user, item) pairs for every test user and every item outside its
    support, labelled 1 where the pair is a held-out positive."""
    u = np.repeat(users, n_items)
    i = np.tile(np.arange(n_items), len(users))
    key = u * n_items + i
    keep = ~np.isin(key, support[:, 0] * n_items + support[:, 1])
    labels = np.isin(key, query[:, 0] * n_items + query[:, 1]).astype(float)
    return np.column_stack([u, i])[keep], labels[keep]


def main(n_users=1500, n_items=300, seed=0, only=None):
    """Print the table; return (scores by method, labels, users). ``only``:
    the names of the estimators to fit (default: all)."""
    X, y = make_ratings(n_users=n_users, n_items=n_items, implicit=True, random_state=seed)
    clicks = X[y == 1]
    X_train, X_query = cold_start_split(clicks, n_support=5, test_size=0.2, random_state=seed)
    test_users = np.unique(X_query[:, 0])
    is_support = np.isin(X_train[:, 0], test_users)
    support, train = X_train[is_support], X_train[~is_support]
    pairs, labels = catalogue_table(support, X_query, n_items, test_users)
    print(f"{len(clicks)} clicks by {len(np.unique(clicks[:, 0]))} users; {len(test_users)} "
          f"new users with 5 clicks each, {len(X_query)} held-out clicks to find among {n_items} items\n")

    scores = {"popularity": np.bincount(train[:, 1], minlength=n_items)[pairs[:, 1]].astype(float)}
    for model in (
        FactorizationRecommender(loss="logistic", random_state=seed),
        MAMLFactorizationRecommender(loss="logistic", random_state=seed),
        MetaSGDFactorizationRecommender(loss="logistic", random_state=seed),
        ReptileFactorizationRecommender(loss="logistic", random_state=seed),
        MAMLFactorizationRecommender(loss="bpr", random_state=seed),
    ):
        name = type(model).__name__ + (", bpr" if model.loss == "bpr" else "")
        if only is not None and name not in only:
            continue
        start = time.perf_counter()
        model.fit(train).fold_in(support)  # no y: every row is a positive
        scores[name] = model.predict(pairs)  # probabilities (BPR: ranking scores)
        print(f"fitted {name} in {time.perf_counter() - start:.1f} s")

    print("\n| method | AUC | nDCG@10 | recall@10 |\n|---|---|---|---|")
    for name, s in scores.items():
        kw = dict(users=pairs[:, 0])
        print(f"| {name} | {auc_score(labels, s, threshold=1, **kw):.4f} | "
              f"{ndcg_at_k(labels, s, k=10, **kw):.4f} | {recall_at_k(labels, s, k=10, threshold=1, **kw):.4f} |")
    return scores, labels, pairs[:, 0]


if __name__ == "__main__":
    main()
