"""The triplet loss (paper Eq. 4, Appendix B), the comparison the paper draws with the soft
nearest neighbor loss (:mod:`snnl.losses`, which re-exports it)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from snnl.inputs import prepare


def triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Triplet loss (Eq. 4), ``mean_a max(0, |f(a)-f(p)|^2 - |f(a)-f(n)|^2 + m)``, the paper's comparison.

    As in the paper, one positive and one negative are *sampled at random* for
    every anchor (uniformly among the other same-class points and the other-class
    points of the batch). Anchors without a positive or a negative are skipped;
    with none left the loss is 0. Next to :func:`soft_nearest_neighbor_loss`:

    >>> import torch
    >>> y = torch.arange(64) % 2
    >>> apart, mixed = torch.randn(64, 2) + 10 * y[:, None], torch.randn(64, 2)
    >>> float(triplet_loss(apart, y)), float(triplet_loss(mixed, y)) > 0
    (0.0, True)
    >>> float(soft_nearest_neighbor_loss(apart, y, 1.0)) < 1e-6    # both: the classes lie apart
    True
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    x, y = prepare(embeddings, labels, 1.0, "euclidean")
    b = x.shape[0]
    same = y[:, None] == y[None, :]
    eye = torch.eye(b, dtype=torch.bool, device=x.device)
    pos_mask, neg_mask = same & ~eye, ~same
    noise = torch.rand((2, b, b), generator=generator, device="cpu").to(x.device)
    # a random member of each mask per row: argmax of uniform noise restricted to the mask
    p = torch.where(pos_mask, noise[0], -1.0).argmax(1)
    n = torch.where(neg_mask, noise[1], -1.0).argmax(1)
    ok = pos_mask.any(1) & neg_mask.any(1)
    d_ap = (x - x[p]).pow(2).sum(1)
    d_an = (x - x[n]).pow(2).sum(1)
    per = F.relu(d_ap - d_an + margin)
    return torch.where(ok, per, torch.zeros_like(per)).sum() / ok.sum().clamp(min=1)
