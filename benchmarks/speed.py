"""Meta-gradient throughput against PyTorch autograd MAML of the same model.

For each inner-step count T and factor count k, on the same synthetic data,
meta-batches (32 tasks) and float64 parameters, this times the meta-gradient
of a meta-batch, the optimizer step left out on both sides:

* ours, exact second order and first order (``_kernels.batches.meta_batch_grad``,
  task sampling included);
* the per-task PyTorch loop (``create_graph=True``), as learn2learn- and
  MeLU-style code runs it;
* the batched PyTorch version, one tensor program per meta-batch (padded);
* the flat PyTorch version, the strongest we know: ragged tasks end to end,
  the inner gradient in closed form (``index_add``), one backward through
  the T steps, eager and under ``torch.compile`` (the headline peer).

PyTorch runs in float32, its usual precision, and on the same number of
threads. Before timing, it checks that both PyTorch forms give our
meta-gradient on the same batch to 1e-8 relative in float64, second and first
order: the peer doubles as an independent check of the analytic gradient.

    python benchmarks/speed.py [--steps 1 3 5] [--factors 16 32 64]

Prints a Markdown table and writes it to benchmarks/results/speed.md.

    python benchmarks/speed.py --features-only

times meta-training with side features against ids only (no PyTorch peer:
it has no features) and writes benchmarks/results/speed_features.md.
"""

import argparse
import gc
import itertools
import multiprocessing
import os
import platform
import time
from datetime import date
from pathlib import Path

import numba
import numpy as np
import torch

from sklearn_metarec import FactorizationRecommender, MAMLFactorizationRecommender
from sklearn_metarec import _kernels as K
from sklearn_metarec.datasets import fetch_movielens, load_movielens, make_ratings
from sklearn_metarec.maml import support_bounds
from peak_rss import peak_memory
from torch_maml import batched_meta_grad, compiled_flat_meta_grad, flat_meta_grad, flatten, pad, per_task_meta_grad

BATCH = 32


class Problem:
    """A model's CSR data and parameters, cut into meta-batches."""

    def __init__(self, X, y, k, n_steps, seed=0):
        model = MAMLFactorizationRecommender(n_factors=k, n_inner_steps=n_steps, n_epochs=0, reg=0.01,
                                             random_state=seed).fit(X, y)
        self.model = model
        self.csr = model._log.csr(len(model.user_ids_))
        self.lo, self.hi = support_bounds(model.n_support, np.diff(self.csr[0]))
        order = np.random.RandomState(seed).permutation(len(model.user_ids_))
        self.batches = [order[s : s + BATCH] for s in range(0, len(order), BATCH)]
        self.theta = model._theta.copy()
        self.n_items = len(model.item_ids_)
        self.alpha = model._alpha()
        self.lam, self.reg, self.n_steps = 0.0, float(model.reg), n_steps
        self.item_reg = np.full(self.n_items, self.reg)
        self.rows = np.empty(self.n_items, dtype=np.int64)
        # The estimators' default objective: support pseudo-count, per-rating query weights.
        self.kappa, self.per_rating = float(model.shrinkage), model.task_weighting == "ratings"

    def objective(self, kappa, per_rating):
        self.kappa, self.per_rating = kappa, per_rating
        return self

    def offsets(self, users):
        return np.r_[0, np.cumsum(np.diff(self.csr[0])[users])].astype(np.int64)

    def ours(self, users, first_order, seed=7, offsets=None, grad=None):
        """Loss and meta-gradient of a batch. As the estimators do, the
        timed loop passes its batches' offsets and reuses one gradient
        buffer, of which the kernel writes the batch's part; the PyTorch
        peers' tasks are built before their timing too."""
        grad = np.zeros_like(self.theta) if grad is None else grad
        offsets = self.offsets(users) if offsets is None else offsets
        loss, _, _ = K.meta_batch_grad(*self.csr, users, self.lo, self.hi, seed, offsets, self.theta,
                                 self.n_items, self.alpha, self.item_reg,
                                 K.inner_settings(lam=self.lam, kappa=self.kappa, n_steps=self.n_steps,
                                                  logistic=False, n_neg=0),
                                 K.outer_settings(first_order=first_order, hyper=False,
                                                  per_rating=self.per_rating), grad,
                                 np.empty(len(self.alpha) + 1), self.rows, np.empty(self.n_items),
                                 np.empty((0, len(self.alpha))), np.empty((0, len(self.alpha))),
                                 *K.no_context(len(self.alpha)))
        return loss, grad

    def tasks(self, users, seed=7):
        """The tasks ``ours`` draws for ``users``: (items, y, w, n_sup)."""
        offsets = self.offsets(users)
        t_items = np.empty(offsets[-1], dtype=np.int64)
        t_y, t_w = np.empty(offsets[-1]), np.empty(offsets[-1])
        n_sup = np.empty(len(users), dtype=np.int64)
        K.sample_tasks(*self.csr, users, self.lo, self.hi, seed, self.n_items, 0, offsets, t_items, t_y, t_w,
                       n_sup)
        return [(t_items[a:b], t_y[a:b], t_w[a:b], n_sup[j])
                for j, (a, b) in enumerate(zip(offsets[:-1], offsets[1:]))]

    def torch_args(self, dtype):
        return (torch.tensor(self.alpha, dtype=dtype), self.lam, self.reg, self.n_steps)

    def torch_kw(self):
        return dict(kappa=self.kappa, per_rating=self.per_rating)


