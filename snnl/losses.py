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
* Log space: each term is a difference of logs of sums of exponentials, kept in the
  float's range (a shift, else per class each shifted by its own maximum), so the loss and
  its gradient stay finite when distances are huge (raw activations at T = 1). The diagonal
  is excluded exactly.
* A point with no same-class partner in the batch has an undefined term (log 0);
  such points are left out of the mean. If *no* point has a partner the loss is
  ``0`` (still connected to the graph, with zero gradient), never NaN.
* Inputs in float16/bfloat16 are computed in float32; float64 stays float64. Float32
  inputs so large (or a T so small) that the logits ``d / T`` could overflow float32
  (:func:`snnl.inputs.fit_dtype`: about ``|x|^2 D / T > 1e35``) are computed in float64, and the loss
  comes back in float64; beyond float64's range, :class:`NonFiniteEmbeddings`. Never a
  wrong finite value.
* The loss is computed by the fused function of :mod:`snnl.fused`: one product gives the
  logits ``-d / T`` (plus a constant shift), the exponential runs in place on them, one narrow
  product with the one-hot labels gives the class sums; the backward is one coefficient pass
  and one product, and ``dL/dT`` comes from that product. ``chunk_size=N`` evaluates rows in
  blocks of ``N`` and recomputes each block in the backward pass, so memory is O(N * b)
  instead of O(b^2), with the same value.
* Where that path's range ends (a point whose own class lies further than about 60 T in
  float32, 650 T in float64, beyond the batch's mean distance; NaN, inf), it says so and the per-class shifted rows of
  :mod:`snnl.rows` compute the loss, with the gradient written out by hand there too (with
  ``P`` the softmax over all neighbours and ``Q`` over same-class ones, ``P - Q`` in the
  logits). ``_soft_nearest_neighbor_loss(..., fused=False)`` takes that path alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from snnl.fused import fused_loss
from snnl.inputs import (DISTANCES, NonFiniteEmbeddings, check_distance, check_embeddings,  # noqa: F401 (re-exported)
                         check_temperature, fit_dtype, prepare, prepare_labels)
from snnl.reference import (STABILITY_EPS, reference_loss_and_dt,  # noqa: F401 (re-exported)
                            soft_nearest_neighbor_loss_reference)
from snnl.rows import row_terms
from snnl.triplet import triplet_loss  # noqa: F401 (Eq. 4, re-exported)


def _loss(x, y, t, euclid, chunk_size, want_dt=False, fused=True):
    """``(loss, d loss / dT or None)`` of prepared inputs: by the fused function
    (:mod:`snnl.fused`) where its fast path holds, else (or with ``fused=False``) by the
    per-class shifted rows (:mod:`snnl.rows`). Both are exact; they agree to float rounding."""
    if chunk_size is not None and not (isinstance(chunk_size, int) and not isinstance(chunk_size, bool)
                                       and chunk_size > 0):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    x, t = fit_dtype(x, t, euclid)
    if fused:
        out = fused_loss(x, y, t, euclid, chunk_size, want_dt)
        if out is not None:
            return out
    terms, valid, dt = row_terms(x, y, t, euclid, chunk_size, want_dt=want_dt)
    n = valid.sum().clamp(min=1)
    return terms.sum() / n, (dt.sum() / n if want_dt else None)


