"""The PyTorch peer: the same model and meta-objective as
``MAMLFactorizationRecommender`` (squared loss), by autograd.

Two forms, as autograd meta-learning code is written:

* ``per_task_meta_grad``: the learn2learn / MeLU loop. Each task is adapted
  on its own (``torch.autograd.grad`` with ``create_graph=True`` for second
  order), the query losses are summed, and one ``backward`` gives the
  meta-gradient.
* ``batched_meta_grad``: all of a meta-batch's inner loops as one tensor
  program over padded (task, rating) arrays with masks.
* ``flat_meta_grad``: the strongest form we know for this model. The tasks
  lie end to end (ragged, no padding: ``flatten``), the inner gradient is
  written in closed form (``index_add`` of each rating's 2 w e x / (W + κ)
  into its task's row), and one ``backward`` through the T closed-form
  steps gives the exact second-order meta-gradient, no double backward.
  ``torch.compile`` can fuse it (``compiled_flat_meta_grad``).

Both take the meta-parameters as one flat tensor laid out as the package's
``theta`` is, so their gradients compare directly with the analytic ones.
``kappa`` is the support loss's pseudo-count (the estimators' ``shrinkage``)
and ``per_rating`` weights each task's query loss by its query weight
(``task_weighting="ratings"``); ``kappa=0, per_rating=False`` is the
objective of the MAML paper and of learn2learn-style code.
"""

import numpy as np
import torch

from sklearn_metarec import MAMLFactorizationRecommender
from sklearn_metarec import _kernels as K


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


def flatten(tasks, dtype):
    """A meta-batch's tasks end to end: for the support entries and for the
    query entries, (task index, items, y, w) as flat tensors."""
    def part(select):
        pieces = [(np.full(len(i), b), i, y, w) for b, (i, y, w) in enumerate(select)]
        task, items, y, w = (np.concatenate(c) if c else np.zeros(0) for c in zip(*pieces))
        return (torch.from_numpy(task.astype(np.int64)), torch.from_numpy(items.astype(np.int64)),
                torch.tensor(y, dtype=dtype), torch.tensor(w, dtype=dtype))

    support = part([(i[:s], y[:s], w[:s]) for i, y, w, s in tasks])
    query = part([(i[s:], y[s:], w[s:]) for i, y, w, s in tasks])
    return support, query, len(tasks)


def _flat_loss(theta, ts, it, ys, ws, tq, iq, yq, wq, n_tasks: int, n_items: int, alpha, lam: float, reg: float,
               n_steps: int, first_order: bool, kappa: float, per_rating: bool):
    d = alpha.shape[0]
    mu, phi0 = theta[0], theta[1 : 1 + d]
    bi, Q = theta[1 + d : 1 + d + n_items], theta[1 + d + n_items :].reshape(n_items, d - 1)
    x = torch.cat([torch.ones_like(ys)[:, None], Q[it]], dim=1)  # support features (1, q_i)
    base = mu + bi[it] - ys
    scale = 2.0 / (torch.zeros(n_tasks, dtype=ws.dtype).index_add(0, ts, ws) + kappa).clamp_min(1e-300)
    phi = phi0.expand(n_tasks, d)
    for _ in range(n_steps):
        e = base + (x * phi[ts]).sum(dim=1)
        g = torch.zeros(n_tasks, d, dtype=ws.dtype).index_add(0, ts, (ws * e * scale[ts])[:, None] * x)
        g = g + 2.0 * lam * phi
        phi = phi - alpha * (g.detach() if first_order else g)
    e = mu + bi[iq] + phi[tq, 0] + (Q[iq] * phi[tq, 1:]).sum(dim=1) - yq
    penalty = bi[iq] ** 2 + (Q[iq] ** 2).sum(dim=1)
    w_task = torch.zeros(n_tasks, dtype=wq.dtype).index_add(0, tq, wq)
    task_losses = torch.zeros(n_tasks, dtype=wq.dtype).index_add(0, tq, wq * (e * e + reg * penalty)) / w_task
    if per_rating:
        return (task_losses * w_task).sum() / w_task.sum()
    return task_losses.mean()


