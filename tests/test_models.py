"""Models (Table 1's CNN, Appendix C's CNN1, the ResNet of Figs. 3/16): logits and hidden layers."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from snnl.models import CNN, CNN1, MODELS, ResNetV2, ZooCNN, build_model, logits_of


def forward(model, shape, b=3):
    torch.manual_seed(0)
    logits, hidden = model(torch.rand(b, *shape))
    return logits, hidden


@pytest.mark.parametrize("name, shape, expected", [
    ("cnn", (1, 28, 28), {"conv1": (16, 14, 14), "conv2": (32, 7, 7), "fc1": (256,), "fc2": (128,)}),
    ("cnn", (3, 32, 32), {"conv1": (16, 16, 16), "conv2": (32, 8, 8), "fc1": (256,), "fc2": (128,)}),  # SVHN
    ("cnn1", (1, 28, 28), {"conv1": (32, 14, 14), "fc1": (256,), "fc2": (128,)}),
    ("resnet", (3, 32, 32), {"block1": (16, 32, 32), "block2": (16, 32, 32), "block3": (32, 16, 16),
                             "block4": (32, 16, 16), "block5": (64, 8, 8), "block6": (64, 8, 8),
                             "pool": (64,)}),
])
def test_forward_returns_logits_and_hidden_layers_in_order(name, shape, expected):
    model = build_model(name, shape, num_classes=7)
    logits, hidden = forward(model, shape)
    assert logits.shape == (3, 7)
    assert isinstance(hidden, OrderedDict)
    assert list(hidden) == list(model.layer_names) == list(expected), "hidden layers first to last"
    for layer, s in expected.items():
        assert tuple(hidden[layer].shape) == (3, *s), layer
        assert torch.isfinite(hidden[layer]).all()


def test_hidden_layers_feed_the_logits():
    """The logits are a function of the last hidden layer (the hidden dict is not a side copy)."""
    model = CNN()
    x = torch.rand(4, 1, 28, 28)
    logits, hidden = model(x)
    assert torch.allclose(model.logits(hidden["fc2"]), logits)
    assert torch.allclose(model.fc2(hidden["fc1"]).relu(), hidden["fc2"])


def test_gradients_reach_every_layer_from_the_hidden_representations():
    model = CNN1()
    _, hidden = model(torch.rand(4, 1, 28, 28))
    hidden["fc2"].sum().backward()
    for n in ("conv1", "fc1", "fc2"):
        assert getattr(model, n).weight.grad.abs().sum() > 0, n


def test_classes_and_build_model_agree():
    assert isinstance(build_model("cnn"), CNN)
    assert isinstance(build_model("cnn1"), CNN1)
    assert isinstance(build_model("resnet", (3, 32, 32)), ResNetV2)
    assert isinstance(build_model("zoo"), ZooCNN)
    assert build_model("cnn-wide").fc1.out_features == 1024
    assert set(MODELS) == {"cnn", "cnn1", "resnet", "zoo", "cnn-wide"}


def test_zoo_model_is_the_authors_released_network():
    """cleverhans' model-zoo SNNL CNN: conv 64 8x8/2 'same', 128 6x6/2 'valid', 128 5x5/1 'valid', ReLU,
    no pooling, linear logits; std 1/sqrt(fan_in) weights, zero biases."""
    torch.manual_seed(0)
    m = ZooCNN()
    logits, h = m(torch.rand(5, 1, 28, 28))
    assert logits.shape == (5, 10)
    assert [tuple(v.shape[1:]) for v in h.values()] == [(64, 14, 14), (128, 5, 5), (128, 1, 1)]
    assert all((v >= 0).all() for v in h.values()), "ReLU after every conv"
    for layer, fan_in in ((m.conv1, 64), (m.conv2, 64 * 36), (m.conv3, 128 * 25), (m.logits, 128)):
        assert layer.bias.abs().max() == 0
        assert abs(layer.weight.std().item() * fan_in ** 0.5 - 1) < 0.1, layer
    # TF "same" padding at stride 2 with an 8x8 kernel on 28x28: 3 zeros on each side
    x = torch.rand(2, 1, 28, 28)
    ref = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (3, 3, 3, 3)), m.conv1.weight, m.conv1.bias, 2)
    assert torch.allclose(m(x)[1]["conv1"], ref.relu())


def test_resnet_has_the_6n_plus_2_weighted_layers():
    model = ResNetV2(n=2)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(convs) + len(linears) == 6 * 2 + 2


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 28, 28), (3, 64, 64)])
def test_resnet_rejects_other_than_32x32_with_a_clear_error(shape):
    with pytest.raises(ValueError, match=r"32x32.*size=32"):
        build_model("resnet", shape)


def test_unknown_model_lists_the_choices():
    with pytest.raises(ValueError, match="unknown model 'vgg'; choose one of: cnn, cnn1, resnet"):
        build_model("vgg")


def test_train_and_eval_mode_agree_without_batch_norm_and_differ_with_it():
    x = torch.rand(8, 3, 32, 32)
    cnn = CNN((3, 32, 32))
    assert torch.equal(cnn.train()(x)[0], cnn.eval()(x)[0])
    resnet = ResNetV2()
    train_out = resnet.train()(x)[0]
    assert not torch.allclose(train_out, resnet.eval()(x)[0])  # BN: batch vs running statistics


def test_logits_of_every_output_form():
    t = torch.randn(2, 10)
    assert logits_of(t) is t
    assert logits_of((t, {"fc": t})) is t
    assert logits_of([t]) is t
    assert logits_of({"logits": t}) is t

    class Out:
        logits = t

    assert logits_of(Out()) is t
    assert logits_of(CNN()(torch.rand(2, 1, 28, 28))).shape == (2, 10)
    with pytest.raises(TypeError, match="cannot find logits"):
        logits_of({"probs": t})
