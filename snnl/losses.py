"""The soft nearest neighbor loss and entanglement (paper Section 2; the triplet loss of App. B,
Eq. 4, is in :mod:`snnl.triplet` and re-exported here).

Eq. 1, for a batch of b points x_i with labels y_i at temperature T::

    l_sn(x, y, T) = -1/b * sum_i log( sum_{j != i, y_j = y_i} exp(-d(x_i, x_j) / T)
                                     / sum_{k != i}            exp(-d(x_i, x_k) / T) )

``d`` is the squared Euclidean distance (default) or the cosine distance
``1 - <x_i, x_j> / (|x_i| |x_j|)``. The value is the negative log probability of
sampling a same-class neighbour; low = classes separated, high = entangled.

Implementation notes
--------------------
* Log space throughout: per row and per class a log-sum-exp (each class shifted
  by its own maximum), so the loss and its gradient stay finite when distances
  are huge (raw activations at T = 1). The diagonal is excluded by an exact mask.
* A point with no same-class partner in the batch has an undefined term (log 0);
  such points are left out of the mean. If *no* point has a partner the loss is
  ``0`` (still connected to the graph, with zero gradient), never NaN.
* Inputs in float16/bfloat16 are computed in float32; float64 stays float64. Float32
  inputs so large (or a T so small) that the logits ``d / T`` could overflow float32
  (:func:`snnl.inputs.fit_dtype`: about ``|x|^2 D / T > 1e35``) are computed in float64, and the loss
  comes back in float64; beyond float64's range, :class:`NonFiniteEmbeddings`. Never a
  wrong finite value.
* The gradient is written out by hand (:class:`_SNNLRows`): with ``P`` the
  softmax over all neighbours and ``Q`` over same-class neighbours, the gradient
  of a row's term with respect to its logits is ``P - Q``. ``chunk_size=N``
  evaluates rows in blocks of ``N`` and recomputes each block in the backward
  pass, so memory is O(N * b) instead of O(b^2), with exactly the same value.
* Cost of a dense batch (the training case): two (b, b, D) products, the Gram
  matrix forward and ``(W + W^T - diag) x`` backward (W: the gradient in the
  logits), plus O(b^2) work with no Python loop over classes (class maxima by
  ``scatter_reduce``, class sums by a one-hot product) and no pass over the
  inputs beyond centring them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from snnl.inputs import (DISTANCES, NonFiniteEmbeddings, check_distance, check_embeddings,  # noqa: F401 (re-exported)
                         check_temperature, fit_dtype, prepare, prepare_labels)
from snnl.reference import STABILITY_EPS, soft_nearest_neighbor_loss_reference  # noqa: F401 (re-exported)
from snnl.triplet import triplet_loss  # noqa: F401 (Eq. 4, re-exported)



# ----------------------------------------------------------------------------------------------
# the core: per-row terms for a block of query rows against all points
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


def _terms(x, y, t, euclid, chunk_size, want_dt=False):
    """Per-row terms, validity and d term / dT (labels ``y`` are 0..C-1)."""
    x, t = fit_dtype(x, t, euclid)
    n_classes = int(y.max()) + 1
    if chunk_size is None or chunk_size >= x.shape[0]:
        return _SNNLRows.apply(x, x, t, y, y, 0, euclid, n_classes, True, want_dt)
    if not (isinstance(chunk_size, int) and chunk_size > 0):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    parts = [_SNNLRows.apply(x[a:a + chunk_size], x, t, y, y[a:a + chunk_size], a, euclid, n_classes, False,
                             want_dt) for a in range(0, x.shape[0], chunk_size)]
    return tuple(torch.cat([p[k] for p in parts]) for k in range(3))


def _loss_and_dt(embeddings, labels, temperature, distance, chunk_size=None):
    """The loss (differentiable in the embeddings) and its derivative in T (a float tensor)."""
    x, y = prepare(embeddings, labels, temperature, distance)
    t = torch.as_tensor(float(temperature), dtype=x.dtype, device=x.device)
    terms, valid, dt = _terms(x, y, t, distance == "euclidean", chunk_size, want_dt=True)
    n = valid.sum().clamp(min=1)
    return terms.sum() / n, dt.sum() / n


def _reference_loss_and_dt(embeddings, labels, temperature, distance, want_dt):
    """:func:`soft_nearest_neighbor_loss_reference` with the input checks of Eq. 1 (labels,
    NaN and inf), and its derivative in T by autograd when ``want_dt`` (else None); under
    ``no_grad`` too, where the value comes back detached."""
    check_embeddings(embeddings, distance)
    y = prepare_labels(labels, embeddings.shape[0], embeddings.device)
    grad_mode = torch.is_grad_enabled()
    with torch.enable_grad():
        t = torch.tensor(float(temperature), dtype=torch.float64, device=embeddings.device, requires_grad=want_dt)
        value = soft_nearest_neighbor_loss_reference(embeddings, y, t, distance)
        if not bool(torch.isfinite(value)) and not bool(torch.isfinite(embeddings.detach()).all()):
            raise NonFiniteEmbeddings("embeddings contain NaN or inf")
        d_temp = torch.autograd.grad(value, t, retain_graph=grad_mode)[0] if want_dt else None
    return (value if grad_mode else value.detach()), d_temp


def soft_nearest_neighbor_loss(embeddings: torch.Tensor, labels: torch.Tensor,
                               temperature: float | torch.Tensor = 1.0, distance: str = "euclidean",
                               chunk_size: int | None = None) -> torch.Tensor:
    """Soft nearest neighbor loss (Eq. 1) of a batch; a scalar tensor.

    Args:
        embeddings: (B, ...) points, flattened per row (raw inputs or hidden activations).
        labels: (B,) integer labels.
        temperature: T > 0, a float or a scalar tensor (differentiable).
        distance: ``"euclidean"`` (squared) or ``"cosine"``.
        chunk_size: evaluate rows in blocks of this size (same value, O(chunk * B) memory).

    Points without a same-class partner are excluded from the mean; with no such
    point at all the result is 0.

    >>> x = torch.tensor([[0.0], [0.1], [5.0], [5.1]]); y = torch.tensor([0, 0, 1, 1])
    >>> float(soft_nearest_neighbor_loss(x, y, temperature=1.0)) < 1e-6
    True
    """
    x, y = prepare(embeddings, labels, temperature, distance)
    if isinstance(temperature, torch.Tensor):
        t = temperature.reshape(()).to(device=x.device, dtype=x.dtype)
    else:  # a Python float keeps its precision in float64
        t = torch.tensor(float(temperature), device=x.device, dtype=x.dtype)
    terms, valid, _ = _terms(x, y, t, distance == "euclidean", chunk_size)
    return terms.sum() / valid.sum().clamp(min=1)


# ----------------------------------------------------------------------------------------------
# Eq. 2: entanglement = min over T
@dataclass
class Entanglement:
    """Result of :func:`entanglement`: the minimum over T and where it is attained."""

    value: float
    temperature: float
    at_boundary: bool = False  # True when the minimum lies at the edge of the searched range
    grid: list[tuple[float, float]] = field(default_factory=list, repr=False)  # (T, loss) evaluated

    def __float__(self) -> float:
        return self.value


MAX_SEARCH_STEPS = 200
"""Golden-section steps of :func:`entanglement` at most (each shrinks the bracket by 0.618:
200 steps take any bracket of float width below float64 resolution)."""


@torch.no_grad()
def entanglement(embeddings: torch.Tensor, labels: torch.Tensor, distance: str = "euclidean",
                 chunk_size: int | None = None, t_range: tuple[float, float] | None = None,
                 grid_points: int = 33, tol: float = 1e-4) -> Entanglement:
    """Entanglement (Eq. 2): ``min_T l_sn(x, y, T)`` and the minimising temperature.

    A 1-D optimisation over ``log T``: a log-spaced grid over ``t_range`` (default
    1e-4 to 1e4 times the median pairwise distance) brackets the minimum, then a
    golden-section search refines it until the bracket is ``tol`` wide in log T (at most
    ``MAX_SEARCH_STEPS`` steps, so a ``tol`` below the float's precision still ends).
    ``t_range``: two finite temperatures ``0 < lo < hi``; ``grid_points`` >= 3; ``tol`` > 0.
    As T -> 0 the loss tends to 0 if every point's nearest neighbour shares its
    label; such minima lie at the range's edge (``at_boundary=True``).
    """
    if isinstance(grid_points, bool) or not isinstance(grid_points, int) or grid_points < 3:
        raise ValueError(f"grid_points must be an integer >= 3, got {grid_points!r}")
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be finite and > 0, got {tol!r}")
    if t_range is not None:
        try:
            t_lo, t_hi = (float(v) for v in t_range)
        except (TypeError, ValueError):
            raise ValueError(f"t_range must be two temperatures (lo, hi), got {t_range!r}") from None
        if not (math.isfinite(t_hi) and 0 < t_lo < t_hi):
            raise ValueError(f"t_range must be two finite temperatures with 0 < lo < hi, got {t_range!r}")
    x, y = prepare(embeddings, labels, 1.0, distance)
    euclid = distance == "euclidean"
    if t_range is None:
        sub = x[: min(len(x), 2048)]
        d = torch.cdist(sub, sub).pow(2) if euclid else 1.0 - sub @ sub.T
        off = d[~torch.eye(len(sub), dtype=torch.bool, device=d.device)]
        med = float(off.median().clamp(min=1e-12))
        t_range = (med * 1e-4, med * 1e4)
    lo, hi = math.log(t_range[0]), math.log(t_range[1])
    if not (hi > lo):
        raise ValueError(f"t_range must be increasing positive values, got {t_range}")
    cache: dict[float, float] = {}

    def f(logt: float) -> float:
        if logt not in cache:
            t = torch.tensor(math.exp(logt), dtype=x.dtype, device=x.device)
            terms, valid, _ = _terms(x, y, t, euclid, chunk_size)
            cache[logt] = float(terms.sum() / valid.sum().clamp(min=1))
        return cache[logt]

    grid = [lo + (hi - lo) * i / (grid_points - 1) for i in range(grid_points)]
    vals = [f(g) for g in grid]
    k = min(range(len(grid)), key=lambda i: vals[i])
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    r = (math.sqrt(5) - 1) / 2
    c, d_ = b - r * (b - a), a + r * (b - a)
    for _ in range(MAX_SEARCH_STEPS):
        if not b - a > tol:
            break
        if f(c) <= f(d_):
            b, d_ = d_, c
            c = b - r * (b - a)
        else:
            a, c = c, d_
            d_ = a + r * (b - a)
    best = min(cache, key=cache.get)
    return Entanglement(value=cache[best], temperature=math.exp(best),
                        at_boundary=best in (lo, hi) or k in (0, len(grid) - 1),
                        grid=sorted((math.exp(g), v) for g, v in cache.items()))


def temperature_step(inverse_scale: torch.Tensor, d_temp: torch.Tensor, lr, initial_temperature) -> torch.Tensor:
    """One gradient step on ``t`` with ``T = T0 / t``, towards the minimum over T (Eq. 2):
    ``t - lr * dl/dT * dT/dt``, ``dT/dt = -T0 / t^2``; where that would leave ``t`` not finite
    or not positive, ``t`` stays. Elementwise: ``lr`` and ``initial_temperature`` are floats or
    tensors like ``inverse_scale``, so several layers' steps can be taken at once."""
    new = inverse_scale - lr * d_temp.to(inverse_scale) * (-initial_temperature / inverse_scale**2)
    return torch.where(torch.isfinite(new) & (new > 0), new, inverse_scale)


class SoftNearestNeighborLoss(nn.Module):
    """The soft nearest neighbor loss as a module, ``forward(embeddings, labels)``.

    Args:
        temperature: T (or the initial T0 when learned). The authors' code uses 100.
        distance: ``"euclidean"`` or ``"cosine"``.
        learn_temperature: keep a learnable inverse temperature ``t`` with ``T = T0 / t``
            (t starts at 1), the scheme of the authors' code. Each forward in training
            mode returns the loss at the current T and takes one gradient step
            ``t -= lr * dl_sn/dt`` towards the minimum over T (Eq. 2), with the
            derivative computed in the same pass. (The authors' code steps first and
            evaluates at the new T: the same rule, one step earlier, at twice the cost.)
            ``t`` is a buffer: the model's optimiser, which may be maximising the
            loss, never touches it.
        lr: the step size on ``t`` (0.1 in the authors' code).
        chunk_size: see :func:`soft_nearest_neighbor_loss`.
        reference: compute the authors' formula (:func:`soft_nearest_neighbor_loss_reference`,
            with its ``1e-5`` terms) instead of Eq. 1, to compare with their results: it
            saturates at ``-log(1e-5)`` with a vanishing gradient once the points of a batch lie
            far apart relative to T. Its learned-temperature step takes ``dl/dT`` from autograd.
    """

    def __init__(self, temperature: float = 100.0, distance: str = "euclidean",
                 learn_temperature: bool = False, lr: float = 0.1, chunk_size: int | None = None,
                 reference: bool = False):
        super().__init__()
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")
        check_distance(distance)
        if reference and chunk_size is not None:
            raise ValueError("the reference formula has no chunked form; use chunk_size=None")
        self.initial_temperature = float(temperature)
        self.distance, self.learn_temperature, self.lr, self.chunk_size = distance, learn_temperature, lr, chunk_size
        self.reference = reference
        self.register_buffer("inverse_scale", torch.ones((), dtype=torch.float64))  # t in T = T0 / t

    @property
    def temperature(self) -> float:
        """The current temperature T."""
        return self.initial_temperature / float(self.inverse_scale)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        learn = self.learn_temperature and self.training
        if self.reference:
            value, d_temp = _reference_loss_and_dt(embeddings, labels, self.temperature, self.distance, learn)
        elif learn:
            value, d_temp = _loss_and_dt(embeddings, labels, self.temperature, self.distance, self.chunk_size)
        else:
            return soft_nearest_neighbor_loss(embeddings, labels, self.temperature, self.distance, self.chunk_size)
        if not learn:
            return value
        with torch.no_grad():  # one step on t (T = T0 / t), the derivative from the same pass
            self.inverse_scale.copy_(temperature_step(self.inverse_scale, d_temp, self.lr, self.initial_temperature))
        return value

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature:.4g}, distance={self.distance!r}, "
                f"learn_temperature={self.learn_temperature}" + (", reference=True" if self.reference else ""))
