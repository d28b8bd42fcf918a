"""Tests for snnl.losses: the soft nearest neighbor loss (Eq. 1), entanglement (Eq. 2),
the module with a learned temperature, and the triplet loss (Eq. 4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snnl.layerwise import soft_nearest_neighbor_losses
from snnl.losses import (
    Entanglement,
    NonFiniteEmbeddings,
    SoftNearestNeighborLoss,
    _loss_and_dt,
    entanglement,
    soft_nearest_neighbor_loss,
    soft_nearest_neighbor_loss_reference,
    temperature_step,
    triplet_loss,
)

DISTANCES = ["euclidean", "cosine"]
FEW = settings(max_examples=12, deadline=None)


# ----------------------------------------------------------------------------------------------
# helpers
def naive_snnl(x, y, temperature, distance="euclidean"):
    """Eq. 1 with two plain Python loops, in float64 arithmetic, log-space per row.

    Points without a same-class partner are left out of the mean; 0 if none has one.
    """
    pts = x.detach().double().reshape(len(x), -1).tolist()
    labels = [int(v) for v in y]
    b = len(pts)

    def dist(u, v):
        if distance == "euclidean":
            return sum((a - c) ** 2 for a, c in zip(u, v))
        dot = sum(a * c for a, c in zip(u, v))
        return 1.0 - dot / (math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(c * c for c in v)))

    total, count = 0.0, 0
    for i in range(b):
        logits_all, logits_same = [], []
        for k in range(b):
            if k == i:
                continue
            z = -dist(pts[i], pts[k]) / temperature
            logits_all.append(z)
            if labels[k] == labels[i]:
                logits_same.append(z)
        if not logits_same:
            continue
        m_all, m_same = max(logits_all), max(logits_same)
        lse_all = m_all + math.log(sum(math.exp(z - m_all) for z in logits_all))
        lse_same = m_same + math.log(sum(math.exp(z - m_same) for z in logits_same))
        total += lse_all - lse_same
        count += 1
    return total / max(count, 1)


def make_batch(seed, b=12, d=3, classes=3, dtype=torch.float64, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g, dtype=dtype) * scale
    y = torch.randint(0, classes, (b,), generator=g)
    return x, y


def loss_and_grads(x, y, t, distance, chunk_size=None):
    x = x.detach().clone().requires_grad_(True)
    t = torch.tensor(t, dtype=x.dtype, requires_grad=True)
    value = soft_nearest_neighbor_loss(x, y, t, distance, chunk_size=chunk_size)
    value.backward()
    return value.detach(), x.grad, t.grad


# ----------------------------------------------------------------------------------------------
# Eq. 1 against the naive double loop
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("temperature", [0.3, 2.0, 50.0])
def test_matches_naive_double_loop(distance, dtype, tol, temperature):
    x, _ = make_batch(0, b=14, d=4, dtype=dtype)
    # classes 0 and 1 have partners; 7 and 9 are singletons (no same-class partner)
    y = torch.tensor([0, 1, 0, 1, 1, 7, 0, 0, 1, 9, 0, 1, 1, 0])
    got = soft_nearest_neighbor_loss(x, y, temperature, distance)
    assert got.dtype == dtype and got.shape == ()
    assert float(got) == pytest.approx(naive_snnl(x, y, temperature, distance), rel=tol, abs=tol)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("chunk_size", [None, 1, 5])
def test_matches_naive_on_random_batches(distance, chunk_size):
    for seed in range(5):
        x, y = make_batch(seed, b=10 + seed, d=2 + seed % 3, classes=2 + seed % 3)
        got = soft_nearest_neighbor_loss(x, y, 1.5, distance, chunk_size=chunk_size)
        assert float(got) == pytest.approx(naive_snnl(x, y, 1.5, distance), rel=1e-10, abs=1e-12)


def test_flattens_each_row():
    x, y = make_batch(1, b=8, d=12)
    assert torch.equal(soft_nearest_neighbor_loss(x.reshape(8, 3, 2, 2), y, 2.0),
                       soft_nearest_neighbor_loss(x, y, 2.0))


def test_separated_classes_give_near_zero_and_mixed_give_more():
    y = torch.tensor([0, 0, 1, 1])
    apart = torch.tensor([[0.0], [0.1], [5.0], [5.1]])
    mixed = torch.tensor([[0.0], [5.0], [0.1], [5.1]])
    assert float(soft_nearest_neighbor_loss(apart, y, 1.0)) < 1e-6
    assert float(soft_nearest_neighbor_loss(mixed, y, 1.0)) > 5.0


# ----------------------------------------------------------------------------------------------
# gradients
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("chunk_size", [None, 4])
def test_gradcheck_embeddings_and_temperature(distance, chunk_size):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(9, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2, 5])  # label 5: no partner
    t = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, t: soft_nearest_neighbor_loss(x, y, t, distance, chunk_size=chunk_size), (x, t))


@pytest.mark.parametrize("distance", DISTANCES)
def test_gradcheck_temperature_alone(distance):
    x, y = make_batch(4, b=10, d=2)
    t = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: soft_nearest_neighbor_loss(x, y, t, distance), (t,))


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("chunk_size", [1, 3, 7, 29])
def test_chunked_equals_dense(distance, dtype, tol, chunk_size):
    x, y = make_batch(5, b=30, d=5, classes=4, dtype=dtype)
    y[0] = 11  # a singleton
    v0, gx0, gt0 = loss_and_grads(x, y, 2.5, distance)
    v1, gx1, gt1 = loss_and_grads(x, y, 2.5, distance, chunk_size=chunk_size)
    torch.testing.assert_close(v1, v0, rtol=tol, atol=tol)
    torch.testing.assert_close(gx1, gx0, rtol=tol * 10, atol=tol * 10)
    torch.testing.assert_close(gt1, gt0, rtol=tol * 10, atol=tol * 10)


def test_gradient_matches_autograd_of_naive_formula():
    """The hand-written backward agrees with autograd through a plain dense formula."""
    x, y = make_batch(6, b=16, d=3, classes=3)
    x.requires_grad_(True)
    d = torch.cdist(x, x).pow(2)
    logits = (-d / 1.3).masked_fill(torch.eye(16, dtype=torch.bool), -math.inf)
    same = (y[:, None] == y[None, :]) & ~torch.eye(16, dtype=torch.bool)
    per = torch.logsumexp(logits, 1) - torch.logsumexp(logits.masked_fill(~same, -math.inf), 1)
    (expected,) = torch.autograd.grad(per.mean(), x)
    (got,) = torch.autograd.grad(soft_nearest_neighbor_loss(x, y, 1.3), x)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("chunk_size", [None, 5])
def test_backward_twice_through_a_retained_graph(chunk_size):
    x, y = make_batch(7, b=12, dtype=torch.float32)
    x.requires_grad_(True)
    t = torch.tensor(2.0, requires_grad=True)
    value = soft_nearest_neighbor_loss(x, y, t, chunk_size=chunk_size)
    value.backward(retain_graph=True)
    gx, gt = x.grad.clone(), t.grad.clone()
    value.backward()
    torch.testing.assert_close(x.grad, 2 * gx)
    torch.testing.assert_close(t.grad, 2 * gt)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("scale,t", [(1.0, 0.5), (1.0, 20.0), (30.0, 1.0)])
def test_float32_gradients_agree_with_float64(distance, scale, t):
    x, y = make_batch(8, b=40, d=6, classes=4, scale=scale)
    _, gx64, gt64 = loss_and_grads(x, y, t, distance)
    _, gx32, gt32 = loss_and_grads(x.float(), y, t, distance)
    torch.testing.assert_close(gx32.double(), gx64, rtol=1e-3, atol=1e-4 * float(gx64.abs().max()))
    assert float(gt32) == pytest.approx(float(gt64), rel=1e-3, abs=1e-5)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("chunk_size", [None, 6])
def test_temperature_derivative_for_the_module_step_matches_autograd(distance, chunk_size):
    from snnl.losses import _loss_and_dt

    x, y = make_batch(9, b=20, d=3, classes=3)
    value, dt = _loss_and_dt(x, y, 1.7, distance, chunk_size)
    _, _, gt = loss_and_grads(x, y, 1.7, distance)
    assert float(value) == pytest.approx(float(soft_nearest_neighbor_loss(x, y, 1.7, distance)), abs=1e-12)
    assert float(dt) == pytest.approx(float(gt), rel=1e-8, abs=1e-12)


# ----------------------------------------------------------------------------------------------
# invariances (hypothesis)
batches = st.tuples(st.integers(0, 10_000), st.integers(4, 24), st.integers(1, 5), st.integers(1, 5))


@FEW
@given(batches, st.sampled_from(DISTANCES), st.floats(0.1, 20.0))
def test_invariant_to_permuting_the_batch(batch, distance, t):
    seed, b, d, c = batch
    x, y = make_batch(seed, b, d, c)
    perm = torch.randperm(b, generator=torch.Generator().manual_seed(seed + 1))
    a = soft_nearest_neighbor_loss(x, y, t, distance)
    assert float(soft_nearest_neighbor_loss(x[perm], y[perm], t, distance)) == pytest.approx(float(a), abs=1e-10)


@FEW
@given(batches, st.sampled_from(DISTANCES), st.floats(0.1, 20.0))
def test_invariant_to_relabelling_classes(batch, distance, t):
    seed, b, d, c = batch
    x, y = make_batch(seed, b, d, c)
    relabel = torch.randperm(c, generator=torch.Generator().manual_seed(seed)) * 7 + 3  # any distinct ints >= 0
    a = soft_nearest_neighbor_loss(x, y, t, distance)
    assert float(soft_nearest_neighbor_loss(x, relabel[y], t, distance)) == pytest.approx(float(a), abs=1e-10)


@FEW
@given(batches, st.floats(0.1, 20.0), st.floats(-100.0, 100.0))
def test_euclidean_invariant_to_translation(batch, t, shift):
    seed, b, d, c = batch
    x, y = make_batch(seed, b, d, c)
    offset = shift * torch.linspace(-1.0, 1.0, d, dtype=x.dtype)
    a = soft_nearest_neighbor_loss(x, y, t)
    assert float(soft_nearest_neighbor_loss(x + offset, y, t)) == pytest.approx(float(a), rel=1e-8, abs=1e-8)


@FEW
@given(batches, st.floats(0.1, 20.0), st.floats(1e-3, 1e3))
def test_cosine_invariant_to_scaling_each_point(batch, t, scale):
    seed, b, d, c = batch
    x, y = make_batch(seed, b, d, c)
    per_row = scale * torch.rand(b, 1, generator=torch.Generator().manual_seed(seed), dtype=x.dtype).add(0.1)
    a = soft_nearest_neighbor_loss(x, y, t, "cosine")
    assert float(soft_nearest_neighbor_loss(x * per_row, y, t, "cosine")) == pytest.approx(float(a), abs=1e-9)


# ----------------------------------------------------------------------------------------------
# Eq. 2: entanglement
def brute_force_scan(x, y, distance, lo, hi, n=2001):
    """The loss at ``n`` temperatures evenly spaced in log T, all in one call of
    :func:`snnl.layerwise.soft_nearest_neighbor_losses` (each entry is
    ``soft_nearest_neighbor_loss(x, y, t, distance)``, to 1e-12: tests/test_fused.py), not ``n``."""
    temps = np.logspace(math.log10(lo), math.log10(hi), n)
    values = soft_nearest_neighbor_losses([x] * n, y, torch.from_numpy(temps), distance).tolist()
    k = int(np.argmin(values))
    return values[k], float(temps[k]), values


@FEW
@given(batches, st.sampled_from(DISTANCES))
def test_entanglement_is_a_minimum_over_temperature(batch, distance):
    seed, b, d, c = batch
    x, y = make_batch(seed, b, d, c)
    ent = entanglement(x, y, distance, t_range=(1e-3, 1e3))
    assert isinstance(ent, Entanglement) and 1e-3 <= ent.temperature <= 1e3
    for t in np.logspace(-3, 3, 25):
        assert ent.value <= float(soft_nearest_neighbor_loss(x, y, float(t), distance)) + 1e-9
    assert float(soft_nearest_neighbor_loss(x, y, ent.temperature, distance)) == pytest.approx(ent.value, abs=1e-12)


@FEW
@given(batches, st.sampled_from(DISTANCES))
def test_entanglement_matches_a_dense_log_temperature_scan(batch, distance):
    seed, b, d, c = batch
    x, y = make_batch(seed, b, d, c)
    ent = entanglement(x, y, distance, t_range=(1e-3, 1e3))
    best, _, _ = brute_force_scan(x, y, distance, 1e-3, 1e3)
    assert ent.value <= best + 1e-9  # never worse than the scan ...
    assert ent.value >= best - 1e-4  # ... and the scan is fine enough to come close


def test_entanglement_default_range_finds_interior_minimum():
    x, y = make_batch(8, b=40, d=3, classes=3)
    x[y == 1] += 1.5  # partly separated: the minimum is at a finite, positive T
    ent = entanglement(x, y)
    best, t_best, _ = brute_force_scan(x, y, "euclidean", 1e-3, 1e3, n=4001)
    assert not ent.at_boundary
    assert ent.value == pytest.approx(best, abs=1e-6)
    assert math.log(ent.temperature) == pytest.approx(math.log(t_best), abs=0.05)
    assert float(ent) == ent.value and len(ent.grid) > 20


def test_entanglement_chunked_and_float32_agree():
    x, y = make_batch(9, b=50, d=4, classes=4)
    a = entanglement(x, y)
    b = entanglement(x.float(), y, chunk_size=16)
    assert b.value == pytest.approx(a.value, abs=1e-5)
    assert math.log(b.temperature) == pytest.approx(math.log(a.temperature), abs=0.05)


def test_entanglement_of_separated_classes_is_at_small_temperature_boundary():
    x = torch.tensor([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]])
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    ent = entanglement(x, y)
    assert ent.value < 1e-6 and ent.at_boundary


def test_entanglement_errors():
    x, y = make_batch(0)
    with pytest.raises(ValueError, match="t_range"):
        entanglement(x, y, t_range=(10.0, 1.0))
    with pytest.raises(ValueError, match="labels"):
        entanglement(x, y[:-1])


# ----------------------------------------------------------------------------------------------
# numerics: parity with the authors' formula, huge distances, low precision
@pytest.mark.parametrize("distance", DISTANCES)
def test_parity_with_reference_formula_where_it_is_accurate(distance):
    g = torch.Generator().manual_seed(10)
    x = torch.randn(32, 4, generator=g, dtype=torch.float64) * 0.3
    y = torch.arange(32) % 4  # every point has partners
    for t in (0.5, 1.0, 10.0):
        ours = float(soft_nearest_neighbor_loss(x, y, t, distance))
        ref = float(soft_nearest_neighbor_loss_reference(x, y, t, distance))
        assert ref == pytest.approx(ours, rel=1e-3, abs=1e-4)  # eps = 1e-5 inside the logs


def test_reference_counts_points_without_partner_as_minus_log_eps():
    x, _ = make_batch(0, b=6)
    y = torch.tensor([0, 0, 1, 1, 2, 3])
    ref = float(soft_nearest_neighbor_loss_reference(x, y, 1.0))
    ours = float(soft_nearest_neighbor_loss(x, y, 1.0))
    # the reference averages over all 6 points, the two singletons contributing -log(eps) each;
    # ours averages over the 4 points with a partner
    assert ref == pytest.approx((4 * ours + 2 * -math.log(1e-5)) / 6, rel=1e-3)


def test_finite_with_huge_distances_where_the_reference_fails():
    x, y = make_batch(11, b=48, d=16, classes=4, dtype=torch.float32)
    x = (x * 1e3).requires_grad_(True)  # raw activations at T = 1: exp(-1e6) underflows
    value = soft_nearest_neighbor_loss(x, y, 1.0)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    truth = naive_snnl(x, y, 1.0)  # log-space, float64
    assert float(value.detach()) == pytest.approx(truth, rel=1e-4)
    assert truth > 1e3
    ref = soft_nearest_neighbor_loss_reference(x.detach(), y, 1.0)
    assert not (abs(float(ref) - truth) < 0.01 * truth)  # underflows to -log(eps) (or NaN)


@pytest.mark.parametrize("distance", DISTANCES)
def test_reference_module_computes_the_reference_and_steps_its_temperature(distance):
    """reference=True: the authors' formula, and the learned-T step with dl/dT by autograd."""
    x, y = make_batch(21, b=40, d=5, classes=4, dtype=torch.float64, scale=3.0)
    x.requires_grad_(True)
    mod = SoftNearestNeighborLoss(7.0, distance, learn_temperature=True, lr=0.3, reference=True)
    value = mod(x, y)
    assert float(value.detach()) == float(soft_nearest_neighbor_loss_reference(x.detach(), y, 7.0, distance))
    h = 1e-6  # d reference / dT by a central difference
    xd = x.detach()
    dt = (float(soft_nearest_neighbor_loss_reference(xd, y, 7.0 + h, distance))
          - float(soft_nearest_neighbor_loss_reference(xd, y, 7.0 - h, distance))) / (2 * h)
    want = float(temperature_step(torch.tensor(1.0, dtype=torch.float64), torch.tensor(dt), 0.3, 7.0))
    assert float(mod.inverse_scale) == pytest.approx(want, rel=1e-7)
    value.backward()  # the model's gradient is still there
    assert x.grad.abs().sum() > 0
    frozen = SoftNearestNeighborLoss(7.0, distance, learn_temperature=True, reference=True).eval()
    frozen(x.detach(), y)
    assert frozen.temperature == 7.0 and "reference=True" in repr(frozen)


