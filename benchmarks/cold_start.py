"""Cold-start accuracy on MovieLens-100k against peers, every method tuned the
same way.

For each seed, 20% of the users are held out as test users; the rest are
known users. For each support size K (5, 10, 20) and support kind (K random
ratings, or the K earliest), every method's hyper-parameters are chosen by
``GridSearchCV`` with the package's ``ColdStartSplit`` over the known users
only (one eighth of them, 10% of all users, play the validation users: K
support ratings in training, the rest scored by RMSE). Each method is then
refitted with its best parameters on the known users plus the test users' K
support ratings, and scored on the test users' other (query) ratings: RMSE,
MAE and nDCG@10 (each user's query items ranked among themselves). The
package's estimators are also scored as a new user would see them: their
top-n over the whole catalogue, seen items excluded (catalogue nDCG@10 and
recall@20, relevant = query rating >= 4), and the median number of training
ratings of the items in their top-10 lists (a handful: obscure items). The
Surprise and PyTorch peers have no catalogue-wide ``recommend``.

A diagnostic column splits each method's mean squared error in two: the part
a per-user constant would remove (how far off the method's idea of the
user's overall level is, which K ratings pin down only so far), and the rest
(item effects, taste, noise). See ``user_offset_mse``.

Peers: the global mean; a bias model with empirical-Bayes shrinkage
(the package's ``EmpiricalBayesRecommender``: no tuning; a new user's level shrinks towards the
average user's); Surprise's BaselineOnly (ALS) and SVD, with its defaults
and tuned; the package's FactorizationRecommender (tuned SVD with an
exact fold-in); and MAML of the same model trained by PyTorch autograd with
the MAML paper's objective (``torch_maml.TorchMAMLRecommender``). Ours: MAML
(second or first order, chosen by the search) and Meta-SGD (learned step
sizes); "RMSE vs best peer" compares each with the best of the peers, not
with each other. Surprise and PyTorch are in
the ``benchmark`` extra.

    python benchmarks/cold_start.py [--data ml-100k.zip] [--seeds 0 1 2]

Prints a Markdown table and writes it to benchmarks/results/cold_start.md.
"""

import argparse
import os
import time
import warnings
from datetime import date
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from sklearn_metarec import (ContextColumnsIgnoredWarning, EmpiricalBayesRecommender, FactorizationRecommender,
                             MAMLFactorizationRecommender, MetaSGDFactorizationRecommender)
from sklearn_metarec.datasets import fetch_movielens, load_movielens
from sklearn_metarec.metrics import make_recommender_scorer, mae, ndcg_at_k, ranking_report, rmse
from sklearn_metarec.model_selection import ColdStartSplit, cold_start_split

OURS = ("MAML (ours)", "Meta-SGD (ours)")


def methods(names=None, torch_epochs=20):
    """name -> (estimator, grid) of the methods in ``names`` (all by default);
    an empty grid means the defaults, untuned. Peers are imported only when
    asked for: Surprise and PyTorch are optional."""
    def surprise(algorithm):
        from surprise_peer import SurpriseRecommender

        return SurpriseRecommender(algorithm)

    def torch_maml():
        from torch_maml import TorchMAMLRecommender

        return TorchMAMLRecommender(n_epochs=torch_epochs)

    factories = {
        "Empirical-Bayes bias model": lambda: (EmpiricalBayesRecommender(), {}),
        "Surprise BaselineOnly": lambda: (surprise("baseline"), {"reg_u": [5, 15, 25], "reg_i": [5, 10, 25]}),
        "Surprise SVD, defaults": lambda: (surprise("svd"), {}),
        "Surprise SVD, tuned": lambda: (surprise("svd"), {"n_factors": [10, 50, 100], "reg_all": [0.02, 0.05, 0.1],
                                                          "lr_all": [0.005, 0.01]}),
        "FactorizationRecommender, tuned": lambda: (FactorizationRecommender(),
                                                    {"n_factors": [10, 50, 100], "reg": [0.02, 0.05, 0.1],
                                                     "lr": [0.005, 0.01]}),
        # Fewer epochs and a smaller grid than ours (autograd is slow): the
        # MAML paper's objective, not a peer tuned as ours are.
        "PyTorch MAML (the MAML paper's objective)": lambda: (torch_maml(), {"inner_lr": [0.05, 0.15]}),
        OURS[0]: lambda: (MAMLFactorizationRecommender(),
                          {"inner_lr": [0.15, 0.3], "shrinkage": [5.0, 10.0, 20.0], "first_order": [False, True]}),
        # α is learned; inner_lr is only where it starts.
        OURS[1]: lambda: (MetaSGDFactorizationRecommender(),
                          {"inner_lr": [0.1, 0.2], "shrinkage": [5.0, 10.0, 20.0]}),
    }
    names = list(factories) if names is None else names
    unknown = set(names) - set(factories)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose from {list(factories)}")
    return {name: factories[name]() for name in names}


