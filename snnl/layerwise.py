"""The soft nearest neighbor loss of several representations of one batch, in one pass.

Eq. 3 regularises every hidden layer of a network: one loss per layer, all on the same
batch and labels. :func:`soft_nearest_neighbor_losses` computes them together: each
layer's Gram matrix is its own product (layers differ in width), and everything after
it, the (b, b) work of Eq. 1 and its hand-written gradient, runs once on the layers
stacked as an (L, b, b) tensor. Same value and gradient as
:func:`snnl.losses.soft_nearest_neighbor_loss` layer by layer, to float rounding, for a
fraction of the operator calls (on a CPU, the per-layer loss of a 256-point batch spends
more time in them than in arithmetic outside the two products), and:

* each query's logits are shifted by their maximum, a single log-sum-exp per query;
  only when that would let a query's own class underflow (huge distances, a tiny T)
  does it fall back to the per-class shifts of :mod:`snnl.losses`;
* the Gram matrix of wide layers is computed as three half-size products (it is
  symmetric: a quarter fewer operations);
* float32 inputs whose logits could overflow (a bound from the Gram matrix's diagonal,
  ``3 max |x|^2 / T``) are computed in float64, all layers together, and come back in
  float64; beyond float64, :class:`snnl.losses.NonFiniteEmbeddings`. Never a wrong
  finite value;
* Euclidean inputs are centred only when they lie far from the origin relative to their
  spread (:data:`CENTRE_ABOVE`; the loss is translation invariant), on their first point
  (no pass to find the mean), and checked for NaN and inf through the Gram matrix's
  diagonal: no pass over a layer's inputs beyond the two products and that centring.

The fused function of :mod:`snnl.fused` computes them, all layers stacked: each layer's
matrix ``-d / T`` is its own product, then one exponential, one product for every row's
class sums, and in the backward one coefficient pass and one product per layer. Where its
range ends (huge distances at a small T, NaN, inf or an overflow) the path below takes over.

Only dense batches (no ``chunk_size``): the training case.

:func:`layerwise_snnl` applies a set of :class:`snnl.losses.SoftNearestNeighborLoss`
modules (one per layer, with their learned temperatures) through it, as
:func:`snnl.train.train` does.

>>> import torch
>>> xs = [torch.randn(32, 8), torch.randn(32, 4)]; y = torch.arange(32) % 4
>>> soft_nearest_neighbor_losses(xs, y, [1.0, 2.0]).shape
torch.Size([2])
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence

import torch
from torch.autograd.function import once_differentiable

from snnl.fused import FusedSNNL
from snnl.inputs import NonFiniteEmbeddings, check_distance, check_embeddings, prepare_embeddings, prepare_labels
from snnl.losses import SoftNearestNeighborLoss, temperature_step


GRAM_SPLIT = 1024
"""Layers at least this wide get their Gram matrix as three half-size products (:func:`gram_into`)."""

CENTRE_ABOVE = 16.0
"""Euclidean logits come from the Gram matrix, ``(2 <x_i, x_j> - |x_j|^2) / T``, whose
rounding errors scale with the squared norms, not the distances (the loss is translation
invariant). A layer whose squared norms exceed this many times its mean squared distance
to the mean, by a probe of its first two points, is centred on its first point (one pass
over it) before its Gram matrix is computed; the Gram matrix then checks all points, and a
layer still above four times this is centred on its mean and its Gram matrix recomputed.
The errors stay below about ``4 * CENTRE_ABOVE * eps`` of the distances' scale."""


def _far_from_origin(x):
    """Two points' probe of :data:`CENTRE_ABOVE`: ``|x_0|^2`` against half the squared
    distance between ``x_0`` and ``x_1`` (the mean squared distance to the mean, in
    expectation); O(D) work."""
    g = (x[:2] @ x[:2].T).tolist()
    return g[0][0] > CENTRE_ABOVE * 0.5 * (g[0][0] + g[1][1] - 2.0 * g[0][1])