def test_reference_module_under_no_grad_with_bad_inputs_and_in_eval():
    x, y = make_batch(23, b=20, d=3, classes=3, dtype=torch.float64, scale=3.0)
    mod = SoftNearestNeighborLoss(5.0, learn_temperature=True, reference=True)
    with torch.no_grad():  # still steps T (dl/dT by autograd), returns a plain value
        value = mod(x, y)
    assert not value.requires_grad and mod.temperature != 5.0
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(NonFiniteEmbeddings):
        mod(bad, y)
    with pytest.raises(ValueError, match="vector of length 20"):
        mod(x, y[:5])


def test_the_hand_written_gradients_refuse_a_second_derivative():
    """create_graph=True would differentiate P - Q as if it did not depend on x: refused."""
    from snnl.layerwise import soft_nearest_neighbor_losses

    x, y = make_batch(24, b=12, d=3, classes=3, dtype=torch.float64)
    x.requires_grad_(True)
    for loss in (soft_nearest_neighbor_loss(x, y, 2.0), soft_nearest_neighbor_losses([x], y, [2.0]).sum()):
        (g,) = torch.autograd.grad(loss, x, create_graph=True)
        with pytest.raises(RuntimeError, match="once_differentiable|does not require grad"):
            g.sum().backward()


def test_reference_module_saturates_where_the_exact_one_does_not():
    x, y = make_batch(22, b=32, d=4, classes=4, dtype=torch.float64, scale=1.0)
    x = x * 100.0  # far apart relative to T = 1
    ref = SoftNearestNeighborLoss(1.0, reference=True)(x, y)
    # every exp(-d / T) off the diagonal underflows: -log(eps), give or take the rounding of
    # exp(-d_ii / T) - 1 on the diagonal, which the 1e-5 terms make visible
    assert float(ref) == pytest.approx(-math.log(1e-5), rel=1e-2)
    exact = float(SoftNearestNeighborLoss(1.0)(x, y))
    assert exact == pytest.approx(naive_snnl(x, y, 1.0), rel=1e-9) and exact > 100 * float(ref)
    with pytest.raises(ValueError, match="no chunked form"):
        SoftNearestNeighborLoss(reference=True, chunk_size=8)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("distance", DISTANCES)
