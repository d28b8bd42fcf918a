"""Models of the paper's experiments (Table 1, Appendix C, Figs. 3 and 16).

Every model's ``forward(x)`` returns ``(logits, hidden)`` where ``hidden`` is an
ordered dict ``name -> activation`` of the hidden representations, first to
last, so the soft nearest neighbor loss, Deep k-NN and the plots can use any
layer. ``model.layer_names`` lists them; :func:`logits_of` takes the logits out
of any of our models' outputs (or passes a plain tensor through).

* :class:`CNN` — Table 1's network: "two convolutional layers followed by three
  fully connected layers and a final softmax layer". Widths (not given in the
  paper): conv 3x3 with 16 and 32 filters, each followed by ReLU and 2x2 max
  pooling; fully connected 256 -> 128 -> logits. The conv widths are kept small
  so that the paper's 14,000 steps at batch 256 fit in about half an hour on a
  2-core CPU (about 0.1 s per step); pass ``widths=`` for a wider network. Hidden layers: ``conv1``,
  ``conv2`` (after pooling, as in Table 2), ``fc1``, ``fc2``.
* :class:`CNN1` — Appendix C: one convolutional layer (32 filters 3x3, ReLU,
  pool) and three fully connected layers (256, 128, logits). Hidden: ``conv1``,
  ``fc1``, ``fc2``.
* :class:`ResNetV2` — a pre-activation ResNet (He et al. 2016, "Identity
  mappings") for 32x32 inputs, of the 6n+2 family: a 3x3 stem, three stages of
  ``n`` basic blocks with 16/32/64 filters, BN-ReLU, global average pooling and
  a linear layer. ``n=2`` gives 14 weighted layers; the paper's "ResNet v2 with
  15 layers" is not fully specified, this is the nearest standard design. Hidden
  layers: every block's output (``block1`` ... ``block6``) and ``pool``.
* ``cnn-wide`` — :class:`CNN` with widths conv 32/64, FC 1024/512: a network that overfits a
  small training set (the Table 1 study's overfitting regime).
* :class:`ZooCNN` (``zoo``) — the only training script the authors released (cleverhans v3,
  ``model_zoo/soft_nearest_neighbor_loss``): three ReLU convolutions without pooling (64 filters
  8x8 stride 2 "same", 128 filters 6x6 stride 2 "valid", 128 filters 5x5 stride 1 "valid") and a
  linear logit layer, weights drawn with std ``1/sqrt(fan_in)`` (their
  ``HeReLuNormalInitializer``), zero biases. Hidden: ``conv1``, ``conv2``, ``conv3``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

MODELS = ("cnn", "cnn1", "resnet", "zoo", "cnn-wide")
"""The names :func:`build_model` accepts."""
WIDE_CNN = (32, 64, 1024, 512)


def logits_of(output) -> torch.Tensor:
    """The logits in any model's output: a tensor, ``(logits, hidden)``, ``out["logits"]`` or ``out.logits``.

    The models here return ``(logits, hidden)``; a plain classifier returns the logits:

    >>> import torch, torch.nn as nn
    >>> x = torch.rand(2, 1, 28, 28)
    >>> logits_of(CNN()(x)).shape, logits_of(nn.Sequential(nn.Flatten(), nn.Linear(784, 10))(x)).shape
    (torch.Size([2, 10]), torch.Size([2, 10]))
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    if isinstance(output, dict) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    if isinstance(getattr(output, "logits", None), torch.Tensor):
        return output.logits
    raise TypeError(f"cannot find logits in a model output of type {type(output).__name__}")


def _conv_out(in_shape, convs: int) -> int:
    c, h, w = in_shape
    for _ in range(convs):
        h, w = h // 2, w // 2
    return h * w


