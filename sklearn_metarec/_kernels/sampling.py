"""Counter-based random numbers and task construction: support and query sets, sampled negatives."""

import numpy as np
from numba import prange

from ._jit import jit


@jit()
def _splitmix(state):
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state, z ^ (z >> np.uint64(31))


@jit()
def _task_state(seed, key):
    state = np.uint64(seed) ^ (np.uint64(key) * np.uint64(0xD1B54A32D192ED03))
    state, _ = _splitmix(state)
    return state


@jit()
def _randbelow(state, n):
    """A uniform integer in [0, n) and the advanced state."""
    state, z = _splitmix(state)
    u = np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)
    r = np.int64(u * n)
    if r >= n:  # guards the rounding of u * n up to n
        r = n - 1
    return state, r


@jit()
def _sorted_unique(values):
    """The distinct values, ascending: a heap sort of a copy, then the
    repeats dropped. ``np.unique`` would do, but compiles Numba's quicksort
    and its own code, seconds per process on a cold cache."""
    s = values.copy()
    n = s.shape[0]
    for root in range(n // 2 - 1, -1, -1):
        _sift_down(s, root, n)
    for end in range(n - 1, 0, -1):
        s[0], s[end] = s[end], s[0]
        _sift_down(s, np.int64(0), end)  # a literal 0 would compile a specialization of its own
    m = 0
    for a in range(n):
        if m == 0 or s[a] != s[m - 1]:
            s[m] = s[a]
            m += 1
    return s[:m]


@jit()
def _sift_down(s, root, n):
    while 2 * root + 1 < n:
        child = 2 * root + 1
        if child + 1 < n and s[child] < s[child + 1]:
            child += 1
        if s[root] >= s[child]:
            return
        s[root], s[child] = s[child], s[root]
        root = child


@jit()
def _kth_unseen(seen, r):
    """The r-th (from 0) item code absent from ``seen`` (sorted, unique).
    Before ``seen[j]`` lie ``seen[j] − j`` absent codes, a non-decreasing
    count, so a binary search finds how many seen codes precede the answer."""
    lo = 0
    hi = seen.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if seen[mid] - mid <= r:
            lo = mid + 1
        else:
            hi = mid
    return r + lo


@jit()
def _draw_negatives(state, seen, n_items, n_neg, src_w, t_items, t_y, t_w):
    """``n_neg`` items the user never rated for each of ``len(src_w)``
    positives, uniformly over the unrated items, each with target 0 and its
    positive's weight (weight 0 if the user rated every item)."""
    n_free = n_items - seen.shape[0]
    for a in range(src_w.shape[0]):
        for b in range(n_neg):
            o = a * n_neg + b
            t_y[o] = 0.0
            if n_free <= 0:
                t_items[o] = seen[0]
                t_w[o] = 0.0
                continue
            state, r = _randbelow(state, n_free)
            t_items[o] = _kth_unseen(seen, r)
            t_w[o] = src_w[a]
    return state


@jit()
def _build_task(indptr, items, ratings, weights, u, key, s_lo, s_hi, seed, n_items, n_neg,
                t_items, t_y, t_w, perm):
    """Lay out user ``u``'s task in ``t_*`` (length (1 + n_neg)·n for n
    ratings): the support set's ratings, their negatives, then the query
    set's ratings and their negatives. The support size is drawn uniformly
    in [s_lo, s_hi], the support by a partial Fisher–Yates shuffle, then
    the negatives, all from one stream keyed by (seed, key), so a task does
    not depend on the batch or the thread it lands in. Returns the length
    of the support part, (1 + n_neg)·s. ``perm`` is scratch of length n or
    more (allocating it here, per task, costs more than the task's maths)."""
    start = indptr[u]
    n = indptr[u + 1] - start
    for a in range(n):
        perm[a] = start + a
    state = _task_state(seed, key)
    state, s = _randbelow(state, s_hi - s_lo + 1)
    s += s_lo
    for a in range(s):  # only the support is drawn
        state, r = _randbelow(state, n - a)
        # A whole history (serving) keeps the log's order: shuffled by its
        # key, a user's sums would differ in the last bit with its row.
        if s < n:
            tmp = perm[a]
            perm[a] = perm[a + r]
            perm[a + r] = tmp
    m_sup = s * (1 + n_neg)
    for a in range(n):
        o = a if a < s else m_sup + a - s
        j = perm[a]
        t_items[o] = items[j]
        t_y[o] = ratings[j]
        t_w[o] = weights[j]
    if n_neg > 0:
        seen = _sorted_unique(items[start : start + n])
        state = _draw_negatives(state, seen, n_items, n_neg, t_w[:s],
                                t_items[s:m_sup], t_y[s:m_sup], t_w[s:m_sup])
        q = m_sup + n - s
        _draw_negatives(state, seen, n_items, n_neg, t_w[m_sup:q], t_items[q:], t_y[q:], t_w[q:])
    return m_sup


@jit()
def _entry_contexts(perm, n, s, n_neg, ctxs, t_ctx):
    """``t_ctx`` ← the context code of each entry of a task that
    ``_build_task`` laid out from ``n`` ratings with support size ``s``
    (``perm[a]``: the log position of its a-th rating): a rating's own code
    (``ctxs`` by log position), and for a sampled negative its positive's,
    as if the user had met the other item in the same context."""
    m_sup = s * (1 + n_neg)
    for a in range(n):
        c = ctxs[perm[a]]
        if a < s:
            t_ctx[a] = c
            first = s + a * n_neg
        else:
            t_ctx[m_sup + a - s] = c
            first = m_sup + n - s + (a - s) * n_neg
        for b in range(n_neg):
            t_ctx[first + b] = c


@jit()
def _history_task(indptr, items, ratings, weights, u, key, seed, n_items, n_neg, ctxs):
    """User ``u``'s whole history as one support set (with its negatives,
    keyed by (seed, key)), as serving adapts a user: (items, targets,
    weights, context codes, support length). The codes are those of
    ``ctxs`` (by log position) when it has entries."""
    n = indptr[u + 1] - indptr[u]
    t_items, t_y, t_w, perm = _task_buffers(n * (1 + n_neg))
    s = _build_task(indptr, items, ratings, weights, u, key, n, n, seed, n_items, n_neg,
                    t_items, t_y, t_w, perm)
    t_ctx = np.zeros(n * (1 + n_neg), dtype=np.int64)
    if ctxs.shape[0]:
        _entry_contexts(perm, n, n, n_neg, ctxs, t_ctx)
    return t_items, t_y, t_w, t_ctx, s


@jit()
def _task_buffers(total):
    """Items, targets, weights and shuffle scratch for a batch's tasks."""
    return (np.empty(total, dtype=np.int64), np.empty(total), np.empty(total),
            np.empty(total, dtype=np.int64))


@jit(parallel=True)
def sample_tasks(indptr, items, ratings, weights, users, sup_lo, sup_hi, seed, n_items, n_neg,
                 offsets, t_items, t_y, t_w, n_sup):
    """The tasks ``meta_batch_grad`` draws (for inspection and tests): user
    ``users[b]``'s task in ``t_*[offsets[b]:offsets[b+1]]``, its support
    part's length in ``n_sup[b]``."""
    for b in prange(users.shape[0]):
        u = users[b]
        lo = offsets[b]
        hi = offsets[b + 1]
        perm = np.empty(hi - lo, dtype=np.int64)
        n_sup[b] = _build_task(indptr, items, ratings, weights, u, u, sup_lo[u], sup_hi[u], seed,
                               n_items, n_neg, t_items[lo:hi], t_y[lo:hi], t_w[lo:hi], perm)
