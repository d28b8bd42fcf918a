"""Deep k-Nearest Neighbors, Papernot & McDaniel 2018 (arXiv:1803.04765); SPEC section 3.

The paper (Section 5.2, Fig. 9, Appendix F) measures how well the DkNN's
*credibility* tracks accuracy on adversarial inputs, for models trained with
and without the soft nearest neighbor loss. The algorithm:

1. store each chosen layer's representation of the training set, optionally
   L2-normalised and centred on the training mean (as in the authors' code),
   in an exact faiss ``IndexFlatL2`` per layer (on GPU when faiss has one);
2. for an input, find its ``k`` nearest training points in every layer;
3. nonconformity of label j: ``alpha_j = sum over layers of #{neighbours with label != j}``;
4. calibration: on held-out data, ``A = {alpha_{y_true}}``;
5. p-value: ``p_j = #{a in A : a >= alpha_j} / |A|``;
6. prediction = argmax_j p_j (ties: the smallest class index), credibility =
   max_j p_j, confidence = 1 - the second largest p_j.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = rng.integers(0, 3, 300)
>>> feats = lambda y: [np.eye(3)[y] + 0.1 * rng.normal(size=(len(y), 3)), rng.normal(size=(len(y), 2))]
>>> dknn = DkNN(k=5).fit(feats(y), y)
>>> dknn = dknn.calibrate(feats(y[:50]), y[:50])
>>> out = dknn.predict(feats(np.array([0, 1, 2])))
>>> out.prediction, out.p_values.shape
(array([0, 1, 2]), (3, 3))
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from snnl.extras import require
from snnl.layers import LayerOutputs, check_layer_names, unknown_layer
from snnl.models import logits_of

__all__ = ["DkNN", "DkNNResult", "extract_features"]


@dataclass
class DkNNResult:
    """The output of :meth:`DkNN.predict` for N inputs, C classes and L layers: predictions and their credibility.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(90) % 3
    >>> layer = lambda y: np.eye(3)[y] + 0.3 * rng.normal(size=(len(y), 3))
    >>> out = DkNN(k=5).fit([layer(y)], y).calibrate([layer(y[:30])], y[:30]).predict([layer(np.array([2]))])
    >>> isinstance(out, DkNNResult), out.prediction, out.p_values.shape, out.neighbors_labels.shape
    (True, array([2]), (1, 3), (1, 1, 5))
    """

    prediction: np.ndarray  # (N,) int64, the label (of ``DkNN.classes_``) with the largest p-value
    credibility: np.ndarray  # (N,) float64, largest p-value
    confidence: np.ndarray  # (N,) float64, 1 - second largest p-value
    p_values: np.ndarray  # (N, C) float64, one column per class of ``DkNN.classes_``
    nonconformity: np.ndarray  # (N, C) int64, alpha_j = # neighbours (all layers) with label != j
    neighbors_labels: np.ndarray  # (N, L, k) int64, training labels of the neighbours per layer
    neighbors_index: np.ndarray  # (N, L, k) int64, training-set indices of those neighbours


def _as_layers(features, what: str) -> list[np.ndarray]:
    if isinstance(features, Mapping):
        features = list(features.values())
    if isinstance(features, (np.ndarray, torch.Tensor)):
        features = [features]
    if not isinstance(features, Sequence) or len(features) == 0:
        raise ValueError(f"{what}: features must be an array or a non-empty list of arrays, one per layer")
    out = []
    for i, f in enumerate(features):
        if isinstance(f, torch.Tensor):
            f = f.detach().cpu().numpy()
        f = np.asarray(f)
        if f.ndim < 2:
            raise ValueError(f"{what}: layer {i} must have shape (N, D), got {f.shape}")
        if f.size == 0 and len(f):
            raise ValueError(f"{what}: layer {i} has zero width (shape {f.shape}): no features to compare")
        f = np.ascontiguousarray(f.reshape(len(f), int(np.prod(f.shape[1:]))), dtype=np.float32)
        if not np.isfinite(f).all():
            raise ValueError(f"{what}: layer {i} contains NaN or infinite values")
        out.append(f)
    n = {len(f) for f in out}
    if len(n) != 1:
        raise ValueError(f"{what}: all layers must have the same number of rows, got {[len(f) for f in out]}")
    return out


def _as_labels(labels, n: int, what: str) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(f"{what}: expected {n} labels (one per row of the features), got shape {labels.shape}")
    if n and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0):
        raise ValueError(f"{what}: labels must be non-negative integers")
    return labels.astype(np.int64)


class DkNN:
    """Deep k-Nearest Neighbors (Papernot & McDaniel 2018, arXiv:1803.04765): credibility from the layers' neighbours.

    Args:
        k: neighbours per layer (75 in the authors' code).
        normalize: L2-normalise every representation, then subtract the mean of the
            normalised *training* representation (applied to training, calibration and
            test data alike), as the authors' code does. All-zero rows stay zero.
        num_classes: number of classes, labels ``0..num_classes-1``; default: the distinct
            training labels, any non-negative integers (``classes_``; sparse ids such as
            ``10**9`` cost nothing; ``p_values`` has one column per class in sorted order and
            ``prediction`` holds the labels themselves).
        trim_zero_calibration: drop calibration scores equal to 0, as the authors' code
            does with ``np.trim_zeros``. A departure from the definition; off by default.
        use_gpu: faiss GPU indexes; ``None`` = when ``faiss.get_num_gpus() > 0``.

    ``features`` arguments: a list with one (N, D_l) array or tensor per layer (a
    single array is one layer; rows of higher-rank arrays are flattened), e.g. from
    :func:`extract_features`, by layer name on any model. The indexes are faiss's: the extra
    ``snnl[dknn]`` (without it, ``DkNN()`` is a one-line error saying so).

    >>> import torch, torch.nn as nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
    >>> x, y = torch.rand(120, 1, 8, 8), torch.arange(120) % 3
    >>> layers = ["2", "logits"]                       # a module's name, the model's output
    >>> dknn = DkNN(k=10).fit(extract_features(model, x[:80], layers), y[:80])
    >>> dknn = dknn.calibrate(extract_features(model, x[80:100], layers), y[80:100])
    >>> out = dknn.predict(extract_features(model, x[100:], layers))
    >>> out.prediction.shape, bool(((out.credibility >= 0) & (out.credibility <= 1)).all())
    ((20,), True)
    """

    def __init__(self, k: int = 75, normalize: bool = True, num_classes: int | None = None,
                 trim_zero_calibration: bool = False, use_gpu: bool | None = None):
        if isinstance(k, bool) or int(k) != k or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k}")
        if num_classes is not None and (int(num_classes) != num_classes or num_classes < 2):
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes}")
        _faiss()  # a missing faiss is a one-line error here, before any feature is computed
        self.k = int(k)
        self.normalize = bool(normalize)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.trim_zero_calibration = bool(trim_zero_calibration)
        self.use_gpu = use_gpu
        self.indexes_: list | None = None
        self.calibration_scores_: np.ndarray | None = None

    def __repr__(self) -> str:
        return (f"DkNN(k={self.k}, normalize={self.normalize}, num_classes={self.num_classes}, "
                f"trim_zero_calibration={self.trim_zero_calibration})")

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, features, labels) -> DkNN:
        """Index the training representations (one exact faiss index per layer)."""
        layers = _as_layers(features, "fit")
        labels = _as_labels(labels, len(layers[0]), "fit")
        if self.k > len(labels):
            raise ValueError(f"k={self.k} is larger than the training set ({len(labels)} points)")
        if self.num_classes is not None:
            if int(labels.max()) >= self.num_classes:
                raise ValueError(f"training labels go up to {labels.max()} but num_classes={self.num_classes}")
            self.classes_ = np.arange(self.num_classes, dtype=np.int64)
        else:
            self.classes_ = np.unique(labels)
        self.num_classes_ = len(self.classes_)
        if self.num_classes_ < 2:
            raise ValueError("need at least 2 classes (pass num_classes= if the training set has one)")
        self.widths_ = [f.shape[1] for f in layers]
        self.centers_ = [None] * len(layers)
        if self.normalize:
            layers = [_l2_normalize(f) for f in layers]
            self.centers_ = [f.mean(axis=0, dtype=np.float64).astype(np.float32) for f in layers]
            layers = [f - m for f, m in zip(layers, self.centers_)]
        faiss = _faiss()
        gpu = faiss.get_num_gpus() > 0 if self.use_gpu is None else bool(self.use_gpu)
        self.indexes_ = [self._make_index(f, gpu) for f in layers]
        self.train_labels_ = labels
        self._train_codes = np.searchsorted(self.classes_, labels)  # column of each training label
        self.calibration_scores_ = None
        return self

    def _codes(self, labels: np.ndarray, what: str) -> np.ndarray:
        """The column (index in ``classes_``) of each label; a ValueError for an unknown label."""
        codes = np.searchsorted(self.classes_, labels).clip(max=self.num_classes_ - 1)
        unknown = labels[self.classes_[codes] != labels]
        if len(unknown):
            raise ValueError(f"{what}: label {unknown[0]} is not a class of the training set "
                             f"(num_classes={self.num_classes_}, labels {self.classes_[0]}..{self.classes_[-1]})")
        return codes

    def _make_index(self, x: np.ndarray, gpu: bool):
        faiss = _faiss()
        index = None
        if gpu:
            try:
                self._gpu_res = getattr(self, "_gpu_res", None) or faiss.StandardGpuResources()
                index = faiss.GpuIndexFlatL2(self._gpu_res, x.shape[1])
            except (AttributeError, RuntimeError) as e:  # faiss built without GPU support: CPU fallback
                if self.use_gpu:
                    warnings.warn(f"faiss GPU index unavailable ({type(e).__name__}: {e}); using the CPU index",
                                  RuntimeWarning, stacklevel=3)
                index = None
        if index is None:
            index = faiss.IndexFlatL2(x.shape[1])
        index.add(np.ascontiguousarray(x, dtype=np.float32))
        return index

    def _check_fitted(self, what: str):
        if self.indexes_ is None:
            raise RuntimeError(f"call fit() before {what}()")

    def kneighbors(self, features) -> tuple[np.ndarray, np.ndarray]:
        """Indices (N, L, k) of the k nearest training points in every layer, and their
        squared L2 distances (N, L, k), after the same preprocessing as at fit."""
        self._check_fitted("kneighbors")
        layers = _as_layers(features, "kneighbors")
        if [f.shape[1] for f in layers] != self.widths_:
            raise ValueError(f"expected {len(self.widths_)} layers of widths {self.widths_}, "
                             f"got {len(layers)} of widths {[f.shape[1] for f in layers]}")
        dist, idx = [], []
        for f, center, index in zip(layers, self.centers_, self.indexes_):
            if center is not None:
                f = np.ascontiguousarray(_l2_normalize(f) - center)
            d, i = index.search(f, self.k)
            dist.append(d)
            idx.append(i)
        return np.stack(idx, axis=1).astype(np.int64), np.stack(dist, axis=1)

    def _nonconformity(self, features):
        idx, _ = self.kneighbors(features)
        nbr_labels = self.train_labels_[idx]  # (N, L, k)
        n, c = len(nbr_labels), self.num_classes_
        flat = (np.arange(n)[:, None] * c + self._train_codes[idx].reshape(n, -1)).ravel()
        counts = np.bincount(flat, minlength=n * c).reshape(n, c)  # neighbours of each label
        return nbr_labels.shape[1] * self.k - counts, nbr_labels, idx

    # -- calibration and prediction ----------------------------------------------------------
    def calibrate(self, features, labels) -> DkNN:
        """Nonconformity of the true label on held-out data (disjoint from training and test)."""
        self._check_fitted("calibrate")
        layers = _as_layers(features, "calibrate")
        labels = _as_labels(labels, len(layers[0]), "calibrate")
        if len(labels) == 0:
            raise ValueError("calibrate: the calibration set is empty")
        codes = self._codes(labels, "calibrate")
        alpha, _, _ = self._nonconformity(layers)
        scores = np.sort(alpha[np.arange(len(labels)), codes])
        if self.trim_zero_calibration:
            scores = scores[scores > 0]
            if len(scores) == 0:
                raise ValueError("calibrate: every calibration score is 0, nothing left after trimming zeros")
        self.calibration_scores_ = scores
        return self

    def p_values(self, nonconformity: np.ndarray) -> np.ndarray:
        """``p_j = #{a in A : a >= alpha_j} / |A|`` for an (N, C) array of nonconformities."""
        if self.calibration_scores_ is None:
            raise RuntimeError("call calibrate() before predict()")
        a = self.calibration_scores_
        return (len(a) - np.searchsorted(a, nonconformity, side="left")) / len(a)

    def predict(self, features) -> DkNNResult:
        """Prediction, credibility, confidence and p-values of every input."""
        self._check_fitted("predict")
        if self.calibration_scores_ is None:
            raise RuntimeError("call calibrate() before predict()")
        alpha, nbr_labels, idx = self._nonconformity(features)
        p = self.p_values(alpha)
        pred = self.classes_[p.argmax(axis=1)]
        top2 = np.sort(p, axis=1)[:, -2:]
        return DkNNResult(prediction=pred, credibility=top2[:, 1], confidence=1.0 - top2[:, 0],
                          p_values=p, nonconformity=alpha, neighbors_labels=nbr_labels, neighbors_index=idx)


def _faiss():
    """faiss, imported where it is used (``import snnl`` does not load it): the extra ``snnl[dknn]``."""
    return require("faiss", "dknn", "DkNN")


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, np.finfo(np.float32).tiny)


