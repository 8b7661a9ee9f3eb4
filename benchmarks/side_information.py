"""What MovieLens-100k's side features could add to cold-start accuracy.

MeLU-style recommenders feed a new user's demographics and the items'
genres to the model. Before building that, this script measures what those
features are worth on this data set, with the test users and random support
sets of ``cold_start.py`` (same seeds).

The peer is ``bias_peer.BiasModel``, μ + b_u + b_i with empirical-Bayes
shrinkage, which already beats Surprise's BaselineOnly on new users. The
same model is then given, one at a time and together:

- a prior mean for each user's level from age bracket, gender and
  occupation (a ridge fit on the users with enough ratings);
- a prior mean for each item's bias from its genres and decade;
- a taste term, demographics ⊗ genres, for what a user's group likes in
  each genre (a ridge fit on the residuals).

Each variant's gain is the drop in mean squared error on the test users'
query ratings, in the same run. Every fit sees the known users and the test
users' support ratings only.

    python benchmarks/side_information.py [--data ml-100k.zip] [--seeds 0 1 2]

Prints a Markdown table and writes it to benchmarks/results/side_information.md.
"""

import argparse
import os
from datetime import date
from pathlib import Path

import numpy as np

from bias_peer import BiasModel
from cold_start import test_user_rows
from sklearn_metarec.datasets import fetch_movielens, load_movielens
from sklearn_metarec.model_selection import cold_start_split

VARIANTS = ("user level", "item bias", "taste", "all three")


def _one_hot(values):
    _, code = np.unique(values, return_inverse=True)
    return np.eye(code.max() + 1)[code]


def side_features(data):
    """(user id -> row, demographics, item id -> row, genres and decade,
    genres) from a MovieLens Bunch with side features."""
    users, items = data.user_features, data.item_features
    if users is None or items is None:
        raise ValueError("The data set has no user or item features (u.user and u.item for ml-100k).")
    age = np.digitize(np.asarray(users.age, dtype=float), [18, 25, 35, 45, 50, 56])
    demographics = np.hstack([_one_hot(age), _one_hot(users.gender), _one_hot(users.occupation)])
    year = np.asarray(items.year, dtype=float)
    decade = np.digitize(np.where(np.isnan(year), np.nanmedian(year), year), [1940, 1960, 1970, 1980, 1990, 1995])
    genres = np.asarray(items.genres, dtype=float)
    return (dict(zip(users.user_id.tolist(), range(len(users.user_id)))), demographics,
            dict(zip(items.item_id.tolist(), range(len(items.item_id)))), np.hstack([genres, _one_hot(decade)]),
            genres)


def _rows(ids, table):
    try:
        return np.array([table[v] for v in ids.tolist()])
    except KeyError as exc:
        raise ValueError(f"Id {exc.args[0]} is in the ratings but not in the side features.") from None


def run(data, shots=(5, 10, 20), seeds=(0, 1, 2), out=print):
    """{K: {variant: [query MSE per seed]}} with "none" for the peer,
    {K: {feature: [(variance explained, τ²) per seed]}}, and the share of query
    ratings on items with at least 30 training ratings (per seed and K)."""
    user_row, demographics, item_row, item_x, genres = side_features(data)
    models = {"none": {}, "user level": {"user_x": demographics}, "item bias": {"item_x": item_x},
              "taste": {"taste": (demographics, genres)}}
    models["all three"] = {k: v for m in list(models.values()) for k, v in m.items()}
    u_all, i_all = _rows(data.X[:, 0], user_row), _rows(data.X[:, 1], item_row)
    rows = np.arange(len(data.y))
    mse, explained, well_rated = {}, {}, []
    for seed in seeds:
        # The test users and support sets of cold_start.py.
        is_test = test_user_rows(data.X[:, 0], seed)
        for k in shots:
            _, _, sup, query = cold_start_split(data.X[is_test], rows[is_test], n_support=k, test_size=1.0,
                                                random_state=seed)
            fit = np.concatenate([rows[~is_test], sup])
            counts = np.bincount(i_all[fit], minlength=len(item_row))
            well_rated.append(np.mean(counts[i_all[query]] >= 30))
            for variant, options in models.items():
                model = BiasModel(**options).fit(u_all[fit], i_all[fit], data.y[fit], len(user_row), len(item_row))
                err = np.mean((data.y[query] - model.predict(u_all[query], i_all[query])) ** 2)
                mse.setdefault(k, {}).setdefault(variant, []).append(err)
                if variant in model.explained:
                    explained.setdefault(k, {}).setdefault(variant, []).append(
                        (model.explained[variant], model.spread[variant]))
            out(f"seed {seed} K={k}: " + ", ".join(f"{v} {mse[k][v][-1]:.4f}" for v in mse[k]))
    return mse, explained, float(np.mean(well_rated))


def table(mse, explained):
    """One row per K: the peer's query RMSE and MSE, each variant's gain over
    it (means over seeds; as MSE, and as RMSE relative to the peer), and the
    prior variance the features explain."""
    lines = ["| K | bias model RMSE (MSE) | " + " | ".join(f"+ {v}: MSE gain (RMSE)" for v in VARIANTS)
             + " | variance explained of τ²: user level · item bias |",
             "|---|---|" + "---|" * len(VARIANTS) + "---|"]
    for k, by_variant in mse.items():
        base = np.mean(by_variant["none"])
        cells = [f"{np.mean(np.sqrt(by_variant['none'])):.4f} ({base:.4f})"]
        for v in VARIANTS:
            gain = base - np.mean(by_variant[v])
            cells.append(f"{gain:+.4f} ({100 * (np.sqrt(np.mean(by_variant[v]) / base) - 1):+.2f}%)")
        cells.append(" · ".join("{:.4f} of {:.3f}".format(*np.mean(explained[k][name], axis=0))
                                for name in VARIANTS[:2]))
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="MovieLens-100k folder, zip or recbole wheel; default: fetch it")
    parser.add_argument("--shots", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "side_information.md"))
    args = parser.parse_args(argv)

    data = load_movielens(args.data) if args.data else fetch_movielens("100k", source="pypi")
    mse, explained, well_rated = run(data, tuple(args.shots), tuple(args.seeds))
    text = (f"# What side features could add, MovieLens-100k, {date.today()}\n\n"
            f"{len(data.y)} ratings; seeds {args.seeds}; the test users and random support sets of "
            f"cold_start.py. The peer is an empirical-Bayes bias model (bias_peer.py) scored on the test users' "
            f"query ratings; each further column is its gain in mean squared error when it draws on side "
            f"features (positive: better), and the change in RMSE. 'Variance explained' is the part of the "
            f"spread τ² of the users' levels and of the items' biases that the features predict "
            f"out of sample. {100 * well_rated:.0f}% of the query ratings fall on items with at least 30 "
            f"training ratings. {os.cpu_count()} cores.\n\n" + table(mse, explained) + "\n")
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
