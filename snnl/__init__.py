"""snnl — the soft nearest neighbor loss and the experiments of
Frosst, Papernot & Hinton, *Analyzing and Improving Representations with the
Soft Nearest Neighbor Loss*, ICML 2019 (arXiv:1902.01889).

>>> import torch
>>> from snnl import soft_nearest_neighbor_loss
>>> x, y = torch.randn(64, 16), torch.randint(0, 4, (64,))
>>> loss = soft_nearest_neighbor_loss(x, y, temperature=10.0)

``import snnl`` needs only torch, numpy and tqdm; the Deep k-NN, the datasets and the
experiments need extras, named in a one-line error where they are used (:mod:`snnl.extras`).
"""

import warnings

# tqdm.auto in a notebook without ipywidgets falls back to the text bar, with a warning (and the
# path of tqdm's file) on every page that imports it: noise for readers of the book
warnings.filterwarnings("ignore", message="IProgress not found")

from snnl.data import DATASETS as _DATASETS, Dataset, DatasetError, load_dataset  # noqa: E402
from snnl.results import Run, load_records, read_record, record_tags, resolve_device, seed_everything, write_record

__version__ = "0.1.0"
from snnl.losses import (
    Entanglement,
    NonFiniteEmbeddings,
    SoftNearestNeighborLoss,
    entanglement,
    soft_nearest_neighbor_loss,
    soft_nearest_neighbor_loss_reference,
    triplet_loss,
)
from snnl.layerwise import layerwise_snnl, soft_nearest_neighbor_losses
from snnl.regularizer import SNNLRegularizer
from snnl.models import CNN, CNN1, MODELS as _MODELS, ResNetV2, build_model, logits_of
from snnl.attacks import BIM, FGSM, PGD, Attack
from snnl.dknn import DkNN, DkNNResult, extract_features
from snnl.train import TrainConfig, TrainingDiverged, TrainResult, evaluate
from snnl.gan import GANConfig, GANResult, build_gan, real_fake_entanglement, train_gan
from snnl.banner import Banner

# the constants again, each with its docstring here, where the API page's autodoc reads it
DATASETS: tuple[str, ...] = _DATASETS
"""The dataset names that :func:`load_dataset` accepts (``"digits"`` needs no download).

>>> DATASETS
('digits', 'mnist', 'fashion-mnist', 'notmnist', 'svhn', 'cifar10')
>>> [load_dataset(name).num_classes for name in DATASETS[:1]]
[10]
"""
MODELS: tuple[str, ...] = _MODELS
"""The model names that :func:`build_model` accepts: the paper's CNNs and ResNet, and the authors' model.

>>> MODELS
('cnn', 'cnn1', 'resnet', 'zoo', 'cnn-wide')
>>> [type(build_model(name, in_shape=(3, 32, 32))).__name__ for name in MODELS]
['CNN', 'CNN1', 'ResNetV2', 'ZooCNN', 'CNN']
"""

# the public names, each documented on the book's API page (book/api.md; tests/test_package.py checks both)
__all__ = [
    # the loss (Eq. 1, 2, 4) and the layers of a network (Eq. 3)
    "soft_nearest_neighbor_loss", "SoftNearestNeighborLoss", "soft_nearest_neighbor_loss_reference",
    "entanglement", "Entanglement", "NonFiniteEmbeddings", "triplet_loss",
    "soft_nearest_neighbor_losses", "layerwise_snnl", "SNNLRegularizer",
    # models, training, GANs
    "CNN", "CNN1", "ResNetV2", "MODELS", "build_model", "logits_of",
    "TrainConfig", "TrainResult", "TrainingDiverged", "evaluate",
    "GANConfig", "GANResult", "build_gan", "train_gan", "real_fake_entanglement",
    # attacks and Deep k-NN
    "Attack", "FGSM", "BIM", "PGD", "DkNN", "DkNNResult", "extract_features",
    # data, results records, the run banner
    "DATASETS", "Dataset", "DatasetError", "load_dataset",
    "Run", "write_record", "read_record", "load_records", "record_tags", "resolve_device", "seed_everything", "Banner",
]