def test_half_precision_inputs_accumulate_in_float32(dtype, distance):
    x, y = make_batch(12, b=64, d=8, classes=5, dtype=torch.float32)
    xh = x.to(dtype).requires_grad_(True)
    value = soft_nearest_neighbor_loss(xh, y, 2.0, distance)
    assert value.dtype == torch.float32
    expected = soft_nearest_neighbor_loss(xh.detach().float(), y, 2.0, distance)
    torch.testing.assert_close(value.detach(), expected, rtol=1e-6, atol=1e-6)
    value.backward()
    assert xh.grad.dtype == dtype and torch.isfinite(xh.grad.float()).all()
    # large values that overflow a float16 product stay finite
    big = (torch.randn(32, 64, generator=torch.Generator().manual_seed(0)) * 200).to(dtype)
    assert torch.isfinite(soft_nearest_neighbor_loss(big, torch.arange(32) % 3, 1.0, distance))


# ----------------------------------------------------------------------------------------------
# edge cases and errors
def test_all_singletons_give_zero_with_a_usable_gradient():
    x = torch.randn(6, 3, requires_grad=True)
    value = soft_nearest_neighbor_loss(x, torch.arange(6), 1.0)
    assert float(value.detach()) == 0.0 and value.requires_grad
    value.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_one_class_gives_zero():
    assert float(soft_nearest_neighbor_loss(torch.randn(5, 2), torch.zeros(5, dtype=torch.long), 1.0)) == 0.0


