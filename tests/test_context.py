"""Context: each rating's context (b_c, e_c) enters its score as
b_c + q_i·e_c + φ·e_c. The meta-gradient with respect to the contexts'
parameters and the items', through the inner loop, against finite
differences."""

import numpy as np
import pytest

from sklearn_metarec import _kernels as K

from ._reference import central_difference
from .test_features import small_problem


@pytest.mark.parametrize("n_steps", [1, 2, 3])
@pytest.mark.parametrize("loss", ["squared", "logistic", "bpr"])
def test_context_and_item_gradients_match_finite_differences(loss, n_steps):
    model, data, item_reg, outer = small_problem(loss, n_steps)
    indptr = data[0]
    n_items, d = len(model._item_vocab), model.n_factors + 1
    rng = np.random.default_rng(4)
    ctxs = rng.integers(0, 3, indptr[-1]).astype(np.int64)  # 3 contexts, one per rating
    off0 = rng.normal(0.0, 0.4, (3, d))

    def kernel(theta, off, g_off=None):
        grad = np.zeros_like(theta)
        rows = np.empty(n_items, dtype=np.int64)
        value, n_rows = K.meta_batch_grad(*data, theta, n_items, model._alpha(), item_reg, model._inner_settings(),
                                          outer, grad, np.empty(d + 1), rows, np.empty(n_items),
                                          np.empty((0, d)), np.empty((0, d)), ctxs, off,
                                          np.empty_like(off) if g_off is None else g_off)
        return value, grad, rows[:n_rows]

    # Without context parameters the kernel is the context-free one.
    theta = model._theta.copy()
    value0, grad0, _ = kernel(theta, np.zeros((3, d)))
    plain = np.zeros_like(theta)
    value_none, _ = K.meta_batch_grad(*data, theta, n_items, model._alpha(), item_reg, model._inner_settings(),
                                      outer, plain, np.empty(d + 1), np.empty(n_items, dtype=np.int64),
                                      np.empty(n_items), np.empty((0, d)), np.empty((0, d)), *K.no_context(d))
    assert value0 == value_none
    np.testing.assert_array_equal(grad0, plain)

    g_off = np.empty((3, d))
    value, grad, rows = kernel(theta, off0, g_off)
    assert value != value0  # the contexts move the loss
    numeric = central_difference(lambda o: kernel(theta, o.reshape(off0.shape))[0], off0.ravel()).reshape(off0.shape)
    assert np.abs(g_off).max() > 1e-3
    if loss == "bpr":  # a pair's context bias cancels
        np.testing.assert_allclose(g_off[:, 0], 0.0, atol=1e-12)
    np.testing.assert_allclose(g_off, numeric, rtol=1e-5, atol=1e-8)
    # The items' rows, through c = ... + q_i·e_c too (a few touched rows).
    for i in rows[:4]:
        for a in range(d):
            at = 1 + d + i if a == 0 else 1 + d + n_items + i * (d - 1) + a - 1
            up, down = theta.copy(), theta.copy()
            up[at] += 1e-6
            down[at] -= 1e-6
            expected = (kernel(up, off0)[0] - kernel(down, off0)[0]) / 2e-6
            np.testing.assert_allclose(grad[at], expected, rtol=1e-5, atol=1e-8)
    # φ₀'s gradient too.
    for a in range(d):
        up, down = theta.copy(), theta.copy()
        up[1 + a] += 1e-6
        down[1 + a] -= 1e-6
        np.testing.assert_allclose(grad[1 + a], (kernel(up, off0)[0] - kernel(down, off0)[0]) / 2e-6,
                                   rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_fold_in_in_context_matches_a_direct_adaptation(loss):
    # adapt_users with contexts equals T gradient steps on the context-shifted
    # scores, written out in NumPy.
    model, data, item_reg, outer = small_problem(loss, 3)
    indptr, items, ratings, weights = data[:4]
    n_items, d = len(model._item_vocab), model.n_factors + 1
    rng = np.random.default_rng(5)
    ctxs = rng.integers(0, 2, indptr[-1]).astype(np.int64)
    off = rng.normal(0.0, 0.4, (2, d))
    user = np.array([3], dtype=np.int64)
    out = np.empty((1, d))
    inner = K.inner_settings(lam=0.05, kappa=0.0, n_steps=3, logistic=loss == "logistic", n_neg=0)
    alpha = np.full(d, 0.2)
    K.adapt_users(indptr, items, ratings, weights, user, user, 0, model._theta, n_items, alpha, inner, out,
                  np.empty((0, d)), ctxs, off)
    mu = model._theta[0]
    phi0, bi, Q = K.unpack(model._theta, n_items, d)
    lo, hi = indptr[3], indptr[4]
    it, y, w, c = items[lo:hi], ratings[lo:hi], weights[lo:hi], ctxs[lo:hi]
    X = np.column_stack([np.ones(hi - lo), Q[it] + off[c, 1:]])
    base = mu + bi[it] + off[c, 0] + np.sum(Q[it] * off[c, 1:], axis=1)
    phi = phi0.copy()
    for _ in range(3):
        s = base + X @ phi
        slope = 2 * (s - y) if loss == "squared" else 1 / (1 + np.exp(-s)) - y
        phi = phi - alpha * (2 * 0.05 * phi + X.T @ (w * slope) / w.sum())
    np.testing.assert_allclose(out[0], phi, rtol=1e-10, atol=1e-12)
