"""The cold-start protocol on MovieLens-100k, with scikit-learn idioms only.

Users are split 70/10/20 into meta-training, validation and test users.
For each support size K, every method's hyper-parameters are tuned with
``GridSearchCV`` on the validation users (their K support ratings in the
training side, the rest scored), then each method is refitted with the
best ones and scored on the test users' query ratings: RMSE, MAE and
nDCG@10 (each user's query items ranked among themselves).

    pip install ".[examples]"
    python examples/cold_start_movielens.py            # gets ml-100k via pip
    python examples/cold_start_movielens.py --data ml-100k.zip

Without ``--data`` the data come from :func:`fetch_movielens` with
``source="pypi"``: the recbole wheel, which carries MovieLens-100k, is
downloaded from the package index once and cached.
"""

# %%
import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, PredefinedSplit

from sklearn_metarec import FactorizationRecommender, MAMLFactorizationRecommender
from sklearn_metarec.datasets import fetch_movielens, load_movielens
from sklearn_metarec.metrics import mae, make_recommender_scorer, ndcg_at_k, ranking_report, rmse
from sklearn_metarec.model_selection import cold_start_split

HERE = Path(__file__).resolve().parent

# Grids around each method's defaults. The baseline's are Surprise SVD's
# usual search space; MAML's cover its inner step, its depth and the item
# regularization.
GRIDS = {
    "FactorizationRecommender": (
        FactorizationRecommender(),
        {"n_factors": [10, 50, 100], "reg": [0.02, 0.05, 0.1], "lr": [0.005, 0.01]},
    ),
    "MAMLFactorizationRecommender": (
        MAMLFactorizationRecommender(),
        {"inner_lr": [0.05, 0.15, 0.3], "n_inner_steps": [3, 5], "reg": [0.01, 0.05]},
    ),
}


# %%
def split_users(X, y, seed):
    """Rows of the meta-training, validation and test users (70/10/20)."""
    users = np.unique(X[:, 0])
    shuffled = np.random.RandomState(seed).permutation(users)
    cut = np.cumsum([int(0.7 * len(users)), int(0.1 * len(users))])
    parts = np.split(shuffled, cut)
    return [np.isin(X[:, 0], part) for part in parts]


def validation_search(estimator, grid, X_train, y_train, X_val, y_val, k, seed):
    """GridSearchCV whose one split scores the validation users' query
    ratings after a fit that saw their K support ratings."""
    X_sup, X_q, y_sup, y_q = cold_start_split(X_val, y_val, n_support=k, test_size=1.0,
                                              random_state=seed)
    X_all = np.vstack([X_train, X_sup, X_q])
    y_all = np.concatenate([y_train, y_sup, y_q])
    fold = np.r_[np.full(len(y_train) + len(y_sup), -1), np.zeros(len(y_q), dtype=int)]
    search = GridSearchCV(clone(estimator).set_params(random_state=seed), grid,
                          cv=PredefinedSplit(fold), scoring=make_recommender_scorer("rmse"),
                          refit=False, n_jobs=2)
    return search.fit(X_all, y_all).best_params_


def run(X, y, shots=(5, 10, 20), seeds=(0,), grids=None, out=print):
    """Run the protocol; returns {(method, K): {metric: [value per seed]}}."""
    grids = GRIDS if grids is None else grids
    results = {}
    for seed in seeds:
        is_train, is_val, is_test = split_users(X, y, seed)
        for k in shots:
            X_sup, X_q, y_sup, y_q = cold_start_split(X[is_test], y[is_test], n_support=k,
                                                      test_size=1.0, random_state=seed)
            X_fit = np.vstack([X[is_train | is_val], X_sup])
            y_fit = np.concatenate([y[is_train | is_val], y_sup])
            # A constant ranks every item as tied: its nDCG is that of a random order.
            constant = np.full(len(y_q), y_fit.mean())
            mean = {"rmse": rmse(y_q, constant), "mae": mae(y_q, constant),
                    "ndcg": ndcg_at_k(y_q, constant, users=X_q[:, 0], k=10)}
            for m, v in mean.items():
                results.setdefault(("global mean", k), {}).setdefault(m, []).append(v)
            for name, (estimator, grid) in grids.items():
                start = time.perf_counter()
                best = validation_search(estimator, grid, X[is_train], y[is_train],
                                         X[is_val], y[is_val], k, seed)
                model = clone(estimator).set_params(**best, random_state=seed).fit(X_fit, y_fit)
                report = ranking_report(model, X_q, y_q, k=10, metrics=["rmse", "mae", "ndcg"])
                for m, v in report.items():
                    results.setdefault((name, k), {}).setdefault(m, []).append(v)
                out(f"seed {seed} K={k:>2} {name}: {best} "
                    f"RMSE {report['rmse']:.4f} ({time.perf_counter() - start:.0f} s)")
    return results


def table(results, shots):
    names = list(dict.fromkeys(name for name, _ in results))
    lines = ["| K | method | RMSE | MAE | nDCG@10 |", "|---|---|---|---|---|"]
    for k in shots:
        for name in names:
            r = results[(name, k)]
            cells = []
            for m in ("rmse", "mae", "ndcg"):
                v = np.array(r[m])
                cells.append(f"{v.mean():.4f}" + (f" ± {v.std():.4f}" if len(v) > 1 else ""))
            lines.append(f"| {k} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results, shots, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install '.[examples]'); no plot.")
        return
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name in dict.fromkeys(name for name, _ in results):
        means = [np.mean(results[(name, k)]["rmse"]) for k in shots]
        ax.plot(shots, means, marker="o", label=name.replace("Recommender", ""))
    ax.set_xlabel("support ratings per test user (K)")
    ax.set_ylabel("RMSE on query ratings")
    ax.set_xticks(list(shots))
    ax.set_title("MovieLens-100k, cold-start users")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot saved to {path}")


# %%
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="MovieLens folder, zip or recbole wheel; default: fetch it")
    parser.add_argument("--shots", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--plot", default=str(HERE / "figures" / "cold_start_movielens.png"))
    parser.add_argument("--out", default=str(HERE / "figures" / "cold_start_movielens.md"))
    args = parser.parse_args(argv)
    data = load_movielens(args.data) if args.data else fetch_movielens("100k", source="pypi")
    X, y = data.X, data.y
    print(f"{len(y)} ratings, {len(np.unique(X[:, 0]))} users, {len(np.unique(X[:, 1]))} items")
    results = run(X, y, shots=tuple(args.shots), seeds=tuple(args.seeds))
    text = table(results, args.shots)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        f"Seeds {args.seeds}; {len(y)} ratings. Test users' query ratings; the global "
        "mean's nDCG is that of a random order (all its scores tie); mean"
        + (" ± std over seeds" if len(args.seeds) > 1 else "") + ".\n\n" + text + "\n")
    plot(results, args.shots, args.plot)


if __name__ == "__main__":
    main()
