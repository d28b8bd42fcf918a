"""The core of Eq. 1 (:mod:`snnl.losses`): the per-row terms of a block of query rows against all
points of the batch, and their hand-written gradient.

With ``P`` the softmax over all neighbours and ``Q`` over same-class neighbours, the gradient of a
row's term with respect to its logits is ``P - Q``. A dense batch keeps its (b, b) matrix for the
backward pass; a chunked one (``chunk_size``) recomputes each block there.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from snnl.inputs import fit_dtype


def _row_stats(xq, x, t, offset, euclid, y, n_classes, dense, keep_logits=False):
    """Per-class statistics for query rows ``xq`` (rows ``offset..`` of ``x``; ``x`` itself
    when ``dense``).

    The matrix is built transposed, (points, queries). Logits are ``-d / T`` up to a
    per-query constant (which cancels in Eq. 1): ``(2 <x_i, x_j> - |x_j|^2) / T``
    (Euclidean) or ``<x_i, x_j> / T`` (cosine). Each class ``c`` of points is shifted by
    its own maximum ``m[c, i]`` before the exponential, so that no class underflows as a
    whole. Shifted logits below ``log(tiny)`` are raised to it (``exp`` is several times
    slower on inputs that underflow; the change is below the precision of any class sum,
    which holds an ``exp(0) = 1``), and the diagonal is set to exactly 0 afterwards.
    Returns ``e[j, i] = exp(logit_ij - m[y_j, i])``, ``m`` (C, queries), the per-class sums
    ``s`` (C, queries; 0 where a class has no neighbour) and, if ``keep_logits``, the
    shifted logits.
    """
    inv_t = 1.0 / float(t)
    if dense:  # the Gram matrix, whose diagonal holds the squared norms
        e = torch.mm(x, x.T)
        if euclid:
            sq = e.diagonal().clone()
            e.mul_(2.0 * inv_t).sub_(sq[:, None] * inv_t)
        else:
            e.mul_(inv_t)
    elif euclid:
        e = torch.addmm((x * x).sum(1, keepdim=True), x, xq.T, beta=-inv_t, alpha=2.0 * inv_t)
    else:
        e = torch.mm(x, xq.T).mul_(inv_t)
    diag = e.diagonal(-offset)
    diag.fill_(-math.inf)
    m = e.new_full((n_classes, e.shape[1]), -math.inf).scatter_reduce_(0, y[:, None].expand_as(e), e, "amax")
    m = torch.where(torch.isfinite(m), m, torch.zeros((), device=e.device, dtype=e.dtype))
    e.sub_(m.index_select(0, y)).clamp_(min=math.log(torch.finfo(e.dtype).tiny))
    logits = e.clone() if keep_logits else None
    e.exp_()
    diag.fill_(0.0)
    s = _class_sums(e, y, n_classes)
    return e, m, s, logits


def _class_sums(a, y, n_classes):
    """(C, queries): sums of the rows of ``a`` (points, queries) of each class, as one product."""
    return F.one_hot(y, n_classes).T.to(a.dtype) @ a


class _SNNLRows(torch.autograd.Function):
    """Per-row terms ``lse_all - lse_same`` (0 for rows without a partner), their
    validity, optionally their derivative with respect to T (for the temperature
    step, no extra pass), and the hand-written gradient ``P - Q`` with respect to
    the logits. Dense: ``xq`` is ``x`` (offset 0, the matrix kept for the backward);
    chunked: a block of rows, recomputed in the backward."""

    @staticmethod
    def forward(ctx, xq, x, t, y, yq, offset, euclid, n_classes, dense, want_dt):
        e, m, s, logits = _row_stats(xq, x, t, offset, euclid, y, n_classes, dense, keep_logits=want_dt)
        lse = m + torch.log(s)
        lse_all = torch.logsumexp(lse, 0)
        lse_same = lse.gather(0, yq[None, :]).squeeze(0)
        valid = torch.isfinite(lse_same)
        terms = torch.where(valid, lse_all - lse_same, torch.zeros_like(lse_all))
        dt = terms.new_zeros(0)
        if want_dt:  # d term_i / dT = -(1/T) sum_j (P_ij - Q_ij) logit_ij, logit = shifted + m
            coef = _coef(m, lse, lse_all, yq, valid.to(m.dtype))
            ent = _class_sums(logits.mul_(e), y, n_classes)
            dt = -(coef * (ent + m * s)).sum(0) / t
        ctx.meta = (offset, euclid, n_classes, dense)
        ctx.mark_non_differentiable(valid, dt)
        ctx.save_for_backward(xq, None if dense else x, t, y, yq, m, lse, lse_all, valid)
        ctx.e = e if dense else None  # consumed (overwritten) by the first backward
        return terms, valid, dt

    @staticmethod
    @once_differentiable  # the hand-written gradient is not itself differentiable
    def backward(ctx, grad_terms, _grad_valid, _grad_dt):
        xq, x, t, y, yq, m, lse, lse_all, valid = ctx.saved_tensors
        offset, euclid, n_classes, dense = ctx.meta
        x = xq if dense else x
        e, ctx.e = ctx.e, None
        if e is None:  # chunked, or a second backward through a retained graph: rebuild the block
            e, m, _, _ = _row_stats(xq, x, t, offset, euclid, y, n_classes, dense)
        coef = _coef(m, lse, lse_all, yq, torch.where(valid, grad_terms, torch.zeros_like(grad_terms)))
        gl = e.mul_(coef.index_select(0, y))  # d loss / d logits, (points, queries); columns sum to 0
        s = 2.0 if euclid else 1.0
        need_xq, need_x, need_t = ctx.needs_input_grad[:3]
        grad_xq = grad_x = grad_t = None
        rows = gl.sum(1) if euclid else None  # sum_i gl_ji
        sq = (x * x).sum(1) if euclid and need_t else None
        if dense:  # both roles in one product: (gl + gl^T - [euclid] diag(rows)) x
            gs = gl + gl.T
            if euclid:
                gs.diagonal().sub_(rows)
            gx = gs @ x
            # sum_ij gl_ji <x_j, x_i> = (sum(gs * Gram) + [euclid] rows . |x|^2) / 2
            dot = 0.5 * ((gx * x).sum() + ((rows * sq).sum() if euclid else 0.0)) if need_t else None
            grad_xq = gx.mul_(s / t) if need_xq else None
        else:
            gx = gl.T @ x if (need_xq or need_t) else None
            dot = (gx * xq).sum() if need_t else None
            if need_xq:
                grad_xq = gx * (s / t)
            if need_x:
                grad_x = (gl @ xq).mul_(s / t)
                if euclid:
                    grad_x.sub_(x * (rows[:, None] * (2.0 / t)))
        if need_t:  # logits = (s <x_j, xq_i> - [euclid] |x_j|^2) / T + const_i;  d/dT = -logit / T
            total = s * dot - ((rows * sq).sum() if euclid else 0.0)
            grad_t = -total / (t * t)
        return grad_xq, grad_x, grad_t, None, None, None, None, None, None, None


def _coef(m, lse, lse_all, yq, g):
    """(C, queries): P's per-class factor minus Q's at the own class, times the row weights g."""
    same = torch.exp(m.gather(0, yq[None, :]) - lse.gather(0, yq[None, :]).nan_to_num(neginf=0.0))
    return torch.exp(m - lse_all[None, :]).scatter_add(0, yq[None, :], -same) * g[None, :]


def row_terms(x, y, t, euclid, chunk_size, want_dt=False):
    """Per-row terms of Eq. 1 (``lse_all - lse_same``, 0 for a row without a partner), their
    validity and, with ``want_dt``, d term / dT; labels ``y`` are 0..C-1, ``chunk_size`` rows
    at a time when given."""
    x, t = fit_dtype(x, t, euclid)
    n_classes = int(y.max()) + 1
    if chunk_size is None or chunk_size >= x.shape[0]:
        return _SNNLRows.apply(x, x, t, y, y, 0, euclid, n_classes, True, want_dt)
    if not (isinstance(chunk_size, int) and chunk_size > 0):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    parts = [_SNNLRows.apply(x[a:a + chunk_size], x, t, y, y[a:a + chunk_size], a, euclid, n_classes, False,
                             want_dt) for a in range(0, x.shape[0], chunk_size)]
    return tuple(torch.cat([p[k] for p in parts]) for k in range(3))