class CNN(nn.Module):
    """Table 1's CNN: 2 conv (3x3, 16 and 32 filters, ReLU, max-pool) + FC 256, 128, logits.

    ``model(x)`` returns ``(logits, hidden)``, ``hidden`` the ordered dict of ``layer_names``,
    which :func:`extract_features` reads by name:

    >>> import torch
    >>> model = CNN(in_shape=(1, 28, 28), num_classes=10)
    >>> logits, hidden = model(torch.rand(4, 1, 28, 28))
    >>> logits.shape, list(hidden) == list(model.layer_names)
    (torch.Size([4, 10]), True)
    >>> [f.shape for f in extract_features(model, torch.rand(4, 1, 28, 28), layers=["conv2", "fc2"])]
    [(4, 1568), (4, 128)]
    """

    layer_names = ("conv1", "conv2", "fc1", "fc2")

    def __init__(self, in_shape=(1, 28, 28), num_classes: int = 10, widths=(16, 32, 256, 128)):
        super().__init__()
        c1, c2, f1, f2 = widths
        self.conv1 = nn.Conv2d(in_shape[0], c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.fc1 = nn.Linear(c2 * _conv_out(in_shape, 2), f1)
        self.fc2 = nn.Linear(f1, f2)
        self.logits = nn.Linear(f2, num_classes)

    def forward(self, x):
        h = OrderedDict()
        h["conv1"] = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h["conv2"] = F.max_pool2d(F.relu(self.conv2(h["conv1"])), 2)
        h["fc1"] = F.relu(self.fc1(h["conv2"].flatten(1)))
        h["fc2"] = F.relu(self.fc2(h["fc1"]))
        return self.logits(h["fc2"]), h


class CNN1(nn.Module):
    """Appendix C's network: 1 conv (3x3, 32 filters, ReLU, max-pool) + FC 256, 128, logits.

    >>> import torch
    >>> model = build_model("cnn1")
    >>> isinstance(model, CNN1), model.layer_names
    (True, ('conv1', 'fc1', 'fc2'))
    >>> logits_of(model(torch.rand(3, 1, 28, 28))).shape
    torch.Size([3, 10])
    """

    layer_names = ("conv1", "fc1", "fc2")

    def __init__(self, in_shape=(1, 28, 28), num_classes: int = 10, widths=(32, 256, 128)):
        super().__init__()
        c1, f1, f2 = widths
        self.conv1 = nn.Conv2d(in_shape[0], c1, 3, padding=1)
        self.fc1 = nn.Linear(c1 * _conv_out(in_shape, 1), f1)
        self.fc2 = nn.Linear(f1, f2)
        self.logits = nn.Linear(f2, num_classes)

    def forward(self, x):
        h = OrderedDict()
        h["conv1"] = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h["fc1"] = F.relu(self.fc1(h["conv1"].flatten(1)))
        h["fc2"] = F.relu(self.fc2(h["fc1"]))
        return self.logits(h["fc2"]), h


class PreActBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3x3-BN-ReLU-conv3x3 + shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class ResNetV2(nn.Module):
    """Pre-activation ResNet (6n+2 layers) for 32x32 images; hidden = each block's output + pool.

    For MNIST-like data, load it at 32x32 in three channels (:func:`load_dataset`'s ``size``
    and ``channels``):

    >>> import torch
    >>> model = build_model("resnet", in_shape=(3, 32, 32), num_classes=10)
    >>> isinstance(model, ResNetV2), model.layer_names[-1]
    (True, 'pool')
    >>> logits, hidden = model(torch.rand(2, 3, 32, 32))
    >>> hidden["block6"].shape, hidden["pool"].shape
    (torch.Size([2, 64, 8, 8]), torch.Size([2, 64]))
    """

    def __init__(self, in_shape=(3, 32, 32), num_classes: int = 10, n: int = 2, widths=(16, 32, 64)):
        super().__init__()
        self.stem = nn.Conv2d(in_shape[0], widths[0], 3, 1, 1, bias=False)
        blocks, cin = [], widths[0]
        for stage, w in enumerate(widths):
            for i in range(n):
                blocks.append(PreActBlock(cin, w, 2 if (stage > 0 and i == 0) else 1))
                cin = w
        self.blocks = nn.ModuleList(blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.logits = nn.Linear(cin, num_classes)
        self.layer_names = tuple(f"block{i + 1}" for i in range(len(blocks))) + ("pool",)

    def forward(self, x):
        h = OrderedDict()
        out = self.stem(x)
        for i, block in enumerate(self.blocks):
            out = block(out)
            h[f"block{i + 1}"] = out
        h["pool"] = F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1).flatten(1)
        return self.logits(h["pool"]), h


class ZooCNN(nn.Module):
    """The authors' released SNNL model (cleverhans ``ModelBasicCNN``): 3 ReLU convs, no pooling."""

    layer_names = ("conv1", "conv2", "conv3")

    def __init__(self, in_shape=(1, 28, 28), num_classes: int = 10, nb_filters: int = 64):
        super().__init__()
        c, h, w = in_shape
        # TF "same" with an 8x8 kernel at stride 2: pad so that the output is ceil(h / 2)
        pad_h, pad_w = max((-(-h // 2) - 1) * 2 + 8 - h, 0), max((-(-w // 2) - 1) * 2 + 8 - w, 0)
        self._pad = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        self.conv1 = nn.Conv2d(c, nb_filters, 8, stride=2)
        self.conv2 = nn.Conv2d(nb_filters, 2 * nb_filters, 6, stride=2)
        self.conv3 = nn.Conv2d(2 * nb_filters, 2 * nb_filters, 5, stride=1)
        h, w = -(-h // 2), -(-w // 2)
        h, w = (h - 6) // 2 + 1, (w - 6) // 2 + 1
        h, w = h - 4, w - 4
        if h < 1 or w < 1:
            raise ValueError(f"the zoo model needs inputs of at least 28x28, got {tuple(in_shape)}")
        self.logits = nn.Linear(2 * nb_filters * h * w, num_classes)
        for m in (self.conv1, self.conv2, self.conv3, self.logits):
            fan_in = m.weight[0].numel()
            with torch.no_grad():
                m.weight.normal_(0.0, fan_in ** -0.5)
                m.bias.zero_()

    def forward(self, x):
        h = OrderedDict()
        h["conv1"] = F.relu(self.conv1(F.pad(x, self._pad)))
        h["conv2"] = F.relu(self.conv2(h["conv1"]))
        h["conv3"] = F.relu(self.conv3(h["conv2"]))
        return self.logits(h["conv3"].flatten(1)), h


def build_model(name: str, in_shape=(1, 28, 28), num_classes: int = 10) -> nn.Module:
    """A model of the paper by name (one of :data:`MODELS`) for inputs of shape ``in_shape`` (C, H, W).

    For a :class:`Dataset`, its ``shape`` and ``num_classes``:

    >>> ds = load_dataset("digits", n_train=100, n_test=50)
    >>> model = build_model("cnn", ds.shape, ds.num_classes)
    >>> type(model).__name__, model.layer_names
    ('CNN', ('conv1', 'conv2', 'fc1', 'fc2'))
    """
    if name == "cnn":
        return CNN(in_shape, num_classes)
    if name == "cnn-wide":
        return CNN(in_shape, num_classes, widths=WIDE_CNN)
    if name == "zoo":
        return ZooCNN(in_shape, num_classes)
    if name == "cnn1":
        return CNN1(in_shape, num_classes)
    if name == "resnet":
        if tuple(in_shape[1:]) != (32, 32):
            raise ValueError(f"the ResNet expects 32x32 inputs, got {tuple(in_shape)}; "
                             "load the data with size=32 (and channels=3)")
        return ResNetV2(in_shape, num_classes)
    raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
