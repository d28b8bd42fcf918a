"""SNNLRegularizer (snnl.regularizer): forward hooks by layer name on any model."""

from __future__ import annotations

import copy
import gc
import shutil
import weakref

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import resnet18

import snnl
from snnl.layerwise import layerwise_snnl
from snnl.losses import SoftNearestNeighborLoss, soft_nearest_neighbor_loss
from snnl.regularizer import SNNLRegularizer

Y8 = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])


def mlp(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 5), nn.Tanh(),
                         nn.Linear(5, 3)).to(dtype)


def mlp_hidden(model, x):
    """The Sequential's hidden layers "2" and "4", computed by hand (no hooks)."""
    h2 = model[2](model[1](model[0](x)))
    h4 = model[4](model[3](h2))
    return model[5](h4), {"2": h2, "4": h4}


def resnet(seed=0):
    torch.manual_seed(seed)
    return resnet18(weights=None, num_classes=3).double()


def resnet_hidden(m, x):
    """torchvision's ResNet forward written out, keeping layer1..layer3."""
    h = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    h1 = m.layer1(h)
    h2 = m.layer2(h1)
    h3 = m.layer3(h2)
    logits = m.fc(torch.flatten(m.avgpool(m.layer4(h3)), 1))
    return logits, {"layer1": h1, "layer2": h2, "layer3": h3}


def grads(model):
    return {n: (p.grad.clone() if p.grad is not None else None) for n, p in model.named_parameters()}


def test_exported_from_the_package():
    assert snnl.SNNLRegularizer is SNNLRegularizer


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_sequential_value_gradient_and_temperature_step_equal_the_loss_of_the_layers(distance):
    a, b = mlp(), mlp()
    b.load_state_dict(a.state_dict())
    g = torch.Generator().manual_seed(1)
    mods = {n: SoftNearestNeighborLoss(5.0, distance, learn_temperature=True) for n in ("2", "4")}
    reg = SNNLRegularizer(a, ["2", "4"], temperature=5.0, distance=distance)
    for _ in range(3):  # three steps: the learned temperatures move alike
        x = torch.randn(8, 6, generator=g, dtype=torch.float64)
        for m in (a, b):
            m.zero_grad()
        logits = a(x)
        got = reg(Y8)
        (F.cross_entropy(logits, Y8) - 0.5 * got).backward()
        logits_b, hidden = mlp_hidden(b, x)
        want = layerwise_snnl(mods, hidden, Y8)
        (F.cross_entropy(logits_b, Y8) - 0.5 * sum(want.values())).backward()
        assert got.item() == pytest.approx(sum(v.item() for v in want.values()), rel=1e-12)
        for n in ("2", "4"):
            assert reg.losses[n].item() == pytest.approx(want[n].item(), rel=1e-12)
            assert not reg.losses[n].requires_grad
        ga, gb = grads(a), grads(b)
        for n in ga:
            torch.testing.assert_close(ga[n], gb[n], rtol=1e-10, atol=1e-13)
        assert reg.temperatures == pytest.approx({n: m.temperature for n, m in mods.items()}, rel=1e-12)
    assert reg.temperatures["2"] != 5.0  # it did learn


def test_value_is_the_sum_of_the_single_layer_losses_at_the_temperatures():
    model = mlp()
    reg = SNNLRegularizer(model, ["2", "4"], temperature=3.0, learn_temperature=False)
    x = torch.randn(8, 6, dtype=torch.float64)
    model(x)
    got = reg(Y8)
    _, hidden = mlp_hidden(model, x)
    want = sum(soft_nearest_neighbor_loss(h, Y8, 3.0) for h in hidden.values())
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    assert reg.temperatures == {"2": 3.0, "4": 3.0}


