"""Tests for snnl.fused: the fused exact loss against the per-class shifted path it replaces
(snnl.rows, ``fused=False``), against plain autograd through a log-space formula, by gradcheck,
chunked, several representations at once, the fallback where its range ends, and compiled."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from snnl.fused import FusedSNNL, fused_loss
from snnl.layerwise import soft_nearest_neighbor_losses
from snnl.losses import _loss_and_dt, _soft_nearest_neighbor_loss, soft_nearest_neighbor_loss

DISTANCES = ["euclidean", "cosine"]


def autograd_snnl(x, y, t, distance):
    """Eq. 1 by plain autograd: masked log-sum-exp per row; rows without a partner left out."""
    b = x.shape[0]
    x = x.reshape(b, -1)
    if distance == "euclidean":
        d = (x[:, None, :] - x[None, :, :]).pow(2).sum(2)
    else:
        xn = x / x.norm(dim=1, keepdim=True)
        d = 1.0 - xn @ xn.T
    eye = torch.eye(b, dtype=torch.bool)
    logits = (-d / t).masked_fill(eye, -math.inf)
    same = (y[:, None] == y[None, :]) & ~eye
    valid = same.any(1)
    lse_same = torch.logsumexp(logits.masked_fill(~same, -math.inf), 1)
    terms = torch.where(valid, torch.logsumexp(logits, 1) - torch.where(valid, lse_same, 0.0), 0.0)
    return terms.sum() / valid.sum().clamp(min=1)


def prepared(x, y, distance):
    """Inputs as :func:`soft_nearest_neighbor_loss` hands them to the fused function."""
    x = x.reshape(len(x), -1)
    return (x - x.mean(0) if distance == "euclidean" else F.normalize(x, dim=1)), torch.unique(y, return_inverse=True)[1]


def fused_holds(x, y, t, distance, chunk_size=None):
    """Whether the fused function's fast path holds on this batch (no fallback)."""
    xp, yp = prepared(x.detach(), y, distance)
    return fused_loss(xp, yp, torch.as_tensor(t, dtype=xp.dtype), distance == "euclidean", chunk_size) is not None


def value_and_grads(x, y, t, distance, chunk_size=None, fused=True):
    x = x.detach().clone().requires_grad_(True)
    t = torch.tensor(t, dtype=x.dtype, requires_grad=True)
    v = _soft_nearest_neighbor_loss(x, y, t, distance, chunk_size, fused=fused)
    gx, gt = torch.autograd.grad(v, (x, t))
    return v.detach(), gx, gt


def random_case(seed):
    """A random batch: sizes, classes (singletons among them), scale and temperature varied;
    the scales run from tiny distances (1e-4 T) to huge ones (~300 T, beyond float32's range)."""
    g = torch.Generator().manual_seed(seed)
    b = int(torch.randint(3, 40, (1,), generator=g))
    d = int(torch.randint(1, 9, (1,), generator=g))
    classes = int(torch.randint(1, 6, (1,), generator=g))
    y = torch.randint(0, classes, (b,), generator=g)
    y[0] = 99  # a singleton
    scale = [1e-3, 0.1, 1.0, 3.0, 10.0][seed % 5]
    x = torch.randn(b, d, generator=g, dtype=torch.float64) * scale + 5.0 * torch.randn(d, generator=g)
    t = float(torch.empty(1).uniform_(0.2, 2.0, generator=g))
    return x, y, t


def close(got, want, tol=1e-12):
    """|got - want| <= tol * (1 + |want|) elementwise: 1e-12 relative to the larger of 1 and the value."""
    torch.testing.assert_close(got, want, rtol=tol, atol=tol * max(1.0, float(want.abs().max())))


# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("chunk_size", [None, 7])
def test_agrees_with_the_per_class_shifted_path_and_plain_autograd_to_1e12(distance, chunk_size):
    held = 0
    for seed in range(40):
        x, y, t = random_case(seed)
        held += fused_holds(x, y, t, distance, chunk_size)
        v, gx, gt = value_and_grads(x, y, t, distance, chunk_size)
        v0, gx0, gt0 = value_and_grads(x, y, t, distance, chunk_size, fused=False)
        close(v, v0), close(gx, gx0), close(gt, gt0)
        xa, ta = x.clone().requires_grad_(True), torch.tensor(t, dtype=torch.float64, requires_grad=True)
        va = autograd_snnl(xa, y, ta, distance)
        gxa, gta = torch.autograd.grad(va, (xa, ta))
        close(v, va.detach()), close(gx, gxa), close(gt, gta)
    assert held >= 35  # the comparison is of the fused function, not of its fallback


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("scale", [1e-6, 1e-2, 1.0])
def test_tiny_distances_and_singletons(distance, scale):
    g = torch.Generator().manual_seed(1)
    x = 1e3 + scale * torch.randn(16, 3, generator=g, dtype=torch.float64)  # far from the origin, close together
    y = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 4, 5, 0, 1, 2, 6, 7, 8])  # 3..8: singletons
    assert fused_holds(x, y, 0.7, distance)
    v, gx, gt = value_and_grads(x, y, 0.7, distance)
    v0, gx0, gt0 = value_and_grads(x, y, 0.7, distance, fused=False)
    tol = 1e-12 if distance == "cosine" or scale >= 1e-2 else 1e-6  # |x|^2 / d = 1e18: rounding in both
    close(v, v0, tol), close(gx, gx0, tol), close(gt, gt0, tol)
    assert float(gx[8:10].abs().max()) > 0 or distance == "cosine"  # singletons still move as neighbours


@pytest.mark.parametrize("distance", DISTANCES)
def test_huge_distances_within_the_shift_use_the_fused_path(distance):
    """Far classes at a small T: every term of another class is exp(-hundreds); the shift ``c``
    keeps each row's own class in range (float64), and the result is that of the shifted path."""
    g = torch.Generator().manual_seed(2)
    y = torch.arange(30) % 3
    x = torch.randn(30, 4, generator=g, dtype=torch.float64) + 12.0 * F.one_hot(y, 4).double()
    t = 0.5 if distance == "euclidean" else 0.003
    assert fused_holds(x, y, t, distance)
    for chunk in (None, 4):
        v, gx, gt = value_and_grads(x, y, t, distance, chunk)
        v0, gx0, gt0 = value_and_grads(x, y, t, distance, chunk, fused=False)
        close(v, v0), close(gx, gx0), close(gt, gt0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_beyond_its_range_the_shifted_path_takes_over(dtype):
    """A point whose own class lies ~1e4 T away: the fused fast path would underflow, reports it,
    and the loss comes from the per-class shifted path (the same value as fused=False)."""
    x = torch.tensor([[0.0], [0.1], [100.0], [200.0], [300.0], [300.2]], dtype=dtype)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    assert not fused_holds(x, y, 1.0, "euclidean")
    v, gx, gt = value_and_grads(x, y, 1.0, "euclidean")
    v0, gx0, gt0 = value_and_grads(x, y, 1.0, "euclidean", fused=False)
    want = autograd_snnl(x.double(), y, 1.0, "euclidean")  # point 2: its own class 1e4 away, point 1 nearer
    assert float(v) == pytest.approx(float(want), rel=1e-4 if dtype == torch.float32 else 1e-12) and float(want) > 3
    assert torch.equal(v, v0) and torch.equal(gx, gx0) and torch.equal(gt, gt0)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_gradcheck_of_the_function_value_input_and_temperature(distance, chunk_size):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(11, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2, 5, 0, 1])  # 5: no partner
    xp, yp = prepared(x, y, distance)
    xp = xp.detach().requires_grad_(True)
    t = torch.tensor([1.3], dtype=torch.float64, requires_grad=True)
    onehot = F.one_hot(yp).double()
    valid = onehot.sum(0)[yp] > 1
    w = valid.double() / valid.sum()

    def f(t, xp):
        loss, _, ok = FusedSNNL.apply(t, yp, onehot, w, valid, distance == "euclidean", chunk_size, False, xp)
        assert bool(ok)
        return loss

    assert torch.autograd.gradcheck(f, (t, xp))
    assert torch.autograd.gradcheck(lambda t: f(t, xp.detach()), (t,))  # dL/dT alone
    # the value is Eq. 1's
    close(f(t, xp).detach()[0], autograd_snnl(x, y, 1.3, distance))