def tune(estimator, grid, X, y, k, support, seed):
    """Best parameters by GridSearchCV + ColdStartSplit over the known users."""
    if not grid:
        return {}
    cv = ColdStartSplit(n_splits=1, n_support=k, test_size=0.125, support=support,
                        time_column=2 if support == "earliest" else None, random_state=seed)
    search = GridSearchCV(clone(estimator).set_params(random_state=seed), grid, cv=cv,
                          scoring=make_recommender_scorer("rmse"), refit=False)
    return search.fit(X, y).best_params_


def user_offset_mse(y, pred, users):
    """The part of the mean squared error that is each user's mean residual.

    With residuals r = y − pred, user u's mean residual r̄_u is the constant
    that would best correct u's predictions. Its contribution to the MSE is
    Σ_u n_u r̄_u² / n; r̄_u² is biased upwards by its own sampling variance
    s_u²/n_u, which is subtracted (s_u² the unbiased within-user variance),
    so that a method with no per-user offset scores about 0 however few
    query ratings a user has. A user with a single query rating has no
    variance estimate, and adds r̄_u² uncorrected."""
    r = np.asarray(y, dtype=float) - np.asarray(pred, dtype=float)
    _, inverse, n = np.unique(users, return_inverse=True, return_counts=True)
    mean = np.bincount(inverse, r) / n
    within = np.bincount(inverse, (r - mean[inverse]) ** 2) / np.maximum(n - 1, 1)
    return float(np.sum(n * mean**2 - within * (n > 1)) / len(r))


def catalogue_scores(model, X_fit, X_q, y_q):
    """Catalogue nDCG@10, recall@20 and the top-10's median popularity of a
    package estimator (NaN for the others)."""
    if not hasattr(model, "_top_n"):
        return {"cat_ndcg": np.nan, "cat_recall": np.nan, "popularity": np.nan}
    X_q = X_q[:, :2]
    top10 = ranking_report(model, X_q, y_q, k=10, mode="catalogue", metrics=["ndcg"])
    top20 = ranking_report(model, X_q, y_q, k=20, mode="catalogue", metrics=["recall"])
    ids, _ = model.recommend(np.unique(X_q[:, 0]), n=10)
    known, counts = np.unique(X_fit[:, 1], return_counts=True)
    at = np.clip(np.searchsorted(known, ids.ravel()), 0, len(known) - 1)
    popularity = np.where(known[at] == ids.ravel(), counts[at], 0)
    return {"cat_ndcg": top10["ndcg"], "cat_recall": top20["recall"], "popularity": float(np.median(popularity))}