def as_torch(tasks, dtype):
    return [(torch.from_numpy(i), torch.tensor(y, dtype=dtype), torch.tensor(w, dtype=dtype), int(s))
            for i, y, w, s in tasks]


def check_agreement(problem):
    """Both PyTorch forms against the analytic meta-gradient, float64, for
    the estimators' default objective and for the MAML paper's."""
    users = problem.batches[0]
    tasks = problem.tasks(users)
    theta = torch.tensor(problem.theta)
    worst = 0.0
    default = (problem.kappa, problem.per_rating)
    for first_order, objective in itertools.product((False, True), (default, (0.0, False))):
        problem.objective(*objective)
        kw = problem.torch_kw()
        loss, grad = problem.ours(users, first_order)
        args = problem.torch_args(torch.float64)
        for name, (t_loss, t_grad) in {
            "per-task": per_task_meta_grad(theta, as_torch(tasks, torch.float64), problem.n_items, *args,
                                           first_order, **kw),
            "batched": batched_meta_grad(theta, pad(tasks, torch.float64), problem.n_items, *args, first_order,
                                         **kw),
            "flat": flat_meta_grad(theta, flatten(tasks, torch.float64), problem.n_items, *args, first_order, **kw),
        }.items():
            rel = np.linalg.norm(t_grad.numpy() - grad) / np.linalg.norm(grad)
            if not (rel < 1e-8 and abs(float(t_loss) - loss) <= 1e-10 * abs(loss)):
                raise AssertionError(f"{name} PyTorch meta-gradient (first_order={first_order}, objective "
                                     f"{objective}) differs from ours: relative error {rel:.3g}")
            worst = max(worst, rel)
    problem.objective(*default)
    return worst


def rate(fn, n_tasks, repeat):
    fn()  # warm-up: compilation, allocator
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n_tasks / best