def gram_into(x, out):
    """``out = x x^T``; for wide rows as three half-size products (a quarter fewer
    operations: the Gram matrix is symmetric), exactly symmetric either way."""
    b, d = x.shape
    h = b // 2
    if d < GRAM_SPLIT or h < 64:
        return torch.mm(x, x.T, out=out)
    a, c = x[:h], x[h:]
    torch.mm(a, a.T, out=out[:h, :h])
    torch.mm(a, c.T, out=out[:h, h:])
    torch.mm(c, c.T, out=out[h:, h:])
    out[h:, :h] = out[:h, h:].T
    return out


def _stats(xs, t, y, onehot_t, valid, euclid, per_class=False, keep_logits=False):
    """Stacked per-class statistics, as ``snnl.rows._row_stats`` for each layer.

    Returns ``e`` (L, points, queries) with ``e[l, j, i] = exp(logit - m[l, ., i])`` (0 on
    the diagonal), the shifts ``m`` and the per-class sums ``s`` (L, C, queries). The
    shift is each query's maximum logit, ``m`` (L, 1, queries), unless a query's own class
    then sums to less than ``sqrt(tiny)`` (its neighbours are all far further than its
    nearest point: huge distances or a tiny T), in which case, or with ``per_class``, it is
    each class's own maximum, ``m`` (L, C, queries), as in :mod:`snnl.losses`: no class
    underflows as a whole. (With the query's maximum, the terms that underflow weigh less
    than ``b sqrt(tiny)`` relative to the own class's sum: below any float's precision.)
    ``keep_logits`` also returns the shifted logits (floored at ``log(tiny)``), else None.

    Euclidean layers far from the origin relative to their spread are centred first
    (see :data:`CENTRE_ABOVE`); the inputs actually used are returned first.
    """
    logits, xs = _logits(xs, t, euclid)
    n_layers, log_tiny = len(xs), math.log(torch.finfo(logits.dtype).tiny)
    if not per_class:  # in place: the logits are rebuilt in the rare case that needs them again
        m = logits.amax(1, keepdim=True)
        shifted = logits.sub_(m).clamp_(min=log_tiny)
        e = shifted.exp() if keep_logits else shifted.exp_()
        e.diagonal(dim1=1, dim2=2).fill_(0.0)
        s = onehot_t @ e
        own = s.gather(1, y[None, None, :].expand(n_layers, 1, -1))
        if not bool(((own < math.sqrt(torch.finfo(e.dtype).tiny)) & valid).any()):
            return xs, e, m, s, shifted if keep_logits else None
        logits, xs = _logits(xs, t, euclid)
    m = logits.new_full((n_layers, onehot_t.shape[0], logits.shape[2]), -math.inf)
    m.scatter_reduce_(1, y[None, :, None].expand_as(logits), logits, "amax")
    m.masked_fill_(m == -math.inf, 0.0)  # a class with no neighbour of this query
    shifted = logits.sub_(m.index_select(1, y)).clamp_(min=log_tiny)
    e = shifted.exp() if keep_logits else shifted.exp_()
    e.diagonal(dim1=1, dim2=2).fill_(0.0)
    return xs, e, m, onehot_t @ e, shifted if keep_logits else None


def _logits(xs, t, euclid):
    """(L, points, queries) logits ``-d / T`` up to a per-query constant, ``-inf`` on the
    diagonal, and the inputs they were computed from (centred where far from the origin)."""
    n_layers, b = len(xs), xs[0].shape[0]
    xs = list(xs)
    logits = xs[0].new_empty(n_layers, b, b)
    for k, x in enumerate(xs):
        if euclid and _far_from_origin(x):
            xs[k] = x = x - x[:1]  # centred on its first point: the distances are unchanged
        gram_into(x, logits[k])
    diag = logits.diagonal(dim1=1, dim2=2)
    if euclid:  # the check: max |x_i|^2 against mean |x_i - mean|^2, from the Gram matrix
        far = ~(diag.amax(1) <= 4 * CENTRE_ABOVE * (diag.mean(1) - logits.mean((1, 2))))  # NaN: far
        for k in far.nonzero().flatten().tolist():
            xs[k] = xs[k] - xs[k].mean(0, keepdim=True)
            gram_into(xs[k], logits[k])
    # |logit| <= 3 max |x_j|^2 / T: with the largest float over 4b, no logit, sum or product overflows
    if not bool((diag.amax(1) * (3.0 / t) < torch.finfo(logits.dtype).max / (4 * b)).all()):
        if not all(bool(torch.isfinite(x).all()) for x in xs):
            raise NonFiniteEmbeddings("embeddings contain NaN or inf")
        raise _Overflow  # finite inputs too large for this float: _losses retries in float64
    inv_t = (1.0 / t)[:, None, None]
    if euclid:  # (2 <x_i, x_j> - |x_j|^2) / T
        sq = diag.clone()
        logits.mul_(2.0 * inv_t).sub_(sq[:, :, None] * inv_t)
    else:
        logits.mul_(inv_t)
    diag.fill_(-math.inf)
    return logits, xs


