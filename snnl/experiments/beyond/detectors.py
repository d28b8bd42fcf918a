"""Out-of-distribution detectors and the field's metrics, for :mod:`snnl.experiments.beyond.benchmark`.

Beyond the paper (Section 5.3 claims that outliers have "fewer than the normal number of
neighbours from the predicted class" in entangled models): seven detectors behind one score
convention, the one of ``pytorch-ood``: an *outlier score*, higher = more likely out of
distribution.

* ``dknn``: minus the Deep k-NN credibility (:class:`snnl.dknn.DkNN`, all hidden layers and the
  logits, calibrated on held-out in-distribution data);
* ``paper_knn``: minus the paper's own measure, the fraction of a point's ``k`` neighbours in each
  hidden layer that carry the model's predicted class, averaged over the hidden layers
  (neighbours found by the same DkNN indexes, :func:`paper_score`);
* from ``pytorch-ood``: ``msp`` (maximum softmax probability, Hendrycks & Gimpel 2017),
  ``energy`` (Liu et al. 2020), ``mahalanobis`` (Lee et al. 2018, on the last hidden layer),
  ``odin`` (Liang et al. 2018: temperature and input perturbation) and ``knn`` (Sun et al. 2022:
  distance to the k-th nearest training point, last hidden layer L2-normalised).

:func:`ood_metrics` computes AUROC, AUPR-IN, AUPR-OUT and FPR@95TPR with
``pytorch_ood.metrics.functional``. FPR@95TPR follows Hendrycks & Gimpel, ODIN, Sun et al. and
OpenOOD: the fraction of OOD inputs accepted as in-distribution at the threshold that accepts
95% of the in-distribution inputs (in-distribution = positive). ``pytorch-ood`` 0.4 defines it
the other way round (OOD positive); :func:`ood_metrics` swaps the roles to get the field's
definition.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from pytorch_ood.detector import KNN, ODIN, EnergyBased, Mahalanobis, MaxSoftmax
from pytorch_ood.metrics import functional as M

from snnl.dknn import DkNN, extract_features
from snnl.models import logits_of

DETECTORS = ("dknn", "paper_knn", "msp", "energy", "mahalanobis", "odin", "knn")
METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95")  # fractions; fpr95: lower is better


def _check_scores(scores, what: str) -> torch.Tensor:
    s = torch.as_tensor(np.asarray(scores, dtype=np.float64))
    if s.ndim != 1:
        raise ValueError(f"{what}: scores must be one-dimensional, got shape {tuple(s.shape)}")
    if len(s) == 0:
        raise ValueError(f"{what}: the set is empty")
    if not torch.isfinite(s).all():
        raise ValueError(f"{what}: scores contain NaN or infinite values")
    return s


def ood_metrics(scores_in, scores_out, tpr: float = 0.95) -> dict:
    """AUROC, AUPR-IN, AUPR-OUT and FPR at ``tpr`` TPR (fractions) of outlier scores (higher =
    more OOD) of in-distribution (``scores_in``) and OOD (``scores_out``) inputs.

    >>> ood_metrics([0.1, 0.2], [0.8, 0.9])
    {'auroc': 1.0, 'aupr_in': 1.0, 'aupr_out': 1.0, 'fpr95': 0.0}
    """
    s_in, s_out = _check_scores(scores_in, "in-distribution"), _check_scores(scores_out, "OOD")
    scores = torch.cat([s_in, s_out])
    labels = torch.cat([torch.zeros(len(s_in), dtype=torch.long), -torch.ones(len(s_out), dtype=torch.long)])
    # pytorch-ood: labels < 0 mark OOD, the positive class of fpr_at_tpr; swap roles for the field's FPR95
    swapped = torch.where(labels < 0, torch.zeros_like(labels), -torch.ones_like(labels))
    return {"auroc": float(M.auroc(scores, labels)), "aupr_in": float(M.aupr(scores, labels, positive="id")),
            "aupr_out": float(M.aupr(scores, labels, positive="ood")),
            "fpr95": float(M.fpr_at_tpr(-scores, swapped, tpr))}


def model_key(model: nn.Module) -> str:
    """A fingerprint of a model's parameters and buffers (features carry it, detectors check it)."""
    h = hashlib.sha1()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class Features:
    """Representations of N inputs: ``layers`` (every hidden layer, then the logits, one (N, D)
    float32 array each, :func:`snnl.dknn.extract_features`) and the model they came from."""

    layers: list
    model: str  # model_key of the model

    def __post_init__(self):
        if not self.layers or len({len(f) for f in self.layers}) != 1:
            raise ValueError("features: need at least one layer, all with the same number of rows")
        for i, f in enumerate(self.layers):
            if not np.isfinite(f).all():
                raise ValueError(f"features: layer {i} contains NaN or infinite values")

    def __len__(self) -> int:
        return len(self.layers[0])

    @property
    def logits(self) -> np.ndarray:
        return self.layers[-1]

    @property
    def penultimate(self) -> np.ndarray:
        return self.layers[-2]


