"""The PyTorch peer: the same model and meta-objective as
``MAMLFactorizationRecommender`` (squared loss), by autograd.

Two forms, as autograd meta-learning code is written:

* ``per_task_meta_grad``: the learn2learn / MeLU loop. Each task is adapted
  on its own (``torch.autograd.grad`` with ``create_graph=True`` for second
  order), the query losses are summed, and one ``backward`` gives the
  meta-gradient.
* ``batched_meta_grad``: all of a meta-batch's inner loops as one tensor
  program over padded (task, rating) arrays with masks.

Both take the meta-parameters as one flat tensor laid out as the package's
``theta`` is, so their gradients compare directly with the analytic ones.
``kappa`` is the support loss's pseudo-count (the estimators' ``shrinkage``)
and ``per_rating`` weights each task's query loss by its query weight
(``task_weighting="ratings"``); ``kappa=0, per_rating=False`` is the
objective of the MAML paper and of learn2learn-style code.
"""

import numpy as np
import torch


def split(theta, n_items, d):
    k = d - 1
    return (theta[0], theta[1 : 1 + d], theta[1 + d : 1 + d + n_items],
            theta[1 + d + n_items :].reshape(n_items, k))


def per_task_meta_grad(theta, tasks, n_items, alpha, lam, reg, n_steps, first_order, kappa=0.0,
                       per_rating=False):
    """(loss, ∂loss/∂theta); ``tasks`` as (items, y, w, n_sup) tensors."""
    theta = theta.detach().requires_grad_(True)
    mu, phi0, bi, Q = split(theta, n_items, len(alpha))
    total, weight = 0.0, 0.0
    for items, y, w, n_sup in tasks:
        it, ys, ws = items[:n_sup], y[:n_sup], w[:n_sup]
        phi = phi0
        for _ in range(n_steps):
            e = mu + bi[it] + phi[0] + Q[it] @ phi[1:] - ys
            support = (ws * e * e).sum() / (ws.sum() + kappa).clamp_min(1e-300) + lam * (phi * phi).sum()
            (g,) = torch.autograd.grad(support, phi, create_graph=not first_order)
            phi = phi - alpha * g
        iq, yq, wq = items[n_sup:], y[n_sup:], w[n_sup:]
        e = mu + bi[iq] + phi[0] + Q[iq] @ phi[1:] - yq
        penalty = bi[iq] ** 2 + (Q[iq] ** 2).sum(dim=1)
        task_weight = wq.sum() if per_rating else 1.0
        total = total + task_weight * (wq * (e * e + reg * penalty)).sum() / wq.sum()
        weight = weight + task_weight
    loss = total / weight
    loss.backward()
    return loss.detach(), theta.grad


def pad(tasks, dtype):
    """Padded (B, m) arrays of a meta-batch's support and query sets, with
    weights 0 in the padding."""
    def block(parts):
        m = max(max(len(p[0]) for p in parts), 1)
        items = np.zeros((len(parts), m), dtype=np.int64)
        y = np.zeros((len(parts), m))
        w = np.zeros((len(parts), m))
        for b, (i, r, v) in enumerate(parts):
            items[b, : len(i)], y[b, : len(i)], w[b, : len(i)] = i, r, v
        return torch.from_numpy(items), torch.tensor(y, dtype=dtype), torch.tensor(w, dtype=dtype)

    support = block([(i[:s], y[:s], w[:s]) for i, y, w, s in tasks])
    query = block([(i[s:], y[s:], w[s:]) for i, y, w, s in tasks])
    return support, query


def batched_meta_grad(theta, padded, n_items, alpha, lam, reg, n_steps, first_order, kappa=0.0,
                      per_rating=False):
    """(loss, ∂loss/∂theta) with every task of the batch adapted at once."""
    (it, ys, ws), (iq, yq, wq) = padded
    theta = theta.detach().requires_grad_(True)
    mu, phi0, bi, Q = split(theta, n_items, len(alpha))
    n_tasks = it.shape[0]
    phi = phi0.expand(n_tasks, -1)
    ws_sum = (ws.sum(dim=1) + kappa).clamp_min(1e-300)
    for _ in range(n_steps):
        e = mu + bi[it] + phi[:, :1] + torch.einsum("bjf,bf->bj", Q[it], phi[:, 1:]) - ys
        # Tasks are independent, so the gradient of the sum is each task's own.
        support = ((ws * e * e).sum(dim=1) / ws_sum).sum() + lam * (phi * phi).sum()
        (g,) = torch.autograd.grad(support, phi, create_graph=not first_order)
        phi = phi - alpha * g
    e = mu + bi[iq] + phi[:, :1] + torch.einsum("bjf,bf->bj", Q[iq], phi[:, 1:]) - yq
    penalty = bi[iq] ** 2 + (Q[iq] ** 2).sum(dim=2)
    task_losses = (wq * (e * e + reg * penalty)).sum(dim=1) / wq.sum(dim=1)
    if per_rating:
        loss = (task_losses * wq.sum(dim=1)).sum() / wq.sum()
    else:
        loss = task_losses.mean()
    loss.backward()
    return loss.detach(), theta.grad
