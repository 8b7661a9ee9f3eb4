"""Meta-training throughput: exact second-order MAML against first-order MAML.

Times one meta-epoch (every training user once, in meta-batches) at several
inner-step counts T and factor counts k, in the same run. The target is that
the exact second-order meta-gradient costs at most 2x the first-order one.

    python benchmarks/meta_step.py [--n-users 6000] [--repeat 3]

Prints a Markdown table and writes it to benchmarks/results/meta_step.md.
"""

import argparse
import os
import platform
import time
from datetime import date
from pathlib import Path

import numba
import numpy as np

from sklearn_metarec import MAMLFactorizationRecommender
from sklearn_metarec import _kernels as K
from sklearn_metarec.datasets import make_ratings
from sklearn_metarec.maml import support_bounds


def time_epoch(X, y, n_factors, n_steps, first_order, repeat, n_jobs):
    model = MAMLFactorizationRecommender(
        n_factors=n_factors, n_inner_steps=n_steps, n_epochs=0, first_order=first_order,
        random_state=0, n_jobs=n_jobs,
    ).fit(X, y)
    users = np.arange(len(model.user_ids_))
    model._train(users, 1)  # compile outside the timing
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        model._train(users, 1)
        best = min(best, time.perf_counter() - start)
    return len(users) / best, grad_only(model, users, repeat)


def grad_only(model, users, repeat):
    """Tasks/s of the meta-gradient kernel alone, all users as one batch
    (no Adam update, which both variants share)."""
    indptr, items, ratings, weights = model._log.csr(len(users))
    lo, hi = support_bounds(model.n_support, np.diff(indptr))
    offsets = np.r_[0, np.cumsum(np.diff(indptr))].astype(np.int64)
    grad = np.zeros_like(model._theta)
    args = (
        indptr, items, ratings, weights, users, lo, hi, 7, offsets, model._theta,
        len(model.item_ids_), model._alpha(), model._item_reg(items, weights), model._inner_settings(),
        K.outer_settings(first_order=model.first_order, hyper=False,
                         per_rating=model.task_weighting == "ratings"), grad,
        np.empty(model.n_factors + 2), np.empty(len(model.item_ids_), dtype=np.int64),
        np.empty(len(model.item_ids_)), np.empty((0, model.n_factors + 1)), np.empty((0, model.n_factors + 1)),
        *K.no_context(model.n_factors + 1),
    )
    best = np.inf
    for _ in range(repeat + 1):
        start = time.perf_counter()
        K.meta_batch_grad(*args)
        best = min(best, time.perf_counter() - start)
    return len(users) / best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-users", type=int, default=6000)
    parser.add_argument("--n-items", type=int, default=1000)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--factors", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--n-jobs", type=int, default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "meta_step.md"))
    args = parser.parse_args(argv)

    X, y = make_ratings(n_users=args.n_users, n_items=args.n_items, random_state=0)
    counts = np.bincount(X[:, 0])
    threads = args.n_jobs or numba.get_num_threads()
    lines = [
        f"# Meta-epoch throughput, {date.today()}",
        "",
        f"{len(y)} ratings, {args.n_users} users ({counts.mean():.0f} ratings each on average), "
        f"{args.n_items} items; support sizes 3-20, the rest is the query set; meta-batch 32. "
        f"{os.cpu_count()} cores, {threads} Numba threads, {platform.processor() or platform.machine()}. "
        f"Best of {args.repeat}.",
        "",
        "Epoch: a full meta-epoch with Adam updates. Gradient: the meta-gradient kernel alone.",
        "",
        "| T | k | epoch, exact (tasks/s) | epoch, 1st order (tasks/s) | epoch cost ratio "
        "| gradient, exact (tasks/s) | gradient, 1st order (tasks/s) | gradient cost ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for k in args.factors:
        for t in args.steps:
            exact, exact_g = time_epoch(X, y, k, t, False, args.repeat, args.n_jobs)
            first, first_g = time_epoch(X, y, k, t, True, args.repeat, args.n_jobs)
            row = (
                f"| {t} | {k} | {exact:,.0f} | {first:,.0f} | {first / exact:.2f}x "
                f"| {exact_g:,.0f} | {first_g:,.0f} | {first_g / exact_g:.2f}x |"
            )
            print(row, flush=True)
            lines.append(row)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