def test_accepts_float_and_list_labels():
    x, y = make_batch(0, b=8)
    a = soft_nearest_neighbor_loss(x, y, 1.0)
    assert float(soft_nearest_neighbor_loss(x, y.double(), 1.0)) == float(a)
    assert float(soft_nearest_neighbor_loss(x, y.tolist(), 1.0)) == float(a)
    for dtype in (torch.int32, torch.uint8):  # any integer type; classes with a gap (0, 2, 4...) too
        assert float(soft_nearest_neighbor_loss(x, y.to(dtype), 1.0)) == float(a)
        assert float(soft_nearest_neighbor_loss(x, 2 * y.to(dtype), 1.0)) == pytest.approx(float(a), abs=1e-12)
    two = y % 2
    assert float(soft_nearest_neighbor_loss(x, two.bool(), 1.0)) == float(soft_nearest_neighbor_loss(x, two, 1.0))


@pytest.mark.parametrize("call,match", [
    (lambda x, y: soft_nearest_neighbor_loss(x, y[:-1]), "labels must be a vector of length 8"),
    (lambda x, y: soft_nearest_neighbor_loss(x, y[:, None]), "labels must be a vector"),
    (lambda x, y: soft_nearest_neighbor_loss(x, y, 0.0), "temperature must be finite and > 0"),
    (lambda x, y: soft_nearest_neighbor_loss(x, y, -1.0), "temperature must be finite and > 0"),
    (lambda x, y: soft_nearest_neighbor_loss(x, y, math.inf), "temperature must be finite and > 0"),
    (lambda x, y: soft_nearest_neighbor_loss(x, y, torch.tensor(0.0)), "temperature must be finite and > 0"),
    (lambda x, y: soft_nearest_neighbor_loss(x, y, torch.tensor(-2.0)), "temperature must be finite and > 0"),
    (lambda x, y: soft_nearest_neighbor_loss(x, y, torch.ones(2)), "temperature must be a scalar"),
    (lambda x, y: soft_nearest_neighbor_loss(x, y, distance="manhattan"), "unknown distance 'manhattan'"),
    (lambda x, y: soft_nearest_neighbor_loss(x[:1], y[:1]), "at least 2 points"),
    (lambda x, y: soft_nearest_neighbor_loss(x, y + 0.5), "labels must be integers"),
    (lambda x, y: soft_nearest_neighbor_loss(x, y, chunk_size=0), "chunk_size"),
    (lambda x, y: soft_nearest_neighbor_loss(x, y, chunk_size=-3), "chunk_size"),
    (lambda x, y: soft_nearest_neighbor_loss(x[0, 0], y), "batch dimension"),
    (lambda x, y: soft_nearest_neighbor_loss_reference(x, y, distance="l1"), "unknown distance"),
])
def test_clear_errors(call, match):
    x, y = make_batch(0, b=8)
    with pytest.raises(ValueError, match=match):
        call(x, y)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_embeddings_are_rejected(bad, distance):
    x, y = make_batch(0, b=8)
    x[3, 1] = bad
    with pytest.raises(NonFiniteEmbeddings, match="NaN or inf"):
        soft_nearest_neighbor_loss(x, y, distance=distance)


