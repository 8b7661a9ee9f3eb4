"""Defaults on data they were not tuned on: cold-start RMSE and catalogue
top-n of every estimator, untuned, on several variants of the data.

Variants (each from MovieLens-100k unless said otherwise):

* ``ml-100k``: as it is;
* ``long tail``: each rating kept with a probability that falls with its
  item's popularity, min(1, c/√n_i), c set so that items keep about 12
  ratings on average (59 in ml-100k);
* ``30% of users``: the test users plus 30% of the others, so that
  meta-training sees far fewer tasks;
* ``half stars``: ratings moved to another scale, 0.5 + 1.125 (r − 1)
  rounded to half stars (0.5, 1.5, 2.5, 4, 5);
* ``synthetic``: ``make_ratings`` (1,500 users, 2,000 items with a long
  popularity tail);
* ``ml-1m``: when a local copy is passed with ``--ml-1m``.

For each seed, 20% of the users are test users, each with K random support
ratings in training (K = 5, 10, 20); every method is fitted with its
defaults. Scores: RMSE on the test users' other ratings, and catalogue
nDCG@10 (relevant = rating >= 4 on the original scale, >= 3.875 on the
half-star one). For each of ours, the paired per-seed difference in RMSE
from the empirical-Bayes bias model (the strongest untuned peer at small
K), with its standard error: a lead within two standard errors is a tie.

    python benchmarks/robustness.py [--data ml-100k.zip] [--seeds 0 1 2 3 4]

Writes benchmarks/results/robustness.md.
"""

import argparse
import os
import time
from datetime import date
from pathlib import Path

import numpy as np

from cold_start import test_user_rows
from sklearn_metarec import (EmpiricalBayesRecommender, FactorizationRecommender, MAMLFactorizationRecommender,
                             MetaSGDFactorizationRecommender)
from sklearn_metarec.datasets import fetch_movielens, load_movielens, make_ratings
from sklearn_metarec.metrics import ranking_report, rmse
from sklearn_metarec.model_selection import cold_start_split

PEER = "EmpiricalBayesRecommender"
OURS = ("MAML", "Meta-SGD")
METHODS = {
    PEER: lambda seed: EmpiricalBayesRecommender(),
    "FactorizationRecommender": lambda seed: FactorizationRecommender(random_state=seed),
    OURS[0]: lambda seed: MAMLFactorizationRecommender(random_state=seed),
    OURS[1]: lambda seed: MetaSGDFactorizationRecommender(random_state=seed),
}


def long_tail(X, y, rng, mean_per_item=12.0):
    """Ratings kept with probability min(1, c/√n_i), c by bisection so that
    the items keep ``mean_per_item`` ratings on average."""
    _, inverse, counts = np.unique(X[:, 1], return_inverse=True, return_counts=True)
    lo, hi = 0.0, float(np.sqrt(counts.max()))
    for _ in range(60):
        c = (lo + hi) / 2
        kept = np.minimum(counts, c * np.sqrt(counts)).mean()
        lo, hi = (c, hi) if kept < mean_per_item else (lo, c)
    keep = rng.random_sample(len(y)) < np.minimum(1.0, c / np.sqrt(counts))[inverse]
    return X[keep], y[keep]


def variants(data, seed, ml_1m=None):
    """name -> (X, y, mask of the test users' rows, relevance threshold)."""
    X, y = data.X, data.y
    rng = np.random.RandomState(seed)
    out = {"ml-100k": (X, y)}
    out["long tail"] = long_tail(X, y, rng)
    out["half stars"] = (X, np.round(2 * (0.5 + 1.125 * (y - 1))) / 2)
    out["synthetic"] = make_ratings(n_users=1500, n_items=2000, mean_ratings=40, min_ratings=5,
                                    random_state=seed)
    if ml_1m is not None:
        out["ml-1m"] = (ml_1m.X, ml_1m.y)
    result = {}
    for name, (Xv, yv) in out.items():
        result[name] = (Xv, yv, test_user_rows(Xv[:, 0], seed), 3.875 if name == "half stars" else 4.0)
    # The test users of ml-100k, and 30% of the others.
    test = result["ml-100k"][2]
    others = np.unique(X[~test, 0])
    kept = np.isin(X[:, 0], rng.choice(others, int(0.3 * len(others)), replace=False)) | test
    result["30% of users"] = (X[kept], y[kept], test[kept], 4.0)
    return result


