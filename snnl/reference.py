"""The authors' TensorFlow formula of the soft nearest neighbor loss, for comparison with Eq. 1.

:func:`soft_nearest_neighbor_loss_reference` ports cleverhans' ``SNNLCrossEntropy.SNNL`` with its
``1e-5`` stability terms (:data:`STABILITY_EPS`); ``SoftNearestNeighborLoss(reference=True)`` and
``python -m snnl train --regularizer snnl-reference`` train with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from snnl.inputs import (NonFiniteEmbeddings, check_distance, check_embeddings, check_temperature, fit_dtype,
                         prepare_labels)

STABILITY_EPS = 1e-5  # the authors' TensorFlow constant (cleverhans.loss.SNNLCrossEntropy)


def soft_nearest_neighbor_loss_reference(embeddings: torch.Tensor, labels: torch.Tensor,
                                         temperature: float | torch.Tensor = 1.0,
                                         distance: str = "euclidean") -> torch.Tensor:
    """The authors' TensorFlow formula of the loss (cleverhans ``SNNLCrossEntropy.SNNL``), ported literally.

    ``exp(-D / T) - I``, rows divided by ``eps + row sum``, masked by same label,
    ``-mean(log(eps + sum))`` with ``eps = 1e-5``. For parity checks only: it
    underflows to ``-log(eps)`` when distances are large, and counts points
    without a partner as ``-log(eps)``.

    Two guards the TensorFlow code lacks: the distance matrix has an exact zero diagonal
    and no negative entry (rounding left ``exp(-D_ii / T) - 1`` slightly negative, and a
    point far from all others then took the log of a negative number: NaN), and float32
    inputs whose distances would overflow are computed in float64 (as in Eq. 1's
    implementation). ``T`` must be finite and > 0; a non-finite result raises
    :class:`NonFiniteEmbeddings`. Next to :func:`soft_nearest_neighbor_loss`:

    >>> import torch
    >>> x, y = torch.randn(32, 4, dtype=torch.float64), torch.arange(32) % 2
    >>> ref = soft_nearest_neighbor_loss_reference(x, y, temperature=10.0)
    >>> abs(float(ref) - float(soft_nearest_neighbor_loss(x, y, temperature=10.0))) < 1e-3   # close here
    True
    >>> far = 100 * x                 # far apart relative to T: the formula saturates at -log(1e-5)
    >>> round(float(soft_nearest_neighbor_loss_reference(far, y, 10.0)), 2)
    11.51
    >>> float(soft_nearest_neighbor_loss(far, y, 10.0)) > 100          # Eq. 1 does not
    True
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


def reference_loss_and_dt(embeddings, labels, temperature, distance, want_dt):
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