def test_non_tensor_embeddings_are_rejected():
    with pytest.raises(TypeError, match="tensor"):
        soft_nearest_neighbor_loss([[0.0], [1.0]], torch.tensor([0, 1]))


# ----------------------------------------------------------------------------------------------
# the module and its learned temperature
def test_module_equals_function():
    x, y = make_batch(13, b=20)
    mod = SoftNearestNeighborLoss(temperature=3.0, distance="cosine")
    assert mod.temperature == 3.0
    torch.testing.assert_close(mod(x, y), soft_nearest_neighbor_loss(x, y, 3.0, "cosine"))
    assert "temperature=3" in repr(mod)


def test_learned_temperature_moves_towards_the_minimum_over_t():
    x, y = make_batch(14, b=64, d=2, classes=4, scale=3.0)
    x[y == 0] += 6.0  # some structure: the minimum is at a finite T (about 15)
    t0 = 100.0
    best = entanglement(x, y)
    assert best.temperature < t0 / 2  # the minimum is well below T0 ...
    mod = SoftNearestNeighborLoss(temperature=t0, learn_temperature=True, lr=0.1)
    start = float(soft_nearest_neighbor_loss(x, y, t0))
    temps = []
    for _ in range(30):
        mod(x, y)
        temps.append(mod.temperature)
    assert temps[-1] < t0  # ... so T decreases
    assert abs(math.log(temps[-1] / best.temperature)) < abs(math.log(t0 / best.temperature))
    assert float(soft_nearest_neighbor_loss(x, y, temps[-1])) < start
    assert mod.inverse_scale.dtype == torch.float64 and "inverse_scale" in mod.state_dict()


