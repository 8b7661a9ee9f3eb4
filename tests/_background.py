"""Child processes that tests start at collection and collect later.

Some tests run a slow child process: the bounds-checked kernels compile
anew (about a minute on 2 cores), and the fuzz drivers run
hundreds of cases. Each is mostly one busy thread, while the rest of the
suite leaves the second core idle, so ``conftest.py`` starts them, one at a
time in the order listed, as soon as the tests are collected, and a test
waits for its child's outcome. A test run on its own runs its child itself.

A module lists its children in ``BACKGROUND``, a function of a scratch
folder returning ``{name: (argv, env or None, timeout in seconds)}``.
"""

import subprocess
import threading
import time
import traceback

import pytest

RUNNER = pytest.StashKey()


class Runner:
    """Runs the jobs in order on one thread; ``result(name)`` waits for one."""

    def __init__(self, jobs, folder):
        self.jobs, self.folder = jobs, folder
        self.done = {name: threading.Event() for name in jobs}
        self.results = {}
        self.seconds = {}
        self.stopped = False
        self.current = None
        self.lock = threading.Lock()
        self.started = set()  # jobs this runner has begun
        self.claimed = set()  # jobs a waiting test runs itself (see ``claim``)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        for name, job in self.jobs.items():
            with self.lock:
                if name in self.claimed:
                    continue
                self.started.add(name)
            # Once this runner's thread died on an exception and the test
            # waiting on its job hung; so a job that raises is tried again,
            # and a second failure is the job's result, which the test reports.
            try:
                for attempt in (1, 2):
                    if self.stopped:
                        break
                    try:
                        start = time.perf_counter()
                        self.results[name] = run(*job, started=self._started)
                        self.seconds[name] = time.perf_counter() - start
                        break
                    except Exception:
                        if attempt == 2:
                            raise
            except BaseException:
                self.results[name] = (-1, "", f"the background runner could not run {name}:\n"
                                      + traceback.format_exc())
            finally:
                self.done[name].set()

    def _started(self, process):
        self.current = process
        if self.stopped:
            process.kill()

    def result(self, name):
        self.done[name].wait()
        return self.results.get(name)

    def claim(self, name):
        """Whether a test that reached ``name`` before this runner did may run
        it itself: the main lane, done with its own tests, takes a job still
        queued here rather than wait while this lane works through the ones
        before it."""
        with self.lock:
            if name in self.started or name in self.claimed or self.stopped:
                return False
            self.claimed.add(name)
            return True

    def record(self, name, result, seconds):
        self.results[name] = result
        self.seconds[f"{name} (in the main lane)"] = seconds
        self.done[name].set()

    def stop(self):
        """Kill the running child (an interrupted session) and start no other."""
        self.stopped = True
        if self.current is not None:
            self.current.kill()


def run(argv, env, timeout, started=None):
    """(returncode, stdout, stderr); returncode None if it ran past
    ``timeout`` (it is then killed). ``started`` gets the process."""
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as process:
        if started is not None:
            started(process)
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            return None, out, err
    return process.returncode, out, err


def outcome(request, module, name, folder):
    """(returncode, stdout, stderr, the scratch folder it used) of
    ``module``'s child ``name``: from the runner started at collection, or
    run now, in ``folder``, if there is none."""
    runner = request.config.stash.get(RUNNER, None)
    if runner is not None and name in runner.jobs:
        if runner.claim(name):
            start = time.perf_counter()
            result = run(*module.BACKGROUND(runner.folder)[name])
            runner.record(name, result, time.perf_counter() - start)
            return (*result, runner.folder)
        result = runner.result(name)
        if result is not None:
            return (*result, runner.folder)
    return (*run(*module.BACKGROUND(folder)[name]), folder)


# Kernels the suite first needs a minute or more into a run, compiled by a
# child into the package's kernel cache while the suite compiles the
# others: on a cold cache each process would otherwise compile them in
# turn. Numba writes cache entries atomically; a kernel the suite reaches
# first is simply compiled twice.
PREWARM = r"""
import numpy as np
import sklearn_metarec as smr
from sklearn_metarec import _kernels as K
from sklearn_metarec.datasets import make_ratings

# Fold-in first, called directly (the suite needs it soonest), with the
# argument types the estimators pass.
d, n_items = 4, 3
K.adapt_users(np.array([0, 2], dtype=np.int64), np.array([0, 2], dtype=np.int64), np.ones(2), np.ones(2),
              np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), 0, np.zeros(1 + d + n_items * d),
              n_items, np.full(d, 0.3), K.inner_settings(lam=0.0, kappa=0.0, n_steps=1, logistic=False, n_neg=0),
              np.empty((1, d)), np.empty((0, d)), *K.no_context(d)[:2])

X, y = make_ratings(n_users=30, n_items=15, mean_ratings=6, min_ratings=3, random_state=0)
new = np.column_stack([np.repeat([10**6], 3), X[:3, 1]])
# Not the logistic fold-in: the suite's other lane, which reaches it late,
# then ends about when this one does.
reptile = smr.ReptileFactorizationRecommender(n_factors=3, n_epochs=1)
for model in (reptile, smr.FactorizationRecommender(n_factors=3, n_epochs=1)):
    model.fit(X, y)
    model.fold_in(new, y[:3])
# Then what the suite first meets in its benchmarks' tests, after a minute
# and a half: explanations and item features.
reptile.explain(X[:2], method="influence")
genres = smr.FeatureTable(np.eye(3)[np.arange(15) % 3], ids=np.arange(15))
smr.ReptileFactorizationRecommender(n_factors=3, n_epochs=1).fit(X, y, item_features=genres)
"""
PREWARMED = ("reptile_batch", "adapt_users", "ridge_users", "influence_users", "add_rows_times",
             "rows_transpose_times")


def prewarm_jobs():
    """``{"kernels": job}`` when the package's kernel cache holds none of
    ``PREWARMED`` yet, else nothing."""
    import sys
    from pathlib import Path

    from sklearn_metarec._kernels import _jit

    if _jit._CACHE_DIR is None or any(Path(_jit._CACHE_DIR).rglob("*reptile_batch*.nbi")):
        return {}
    return {"kernels": ([sys.executable, "-c", PREWARM], None, 600)}


def prewarm_report():
    """How many of ``PREWARMED`` this process loaded from the cache rather
    than compiled (None if it used none of them)."""
    from sklearn_metarec import _kernels

    used = loaded = 0
    for name in PREWARMED:
        stats = getattr(_kernels, name).stats
        if stats.cache_hits or stats.cache_misses:
            used += 1
            loaded += not stats.cache_misses
    return (loaded, used) if used else None
