"""Item features: the chain rule from a batch's item rows into the
features' parts, with the L2 penalty moved onto the items' own parts."""

import numpy as np

from ._jit import jit
from .maths import unpack
from .optim import adam_step


@jit()
def own_part_grads(F_indptr, F_indices, F_data, feat, theta, n_items, rows, pen_rows, grad, g_feat):
    """For the items ``rows`` of a batch, with (b_i, q_i) = o_i + F_i·feat
    (``F`` in CSR arrays, ``feat`` of shape (n_features, d)): ``g_feat`` ←
    Fᵀ(G − p ⊙ (b, q)), the features' gradient without the penalty, and
    ``grad``'s rows ← G − p_i F_i·feat, the own parts' gradient under the
    penalty p_i/2 ‖o_i‖² (G: the rows' gradient under the penalty on the
    whole row, p_i: ``pen_rows``). Returns the change of the loss."""
    d = feat.shape[1]
    _, bi, Q = unpack(theta, n_items, d)
    _, g_b, g_Q = unpack(grad, n_items, d)
    g_feat[:, :] = 0.0
    correction = 0.0
    part = np.empty(d)
    loss = np.empty(d)  # the row's gradient without the penalty
    # Each loop runs along a row (the parameters' d entries), contiguous in
    # memory: the feature loop outside, the d entries inside.
    for r in range(rows.shape[0]):
        i = rows[r]
        p = pen_rows[i]
        part[:] = 0.0
        for e in range(F_indptr[i], F_indptr[i + 1]):
            x = F_data[e]
            f = F_indices[e]
            for a in range(d):
                part[a] += x * feat[f, a]
        loss[0] = g_b[i] - p * bi[i]
        own = bi[i] - part[0]
        correction += 0.5 * p * (own * own - bi[i] * bi[i])
        g_b[i] -= p * part[0]
        for a in range(1, d):
            q = Q[i, a - 1]
            loss[a] = g_Q[i, a - 1] - p * q
            own = q - part[a]
            correction += 0.5 * p * (own * own - q * q)
            g_Q[i, a - 1] -= p * part[a]
        for e in range(F_indptr[i], F_indptr[i + 1]):
            x = F_data[e]
            f = F_indices[e]
            for a in range(d):
                g_feat[f, a] += x * loss[a]
    return correction


# User attributes: a batch's rows of the attribute matrix G (CSR) times the
# attributes' parameters A, and back. scipy's row slicing of G cost more per
# meta-batch than the batch's maths.


@jit()
def add_rows_times(G_indptr, G_indices, G_data, codes, A, out):
    """``out[b]`` += G[codes[b]]·A, the attributes' part of user codes[b]'s prior."""
    for b in range(codes.shape[0]):
        u = codes[b]
        for e in range(G_indptr[u], G_indptr[u + 1]):
            x = G_data[e]
            j = G_indices[e]
            for a in range(A.shape[1]):
                out[b, a] += x * A[j, a]


@jit()
def rows_transpose_times(G_indptr, G_indices, G_data, codes, g, out):
    """``out`` ← Σ_b G[codes[b]]ᵀ g[b], the chain rule from the tasks' priors
    to the attributes' parameters."""
    out[:, :] = 0.0
    for b in range(codes.shape[0]):
        u = codes[b]
        for e in range(G_indptr[u], G_indptr[u + 1]):
            x = G_data[e]
            j = G_indices[e]
            for a in range(g.shape[1]):
                out[j, a] += x * g[b, a]


@jit()
def feature_step(F_indptr, F_indices, F_data, feat, g_feat, m, v, step, lr, theta, n_items):
    """Adam on the item features' parts ``feat``, then every item's (b_i, q_i)
    in ``theta`` follows by F_i·Δfeat, in one pass (scipy's product and
    NumPy's row updates per meta-batch cost as much as the batch's maths)."""
    old = feat.copy()
    adam_step(feat.reshape(-1), g_feat.reshape(-1), m.reshape(-1), v.reshape(-1), step, lr)
    follow_features(F_indptr, F_indices, F_data, feat - old, theta, n_items)


@jit()
def follow_features(F_indptr, F_indices, F_data, delta, theta, n_items):
    """Every item's (b_i, q_i) in ``theta`` moves by F_i·``delta``, the
    change of the features' parts."""
    d = delta.shape[1]
    _, bi, Q = unpack(theta, n_items, d)
    for i in range(F_indptr.shape[0] - 1):
        for e in range(F_indptr[i], F_indptr[i + 1]):
            x = F_data[e]
            f = F_indices[e]
            bi[i] += x * delta[f, 0]
            for a in range(1, d):
                Q[i, a - 1] += x * delta[f, a]