def test_resnet18_value_and_gradients_equal_the_loss_of_the_layers_outputs():
    a, b = resnet(), resnet()
    b.load_state_dict(a.state_dict())
    layers = ["layer1", "layer2", "layer3"]
    x = torch.rand(8, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mods = {n: SoftNearestNeighborLoss(100.0, learn_temperature=True) for n in layers}
    with SNNLRegularizer(a, layers=layers, temperature=100.0, learn_temperature=True) as reg:
        logits = a(x)
        value = reg(Y8)
        (F.cross_entropy(logits, Y8) - 2.0 * value).backward()
    logits_b, hidden = resnet_hidden(b, x)
    torch.testing.assert_close(logits, logits_b)
    want = layerwise_snnl(mods, hidden, Y8)
    (F.cross_entropy(logits_b, Y8) - 2.0 * sum(want.values())).backward()
    assert value.item() == pytest.approx(sum(v.item() for v in want.values()), rel=1e-10)
    assert reg.losses.keys() == want.keys()
    ga, gb = grads(a), grads(b)
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], rtol=1e-8, atol=1e-11)
    assert reg.temperatures == pytest.approx({n: m.temperature for n, m in mods.items()}, rel=1e-12)


def test_resnet18_gradients_of_the_regulariser_reach_the_layers_before_it_and_no_others():
    model = resnet()
    reg = SNNLRegularizer(model, ["layer1", "layer2"])
    model(torch.rand(8, 3, 32, 32, dtype=torch.float64))
    reg(Y8).backward()
    g = grads(model)
    for n, v in g.items():
        if n.startswith(("conv1", "bn1", "layer1", "layer2")):
            assert v is not None and v.abs().sum() > 0, n
        else:  # layer3, layer4, fc come after the regularised layers
            assert v is None, n


def test_remove_takes_every_hook_off_and_the_context_manager_removes_them():
    model = resnet()
    n_hooks = lambda: sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())  # noqa: E731
    assert n_hooks() == 0
    reg = SNNLRegularizer(model, ["layer1", "layer3.1.conv2"])
    assert n_hooks() == 3  # two layers and the pass counter on the model
    reg.remove()
    assert n_hooks() == 0
    reg.remove()  # idempotent
    model(torch.rand(2, 3, 32, 32, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="removed"):
        reg(torch.tensor([0, 1]))
    with SNNLRegularizer(model, ["layer2"]):
        assert n_hooks() == 2
    assert n_hooks() == 0


def test_an_unknown_layer_lists_the_closest_names():
    with pytest.raises(ValueError, match=r"unknown layer 'layer1\.0\.conv'.*'layer1\.0\.conv1'"):
        SNNLRegularizer(resnet(), ["layer1", "layer1.0.conv"])
    with pytest.raises(ValueError, match="valid names include: '0', '1'"):
        SNNLRegularizer(mlp(), ["encoder"])
    with pytest.raises(ValueError, match="distinct"):
        SNNLRegularizer(mlp(), ["2", "2"])
    with pytest.raises(ValueError, match="non-empty"):
        SNNLRegularizer(mlp(), [])
    with pytest.raises(TypeError, match="nn.Module"):
        SNNLRegularizer(lambda x: x, ["2"])


def test_reg_before_a_forward_pass_twice_for_one_pass_and_a_label_mismatch_are_errors():
    model = mlp()
    reg = SNNLRegularizer(model, ["2"])
    with pytest.raises(RuntimeError, match="forward pass of the model first"):
        reg(Y8)
    model(torch.randn(8, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"labels of shape \(7,\) for a batch of 8"):
        reg(Y8[:7])
    reg(Y8)  # the mismatch did not use up the pass
    with pytest.raises(RuntimeError, match="already called for this forward pass"):
        reg(Y8)
    model(torch.randn(8, 6, dtype=torch.float64))
    reg(Y8.tolist())  # a list of labels is fine


def test_nothing_is_captured_in_eval_mode_or_without_gradients_unless_asked():
    model = mlp()
    reg = SNNLRegularizer(model, ["2"], temperature=2.0)
    x = torch.randn(8, 6, dtype=torch.float64)
    with torch.no_grad():
        model(x)
    with pytest.raises(RuntimeError, match="forward pass of the model first"):
        reg(Y8)
    model.eval()
    model(x)
    with pytest.raises(RuntimeError, match="forward pass of the model first"):
        reg(Y8)
    model.train()
    model(x)  # a training pass is kept; a later evaluation pass leaves it as it is
    with torch.no_grad():
        model(torch.randn(8, 6, dtype=torch.float64))
    assert reg(Y8).item() == pytest.approx(soft_nearest_neighbor_loss(mlp_hidden(model, x)[1]["2"], Y8, 2.0).item())
    reg.remove()

    asked = SNNLRegularizer(model, ["2"], temperature=2.0, capture_in_eval=True)
    model.eval()
    with torch.no_grad():
        model(x)
        value = asked(Y8)
    assert value.item() == pytest.approx(soft_nearest_neighbor_loss(mlp_hidden(model, x)[1]["2"], Y8, 2.0).item())
    assert asked.temperatures == {"2": 2.0}  # no temperature step outside training mode
    model.train()
    asked.eval()
    model(x)
    asked(Y8)
    assert asked.temperatures == {"2": 2.0}  # nor with the regulariser in eval mode
    asked.train()
    model(x)
    asked(Y8)
    assert asked.temperatures["2"] != 2.0


def test_activations_are_dropped_once_used_and_by_the_next_pass():
    model = mlp()
    reg = SNNLRegularizer(model, ["2"])
    refs = []
    model[2].register_forward_hook(lambda m, a, out: refs.append(weakref.ref(out)))
    x = torch.randn(8, 6, dtype=torch.float64)
    loss = F.cross_entropy(model(x), Y8) - reg(Y8)
    loss.backward()
    del loss
    gc.collect()
    assert refs[0]() is None  # used by reg(y): not kept after the step
    logits = model(x)  # a pass that reg(y) never uses ...
    del logits
    gc.collect()
    assert refs[1]() is not None  # (kept until used or replaced)
    model(x)  # ... is replaced by the next one
    gc.collect()
    assert refs[1]() is None


class TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 4).double()

    def forward(self, x):
        h = self.lin(x)
        return (h.tanh(), h.sum())


def test_a_tuple_output_contributes_its_first_tensor():
    model = nn.Sequential(TwoOutputs())
    reg = SNNLRegularizer(model, ["0"], temperature=1.5, learn_temperature=False)
    x = torch.randn(8, 6, dtype=torch.float64)
    first, _ = model(x)
    assert reg(Y8).item() == pytest.approx(soft_nearest_neighbor_loss(first, Y8, 1.5).item(), rel=1e-12)


def test_a_module_used_twice_in_one_pass_and_an_output_changed_in_place_are_errors():
    model = resnet()
    x = torch.rand(4, 3, 32, 32, dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 1])
    with SNNLRegularizer(model, ["layer1.0.relu"]) as reg:  # BasicBlock calls its ReLU twice
        model(x)
        with pytest.raises(RuntimeError, match=r"\['layer1.0.relu'\] ran 2 times in one forward pass"):
            reg(y)
    with SNNLRegularizer(model, ["bn1"]) as reg:  # followed by ReLU(inplace=True)
        model(x)
        with pytest.raises(RuntimeError, match=r"\['bn1'\] was changed in place"):
            reg(y)
    with SNNLRegularizer(model, ["layer1.1.bn2"]) as reg:  # `out += identity` after it
        model(x)
        with pytest.raises(RuntimeError, match="changed in place"):
            reg(y)


