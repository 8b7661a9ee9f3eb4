"""Threads on a shared machine: fit and serving calls with the cores busy.

Starts one busy process per core (a pure-Python spin loop), then times, in
the same run, MAML's ``fit`` on the demo's data with the default ``n_jobs``
(every core) against ``n_jobs=1``, and the p50 / p99 latency of one-user
``predict``, ``recommend`` and ``fold_in`` calls. Also times the same with
the cores free. The target: with the cores busy, the default is no more
than 2x slower than ``n_jobs=1`` (it was 13-54x before the OpenMP pool
waited passively and small calls ran on the calling thread).

    python benchmarks/threads.py [--out FILE]

Writes benchmarks/results/threads.md (results/threads_active.md holds a run
with ``OMP_WAIT_POLICY=ACTIVE``, Numba's OpenMP default, for comparison).
"""

import multiprocessing as mp
import os
import time
from datetime import date
from pathlib import Path

import numpy as np

from serving import latency
from sklearn_metarec import MAMLFactorizationRecommender
from sklearn_metarec.datasets import make_ratings


def spin(stop):
    while not stop.is_set():
        sum(range(1000))


def percentiles(call, n=200):
    return latency(call, n)


def measure(X, y):
    rows = {}
    for n_jobs in (None, 1):
        params = dict(n_epochs=20, random_state=0, n_jobs=n_jobs)
        MAMLFactorizationRecommender(**{**params, "n_epochs": 1}).fit(X, y)  # compile outside the timing
        start = time.perf_counter()
        model = MAMLFactorizationRecommender(**params).fit(X, y)
        fit = time.perf_counter() - start
        item = X[0, 1]
        rows[n_jobs] = {
            "fit (s)": (fit,),
            "predict, 1 row (ms)": percentiles(lambda k: model.predict(X[k % 50 : k % 50 + 1])),
            "recommend, 1 user, top 10 (ms)": percentiles(lambda k: model.recommend(X[k % 50, 0], n=10)),
            "fold_in, new user, 5 ratings (ms)": percentiles(
                lambda k: model.fold_in(np.column_stack([np.full(5, 10**6 + k), X[:5, 1]]), y[:5])),
            "fold_in, known user (ms)": percentiles(lambda k: model.fold_in([[X[0, 0], item]], [4.0])),
        }
    return rows


def table(rows):
    lines = ["| | n_jobs=None (default) | n_jobs=1 | ratio |", "|---|---|---|---|"]
    for name in rows[None]:
        a, b = rows[None][name], rows[1][name]
        cell = (lambda v: f"{v[0]:.2f}" if len(v) == 1 else f"p50 {v[0]:.3f}, p99 {v[1]:.3f}")
        lines.append(f"| {name} | {cell(a)} | {cell(b)} | {a[0] / b[0]:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "threads.md"))
    args = parser.parse_args(argv)
    X, y = make_ratings(random_state=0)
    started = time.perf_counter()
    free = measure(X, y)
    stop = mp.Event()
    busy = [mp.Process(target=spin, args=(stop,)) for _ in range(os.cpu_count())]
    for p in busy:
        p.start()
    try:
        loaded = measure(X, y)
    finally:
        stop.set()
        for p in busy:
            p.join()
    text = (f"# Threads on a shared machine, {date.today()}\n\n"
            f"MAML, demo data ({len(y)} ratings), 20 epochs; {os.cpu_count()} cores; OMP_WAIT_POLICY="
            f"{os.environ.get('OMP_WAIT_POLICY')} (the package's default unless set); "
            f"{time.perf_counter() - started:.0f} s in all.\n\n"
            f"## Cores free\n\n{table(free)}\n\n"
            f"## Every core busy with another process\n\n{table(loaded)}\n")
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
