"""The authors' TensorFlow formula of the soft nearest neighbor loss, for comparison with Eq. 1.

:func:`soft_nearest_neighbor_loss_reference` ports cleverhans' ``SNNLCrossEntropy.SNNL`` with its
``1e-5`` stability terms (:data:`STABILITY_EPS`); ``SoftNearestNeighborLoss(reference=True)`` and
``python -m snnl train --regularizer snnl-reference`` train with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from snnl.inputs import NonFiniteEmbeddings, check_distance, check_temperature, fit_dtype, prepare_labels

STABILITY_EPS = 1e-5  # the authors' TensorFlow constant (cleverhans.loss.SNNLCrossEntropy)


def soft_nearest_neighbor_loss_reference(embeddings: torch.Tensor, labels: torch.Tensor,
                                         temperature: float | torch.Tensor = 1.0,
                                         distance: str = "euclidean") -> torch.Tensor:
    """The authors' TensorFlow formula (cleverhans ``SNNLCrossEntropy.SNNL``), ported literally.

    ``exp(-D / T) - I``, rows divided by ``eps + row sum``, masked by same label,
    ``-mean(log(eps + sum))`` with ``eps = 1e-5``. For parity checks only: it
    underflows to ``-log(eps)`` when distances are large, and counts points
    without a partner as ``-log(eps)``.

    Two guards the TensorFlow code lacks: the distance matrix has an exact zero diagonal
    and no negative entry (rounding left ``exp(-D_ii / T) - 1`` slightly negative, and a
    point far from all others then took the log of a negative number: NaN), and float32
    inputs whose distances would overflow are computed in float64 (as in Eq. 1's
    implementation). ``T`` must be finite and > 0; a non-finite result raises
    :class:`NonFiniteEmbeddings`.
    """
    check_distance(distance)
    check_temperature(temperature)
    labels = prepare_labels(labels, embeddings.shape[0], embeddings.device)  # the checks of Eq. 1's labels
    x = embeddings.reshape(embeddings.shape[0], -1)
    x = x if x.dtype in (torch.float32, torch.float64) else x.float()
    x, _ = fit_dtype(x, torch.as_tensor(temperature).detach(), distance == "euclidean")
    if distance == "cosine":
        xn = F.normalize(x, dim=1)
        d = 1.0 - xn @ xn.T
    else:
        sq = (x * x).sum(1)
        d = sq[None, :] + sq[:, None] - 2.0 * x @ x.T
    eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    d = d.clamp(min=0.0).masked_fill(eye, 0.0)
    f = torch.exp(-(d / temperature)) - eye.to(x.dtype)
    pick = f / (STABILITY_EPS + f.sum(1, keepdim=True))
    same = (labels[:, None] == labels[None, :]).to(x.dtype)
    value = -torch.log(STABILITY_EPS + (pick * same).sum(1)).mean()
    if not bool(torch.isfinite(value.detach())):
        raise NonFiniteEmbeddings("the reference formula is not finite: embeddings contain NaN or inf, "
                                  "or their distances overflow")
    return value