class _Overflow(ArithmeticError):
    """The logits of finite inputs would overflow their float type."""


def _coef(m, lse, lse_all, y, g):
    """(L, C, queries): P's per-class factor minus Q's at the own class, times the weights g."""
    idx = y[None, None, :].expand(m.shape[0], 1, -1)
    m = m.expand_as(lse)  # (L, 1, queries) when every class shares the query's shift
    same = torch.exp(m.gather(1, idx) - lse.gather(1, idx).nan_to_num(neginf=0.0))
    return torch.exp(m - lse_all[:, None, :]).scatter_add_(1, idx, -same).mul_(g[:, None, :])


class _Layerwise(torch.autograd.Function):
    """Losses (L,) of dense batches, their derivatives in T (L,) when asked, and the
    gradient ``P - Q`` in the logits mapped back to every layer's inputs.

    The loss is translation invariant: Euclidean inputs centred in :func:`_stats` get the
    gradient of the raw ones.
    """

    @staticmethod
    def forward(ctx, t, y, onehot_t, valid, euclid, want_dt, *xs):
        ctx.shapes = [x.shape for x in xs]  # the gradients are made in these shapes, not as views
        xs = [x.reshape(x.shape[0], -1) for x in xs]
        xs, e, m, s, shifted = _stats(xs, t, y, onehot_t, valid, euclid, keep_logits=want_dt)
        lse = m + torch.log(s)
        lse_all = torch.logsumexp(lse, 1)
        lse_same = lse.gather(1, y[None, None, :].expand(len(xs), 1, -1)).squeeze(1)
        n = valid.sum().clamp(min=1).to(e.dtype)
        w = valid.to(e.dtype) / n  # the weight of each row in the mean
        losses = ((lse_all - lse_same).nan_to_num(posinf=0.0) * w).sum(1)
        dt = losses.new_zeros(0)
        if want_dt:  # d loss / dT = -(1/T) sum_ij (P - Q)_ji logit_ji, logit = shifted + m
            coef = _coef(m, lse, lse_all, y, w.expand(len(xs), -1))
            ent = onehot_t @ shifted.mul_(e)
            dt = -(coef * (ent + m * s)).sum((1, 2)) / t
        ctx.euclid = euclid
        ctx.e = e  # consumed (overwritten) by the first backward
        ctx.mark_non_differentiable(dt)
        ctx.save_for_backward(t, y, onehot_t, w, m, lse, lse_all, *xs)
        return losses, dt

    @staticmethod
    @once_differentiable  # the hand-written gradient is not itself differentiable
    def backward(ctx, grad_losses, _grad_dt):
        t, y, onehot_t, w, m, lse, lse_all, *xs = ctx.saved_tensors
        euclid = ctx.euclid
        e, ctx.e = ctx.e, None
        if e is None:  # a second backward through a retained graph: rebuild the matrices
            _, e, m, _, _ = _stats(xs, t, y, onehot_t, w > 0, euclid)
        s = 2.0 if euclid else 1.0
        # d loss / d logits, (L, points, queries), times d logit / d <x_i, x_j> = s / T
        coef = _coef(m, lse, lse_all, y, grad_losses[:, None] * w).mul_((s / t)[:, None, None])
        gl = e.mul_(coef.index_select(1, y))
        rows = gl.sum(2)
        gs = gl + gl.transpose(1, 2)  # both roles of each point in one product
        if euclid:
            gs.diagonal(dim1=1, dim2=2).sub_(rows)
        need_t = ctx.needs_input_grad[0]
        grads, total = [], []
        for k, x in enumerate(xs):
            # a tensor of its input's shape, not a view of one: autograd then adds the model's
            # own gradient of that layer into it in place, with no new (b, D) buffer
            grad = x.new_empty(ctx.shapes[k])
            gx = torch.mm(gs[k], x, out=grad.view(x.shape))
            if need_t:  # as snnl.rows._SNNLRows.backward, per layer, with gl scaled by s / T
                sq = (rows[k] * (x * x).sum(1)).sum() if euclid else 0.0
                total.append(s * 0.5 * ((gx * x).sum() + sq) - sq)
            grads.append(grad if ctx.needs_input_grad[6 + k] else None)
        grad_t = -torch.stack(total) / (s * t) if need_t else None
        return (grad_t, None, None, None, None, None, *grads)


