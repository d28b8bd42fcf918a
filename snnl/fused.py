"""The fused exact soft nearest neighbor loss (Eq. 1): one pass over the (b, b) matrix forward,
one pass and one matrix product backward, with the gradient in closed form.

For one or several representations ``x`` of a batch (layers, each (b, D)) at temperatures T::

    E_ij = exp(-d_ij / T + c)   (0 on the diagonal),     S_ic = sum_{j: y_j = c} E_ij,
    term_i = log(sum_c S_ic) - log(S_{i, y_i})

Forward: one product gives ``-d / T + c`` directly (Euclidean: the rows ``[x, |x|^2, 1]``
against ``[2x, -1, -|x|^2 + cT] / T``; cosine: ``(<x_i, x_j> - 1) / T + c``), the exponential
runs in place on it, and one narrow product with the one-hot labels gives every row's class
sums ``S``. No per-row or per-class shift: ``E`` stays symmetric, which is what makes the
backward one product. ``c`` (per layer, no gradient: it cancels in every term) centres the
mean logit, ``-2 mean |x|^2 / T``, at 0, capped so that no sum can overflow.

Backward: with ``g_i`` the weight of row i, ``a_i = g_i / S_all_i`` and ``b_i = g_i / S_same_i``,
the derivative of the loss in the logit of the pair (i, j) is ``E_ij (a_i - [y_i = y_j] b_i)``,
and with both roles of each pair together::

    H_ij = E_ij (a_i + a_j - [y_i = y_j] (b_i + b_j))
    dL/dx = (2 / T) (H x - diag(H 1) x)      (Euclidean)      (1 / T) H x      (cosine)

``H``'s coefficient matrix has rank ``2C + 2`` (C classes): ``[a, 1, -b y, -y] [1, a, y, b y]^T``
with ``y`` the one-hot labels, computed in row blocks that stay in cache and multiplied into
``E`` in place; ``H [x, 1]`` is the one product. ``dL/dT`` comes from the same product:
``-(1/T^2) (sum_i <x_i, (Hx)_i> - sum_i |x_i|^2 (H1)_i)`` (Euclidean).

Range: without per-row shifts, a point whose own class lies far (about ``d / T > 60`` beyond
the shift in float32, ``> 650`` in float64), or logits that round past the float's range,
would lose its terms; the forward detects it from ``S`` (a same-class sum below
``b * tiny / eps``, or one not finite) and reports it, and the caller computes the loss by the
per-class shifted path (:mod:`snnl.rows`, :mod:`snnl.layerwise`) instead: never a wrong value.
"""

from __future__ import annotations

import functools
import math

import torch
from torch.autograd.function import once_differentiable

BLOCK_ELEMENTS = 1 << 20
"""Elements of the (rows, b) temporaries of the backward's coefficient blocks (4 MB in float32):
small enough to stay in cache, large enough that their operator calls cost little."""


@functools.lru_cache(maxsize=None)
def _limits(dtype):
    """``(tiny / eps, log(max))`` of a float dtype (looked up once: ``torch.finfo`` is slow to call)."""
    f = torch.finfo(dtype)
    return f.tiny / f.eps, math.log(f.max)


def shift(sq_mean, t, b, dtype):
    """The shift ``c`` of one layer: the mean logit's opposite, ``2 mean |x|^2 / T`` (cosine,
    ``sq_mean=None``: ``1 / T``), capped at ``log(max / (4 b)) - 1`` so that ``b`` terms of
    ``exp(c)`` cannot overflow. A float."""
    cap = _limits(dtype)[1] - math.log(4 * b) - 1.0
    return min(max((1.0 if sq_mean is None else 2.0 * sq_mean) / t, 0.0), cap)


def _operands(x, sq, t, c):
    """The two factors ``(P, Q)`` of ``P @ Q.T = -d / T + c`` for one layer (``sq``: ``|x|^2``, (b, 1),
    or None for cosine); ``t`` and ``c`` floats."""
    ones = x.new_ones(x.shape[0], 1)
    if sq is not None:
        return (torch.cat([x, sq, ones], 1),
                torch.cat([x * (2.0 / t), ones.mul(-1.0 / t), sq.mul(-1.0 / t).add_(c)], 1))
    return torch.cat([x, ones], 1), torch.cat([x * (1.0 / t), ones.mul(c - 1.0 / t)], 1)


def _fill(out, p, q, offset):
    """``out = exp(p @ q.T)`` in place, 0 where a query meets itself (rows ``offset..`` of the batch)."""
    torch.mm(p, q.T, out=out)
    out.exp_()
    out.diagonal(offset).zero_()
    return out


