"""Serving latency at scale: fold-in and recommend for one known user.

A MAML model (32 factors, one epoch: the latency does not depend on how
well it is trained) over N random ratings (50 per user on average, 20,000
items). Each call folds one more rating into a known user with 20 ratings
(a different user each call), or asks for a user's top 10 over the whole
catalogue; p50 and p99 over
the calls, after compile. In the same run, the fold-ins with the rating
log re-sorted on every call (``RatingLog.MERGE_AFTER = 0``), which is what
every fold-in of a known user cost before the log kept per-user views.

    python benchmarks/serving.py [--sizes 1000000 10000000]

Writes benchmarks/results/serving.md.
"""

import argparse
import os
import time
from datetime import date
from pathlib import Path

import numpy as np

from sklearn_metarec import MAMLFactorizationRecommender
from sklearn_metarec._data import RatingLog


def random_ratings(n, n_items=20_000, seed=0):
    rng = np.random.default_rng(seed)
    n_users = n // 50
    X = np.column_stack([rng.integers(0, n_users, n), rng.integers(0, n_items, n)])
    # 500 users with exactly 20 ratings each, the ones the calls touch.
    X[: 20 * 500] = np.column_stack([np.repeat(np.arange(500) + n_users, 20), rng.integers(0, n_items, 20 * 500)])
    return X, rng.integers(1, 6, n).astype(float), np.arange(500) + n_users


def latency(call, n_calls):
    call(-1)
    times = []
    for k in range(n_calls):
        start = time.perf_counter()
        call(k)
        times.append(time.perf_counter() - start)
    return np.percentile(times, 50) * 1e3, np.percentile(times, 99) * 1e3


def measure(n, n_calls=200):
    X, y, users = random_ratings(n)
    start = time.perf_counter()
    model = MAMLFactorizationRecommender(n_epochs=1, random_state=0).fit(X, y)
    fit = time.perf_counter() - start
    items = model.item_ids_
    row = {"fit (s)": fit}
    for merge_after, label in ((RatingLog.MERGE_AFTER, "per-user views"), (0, "re-sort every call")):
        RatingLog.MERGE_AFTER = merge_after
        try:
            calls = n_calls if merge_after else max(n_calls // 10, 5)
            # Call k touches user k (20 ratings, 21 after its fold-in).
            offset = 0 if merge_after else n_calls + 1
            row[f"fold_in, {label}"] = latency(
                lambda k: model.fold_in([[users[offset + k + 1], items[k % len(items)]]], [4.0]), calls)
            if merge_after:
                row["recommend top 10"] = latency(lambda k: model.recommend(users[k + 1], n=10), calls)
        finally:
            RatingLog.MERGE_AFTER = 1 << 16
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "serving.md"))
    args = parser.parse_args(argv)
    lines = ["| ratings | fit, 1 epoch (s) | call | p50 (ms) | p99 (ms) |", "|---|---|---|---|---|"]
    for n in args.sizes:
        row = measure(n)
        for name, value in row.items():
            if name != "fit (s)":
                lines.append(f"| {n:,} | {row['fit (s)']:.1f} | {name} | {value[0]:.3f} | {value[1]:.3f} |")
        print("\n".join(lines[-3:]), flush=True)
    text = (f"# Serving latency at scale, {date.today()}\n\n"
            f"Known users with 20 ratings; fold_in adds one rating to one of them per call; recommend: top 10 of 20,000 "
            f"items. {os.cpu_count()} cores.\n\n" + "\n".join(lines) + "\n")
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