def test_the_temperatures_are_in_the_state_dict_and_a_checkpoint_restores_them(tmp_path):
    model = mlp()
    reg = SNNLRegularizer(model, ["2", "4"], temperature=4.0)
    for _ in range(3):
        model(torch.randn(8, 6, dtype=torch.float64))
        reg(Y8)
    state = reg.state_dict()
    assert {k for k in state if k.endswith("inverse_scale")} == {"criteria.0.inverse_scale", "criteria.1.inverse_scale"}
    assert not any(k.startswith(("0.", "1.", "3.", "5.")) for k in state)  # not the model's parameters
    assert len(list(reg.parameters())) == 0
    torch.save(state, tmp_path / "reg.pt")
    fresh = SNNLRegularizer(copy.deepcopy(model), ["2", "4"], temperature=4.0)
    assert fresh.temperatures != reg.temperatures
    fresh.load_state_dict(torch.load(tmp_path / "reg.pt"))
    assert fresh.temperatures == reg.temperatures
    other = SNNLRegularizer(model, ["4", "2"])
    with pytest.raises(ValueError, match=r"layers \['2', '4'\], this one is on \['4', '2'\]"):
        other.load_state_dict(state)


def _compiled_step(backend):
    a, b = mlp(), mlp()
    b.load_state_dict(a.state_dict())
    ra, rb = SNNLRegularizer(a, ["2", "4"], temperature=5.0), SNNLRegularizer(b, ["2", "4"], temperature=5.0)
    compiled = torch.compile(a, backend=backend)
    g = torch.Generator().manual_seed(2)
    for _ in range(2):
        x = torch.randn(8, 6, generator=g, dtype=torch.float64)
        for m, r in ((compiled, ra), (b, rb)):
            (F.cross_entropy(m(x), Y8) - r(Y8)).backward()
        assert {n: v.item() for n, v in ra.losses.items()} == pytest.approx({n: v.item() for n, v in rb.losses.items()},
                                                                             rel=1e-9)
        assert ra.temperatures == pytest.approx(rb.temperatures, rel=1e-9)
    ga, gb = grads(a), grads(b)
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], rtol=1e-8, atol=1e-11)
    with pytest.raises(RuntimeError, match="already called"):
        ra(Y8)