def test_gradcheck_of_several_representations_at_once():
    g = torch.Generator().manual_seed(4)
    xs = [torch.randn(10, 3, generator=g, dtype=torch.float64, requires_grad=True),
          torch.randn(10, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)]
    y = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 0, 1])
    t = torch.tensor([0.9, 2.1], dtype=torch.float64, requires_grad=True)
    for distance in DISTANCES:
        assert torch.autograd.gradcheck(lambda t, a, b, d=distance: soft_nearest_neighbor_losses([a, b], y, t, d),
                                        (t, *xs))


@pytest.mark.parametrize("distance", DISTANCES)
def test_several_representations_agree_with_each_alone_to_1e12(distance):
    g = torch.Generator().manual_seed(5)
    y = torch.randint(0, 4, (33,), generator=g)
    y[3] = 9
    xs = [torch.randn(33, d, generator=g, dtype=torch.float64) * s for d, s in [(5, 1.0), (12, 0.01), (2, 30.0)]]
    ts = [0.8, 0.05, 40.0]
    leaves = [x.clone().requires_grad_(True) for x in xs]
    tt = torch.tensor(ts, dtype=torch.float64, requires_grad=True)
    losses = soft_nearest_neighbor_losses(leaves, y, tt, distance)
    grads = torch.autograd.grad(losses.sum(), [tt, *leaves])
    for k, x in enumerate(xs):
        v0, gx0, gt0 = value_and_grads(x, y, ts[k], distance, fused=False)
        close(losses[k].detach(), v0), close(grads[1 + k], gx0), close(grads[0][k], gt0)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("chunk_size", [None, 5])
def test_temperature_derivative_of_the_forward_matches_the_backward(distance, chunk_size):
    for seed in range(6):
        x, y, t = random_case(seed)
        value, dt = _loss_and_dt(x, y, t, distance, chunk_size)
        value0, dt0 = _loss_and_dt(x, y, t, distance, chunk_size, fused=False)
        _, _, gt = value_and_grads(x, y, t, distance, chunk_size)
        close(value.detach(), value0.detach()), close(dt, dt0), close(dt, gt)


def test_float32_batch_matches_float64():
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(300, 16, generator=g, dtype=torch.float64), torch.randint(0, 10, (300,), generator=g)
    for distance, t in [("euclidean", 4.0), ("cosine", 0.05)]:
        assert fused_holds(x.float(), y, t, distance)
        v64, gx64, gt64 = value_and_grads(x, y, t, distance)
        v32, gx32, gt32 = value_and_grads(x.float(), y, t, distance)
        assert float(v32) == pytest.approx(float(v64), rel=1e-5)
        torch.testing.assert_close(gx32.double(), gx64, rtol=1e-3, atol=1e-4 * float(gx64.abs().max()))
        assert float(gt32) == pytest.approx(float(gt64), rel=1e-3, abs=1e-6)


@pytest.mark.slow(seconds=6)
def test_compiles_with_torch_compile():
    x, y, t = random_case(7)
    x = x.requires_grad_(True)
    tt = torch.tensor(t, dtype=torch.float64, requires_grad=True)
    torch._dynamo.reset()
    compiled = torch.compile(lambda x, t: soft_nearest_neighbor_loss(x, y, t), backend="aot_eager")
    v = compiled(x, tt)
    gx, gt = torch.autograd.grad(v, (x, tt))
    v0, gx0, gt0 = value_and_grads(x, y, t, "euclidean", fused=False)
    close(v.detach(), v0), close(gx, gx0), close(gt, gt0)
    both = torch.compile(lambda a, b: soft_nearest_neighbor_losses([a, b], y, [1.0, 2.0], "cosine"),
                         backend="aot_eager")
    torch.testing.assert_close(both(x, 2 * x).detach(), torch.stack(
        [soft_nearest_neighbor_loss(x, y, 1.0, "cosine"), soft_nearest_neighbor_loss(2 * x, y, 2.0, "cosine")]
    ).detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.slow(seconds=10)
def test_compiles_with_the_default_backend():
    x, y, t = random_case(8)
    x = x.requires_grad_(True)
    torch._dynamo.reset()
    v = torch.compile(lambda x: soft_nearest_neighbor_loss(x, y, t, chunk_size=5))(x)
    (gx,) = torch.autograd.grad(v, x)
    v0, gx0, _ = value_and_grads(x, y, t, "euclidean", 5, fused=False)
    close(v.detach(), v0), close(gx, gx0)