def features(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> Features:
    """:class:`Features` of ``x`` (every hidden layer and the logits) under ``model``."""
    if len(x) == 0:
        raise ValueError("features: the input set is empty")
    return Features(extract_features(model, x, batch_size=batch_size), model_key(model))


def paper_score(neighbor_labels: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """The paper's measure: the fraction of the ``k`` neighbours in each layer (``neighbor_labels``,
    (N, L, k) labels) that carry the predicted class ``prediction`` (N,), averaged over layers."""
    nl, pred = np.asarray(neighbor_labels), np.asarray(prediction)
    if nl.ndim != 3 or pred.shape != (len(nl),):
        raise ValueError(f"paper_score: expected (N, L, k) labels and (N,) predictions, got {nl.shape}, {pred.shape}")
    return (nl == pred[:, None, None]).mean(axis=(1, 2))


class _LogitsOnly(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return logits_of(self.model(x))


class OODDetectors:
    """The seven detectors of :data:`DETECTORS` for one trained model.

    Args:
        k: DkNN neighbours per layer (also those of ``paper_knn``).
        knn_k: the ``k`` of Sun et al.'s KNN detector (50 in their CIFAR-10 setting).
        odin_temperature, odin_eps: ODIN's temperature and input step (its defaults: 1000, 0.0014).
        batch_size: ODIN's batch (it back-propagates to the inputs).
    """

    def __init__(self, k: int = 75, knn_k: int = 50, odin_temperature: float = 1000.0, odin_eps: float = 0.0014,
                 batch_size: int = 500):
        self.k, self.knn_k, self.batch_size = k, knn_k, batch_size
        self.odin_temperature, self.odin_eps = odin_temperature, odin_eps
        self.model_: str | None = None

    def fit(self, model: nn.Module, train: Features, y_train, calibration: Features, y_cal) -> OODDetectors:
        """Index / fit on training representations; calibrate the DkNN on held-out data."""
        key = model_key(model)
        for what, f in (("training", train), ("calibration", calibration)):
            if f.model != key:
                raise ValueError(f"fit: the {what} features come from another model than the one given")
        y = np.asarray(y_train)
        self.model, self.model_ = model, key
        self.n_hidden_ = len(train.layers) - 1
        self.dknn_ = DkNN(k=min(self.k, len(y))).fit(train.layers, y).calibrate(calibration.layers, y_cal)
        z, yt = torch.from_numpy(train.penultimate), torch.as_tensor(y, dtype=torch.long)
        old = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)  # pytorch-ood allocates the means/covariance in the default dtype
        try:
            self.mahalanobis_ = Mahalanobis(None).fit_features(z.double(), yt)
        finally:
            torch.set_default_dtype(old)
        self.knn_ = KNN(None, k=min(self.knn_k, len(y))).fit_features(z, yt)
        self.odin_ = ODIN(_LogitsOnly(model).eval(), eps=self.odin_eps, temperature=self.odin_temperature)
        return self

    def score(self, x: torch.Tensor, feats: Features) -> dict:
        """Outlier scores (higher = more OOD) of every detector, ``{name: (N,) float64 array}``,
        of inputs ``x`` with representations ``feats`` (from the fitted model)."""
        if self.model_ is None:
            raise RuntimeError("call fit() before score()")
        if feats.model != self.model_:
            raise ValueError("score: the features come from another model than the detectors were fitted on")
        if len(x) != len(feats):
            raise ValueError(f"score: {len(x)} inputs but {len(feats)} rows of features")
        if len(x) == 0:
            raise ValueError("score: the input set is empty")
        logits = torch.from_numpy(feats.logits)
        pred = feats.logits.argmax(1)
        dk = self.dknn_.predict(feats.layers)
        z = torch.from_numpy(feats.penultimate)
        out = {"dknn": -dk.credibility,
               "paper_knn": -paper_score(dk.neighbors_labels[:, :self.n_hidden_], pred),
               "msp": MaxSoftmax.score(logits).numpy(), "energy": EnergyBased.score(logits).numpy(),
               "mahalanobis": self.mahalanobis_.predict_features(z.double()).numpy(),
               "knn": self.knn_.predict_features(z).numpy(), "odin": self._odin(x)}
        return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}

    def _odin(self, x: torch.Tensor) -> np.ndarray:
        modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        try:
            dev = next((p.device for p in self.model.parameters()), torch.device("cpu"))
            return torch.cat([self.odin_.predict(x[i:i + self.batch_size].to(dev)).detach().cpu()
                              for i in range(0, len(x), self.batch_size)]).numpy()
        finally:
            for m, mode in modes:
                m.training = mode
