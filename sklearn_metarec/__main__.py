"""Cold-start demo: ``python -m sklearn_metarec``.

Meta-trains MAML on synthetic users, then gives held-out users 5, 10 or 20
ratings (their support sets) through ``fold_in`` and measures RMSE on the
rest of their ratings. The comparators are the global mean and the plain
factorization baseline with its exact least-squares fold-in.
"""

import argparse
import copy
import time

import numpy as np

from . import FactorizationRecommender, MAMLFactorizationRecommender
from .datasets import make_ratings


def rank_within_user(users, rng):
    """A random rank of each rating among its user's ratings (vectorized)."""
    order = np.lexsort((rng.random_sample(len(users)), users))
    sorted_users = users[order]
    first = np.searchsorted(sorted_users, sorted_users, side="left")
    rank = np.empty(len(users), dtype=np.int64)
    rank[order] = np.arange(len(users)) - first
    return rank


def run(n_users=1500, n_items=400, shots=(5, 10, 20), min_query=5, random_state=0, out=print):
    """Run the demo; returns {K: {method: RMSE}}."""
    rng = np.random.RandomState(random_state)
    X, y = make_ratings(n_users=n_users, n_items=n_items, random_state=random_state)
    test_users = rng.permutation(n_users)[: n_users // 5]
    is_test = np.isin(X[:, 0], test_users)
    X_train, y_train, X_test, y_test = X[~is_test], y[~is_test], X[is_test], y[is_test]
    out(
        f"Synthetic ratings: {len(y)} from {n_users} users on {n_items} items; "
        f"{len(test_users)} users held out."
    )

    models = {
        "FactorizationRecommender": FactorizationRecommender(random_state=random_state),
        "MAMLFactorizationRecommender": MAMLFactorizationRecommender(random_state=random_state),
    }
    for name, model in models.items():
        start = time.perf_counter()
        model.fit(X_train, y_train)
        out(f"fit {name}: {time.perf_counter() - start:.1f} s")

    rank = rank_within_user(X_test[:, 0], rng)
    counts = np.bincount(X_test[:, 0], minlength=n_users)[X_test[:, 0]]
    results = {}
    for k in shots:
        eligible = counts >= k + min_query
        support = eligible & (rank < k)
        query = eligible & (rank >= k)
        rmse = {"global mean": np.sqrt(np.mean((y_test[query] - y_train.mean()) ** 2))}
        for name, model in models.items():
            adapted = copy.deepcopy(model).fold_in(X_test[support], y_test[support])
            pred = adapted.predict(X_test[query])
            rmse[name] = float(np.sqrt(np.mean((pred - y_test[query]) ** 2)))
        results[k] = rmse

    names = list(results[shots[0]])
    out("")
    out("RMSE on held-out users' query ratings, after folding in K support ratings")
    out("| K | users | " + " | ".join(names) + " | MAML vs baseline |")
    out("|---|---|" + "---|" * len(names) + "---|")
    for k in shots:
        n = len(np.unique(X_test[(counts >= k + min_query), 0]))
        r = results[k]
        gain = 100 * (1 - r["MAMLFactorizationRecommender"] / r["FactorizationRecommender"])
        out(f"| {k} | {n} | " + " | ".join(f"{r[m]:.4f}" for m in names) + f" | {gain:+.1f}% |")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sklearn_metarec", description=__doc__.split("\n")[0])
    parser.add_argument("--n-users", type=int, default=1500)
    parser.add_argument("--n-items", type=int, default=400)
    parser.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args(argv)
    run(n_users=args.n_users, n_items=args.n_items, random_state=args.random_state)


if __name__ == "__main__":
    main()
