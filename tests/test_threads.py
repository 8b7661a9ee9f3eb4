"""Threads: serving calls from many Python threads equal serial ones, on
every threading layer; small calls run on the calling thread; the OpenMP
pool waits passively; joblib workers get their share of the cores."""

import io
import os
import subprocess
import sys
import threading

import numba
import numpy as np
import pytest

from sklearn_metarec import MAMLFactorizationRecommender
from sklearn_metarec._base import SERIAL_WORK, numba_threads
from sklearn_metarec.datasets import make_ratings

CONCURRENT = r"""
import pickle, sys, threading
import numpy as np
import numba
from sklearn_metarec import MAMLFactorizationRecommender
from sklearn_metarec.datasets import make_ratings

X, y = make_ratings(n_users=200, n_items=60, random_state=0)
model = MAMLFactorizationRecommender(n_factors=4, n_epochs=2, random_state=0).fit(X, y)
serial = pickle.loads(pickle.dumps(model))
users = np.unique(X[:, 0])
probe = X[:2000]  # above the serial threshold: parallel kernels
new = [(np.column_stack([np.full(3, 10**6 + t), X[t * 3:(t + 1) * 3, 1]]), np.array([4.0, 2.0, 5.0]))
       for t in range(8)]
for Xb, yb in new:
    serial.fold_in(Xb, yb)
expected = serial.predict(probe), serial.recommend(users, n=20)
barrier = threading.Barrier(8)
results = [None] * 8

def work(t):
    barrier.wait()
    out = []
    for _ in range(5):
        out.append((model.predict(probe), model.recommend(users, n=20)))
    model.fold_in(*new[t])
    results[t] = out

threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for out in results:
    for p, (ids, scores) in out:
        # Each read sees the model before or after some fold-ins: known
        # users and the probe's rows are unchanged by them.
        np.testing.assert_array_equal(p, expected[0])
        np.testing.assert_array_equal(ids, expected[1][0])
check = np.column_stack([np.repeat(10**6 + np.arange(8), 3), np.concatenate([b[0][:, 1] for b in new])])
np.testing.assert_array_equal(model.predict(check), serial.predict(check))
print("layer", numba.threading_layer())
"""


@pytest.mark.parametrize("layer", ["default", "workqueue"])
def test_concurrent_calls_equal_serial_ones_on_every_layer(layer):
    # Numba's workqueue layer aborted the process ("Concurrent access has
    # been detected") when two threads launched parallel kernels at once.
    env = {**os.environ, "NUMBA_THREADING_LAYER": layer, "NUMBA_NUM_THREADS": "2"}
    result = subprocess.run([sys.executable, "-c", CONCURRENT], capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    if layer == "workqueue":
        assert "layer workqueue" in result.stdout


def test_small_calls_run_on_the_calling_thread():
    counts = []
    with numba_threads(None, work=SERIAL_WORK - 1):
        counts.append(numba.get_num_threads())
    with numba_threads(None, work=SERIAL_WORK):
        counts.append(numba.get_num_threads())
    with numba_threads(2, work=10):
        counts.append(numba.get_num_threads())
    assert counts == [1, numba.config.NUMBA_NUM_THREADS, 1]


def test_thread_counts_are_per_thread_and_restored():
    before = numba.get_num_threads()
    seen = []

    def other():
        seen.append(numba.get_num_threads())

    with numba_threads(1):
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert numba.get_num_threads() == before
    assert seen == [numba.config.NUMBA_NUM_THREADS]  # another thread is not limited


def test_openmp_waits_passively_unless_told_otherwise():
    code = "import os, sklearn_metarec; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "PASSIVE"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**env, "OMP_WAIT_POLICY": "ACTIVE"})
    assert out.stdout.strip() == "ACTIVE"


def _worker_threads(_):
    import numba

    X, y = make_ratings(n_users=30, n_items=20, random_state=0)
    model = MAMLFactorizationRecommender(n_factors=2, n_epochs=1, random_state=0).fit(X, y)
    return numba.config.NUMBA_NUM_THREADS, float(model.predict(X[:1])[0])


def test_joblib_workers_share_the_cores():
    # GridSearchCV(n_jobs=N) runs fits in joblib's worker processes, which
    # joblib starts with NUMBA_NUM_THREADS = cores // N: no worker starts a
    # pool of every core.
    from joblib import Parallel, cpu_count, delayed

    out = Parallel(n_jobs=2)(delayed(_worker_threads)(i) for i in range(2))
    assert all(n == max(cpu_count() // 2, 1) for n, _ in out), out
    assert out[0][1] == out[1][1]


def test_first_use_says_the_kernels_compile(tmp_path, monkeypatch):
    import io

    from sklearn_metarec._kernels import _jit

    monkeypatch.setattr(_jit, "_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_jit, "_noticed", [])
    out = io.StringIO()
    _jit.first_use_notice(out)
    _jit.first_use_notice(out)
    assert out.getvalue().count("compiling the Numba kernels for first use") == 1  # once per process
    (tmp_path / "kernel.nbi").write_bytes(b"")
    monkeypatch.setattr(_jit, "_noticed", [])
    quiet = io.StringIO()
    _jit.first_use_notice(quiet)
    assert quiet.getvalue() == ""  # a filled cache loads quickly: nothing to say


@pytest.mark.parametrize("cached", [False, True])
def test_the_compile_notice_appears_only_with_an_empty_cache(monkeypatch, tmp_path, cached):
    # Numba keeps its index files in a folder per module under the cache
    # folder: a cache holding them must not be taken for an empty one.
    from sklearn_metarec._kernels import _jit

    if cached:
        (tmp_path / "_kernels_0123").mkdir()
        (tmp_path / "_kernels_0123" / "maths.adapt_users-10.py311.nbi").write_bytes(b"")
    monkeypatch.setattr(_jit, "_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_jit, "_noticed", [])
    stream = io.StringIO()
    _jit.first_use_notice(stream)
    _jit.first_use_notice(stream)  # once per process at most
    assert stream.getvalue().count("compiling the Numba kernels") == (0 if cached else 1)
