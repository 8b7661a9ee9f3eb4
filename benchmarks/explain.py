"""Explanations: how faithful and how fast ``explain`` is.

MovieLens-100k; 20% of users are new, each folded in with K = 20 random
support ratings; MAML with its defaults. For each of 100 new users' top-10
recommendations (1,000 rows):

- faithfulness: per row, the Spearman correlation between the influence
  contributions (``method="influence"``: the exact derivative through the
  inner steps, times the weight) and the exact leave-one-out ones, over the
  user's 20 ratings; mean, median and 10th percentile over rows;
- counterfactual: take out the k = 1, 3 ratings with the largest positive
  influence on each user's top-1 item and fold the user in again: how
  often is that item no longer first? Against k random ratings, and the
  k ratings of the items most similar to it (cosine of the items' rating
  columns over the known users: item-kNN's "because you rated similar
  items");
- speed: milliseconds per row of each method after compilation, the best
  of 3 (2 cores).

    python benchmarks/explain.py [--data ml-100k.zip] [--seed 0]

Writes benchmarks/results/explain.md.
"""

import argparse
import os
import pickle
import time
from datetime import date
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.stats import spearmanr

from sklearn_metarec import MAMLFactorizationRecommender
from sklearn_metarec.datasets import fetch_movielens, load_movielens
from sklearn_metarec.model_selection import cold_start_split


def timed(fn, repeat=3):
    best, out = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def first_changes(model, X_fit, y_fit, users, drop):
    """Share of ``users`` whose top-1 item changes when the ratings ``drop[u]``
    (item ids) are taken out and the user is folded in again as a new user."""
    changed = []
    for user in users:
        top = model.recommend(user, n=1)[0][0]
        mine = X_fit[:, 0] == user
        keep = mine & ~np.isin(X_fit[:, 1], drop[user])
        copy = pickle.loads(pickle.dumps(model))
        alias = 10**9 + int(user)
        copy.fold_in(np.column_stack([np.full(keep.sum(), alias), X_fit[keep, 1]]), y_fit[keep])
        # The alias has not rated the dropped items; rank what the user had not rated.
        seen = X_fit[mine, 1]
        candidates = np.setdiff1d(copy.item_ids_, seen)
        changed.append(copy.recommend(alias, n=1, items=candidates)[0][0] != top)
    return float(np.mean(changed))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="MovieLens-100k folder, zip or recbole wheel; default: fetch it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "explain.md"))
    args = parser.parse_args(argv)
    data = load_movielens(args.data) if args.data else fetch_movielens("100k", source="pypi")
    X, y = np.asarray(data.X), np.asarray(data.y, dtype=float)
    X_fit, X_q, y_fit, y_q = cold_start_split(X, y, n_support=20, test_size=0.2, random_state=args.seed)
    model = MAMLFactorizationRecommender(random_state=args.seed).fit(X_fit, y_fit)
    users = np.unique(X_q[:, 0])[: args.users]
    ids, _ = model.recommend(users, n=10)
    rows = np.column_stack([np.repeat(users, 10), ids.ravel()])
    model.explain(rows[:2], method="influence")  # compile
    model.explain(rows[:2])
    t_fast, fast = timed(lambda: model.explain(rows, method="influence"))
    t_exact, exact = timed(lambda: model.explain(rows))

    def by_row(why):
        order = np.lexsort((why["rated_item"], why["row"]))
        return why["contribution"][order].reshape(len(rows), -1)

    rho = np.array([spearmanr(a, b)[0] for a, b in zip(by_row(fast), by_row(exact))])
    # Counterfactual on each user's top-1 (rows 0, 10, 20, ...).
    rng = np.random.default_rng(args.seed)
    known = ~np.isin(X_fit[:, 0], np.unique(X_q[:, 0]))
    item_ids, cols = np.unique(X_fit[known, 1], return_inverse=True)
    _, user_rows = np.unique(X_fit[known, 0], return_inverse=True)
    R = sparse.csc_matrix((y_fit[known], (user_rows, cols)))
    norms = np.sqrt(np.asarray(R.multiply(R).sum(axis=0))).ravel()

    def similarity(a, others):
        """Cosine of item ``a``'s rating column with each of ``others``'; 0
        for an item no known user rated."""
        ids = np.r_[a, others]
        pos = np.minimum(np.searchsorted(item_ids, ids), len(item_ids) - 1)
        found = item_ids[pos] == ids
        dot = (R[:, pos[1:]].T @ R[:, pos[0]]).toarray().ravel()
        return np.where(found[1:] & found[0], dot / np.maximum(norms[pos[1:]] * norms[pos[0]], 1e-12), 0.0)

    lines = []
    for k in (1, 3):
        top = fast[np.isin(fast["row"], np.arange(0, len(rows), 10))]
        drop_inf, drop_rand, drop_sim = {}, {}, {}
        for user in users:
            mine = top[top["user"] == user]
            positive = mine[mine["contribution"] > 0]
            drop_inf[user] = positive["rated_item"][np.argsort(-positive["contribution"])][:k]
            drop_rand[user] = rng.choice(mine["rated_item"], k, replace=False)
            sim = similarity(mine["item"][0], mine["rated_item"])
            drop_sim[user] = mine["rated_item"][np.argsort(-sim, kind="stable")][:k]
        lines.append((k, first_changes(model, X_fit, y_fit, users, drop_inf),
                      first_changes(model, X_fit, y_fit, users, drop_rand),
                      first_changes(model, X_fit, y_fit, users, drop_sim)))
    text = "\n".join([
        f"# Explanations, {date.today()}",
        "",
        f"MovieLens-100k, seed {args.seed}; {len(users)} new users folded in with 20 random support ratings; MAML "
        f"defaults; their top-10 lists ({len(rows)} rows). {os.cpu_count()} cores.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| Spearman, influence against leave-one-out, mean | {np.nanmean(rho):.3f} |",
        f"| Spearman, median | {np.nanmedian(rho):.3f} |",
        f"| Spearman, 10th percentile | {np.nanpercentile(rho, 10):.3f} |",
        f"| influence, ms per row | {1e3 * t_fast / len(rows):.3f} |",
        f"| leave-one-out, ms per row | {1e3 * t_exact / len(rows):.3f} |",
        *[f"| top-1 changed, {k} most influential ratings out | {a:.2f} |\n"
          f"| top-1 changed, {k} random ratings out | {b:.2f} |\n"
          f"| top-1 changed, {k} ratings of the most similar items out | {c:.2f} |" for k, a, b, c in lines],
    ]) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
