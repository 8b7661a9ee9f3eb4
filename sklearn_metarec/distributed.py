"""Meta-training and batch scoring on a Dask cluster.

Using it needs the ``dask`` extra (``pip install sklearn-metarec[dask]``):
Dask's ``distributed`` scheduler, ``dask.dataframe`` and pandas. Importing
it does not: the estimators call its helpers for Dask input.

Meta-training
-------------
``MAMLFactorizationRecommender.fit(X, y, client=client)`` (and Meta-SGD's)
splits the users among the cluster's workers by a hash of their codes.
Each worker holds an actor (:class:`_Shard`) with its users' ratings only
and a replica of the model's parameters. Every meta-batch is drawn on the
client exactly as in one process; each worker computes the exact
meta-gradient of its share of the batch with the package's kernel, and the
client sums the shares, weighting each by its part of the batch (its query
weight, or its task count with ``task_weighting="tasks"``), then takes the
Adam step. Before the next batch each worker receives (μ, φ₀) and only the
item rows that the step changed (lazy Adam moves the batch's rows alone),
so that the bytes sent per step follow the batch, not the catalogue.

What is exact: the summed gradient is the single-process gradient of the
same batch up to the order of floating-point sums (equal to 1e-12,
tested), and the fit follows the same random draws. Nothing is
approximated: with ``local_steps=1`` (the default) the workers never step
on their own.

Local steps (opt-in, approximate)
---------------------------------
``fit(X, y, client=client, local_steps=H)`` with H > 1 trades exactness
for fewer round trips, as local SGD and federated averaging do. Each
worker keeps a copy of the estimator's optimizer and takes H Adam steps
on meta-batches of its own users (its share of ``meta_batch_size``, the
users in the epoch's order), then the client averages what moved: (μ, φ₀)
(and Meta-SGD's α, λ) over the workers, weighted by their tasks in the
round, and each item row over the workers that moved it, so that a row
one worker alone saw keeps its full step (as lazy Adam's would). Every
worker then starts the next round from that average. An epoch is then
the same number of meta-steps as in one process, each of a worker's
share, and one round trip per H of them. Task draws follow the epoch's
seed as in one process; with one worker, local steps are exactly the
single-process fit (tested). At the end, the client takes the workers'
Adam moments averaged the same way, so that ``partial_fit`` continues
from them.

A Dask DataFrame's id vocabularies are built on the cluster and its
partitions encoded there (:func:`encoded`); the client receives the
distinct ids once and the ratings as codes. It keeps the rating log, as
the fitted estimator does in one process (for early stopping, adapting
the known users after training, and serving); a worker's memory is its
share of the log plus the item table.

Batch scoring
-------------
:func:`predict` and :func:`recommend` score a Dask collection partition by
partition with a fitted estimator (as dask-ml's ``ParallelPostFit`` does),
lazily, and return Dask collections.
"""

import numbers
import time

import numpy as np
from sklearn.utils.validation import check_is_fitted

from . import _kernels as K
from ._base import numba_threads

# Knuth's multiplicative hash: consecutive user codes spread over workers.
_HASH = np.uint64(2654435761)


def owners(user_codes, n_workers):
    """The worker (0 .. n_workers − 1) that holds each user code."""
    return ((np.asarray(user_codes, dtype=np.uint64) * _HASH) >> np.uint64(7)) % np.uint64(n_workers)


def _write(theta, n_items, d, head, rows, values):
    """θ's head (μ, φ₀) ← ``head`` and its item rows ``rows`` ← their
    (b_i, q_i) ``values``: how a replica (or the client) takes an update."""
    _, bi, Q = K.unpack(theta, n_items, d)
    theta[: 1 + d] = head
    bi[rows] = values[:, 0]
    Q[rows] = values[:, 1:]


def _rows(theta, n_items, d, rows):
    """The (b_i, q_i) of the item rows ``rows`` of θ (or of a vector laid
    out as θ), one row each."""
    _, bi, Q = K.unpack(theta, n_items, d)
    return np.column_stack([bi[rows], Q[rows]])