def test_temperature_step_by_hand_and_its_guard():
    """t - lr * dl/dT * (-T0 / t^2), elementwise; a step to t <= 0 or to NaN leaves t."""
    t = torch.tensor([1.0, 2.0, 0.5, 1.0], dtype=torch.float64)
    dl = torch.tensor([0.5, -1.0, 100.0, float("nan")])
    new = temperature_step(t, dl, torch.tensor([0.1, 0.1, 1.0, 0.1], dtype=torch.float64), 100.0)
    # 1 + 0.1 * 0.5 * 100 / 1 = 6;  2 - 0.1 * 1 * 100 / 4 = -0.5 -> kept;  0.5 + 1 * 100 * 100 / 0.25;  NaN -> kept
    assert new.tolist() == [6.0, 2.0, 0.5 + 100.0 * 100.0 / 0.25, 1.0]
    x, y = make_batch(14, b=64, d=2, classes=4, scale=3.0)
    x[y == 0] += 6.0  # the minimum over T is near 15: at T = 1 the loss falls with T, t steps down
    assert float(_loss_and_dt(x, y, 1.0, "euclidean")[1]) < 0
    small, huge = (SoftNearestNeighborLoss(temperature=1.0, learn_temperature=True, lr=lr) for lr in (1e-3, 1e9))
    small(x, y), huge(x, y)
    assert small.temperature > 1.0 and huge.temperature == 1.0  # the huge step would pass t = 0: none


def test_learned_temperature_is_frozen_in_eval_mode_and_without_learning():
    x, y = make_batch(15, b=32, scale=5.0)
    mod = SoftNearestNeighborLoss(temperature=50.0, learn_temperature=True).eval()
    for _ in range(5):
        mod(x, y)
    assert mod.temperature == 50.0
    fixed = SoftNearestNeighborLoss(temperature=50.0)
    fixed(x, y)
    assert fixed.temperature == 50.0


def test_module_gradient_flows_to_embeddings_only():
    x, y = make_batch(16, b=16)
    x.requires_grad_(True)
    mod = SoftNearestNeighborLoss(temperature=5.0, learn_temperature=True)
    mod(x, y).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert list(mod.parameters()) == []  # t is a buffer, untouched by the model's optimiser


@pytest.mark.parametrize("kwargs,match", [
    (dict(temperature=0.0), "temperature"), (dict(temperature=-1.0), "temperature"),
    (dict(temperature=math.nan), "temperature"), (dict(distance="l2"), "unknown distance"),
])
def test_module_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SoftNearestNeighborLoss(**kwargs)


# ----------------------------------------------------------------------------------------------
# Eq. 4: triplet loss
def test_triplet_zero_when_classes_are_separated_by_more_than_the_margin():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.rand(10, 2, generator=g), torch.rand(10, 2, generator=g) + 3.0])
    y = torch.tensor([0] * 10 + [1] * 10)
    # within a class |d|^2 <= 2, across classes |d|^2 >= 2 * 2^2 = 8 > 2 + margin
    assert float(triplet_loss(x, y, margin=1.0, generator=g)) == 0.0
    assert float(triplet_loss(x, y, margin=40.0, generator=g)) > 0.0  # 40 > max |d|^2 = 32


