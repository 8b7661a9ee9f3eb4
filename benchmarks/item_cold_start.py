"""Cold items: what item features (genres, decade) add, in MeLU's scenarios.

MovieLens-100k; per seed, 20% of the items are new (no rating of them is in
training) and 20% of the users are new (folded in with K random ratings of
existing items). Scenarios, each scored on its own ratings:

- existing users x new items: the known users' ratings of the new items;
- new users x new items: the new users' ratings of the new items, after
  their fold-in;
- new users x existing items: the new users' other ratings of existing
  items (features must not hurt here);
- warm: 10% of the known users' ratings of existing items, held out of
  training;

RMSE, nDCG@10 within each user's rated items of the scenario, and, for the
new items, recall@20 when the user's list ranks all new items (relevant:
rated 4 or more). Methods with their defaults: the empirical-Bayes bias
model (no item information for a new item), a content baseline (the bias
model with a feature-based prior for item biases and a ridge taste per
user over the features; ``ContentBaseline``), MAML without and with
features, Meta-SGD with features, and MAML with item features and user
attributes; the package's factorization baseline with item features
(LightFM's model with the squared loss, SGD); and MAML with item features
and the logistic loss fitted on every rated item as a positive, as the
LightFM peers are (a ranking model: no RMSE). Features: the 19 genre flags and the release decade, one-hot
(``FeatureTable``); attributes: age bracket, gender and occupation. Paired per-seed differences of
MAML with features against the best peer, and of the logistic MAML against the best ranking peer.

    python benchmarks/item_cold_start.py [--data ml-100k.zip] [--seeds 0 1 2]

Writes benchmarks/results/item_cold_start.md. LightFM (WARP and logistic,
with item features and 30 epochs, its components and learning rate tuned
on held-out items; the other methods keep their defaults) joins when it is
installed: LightFM 1.17's setup.py fails on
current setuptools, and builds after replacing its line
``__builtins__.__LIGHTFM_SETUP__ = True`` with ``import builtins;
builtins.__LIGHTFM_SETUP__ = True`` (then ``pip install
--no-build-isolation .`` in the unpacked sdist, with cython installed).
"""

import argparse
import os
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from bias_peer import BiasModel

from sklearn_metarec import (EmpiricalBayesRecommender, FactorizationRecommender, FeatureTable,
                             MAMLFactorizationRecommender, MetaSGDFactorizationRecommender)
from sklearn_metarec.datasets import fetch_movielens, load_movielens
from sklearn_metarec.metrics import ndcg_at_k, rmse

SCENARIOS = ("existing users x new items", "new users x new items", "new users x existing items",
             "warm: existing users x existing items")
OURS = "MAML + features (ours)"
IDS_ONLY = "MAML, ids only (ours)"
WITH_USERS = "MAML + features + user attributes (ours)"


