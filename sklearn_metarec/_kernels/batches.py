"""Meta-batches: a batch's tasks in parallel, its meta-gradient (MAML,
Meta-SGD) or Reptile direction, and item rows reduced in a fixed order."""

import numpy as np
from numba import prange

from ._jit import jit
from .maths import _loss_terms, _scratch, _support_norm, _task_meta_grad, _terms_weight, copy_into, unpack
from .sampling import _build_task, _entry_contexts, _task_buffers


@jit()
def _zeros(shape):
    """``np.zeros(shape)``, outside any parallel region: in a parallel
    kernel ``np.zeros`` becomes a parallel loop of its own, and waking the
    threads for it costs more than the fill."""
    return np.zeros(shape)


# Below this many multiply-adds (about 50 µs), the item rows are summed on
# the calling thread: waking the pool's sleeping threads for a second
# parallel region costs more (20-150 µs measured on a virtual machine).
SERIAL_REDUCTION = 1 << 17

# Enough tasks to spread the allocation of a work area, few enough that a
# meta-batch of 32 still gives every one of 8 threads a chunk.
TASKS_PER_CHUNK = 4


@jit()
def _sum_row(i, entries, lo, hi, task_of, scales, per_entry, out_b, out_Q):
    """Item i's row of a batch's gradient: the scaled sum, in entry order,
    of the per-entry (b_i, q_i) parts of its entries ``entries[lo:hi]``."""
    out_b[i] = 0.0
    for f in range(out_Q.shape[1]):
        out_Q[i, f] = 0.0
    for e in range(lo, hi):
        p = entries[e]
        scale = scales[task_of[p]]
        out_b[i] += per_entry[p, 0] * scale
        for f in range(out_Q.shape[1]):
            out_Q[i, f] += per_entry[p, 1 + f] * scale


@jit()
def _item_groups(t_items, offsets, ends, rows):
    """The entries ``offsets[b]:ends[b]`` of a batch's tasks grouped by item,
    for a reduction over item rows that threads can share. Returns
    (entries, starts, task_of, n): the entries of item ``rows[r]`` are
    ``entries[starts[r]:starts[r + 1]]``, in entry order, so
    that each row's sum is the same as a serial pass in task order would
    give; ``task_of[p]`` is entry p's task. Rows come in order of first
    appearance. Cost: O(entries), neither the catalogue's nor a sort's
    (a sort of (item, entry) keys took longer than the tasks' maths)."""
    n_tasks = offsets.shape[0] - 1
    task_of = np.empty(offsets[n_tasks], dtype=np.int64)
    n = 0
    for b in range(n_tasks):
        for p in range(offsets[b], offsets[b + 1]):
            task_of[p] = b
        n += ends[b] - offsets[b]
    # Item -> row by open addressing in a table of at least 2n slots.
    size = 16
    while size < 2 * n:
        size *= 2
    slot_item = np.full(size, -1, dtype=np.int64)
    slot_row = np.empty(size, dtype=np.int64)
    row_of = np.empty(n, dtype=np.int64)
    counts = np.zeros(n + 1, dtype=np.int64)
    n_rows = 0
    e = 0
    for b in range(n_tasks):
        for p in range(offsets[b], ends[b]):
            item = t_items[p]
            h = ((item * 2654435761) >> 7) & (size - 1)
            while slot_item[h] != item and slot_item[h] >= 0:
                h = (h + 1) & (size - 1)
            if slot_item[h] < 0:
                slot_item[h] = item
                slot_row[h] = n_rows
                rows[n_rows] = item
                n_rows += 1
            row_of[e] = slot_row[h]
            counts[slot_row[h] + 1] += 1
            e += 1
    # A stable counting sort by row keeps entry order within each row.
    starts = np.empty(n + 1, dtype=np.int64)
    starts[0] = 0
    for r in range(n_rows):
        starts[r + 1] = starts[r] + counts[r + 1]
    fill = starts[:n_rows].copy()
    entries = np.empty(n, dtype=np.int64)
    e = 0
    for b in range(n_tasks):
        for p in range(offsets[b], ends[b]):
            r = row_of[e]
            entries[fill[r]] = p
            fill[r] += 1
            e += 1
    return entries, starts, task_of, n_rows