def _losses(embeddings, labels, temperatures, distance, want_dt, names=None):
    check_distance(distance)
    if isinstance(embeddings, torch.Tensor) or not isinstance(embeddings, Sequence) or not embeddings:
        raise TypeError("embeddings must be a non-empty list of tensors, one per representation")
    names = list(names or range(len(embeddings)))
    for x in embeddings:
        check_embeddings(x, distance)
    b = embeddings[0].shape[0]
    if any(x.shape[0] != b for x in embeddings):
        raise ValueError(f"all representations must hold the same batch, got sizes {[x.shape[0] for x in embeddings]}")
    y = prepare_labels(labels, b, embeddings[0].device)
    dtype = functools.reduce(torch.promote_types, (x.dtype for x in embeddings))
    dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    xs = [x.to(dtype) for x in embeddings]  # flattened per row in _Layerwise
    if distance == "cosine":
        try:
            xs = [prepare_embeddings(x, distance) for x in xs]
        except NonFiniteEmbeddings:
            _raise_non_finite(xs, names)
    t = torch.as_tensor(temperatures, dtype=dtype, device=xs[0].device).reshape(-1)
    if t.numel() != len(xs):
        raise ValueError(f"got {t.numel()} temperatures for {len(xs)} representations")
    if not bool((torch.isfinite(t.detach()) & (t.detach() > 0)).all()):
        raise ValueError(f"temperatures must be finite and > 0, got {t.detach().tolist()}")
    onehot_t = torch.nn.functional.one_hot(y).T.to(dtype)  # (C, b)
    valid = onehot_t.sum(1).index_select(0, y) > 1  # a same-class partner in the batch
    w = valid.to(dtype) / valid.sum().clamp(min=1)
    flat = [x.reshape(b, -1) for x in xs]
    if distance == "euclidean":  # centred: rounding then scales with the distances (translation invariant)
        flat = [x - x.mean(0, keepdim=True) for x in flat]
    losses, dt, ok = FusedSNNL.apply(t, y, onehot_t.T, w, valid, distance == "euclidean", None, want_dt, *flat)
    if bool(ok):
        return losses, dt
    try:  # huge distances, NaN, inf or an overflow: the per-query or per-class shifted path
        return _Layerwise.apply(t, y, onehot_t, valid, distance == "euclidean", want_dt, *xs)
    except NonFiniteEmbeddings:
        _raise_non_finite(xs, names)
    except _Overflow:  # finite float32 inputs whose logits overflow: all layers in float64
        if dtype != torch.float64:
            try:
                return _Layerwise.apply(t.double(), y, onehot_t.double(), valid, distance == "euclidean", want_dt,
                                        *[x.double() for x in xs])
            except _Overflow:
                pass
        err = NonFiniteEmbeddings(f"embeddings overflow (representation(s) {', '.join(map(str, names))}): "
                                  "squared distances / T beyond float64; scale them down or raise T")
        err.layers = names
        raise err from None


def _raise_non_finite(xs, names):
    """NonFiniteEmbeddings naming the representations with NaN or inf (its ``layers``)."""
    bad = [name for name, x in zip(names, xs) if not bool(torch.isfinite(x.detach()).all())]
    err = NonFiniteEmbeddings(f"embeddings contain NaN or inf (representation {', '.join(map(str, bad))})" if bad
                              else "embeddings overflow when centred")
    err.layers = bad
    raise err from None


