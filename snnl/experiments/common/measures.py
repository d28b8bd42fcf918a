"""The t-SNE and kNN measurements shared by the paper items."""

from __future__ import annotations

import numpy as np
from sklearn.manifold import TSNE
from sklearn.neighbors import NearestNeighbors


# ---- measurements ------------------------------------------------------------------------------
def tsne(x: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE (scikit-learn, PCA init) of the rows of ``x``."""
    x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    perplexity = min(perplexity, (len(x) - 1) / 3)
    return TSNE(2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed).fit_transform(x)


def knn_accuracy(x: np.ndarray, labels: np.ndarray, k: int = 10, groups: np.ndarray | None = None) -> float:
    """Leave-one-out accuracy of a k-nearest-neighbour majority vote; with ``groups``, a point's
    neighbours of its own group (e.g. its adversarial twin) are left out too."""
    x, labels = np.asarray(x, dtype=np.float32).reshape(len(x), -1), np.asarray(labels)
    extra = 1 if groups is None else int(np.bincount(groups).max())
    idx = NearestNeighbors(n_neighbors=min(k + extra, len(x))).fit(x).kneighbors(x, return_distance=False)
    keep = idx != np.arange(len(x))[:, None] if groups is None else groups[idx] != groups[:, None]
    votes = [labels[row[m][:k]] for row, m in zip(idx, keep)]
    pred = np.array([np.bincount(v).argmax() for v in votes])
    return float((pred == labels).mean())