def item_table(data):
    """Genre flags and release decade, one row per item id."""
    items = data.item_features
    decade = np.where(np.isnan(items.year), -1, items.year // 10 * 10).astype(int)
    frame = pd.DataFrame(items.genres, columns=data.genre_names, index=items.item_id).astype(float)
    frame["decade"] = [str(d) if d >= 0 else "unknown" for d in decade]
    return FeatureTable(frame)


def user_table(data):
    """Age bracket, gender and occupation, one row per user id (None
    without a users file)."""
    users = data.user_features
    if users is None:
        return None
    bracket = np.digitize(users.age, [18, 25, 35, 45, 50, 56])
    return FeatureTable(pd.DataFrame({"age": bracket.astype(str), "gender": users.gender,
                                      "occupation": users.occupation}, index=users.user_id))


class _Ranks:
    """``recommend`` for a peer with ``predict``: every candidate scored, best first."""

    def recommend(self, users, n, items, exclude_seen=False):
        pairs = np.column_stack([np.repeat(users, len(items)), np.tile(items, len(users))])
        scores = self.predict(pairs).reshape(len(users), len(items))
        order = np.argsort(-scores, axis=1, kind="stable")[:, :n]
        return np.asarray(items)[order], np.take_along_axis(scores, order, axis=1)


class ContentBaseline(_Ranks):
    """The issue's content baseline: the empirical-Bayes bias model
    (``bias_peer.BiasModel``) whose item biases shrink towards a ridge
    prediction from the item features (a new item gets that prediction),
    plus each user's linear taste over the item features, a ridge fit on
    the user's residuals (strength chosen on held-out ratings of the known
    users). A new user is fitted with the rest (``fold_in`` refits)."""

    LAMBDAS = (1.0, 3.0, 10.0, 30.0, 100.0)

    def fit(self, X, y, item_features):
        self.table, self.X, self.y = item_features, np.asarray(X), np.asarray(y, dtype=float)
        # The taste strength, on the last tenth of each known user's ratings.
        held = np.zeros(len(self.X), dtype=bool)
        for u in np.unique(self.X[:, 0]):
            rows = np.flatnonzero(self.X[:, 0] == u)
            held[rows[-max(1, len(rows) // 10):]] = True
        errors = []
        for lam in self.LAMBDAS:
            self._fit(self.X[~held], self.y[~held], lam)
            errors.append(np.mean((self.predict(self.X[held]) - self.y[held]) ** 2))
        self.lam = self.LAMBDAS[int(np.argmin(errors))]
        return self._fit(self.X, self.y, self.lam)

    def fold_in(self, X, y):
        return self._fit(np.vstack([self.X, X]), np.r_[self.y, y], self.lam)

    def _fit(self, X, y, lam):
        self.users, u = np.unique(X[:, 0], return_inverse=True)
        self.items = self.table.ids
        i = self._item_index(X[:, 1])
        F = self.table.matrix.toarray()
        self.F = F
        self.bias = BiasModel(item_x=F).fit(u, i, y, len(self.users), len(self.items))
        residual = y - self.bias.predict(u, i)
        self.taste = np.zeros((len(self.users), F.shape[1]))
        order = np.argsort(u, kind="stable")
        bounds = np.searchsorted(u[order], np.arange(len(self.users) + 1))
        for user in range(len(self.users)):  # a benchmark peer: one small ridge solve per user
            rows = order[bounds[user] : bounds[user + 1]]
            Xu = F[i[rows]]
            self.taste[user] = np.linalg.solve(Xu.T @ Xu + lam * np.eye(F.shape[1]), Xu.T @ residual[rows])
        return self

    def _item_index(self, ids):
        return np.searchsorted(self.items, ids)  # every item is in the table

    def predict(self, X):
        X = np.asarray(X)
        u = np.searchsorted(self.users, X[:, 0])
        known = (u < len(self.users)) & (self.users[np.minimum(u, len(self.users) - 1)] == X[:, 0])
        u = np.where(known, u, -1)
        i = self._item_index(X[:, 1])
        taste = np.where(known, np.einsum("nf,nf->n", self.taste[np.maximum(u, 0)], self.F[i]), 0.0)
        return np.clip(self.bias.predict(u, i) + taste, 1.0, 5.0)


class LightFMPeer(_Ranks):
    """LightFM with item features (each item: its id plus its genres and
    decade, as LightFM's documentation builds them), every rated item a
    positive, ``loss`` WARP or logistic; 30 epochs. A ranking model: its
    RMSE is not reported. New users are folded in as LightFM does it, by
    refitting with their ratings in the matrix.

    Tuned in its own favour (ours keep their defaults): ``GRID``'s points
    are scored on a split of the training data that mirrors the test, 20%
    of its items held out as new, by recall@20 among them (relevant: rated
    4 or more), and the best is refitted on all of it."""

    GRID = [dict(no_components=c, learning_rate=lr) for c in (32, 64) for lr in (0.02, 0.05)]

    def __init__(self, loss):
        self.loss = loss

    def fit(self, X, y, item_features):
        self.table = item_features
        X, y = np.asarray(X), np.asarray(y, dtype=float)
        rng = np.random.default_rng(0)
        items = np.unique(X[:, 1])
        held = rng.choice(items, len(items) // 5, replace=False)
        seen = ~np.isin(X[:, 1], held)
        scores = []
        for params in self.GRID:
            self.params = params
            self.X = X[seen]
            self._fit(self.X)
            known = np.isin(X[:, 0], self.users) & ~seen
            scores.append(recall_new_items(self, X[known], y[known], held))
        self.params = self.GRID[int(np.argmax(scores))]
        self.X = X
        return self._fit(self.X)

    def fold_in(self, X, y):
        return self._fit(np.vstack([self.X, X]))

    def _fit(self, X):
        from lightfm import LightFM
        from scipy import sparse

        self.users = np.unique(X[:, 0])
        n_items = len(self.table.ids)
        u, i = np.searchsorted(self.users, X[:, 0]), np.searchsorted(self.table.ids, X[:, 1])
        interactions = sparse.coo_matrix((np.ones(len(u)), (u, i)), shape=(len(self.users), n_items))
        self.item_x = sparse.hstack([sparse.identity(n_items), self.table.matrix], format="csr")
        self.model = LightFM(loss=self.loss, random_state=0, **self.params)
        self.model.fit(interactions, item_features=self.item_x, epochs=30, num_threads=1)
        return self

    def predict(self, X):
        X = np.asarray(X)
        u = np.searchsorted(self.users, X[:, 0])
        i = np.searchsorted(self.table.ids, X[:, 1])
        return self.model.predict(u.astype(np.int32), i.astype(np.int32), item_features=self.item_x)


class AsPositives:
    """One of ours with ``loss="logistic"`` fitted on every rated item as a
    positive (y ignored), as LightFM's peers are; ranking only."""

    def __init__(self, model):
        self.model = model

    def fit(self, X, y, **tables):
        self.model.fit(X, **tables)
        return self

    def fold_in(self, X, y):
        self.model.fold_in(X)
        return self

    def predict(self, X):
        return self.model.predict(X)

    def recommend(self, *args, **kwargs):
        return self.model.recommend(*args, **kwargs)


LOGISTIC = "MAML, logistic + features, rated = positive (ours)"
RANKING_ONLY = ("LightFM, WARP", "LightFM, logistic", LOGISTIC)


def methods():
    peers = {}
    try:
        import lightfm  # noqa: F401
        peers = {name: ((lambda loss=loss: LightFMPeer(loss)), True)
                 for name, loss in zip(RANKING_ONLY, ("warp", "logistic"))}
    except ImportError:
        pass
    return {
        **peers,
        "empirical-Bayes bias model": (lambda: EmpiricalBayesRecommender(), False),
        "content baseline (genres, decade)": (lambda: ContentBaseline(), True),
        "FactorizationRecommender + features (LightFM's model, squared loss)": (
            lambda: FactorizationRecommender(random_state=0), True),
        IDS_ONLY: (lambda: MAMLFactorizationRecommender(random_state=0), False),
        OURS: (lambda: MAMLFactorizationRecommender(random_state=0), True),
        "Meta-SGD + features (ours)": (lambda: MetaSGDFactorizationRecommender(random_state=0), True),
        LOGISTIC: (lambda: AsPositives(MAMLFactorizationRecommender(loss="logistic", random_state=0)), True),
        WITH_USERS: (lambda: MAMLFactorizationRecommender(random_state=0), "users"),
    }


def split(X, y, seed, k):
    """Masks of the training ratings, the new users' support ratings and
    each scenario's ratings; the new items."""
    rng = np.random.default_rng(seed)
    items, users = np.unique(X[:, 1]), np.unique(X[:, 0])
    new_items = rng.choice(items, len(items) // 5, replace=False)
    new_users = rng.choice(users, len(users) // 5, replace=False)
    is_new_item, is_new_user = np.isin(X[:, 1], new_items), np.isin(X[:, 0], new_users)
    support = np.zeros(len(X), dtype=bool)
    candidates = is_new_user & ~is_new_item
    for u in new_users:  # per user: a loop over the 189 new users, not over ratings
        rows = np.flatnonzero(candidates & (X[:, 0] == u))
        if len(rows) > k:
            support[rng.choice(rows, k, replace=False)] = True
    folded = np.isin(X[:, 0], X[support, 0])
    # Warm: 10% of the known users' ratings of existing items, held out (drawn
    # last, so that the other scenarios' draws do not depend on it).
    known = np.flatnonzero(~is_new_user & ~is_new_item)
    warm = np.zeros(len(X), dtype=bool)
    warm[rng.choice(known, len(known) // 10, replace=False)] = True
    masks = {
        SCENARIOS[0]: ~is_new_user & is_new_item,
        SCENARIOS[1]: folded & is_new_item,
        SCENARIOS[2]: folded & ~is_new_item & ~support,
        SCENARIOS[3]: warm,
    }
    return ~is_new_user & ~is_new_item & ~warm, support, masks, new_items


def recall_new_items(model, X, y, new_items, n=20):
    """Mean recall@n over users with a relevant new item, all new items ranked."""
    relevant = y >= 4
    users = np.unique(X[relevant, 0])
    lists, _ = model.recommend(users, n=n, items=new_items, exclude_seen=False)
    hits = [np.isin(lists[j], X[relevant & (X[:, 0] == u), 1]).sum() / (relevant & (X[:, 0] == u)).sum()
            for j, u in enumerate(users)]
    return float(np.mean(hits))


def run(data, seeds, k):
    X, y = np.asarray(data.X), np.asarray(data.y, dtype=float)
    table, users = item_table(data), user_table(data)
    results = {}  # (method, scenario, metric) -> list over seeds
    for seed in seeds:
        train, support, masks, new_items = split(X, y, seed, k)
        for name, (make, features) in methods().items():
            if features == "users" and users is None:
                continue
            start = time.perf_counter()
            model = make()
            if features == "users":
                model.fit(X[train], y[train], item_features=table, user_features=users)
            elif features:
                model.fit(X[train], y[train], item_features=table)
            else:
                model.fit(X[train], y[train])
            results.setdefault((name, "fit", "seconds"), []).append(time.perf_counter() - start)
            model.fold_in(X[support], y[support])
            for scenario, mask in masks.items():
                pred = model.predict(X[mask])
                scores = {"RMSE": np.nan if name in RANKING_ONLY else rmse(y[mask], pred),
                          "nDCG@10": ndcg_at_k(y[mask], pred, users=X[mask, 0])}
                if "new items" in scenario:
                    scores["recall@20"] = recall_new_items(model, X[mask], y[mask], new_items)
                for metric, value in scores.items():
                    results.setdefault((name, scenario, metric), []).append(float(value))
            print(f"seed {seed} {name}: {time.perf_counter() - start:.1f} s", flush=True)
    return results


def tables(results, seeds):
    names = [name for name in methods() if (name, "fit", "seconds") in results]
    lines = ["", "Fit time (s, mean over seeds, the same process): " + "; ".join(
        f"{name} {np.mean(results[name, 'fit', 'seconds']):.1f}" for name in names) + "."]
    for scenario in SCENARIOS:
        metrics = ["RMSE", "nDCG@10"] + (["recall@20"] if "new items" in scenario else [])
        lines += ["", f"### {scenario}", "", "| method | " + " | ".join(metrics) + " |",
                  "|---|" + "---|" * len(metrics)]
        for name in names:
            cells = [f"{np.mean(results[name, scenario, m]):.4f} ± {np.std(results[name, scenario, m]):.4f}"
                     if not np.isnan(results[name, scenario, m]).any() else "n/a" for m in metrics]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", f"{OURS} against the best peer, the content and bias models, and itself without features, "
                  "paired per seed (± standard error):", ""]
        for metric in metrics:
            sign = -1 if metric == "RMSE" else 1
            peers = [n for n in names if "(ours)" not in n and not np.isnan(results[n, scenario, metric]).any()]
            best = max(peers, key=lambda n: sign * np.mean(results[n, scenario, metric]))
            # The best peer, the named peers where they have the
            # metric, and ourselves without features.
            named = [n for n in ("content baseline (genres, decade)", "empirical-Bayes bias model")
                     if n in names and not np.isnan(results[n, scenario, metric]).any()]
            ranking = [n for n in names if n in RANKING_ONLY and n != LOGISTIC]
            if metric != "RMSE" and ranking:
                named.append(max(ranking, key=lambda n: np.mean(results[n, scenario, metric])))
            for other in dict.fromkeys([best, *named, IDS_ONLY]):
                lines.append(f"- {metric}: {paired(results, scenario, metric, OURS, other)}")
        ranking = [n for n in names if n in RANKING_ONLY and n != LOGISTIC]
        if LOGISTIC in names and ranking:
            lines += ["", f"{LOGISTIC} against the best ranking peer, paired per seed:", ""]
            for metric in metrics[1:]:
                best = max(ranking, key=lambda n: np.mean(results[n, scenario, metric]))
                lines.append(f"- {metric}: {paired(results, scenario, metric, LOGISTIC, best)}")
        if "new users" in scenario and WITH_USERS in names:
            lines += ["", f"{WITH_USERS} against {OURS} (what the attributes add), paired per seed:", ""]
            lines += [f"- {metric}: {paired(results, scenario, metric, WITH_USERS, OURS)}" for metric in metrics]
    return "\n".join(lines)


def paired(results, scenario, metric, ours, other):
    """The per-seed difference of ``ours`` from ``other``, its standard error
    and the verdict (a difference within 2 s.e. is a tie)."""
    sign = -1 if metric == "RMSE" else 1
    diff = np.array(results[ours, scenario, metric]) - np.array(results[other, scenario, metric])
    se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
    verdict = "tie (inside 2 s.e.)" if abs(diff.mean()) <= 2 * se else ("better" if sign * diff.mean() > 0 else "worse")
    return f"{diff.mean():+.4f} ± {se:.4f} against {other}: {verdict}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="MovieLens-100k folder, zip or recbole wheel; default: fetch it")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--support", type=int, default=10, help="new users' support ratings K")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "item_cold_start.md"))
    args = parser.parse_args(argv)
    data = load_movielens(args.data) if args.data else fetch_movielens("100k", source="pypi")
    started = time.perf_counter()
    results = run(data, args.seeds, args.support)
    text = (f"# Cold items with item features, MovieLens-100k, {date.today()}\n\n"
            f"{len(data.y)} ratings; seeds {args.seeds}; 20% of items and 20% of users new; new users folded in "
            f"with K = {args.support} random ratings of existing items; defaults for every method but LightFM (its components and learning rate tuned on held-out items); features: "
            f"genres and decade. Mean ± std over seeds. {os.cpu_count()} cores; "
            f"{time.perf_counter() - started:.0f} s in all.\n" + tables(results, args.seeds) + "\n")
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
