"""Meta-training on a Dask cluster: throughput against worker count, bytes
per global step, and a model of the speed-up on larger clusters.

Synthetic ratings from ``make_ratings`` (100 per user). The same MAML
(defaults but ``--n-factors``) is meta-trained for ``--n-epochs`` epochs in
one process, then with ``fit(client=...)`` on a LocalCluster of 1 and of 2
worker processes (one thread each), after a warm-up fit that loads the
kernels. The fits are checked to agree (largest prediction difference).

Bytes per step: ``TaskShards`` on the 2-worker cluster runs a few global
steps of a fitted model at several catalogue sizes, factor counts and
batch sizes and counts what it sends (the batch's users, (μ, φ₀), the item
rows that the last Adam step moved) and receives (the rows' gradients).

The model of larger clusters is written from the measured times: a step
costs the client c₀ (sampling, Adam, the diff of θ), the slowest worker
its share of the batch's tasks, and the round trip ℓ plus bytes/bandwidth.

Local steps (``--local-only``, a section of its own): the epochs' time of
``fit(client=..., local_steps=H)`` on 1 and 2 workers for each H, next to
the cores' own ceiling (the same kernel in two plain processes at once
against one alone), and the cold-start accuracy of the 2-worker fits
against the exact one-process fit, paired by seed (``--accuracy-ratings``,
default epochs).

    python benchmarks/dask_cluster.py [--n-ratings 1e6] [--n-epochs 2] [--n-factors 32]
    python benchmarks/dask_cluster.py --local-only --n-ratings 1e7 --n-epochs 2 --local-steps 128 1024

Prints Markdown and writes it to benchmarks/results/dask_cluster.md.
"""

import argparse
import os
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np

RATINGS_PER_USER = 100
RATINGS_PER_ITEM = 500


