"""Meta-training time and memory against data size, and thread scaling.

Synthetic ratings from ``make_ratings`` at 1M, 3M and 10M ratings (100
ratings per user on average; users and items grow with the data). Each size
is fitted by ``MAMLFactorizationRecommender`` with its defaults (k = 32,
T = 5, exact second order, 40 epochs) in a fresh process, which reports the
fit's wall time and the peak resident memory it adds over the data set
itself. Time and memory per million ratings should stay flat (linear
growth), and 10M ratings should meta-train in under 10 minutes on 2 cores.
The peer in the same run: the package's own FactorizationRecommender (SGD
matrix factorization, Surprise's algorithm) on the same data, for scale.

Thread scaling: the 1M fit on 1 thread against all threads (``--threads``).
With ``--n-items``, the catalogue stays that size at every data size: a
control that tells growth in the per-rating work from the cost of item
tables that no longer fit in cache.

    python benchmarks/scale.py [--sizes 1e6 3e6 1e7] [--n-epochs 40] [--threads 1 2] [--n-items 2000]

Prints a Markdown table and writes it to benchmarks/results/scale.md.
"""

import argparse
import multiprocessing
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import numba
import numpy as np

RATINGS_PER_USER = 100
RATINGS_PER_ITEM = 500


def _make_data(n_ratings, n_items, path):
    """Generate a size's data once and save it for the fits of that size:
    make_ratings's exact popularity sampler costs users x items (about
    100 s at 10M ratings), more than some fits."""
    from sklearn_metarec.datasets import make_ratings

    X, y = make_ratings(n_users=int(n_ratings // RATINGS_PER_USER), n_items=_n_items(n_ratings, n_items),
                        mean_ratings=RATINGS_PER_USER, random_state=0)
    np.save(path / "X.npy", X)
    np.save(path / "y.npy", y)


def _fit_child(name, path, n_epochs, n_jobs):
    """In a fresh process: load the data, fit once, return (seconds, peak
    MiB added by the fit, MiB of the data arrays, ratings)."""
    from peak_rss import peak_memory

    from sklearn_metarec import FactorizationRecommender, MAMLFactorizationRecommender
    from sklearn_metarec.datasets import make_ratings

    X, y = np.load(path / "X.npy"), np.load(path / "y.npy")
    if name == "maml":
        model = MAMLFactorizationRecommender(n_epochs=n_epochs, random_state=0, n_jobs=n_jobs)
    else:
        model = FactorizationRecommender(n_factors=32, n_epochs=n_epochs, random_state=0, n_jobs=n_jobs)
    # Compile (or load from the cache) on a small problem first.
    X_small, y_small = make_ratings(n_users=50, n_items=20, random_state=0)
    model.set_params(n_epochs=1).fit(X_small, y_small).set_params(n_epochs=n_epochs)
    start = time.perf_counter()
    peak = peak_memory(lambda: model.fit(X, y))
    return time.perf_counter() - start, peak, (X.nbytes + y.nbytes) / 2**20, len(y)


def _in_child(func, *args):
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(func, args)


def measure(name, path, n_epochs, n_jobs=None):
    return _in_child(_fit_child, name, path, n_epochs, n_jobs)


def _n_items(n_ratings, n_items):
    return int(n_ratings // RATINGS_PER_ITEM) if n_items is None else n_items


def data_for(n_ratings, n_items, root):
    path = Path(root) / f"{int(n_ratings)}"
    if not path.exists():
        path.mkdir()
        if n_ratings > 1e5:  # the generator's memory would stay with this process
            _in_child(_make_data, n_ratings, n_items, path)
        else:
            _make_data(n_ratings, n_items, path)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=float, nargs="*", default=[1e6, 3e6, 1e7])
    parser.add_argument("--threads", type=int, nargs="*", default=[1, numba.config.NUMBA_NUM_THREADS],
                        help="thread counts of the scaling table, the first as the base")
    parser.add_argument("--thread-size", type=float, default=1e6, help="ratings of the scaling fits")
    parser.add_argument("--n-epochs", type=int, default=40)
    parser.add_argument("--n-items", type=int, help="a fixed catalogue for every size (default: grows with "
                        f"the data, {RATINGS_PER_ITEM} ratings per item)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "scale.md"))
    args = parser.parse_args(argv)

    threads = numba.config.NUMBA_NUM_THREADS
    lines = [
        f"# Meta-training time and memory against data size, {date.today()}",
        "",
        f"make_ratings with {RATINGS_PER_USER} ratings per user and "
        + (f"{RATINGS_PER_ITEM} per item on average; " if args.n_items is None else f"{args.n_items} items; ")
        + f"{args.n_epochs} epochs; MAML with its defaults (k = 32, T = 5, exact second order); the "
        f"factorization with k = 32. Each fit in a fresh process after compilation. {os.cpu_count()} cores, "
        f"{threads} threads, {platform.machine()}. Memory: peak resident memory the fit adds, over the data "
        "arrays it is given.",
        "",
        "| ratings | users | items | MAML fit (s) | s per 1M ratings | MAML peak (MiB) | MiB per 1M ratings "
        "| FactorizationRecommender fit (s) | data (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    tmp = tempfile.TemporaryDirectory()
    for size in args.sizes:
        path = data_for(size, args.n_items, tmp.name)
        seconds, peak, data_mib, n = measure("maml", path, args.n_epochs)
        mf_seconds, _, _, _ = measure("mf", path, args.n_epochs)
        lines.append(f"| {n:,} | {int(size // RATINGS_PER_USER):,} | {_n_items(size, args.n_items):,} | "
                     f"{seconds:.1f} | {seconds / n * 1e6:.1f} | {peak:.0f} | {peak / n * 1e6:.0f} | "
                     f"{mf_seconds:.1f} | {data_mib:.0f} |")
        print(lines[-1], flush=True)
    if args.threads:
        size = args.thread_size
        lines += ["", f"Thread scaling, MAML fit on {size:,.0f} ratings:", "",
                  "| threads | fit (s) | speed-up over 1 thread |", "|---|---|---|"]
        base = None
        for n_threads in args.threads:
            seconds = measure("maml", data_for(size, args.n_items, tmp.name), args.n_epochs, n_jobs=n_threads)[0]
            base = base or seconds
            lines.append(f"| {n_threads} | {seconds:.1f} | {base / seconds:.2f}x |")
            print(lines[-1], flush=True)
    tmp.cleanup()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