def test_triplet_hand_computation_symmetric_example():
    # class 0 at (0,0), (1,0); class 1 at (0.5, +-1): every negative is at |d|^2 = 1.25
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, 1.0], [0.5, -1.0]])
    y = torch.tensor([0, 0, 1, 1])
    # class-0 anchors: 1 - 1.25 + 1 = 0.75; class-1 anchors: 4 - 1.25 + 1 = 3.75; mean 2.25
    for seed in range(3):
        assert float(triplet_loss(x, y, 1.0, generator=torch.Generator().manual_seed(seed))) == pytest.approx(2.25)


def test_triplet_hand_computation_with_a_fixed_generator():
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    y = torch.tensor([0, 0, 1, 1])
    margin = 2.0
    # the positive of each anchor is fixed; the negative is one of two. Per anchor:
    options = [
        [max(0, 1 - 9 + margin), max(0, 1 - 49 + margin)],    # anchor 0: p=1, n in {3, 7}
        [max(0, 1 - 4 + margin), max(0, 1 - 36 + margin)],    # anchor 1: p=0, n in {3, 7}
        [max(0, 16 - 9 + margin), max(0, 16 - 4 + margin)],   # anchor 3: p=7, n in {0, 1}
        [max(0, 16 - 49 + margin), max(0, 16 - 36 + margin)],  # anchor 7: p=3, n in {0, 1}
    ]
    possible = {sum(c) / 4 for c in np.array(np.meshgrid(*options)).reshape(4, -1).T}
    seen = set()
    for seed in range(20):
        a = float(triplet_loss(x, y, margin, generator=torch.Generator().manual_seed(seed)))
        b = float(triplet_loss(x, y, margin, generator=torch.Generator().manual_seed(seed)))
        assert a == b  # a fixed generator gives a fixed sample
        assert min(abs(a - p) for p in possible) < 1e-6
        seen.add(round(a, 6))
    assert len(seen) > 1  # negatives are sampled, not fixed


def test_triplet_gradient_and_skipped_anchors():
    x = torch.randn(7, 3, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 9])  # the last anchor has no positive: skipped
    triplet_loss(x, y, 1.0, generator=torch.Generator().manual_seed(0)).backward()
    assert torch.isfinite(x.grad).all()
    assert float(triplet_loss(torch.randn(4, 2), torch.arange(4))) == 0.0  # no positives at all


def test_triplet_errors():
    x, y = make_batch(0, b=8)
    with pytest.raises(ValueError, match="margin"):
        triplet_loss(x, y, margin=-1.0)
    with pytest.raises(ValueError, match="labels"):
        triplet_loss(x, y[:3])
    x[0, 0] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        triplet_loss(x, y)


# ----------------------------------------------------------------------------------------------
# never a wrong finite value or a silent NaN; bounded searches
@pytest.mark.parametrize("distance", DISTANCES)
def test_float32_inputs_that_would_overflow_are_computed_in_float64(distance):
    from snnl.layerwise import soft_nearest_neighbor_losses

    x, y = make_batch(1, b=10, d=4, classes=3, dtype=torch.float32, scale=1e19)
    t = 1.0 if distance == "euclidean" else 1e-37  # cosine: 1/T overflows float32 instead
    truth = naive_snnl(x, y, t, distance)  # float64 double loop on the same float32 values
    assert truth > 1e30
    for value, xg in [(soft_nearest_neighbor_loss(xg := x.clone().requires_grad_(), y, t, distance), xg),
                      (soft_nearest_neighbor_loss(xg := x.clone().requires_grad_(), y, t, distance, chunk_size=3), xg),
                      (_loss_and_dt(xg := x.clone().requires_grad_(), y, t, distance)[0], xg),
                      (soft_nearest_neighbor_losses([xg := x.clone().requires_grad_()], y, [t], distance)[0], xg)]:
        assert float(value.detach()) == pytest.approx(truth, rel=1e-5)
        value.backward()
        assert torch.isfinite(xg.grad).all()
    ent = entanglement(x, y, distance, t_range=(t, 10 * t))
    assert ent.value == pytest.approx(min(naive_snnl(x, y, ent.temperature, distance), truth), rel=1e-4)


def test_inputs_beyond_float64_raise_instead_of_a_wrong_value():
    from snnl.layerwise import soft_nearest_neighbor_losses

    x, y = make_batch(3, b=10, d=4, classes=3, dtype=torch.float64, scale=1e160)
    for fn in (lambda: soft_nearest_neighbor_loss(x, y, 1.0), lambda: soft_nearest_neighbor_losses([x], y, [1.0]),
               lambda: soft_nearest_neighbor_loss_reference(x, y, 1.0)):
        with pytest.raises(NonFiniteEmbeddings, match="overflow"):
            fn()