class _Shard:
    """A worker's users: their ratings as a CSR over every user code (other
    users' rows empty, so codes and random draws match the client's), and a
    replica of the model's parameter vector θ."""

    def __init__(self, indptr, items, ratings, weights, lo, hi, theta, n_items, n_neg, model=None):
        self.csr = (indptr, items, ratings, weights)
        self.lo, self.hi = lo, hi
        self.model = model  # for local steps: the estimator's optimizer, with θ
        self.theta = theta if model is None else model._theta
        self.n_items, self.n_neg = n_items, n_neg
        self.item_reg = None
        _heap_for_batches()

    def nbytes(self):
        """Bytes of the shard's arrays (its share of the log and θ)."""
        return sum(a.nbytes for a in (*self.csr, self.lo, self.hi, self.theta))

    def grad(self, batch, seed, head, changed, values, item_reg, alpha, inner, outer):
        """The meta-gradient of the tasks of ``batch`` (this worker's part
        of a meta-batch, in batch order) after the client's update: θ's head
        (μ, φ₀) and the item rows ``changed`` (their (b_i, q_i) in
        ``values``). Returns (loss, W, head's gradient, α/λ gradient, rows,
        their (b_i, q_i) gradients, their penalty coefficients), or None
        for an empty part (the replica is still brought up to date)."""
        theta, n_items = self.theta, self.n_items
        d = alpha.shape[0]
        _write(theta, n_items, d, head, changed, values)
        if item_reg is not None:
            self.item_reg = item_reg
        if not len(batch):
            return None
        indptr = self.csr[0]
        counts = (indptr[batch + 1] - indptr[batch]) * (1 + self.n_neg)
        offsets = np.zeros(len(batch) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        grad = np.empty_like(theta)
        grad_hyper = np.empty(d + 1)
        rows = np.empty(n_items, dtype=np.int64)
        pen_rows = np.empty(n_items)
        empty = np.empty((0, d))
        with numba_threads(_worker_threads()):
            loss, n, w_total = K.meta_batch_grad(
                *self.csr, batch, self.lo, self.hi, seed, offsets, theta, n_items, alpha, self.item_reg, inner,
                outer, grad, grad_hyper, rows, pen_rows, empty, empty, *K.no_context(d))
        rows = rows[:n].copy()
        return loss, w_total, grad[: 1 + d].copy(), grad_hyper, rows, _rows(grad, n_items, d, rows), pen_rows[rows]

    def local(self, head, changed, values, hyper, chunk, seed, batch_size, item_reg):
        """Apply the client's average of the last round (θ's head, the item
        rows ``changed`` and their (b_i, q_i) ``values``, Meta-SGD's
        ``hyper``), then take the Adam steps of the meta-batches of
        ``chunk`` (this worker's users of the round, in epoch order,
        ``batch_size`` at a time). Returns (their losses, the number of
        tasks, the new head, the rows moved, their values, the new hyper,
        the seconds of the steps), or None for an empty chunk."""
        model, theta, n_items = self.model, self.theta, self.n_items
        d = model.n_factors + 1
        _write(theta, n_items, d, head, changed, values)
        if hyper is not None:
            model._hyper[:] = hyper
        if not len(chunk):
            return None
        steps_before = model._adam_row_steps.copy()
        model.meta_batch_size = batch_size
        start = time.perf_counter()
        with numba_threads(_worker_threads()):
            losses = model._meta_epoch(*self.csr, chunk, self.lo, self.hi, seed, item_reg)
        seconds = time.perf_counter() - start
        rows = np.flatnonzero(model._adam_row_steps != steps_before)
        return (losses, len(chunk), theta[: 1 + d].copy(), rows, _rows(theta, n_items, d, rows),
                getattr(model, "_hyper", None), seconds)

    def optimizer(self):
        """The worker's Adam state, for the client to take over at the end."""
        model = self.model
        names = ["_adam_m", "_adam_v", "_adam_v_items", "_adam_row_steps", "_adam_step", "_hyper_m", "_hyper_v",
                 "_hyper_t"]
        return {name: getattr(model, name) for name in names if hasattr(model, name)}


# What a worker's local steps never read: the rating log (a worker has its
# own share), the adapted users, the random stream (the client draws) and
# the lock; the rest of the estimator is small (parameters and Adam state).
_CLIENT_ONLY = ("_log", "_user_buf", "_user_vocab", "_rng", "_lock", "_shards", "loss_curve_")


def _worker_copy(model):
    """The estimator as a worker's local steps need it (see _CLIENT_ONLY)."""
    copy = object.__new__(type(model))
    copy.__dict__.update((k, v) for k, v in model.__dict__.items() if k not in _CLIENT_ONLY)
    return copy


def _average_rounds(parts, d):
    """The client's average of a round (see the module's docstring):
    ``parts`` holds each worker's (tasks, head, rows, row values, hyper).
    Returns (head, rows moved by any worker, their averaged values, hyper
    or None): the head and hyper weighted by tasks over the workers, each
    row by tasks over the workers that moved it."""
    n = np.array([part[0] for part in parts], dtype=float)
    share = n / n.sum()
    head = sum(s * part[1] for s, part in zip(share, parts))
    hyper = None if parts[0][4] is None else sum(s * part[4] for s, part in zip(share, parts))
    rows = np.unique(np.concatenate([part[2] for part in parts]))
    sums = np.zeros((len(rows), d))
    totals = np.zeros(len(rows))
    for n_k, part in zip(n, parts):  # a worker lists a row once: plain indexed adds
        where = np.searchsorted(rows, part[2])
        sums[where] += n_k * part[3].reshape(-1, d)
        totals[where] += n_k
    return head, rows, sums / totals[:, None], hyper


def _heap_for_batches():
    """Serve the kernels' per-batch arrays from the heap in this worker.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which
    also pins glibc's mmap threshold at 128 KiB: every array of a meta-batch
    over that (about 1 MiB of task entries at k = 32) was then mapped,
    faulted in page by page and unmapped at each call, and the kernels ran
    about 1.6x slower in a worker than in one process (0.39 s against
    0.25 s per half epoch of 1M ratings, the same code with that variable
    set or not). Both thresholds go to 32 MiB: memory freed above that
    still returns to the system, as Dask wants. glibc only; elsewhere (or
    without the variable) nothing changes."""
    import ctypes
    import os
    import sys

    if sys.platform != "linux" or "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    libc.mallopt(m_trim_threshold, 32 << 20)
    libc.mallopt(m_mmap_threshold, 32 << 20)


def _worker_threads():
    """A worker's Numba threads: its own share of the cores (its Dask
    threads), not every core of the machine that its sibling workers share."""
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return None


class TaskShards:
    """The client's side: the workers' actors, and the meta-batch gradient
    summed over them (``batch_grad``, as ``meta_batch_grad`` gives it)."""

    def __init__(self, client, model, csr, lo, hi, local_steps=1):
        workers = sorted(client.scheduler_info()["workers"])
        if not workers:
            raise ValueError("the Dask client's cluster has no workers")
        indptr, items, ratings, weights = csr
        n_users = len(indptr) - 1
        self.owner = owners(np.arange(n_users), len(workers)).astype(np.int64)
        self.n_items = len(model._item_vocab)
        self.d = model.n_factors + 1
        self.sent = model._theta.copy()  # what the replicas hold
        self.item_reg = None
        self.bytes_sent = self.bytes_received = 0
        self.local_steps = local_steps
        # The round's average, sent with the next round's calls.
        self.pending = (model._theta[: 1 + self.d].copy(), np.empty(0, dtype=np.int64), np.empty((0, self.d)), None)
        self.tasks = np.zeros(len(workers))
        self.rounds = []  # each round's (seconds of its calls, the slowest worker's seconds of steps)
        copy = _worker_copy(model) if local_steps > 1 else None
        counts = np.diff(indptr)
        futures, scattered = [], []
        for k, worker in enumerate(workers):
            mine = self.owner == k
            share = np.repeat(mine, counts)
            share_indptr = np.zeros(n_users + 1, dtype=np.int64)
            np.cumsum(np.where(mine, counts, 0), out=share_indptr[1:])
            arrays = [share_indptr, items[share], ratings[share], weights[share], lo, hi, self.sent, copy]
            # Scattered first: a task's arguments would travel inside the
            # scheduler's graph.
            arrays = client.scatter(arrays, workers=[worker], direct=True)
            scattered.append(arrays)  # held until the actors hold them
            futures.append(client.submit(_Shard, *arrays[:7], self.n_items, model._n_neg(), arrays[7], actor=True,
                                         workers=[worker], allow_other_workers=False, pure=False))
        self.actors = [f.result() for f in futures]
        self.futures = futures

    def batch_grad(self, batch, lo, hi, seed, offsets, theta, n_items, alpha, item_reg, inner, outer, grad,
                   grad_hyper, rows, pen_rows):
        """``K.meta_batch_grad``'s outputs for ``batch`` (loss, n_rows), with
        every task computed on the worker that holds its user."""
        d = self.d
        _, bi, Q = K.unpack(theta, n_items, d)
        _, sent_bi, sent_Q = K.unpack(self.sent, n_items, d)
        changed = np.flatnonzero((bi != sent_bi) | (Q != sent_Q).any(axis=1))
        values = np.column_stack([bi[changed], Q[changed]])
        self.sent[:] = theta
        new_reg = None if item_reg is self.item_reg else item_reg
        self.item_reg = item_reg
        head = theta[: 1 + d].copy()
        own = self.owner[batch]
        # Every replica hears of every step, its part of the batch empty or not.
        messages = [(batch[own == k], seed, head, changed, values, new_reg, alpha, inner, outer)
                    for k in range(len(self.actors))]
        parts = [(len(m[0]), result) for m, result in zip(messages, self._call("grad", messages, 6)) if len(m[0])]
        per_rating = outer.per_rating
        w_all = sum(result[1] for _, result in parts)
        n_all = sum(n for n, _ in parts)
        # Each share's results are scaled within the share; rescaled to the
        # whole batch: by query weight, or by task count (the kernel's rule).
        factors = [result[1] / w_all if per_rating and w_all > 0.0 else n / n_all for n, result in parts]
        loss = sum(f * result[0] for f, (_, result) in zip(factors, parts))
        grad[: 1 + d] = sum(f * result[2] for f, (_, result) in zip(factors, parts))
        grad_hyper[:] = sum(f * result[3] for f, (_, result) in zip(factors, parts))
        all_rows = np.concatenate([result[4] for _, result in parts])
        touched, where = np.unique(all_rows, return_inverse=True)
        sums = np.zeros((len(touched), d + 1))
        for f, (_, result), start in zip(factors, parts, np.cumsum([0] + [len(r[4]) for _, r in parts])):
            span = where[start : start + len(result[4])]
            sums[span, :d] += f * result[5]
            sums[span, d] += f * result[6]
        self.bytes_received += sum(r[5].nbytes + r[4].nbytes + r[6].nbytes for _, r in parts)
        _, g_bi, g_Q = K.unpack(grad, n_items, d)
        g_bi[touched] = sums[:, 0]
        g_Q[touched] = sums[:, 1:d]
        pen_rows[touched] = sums[:, d]
        rows[: len(touched)] = touched
        return loss, len(touched)

    def _call(self, method, messages, n_sent):
        """Each actor's ``method`` on its message, concurrently; their
        results. Counts the bytes of the messages' first ``n_sent`` arrays."""
        try:
            calls = []
            for actor, message in zip(self.actors, messages):
                self.bytes_sent += sum(a.nbytes for a in message[:n_sent] if isinstance(a, np.ndarray))
                calls.append(getattr(actor, method)(*message))
            return [call.result() for call in calls]
        except Exception as exc:
            raise RuntimeError(
                f"a Dask worker failed or was lost during meta-training ({type(exc).__name__}: {exc}); "
                "the estimator is left as it was before fit"
            ) from exc

    def local_epoch(self, model, order, seed, item_reg):
        """An epoch of local steps (see the module's docstring) over the
        users ``order``: rounds of ``local_steps`` Adam steps on every
        worker, each followed by the client's average, written into the
        model's θ (and α, λ). Returns the workers' batch losses."""
        d, n_items, H = self.d, self.n_items, self.local_steps
        own = self.owner[order]
        shares = [order[own == k] for k in range(len(self.actors))]
        sizes = [max(1, round(model.meta_batch_size * len(share) / max(len(order), 1))) for share in shares]
        n_rounds = max(-(-len(share) // (H * b)) for share, b in zip(shares, sizes))
        losses = []
        for r in range(n_rounds):
            start = time.perf_counter()
            head, changed, values, hyper = self.pending
            messages = [(head, changed, values, hyper, share[r * H * b : (r + 1) * H * b], seed, b, item_reg)
                        for share, b in zip(shares, sizes)]
            results = self._call("local", messages, 5)
            parts = []
            for k, result in enumerate(results):
                if result is not None:
                    losses.extend(result[0])
                    self.tasks[k] += result[1]
                    parts.append(result[1:6])
                    self.bytes_received += sum(a.nbytes for a in result[2:5])
            self.rounds.append((time.perf_counter() - start, max(result[-1] for result in results if result)))
            head, changed, values, hyper = self.pending = _average_rounds(parts, d)
            _write(model._theta, n_items, d, head, changed, values)
            if hyper is not None:
                model._hyper[:] = hyper
            if not (np.all(np.array(losses) < model._loss_limit) and model._finite()):
                break  # the caller reports the divergence
        return np.array(losses)

    def take_optimizer(self, model):
        """The workers' Adam state, averaged by their tasks (the items' first
        moments over the workers that moved them; update counts added), as
        the model's, so that training can go on in one process."""
        if not self.tasks.any():
            return  # no step was taken
        d, n_items = self.d, self.n_items
        states = self._call("optimizer", [()] * len(self.actors), 0)
        share = self.tasks / self.tasks.sum()
        start = model._adam_row_steps
        steps = [state.pop("_adam_row_steps") for state in states]
        model._adam_row_steps = start + sum(counts - start for counts in steps)
        for name in ("_adam_step", "_hyper_t"):  # step counts: the busiest worker's
            if name in states[0]:
                setattr(model, name, max(state.pop(name) for state in states))
        # The first moments as θ is averaged: the head by tasks, each item
        # row over the workers that moved it (the others never changed it).
        parts = []
        for tasks, state, counts in zip(self.tasks, states, steps):
            m, moved = state.pop("_adam_m"), np.flatnonzero(counts != start)
            parts.append((tasks, m[: 1 + d], moved, _rows(m, n_items, d, moved), None))
        _write(model._adam_m, n_items, d, *_average_rounds(parts, d)[:3])
        for name in states[0]:
            setattr(model, name, sum(s * state[name] for s, state in zip(share, states)))

    def close(self):
        """Release the actors (their workers drop the shards)."""
        for future in self.futures:
            future.release()
        self.actors = self.futures = []


def predict(model, X):
    """Lazy ``model.predict`` over a Dask DataFrame of (user, item) rows,
    partition by partition: a Dask Series of the predictions, with X's
    index. The model travels to the workers pickled, once per partition."""
    import pandas as pd

    check_is_fitted(model)
    return X.map_partitions(lambda part: pd.Series(model.predict(part), index=part.index, name="prediction"),
                            meta=pd.Series([], dtype=float, name="prediction"))


def recommend(model, users, n=10, **kwargs):
    """Lazy ``model.recommend`` for a Dask Series of user ids, partition by
    partition: a Dask DataFrame with one row per (user, rank), columns
    ``user``, ``rank`` (from 0), ``item`` and ``score``. ``kwargs`` go to
    ``recommend`` (``exclude_seen``, ``items``)."""
    import pandas as pd

    check_is_fitted(model)
    item_dtype = np.asarray(model.item_ids_).dtype
    user_dtype = users.dtype

    def one(part):
        ids = part.to_numpy()
        if len(ids) == 0:
            return pd.DataFrame({"user": np.array([], dtype=user_dtype), "rank": np.array([], dtype=np.int64),
                                 "item": np.array([], dtype=item_dtype), "score": np.array([], dtype=float)})
        items, scores = model.recommend(ids, n=n, **kwargs)
        k = items.shape[1]
        return pd.DataFrame({"user": np.repeat(ids, k), "rank": np.tile(np.arange(k, dtype=np.int64), len(ids)),
                             "item": items.reshape(-1), "score": scores.reshape(-1)})

    meta = one(users._meta)
    return users.map_partitions(one, meta=meta)


def check_local_steps(local_steps, client):
    """``local_steps`` as an int, or a clear error before anything changes."""
    if isinstance(local_steps, bool) or not isinstance(local_steps, numbers.Integral):
        raise TypeError(f"local_steps must be an int, got {type(local_steps).__name__} {local_steps!r}.")
    if local_steps < 1:
        raise ValueError(f"local_steps must be at least 1, got {local_steps}.")
    if local_steps > 1 and client is None:
        raise ValueError(f"local_steps={local_steps} is for meta-training on a Dask cluster: pass a client "
                         "(or a Dask DataFrame with a current client).")
    return int(local_steps)


def is_dask(obj):
    return type(obj).__module__.split(".")[0] == "dask"


def current_client():
    """The Dask client of this process or task, or None."""
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def in_memory(X, y, sample_weight, client, encode=True):
    """(X, y, sample_weight) in memory, computed together where they are
    Dask collections, the client to meta-train on (the current one for
    Dask input), and the id vocabularies built on the cluster (or None).

    With ``encode``, a Dask DataFrame's ids arrive as codes: see
    :func:`encoded`. The caller fits on the codes and then takes the
    vocabularies, whose rows are the codes' (both sorted), so the model is
    the one the raw ids give."""
    if not is_dask(X):
        return X, y, sample_weight, client, None
    import dask

    vocabularies = None
    if encode and hasattr(X, "columns") and len(X.columns) >= 2:
        X, vocabularies = encoded(X)
    X, y, sample_weight = dask.compute(X, y, sample_weight)
    return X, y, sample_weight, client or current_client(), vocabularies


def encoded(X):
    """A Dask DataFrame's user and item ids (its first two columns) as
    codes, with the vocabularies built on the cluster: the distinct ids of
    each partition, combined in a tree (Dask's ``unique``), are validated
    and sorted here, and each partition is encoded where it lives, so that
    only int64 codes and the distinct ids reach this process. Returns (the
    encoded Dask DataFrame, lazily; (user vocabulary, item vocabulary))."""
    import dask

    from ._data import Vocabulary, check_id_column

    columns = list(X.columns[:2])
    uniques = dask.compute(*(X[column].unique() for column in columns))
    vocabularies = []
    for name, ids in zip(("user", "item"), uniques):
        ids = check_id_column(np.asarray(ids.to_numpy() if hasattr(ids, "to_numpy") else ids), name)
        vocabulary = Vocabulary(name)
        vocabulary.fit(ids)
        vocabularies.append(vocabulary)

    def encode(part):
        part = part.copy()
        for column, vocabulary in zip(columns, vocabularies):
            part[column] = vocabulary.lookup(part[column].to_numpy())
        return part

    meta = X._meta.astype({column: np.int64 for column in columns})
    return X.map_partitions(encode, meta=meta), tuple(vocabularies)


def partitions(X, y, sample_weight):
    """(X, y, sample_weight) of each partition of Dask collections with the
    same partitions, in order, one in memory at a time."""
    import dask

    for i in range(X.npartitions):
        yield dask.compute(X.partitions[i], *(None if a is None else a.partitions[i] for a in (y, sample_weight)))