def run(data, shots=(5, 10, 20), seeds=(0, 1, 2, 3, 4), ml_1m=None, names=None, out=print):
    """{(variant, K, method): {"rmse": [...], "ndcg": [...]}} over seeds."""
    results = {}
    for seed in seeds:
        for variant, (X, y, test, threshold) in variants(data, seed, ml_1m).items():
            if names is not None and variant not in names:
                continue
            for k in shots:
                X_sup, X_q, y_sup, y_q = cold_start_split(X[test], y[test], n_support=k, test_size=1.0,
                                                          random_state=seed)
                X_fit, y_fit = np.vstack([X[~test], X_sup]), np.concatenate([y[~test], y_sup])
                for method, make in METHODS.items():
                    start = time.perf_counter()
                    model = make(seed).fit(X_fit, y_fit)
                    scores = {"rmse": rmse(y_q, model.predict(X_q)),
                              "ndcg": ranking_report(model, X_q, y_q, k=10, mode="catalogue", metrics=["ndcg"],
                                                     threshold=threshold)["ndcg"]}
                    for metric, value in scores.items():
                        results.setdefault((variant, k, method), {}).setdefault(metric, []).append(value)
                    out(f"seed {seed} {variant} K={k} {method}: RMSE {scores['rmse']:.4f} "
                        f"catalogue nDCG@10 {scores['ndcg']:.4f} ({time.perf_counter() - start:.1f} s)")
    return results


def paired(ours, peer):
    """Mean and standard error of the per-seed differences."""
    diff = np.subtract(ours, peer)
    se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
    return diff.mean(), se


def table(results):
    methods = list(dict.fromkeys(m for _, _, m in results))
    head = ["variant", "K"] + [f"{m} RMSE" for m in methods] + [f"{m} − EB, RMSE (± s.e.)" for m in OURS] \
        + [f"{m} catalogue nDCG@10" for m in methods]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, k in dict.fromkeys((v, k) for v, k, _ in results):
        runs = {m: results[(variant, k, m)] for m in methods}
        cells = [variant, str(k)] + [f"{np.mean(runs[m]['rmse']):.4f}" for m in methods]
        for m in OURS:
            mean, se = paired(runs[m]["rmse"], runs[PEER]["rmse"])
            verdict = "lead" if mean < -2 * se else ("behind" if mean > 2 * se else "tie")
            cells.append(f"{mean:+.4f} ± {se:.4f} ({verdict})")
        cells += [f"{np.mean(runs[m]['ndcg']):.4f}" for m in methods]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="MovieLens-100k folder, zip or recbole wheel; default: fetch it")
    parser.add_argument("--ml-1m", help="a local MovieLens-1M folder or zip, for one more variant")
    parser.add_argument("--shots", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--variants", nargs="+", help="subset of the variants, by name")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "robustness.md"))
    args = parser.parse_args(argv)
    data = load_movielens(args.data) if args.data else fetch_movielens("100k", source="pypi")
    ml_1m = load_movielens(args.ml_1m) if args.ml_1m else None
    started = time.perf_counter()
    results = run(data, tuple(args.shots), tuple(args.seeds), ml_1m, args.variants)
    text = (f"# Robustness of the defaults, {date.today()}\n\n"
            f"Every method untuned; 20% of users are test users with K random support ratings; seeds "
            f"{args.seeds}; means over seeds; paired per-seed RMSE differences from the empirical-Bayes bias "
            f"model (EB) with their standard errors (a difference within two is a tie). {os.cpu_count()} "
            f"cores; {time.perf_counter() - started:.0f} s in all.\n\n" + table(results) + "\n")
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
