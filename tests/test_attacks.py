"""Tests for snnl.attacks: FGSM, BIM, PGD."""

from collections import OrderedDict
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from snnl.attacks import BIM, FGSM, PGD, logits_of
from snnl.data import load_dataset

EPSILONS = [0.0, 0.01, 0.1, 0.3, 1.0]


class TupleNet(nn.Module):
    """Small conv net whose forward returns ``(logits, hidden)`` like the package's models."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 5, stride=3)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        h = F.relu(self.conv(x))
        logits = self.fc(self.drop(h.flatten(1)))
        return logits, OrderedDict(conv=h)


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained(digits):
    """An MLP trained for 300 steps on the embedded digits (about a second)."""
    torch.manual_seed(0)
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        idx = torch.randint(0, len(digits.x_train), (64,), generator=g)
        loss = F.cross_entropy(model(digits.x_train[idx]), digits.y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    return model


def all_attacks(model, eps):
    return [FGSM(model, eps), BIM(model, eps, alpha=max(eps / 4, 1e-3), steps=5),
            PGD(model, eps, alpha=max(eps / 4, 1e-3), steps=5, generator=0)]


@pytest.mark.parametrize("eps", EPSILONS)
def test_eps_ball_and_bounds(eps):
    torch.manual_seed(1)
    model = TupleNet()
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    x[:4] = 0.0  # saturated pixels: clipping must keep [0, 1]
    x[4:8] = 1.0
    for attack in all_attacks(model, eps):
        adv = attack(x, y)
        assert adv.shape == x.shape and adv.dtype == x.dtype and not adv.requires_grad
        assert (adv - x).abs().max() <= eps + 1e-6, type(attack).__name__
        assert adv.min() >= 0 and adv.max() <= 1
        if eps == 0:
            assert torch.equal(adv, x)
        elif eps >= 0.1:
            assert (adv - x).abs().max() > eps / 2  # the attack did move the input


def test_fgsm_closed_form_on_linear_model():
    # logits = x W^T + b, so grad_x CE = (softmax(logits) - onehot(y)) W, per example
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(5, 12)), rng.normal(size=5)
    x, y = rng.uniform(size=(20, 12)), rng.integers(0, 5, 20)
    model = nn.Linear(12, 5).double()
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(w))
        model.bias.copy_(torch.from_numpy(b))
    logits = x @ w.T + b
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    grad = (prob - np.eye(5)[y]) @ w
    assert np.abs(grad).min() > 1e-9  # no sign ambiguity
    for eps in [0.05, 0.2]:
        expected = np.clip(x + eps * np.sign(grad), 0, 1)
        got = FGSM(model, eps)(torch.from_numpy(x), torch.from_numpy(y)).numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
        # targeted: the step goes the other way
        expected_t = np.clip(x - eps * np.sign(grad), 0, 1)
        got_t = FGSM(model, eps, targeted=True)(torch.from_numpy(x), torch.from_numpy(y)).numpy()
        np.testing.assert_allclose(got_t, expected_t, rtol=0, atol=1e-12)


def test_targeted_fgsm_decreases_target_loss(trained, digits):
    x = digits.x_test[:100]
    target = (digits.y_test[:100] + 3) % 10
    with torch.no_grad():
        before = F.cross_entropy(trained(x), target, reduction="none")
        after = F.cross_entropy(trained(FGSM(trained, 0.05, targeted=True)(x, target)), target, reduction="none")
        untargeted = F.cross_entropy(trained(FGSM(trained, 0.05)(x, target)), target, reduction="none")
    assert after.mean() < before.mean() - 0.1
    assert (after < before).float().mean() > 0.9
    assert untargeted.mean() > before.mean()


def test_targeted_fgsm_small_step_decreases_loss_per_example():
    torch.manual_seed(0)
    model = nn.Linear(30, 4).double()
    x = 0.1 + 0.8 * torch.rand(50, 30, dtype=torch.float64)  # interior: no clipping for a small step
    target = torch.randint(0, 4, (50,))
    with torch.no_grad():
        before = F.cross_entropy(model(x), target, reduction="none")
        after = F.cross_entropy(model(FGSM(model, 1e-3, targeted=True)(x, target)), target, reduction="none")
    assert (after < before).all()


def accuracy(model, x, y):
    with torch.no_grad():
        return (logits_of(model(x)).argmax(1) == y).float().mean().item()


def test_robust_accuracy_below_clean(trained, digits):
    x, y = digits.x_test, digits.y_test
    clean = accuracy(trained, x, y)
    assert clean > 0.85
    for eps in [0.05, 0.1, 0.3]:
        for attack in [FGSM(trained, eps), BIM(trained, eps, eps / 4, 10), PGD(trained, eps, eps / 4, 10, generator=0)]:
            robust = accuracy(trained, attack(x, y), y)
            assert robust <= clean, (attack, robust, clean)
            if eps == 0.3:
                assert robust < 0.2, (attack, robust)
    # iterative attacks are at least as strong as FGSM here
    fgsm = accuracy(trained, FGSM(trained, 0.1)(x, y), y)
    assert accuracy(trained, BIM(trained, 0.1, 0.01, 20)(x, y), y) <= fgsm


def test_model_state_restored_and_no_param_grad():
    torch.manual_seed(0)
    model = TupleNet()
    model.train()
    model.drop.eval()  # mixed modes must come back as they were
    model.conv.bias.requires_grad_(False)
    seen = []
    model.fc.register_forward_pre_hook(lambda m, inp: seen.append(m.training))
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    for attack in all_attacks(model, 0.1):
        attack(x, y)
        assert model.training and model.conv.training and model.fc.training and not model.drop.training
        assert model.conv.weight.requires_grad and not model.conv.bias.requires_grad
        assert all(p.grad is None for p in model.parameters())
    assert seen and not any(seen)  # the attack ran in eval mode
    # eval_mode=False keeps train mode during the attack
    seen.clear()
    FGSM(model, 0.1, eval_mode=False)(x, y)
    assert all(seen)


def test_state_restored_after_an_error():
    model = TupleNet().train()
    with pytest.raises((IndexError, RuntimeError)):
        FGSM(model, 0.1)(torch.rand(2, 1, 28, 28), torch.tensor([0, 12]))  # label out of range
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_works_under_no_grad_and_with_logits_containers():
    torch.manual_seed(0)
    net = mlp().eval()
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    ref = FGSM(net, 0.1)(x, y)
    with torch.no_grad():
        assert torch.equal(FGSM(net, 0.1)(x, y), ref)

    class DictOut(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return {"logits": self.net(x)}

    class ObjOut(DictOut):
        def forward(self, x):
            return SimpleNamespace(logits=self.net(x))

    assert torch.equal(FGSM(DictOut(), 0.1)(x, y), ref)
    assert torch.equal(FGSM(ObjOut(), 0.1)(x, y), ref)
    t = torch.zeros(2)
    assert logits_of(t) is t and logits_of((t, {})) is t
    with pytest.raises(TypeError):
        logits_of("logits")


def test_bim_one_step_equals_fgsm(trained, digits):
    x, y = digits.x_test[:64], digits.y_test[:64]
    for eps in [0.02, 0.3]:
        assert torch.equal(BIM(trained, eps, alpha=eps, steps=1)(x, y), FGSM(trained, eps)(x, y))
        assert torch.equal(BIM(trained, eps, alpha=eps, steps=1, targeted=True)(x, y),
                           FGSM(trained, eps, targeted=True)(x, y))


def test_pgd_random_start_reproducible(trained, digits):
    x, y = digits.x_test[:32], digits.y_test[:32]
    a = PGD(trained, 0.3, 0.01, 3, generator=7)
    assert torch.equal(a(x, y), a(x, y))
    assert not torch.equal(a(x, y), PGD(trained, 0.3, 0.01, 3, generator=8)(x, y))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(PGD(trained, 0.3, 0.01, 3, generator=g1)(x, y), PGD(trained, 0.3, 0.01, 3, generator=g2)(x, y))
    torch.manual_seed(3)
    r1 = PGD(trained, 0.3, 0.01, 3)(x, y)
    torch.manual_seed(3)
    assert torch.equal(PGD(trained, 0.3, 0.01, 3)(x, y), r1)
    # without random start PGD is BIM
    assert torch.equal(PGD(trained, 0.3, 0.01, 3, random_start=False)(x, y), BIM(trained, 0.3, 0.01, 3)(x, y))


def test_argument_errors():
    model = mlp()
    x, y = torch.rand(2, 1, 28, 28), torch.tensor([1, 2])
    for bad in [-0.1, float("nan"), float("inf")]:
        with pytest.raises(ValueError, match="eps"):
            FGSM(model, bad)
    with pytest.raises(ValueError, match="alpha"):
        BIM(model, 0.1, -1.0, 10)
    # a budget on the 0-255 scale, given to [0, 1] images: one line that says what was meant
    for make in (lambda: FGSM(model, eps=8), lambda: BIM(model, 8), lambda: PGD(model, eps=16, steps=3)):
        with pytest.raises(ValueError, match=r"eps=(8|16) is larger than the \[0, 1\] range .* eps=(8|16)/255 ="):
            make()
    with pytest.raises(ValueError, match=r"alpha=2 is larger .* alpha=2/255 = 0.007843"):
        BIM(model, 8 / 255, alpha=2, steps=10)
    assert FGSM(model, eps=8 / 255).eps == 8 / 255 and FGSM(model, eps=1.0).eps == 1.0
    for steps in [0, -3, 2.5]:
        with pytest.raises(ValueError, match="steps"):
            PGD(model, 0.1, 0.01, steps)
    with pytest.raises(TypeError):
        PGD(model, 0.1, 0.01, 10, generator="seed")
    with pytest.raises(TypeError):
        FGSM(lambda x: x, 0.1)
    attack = FGSM(model, 0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attack(x * 2, y)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attack(x - 0.5, y)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attack(torch.full_like(x, float("nan")), y)
    with pytest.raises(ValueError, match="labels"):
        attack(x, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="labels"):
        attack(x, torch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError):
        attack((x * 255).to(torch.uint8), y)