@jit()
def _context_grads(t_items, t_ctx, task_of, scales, bi, Q, off, pointwise, g_item, g_off):
    """From each entry's gradients with respect to its c-part (G_c) and its
    X row (G_X), penalty apart: ``g_off`` ← the contexts' gradient, and
    the items' rows of ``g_item`` gain the part through c = … + q_i·e_c.
    With c = μ + b_i + b_c + q_i·e_c and X = (1, q_i + e_c) (a pair: no
    e_c in X): ∂/∂b_c = G_c, ∂/∂e_c = G_c q_i (+ G_X), ∂/∂q_i = G_X + G_c e_c.
    Serial in entry order, so the sums do not depend on the thread count."""
    d = off.shape[1]
    g_off[:, :] = 0.0
    for p in range(t_items.shape[0]):
        i = t_items[p]
        c = t_ctx[p]
        s = scales[task_of[p]]
        pen = g_item[p, d]
        g_c = g_item[p, 0] - pen * bi[i]
        g_off[c, 0] += s * g_c
        for f in range(d - 1):
            x_part = g_item[p, 1 + f] - pen * Q[i, f] if pointwise else 0.0
            g_off[c, 1 + f] += s * (g_c * Q[i, f] + x_part)
            g_item[p, 1 + f] += g_c * off[c, 1 + f]