def _split_output(output) -> tuple[torch.Tensor, Mapping[str, torch.Tensor]]:
    if isinstance(output, (tuple, list)) and len(output) >= 2 and isinstance(output[1], Mapping):
        return output[0], output[1]
    return logits_of(output), {}


@torch.no_grad()
def extract_features(model: nn.Module, x, layers: Sequence[str] | None = None, batch_size: int = 512,
                     device: str | torch.device | None = None) -> list[np.ndarray]:
    """Representations of ``x`` at the named layers of any model, one array per layer, for :class:`DkNN`.

    ``layers`` are names of ``model.named_modules()`` (e.g. ``"layer3"`` of a torchvision ResNet,
    ``"2"`` of an ``nn.Sequential``: each module's output is kept by a forward hook, the first
    tensor of a tuple), or names of the model's own outputs: ``"logits"`` and, when ``model(x)``
    returns ``(logits, hidden)`` with ``hidden`` an ordered dict name -> tensor (the models of
    :data:`MODELS`), the names of ``hidden``, which take precedence. An unknown name is a
    one-line ValueError listing the closest valid names, as for :class:`SNNLRegularizer`.
    ``layers=None``: every name of ``hidden`` in order, then ``"logits"`` (the DkNN uses all
    layers, logits included). Runs in eval mode under ``no_grad`` in batches of ``batch_size``
    on ``device`` (default: the model's); the model's modes are restored. Returns one float32
    (N, D) array per layer, rows flattened.

    >>> import torch, torch.nn as nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 3))
    >>> x, y = torch.rand(90, 1, 8, 8), torch.arange(90) % 3
    >>> feats = extract_features(model, x, layers=["2", "logits"])
    >>> [f.shape for f in feats]
    [(90, 32), (90, 3)]
    >>> dknn = DkNN(k=5).fit(feats, y).calibrate(extract_features(model, x[:30], ["2", "logits"]), y[:30])
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if layers is not None:
        layers = check_layer_names(layers)
    x = torch.as_tensor(x)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    modules = dict(model.named_modules())
    # modules by name, hooked until the first batch shows which names the model's outputs hold
    kept = LayerOutputs(model, [n for n in layers if n in modules]) if layers and set(layers) & set(modules) else None
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        chunks: list[list[np.ndarray]] | None = None
        for start in range(0, len(x), batch_size):
            logits, hidden = _split_output(model(x[start:start + batch_size].to(device)))
            own = {**hidden}
            own.setdefault("logits", logits)
            if chunks is None:
                names = list(layers) if layers is not None else list(hidden) + ["logits"] * ("logits" not in hidden)
                for n in names:
                    if n not in own and n not in modules:
                        raise ValueError(unknown_layer(n, model, list(dict.fromkeys([*own, *modules])),
                                                       "the model's outputs' or model.named_modules()'s"))
                if kept is not None:
                    kept.keep_only([n for n in names if n not in own])
                chunks = [[] for _ in names]
            reps = {**(kept.take() if kept is not None else {}), **own}
            for store, name in zip(chunks, names):
                r = reps[name]
                store.append(r.detach().reshape(len(r), -1).float().cpu().numpy())
    finally:
        if kept is not None:
            kept.remove()
        for m, mode in modes:
            m.training = mode
    if chunks is None:
        raise ValueError("extract_features: x is empty")
    return [np.ascontiguousarray(np.concatenate(c)) for c in chunks]
