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
approximated: the workers never step on their own.

The client keeps the rating log, as the fitted estimator does in one
process (for early stopping, adapting the known users after training, and
serving); a worker's memory is its share of the log plus the item table.

Batch scoring
-------------
:func:`predict` and :func:`recommend` score a Dask collection partition by
partition with a fitted estimator (as dask-ml's ``ParallelPostFit`` does),
lazily, and return Dask collections.
"""

import numpy as np
from sklearn.utils.validation import check_is_fitted

from . import _kernels as K
from ._base import numba_threads

# Knuth's multiplicative hash: consecutive user codes spread over workers.
_HASH = np.uint64(2654435761)


def owners(user_codes, n_workers):
    """The worker (0 .. n_workers − 1) that holds each user code."""
    return ((np.asarray(user_codes, dtype=np.uint64) * _HASH) >> np.uint64(7)) % np.uint64(n_workers)


class _Shard:
    """A worker's users: their ratings as a CSR over every user code (other
    users' rows empty, so codes and random draws match the client's), and a
    replica of the model's parameter vector θ."""

    def __init__(self, indptr, items, ratings, weights, lo, hi, theta, n_items, n_neg):
        self.csr = (indptr, items, ratings, weights)
        self.lo, self.hi = lo, hi
        self.theta = theta
        self.n_items, self.n_neg = n_items, n_neg
        self.item_reg = None

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
        _, bi, Q = K.unpack(theta, n_items, d)
        theta[: 1 + d] = head
        bi[changed] = values[:, 0]
        Q[changed] = values[:, 1:]
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
        _, g_bi, g_Q = K.unpack(grad, n_items, d)
        return (loss, w_total, grad[: 1 + d].copy(), grad_hyper, rows,
                np.column_stack([g_bi[rows], g_Q[rows]]), pen_rows[rows])


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

    def __init__(self, client, model, csr, lo, hi):
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
        counts = np.diff(indptr)
        futures, scattered = [], []
        for k, worker in enumerate(workers):
            mine = self.owner == k
            share = np.repeat(mine, counts)
            share_indptr = np.zeros(n_users + 1, dtype=np.int64)
            np.cumsum(np.where(mine, counts, 0), out=share_indptr[1:])
            arrays = [share_indptr, items[share], ratings[share], weights[share], lo, hi, self.sent]
            # Scattered first: a task's arguments would travel inside the
            # scheduler's graph.
            arrays = client.scatter(arrays, workers=[worker], direct=True)
            scattered.append(arrays)  # held until the actors hold them
            futures.append(client.submit(_Shard, *arrays, self.n_items, model._n_neg(), actor=True,
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
        calls = []
        try:
            # Every replica hears of every step, its part of the batch empty or not.
            for k, actor in enumerate(self.actors):
                message = (batch[own == k], seed, head, changed, values, new_reg, alpha, inner, outer)
                self.bytes_sent += sum(a.nbytes for a in message[:6] if isinstance(a, np.ndarray))
                calls.append((len(message[0]), actor.grad(*message)))
            parts = [(n, call.result()) for n, call in calls]
        except Exception as exc:
            raise RuntimeError(
                f"a Dask worker failed or was lost during meta-training ({type(exc).__name__}: {exc}); "
                "the estimator is left as it was before fit"
            ) from exc
        parts = [(n, result) for n, result in parts if n]
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


def is_dask(obj):
    return type(obj).__module__.split(".")[0] == "dask"


def current_client():
    """The Dask client of this process or task, or None."""
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def in_memory(X, y, sample_weight, client):
    """(X, y, sample_weight) in memory, computed together where they are
    Dask collections, and the client to meta-train on (the current one for
    Dask input)."""
    if not is_dask(X):
        return X, y, sample_weight, client
    import dask

    X, y, sample_weight = dask.compute(X, y, sample_weight)
    return X, y, sample_weight, client or current_client()


def partitions(X, y, sample_weight):
    """(X, y, sample_weight) of each partition of Dask collections with the
    same partitions, in order, one in memory at a time."""
    import dask

    for i in range(X.npartitions):
        yield dask.compute(X.partitions[i], *(None if a is None else a.partitions[i] for a in (y, sample_weight)))