def _check(s_all, s_same, valid, tiny):
    """Whether the class sums are usable: every row's total ``s_all`` (L, rows) finite (their sum
    is; NaN is not), and each valid row's own class ``s_same`` at least ``tiny`` (its terms then
    lose nothing that matters to the float's precision)."""
    return bool((torch.where(valid, s_same, tiny).amin() >= tiny) & (s_all.sum() < math.inf))


def _entropy_sums(e, c, onehot):
    """(rows, C): per class, ``sum_j E_ij (log E_ij - c)`` = ``sum_j E_ij logit_ij``."""
    z = torch.log(e).sub_(c).nan_to_num_(neginf=0.0).mul_(e)
    return z @ onehot


class FusedSNNL(torch.autograd.Function):
    """Losses (L,) of L representations of one batch, their derivatives in T (L,) when asked,
    and whether the fast path held (a bool tensor; where it did not, the caller recomputes).

    ``apply(t, y, onehot, w, valid, euclid, chunk_size, want_dt, *xs)``: ``t`` (L,) temperatures,
    ``y`` (b,) classes, ``onehot`` (b, C), ``w`` (b,) the weight of each row in the mean (0 for
    rows without a partner), ``valid`` (b,) those with one, ``xs`` L tensors (b, D_l). Euclidean
    inputs should be centred (the loss is translation invariant, and rounding then scales with
    the distances, not the distance from the origin).
    ``chunk_size`` (one representation only): rows in blocks of that many, each recomputed in
    the backward, O(chunk * b) memory.
    """

    @staticmethod
    def forward(ctx, t, y, onehot, w, valid, euclid, chunk_size, want_dt, *xs):
        n_layers, b = len(xs), xs[0].shape[0]
        dtype = xs[0].dtype
        tiny = b * _limits(dtype)[0]
        tf = t.tolist()
        if euclid:
            sqs = [(x * x).sum(1, keepdim=True) for x in xs]
            means = (torch.stack([sq.mean() for sq in sqs]) if n_layers > 1 else sqs[0].mean()[None]).tolist()
            c = [shift(m, tk, b, dtype) for m, tk in zip(means, tf)]
        else:
            sqs, c = [None] * n_layers, [shift(None, tk, b, dtype) for tk in tf]
        ops = [_operands(x, sqs[k], tf[k], c[k]) for k, x in enumerate(xs)]
        ctx.e = None
        rows = b if chunk_size is None else chunk_size
        if rows < b and n_layers != 1:
            raise ValueError("chunk_size takes one representation")
        e = xs[0].new_empty(n_layers, rows, b)
        all_parts, same_parts, r_parts = [], [], []
        for a in range(0, b, rows):
            z = min(rows, b - a)
            blk = e[:, :z]
            for k, (p, q) in enumerate(ops):
                _fill(blk[k], p[a:a + z], q, a)
            # (L, rows, C); dense, E is symmetric and the wide product onehot^T E is the faster one
            s = (onehot.T @ blk).transpose(1, 2) if z == b else blk @ onehot
            s_all = s.sum(2)
            s_same = s.gather(2, y[a:a + z].expand(n_layers, -1)[..., None]).squeeze(2)
            if not _check(s_all, s_same, valid[a:a + z], tiny):
                return (xs[0].new_zeros(n_layers), xs[0].new_zeros(n_layers if want_dt else 0),
                        torch.zeros((), dtype=torch.bool, device=xs[0].device))
            all_parts.append(s_all)
            same_parts.append(s_same)
            if want_dt:
                r_parts.append(torch.stack([_entropy_sums(blk[k], c[k], onehot) for k in range(n_layers)]))
        if len(all_parts) > 1:
            s_all, s_same = torch.cat(all_parts, 1), torch.cat(same_parts, 1)
        terms = torch.where(valid, torch.log(s_all) - torch.log(s_same), 0.0)  # not log(ratio): it may overflow
        losses = (terms * w).sum(1)
        dt = losses.new_zeros(0)
        if want_dt:  # d term_i / dT = -(1/T) sum_j (P_ij - Q_ij) logit_ij
            r = torch.cat(r_parts, 1) if len(r_parts) > 1 else r_parts[0]
            r_same = r.gather(2, y.expand(n_layers, -1)[..., None]).squeeze(2)
            per = torch.where(valid, r.sum(2) / s_all - r_same / s_same, 0.0)
            dt = -(per * w).sum(1) / t
        ctx.meta = (euclid, chunk_size, [x.shape for x in xs], tf, c)
        ctx.mark_non_differentiable(dt)
        ctx.save_for_backward(onehot, w, valid, s_all, s_same, *xs, *(sqs if euclid else ()))
        ctx.e = e if rows == b else None  # dense: kept for the backward, which consumes it
        return losses, dt, torch.ones((), dtype=torch.bool, device=losses.device)

    @staticmethod
    @once_differentiable  # the hand-written gradient is not itself differentiable
    def backward(ctx, grad_losses, _grad_dt, _grad_ok):
        onehot, w, valid, s_all, s_same, *xs = ctx.saved_tensors
        euclid, chunk_size, shapes, t, c = ctx.meta
        n_layers, b = len(shapes), xs[0].shape[0]
        xs, sqs = xs[:n_layers], (xs[n_layers:] if euclid else [None] * n_layers)
        e, ctx.e = ctx.e, None
        g = grad_losses[:, None] * w  # (L, b) the weight of each row
        a = torch.where(valid, g / s_all, 0.0)[..., None]
        bb = torch.where(valid, g / s_same, 0.0)[..., None] * onehot
        ones = a.new_ones(n_layers, b, 1)
        # the coefficients of H as a product of two (L, b, 2C + 2) factors
        u = torch.cat([a, ones, bb, onehot.expand(n_layers, -1, -1)], 2)
        vt = torch.cat([ones, a, -onehot.expand(n_layers, -1, -1), -bb], 2).transpose(1, 2)
        need_t = ctx.needs_input_grad[0]
        rows = b if chunk_size is None else chunk_size
        ops = None
        if e is None:  # chunked, or a second backward through a retained graph: recompute
            ops = [_operands(x, sqs[k], t[k], c[k]) for k, x in enumerate(xs)]
            e = xs[0].new_empty(n_layers, min(rows, b), b)
        xs1 = [torch.cat([x, x.new_ones(b, 1)], 1) for x in xs]
        hx = [x.new_empty(b, x.shape[1] + 1) for x in xs]
        step = max(1, BLOCK_ELEMENTS // (n_layers * b))
        for a0 in range(0, b, rows):
            z = min(rows, b - a0)
            blk = e[:, :z]
            if ops is not None:
                for k, (p, q) in enumerate(ops):
                    _fill(blk[k], p[a0:a0 + z], q, a0)
            for s0 in range(0, z, step):  # H = E * (u v^T), in blocks of rows
                s1 = min(s0 + step, z)
                blk[:, s0:s1].mul_(torch.bmm(u[:, a0 + s0:a0 + s1], vt))
            for k in range(n_layers):
                torch.mm(blk[k], xs1[k], out=hx[k][a0:a0 + z])
        grads, grad_t = [], []
        for k, x in enumerate(xs):
            hxk, r = hx[k][:, :-1], hx[k][:, -1:]
            if euclid:
                grad = (hxk - r * x).mul_(2.0 / t[k])
                if need_t:
                    grad_t.append(-((hxk * x).sum() - (r * sqs[k]).sum()) / (t[k] * t[k]))
            else:
                grad = hxk / t[k]
                if need_t:
                    grad_t.append(-((hxk * x).sum() - r.sum()) / (2.0 * t[k] * t[k]))
            grads.append(grad.reshape(shapes[k]) if ctx.needs_input_grad[8 + k] else None)
        return (torch.stack(grad_t) if need_t else None, None, None, None, None, None, None, None, *grads)


def fused_loss(x, y, t, euclid, chunk_size=None, want_dt=False):
    """``(loss, d loss / dT)`` of one prepared representation ``x`` (b, D) with classes ``y``
    (0..C-1) at the scalar temperature ``t``, by :class:`FusedSNNL`; ``None`` where its fast path
    does not hold (the caller then takes the per-class shifted path). ``d loss / dT`` is a
    tensor when ``want_dt``, else None."""
    b = x.shape[0]
    onehot = torch.nn.functional.one_hot(y).to(x.dtype)
    valid = onehot.sum(0).index_select(0, y) > 1
    w = valid.to(x.dtype) / valid.sum().clamp(min=1)
    chunk = None if chunk_size is None or chunk_size >= b else chunk_size
    loss, dt, ok = FusedSNNL.apply(t.reshape(1), y, onehot, w, valid, euclid, chunk, want_dt, x)
    if not bool(ok):
        return None
    return loss[0], (dt[0] if want_dt else None)