def flat_meta_grad(theta, flat, n_items, alpha, lam, reg, n_steps, first_order, kappa=0.0, per_rating=False,
                   loss_fn=_flat_loss):
    """(loss, ∂loss/∂theta) from ``flatten``'s layout (see the module docstring)."""
    (ts, it, ys, ws), (tq, iq, yq, wq), n_tasks = flat
    theta = theta.detach().requires_grad_(True)
    loss = loss_fn(theta, ts, it, ys, ws, tq, iq, yq, wq, n_tasks, n_items, alpha, float(lam), float(reg),
                   int(n_steps), bool(first_order), float(kappa), bool(per_rating))
    loss.backward()
    return loss.detach(), theta.grad


_compiled = {}


def compiled_flat_meta_grad(*args, **kwargs):
    """``flat_meta_grad`` with its loss compiled by ``torch.compile``
    (dynamic shapes: the tasks' lengths vary from batch to batch)."""
    if "fn" not in _compiled:
        _compiled["fn"] = torch.compile(_flat_loss, dynamic=True)
    return flat_meta_grad(*args, loss_fn=_compiled["fn"], **kwargs)


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


class TorchMAMLRecommender(MAMLFactorizationRecommender):
    """The accuracy peer: MAML of the same model trained by PyTorch autograd,
    as learn2learn-style code trains it.

    The MAML paper's objective (mean support loss, every user's query loss
    counting once), the batched meta-gradient above in float32 and
    ``torch.optim.Adam``. Task sampling, the vocabulary and serving (users
    adapted by the same T plain gradient steps) are the package's, so only
    the meta-training differs. Parameters as in
    :class:`~sklearn_metarec.MAMLFactorizationRecommender`.
    """

    def __init__(self, n_factors=32, *, n_inner_steps=5, inner_lr=0.15, meta_lr=0.005, reg=0.01,
                 meta_batch_size=32, n_epochs=40, n_support=(3, 20), first_order=False, random_state=None):
        # The paper's model: a learned initialization of the factors too.
        super().__init__(n_factors, n_inner_steps=n_inner_steps, inner_lr=inner_lr, shrinkage=0.0,
                         meta_lr=meta_lr, reg=reg, item_shrinkage=0.0, prior_factors="learned", meta_batch_size=meta_batch_size, n_epochs=n_epochs,
                         n_support=n_support, first_order=first_order, task_weighting="users",
                         random_state=random_state)

    def _meta_epoch(self, indptr, items, ratings, weights, order, lo, hi, seed):
        if self.n_iter_ == 0 or not hasattr(self, "_torch_theta"):
            self._torch_theta = torch.tensor(self._theta, dtype=torch.float32, requires_grad=True)
            self._torch_adam = torch.optim.Adam([self._torch_theta], lr=self.meta_lr)
        n_items = len(self._item_vocab)
        alpha = torch.tensor(self._alpha(), dtype=torch.float32)
        losses = []
        for batch, offsets in self._batches(indptr, order):
            t_items = np.empty(offsets[-1], dtype=np.int64)
            t_y, t_w = np.empty(offsets[-1]), np.empty(offsets[-1])
            n_sup = np.empty(len(batch), dtype=np.int64)
            K.sample_tasks(indptr, items, ratings, weights, batch, lo, hi, seed, n_items, 0, offsets,
                           t_items, t_y, t_w, n_sup)
            tasks = [(t_items[a:b], t_y[a:b], t_w[a:b], n_sup[j])
                     for j, (a, b) in enumerate(zip(offsets[:-1], offsets[1:]))]
            loss, grad = batched_meta_grad(self._torch_theta, pad(tasks, torch.float32), n_items, alpha,
                                           float(self.inner_reg), float(self.reg), self.n_inner_steps,
                                           bool(self.first_order))
            losses.append(float(loss))
            if not losses[-1] < self._loss_limit:
                break
            self._torch_theta.grad = grad
            self._torch_adam.step()
        self._theta[:] = self._torch_theta.detach().numpy()
        return np.array(losses)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_torch_theta", None)
        state.pop("_torch_adam", None)
        return state