def measure(problem, torch_tasks, repeat, compile_peer=True):
    row = {}
    batches = problem.batches
    n_all = sum(len(b) for b in batches)
    offsets = [problem.offsets(b) for b in batches]
    grad = np.zeros_like(problem.theta)
    for first_order, key in ((False, "ours_so"), (True, "ours_fo")):
        row[key] = rate(lambda: [problem.ours(b, first_order, offsets=o, grad=grad) for b, o in zip(batches, offsets)],
                        n_all, repeat)
    theta = torch.tensor(problem.theta, dtype=torch.float32)
    args = problem.torch_args(torch.float32)
    few = batches[: max(1, torch_tasks // BATCH)]
    loop_tasks = [as_torch(problem.tasks(b), torch.float32) for b in few]
    kw = problem.torch_kw()
    row["loop"] = rate(lambda: [per_task_meta_grad(theta, t, problem.n_items, *args, False, **kw)
                                for t in loop_tasks],
                       sum(len(b) for b in few), max(1, repeat - 2))
    padded = [pad(problem.tasks(b), torch.float32) for b in batches]
    row["batched"] = rate(lambda: [batched_meta_grad(theta, p, problem.n_items, *args, False, **kw)
                                   for p in padded],
                          n_all, repeat)
    flat = [flatten(problem.tasks(b), torch.float32) for b in batches]
    row["flat"] = rate(lambda: [flat_meta_grad(theta, f, problem.n_items, *args, False, **kw) for f in flat],
                       n_all, repeat)
    row["compiled"] = np.nan
    if compile_peer:
        # Compiled code must compute what the eager code does (float32).
        eager = flat_meta_grad(theta, flat[0], problem.n_items, *args, False, **kw)[1]
        fused = compiled_flat_meta_grad(theta, flat[0], problem.n_items, *args, False, **kw)[1]
        rel = float(torch.linalg.norm(fused - eager) / torch.linalg.norm(eager))
        if not rel < 1e-4:
            raise AssertionError(f"compiled flat PyTorch differs from eager: relative error {rel:.3g}")
        row["compiled"] = rate(lambda: [compiled_flat_meta_grad(theta, f, problem.n_items, *args, False, **kw)
                                        for f in flat], n_all, repeat)
    return row


def work_per_task(problem):
    """(flops, bytes) per task of one exact meta-gradient, counted from the
    maths, not from any implementation, over all the problem's tasks.

    Flops (a multiply-add is 2): per inner step, each support term's score
    and its gradient term (4d) and the update (2d); at φ_T, each query
    term's score and v_T term (4d), its item's gradient and L2 term (6k);
    per reverse step, each support term's x·ṽ and Hessian-vector term (4d)
    and its item's mixed partials (4k). Bytes: each entry's item row
    (b_i, q_i) read and its gradient row written (2 · 8d), and its item
    code, rating and weight (24)."""
    d, T = len(problem.alpha), problem.n_steps
    k = d - 1
    n_s = n_q = 0
    for users in problem.batches:
        for items, _, _, s in problem.tasks(users):
            n_s += s
            n_q += len(items) - s
    n_tasks = sum(len(b) for b in problem.batches)
    flops = T * (4 * d * n_s + 2 * d * n_tasks) + n_q * (4 * d + 6 * k) + T * n_s * (4 * d + 4 * k)
    return flops / n_tasks, (n_s + n_q) * (16 * d + 24) / n_tasks


def gemm_peak(threads, dtype, n=2048, repeat=3):
    """GFLOP/s of a square matrix product (BLAS) on ``threads`` threads: the
    practical peak of this machine at that precision."""
    from threadpoolctl import threadpool_limits

    a = np.random.RandomState(0).rand(n, n).astype(dtype)
    with threadpool_limits(threads):
        a @ a
        best = min(_timed(lambda: a @ a) for _ in range(repeat))
    return 2 * n**3 / best / 1e9


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _memory_child(who, n_users, n_items, k, n_steps, n_tasks):
    """In a fresh process, so that no earlier call's freed memory is reused:
    warm up on two tasks, then measure one call over ``n_tasks``."""
    X, y = make_ratings(n_users=n_users, n_items=n_items, random_state=0)
    problem = Problem(X, y, k, n_steps)
    users = np.concatenate(problem.batches)[:n_tasks]
    if who == "ours":
        def call(u):
            problem.ours(u, False)
    else:
        torch.set_num_threads(numba.get_num_threads())
        theta = torch.tensor(problem.theta, dtype=torch.float32)
        args = problem.torch_args(torch.float32)
        padded = {len(u): pad(problem.tasks(u), torch.float32) for u in (users[:2], users)}

        def call(u):
            batched_meta_grad(theta, padded[len(u)], problem.n_items, *args, False, **problem.torch_kw())
    call(users[:2])
    gc.collect()
    return peak_memory(lambda: call(users))


def memory_rows(n_users, n_items, k, steps, n_tasks):
    """Peak memory of one exact meta-gradient over ``n_tasks`` tasks at each
    T: ours against batched PyTorch (float32), each in its own process."""
    ctx = multiprocessing.get_context("spawn")
    rows = []
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        for n_steps in steps:
            ours, theirs = (pool.apply(_memory_child, (who, n_users, n_items, k, n_steps, n_tasks))
                            for who in ("ours", "torch"))
            rows.append((n_steps, ours, theirs))
    return rows


def svd_fit_times(data, repeat):
    """Seconds to fit FactorizationRecommender and Surprise's SVD on the same
    ratings with the same factors, epochs, step and L2 (Surprise's defaults)."""
    import pandas as pd
    from surprise import SVD, Dataset, Reader

    X, y = data.X, data.y
    ours = FactorizationRecommender(n_factors=100, n_epochs=20, lr=0.005, reg=0.02, random_state=0)
    frame = pd.DataFrame({"user": X[:, 0], "item": X[:, 1], "rating": y})
    trainset = Dataset.load_from_df(frame, Reader(rating_scale=(1, 5))).build_full_trainset()
    theirs = SVD(n_factors=100, n_epochs=20, lr_all=0.005, reg_all=0.02, random_state=0)

    def best(fn):
        fn()  # warm-up (compilation for ours)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    return best(lambda: ours.fit(X, y)), best(lambda: theirs.fit(trainset))


def feature_fit_rates(n_users, n_items, k, steps, epochs=5, repeat=5):
    """Rows (T, order, ids-only tasks/s, with item features, with item
    features and user attributes, with those and context) of MAML's
    meta-training (Adam steps included) on ``make_ratings``' data with its
    genres, cluster attributes and its timestamps' weekday and part of day:
    the time of ``epochs`` epochs of a model fitted for one, best of
    ``repeat`` rounds."""
    import pandas as pd
    import scipy.sparse as sp

    from sklearn_metarec import FeatureTable
    from sklearn_metarec.datasets import time_context

    data = make_ratings(n_users=n_users, n_items=n_items, as_bunch=True, random_state=0)
    # A frame, as such data come: int ids, string contexts (in one object
    # array the ids would be objects too, slower to encode).
    when = time_context(data.timestamp)
    in_context = pd.DataFrame({"user": data.X[:, 0], "item": data.X[:, 1], "weekday": when[:, 0],
                               "daypart": when[:, 1]})
    items = FeatureTable(sp.csr_matrix(data.item_features), ids=np.arange(n_items))
    users = FeatureTable(sp.csr_matrix(data.user_features), ids=np.arange(n_users))
    variants = {"ids": {}, "items": {"item_features": items},
                "both": {"item_features": items, "user_features": users},
                "context": {"item_features": items, "user_features": users, "X": in_context}}
    rows = []
    for n_steps, first_order in itertools.product(steps, (False, True)):
        def fit(tables):
            tables = dict(tables)
            X = tables.pop("X", data.X)
            return MAMLFactorizationRecommender(
                n_factors=k, n_inner_steps=n_steps, first_order=first_order, n_epochs=1,
                context_columns=["weekday", "daypart"] if X is not data.X else None, random_state=0,
            ).fit(X, data.y, **tables)
        models = {name: fit(tables) for name, tables in variants.items()}  # compiles on first use
        users = np.arange(n_users)
        # ``epochs`` more epochs of each fitted model, timed alone (data reading
        # and the final fold-in, done once per fit, left out). The variants
        # take turns within each round, so that a slow spell of the shared
        # machine falls on all of them; the best round of each.
        times = {name: [] for name in variants}
        for _ in range(repeat):
            for name, model in models.items():
                times[name].append(_timed(lambda: model._train(users, epochs)))
        rates = {name: epochs * n_users / min(times[name]) for name in variants}
        # A slowdown is the median over rounds of the ratio within a round,
        # whose timings ran back to back.
        slowdowns = {name: float(np.median(np.divide(times[name], times["ids"]))) for name in variants}
        rows.append((n_steps, "first" if first_order else "exact",
                     *((rates[name], slowdowns[name]) for name in ("ids", "items", "both", "context"))))
    return rows


def features_section(args):
    rows = feature_fit_rates(args.n_users, args.n_items, 32, args.steps)
    section = [
        f"# Meta-training with side features, {date.today()}",
        "",
        f"`make_ratings(n_users={args.n_users}, n_items={args.n_items}, as_bunch=True)`: its genres as item "
        "features, its cluster labels as user attributes, its timestamps' weekday and part of day as context "
        "(each column adds to the one before). MAML, k = 32: the time of 5 epochs of meta-training of a model "
        f"fitted for one (the private `_train`: reading the data and the final fold-in left out), Adam steps "
        f"included; tasks (users x epochs) per second, best of 5 rounds, the variants taking turns in each round; a slowdown is the median over the rounds of the time's ratio to ids only's in the same round. {os.cpu_count()} cores, {numba.get_num_threads()} Numba threads.",
        "",
        "| T | order | ids only | + item features | slowdown | + user attributes | slowdown | + context | slowdown |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n_steps, order, (ids, _), (items, slow_items), (both, slow_both), (context, slow_context) in rows:
        section.append(f"| {n_steps} | {order} | {ids:,.0f} | {items:,.0f} | {slow_items:.2f}x | {both:,.0f} | "
                       f"{slow_both:.2f}x | {context:,.0f} | {slow_context:.2f}x |")
    exact = {r[0]: r for r in rows if r[1] == "exact"}
    first = {r[0]: r for r in rows if r[1] == "first"}
    section += ["", "Exact second order's cost over first order's, with item features, user attributes and "
                "context: " + ", ".join(f"T = {t}: {first[t][5][0] / exact[t][5][0]:.2f}x" for t in sorted(exact)) + "."]
    print("\n".join(section), flush=True)
    out = Path(args.out).with_name("speed_features.md")
    out.write_text("\n".join(section) + "\n")
    print(f"\nwritten to {out}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-users", type=int, default=6000)
    parser.add_argument("--n-items", type=int, default=1000)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--factors", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--torch-tasks", type=int, default=320, help="tasks timed in the slow per-task loop")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile peer (minutes to compile)")
    parser.add_argument("--memory-steps", type=int, nargs="*", default=[1, 3, 5, 10, 20])
    parser.add_argument("--memory-tasks", type=int, default=2048, help="tasks in the one batch measured")
    parser.add_argument("--data", help="MovieLens-100k folder, zip or recbole wheel for the SVD fit timing; "
                                       "default: fetch it; 'none' skips that table")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "speed.md"))
    parser.add_argument("--features-only", action="store_true",
                        help="only time meta-training with side features (speed_features.md)")
    args = parser.parse_args(argv)
    if args.features_only:
        return features_section(args)

    threads = numba.get_num_threads()
    torch.set_num_threads(threads)
    X, y = make_ratings(n_users=args.n_users, n_items=args.n_items, random_state=0)
    lines = [
        f"# Meta-gradient throughput against PyTorch autograd, {date.today()}",
        "",
        f"{len(y)} ratings, {args.n_users} users, {args.n_items} items; support sizes 3-20, the rest is the "
        f"query set; meta-batches of {BATCH}. {os.cpu_count()} cores, {threads} threads for Numba and for "
        f"PyTorch {torch.__version__}, {platform.machine()}. Best of {args.repeat} (the per-task loop: of "
        f"{max(1, args.repeat - 2)}, on {args.torch_tasks} tasks). Ours in float64, PyTorch in float32.",
        "",
        "Tasks per second of the meta-gradient, optimizer step excluded. 'x loop', 'x batched' and 'x strongest' "
        "are our exact second order's speed-ups over PyTorch's exact second order: the per-task loop, the padded "
        "batch, and the better of the flat forms (eager, compiled; compile time excluded).",
        "",
        "| T | k | ours, exact | ours, 1st order | exact/1st-order cost | PyTorch loop | x loop | "
        "PyTorch batched | x batched | PyTorch flat | PyTorch flat, compiled | x strongest | "
        "max rel. gradient difference (float64) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines))
    peaks = {np.float64: gemm_peak(threads, np.float64), np.float32: gemm_peak(threads, np.float32)}
    work = []
    for k in args.factors:
        for n_steps in args.steps:
            problem = Problem(X, y, k, n_steps)
            agreement = check_agreement(problem)
            r = measure(problem, args.torch_tasks, args.repeat, not args.no_compile)
            strongest = np.nanmax([r["flat"], r["compiled"]])
            work.append((n_steps, k, *work_per_task(problem), r["ours_so"], strongest))
            compiled = "n/a" if np.isnan(r["compiled"]) else f"{r['compiled']:,.0f}"
            line = (f"| {n_steps} | {k} | {r['ours_so']:,.0f} | {r['ours_fo']:,.0f} | "
                    f"{r['ours_fo'] / r['ours_so']:.2f}x | {r['loop']:,.0f} | {r['ours_so'] / r['loop']:.0f}x | "
                    f"{r['batched']:,.0f} | {r['ours_so'] / r['batched']:.1f}x | {r['flat']:,.0f} | {compiled} | "
                    f"{r['ours_so'] / strongest:.1f}x | {agreement:.1e} |")
            print(line, flush=True)
            lines.append(line)
    section = [
        "",
        "## Work per task and the fraction of this machine's peak",
        "",
        "Flops and bytes per task of one exact meta-gradient, counted from the maths (the same for every "
        "implementation; `work_per_task` says what is counted), times each one's tasks per second above. Peak: a "
        f"{threads}-thread BLAS matrix product measured in this run, {peaks[np.float64]:.1f} GFLOP/s in float64 "
        f"(ours) and {peaks[np.float32]:.1f} in float32 (PyTorch's).",
        "",
        "| T | k | flops/task | bytes/task | flops/byte | ours (GFLOP/s) | % of float64 peak | "
        "strongest PyTorch (GFLOP/s) | % of float32 peak |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n_steps, k, flops, nbytes, ours, theirs in work:
        section.append(f"| {n_steps} | {k} | {flops:,.0f} | {nbytes:,.0f} | {flops / nbytes:.2f} | "
                       f"{flops * ours / 1e9:.2f} | {100 * flops * ours / 1e9 / peaks[np.float64]:.1f}% | "
                       f"{flops * theirs / 1e9:.2f} | {100 * flops * theirs / 1e9 / peaks[np.float32]:.1f}% |")
    print("\n".join(section), flush=True)
    lines += section
    if args.memory_steps:
        k = args.factors[len(args.factors) // 2]
        section = [
            "",
            f"## Peak memory of one exact meta-gradient over {args.memory_tasks} tasks against T (k = {k})",
            "",
            "Peak resident memory added during the call (the kernel's high-water mark, reset first). Ours keeps the T+1 iterates "
            "of φ per task (O(T·k) each); autograd keeps the graph of every inner step.",
            "",
            "| T | ours (MiB) | PyTorch batched (MiB) |",
            "|---|---|---|",
        ]
        print("\n".join(section), flush=True)
        for n_steps, ours, theirs in memory_rows(args.n_users, args.n_items, k, args.memory_steps,
                                                 args.memory_tasks):
            section.append(f"| {n_steps} | {ours:.1f} | {theirs:.1f} |")
            print(section[-1], flush=True)
        lines += section
    if args.data != "none":
        data = load_movielens(args.data) if args.data else fetch_movielens("100k", source="pypi")
        ours, theirs = svd_fit_times(data, args.repeat)
        section = [
            "",
            "## FactorizationRecommender.fit against Surprise SVD.fit, MovieLens-100k",
            "",
            f"{len(data.y)} ratings; 100 factors, 20 epochs, lr 0.005, reg 0.02 on both (Surprise's defaults); "
            f"best of {args.repeat} after a warm-up.",
            "",
            "| FactorizationRecommender (s) | Surprise SVD (s) | speed-up |",
            "|---|---|---|",
            f"| {ours:.3f} | {theirs:.3f} | {theirs / ours:.1f}x |",
        ]
        print("\n".join(section), flush=True)
        lines += section
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