@jit(parallel=True)
def meta_batch_grad(
    indptr, items, ratings, weights, users, sup_lo, sup_hi, seed, offsets, theta, n_items,
    alpha, item_reg, inner, outer, grad, grad_hyper, rows, pen_rows, phi_tasks, g_tasks, ctxs, off, g_off,
):
    """Mean query loss of a meta-batch of users and its meta-gradient.

    ``offsets`` is the running sum of the users' task lengths, (1 + n_neg)
    times their rating counts. Each task is laid out by ``_build_task``.
    ``item_reg[i]`` is item i's L2 strength β_i per query rating.
    ``inner`` and ``outer`` are the settings records of ``maths``. With
    ``outer.hyper``, ``grad_hyper`` ← (∂/∂α, ∂/∂λ), of length d + 1.

    Only the part of ``grad`` the batch touches is written: (μ, φ₀) and the
    rows of the items in its tasks, whose codes go to ``rows[:n]``, where n
    is returned as well. Other items' gradients are zero, and their entries
    of ``grad`` are left as they were, so that the cost of a batch does not
    grow with the catalogue: pass a zeroed ``grad`` for the dense gradient.
    ``pen_rows[i]`` ← p_i for those rows: the part of item i's gradient that
    its L2 penalty contributes is p_i (b_i, q_i) (item features move that
    penalty onto the item's own part). With user features, ``phi_tasks[b]``
    is task b's own prior (φ₀ plus its attributes' part) and ``g_tasks[b]``
    ← the task's scaled ∂loss/∂(its prior), for the chain rule into the
    attributes' parameters; both have 0 rows otherwise. With context,
    ``ctxs`` holds each rating's context code (by log position) and ``off``
    the codes' parameters (b_c, e_c) (see ``maths._gather``); ``g_off`` ←
    ∂loss/∂off. ``off`` and ``g_off`` have 0 rows otherwise. Returns (loss,
    n, W): W is the batch's query weight, by which a sum of batches' results
    is weighted (``distributed``).
    """
    n_steps = inner.n_steps
    first_order, hyper, per_rating = outer
    d = alpha.shape[0]
    mu = theta[0]
    phi0, bi, Q = unpack(theta, n_items, d)
    n_tasks = users.shape[0]
    total = offsets[n_tasks]
    t_items, t_y, t_w, perm = _task_buffers(total)
    context = off.shape[0] > 0
    t_ctx = np.empty(total if context else 0, dtype=np.int64)
    g_item = _zeros((total, d + 1))  # column d: the penalty's coefficient
    g_phi = _zeros((n_tasks, d))
    g_mu = _zeros(n_tasks)
    g_hyper = _zeros((n_tasks, d + 1))
    losses = _zeros(n_tasks)
    w_query = _zeros(n_tasks)
    # Tasks in chunks of TASKS_PER_CHUNK, a chunk's tasks one after another
    # on one work area: allocations per task cost as much as a task's
    # maths. A task's result does not depend on its chunk.
    n_chunks = (n_tasks + TASKS_PER_CHUNK - 1) // TASKS_PER_CHUNK
    for ch in prange(n_chunks):
        first = ch * TASKS_PER_CHUNK
        last = min(n_tasks, first + TASKS_PER_CHUNK)
        # Not 0: while typing, a literal 0 here compiled _scratch for it.
        longest = offsets[first + 1] - offsets[first]
        for b in range(first, last):
            longest = max(longest, offsets[b + 1] - offsets[b])
        work = _scratch(longest, d, n_steps)
        for b in range(first, last):
            u = users[b]
            lo = offsets[b]
            hi = offsets[b + 1]
            n_sup = _build_task(indptr, items, ratings, weights, u, u, sup_lo[u], sup_hi[u], seed,
                                n_items, inner.n_neg, t_items[lo:hi], t_y[lo:hi], t_w[lo:hi], perm[lo:hi])
            if context:
                n_rated = (hi - lo) // (1 + inner.n_neg)
                _entry_contexts(perm[lo:hi], n_rated, n_sup // (1 + inner.n_neg), inner.n_neg, ctxs, t_ctx[lo:hi])
            start = phi_tasks[b] if phi_tasks.shape[0] else phi0
            losses[b], g_mu[b], g_hyper[b, d] = _task_meta_grad(
                n_sup, t_items[lo:hi], t_y[lo:hi], t_w[lo:hi], mu, start, bi, Q, alpha, item_reg, inner,
                first_order, hyper, g_item[lo:hi], g_phi[b], g_hyper[b, :d], work,
                t_ctx[lo:hi], off,
            )
            w_query[b] = _terms_weight(t_w[lo:hi], n_sup, hi - lo - n_sup, inner.n_neg, inner.pairwise)
    # (μ, φ₀, α, λ) serially in task order: identical for any thread count.
    for a in range(d + 1):
        grad_hyper[a] = 0.0
    g_phi0, g_bi, g_Q = unpack(grad, n_items, d)
    scales = np.empty(n_tasks)
    w_total = 0.0
    for b in range(n_tasks):
        w_total += w_query[b]
    for b in range(n_tasks):
        scales[b] = w_query[b] / w_total if per_rating and w_total > 0.0 else 1.0 / n_tasks
    # Plain loops: in a parallel kernel an array expression becomes a
    # parallel region of its own, whose launch would cost more than the row.
    grad[0] = 0.0
    for a in range(d):
        g_phi0[a] = 0.0
    loss = 0.0
    for b in range(n_tasks):
        loss += losses[b] * scales[b]
        grad[0] += g_mu[b] * scales[b]
        for a in range(d):
            g_phi0[a] += g_phi[b, a] * scales[b]
        for a in range(d + 1):
            grad_hyper[a] += g_hyper[b, a] * scales[b]
        if g_tasks.shape[0]:
            for a in range(d):
                g_tasks[b, a] = g_phi[b, a] * scales[b]
    # Item rows one at a time per thread, each summed in entry order, so the
    # result does not depend on the thread count.
    entries, starts, task_of, n_rows = _item_groups(t_items, offsets, offsets[1:], rows)
    if context:
        _context_grads(t_items, t_ctx, task_of, scales, bi, Q, off, not inner.pairwise, g_item, g_off)
    if total * d < SERIAL_REDUCTION:
        for r in range(n_rows):
            _sum_row(rows[r], entries, starts[r], starts[r + 1], task_of, scales, g_item, g_bi, g_Q)
    else:
        for r in prange(n_rows):
            _sum_row(rows[r], entries, starts[r], starts[r + 1], task_of, scales, g_item, g_bi, g_Q)
    for r in range(n_rows):
        p = 0.0
        for e in range(starts[r], starts[r + 1]):
            p += g_item[entries[e], d] * scales[task_of[entries[e]]]
        pen_rows[rows[r]] = p
    return loss, n_rows, w_total


@jit(parallel=True)
def reptile_batch(
    indptr, items, ratings, weights, users, sup_lo, sup_hi, seed, offsets, theta, n_items,
    alpha, inner, step, delta, rows, priors, d_priors, ctxs, off, d_off, n_copies,
):
    """Reptile's direction for a meta-batch: ``delta`` ← the mean over tasks
    of (adapted − initial) parameters. Each task runs ``n_steps`` of gradient
    descent on its support loss L_S, on φ (steps α) and, with
    ``step.adapt_items``, on its support items' (b_i, q_i) (step
    ``step.item_lr``), all
    from the same iterate. μ is not adapted. φ₀'s direction is the mean over
    tasks; an item's is the mean over its adapted copies (one per entry of
    a support set, sampled negatives included).

    As in :func:`meta_batch_grad`, only (μ, φ₀) and the rows of the items
    in the tasks' support sets are written, their codes to ``rows[:n]``;
    other entries of ``delta`` are left as they were. Returns (mean support
    loss at the initial parameters, before adaptation; n).

    With user attributes, task b starts from ``priors[b]`` rather than φ₀,
    and ``d_priors[b]`` receives its adapted − initial φ (both of shape
    (n_tasks, d); empty, of shape (0, d), without).

    With context (``ctxs``: each logged rating's code; ``off``: each code's
    (b_c, e_c); all empty without), an entry scores b_c + (φ + q_i)ᵀe_c
    more, and each support entry's copy of its code's (b_c, e_c) adapts
    with the items' (step ``step.item_lr``); ``d_off[c]`` receives the
    mean over code c's copies of their adapted − initial values and
    ``n_copies[c]`` their number.
    """
    lam, n_steps, logistic, n_neg = inner.lam, inner.n_steps, inner.logistic, inner.n_neg
    own_priors = priors.shape[0] > 0
    item_lr, adapt_items = step
    d = alpha.shape[0]
    k = d - 1
    mu = theta[0]
    phi0, bi, Q = unpack(theta, n_items, d)
    n_tasks = users.shape[0]
    total = offsets[n_tasks]
    t_items, t_y, t_w, perm = _task_buffers(total)
    d_item = _zeros((total, d))
    d_phi = _zeros((n_tasks, d))
    n_sups = np.empty(n_tasks, dtype=np.int64)
    losses = _zeros(n_tasks)
    context = ctxs.shape[0] > 0
    t_ctx = np.zeros(total if context else 0, dtype=np.int64)
    d_ctx = _zeros((total if context else 0, d))
    for b in prange(n_tasks):
        u = users[b]
        lo = offsets[b]
        hi = offsets[b + 1]
        s = _build_task(indptr, items, ratings, weights, u, u, sup_lo[u], sup_hi[u], seed,
                        n_items, n_neg, t_items[lo:hi], t_y[lo:hi], t_w[lo:hi], perm[lo:hi])
        n_sups[b] = s
        if context:
            _entry_contexts(perm[lo:hi], (hi - lo) // (1 + n_neg), s // (1 + n_neg), n_neg, ctxs, t_ctx[lo:hi])
        it = t_items[lo : lo + s]
        ys = t_y[lo : lo + s]
        ws_ = t_w[lo : lo + s]
        start = priors[b] if own_priors else phi0
        phi = start.copy()
        lb = np.empty(s)
        lq = np.empty((s, k))
        for jj in range(s):
            lb[jj] = bi[it[jj]]
            copy_into(lq[jj], Q[it[jj]])
        # Each entry's copy of its context's (b_c, e_c); zeros without.
        lc = np.zeros((s if context else 0, d))
        for jj in range(lc.shape[0]):
            copy_into(lc[jj], off[t_ctx[lo + jj]])
        gc = np.zeros((lc.shape[0], d))
        ws = _support_norm(ws_, s, inner)
        g = np.empty(d)
        gb = np.zeros(s)
        gq = np.zeros((s, k))
        for t in range(n_steps + 1):
            loss = 0.0
            for a in range(d):
                g[a] = 2.0 * lam * phi[a]
                loss += lam * phi[a] * phi[a]
            if ws > 0.0:
                for jj in range(s):
                    sc = mu + phi[0] + lb[jj]
                    for f in range(k):
                        sc += phi[1 + f] * lq[jj, f]
                    if context:
                        sc += lc[jj, 0]
                        for f in range(k):
                            sc += (phi[1 + f] + lq[jj, f]) * lc[jj, 1 + f]
                    ell, dl, _ = _loss_terms(sc, ys[jj], logistic)
                    loss += ws_[jj] / ws * ell
                    c = ws_[jj] / ws * dl
                    g[0] += c
                    gb[jj] = c
                    for f in range(k):
                        e = lc[jj, 1 + f] if context else 0.0
                        g[1 + f] += c * (lq[jj, f] + e)
                        gq[jj, f] = c * (phi[1 + f] + e)
                    if context:
                        gc[jj, 0] = c
                        for f in range(k):
                            gc[jj, 1 + f] = c * (phi[1 + f] + lq[jj, f])
            if t == 0:
                losses[b] = loss
            if t == n_steps:
                break
            for a in range(d):
                phi[a] -= alpha[a] * g[a]
            if adapt_items:
                for jj in range(s):
                    lb[jj] -= item_lr * gb[jj]
                    for f in range(k):
                        lq[jj, f] -= item_lr * gq[jj, f]
                for jj in range(lc.shape[0]):
                    for a in range(d):
                        lc[jj, a] -= item_lr * gc[jj, a]
        for a in range(d):
            d_phi[b, a] = phi[a] - start[a]
        if own_priors:
            for a in range(d):
                d_priors[b, a] = d_phi[b, a]
        for jj in range(s):
            i = it[jj]
            d_item[lo + jj, 0] = lb[jj] - bi[i]
            for f in range(k):
                d_item[lo + jj, 1 + f] = lq[jj, f] - Q[i, f]
        for jj in range(lc.shape[0]):
            for a in range(d):
                d_ctx[lo + jj, a] = lc[jj, a] - off[t_ctx[lo + jj], a]
    # A context's direction: the mean over its support entries' copies.
    if context:
        d_off[:, :] = 0.0
        n_copies[:] = 0
        for b in range(n_tasks):
            for jj in range(offsets[b], offsets[b] + n_sups[b]):
                c = t_ctx[jj]
                n_copies[c] += 1
                for a in range(d):
                    d_off[c, a] += d_ctx[jj, a]
        for c in range(d_off.shape[0]):
            if n_copies[c] > 1:
                for a in range(d):
                    d_off[c, a] /= n_copies[c]
    # An item's direction is averaged over the adapted copies of it, not over
    # every task: most tasks never touch a given item, and counting them
    # would shrink item updates by the batch size.
    dphi0, dbi, dQ = unpack(delta, n_items, d)
    delta[0] = 0.0
    for a in range(d):
        dphi0[a] = 0.0
    scale = 1.0 / n_tasks
    total_loss = 0.0
    for b in range(n_tasks):
        total_loss += losses[b] * scale
        for a in range(d):
            dphi0[a] += d_phi[b, a] * scale
    ends = np.empty(n_tasks, dtype=np.int64)
    for b in range(n_tasks):
        ends[b] = offsets[b] + n_sups[b]
    entries, starts, task_of, n_rows = _item_groups(t_items, offsets, ends, rows)
    ones = np.empty(n_tasks)  # np.ones would be a parallel region of its own
    for b in range(n_tasks):
        ones[b] = 1.0
    for r in prange(n_rows):
        i = rows[r]
        _sum_row(i, entries, starts[r], starts[r + 1], task_of, ones, d_item, dbi, dQ)
        copies = starts[r + 1] - starts[r]
        if copies > 1:
            dbi[i] /= copies
            for f in range(k):
                dQ[i, f] /= copies
    return total_loss, n_rows