def test_reference_formula_is_finite_on_finite_inputs_and_refuses_t_0():
    # singletons far from the rest at T = 1: rounding made exp(-D_ii) - 1 negative, then log(<0) = NaN
    def naive_reference(x, y, t, eps=1e-5):  # the authors' formula, a double loop in float64
        pts, labels, total = x.double().tolist(), y.tolist(), 0.0
        for i, p in enumerate(pts):
            f = [0.0 if j == i else math.exp(-sum((a - c) ** 2 for a, c in zip(p, q)) / t)
                 for j, q in enumerate(pts)]
            same = sum(fj for fj, lj in zip(f, labels) if lj == labels[i]) / (eps + sum(f))
            total += -math.log(eps + same)
        return total / len(pts)

    for seed in range(20):
        x = torch.randn(6, 3, generator=torch.Generator().manual_seed(seed)) * 3.0
        y = torch.tensor([0, 0, 1, 1, 2, 3])
        ref = float(soft_nearest_neighbor_loss_reference(x, y, 1.0))
        assert math.isfinite(ref) and ref >= 2 * -math.log(1e-5) / 6  # the singletons: -log(eps) each
        assert ref == pytest.approx(naive_reference(x, y, 1.0), rel=1e-4)
    x, y = make_batch(0)
    for t in (0.0, -1.0, math.inf, torch.tensor(0.0)):
        with pytest.raises(ValueError, match="temperature"):
            soft_nearest_neighbor_loss_reference(x, y, t)


def test_entanglement_arguments_are_checked_and_the_search_is_bounded():
    import signal

    def too_long(*_):
        raise TimeoutError("entanglement did not return")

    old = signal.signal(signal.SIGALRM, too_long)  # an unbounded search fails the test, not hangs it
    signal.alarm(120)
    try:
        x, y = make_batch(0, b=30)
        tiny = entanglement(x, y, tol=1e-300)  # below float precision: ends after MAX_SEARCH_STEPS
        assert tiny.value == pytest.approx(entanglement(x, y).value, rel=1e-6)
        for kw, match in [({"tol": 0}, "tol"), ({"tol": -1.0}, "tol"), ({"tol": math.nan}, "tol"),
                          ({"grid_points": 0}, "grid_points"), ({"grid_points": 1}, "grid_points"),
                          ({"grid_points": 2.5}, "grid_points"), ({"t_range": (0, 1)}, "t_range"),
                          ({"t_range": (1, math.inf)}, "t_range"), ({"t_range": (-1, 1)}, "t_range"),
                          ({"t_range": 5}, "t_range")]:
            with pytest.raises(ValueError, match=match):
                entanglement(x, y, **kw)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ----------------------------------------------------------------------------------------------
# labels that are no class, labels on another device: one-line errors from every loss
def _every_loss(x, y):
    """Each entry point of the package that takes labels for a batch ``x``."""
    from snnl.layerwise import layerwise_snnl, soft_nearest_neighbor_losses

    return {
        "soft_nearest_neighbor_loss": lambda: soft_nearest_neighbor_loss(x, y, 1.0),
        "chunked": lambda: soft_nearest_neighbor_loss(x, y, 1.0, chunk_size=3),
        "module": lambda: SoftNearestNeighborLoss(1.0).to(x.device)(x, y),
        "reference module": lambda: SoftNearestNeighborLoss(1.0, reference=True).to(x.device)(x, y),
        "reference": lambda: soft_nearest_neighbor_loss_reference(x, y, 1.0),
        "entanglement": lambda: entanglement(x, y),
        "triplet": lambda: triplet_loss(x, y),
        "losses": lambda: soft_nearest_neighbor_losses([x, x], y, [1.0, 2.0]),
        "layerwise": lambda: layerwise_snnl({"a": SoftNearestNeighborLoss(1.0).to(x.device)}, {"a": x}, y),
    }


def test_a_negative_label_is_no_class_in_any_loss():
    x, y = make_batch(0, b=8)
    for what, call in _every_loss(x, torch.where(torch.arange(8) == 5, -1, y)).items():
        with pytest.raises(ValueError, match=r"labels must be class indices >= 0, got -1: .*ignore index") as err:
            call()
        assert "\n" not in str(err.value), what
    for what, call in _every_loss(x, (y - 2).double()).items():  # float labels too
        with pytest.raises(ValueError, match="got -2"):
            call()
    for call in _every_loss(x, y).values():  # the same labels, all >= 0: fine
        call()


def test_labels_on_another_device_than_the_embeddings_are_refused():
    x, y = make_batch(0, b=8)
    meta = y.to("meta")  # another device, on any machine
    for what, call in _every_loss(x, meta).items():
        with pytest.raises(ValueError, match=r"labels are on meta but the embeddings on cpu: move them first") as err:
            call()
        assert "\n" not in str(err.value), what
    for call in _every_loss(x, y.tolist()).values():  # a list is placed on the embeddings' device
        call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cpu_labels_for_cuda_embeddings_are_refused():
    x, y = make_batch(0, b=8)
    for call in _every_loss(x.cuda(), y).values():
        with pytest.raises(ValueError, match=r"labels are on cpu but the embeddings on cuda:0"):
            call()
    for call in _every_loss(x.cuda(), y.cuda()).values():
        call()
