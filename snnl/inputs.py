"""Checking and preparing the inputs of the losses (:mod:`snnl.losses`, :mod:`snnl.layerwise`,
:mod:`snnl.triplet`): one set of errors for all of them."""

from __future__ import annotations

import math

import torch

DISTANCES = ("euclidean", "cosine")


class NonFiniteEmbeddings(ValueError):
    """The embeddings given to a loss contain NaN or inf (or overflow): a ValueError, never a NaN loss.

    Raised by every loss; :func:`snnl.layerwise_snnl` and :func:`snnl.soft_nearest_neighbor_losses`
    name the representations at fault in ``.layers``:

    >>> import torch
    >>> x, y = torch.randn(8, 2), torch.arange(8) % 2
    >>> x[3, 0] = float("nan")
    >>> try:
    ...     soft_nearest_neighbor_losses([torch.randn(8, 2), x], y, [1.0, 1.0])
    ... except NonFiniteEmbeddings as err:
    ...     print(err.layers)
    [1]
    """


def prepare(embeddings, labels, temperature, distance):
    """Checked ``(x, y)``: the rows of ``embeddings`` as :func:`prepare_embeddings` makes them,
    and the labels as classes 0..C-1."""
    check_embeddings(embeddings, distance)
    y = prepare_labels(labels, embeddings.shape[0], embeddings.device)
    check_temperature(temperature)
    return prepare_embeddings(embeddings, distance), y


def check_distance(distance):
    if distance not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; choose one of {', '.join(DISTANCES)}")


def check_embeddings(embeddings, distance):
    if not isinstance(embeddings, torch.Tensor):
        raise TypeError(f"embeddings must be a tensor, got {type(embeddings).__name__}")
    check_distance(distance)
    if embeddings.dim() == 0:
        raise ValueError("embeddings must have a batch dimension, got a scalar")


def prepare_labels(labels, b, device):
    """Labels as classes 0..C-1 (a long vector of length ``b``), checked: integers >= 0 (a negative
    label, such as an ignore index of -1, is no class) on the embeddings' ``device`` (a tensor on
    another device is an error, not a silent copy; a list or an array is placed there)."""
    if isinstance(labels, torch.Tensor) and labels.device != torch.device(device):
        raise ValueError(f"labels are on {labels.device} but the embeddings on {device}: move them first, "
                         f"e.g. labels.to(embeddings.device)")
    labels = torch.as_tensor(labels, device=device)
    if labels.dim() != 1 or labels.shape[0] != b:
        raise ValueError(f"labels must be a vector of length {b} (the batch size), got shape {tuple(labels.shape)}")
    if b < 2:
        raise ValueError(f"the soft nearest neighbor loss needs at least 2 points, got {b}")
    if labels.is_floating_point():
        if not torch.equal(labels, labels.round()):
            raise ValueError("labels must be integers")
    labels = labels.long()  # bool, uint8, int32... as indices
    lo, hi = torch.aminmax(labels)
    lo, hi = int(lo), int(hi)
    if lo < 0:
        raise ValueError(f"labels must be class indices >= 0, got {lo}: a label such as -1 (an ignore "
                         f"index) is no class; drop those examples first, e.g. x[y >= 0], y[y >= 0]")
    if hi < b and bool(torch.bincount(labels, minlength=hi + 1).all()):
        return labels  # already 0..C-1, every class present (a batch of all classes): no sort
    return torch.unique(labels, return_inverse=True)[1]  # classes 0..C-1


def check_temperature(temperature):
    if isinstance(temperature, torch.Tensor):
        if temperature.numel() != 1:
            raise ValueError(f"temperature must be a scalar, got shape {tuple(temperature.shape)}")
        if not bool(torch.isfinite(temperature.detach()).all() & (temperature.detach() > 0).all()):
            raise ValueError(f"temperature must be finite and > 0, got {temperature.detach().item()}")
    elif not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")


def prepare_embeddings(embeddings, distance):
    """(b, D) rows in float32/float64: centred (Euclidean) or normalised (cosine); raises
    :class:`NonFiniteEmbeddings` on NaN or inf."""
    b = embeddings.shape[0]
    x = embeddings.reshape(b, -1)
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()  # fp16 / bf16 / integer inputs accumulate in float32
    # NaN and inf reach the column means (and the normalised rows): a check at no extra pass
    # over x; the full check only runs when they are not finite (a NaN, an inf or an overflow)
    if distance == "euclidean":
        mean = x.detach().mean(0, keepdim=True)
        if not bool(torch.isfinite(mean).all()) and not bool(torch.isfinite(x.detach()).all()):
            raise NonFiniteEmbeddings("embeddings contain NaN or inf")
        return x - mean  # translation-invariant; fewer cancellation errors
    norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    if not bool(torch.isfinite(norms.detach()).all()) and bool(torch.isfinite(x.detach()).all()):
        # finite rows whose norm overflows (|x| ~ 1e19 in float32): scaled by their largest entry first
        x = x / x.detach().abs().amax(1, keepdim=True).clamp(min=torch.finfo(x.dtype).tiny)
        norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    x = x / norms.clamp(min=1e-12)  # as F.normalize; rows in [-1, 1]: their sum cannot overflow
    if not bool(torch.isfinite(x.detach().sum())):
        raise NonFiniteEmbeddings("embeddings contain NaN or inf")
    return x


def fit_dtype(x, t, euclid):
    """``(x, t)`` in a dtype in which no logit can overflow: float32 inputs go to float64 when
    ``3 D max|x|^2 / T`` (a bound on ``|2 <x_i, x_j> - |x_j|^2| / T``; ``3 / T`` for cosine)
    exceeds the float's largest value divided by ``4 b``; where float64 is not enough either,
    :class:`NonFiniteEmbeddings` (an overflow, as a diverging network makes)."""
    b = x.shape[0]
    a = float(x.detach().abs().amax()) if euclid else 1.0
    scale = a * a * x.shape[1] if euclid else 1.0  # (a * a: inf, not an OverflowError, beyond float64)
    bound = 3.0 * scale / float(t.detach())
    if not bound < torch.finfo(x.dtype).max / (4 * b):
        if x.dtype != torch.float64 and bound < torch.finfo(torch.float64).max / (4 * b):
            return x.double(), t.double()
        raise NonFiniteEmbeddings(f"embeddings overflow: squared distances / T reach about {bound:.3g}, "
                                  "beyond float64; scale them down or raise T")
    return x, t
