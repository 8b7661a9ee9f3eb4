"""Meta-training, search and batch scoring on a Dask cluster: a LocalCluster
of 2 worker processes on this machine (loopback only), started and stopped
here. Run by ``test_distributed.py`` in a child process (see there); run it
alone with ``python -m pytest tests/_distributed_cases.py``."""

import os
import pickle

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")
pd = pytest.importorskip("pandas")

import sklearn_metarec as smr  # noqa: E402
from sklearn_metarec import _kernels as K  # noqa: E402
from sklearn_metarec import distributed as smd  # noqa: E402
from sklearn_metarec.maml import support_bounds  # noqa: E402
from sklearn_metarec.model_selection import ColdStartSplit  # noqa: E402
from sklearn_metarec.datasets import make_ratings  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def ratings():
    return make_ratings(n_users=120, n_items=40, mean_ratings=12, min_ratings=4, random_state=0)


SETTINGS = [
    (smr.MAMLFactorizationRecommender, {}),
    (smr.MAMLFactorizationRecommender, dict(loss="logistic", n_negatives=2, task_weighting="users")),
    (smr.MAMLFactorizationRecommender, dict(loss="bpr", first_order=True)),
    (smr.MetaSGDFactorizationRecommender, {}),
]


@pytest.mark.parametrize("cls, params", SETTINGS)
def test_one_distributed_step_is_the_single_process_step(client, ratings, cls, params):
    X, y = ratings
    if params.get("loss") in ("logistic", "bpr"):
        X, y = X[y >= 4], None
    model = cls(n_factors=3, n_epochs=2, random_state=0, **params).fit(X, y)
    indptr, items, values, weights, *_ = model._log.csr(len(model._user_vocab))
    lo, hi = support_bounds(model.n_support, np.diff(indptr))
    n_items, d = len(model._item_vocab), model.n_factors + 1
    batch = np.random.default_rng(1).permutation(len(model._user_vocab))[:40]
    offsets = np.r_[0, np.cumsum(np.diff(indptr)[batch] * (1 + model._n_neg()))].astype(np.int64)
    outer = K.outer_settings(first_order=model.first_order, hyper=model._learns_hyper,
                             per_rating=model.task_weighting == "ratings")
    args = (batch, lo, hi, 123, offsets, model._theta, n_items, model._alpha(), model._item_reg(items, weights),
            model._inner_settings(), outer)

    def buffers():
        return np.zeros_like(model._theta), np.empty(d + 1), np.empty(n_items, dtype=np.int64), np.zeros(n_items)

    one = buffers()
    loss, n, _ = K.meta_batch_grad(indptr, items, values, weights, *args, *one, np.empty((0, d)),
                                   np.empty((0, d)), *K.no_context(d))
    # The replicas start a step behind: the step also carries the rows that changed.
    model._theta[2 + d :: 3] += 0.01
    shards = smd.TaskShards(client, model, (indptr, items, values, weights), lo, hi)
    model._theta[2 + d :: 3] -= 0.01
    try:
        two = buffers()
        loss_2, n_2 = shards.batch_grad(*args, *two)
        assert shards.bytes_sent > 0 and shards.bytes_received > 0
    finally:
        shards.close()
    assert n_2 == n and sorted(one[2][:n]) == sorted(two[2][:n])
    assert loss_2 == pytest.approx(loss, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(two[0], one[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(two[1], one[1], rtol=1e-12, atol=1e-12)
    rows = one[2][:n]
    np.testing.assert_allclose(two[3][rows], one[3][rows], rtol=1e-12, atol=1e-12)


def test_users_are_spread_over_the_workers():
    counts = np.bincount(smd.owners(np.arange(10_000), 3).astype(np.int64), minlength=3)
    assert counts.min() > 3000


@pytest.mark.parametrize("cls, params", [SETTINGS[0], SETTINGS[3],
                                         (smr.MAMLFactorizationRecommender,
                                          dict(early_stopping=True, n_iter_no_change=2, n_epochs=6))])
def test_a_distributed_fit_is_the_single_process_fit(client, ratings, cls, params):
    X, y = ratings
    params = {"n_factors": 3, "n_epochs": 4, "random_state": 0, **params}
    local = cls(**params).fit(X, y)
    remote = cls(**params).fit(X, y, client=client)
    np.testing.assert_allclose(remote.predict(X), local.predict(X), rtol=0, atol=1e-10)
    assert remote.loss_curve_ == pytest.approx(local.loss_curve_, rel=1e-10)
    # An ordinary estimator afterwards: no trace of the cluster, pickles.
    assert not hasattr(remote, "_shards")
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(remote)).predict(X), remote.predict(X))


def test_partial_fit_on_the_cluster_is_the_single_process_one(client, ratings):
    X, y = ratings
    half = len(y) // 2
    local, remote = (smr.MetaSGDFactorizationRecommender(n_factors=3, random_state=0) for _ in range(2))
    for rows in (slice(None, half), slice(half, None)):
        local.partial_fit(X[rows], y[rows])
        remote.partial_fit(X[rows], y[rows], client=client)
    np.testing.assert_allclose(remote.predict(X), local.predict(X), rtol=0, atol=1e-10)


def test_dask_dataframes_fit_on_the_current_client_and_stream_in_partial_fit(client, ratings):
    X, y = ratings
    frame = pd.DataFrame({"user": X[:, 0], "item": X[:, 1], "rating": y})
    ddf = dd.from_pandas(frame, npartitions=3)
    params = dict(n_factors=3, n_epochs=2, random_state=0)
    local = smr.MAMLFactorizationRecommender(**params).fit(frame[["user", "item"]], frame["rating"])
    remote = smr.MAMLFactorizationRecommender(**params).fit(ddf[["user", "item"]], ddf["rating"])
    pairs = frame[["user", "item"]]
    np.testing.assert_allclose(remote.predict(pairs), local.predict(pairs), atol=1e-10)
    streamed = smr.MAMLFactorizationRecommender(**params).partial_fit(ddf[["user", "item"]], ddf["rating"])
    serial = smr.MAMLFactorizationRecommender(**params)
    for part in ddf.partitions:
        part = part.compute()
        serial.partial_fit(part[["user", "item"]], part["rating"])
    np.testing.assert_allclose(streamed.predict(pairs), serial.predict(pairs), atol=1e-10)


def test_dask_dataframes_build_their_vocabularies_on_the_cluster(client, ratings):
    X, y = ratings
    # String ids, not in sorted order of appearance: the codes must still
    # follow the in-memory vocabulary's order.
    frame = pd.DataFrame({"user": [f"u{u * 7 % 120:03d}" for u in X[:, 0]],
                          "item": [f"i{i * 11 % 40:02d}" for i in X[:, 1]], "rating": y})
    ddf = dd.from_pandas(frame, npartitions=4)
    codes, (users, items) = smd.encoded(ddf[["user", "item"]])
    codes = codes.compute()
    assert codes["user"].dtype == np.int64 and codes["item"].dtype == np.int64
    np.testing.assert_array_equal(users.ids[codes["user"].to_numpy()], frame["user"].to_numpy())
    np.testing.assert_array_equal(items.ids[codes["item"].to_numpy()], frame["item"].to_numpy())
    params = dict(n_factors=3, n_epochs=2, random_state=0)
    local = smr.MAMLFactorizationRecommender(**params).fit(frame[["user", "item"]], frame["rating"])
    remote = smr.MAMLFactorizationRecommender(**params).fit(ddf[["user", "item"]], ddf["rating"])
    np.testing.assert_array_equal(remote.user_ids_, local.user_ids_)
    np.testing.assert_array_equal(remote.item_ids_, local.item_ids_)
    pairs = frame[["user", "item"]]
    np.testing.assert_allclose(remote.predict(pairs), local.predict(pairs), atol=1e-10)
    np.testing.assert_array_equal(remote.recommend(["u003", "u100"], n=5)[0],
                                  local.recommend(["u003", "u100"], n=5)[0])
    # A missing id is refused, as in memory, and nothing is fitted.
    holes = frame.astype({"item": object})
    holes.loc[5, "item"] = None
    model = smr.MAMLFactorizationRecommender(**params)
    holes = dd.from_pandas(holes, npartitions=2)
    with pytest.raises(ValueError, match="item id column"):
        model.fit(holes[["user", "item"]], holes["rating"])
    assert not hasattr(model, "_theta")


def test_batch_scoring_of_dask_collections(client, ratings):
    X, y = ratings
    model = smr.MAMLFactorizationRecommender(n_factors=3, n_epochs=2, random_state=0).fit(X, y)
    frame = pd.DataFrame({"user": X[:, 0], "item": X[:, 1]})
    scores = smd.predict(model, dd.from_pandas(frame, npartitions=4)).compute()
    np.testing.assert_array_equal(scores.to_numpy(), model.predict(X))
    users = np.unique(X[:, 0])[:25]
    lists = smd.recommend(model, dd.from_pandas(pd.Series(users, name="user"), npartitions=3), n=5).compute()
    items, item_scores = model.recommend(users, n=5)
    assert list(lists.columns) == ["user", "rank", "item", "score"]
    np.testing.assert_array_equal(lists["item"].to_numpy(), items.reshape(-1))
    np.testing.assert_array_equal(lists["score"].to_numpy(), item_scores.reshape(-1))
    np.testing.assert_array_equal(lists["user"].to_numpy(), np.repeat(users, 5))


def test_grid_search_on_the_cluster_with_joblibs_dask_backend(client, ratings):
    from joblib import parallel_backend
    from sklearn.model_selection import GridSearchCV

    X, y = ratings
    search = GridSearchCV(smr.MAMLFactorizationRecommender(n_factors=3, n_epochs=2, random_state=0),
                          {"meta_lr": [0.003, 0.03]}, cv=ColdStartSplit(n_splits=2, n_support=5, random_state=0))
    serial = GridSearchCV(**search.get_params(deep=False)).fit(X, y)
    with parallel_backend("dask"):
        search.fit(X, y)
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"])
    # Each worker runs the kernels on its own share of the cores (1 thread here).
    workers = sorted(client.scheduler_info()["workers"])
    assert [client.submit(smd._worker_threads, workers=[w], pure=False).result() for w in workers] == [1, 1]
    assert smd._worker_threads() is None  # not in a worker: the caller's n_jobs rules


@pytest.mark.parametrize("cls, fit_params", [
    (smr.ReptileFactorizationRecommender, {}),
    (smr.MAMLFactorizationRecommender,
     {"item_features": smr.FeatureTable(np.eye(2)[np.arange(40) % 2], ids=np.arange(40))}),
])
def test_what_is_not_distributed_says_so_and_changes_nothing(client, ratings, cls, fit_params):
    X, y = ratings
    model = cls(n_factors=3, n_epochs=1, random_state=0)
    with pytest.raises(TypeError, match="Dask"):
        model.fit(X, y, client=client, **fit_params)
    assert not hasattr(model, "_theta")


def test_the_readme_example_runs(client, monkeypatch):
    # The README's "Scaling out" block, on this module's cluster rather than
    # a second one of its own (its LocalCluster(...) is this one).
    import contextlib
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(r"## Scaling out.*?```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.setattr(distributed, "LocalCluster", lambda **kwargs: contextlib.nullcontext(client.cluster))
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)
    lists = namespace["lists"]
    assert len(lists) == 3000 and list(lists.columns) == ["user", "rank", "item", "score"]
    assert (lists.groupby("user")["score"].apply(lambda s: s.is_monotonic_decreasing)).all()


def test_the_scaling_benchmark_measures_fits_steps_and_writes_its_model(client, monkeypatch, tmp_path):
    # benchmarks/dask_cluster.py's parts, on this module's cluster (its
    # main() starts clusters of its own).
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    import dask_cluster

    X, y = make_ratings(n_users=60, n_items=30, mean_ratings=10, random_state=0)
    seconds, epochs, model = dask_cluster._fit(X, y, dict(n_factors=2, n_epochs=1, random_state=0), client)
    assert 0 < epochs < seconds and model.n_iter_ == 1
    sent, received, step, kernel, diff = dask_cluster._step_bytes(client, X, y, 2, 8, n_steps=2)
    assert min(sent, received, step, kernel, diff) > 0
    # Each worker holds part of the log (24 bytes a rating), together all of it.
    X_log, y_log = make_ratings(n_users=300, n_items=30, mean_ratings=30, random_state=0)
    shard_bytes = [size for size, _ in dask_cluster.worker_memory(client, X_log, y_log, 2)]
    assert len(shard_bytes) == 2 and sum(shard_bytes) > 24 * len(y_log) > max(shard_bytes)
    # The local-steps section's parts: the cores' ceiling without Dask, the
    # accuracy triple, and a section written over its old self.
    # (Its two processes are the benchmark's to start: here, the timed part in this one.)
    import threading

    from sklearn_metarec.distributed import _worker_copy

    indptr, items, values, weights, *_ = model._log.csr(len(model._user_vocab))
    lo, hi = support_bounds(model.n_support, np.diff(indptr))
    seconds = dask_cluster._timed_half_epoch(_worker_copy(model), (indptr, items, values, weights), lo, hi,
                                             np.arange(30), model._item_reg(items, weights), threading.Barrier(1))
    assert 0 < seconds < 10
    rmse, ndcg, recall = dask_cluster._accuracy(model, X[:200], y[:200])
    assert 0 < rmse < 3 and 0 <= ndcg <= 1 and 0 <= recall <= 1
    out = tmp_path / "results.md"
    out.write_text("# Title\n\nTable\n\nLocal steps: old\n\nWorkers' memory: kept\n")
    dask_cluster._append_section(out, "\nLocal steps", ["", "Local steps: new"])
    assert out.read_text() == "# Title\n\nTable\n\nLocal steps: new\n\nWorkers' memory: kept\n"
    # Local steps' model: rows 8/32/128 workers × H 128/1024 per size; more
    # workers, more bytes through the client per round.
    local = dask_cluster._local_model_lines([(1e5, 0.05, 0.02, 100), (4e5, 0.06, 0.02, 100)])
    rows = [line.split("|") for line in local if line.startswith("| 1e+")]
    assert len(rows) == 12
    moved = [float(row[5].replace(",", "")) for row in rows[:6]]
    assert moved[0] < moved[2] < moved[4] and all(float(row[7].strip().rstrip("x")) > 0 for row in rows)
    steps = {(2000, 32, 32): (0.03, 0.006, 0.001), (8000, 32, 32): (0.05, 0.006, 0.004)}
    lines = dask_cluster._model_lines(steps, {(2000, 32, 32): 1e6, (8000, 32, 32): 2e6})
    rows = [line.split("|") for line in lines if line.startswith("| 1e+")]
    assert len(rows) == 6
    # Each replica receives every moved row: more workers, more bytes and a
    # longer step, a lower speed-up.
    for size in (rows[:3], rows[3:]):
        moved, step, speedup = ([float(row[col].strip().rstrip("x").replace(",", "")) for row in size]
                                for col in (4, 5, 6))
        assert moved[0] < moved[1] < moved[2] and step[0] < step[1] < step[2]
        assert speedup == sorted(speedup, reverse=True) and np.isfinite(speedup).all()


@pytest.mark.parametrize("params", [dict(meta_batch_size=8), dict(early_stopping=True, n_iter_no_change=2,
                                                                     n_epochs=6, meta_batch_size=8)])
def test_local_steps_on_one_worker_are_the_single_process_fit(ratings, params):
    # One worker's local steps are the one-process steps: the same batches,
    # draws and Adam, in rounds; then its Adam state comes back, so that
    # partial_fit goes on as in one process.
    X, y = ratings
    params = {"n_factors": 3, "n_epochs": 4, "random_state": 0, **params}
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") \
            as cluster, distributed.Client(cluster, set_as_default=False) as one:
        local = smr.MAMLFactorizationRecommender(**params).fit(X, y)
        remote = smr.MAMLFactorizationRecommender(**params).fit(X, y, client=one, local_steps=3)
        np.testing.assert_allclose(remote.predict(X), local.predict(X), rtol=0, atol=1e-10)
        assert remote.loss_curve_ == pytest.approx(local.loss_curve_, rel=1e-10)
        assert remote._adam_step == local._adam_step
        np.testing.assert_array_equal(remote._adam_row_steps, local._adam_row_steps)
        np.testing.assert_allclose(remote._adam_m, local._adam_m, rtol=0, atol=1e-12)
        local.partial_fit(X[:300], y[:300])
        remote.partial_fit(X[:300], y[:300], client=one, local_steps=5)
        np.testing.assert_allclose(remote.predict(X), local.predict(X), rtol=0, atol=1e-10)
    assert not hasattr(remote, "_shards")


@pytest.mark.parametrize("cls", [smr.MAMLFactorizationRecommender, smr.MetaSGDFactorizationRecommender])
def test_a_round_of_local_steps_averages_the_workers_moves(client, cls):
    # One round (every worker's share fits in it), against a reference in
    # this process: two copies of the model each take the steps of one
    # worker's users; the head (and α, λ) is their task-weighted mean, an
    # item row the mean over the copies that moved it.
    import copy

    # A long catalogue, so that some rows move on one worker only.
    X, y = make_ratings(n_users=80, n_items=400, mean_ratings=6, min_ratings=4, random_state=1)
    model = cls(n_factors=3, n_epochs=2, meta_batch_size=16, random_state=0).fit(X, y)
    indptr, items, values, weights, *_ = model._log.csr(len(model._user_vocab))
    lo, hi = support_bounds(model.n_support, np.diff(indptr))
    n_items, d = len(model._item_vocab), model.n_factors + 1
    item_reg = model._item_reg(items, weights)
    order = np.random.default_rng(2).permutation(len(model._user_vocab))
    owner = smd.owners(order, 2).astype(np.int64)
    start = copy.deepcopy(model)
    shards = smd.TaskShards(client, model, (indptr, items, values, weights), lo, hi, local_steps=100)
    try:
        losses = shards.local_epoch(model, order, 7, item_reg)
    finally:
        shards.close()
    assert len(losses) > 2 and np.isfinite(losses).all()
    moved, tasks, copies = [], [], []
    for k in range(2):
        mine = order[owner == k]
        worker = copy.deepcopy(start)
        worker.meta_batch_size = max(1, round(16 * len(mine) / len(order)))
        assert len(mine) <= 100 * worker.meta_batch_size  # one round
        worker._meta_epoch(indptr, items, values, weights, mine, lo, hi, 7, item_reg)
        copies.append(worker)
        tasks.append(len(mine))
        rows = K.unpack(worker._theta, n_items, d)
        before = K.unpack(start._theta, n_items, d)
        moved.append((rows[1] != before[1]) | (rows[2] != before[2]).any(axis=1))
    share = np.array(tasks) / sum(tasks)
    np.testing.assert_allclose(model._theta[: 1 + d], share @ [c._theta[: 1 + d] for c in copies], atol=1e-12)
    if cls is smr.MetaSGDFactorizationRecommender:
        np.testing.assert_allclose(model._hyper, share @ [c._hyper for c in copies], atol=1e-12)
        assert not np.allclose(model._hyper, start._hyper)
    got, parts = K.unpack(model._theta, n_items, d), [K.unpack(c._theta, n_items, d) for c in copies]
    both, only = moved[0] & moved[1], [moved[0] & ~moved[1], moved[1] & ~moved[0]]
    assert both.any() and only[0].any() and only[1].any()
    for block in (1, 2):
        expected = (share[0] * parts[0][block][both] + share[1] * parts[1][block][both])
        np.testing.assert_allclose(got[block][both], expected, atol=1e-12)
        for k in range(2):
            np.testing.assert_allclose(got[block][only[k]], parts[k][block][only[k]], atol=1e-12)
        untouched = ~(moved[0] | moved[1])
        np.testing.assert_array_equal(got[block][untouched], K.unpack(start._theta, n_items, d)[block][untouched])


def test_local_steps_on_two_workers_fit_an_ordinary_model(client, ratings):
    X, y = ratings
    params = dict(n_factors=3, n_epochs=6, meta_batch_size=16, random_state=0)
    exact = smr.MetaSGDFactorizationRecommender(**params).fit(X, y)
    local = smr.MetaSGDFactorizationRecommender(**params).fit(X, y, client=client, local_steps=4)
    assert len(local.loss_curve_) == 6 and np.isfinite(local.loss_curve_).all()
    assert local._adam_step > 0 and local._hyper_t > 0
    # Close to the exact fit, not equal to it.
    gap = np.abs(local.predict(X) - exact.predict(X))
    assert 1e-6 < gap.mean() < 0.2
    assert not hasattr(local, "_shards")
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(local)).predict(X), local.predict(X))
    again = smr.MetaSGDFactorizationRecommender(**params).fit(X, y, client=client, local_steps=4)
    np.testing.assert_array_equal(again.predict(X), local.predict(X))  # same random_state, same model


def test_a_worker_lost_mid_fit_is_a_clear_error(client, ratings, monkeypatch):
    # Last in the module: it kills a worker (the nanny starts another). Local
    # steps (here) and exact steps call the workers through the same _call.
    X, y = ratings
    calls = []
    call = smd.TaskShards._call

    def kill_on_third(self, *args):
        calls.append(1)
        if len(calls) == 3:
            victim = sorted(client.scheduler_info()["workers"])[1]
            try:
                client.run(os._exit, 1, workers=[victim])
            except Exception:  # the worker's connection closes as it exits
                pass
        return call(self, *args)

    monkeypatch.setattr(smd.TaskShards, "_call", kill_on_third)
    model = smr.MAMLFactorizationRecommender(n_factors=3, n_epochs=3, meta_batch_size=8, random_state=0)
    with pytest.raises(RuntimeError, match="Dask worker failed or was lost"):
        model.fit(X, y, client=client, local_steps=4)
    assert len(calls) >= 3
    assert not hasattr(model, "_theta") and not hasattr(model, "_shards")
    client.wait_for_workers(2, timeout=60)