def _loss_and_dt(embeddings, labels, temperature, distance, chunk_size=None, fused=True):
    """The loss (differentiable in the embeddings) and its derivative in T (a float tensor)."""
    x, y = prepare(embeddings, labels, temperature, distance)
    t = torch.as_tensor(float(temperature), dtype=x.dtype, device=x.device)
    return _loss(x, y, t, distance == "euclidean", chunk_size, want_dt=True, fused=fused)


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
    point at all the result is 0. With :func:`entanglement`, its minimum over T:

    >>> import torch
    >>> x = torch.tensor([[0.0], [0.1], [5.0], [5.1]]); y = torch.tensor([0, 0, 1, 1])
    >>> float(soft_nearest_neighbor_loss(x, y, temperature=1.0)) < 1e-6   # the classes lie apart
    True
    >>> float(soft_nearest_neighbor_loss(x, y, temperature=100.0)) > entanglement(x, y).value
    True
    """
    return _soft_nearest_neighbor_loss(embeddings, labels, temperature, distance, chunk_size)


def _soft_nearest_neighbor_loss(embeddings, labels, temperature=1.0, distance="euclidean", chunk_size=None,
                                fused=True):
    """:func:`soft_nearest_neighbor_loss`; ``fused=False`` computes it by the per-class shifted
    rows of :mod:`snnl.rows` only (the path before :mod:`snnl.fused`, kept to compare with)."""
    x, y = prepare(embeddings, labels, temperature, distance)
    if isinstance(temperature, torch.Tensor):
        t = temperature.reshape(()).to(device=x.device, dtype=x.dtype)
    else:  # a Python float keeps its precision in float64
        t = torch.tensor(float(temperature), device=x.device, dtype=x.dtype)
    return _loss(x, y, t, distance == "euclidean", chunk_size, fused=fused)[0]


# ----------------------------------------------------------------------------------------------
# Eq. 2: entanglement = min over T
@dataclass
class Entanglement:
    """The result of :func:`entanglement`: the minimum over T and the temperature where it lies.

    ``float(e)`` is ``e.value``; ``e.grid`` holds the (T, loss) pairs evaluated, in order of T:

    >>> import torch
    >>> x, y = torch.randn(100, 3), torch.arange(100) % 2
    >>> e = entanglement(x, y)
    >>> isinstance(e, Entanglement), float(e) == e.value, e.grid[0][0] <= e.temperature <= e.grid[-1][0]
    (True, True, True)
    """

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
    """Entanglement (Eq. 2): the minimum over T of the soft nearest neighbor loss, and where it lies.

    A 1-D optimisation over ``log T``: a log-spaced grid over ``t_range`` (default
    1e-4 to 1e4 times the median pairwise distance) brackets the minimum, then a
    golden-section search refines it until the bracket is ``tol`` wide in log T (at most
    ``MAX_SEARCH_STEPS`` steps, so a ``tol`` below the float's precision still ends).
    ``t_range``: two finite temperatures ``0 < lo < hi``; ``grid_points`` >= 3; ``tol`` > 0.
    As T -> 0 the loss tends to 0 if every point's nearest neighbour shares its
    label; such minima lie at the range's edge (``at_boundary=True``). Returns an
    :class:`Entanglement`:

    >>> import torch
    >>> y = torch.arange(200) % 2
    >>> apart, mixed = torch.randn(200, 2) + 8 * y[:, None], torch.randn(200, 2)   # classes apart / mixed
    >>> entanglement(apart, y).value < entanglement(mixed, y).value
    True
    >>> e = entanglement(mixed, y)
    >>> abs(float(soft_nearest_neighbor_loss(mixed, y, e.temperature)) - e.value) < 1e-9   # the loss at its best T
    True
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
            cache[logt] = float(_loss(x, y, t, euclid, chunk_size)[0])
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
    """The soft nearest neighbor loss as an ``nn.Module``, optionally learning its temperature.

    ``criterion(embeddings, labels)`` is :func:`soft_nearest_neighbor_loss` at the module's
    current temperature; with ``learn_temperature``, each call in training mode also takes one
    step of T towards the minimum over T (:func:`entanglement`):

    >>> import torch
    >>> x, y = torch.randn(64, 8), torch.arange(64) % 4
    >>> bool(SoftNearestNeighborLoss(5.0)(x, y) == soft_nearest_neighbor_loss(x, y, 5.0))
    True
    >>> criterion = SoftNearestNeighborLoss(temperature=100.0, learn_temperature=True)
    >>> loss = criterion(x, y)             # the loss at T = 100, then one step on T
    >>> criterion.temperature != 100.0
    True

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
            value, d_temp = reference_loss_and_dt(embeddings, labels, self.temperature, self.distance, learn)
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
