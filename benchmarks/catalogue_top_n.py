"""Top-n over the whole catalogue for cold-start users, with defaults.

What a new user sees: each test user keeps K random ratings on the training
side (``cold_start_split``, 20% of users), every model is fitted with its
defaults (no tuning), and its ``recommend`` list over the whole catalogue,
seen items excluded, is scored against the user's other ratings (relevant
= rating >= 4): nDCG@10 and recall@20. Also RMSE, nDCG@10 within each
user's query items, and the median training popularity (ratings) of the
items in the top-10 lists, where a handful means obscure items. Mean and
std over seeds.

    python benchmarks/catalogue_top_n.py [--data ml-100k.zip] [--seeds 0 1 2]

Writes benchmarks/results/catalogue_top_n.md.
"""

import argparse
import os
import time
from datetime import date
from pathlib import Path

import numpy as np

from cold_start import catalogue_scores
from sklearn_metarec import (EmpiricalBayesRecommender, FactorizationRecommender, MAMLFactorizationRecommender,
                             MetaSGDFactorizationRecommender)
from sklearn_metarec.datasets import fetch_movielens, load_movielens
from sklearn_metarec.metrics import ranking_report
from sklearn_metarec.model_selection import cold_start_split

METHODS = {
    "EmpiricalBayesRecommender": lambda seed: EmpiricalBayesRecommender(),
    "FactorizationRecommender": lambda seed: FactorizationRecommender(random_state=seed),
    "MAML": lambda seed: MAMLFactorizationRecommender(random_state=seed),
    # The defaults before 2026-12-03: a learned p₀, items' L2 per rating, no shrinkage.
    "MAML, previous defaults": lambda seed: MAMLFactorizationRecommender(
        inner_lr=0.15, reg=0.01, item_shrinkage=0.0, prior_factors="learned", random_state=seed),
    "Meta-SGD": lambda seed: MetaSGDFactorizationRecommender(random_state=seed),
}
METRICS = ("rmse", "within_ndcg", "ndcg", "recall", "median_popularity")


def scores(model, X_fit, X_q, y_q):
    """The row of one fitted model (see the module docstring)."""
    within = ranking_report(model, X_q, y_q, k=10, metrics=["rmse", "ndcg"])
    catalogue = catalogue_scores(model, X_fit, X_q, y_q)
    return {"rmse": within["rmse"], "within_ndcg": within["ndcg"], "ndcg": catalogue["cat_ndcg"],
            "recall": catalogue["cat_recall"], "median_popularity": catalogue["popularity"]}


def run(X, y, k=10, seeds=(0, 1, 2), out=print):
    """{method: {metric: [value per seed]}}."""
    results = {}
    for seed in seeds:
        X_fit, X_q, y_fit, y_q = cold_start_split(X, y, n_support=k, test_size=0.2, random_state=seed)
        for name, make in METHODS.items():
            start = time.perf_counter()
            row = scores(make(seed).fit(X_fit, y_fit), X_fit, X_q, y_q)
            for metric, value in row.items():
                results.setdefault(name, {}).setdefault(metric, []).append(value)
            out(f"seed {seed} {name}: " + ", ".join(f"{m} {v:.4f}" for m, v in row.items())
                + f" ({time.perf_counter() - start:.1f} s)")
    return results


def table(results):
    lines = ["| method | RMSE | nDCG@10 within | catalogue nDCG@10 | catalogue recall@20 | top-10 median popularity |",
             "|---|---|---|---|---|---|"]
    for name, runs in results.items():
        cells = [f"{np.mean(runs[m]):.4f} ± {np.std(runs[m]):.4f}" for m in METRICS[:-1]]
        cells.append(f"{np.mean(runs['median_popularity']):.0f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="MovieLens-100k folder, zip or recbole wheel; default: fetch it")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "catalogue_top_n.md"))
    args = parser.parse_args(argv)
    data = load_movielens(args.data) if args.data else fetch_movielens("100k", source="pypi")
    started = time.perf_counter()
    results = run(data.X, data.y, args.k, tuple(args.seeds))
    text = (f"# Catalogue top-n for cold-start users, {date.today()}\n\n"
            f"{len(data.y)} ratings; K = {args.k} random support ratings per test user (20% of users); "
            f"defaults, no tuning; seeds {args.seeds}, mean ± std. Relevant: query rating >= 4; seen items "
            f"excluded. {os.cpu_count()} cores; {time.perf_counter() - started:.0f} s in all.\n\n"
            + table(results) + "\n")
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