def test_user_rows(users, seed):
    """Mask of the ratings of the test users (a fifth of the users) of ``seed``."""
    ids = np.unique(users)
    return np.isin(users, np.random.RandomState(seed).choice(ids, len(ids) // 5, replace=False))


def run(X, y, shots=(5, 10, 20), supports=("random", "earliest"), seeds=(0, 1, 2), chosen=None, out=print,
        torch_epochs=20):
    """{(support, K, method): {metric: [value per seed]}}. ``X`` holds (user,
    item, timestamp) columns; ``chosen`` names the methods (all by default)."""
    chosen = methods(chosen, torch_epochs)
    results = {}
    for seed in seeds:
        is_test = test_user_rows(X[:, 0], seed)
        for support in supports:
            for k in shots:
                X_sup, X_q, y_sup, y_q = cold_start_split(
                    X[is_test], y[is_test], n_support=k, test_size=1.0, support=support,
                    time_column=2 if support == "earliest" else None, random_state=seed)
                X_fit = np.vstack([X[~is_test], X_sup])
                y_fit = np.concatenate([y[~is_test], y_sup])

                def record(name, pred, info, model=None):
                    scores = {"rmse": rmse(y_q, pred), "mae": mae(y_q, pred),
                              "ndcg": ndcg_at_k(y_q, pred, users=X_q[:, 0], k=10),
                              "offset": user_offset_mse(y_q, pred, X_q[:, 0]),
                              **catalogue_scores(model, X_fit, X_q, y_q)}
                    for metric, value in scores.items():
                        results.setdefault((support, k, name), {}).setdefault(metric, []).append(value)
                    out(f"seed {seed} {support:>8} K={k:>2} {name}: RMSE {scores['rmse']:.4f} "
                        f"nDCG@10 {scores['ndcg']:.4f} {info}")

                # A constant ties every item: its nDCG is that of a random order.
                record("global mean", np.full(len(y_q), y_fit.mean()), "")
                for name, (estimator, grid) in chosen.items():
                    start = time.perf_counter()
                    best = tune(estimator, grid, X[~is_test], y[~is_test], k, support, seed)
                    model = clone(estimator).set_params(**best, random_state=seed).fit(X_fit, y_fit)
                    record(name, model.predict(X_q), f"{best} ({time.perf_counter() - start:.0f} s)", model)
    return results


def table(results, seeds):
    """One row per (support, K, method); ± is the std over seeds; the last
    column compares RMSE with the best peer's, and a bold name wins both.
    'MSE = user offset + rest' splits the mean squared error (means over
    seeds) as ``user_offset_mse`` does."""
    lines = ["| support | K | method | RMSE | MAE | nDCG@10 | MSE = user offset + rest | RMSE vs best peer "
             "| catalogue nDCG@10 | catalogue recall@20 | top-10 median popularity |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    groups = dict.fromkeys((s, k) for s, k, _ in results)
    for support, k in groups:
        names = [n for s, kk, n in results if (s, kk) == (support, k)]
        mean = {n: {m: np.mean(v) for m, v in results[(support, k, n)].items()} for n in names}
        peers = [n for n in names if n not in OURS]
        best_rmse = min(mean[n]["rmse"] for n in peers)
        best_ndcg = max(mean[n]["ndcg"] for n in peers)
        for name in names:
            cells = []
            for metric in ("rmse", "mae", "ndcg"):
                v = np.array(results[(support, k, name)][metric])
                cells.append(f"{v.mean():.4f}" + (f" ± {v.std():.4f}" if len(seeds) > 1 else ""))
            runs = results[(support, k, name)]
            mse = np.mean(np.square(runs["rmse"]))
            offset = np.mean(runs["offset"])
            cells.append(f"{offset:.4f} + {mse - offset:.4f}")
            vs = f"{100 * (mean[name]['rmse'] / best_rmse - 1):+.2f}%"
            wins = name in OURS and mean[name]["rmse"] < best_rmse and mean[name]["ndcg"] > best_ndcg
            label = f"**{name}**" if wins else name
            catalogue = [f"{np.mean(runs[m]):.4f}" if np.isfinite(runs[m]).all() else "n/a"
                         for m in ("cat_ndcg", "cat_recall")]
            catalogue.append(f"{np.mean(runs['popularity']):.0f}" if np.isfinite(runs["popularity"]).all() else "n/a")
            lines.append(f"| {support} | {k} | {label} | " + " | ".join(cells) + f" | {vs} | " + " | ".join(catalogue)
                         + " |")
    return "\n".join(lines)


def paired_table(results):
    """For each of ours, the per-seed RMSE differences from the best peer of
    its setting (by mean RMSE): their mean and standard error, and a verdict
    at two standard errors (within them, a tie)."""
    lines = ["| support | K | method | best peer | RMSE difference (± s.e.) | verdict |", "|---|---|---|---|---|---|"]
    for support, k in dict.fromkeys((s, k) for s, k, _ in results):
        names = [n for s, kk, n in results if (s, kk) == (support, k)]
        peers = [n for n in names if n not in OURS and n != "global mean"]
        best = min(peers, key=lambda n: np.mean(results[(support, k, n)]["rmse"]))
        for name in (n for n in names if n in OURS):
            diff = np.subtract(results[(support, k, name)]["rmse"], results[(support, k, best)]["rmse"])
            se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
            verdict = "lead" if diff.mean() < -2 * se else ("behind" if diff.mean() > 2 * se else "tie")
            lines.append(f"| {support} | {k} | {name} | {best} | {diff.mean():+.4f} ± {se:.4f} | {verdict} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="MovieLens-100k folder, zip or recbole wheel; default: fetch it")
    parser.add_argument("--shots", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--supports", nargs="+", default=["random", "earliest"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", help="subset of the methods, by name")
    parser.add_argument("--torch-epochs", type=int, default=20)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "cold_start.md"))
    args = parser.parse_args(argv)

    data = load_movielens(args.data) if args.data else fetch_movielens("100k", source="pypi")
    X = np.column_stack([data.X, data.timestamp])
    warnings.simplefilter("ignore", ContextColumnsIgnoredWarning)  # the timestamp column, for the splits
    started = time.perf_counter()
    results = run(X, data.y, tuple(args.shots), tuple(args.supports), tuple(args.seeds), args.methods,
                  torch_epochs=args.torch_epochs)
    text = (f"# Cold-start accuracy on MovieLens-100k, {date.today()}\n\n"
            f"{len(data.y)} ratings; seeds {args.seeds}; 20% of users are test users; each method tuned by "
            f"GridSearchCV + ColdStartSplit on validation users drawn from the others. Test users' query "
            f"ratings; mean ± std over seeds. The global mean's nDCG is that of a random order. "
            f"{os.cpu_count()} cores; {time.perf_counter() - started:.0f} s in all.\n\n"
            + table(results, args.seeds) + "\n\nPaired per-seed differences from the best peer:\n\n"
            + paired_table(results) + "\n")
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