def soft_nearest_neighbor_losses(embeddings: Sequence[torch.Tensor], labels: torch.Tensor,
                                 temperatures: Sequence[float] | torch.Tensor,
                                 distance: str = "euclidean") -> torch.Tensor:
    """The soft nearest neighbor loss (Eq. 1) of each of several representations of one batch.

    Args:
        embeddings: L tensors (B, ...), e.g. a network's hidden layers on one batch; each is
            flattened per row, and their widths may differ.
        labels: (B,) integer labels, shared by all.
        temperatures: L temperatures T > 0 (floats, or an (L,) tensor, differentiable).
        distance: ``"euclidean"`` (squared) or ``"cosine"``, for all.

    Returns an (L,) tensor whose entry ``l`` equals
    ``soft_nearest_neighbor_loss(embeddings[l], labels, temperatures[l], distance)``,
    with the same gradient, computed in one pass (see the module's docstring):

    >>> import torch
    >>> h1, h2, y = torch.randn(32, 8), torch.randn(32, 4, 2), torch.arange(32) % 4
    >>> both = soft_nearest_neighbor_losses([h1, h2], y, [1.0, 2.0])
    >>> one_by_one = [soft_nearest_neighbor_loss(h1, y, 1.0), soft_nearest_neighbor_loss(h2, y, 2.0)]
    >>> bool(torch.allclose(both, torch.stack(one_by_one)))
    True
    """
    return _losses(embeddings, labels, temperatures, distance, want_dt=False)[0]


def layerwise_snnl(losses: Mapping[str, SoftNearestNeighborLoss], hidden: Mapping[str, torch.Tensor],
                   labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The loss of each hidden layer by its own module, ``{name: losses[name](hidden[name], labels)}``, at once.

    Modules that share a distance and are neither chunked nor ``reference`` go through
    :func:`soft_nearest_neighbor_losses` in one call, and those learning their temperature
    (in training mode) take the same step on it as their own ``forward`` would; any other
    module is called on its own. The result, the gradients and the temperatures after
    the call are those of calling each module in turn. A representation with NaN or
    inf raises :class:`snnl.NonFiniteEmbeddings` naming its layer. On a :class:`snnl.CNN`'s
    hidden layers, each with a :class:`snnl.SoftNearestNeighborLoss` learning its temperature:

    >>> import torch
    >>> model, y = CNN(), torch.arange(16) % 4
    >>> logits, hidden = model(torch.rand(16, 1, 28, 28))
    >>> criteria = {name: SoftNearestNeighborLoss(100.0, learn_temperature=True) for name in model.layer_names}
    >>> losses = layerwise_snnl(criteria, hidden, y)        # {layer: loss}, and one step on each T
    >>> list(losses) == list(model.layer_names), all(c.temperature != 100.0 for c in criteria.values())
    (True, True)
    """
    missing = [n for n in losses if n not in hidden]
    if missing:
        raise KeyError(f"no representation for layer(s) {missing}; got {list(hidden)}")
    out: dict[str, torch.Tensor] = {}
    groups: dict[str, list[str]] = {}
    for n, mod in losses.items():
        if mod.chunk_size is None and not getattr(mod, "reference", False):
            groups.setdefault(mod.distance, []).append(n)
        else:
            try:
                out[n] = mod(hidden[n], labels)
            except NonFiniteEmbeddings:
                _raise_non_finite([hidden[n]], [n])
    for distance, names in groups.items():
        mods = [losses[n] for n in names]
        steps = [k for k, m in enumerate(mods) if m.learn_temperature and m.training]  # the learning ones
        values, dt = _losses([hidden[n] for n in names], labels, [m.temperature for m in mods], distance,
                             want_dt=bool(steps), names=names)
        if steps:
            with torch.no_grad():  # T = T0 / t: one step on t, as SoftNearestNeighborLoss.forward, all at once
                t = torch.stack([mods[k].inverse_scale for k in steps])
                new = temperature_step(t, dt if len(steps) == len(mods) else dt[steps],
                                       t.new_tensor([mods[k].lr for k in steps]),
                                       t.new_tensor([mods[k].initial_temperature for k in steps]))
                for k, v in zip(steps, new.unbind()):
                    mods[k].inverse_scale.copy_(v)
        out.update(zip(names, values.unbind()))
    return {n: out[n] for n in losses}
