"""Numba kernels: the model's maths, in one place.

Notation
--------
The model is biased matrix factorization,

    r̂(u, i) = μ + b_u + b_i + p_uᵀ q_i.

* ``k`` factors; ``d = k + 1``.
* User parameters φ = (b, p) ∈ R^d. With the item's feature vector
  x_i = (1, q_i) and offset c_i = μ + b_i the prediction is linear in φ:
  r̂ = c_i + x_iᵀ φ, and the residual is e = r̂ − r.
* Meta-parameters Θ = (μ, φ₀, b, Q) live in one flat vector ``theta`` laid
  out as ``[μ, φ₀ (d), b (n_items), Q (n_items·k)]`` so that one Adam loop
  and one gradient buffer serve them all (see :func:`unpack`).
* A task is one user: its ratings split into a support set S and a query
  set Q. Weights w are the sample weights, W_S = Σ_S w. The score of a
  rating is s = r̂ and its loss ℓ(s, y) is the squared error (s − y)², or
  for implicit feedback the cross-entropy of σ(s) against y ∈ [0, 1],
  softplus(s) − y s, with ℓ' = σ(s) − y and curvature ℓ'' = σ(s)(1 − σ(s)).
  Positives-only data get ``n_neg`` sampled negatives (y = 0) per rating,
  drawn uniformly among the items the user never rated, separately for S
  and Q; they are ordinary entries of the task from then on.
* Terms. A loss is a sum of terms, each with a score linear in φ,
  s = c + xᵀφ: one per entry (x = x_i, c = c_i), or, for BPR, one per
  (positive p, sampled negative n) pair, whose score is the difference
  r̂_p − r̂_n: x = (0, q_p − q_n), c = b_p − b_n (μ and b_u cancel), with
  the cross-entropy against y = 1, −log σ(s), and the negative's weight.
  Everything below holds per term with that x, a term's item parameters
  entering with sign +1 for p and −1 for n; W sums the terms' weights.
* Support loss  L_S(φ) = Σ_S w ℓ / (W_S + κ) + λ ‖φ‖²   (λ = ``inner_reg``,
  κ = ``shrinkage``; write W̃_S = W_S + κ, and W̃_S = 0 for an empty S).
  κ counts as κ extra ratings that pull nothing: a user with few ratings
  takes steps W_S / (W_S + κ) as long as one with many, which is the
  shrinkage a Bayesian prior worth κ ratings gives; κ = 0 is the plain mean.
  Its gradient g(φ) = Σ_S w ℓ' x / W̃_S + 2λφ, and its Hessian
  H = Σ_S w ℓ'' x xᵀ / W̃_S + 2λI is a small d×d matrix (for the squared
  loss ℓ' = 2e and ℓ'' = 2, with e = r̂ − r the residual).
* Inner loop: φ_{t+1} = φ_t − α ⊙ g(φ_t), t = 0..T−1, α ∈ R^d the inner
  step sizes (a constant vector for MAML).
* Query loss L_Q(φ_T) = Σ_Q w [ℓ + β (b_i² + ‖q_i‖²)] / W_Q
  (β = ``reg``, a per-rating L2 penalty on item parameters as in SVD).
  A meta-batch's loss is the mean of its tasks' L_Q, weighted by W_Q
  (``per_rating``: every query rating counts once, as in RMSE) or not
  (every user counts once, as in the MAML paper).
* Meta-gradient (reverse pass). v_T = ∂L_Q/∂φ_T; for t = T−1..0, with
  ṽ = α ⊙ v_{t+1} and ℓ', ℓ'' taken at φ_t:
      v_t = v_{t+1} − H ṽ                        (Hessian-vector product)
      ∂/∂c_j  −= (w_j / W̃_S) ℓ''_j x_jᵀṽ         (mixed partial, j ∈ S)
      ∂/∂q_j  −= (w_j / W̃_S) [ℓ''_j (x_jᵀṽ) p_t + ℓ'_j ṽ_p]
  and ∂/∂φ₀ = v_0. First-order MAML keeps only v_T and the query terms,
  which is exactly the query gradient at the adapted parameters.
* Meta-SGD hypergradients, in the same pass: φ_{t+1} depends on α and λ
  directly through −α ⊙ g(φ_t), so
      ∂/∂α −= v_{t+1} ⊙ g(φ_t),      ∂/∂λ −= 2 ṽᵀ φ_t;
  the first-order variant uses v_T in place of every v_{t+1}.
  Memory per task is the T+1 iterates φ_t: O(T·d).
* Context (a factorization machine's pairwise terms). A rating in context
  c, with parameters (b_c, e_c), scores r̂ + b_c + q_iᵀe_c + p_uᵀe_c: still
  linear in φ, with x = (1, q_i + e_c) and c gaining b_c + q_iᵀe_c (a BPR
  pair shares its context, so only (q_p − q_n)ᵀe_c remains). The reverse
  pass is unchanged in x and c; per entry, the gradients G_c and G_x with
  respect to its c and x give ∂/∂b_c = G_c, ∂/∂e_c = G_c q_i + G_x (no G_x
  for a pair) and an extra G_c e_c for q_i.

Layout
------
One module per concern; each kernel's helpers are imported from where
they live, never copied:

* ``maths``: the model above: ℓ, g, the inner loop and one task's reverse
  pass;
* ``sampling``: the counter-based generator, tasks, sampled negatives;
* ``batches``: meta-batches (MAML, Meta-SGD, Reptile) and the reduction of
  item rows;
* ``optim``: Adam and lazy Adam, Reptile's step;
* ``serving``: fold-in, the baselines' exact user solves, prediction,
  top-n;
* ``sgd``: the factorization baseline's SGD epoch;
* ``features``: the chain rule into item features' parts and users'
  attributes' parts;
* ``influence``: a prediction's derivative with respect to each rating's
  weight (explanations).

Numba's cache notices only edits to a cached function's own file, so the
cache of all kernels is keyed on a hash of every module's source (see
``_jit``).

Kernels take plain arrays and scalars only. No cached kernel calls a
``parallel=True`` kernel: loading such a caller from Numba's cache can crash
(numba/numba#8578), so Python drives the meta-batches and every parallel
kernel is called from Python. Randomness comes from a
counter-based generator (SplitMix64) keyed by (seed, user), so results do
not depend on the number of threads; item gradients are reduced serially in
task order for the same reason.
"""

import numpy as np

from .batches import meta_batch_grad, reptile_batch
from .features import add_rows_times, feature_step, follow_features, own_part_grads, rows_transpose_times
from .influence import influence_users
from .maths import inner_settings, outer_settings, reptile_settings, unpack
from .optim import adam_rows, adam_step, step_rows
from .sampling import sample_tasks
from .serving import adapt_users, logistic_users, predict, ridge_users, top_n
from .sgd import sgd_epoch, sgd_epoch_features

__all__ = [
    "adam_rows", "adam_step", "adapt_users", "add_rows_times", "feature_step", "follow_features", "influence_users", "inner_settings", "logistic_users",
    "meta_batch_grad", "no_context", "outer_settings", "own_part_grads", "predict", "reptile_batch",
    "reptile_settings", "ridge_users", "rows_transpose_times", "sample_tasks", "sgd_epoch", "sgd_epoch_features",
    "step_rows", "top_n",
    "unpack",
]


def no_context(d):
    """The context arguments of ``meta_batch_grad`` (codes, parameters, their
    gradient) for ratings without context; ``adapt_users`` takes the first
    two. Empty arrays of the types the estimators pass, so that one
    compiled specialization serves both."""
    return np.empty(0, dtype=np.int64), np.empty((0, d)), np.empty((0, d))
