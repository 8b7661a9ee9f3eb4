"""Which items to ask a user to rate: the scores behind ``select_items``.

Every rule sees an item through the vector x_i = (1, q_i) that multiplies a
user's parameters φ = (b_u, p_u) in the prediction r̂ = μ + b_i + xᵢᵀφ.
"""

import numpy as np

STRATEGIES = ("uncertainty", "melu", "popularity", "random")


def melu_scores(grad_norm, popularity):
    """MeLU's evidence candidate score: the item's mean gradient norm times
    its popularity, each divided by its largest value."""
    g = grad_norm / max(grad_norm.max(), np.finfo(float).tiny)
    p = popularity / max(popularity.max(), np.finfo(float).tiny)
    return g * p


def prior_covariance(deviations, ridge=1e-8):
    """E[(φ − φ₀)(φ − φ₀)ᵀ] over the known users, with a ridge so that it
    can be inverted when a direction carries no spread."""
    d = deviations.shape[1]
    sigma = deviations.T @ deviations / max(len(deviations), 1)
    scale = max(np.trace(sigma) / d, 1.0)
    return sigma + ridge * scale * np.eye(d)


def condition(sigma, X):
    """The covariance after observing ratings of the items with rows X,
    each scaled by one over its noise's standard deviation: (Σ⁻¹ + XᵀX)⁻¹."""
    if len(X) == 0:
        return sigma
    return np.linalg.inv(np.linalg.inv(sigma) + X.T @ X)


def greedy_variance_reduction(X, sigma, target, noise, n):
    """Indices of ``n`` rows of X, chosen one at a time, each the rating
    that most reduces the expected variance of the user's predictions over
    the catalogue, given those already chosen.

    Under a Gaussian prior φ ~ N(φ₀, Σ) and a rating x_iᵀφ + ε with
    Var ε = ``noise[i]``, observing item i lowers the variance of the
    prediction of item t by (x_tᵀΣx_i)² / (x_iᵀΣx_i + noise[i]); summed over
    the catalogue with weights w_t, that is x_iᵀ Σ W Σ x_i / (x_iᵀΣx_i +
    noise[i]) with ``target`` W = Σ_t w_t x_t x_tᵀ. The first maximum wins a
    tie, so the caller's order of the rows breaks ties.
    """
    alive = np.ones(len(X), dtype=bool)
    chosen = []
    noise = np.broadcast_to(noise, len(X))
    for _ in range(min(n, len(X))):
        SX = X @ sigma
        gain = np.einsum("ij,jk,ik->i", SX, target, SX) / (np.einsum("ij,ij->i", SX, X) + noise)
        gain[~alive] = -np.inf
        j = int(np.argmax(gain))
        chosen.append(j)
        alive[j] = False
        s = SX[j]
        sigma = sigma - np.outer(s, s) / (s @ X[j] + noise[j])
    return np.asarray(chosen, dtype=np.int64)