def _data(n_ratings, n_items=None):
    from sklearn_metarec.datasets import make_ratings

    n_items = n_items or max(int(n_ratings // RATINGS_PER_ITEM), 50)
    return make_ratings(n_users=int(n_ratings // RATINGS_PER_USER), n_items=n_items,
                        mean_ratings=RATINGS_PER_USER, random_state=0)


def _fit(X, y, params, client=None, **fit_params):
    """(seconds of the whole fit, seconds of its meta-training epochs, the
    model), after a warm-up fit on a slice of the data."""
    from sklearn_metarec import MAMLFactorizationRecommender

    epochs = MAMLFactorizationRecommender._train_epochs
    spent = []

    def timed(self, *args):
        start = time.perf_counter()
        try:
            return epochs(self, *args)
        finally:
            spent.append(time.perf_counter() - start)

    MAMLFactorizationRecommender(**{**params, "n_epochs": 1}).fit(X[:20000], y[:20000], client=client,
                                                                   **fit_params)
    MAMLFactorizationRecommender._train_epochs = timed
    try:
        start = time.perf_counter()
        model = MAMLFactorizationRecommender(**params).fit(X, y, client=client, **fit_params)
        return time.perf_counter() - start, spent[-1], model
    finally:
        MAMLFactorizationRecommender._train_epochs = epochs


def _step_bytes(client, X, y, n_factors, batch_size, n_steps=5):
    """Per global step, over ``n_steps`` steps of a briefly fitted model:
    (bytes sent, bytes received, seconds on the cluster, seconds of the
    same batch's kernel in this process on one thread, seconds of the
    client's diff of θ)."""
    from sklearn_metarec._base import numba_threads
    from sklearn_metarec import MAMLFactorizationRecommender
    from sklearn_metarec import _kernels as K
    from sklearn_metarec.distributed import TaskShards
    from sklearn_metarec.maml import support_bounds

    model = MAMLFactorizationRecommender(n_factors=n_factors, n_epochs=1, meta_batch_size=batch_size,
                                         random_state=0).fit(X, y)
    indptr, items, ratings, weights, *_ = model._log.csr(len(model._user_vocab))
    lo, hi = support_bounds(model.n_support, np.diff(indptr))
    n_items, d = len(model._item_vocab), n_factors + 1
    shards = TaskShards(client, model, (indptr, items, ratings, weights), lo, hi)
    rng = np.random.default_rng(0)
    outer = K.outer_settings(first_order=False, hyper=False, per_rating=True)
    item_reg = model._item_reg(items, weights)
    grad = np.zeros_like(model._theta)
    rows = np.empty(n_items, dtype=np.int64)
    cluster = kernel = diff = 0.0
    try:
        for step in range(n_steps + 1):
            if step == 1:  # the first step sends the penalties once and the whole replica's changes
                sent, received = shards.bytes_sent, shards.bytes_received
            batch = rng.choice(len(model._user_vocab), size=batch_size, replace=False)
            offsets = np.r_[0, np.cumsum(np.diff(indptr)[batch])].astype(np.int64)
            common = (batch, lo, hi, step, offsets, model._theta, n_items, model._alpha(), item_reg,
                      model._inner_settings(), outer, np.zeros_like(grad), np.empty(d + 1), rows, np.empty(n_items))
            start = time.perf_counter()
            with numba_threads(1):
                K.meta_batch_grad(indptr, items, ratings, weights, *common, np.empty((0, d)), np.empty((0, d)),
                                  *K.no_context(d))
            middle = time.perf_counter()
            _, n = shards.batch_grad(batch, lo, hi, step, offsets, model._theta, n_items, model._alpha(), item_reg,
                                     model._inner_settings(), outer, grad, np.empty(d + 1), rows, np.empty(n_items))
            end = time.perf_counter()
            _, bi, Q = K.unpack(model._theta, n_items, d)
            _, sent_bi, sent_Q = K.unpack(shards.sent, n_items, d)
            np.flatnonzero((bi != sent_bi) | (Q != sent_Q).any(axis=1))
            if step:
                kernel += middle - start
                cluster += end - middle
                diff += time.perf_counter() - end
            # An Adam-like move of the batch's rows, as a fit makes between steps.
            bi[rows[:n]] -= 1e-3
            Q[rows[:n]] -= 1e-3
        return ((shards.bytes_sent - sent) / n_steps, (shards.bytes_received - received) / n_steps,
                cluster / n_steps, kernel / n_steps, diff / n_steps)
    finally:
        shards.close()


def worker_memory(client, X, y, n_factors=32):
    """Per worker: (its shard's bytes: its share of the log, the user index
    and θ; how much its resident memory grew when the shard arrived)."""
    from sklearn_metarec import MAMLFactorizationRecommender
    from sklearn_metarec.distributed import TaskShards
    from sklearn_metarec.maml import support_bounds

    model = MAMLFactorizationRecommender(n_factors=n_factors, n_epochs=1, random_state=0).fit(X, y)
    indptr, items, ratings, weights, *_ = model._log.csr(len(model._user_vocab))
    lo, hi = support_bounds(model.n_support, np.diff(indptr))
    # Lambdas travel by value: this module need not be importable on the
    # workers. psutil is a dependency of distributed.
    rss = lambda: __import__("psutil").Process().memory_info().rss  # noqa: E731
    client.run(lambda: __import__("sklearn_metarec.distributed") and None)  # its own memory is not the shard's
    before = client.run(rss)
    shards = TaskShards(client, model, (indptr, items, ratings, weights), lo, hi)
    try:
        after = client.run(rss)
        sizes = [actor.nbytes().result() for actor in shards.actors]
    finally:
        shards.close()
    workers = sorted(before)
    return [(size, after[w] - before[w]) for size, w in zip(sizes, workers)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-ratings", type=float, default=1e6)
    parser.add_argument("--n-epochs", type=int, default=2)
    parser.add_argument("--n-factors", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=2, help="fits per configuration, the fastest reported")
    parser.add_argument("--meta-batch-sizes", type=int, nargs="*", default=[32, 2048],
                        help="global batch sizes of the throughput table (the package's default is 32)")
    parser.add_argument("--bytes-ratings", type=float, default=2e5, help="ratings of the bytes-per-step runs")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dask_cluster.md"))
    parser.add_argument("--memory-only", action="store_true",
                        help="only the workers' memory, appended to --out as its last section")
    parser.add_argument("--local-only", action="store_true",
                        help="only the local-steps section (time and accuracy), appended to --out")
    parser.add_argument("--local-steps", type=int, nargs="*", default=[8, 32, 128])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2],
                        help="cold-start splits of the local-steps accuracy table")
    parser.add_argument("--accuracy-ratings", type=float, default=1e6,
                        help="ratings of the local-steps accuracy table (its fits: default epochs)")
    args = parser.parse_args(argv)
    if args.memory_only:
        _append_section(args.out, "\nWorkers' memory", _memory_section(args))
        return
    if args.local_only:
        _append_section(args.out, "\nLocal steps", _local_section(args))
        return

    from distributed import Client, LocalCluster

    X, y = _data(args.n_ratings)
    lines = [
        f"# Meta-training on a Dask cluster, {date.today()}",
        "",
        f"make_ratings, {len(y):,} ratings, {len(np.unique(X[:, 0])):,} users, {len(np.unique(X[:, 1])):,} items; "
        f"MAML defaults (T = 5, exact second order) with k = {args.n_factors}, "
        f"{args.n_epochs} epochs. {os.cpu_count()} cores, {platform.machine()}. Workers: LocalCluster "
        "processes with one thread each; the one-process fit also runs on one thread (n_jobs=1).",
        "",
        "Fit: the whole call (reading the data, sharding it, meta-training, adapting every user); epochs: "
        f"the meta-training alone, whose rating-steps per second are given. Fastest of {args.rounds} fits each.",
        "",
        "| meta-batch | run | fit (s) | epochs (s) | rating-steps per s | epochs' speed-up over 1 worker "
        "| over one process | largest prediction difference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for batch in args.meta_batch_sizes:
        params = dict(n_factors=args.n_factors, n_epochs=args.n_epochs, meta_batch_size=batch, random_state=0,
                      n_jobs=1)
        runs = {}
        for _ in range(args.rounds):
            for n_workers in [0, *args.workers]:
                if n_workers:
                    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                      dashboard_address=None, host="127.0.0.1") as cluster, Client(cluster) as client:
                        result = _fit(X, y, params, client)
                else:
                    result = _fit(X, y, params)
                if n_workers not in runs or result[1] < runs[n_workers][1]:
                    runs[n_workers] = result
        base_fit, base_epochs, base = runs.pop(0)
        lines.append(f"| {batch} | one process | {base_fit:.1f} | {base_epochs:.1f} | "
                     f"{len(y) * args.n_epochs / base_epochs:,.0f} | | | |")
        one_worker = None
        for n_workers, (seconds, epochs, model) in runs.items():
            one_worker = one_worker or epochs
            diff = np.abs(model.predict(X[:5000]) - base.predict(X[:5000])).max()
            lines.append(f"| {batch} | {n_workers} worker{'s' if n_workers > 1 else ''} | {seconds:.1f} | "
                         f"{epochs:.1f} | {len(y) * args.n_epochs / epochs:,.0f} | {one_worker / epochs:.2f}x | "
                         f"{base_epochs / epochs:.2f}x | {diff:.1e} |")
        print("\n".join(lines[-1 - len(runs):]), flush=True)

    lines += ["", f"Bytes per global step, 2 workers, {args.bytes_ratings:,.0f} ratings (mean of 5 steps after the "
              "first). Step: the global step on the cluster; kernel: the same batch in one process on one "
              "thread; diff: the client's scan of θ for moved rows.", "",
              "| items | k | meta-batch | sent (KiB) | received (KiB) | step (ms) | kernel (ms) | diff (ms) |",
              "|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines[-5:]), flush=True)
    steps, moved = {}, {}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster, Client(cluster) as client:
        for n_items, k, batch in [(400, 32, 32), (2000, 32, 32), (8000, 32, 32), (2000, 8, 32), (2000, 64, 32),
                                  (2000, 32, 8), (2000, 32, 128)]:
            Xb, yb = _data(args.bytes_ratings, n_items)
            sent, received, seconds, kernel, diff = _step_bytes(client, Xb, yb, k, batch)
            steps[(n_items, k, batch)] = (seconds, kernel, diff)
            moved[(n_items, k, batch)] = sent + received
            lines.append(f"| {n_items:,} | {k} | {batch} | {sent / 1024:.0f} | {received / 1024:.0f} | "
                         f"{seconds * 1e3:.1f} | {kernel * 1e3:.1f} | {diff * 1e3:.2f} |")
            print(lines[-1], flush=True)
    lines += ["", *_model_lines(steps, moved)]
    print("\n".join(lines[-15:]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")


def _memory_section(args):
    from distributed import Client, LocalCluster

    X, y = _data(args.n_ratings)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster, Client(cluster) as client:
        rows = worker_memory(client, X, y, args.n_factors)
    lines = ["", f"Workers' memory, 2 workers, {len(y):,} ratings, k = {args.n_factors}: each shard's arrays (its "
             "users' ratings as int64 items and float64 ratings and weights, a user index over all users, the "
             "support bounds, θ) and the growth of the worker's resident memory when its shard arrived.", "",
             "| worker | shard (MiB) | resident growth (MiB) |", "|---|---|---|"]
    lines += [f"| {k} | {size / 2**20:.1f} | {grown / 2**20:.1f} |" for k, (size, grown) in enumerate(rows)]
    print("\n".join(lines))
    return lines


def _append_section(out, heading, lines):
    """Write ``lines`` over the section of ``out`` from ``heading`` to the
    next blank-line-led section of another name (or add them at the end)."""
    path = Path(out)
    text = path.read_text() if path.exists() else ""
    start = text.find(heading)
    if start < 0:
        path.write_text(text.rstrip("\n") + "\n" + "\n".join(lines) + "\n")
        return
    ends = [text.find(other, start + 1) for other in ("\nWorkers' memory", "\nLocal steps")]
    end = min([e for e in ends if e > start] or [len(text)])
    rest = text[end:].lstrip("\n")
    path.write_text(text[:start].rstrip("\n") + "\n" + "\n".join(lines) + "\n" + ("\n" + rest if rest else ""))


def _cluster(n_workers):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           host="127.0.0.1")
    return cluster, Client(cluster)


def _accuracy(model, X_test, y_test):
    """(RMSE, catalogue nDCG@10, catalogue recall@20) on cold-start users' query ratings."""
    from sklearn_metarec.metrics import ranking_report

    within = ranking_report(model, X_test, y_test, metrics=["rmse"])
    ndcg = ranking_report(model, X_test, y_test, k=10, mode="catalogue", metrics=["ndcg"])
    recall = ranking_report(model, X_test, y_test, k=20, mode="catalogue", metrics=["recall"])
    return within["rmse"], ndcg["ndcg"], recall["recall"]


def _timed_half_epoch(light, csr, lo, hi, users, item_reg, barrier):
    """Seconds of ``_meta_epoch`` over ``users`` on one thread, fastest of 3,
    each started together with the other process's (``barrier``)."""
    import copy

    from sklearn_metarec._base import numba_threads

    best = np.inf
    with numba_threads(1):
        copy.deepcopy(light)._meta_epoch(*csr, users[:200], lo, hi, 5, item_reg)  # loads the kernels
        for _ in range(3):
            model = copy.deepcopy(light)
            barrier.wait()
            start = time.perf_counter()
            model._meta_epoch(*csr, users, lo, hi, 5, item_reg)
            best = min(best, time.perf_counter() - start)
    return best


def _two_process_ceiling(X, y, params):
    """What two processes get from this machine's cores on the meta-training
    kernel, without Dask: the same model's half epoch of meta-batches (of 16
    users, a worker's share of 32) in one process, then a half each in two
    processes at once. Returns (one alone's seconds, the two's slower
    seconds): their ratio × 2 is the most any two workers can speed up."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from sklearn_metarec import MAMLFactorizationRecommender
    from sklearn_metarec.distributed import _worker_copy
    from sklearn_metarec.maml import support_bounds

    model = MAMLFactorizationRecommender(**{**params, "n_epochs": 1}).fit(X, y)
    indptr, items, ratings, weights, *_ = model._log.csr(len(model._user_vocab))
    lo, hi = support_bounds(model.n_support, np.diff(indptr))
    item_reg = model._item_reg(items, weights)
    light = _worker_copy(model)
    light.meta_batch_size = 16
    halves = np.array_split(np.random.default_rng(0).permutation(len(model._user_vocab)), 2)
    context = multiprocessing.get_context("spawn")
    common = (light, (indptr, items, ratings, weights), lo, hi)
    with context.Manager() as manager, ProcessPoolExecutor(2, mp_context=context) as pool:
        alone = pool.submit(_timed_half_epoch, *common, halves[0], item_reg, manager.Barrier(1)).result()
        barrier = manager.Barrier(2)
        both = [pool.submit(_timed_half_epoch, *common, half, item_reg, barrier) for half in halves]
        return alone, max(future.result() for future in both)


def _local_section(args):
    """Local steps (``fit(client=..., local_steps=H)``): epochs' time on 1 and
    2 workers against one process, and cold-start accuracy against the
    exact fit, paired by split."""
    from sklearn_metarec import MAMLFactorizationRecommender
    from sklearn_metarec.model_selection import cold_start_split

    from sklearn_metarec.distributed import TaskShards

    X, y = _data(args.n_ratings)
    params = dict(n_factors=args.n_factors, n_epochs=args.n_epochs, random_state=0, n_jobs=1)
    alone, together = _two_process_ceiling(X, y, params)
    best = {}
    rounds = []  # the 2-worker local fits' rounds: (bytes, seconds of the calls, slowest worker's steps, tasks)
    close = TaskShards.close

    def recorded(shards):
        if shards.local_steps > 1 and len(shards.actors) == 2 and shards.rounds:
            n = len(shards.rounds)
            rounds.extend(((shards.bytes_sent + shards.bytes_received) / n, calls, steps, shards.tasks.max() / n)
                          for calls, steps in shards.rounds)
        close(shards)

    TaskShards.close = recorded
    try:
        for _ in range(args.rounds):
            best[(0, 1)] = min(best.get((0, 1), np.inf), _fit(X, y, params)[1])
            for n_workers in args.workers:
                cluster, client = _cluster(n_workers)
                with cluster, client:
                    for H in [1, *args.local_steps]:
                        if H == 1 and n_workers == 1:
                            continue
                        best[(n_workers, H)] = min(best.get((n_workers, H), np.inf),
                                                   _fit(X, y, params, client, local_steps=H)[1])
    finally:
        TaskShards.close = close
    lines = ["", f"Local steps: `fit(client=..., local_steps=H)`, {len(y):,} ratings, the same MAML, "
             f"{args.n_epochs} epochs, meta-batch {MAMLFactorizationRecommender().meta_batch_size} (each worker "
             "its share); H = 1 is the exact algorithm. Epochs' seconds, fastest of "
             f"{args.rounds} fits; one process: {best[(0, 1)]:.1f} s.", "",
             "| H | 1 worker (s) | 2 workers (s) | 2 workers over 1 worker | 2 workers over one process |",
             "|---|---|---|---|---|"]
    ceiling = [f"The cores' ceiling, without Dask: half an epoch of the same model's meta-batches (16 users) took "
               f"{alone:.2f} s in one process alone and {together:.2f} s in each of two processes at once, so two "
               f"processes do {2 * alone / together:.2f}x the work of one here, the most 2 workers can reach."]
    for H in [1, *args.local_steps]:
        one = best.get((1, H))
        two = best[(2, H)]
        lines.append(f"| {H} | {'' if one is None else f'{one:.1f}'} | {two:.1f} | "
                     f"{'' if one is None else f'{one / two:.2f}x'} | {best[(0, 1)] / two:.2f}x |")
    lines += ["", *ceiling, "", *_local_model_lines(rounds)]
    print("\n".join(lines), flush=True)
    X, y = _data(args.accuracy_ratings)
    params = dict(n_factors=args.n_factors, n_jobs=1)
    lines += ["", f"Accuracy of local steps, 2 workers: MAML with defaults (k = {args.n_factors}, "
              f"{MAMLFactorizationRecommender().n_epochs} epochs) on cold-start splits of make_ratings' "
              f"{len(y):,} ratings (20% of users new, 10 support ratings each), seeds {args.seeds} (of the split "
              "and the fit); RMSE and catalogue nDCG@10 and recall@20 of the new users' query ratings (relevant: "
              "≥ 4), and each against the exact one-process fit, paired by seed ± s.e.", "",
              "| H | RMSE | nDCG@10 | recall@20 | RMSE vs exact | nDCG@10 vs exact | recall@20 vs exact |",
              "|---|---|---|---|---|---|---|"]
    scores = {}
    cluster, client = _cluster(2)
    with cluster, client:
        for seed in args.seeds:
            X_train, X_test, y_train, y_test = cold_start_split(X, y, n_support=10, test_size=0.2,
                                                                random_state=seed)
            for H in [1, *args.local_steps]:
                model = MAMLFactorizationRecommender(**{**params, "random_state": seed})
                model.fit(X_train, y_train, **({} if H == 1 else dict(client=client, local_steps=H)))
                scores.setdefault(H, []).append(_accuracy(model, X_test, y_test))
    exact = np.array(scores[1])
    for H in [1, *args.local_steps]:
        values = np.array(scores[H])
        cells = [f"{v:.4f}" for v in values.mean(axis=0)]
        if H > 1:
            diff = values - exact
            se = diff.std(axis=0, ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else np.zeros(3)
            cells += [f"{m:+.4f} ± {e:.4f}" for m, e in zip(diff.mean(axis=0), se)]
        else:
            cells += ["", "", ""]
        lines.append(f"| {'1 (exact, one process)' if H == 1 else H} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    return lines


def _max_share(n_tasks, n_workers, draws=2000):
    """Expected largest share of ``n_tasks`` users hashed over ``n_workers``."""
    from sklearn_metarec.distributed import owners

    rng = np.random.default_rng(0)
    users = rng.integers(0, 2**40, size=(draws, n_tasks))
    shares = [np.bincount(owners(row, n_workers).astype(np.int64), minlength=n_workers).max() for row in users]
    return float(np.mean(shares))


def _model_lines(steps, bytes_per_step, batch=2048, factors=32):
    """Projected speed-up at 8, 32 and 128 workers for 100M and 1B ratings,
    from this run's steps (``steps[(items, k, b)] = (step, kernel, diff)``
    seconds and ``bytes_per_step[...]`` = sent + received bytes, 2 workers):
    a step's cost beyond its kernel share and diff is fitted as c₀ + β ×
    bytes; a global batch of ``batch`` users then costs, at W workers,
    kernel × E[largest share]/batch + diff + c₀ + β × bytes(W), where each
    worker receives every moved row and returns its share's rows."""
    keys = sorted(steps)
    extra = [steps[key][0] - steps[key][1] * _max_share(key[2], 2) / key[2] - steps[key][2] for key in keys]
    x = np.array([bytes_per_step[key] for key in keys], dtype=float)
    beta, c0 = np.polyfit(x, np.array(extra), 1) if len(keys) > 1 else (0.0, extra[0])
    beta, c0 = max(beta, 0.0), max(c0, 0.0)
    per_task = steps[keys[0]][1] / keys[0][2]  # one user's task on one core, k as measured
    diff_per_item = max(steps[key][2] / key[0] for key in keys)
    row_bytes = (factors + 1) * 8
    lines = [f"Model of larger clusters, fitted on the bytes rows above: a step's fixed cost c₀ = {c0 * 1e3:.1f} ms "
             f"and {beta * 1e9:.2f} ns per byte moved (loopback, 2 shared cores); a user's task "
             f"{per_task * 1e3:.2f} ms on one core; global batch {batch} users of 100 ratings, items = ratings / "
             f"{RATINGS_PER_ITEM}. Moved rows per step: min(items, 100 × batch); every worker receives them all "
             "(its replica) and returns its share's. Speed-up against one process on one core.", "",
             "| ratings | items | workers | MiB moved per step | step (ms) | speed-up |", "|---|---|---|---|---|---|"]
    for ratings in (1e8, 1e9):
        items = int(ratings // RATINGS_PER_ITEM)
        rows = min(items, 100 * batch)
        for workers in (8, 32, 128):
            moved = workers * rows * row_bytes + rows * row_bytes
            step = (per_task * _max_share(batch, workers, draws=200) + diff_per_item * items + c0
                    + beta * moved)
            lines.append(f"| {ratings:.0e} | {items:,} | {workers} | {moved / 2**20:,.0f} | {step * 1e3:,.0f} | "
                         f"{per_task * batch / step:.2f}x |")
    per_rating = per_task / RATINGS_PER_USER
    needed = 2 * row_bytes / per_rating  # bytes per second at which shipping a rating's row costs its compute
    lines += ["", "Where it stops scaling, and why: every replica receives every row a step moved, so the bytes "
              "per step grow with the worker count while the compute per worker shrinks; past a few workers "
              "the step is all communication. What would scale: workers that receive only the rows their "
              "share of the batch reads (a parameter-server layout; with sampled negatives the client would "
              "have to draw them), local steps between synchronizations (approximate), and a client that tracks "
              "the rows Adam moved instead of diffing θ (O(catalogue) per step).",
              "", f"Even that layout has a floor while every row passes through the client: a rating's "
              f"meta-gradient costs {per_rating * 1e6:.2f} µs of one core, while its item row ({row_bytes} bytes) "
              f"goes out and its gradient comes back, {2 * row_bytes} bytes, {2 * row_bytes * beta * 1e6:.2f} µs at "
              f"this run's {beta * 1e9:.2f} ns per byte. A step cannot be shorter than the client moving its "
              f"batch's rows, so where each rating reads a row of its own, exact data-parallel steps are at most "
              f"{per_rating / max(2 * row_bytes * beta, 1e-12):.2f}x one process here, whatever the worker count; "
              f"they pay only where the client's link and serialization move more than {needed / 2**20:,.0f} MiB/s, "
              "where the item table is served by several processes, or where a task does more per byte (larger "
              "T, or users whose histories share items, so that a row serves many ratings)."]
    return lines



def _local_model_lines(rounds, batch=2048, factors=32):
    """Projected speed-up of local steps at 8, 32 and 128 workers for 100M
    and 1B ratings, from this run's 2-worker rounds ((bytes, seconds of the
    calls, the slowest worker's seconds of steps, tasks per worker) each): a
    round's cost beyond its steps is fitted as c₀ + β × bytes; at W workers
    and a global batch of ``batch`` users, each worker's round is H steps
    of batch/W tasks, it returns the rows it moved and receives every row
    any worker moved (the client averages and broadcasts them)."""
    data = np.array(rounds, dtype=float)
    extra = data[:, 1] - data[:, 2]
    if len(np.unique(data[:, 0])) > 1:
        beta, c0 = np.polyfit(data[:, 0], extra, 1)
    else:
        beta, c0 = 0.0, float(np.mean(extra))
    beta, c0 = max(beta, 0.0), max(c0, 0.0)
    per_task = float(np.median(data[:, 2] / data[:, 3]))
    row_bytes = (factors + 1) * 8
    lines = [f"Model of local steps on larger clusters, fitted on this run's {len(data)} rounds on 2 workers: a "
             f"round's cost beyond its steps is c₀ = {c0 * 1e3:.1f} ms plus {beta * 1e9:.2f} ns per byte moved; a "
             f"user's task {per_task * 1e3:.3f} ms on one core. Global batch {batch} users of 100 ratings, so a "
             f"worker's batch is {batch}/W; items = ratings / {RATINGS_PER_ITEM}. A worker moves min(items, H × "
             "its batch × 100) rows a round and receives every row moved by any worker. Speed-up against one "
             "process on one core, which takes the same H steps of the whole batch.", "",
             "| ratings | items | workers | H | MiB through the client per round | round (s) | speed-up |",
             "|---|---|---|---|---|---|---|"]
    for ratings in (1e8, 1e9):
        items = int(ratings // RATINGS_PER_ITEM)
        for workers in (8, 32, 128):
            for H in (128, 1024):
                tasks = H * batch / workers
                own = min(items, tasks * 100)
                merged = min(items, workers * own)
                moved = workers * (own + merged) * row_bytes
                seconds = tasks * per_task + c0 + beta * moved
                lines.append(f"| {ratings:.0e} | {items:,} | {workers} | {H} | {moved / 2**20:,.0f} | "
                             f"{seconds:,.2f} | {H * batch * per_task / seconds:.2f}x |")
    lines += ["", LOCAL_LIMITS]
    return lines


LOCAL_LIMITS = (
    "Where local steps stop scaling, and why: a round's compute falls as 1/W while the rows that pass through "
    "the client grow with W (each worker receives the whole merged set), so the speed-up rises with W only while "
    "the compute dominates, then falls; the larger the catalogue and the smaller H, the sooner (in this table, "
    "the rows with H = 128 and those with 1B ratings). A larger H delays that only until every worker moves most "
    "of the catalogue each round. Past that, the averaging has to leave the client: a reduction among the workers "
    "(a tree or ring all-reduce of the moved rows, or rows sharded over parameter servers), which is not built. "
    "The byte rate is this machine's loopback; a network is slower.")


if __name__ == "__main__":
    main()