def test_torch_compile_traces_the_hooks_same_values_and_gradients():
    torch._dynamo.reset()
    _compiled_step("aot_eager")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None, reason="inductor needs a C++ compiler")
def test_torch_compile_with_the_default_compiler():
    torch._dynamo.reset()
    _compiled_step("inductor")


def test_a_second_training_pass_between_the_model_and_reg_is_an_error():
    model = mlp()
    x = torch.rand(8, 6, dtype=torch.float64)
    with SNNLRegularizer(model, ["2", "4"]) as reg:
        logits = model(x)
        model(torch.rand(8, 6, dtype=torch.float64))  # e.g. an extra pass in training mode
        with pytest.raises(RuntimeError, match=r"second training-mode forward pass .* after model\(x\) and before "
                                               r"reg\(y\).*eval mode or under torch.no_grad\(\)") as err:
            reg(Y8)
        assert "\n" not in str(err.value)
        with pytest.raises(RuntimeError, match="already called"):  # nothing kept from either pass
            reg(Y8)
        del logits
        # an attack in training mode (torchattacks-style, its own forward passes): the same error
        model(x)
        snnl.FGSM(model, eps=0.1, eval_mode=False)(x.clamp(0, 1), Y8 % 3)
        with pytest.raises(RuntimeError, match="second training-mode forward pass"):
            reg(Y8)
        # ... which eval mode (the attacks' default) and no_grad passes leave alone
        logits = model(x)
        snnl.FGSM(model, eps=0.1)(x, Y8 % 3)
        with torch.no_grad():
            model(x)
        value = reg(Y8)
        _, hidden = mlp_hidden(model, x)
        want = sum(soft_nearest_neighbor_loss(h, Y8, 100.0) for h in hidden.values())
        assert value.item() == pytest.approx(want.item(), rel=1e-9)


def test_steps_without_reg_are_no_error():
    """A step whose backward went through the kept outputs (a warm-up step without the regulariser,
    say) is dropped quietly by the next pass: only a pass between model(x) and reg(y) is an error."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with SNNLRegularizer(model, ["2"], learn_temperature=False) as reg:
        for step in range(4):
            x = torch.rand(8, 6, dtype=torch.float64)
            loss = F.cross_entropy(model(x), Y8)
            if step >= 2:
                loss = loss - 0.1 * reg(Y8)
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert reg.losses["2"].item() > 0
    with SNNLRegularizer(model, ["2"], capture_in_eval=True) as reg:  # eval passes without gradients: kept
        model.eval()
        with torch.no_grad():
            model(torch.rand(8, 6, dtype=torch.float64))
            model(x)
            value = reg(Y8)
        assert value.item() == pytest.approx(soft_nearest_neighbor_loss(mlp_hidden(model, x)[1]["2"], Y8, 100.0).item())


def test_a_negative_label_and_labels_on_another_device_are_errors():
    model = mlp()
    x = torch.rand(8, 6, dtype=torch.float64)
    with SNNLRegularizer(model, ["2"]) as reg:
        model(x)
        with pytest.raises(ValueError, match=r"labels must be class indices >= 0, got -1"):
            reg(torch.where(Y8 == 2, -1, Y8))  # an ignore index
        model(x)
        with pytest.raises(ValueError, match=r"labels are on meta but the embeddings on cpu"):
            reg(Y8.to("meta"))
        model(x)
        assert reg(Y8).item() > 0
