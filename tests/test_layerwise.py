"""The soft nearest neighbor loss of several layers in one pass (snnl.layerwise)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from snnl.layerwise import gram_into, _losses, _stats, layerwise_snnl, soft_nearest_neighbor_losses
from snnl.losses import NonFiniteEmbeddings, SoftNearestNeighborLoss, _loss_and_dt, soft_nearest_neighbor_loss
from tests.test_losses import DISTANCES, naive_snnl

LABELS = torch.tensor([0, 1, 0, 1, 1, 7, 0, 0, 1, 9, 0, 1, 1, 0])  # 7 and 9 have no partner


def layers(seed, b=14, widths=(4, 3, 1), dtype=torch.float64, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(b, w, generator=g, dtype=dtype) * scale).requires_grad_(True) for w in widths]


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-5), (torch.float64, 1e-10)])
def test_each_entry_matches_the_naive_double_loop(distance, dtype, tol):
    xs = layers(0, dtype=dtype, widths=(4, 3, 2))
    temps = [0.3, 2.0, 50.0]
    got = soft_nearest_neighbor_losses(xs, LABELS, temps, distance).detach()
    assert got.shape == (3,) and got.dtype == dtype
    for k, (x, t) in enumerate(zip(xs, temps)):
        assert float(got[k]) == pytest.approx(naive_snnl(x, LABELS, t, distance), rel=tol, abs=tol)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("b, widths", [(14, (4, 3, 1)), (150, (1100, 40, 7))])  # 1100: the half-size Gram
def test_value_and_gradient_equal_the_single_layer_loss(distance, b, widths):
    labels = LABELS if b == 14 else torch.arange(b) % 6
    xs = layers(1, b=b, widths=widths)
    temps = [0.7, 3.0, 40.0] if b == 14 else [400.0, 20.0, 3.0]
    weights = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)  # a different upstream gradient per layer
    got = soft_nearest_neighbor_losses(xs, labels, temps, distance)
    grads = torch.autograd.grad((got * weights).sum(), xs)
    for k, (x, t) in enumerate(zip(xs, temps)):
        want = soft_nearest_neighbor_loss(x, labels, t, distance)
        (want_grad,) = torch.autograd.grad(want, x)
        assert got[k].item() == pytest.approx(want.item(), rel=1e-12, abs=1e-12)
        torch.testing.assert_close(grads[k], weights[k] * want_grad, rtol=1e-9, atol=1e-12)
        assert grads[k].abs().sum() > 0


def test_the_half_size_gram_matrix_is_the_product_and_exactly_symmetric():
    x = torch.randn(130, 1500)
    out = gram_into(x, torch.empty(130, 130))
    assert torch.equal(out, out.T)
    torch.testing.assert_close(out, x.double() @ x.double().T, rtol=1e-5, atol=1e-3, check_dtype=False)


@pytest.mark.parametrize("distance", DISTANCES)
def test_gradcheck_embeddings_and_temperatures(distance):
    xs = layers(2, b=12, widths=(5, 3))
    y = torch.arange(12) % 3
    t = torch.tensor([2.0, 0.7], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, a, b: soft_nearest_neighbor_losses([a, b], y, t, distance), (t, *xs))


def test_huge_distances_use_the_per_class_shifts_and_stay_exact():
    xs = [x.detach().float().mul(1e3).requires_grad_(True) for x in layers(3, b=48, widths=(16, 8))]
    y = torch.arange(48) % 4
    got = soft_nearest_neighbor_losses(xs, y, [1.0, 1.0])
    sum(got).backward()
    for k, x in enumerate(xs):
        truth = naive_snnl(x, y, 1.0)  # log-space, float64
        assert truth > 1e3 and got[k].item() == pytest.approx(truth, rel=1e-4)
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    onehot_t = nn.functional.one_hot(y).T.float()
    valid = torch.ones(48, dtype=torch.bool)
    xc = [x.detach() for x in xs]
    t = torch.ones(2)
    _, _, m, _, _ = _stats(xc, t, y, onehot_t, valid, True)
    assert m.shape == (2, 4, 48)  # the fallback ran: one shift per class
    _, _, m, _, _ = _stats([x / 1e3 for x in xc], t, y, onehot_t, valid, True)
    assert m.shape == (2, 1, 48)  # ordinary distances: one shift per query


def test_both_shifts_give_the_same_statistics():
    xs = [x.detach() for x in layers(4, b=30, widths=(6, 2))]
    y = torch.arange(30) % 5
    onehot_t = nn.functional.one_hot(y).T.double()
    valid = torch.ones(30, dtype=torch.bool)
    t = torch.tensor([0.5, 4.0], dtype=torch.float64)
    _, _, m1, s1, _ = _stats(xs, t, y, onehot_t, valid, True)
    _, _, m2, s2, _ = _stats(xs, t, y, onehot_t, valid, True, per_class=True)
    torch.testing.assert_close(torch.log(s1) + m1, torch.log(s2) + m2)  # per-class log-sum-exp


@pytest.mark.parametrize("offset, centred", [(0.0, False), (3.0, False), (1e4, True)])
def test_float32_stays_exact_far_from_the_origin(offset, centred):
    x64 = layers(5, b=40, widths=(8,))[0].detach()
    y = torch.arange(40) % 4
    x = (x64 + offset).float()  # at 1e4 the Gram matrix of the raw points loses every digit
    truth = naive_snnl(x, y, 2.0)  # of the float32 points, in float64
    xs, *_ = _stats([x], torch.tensor([2.0]), y, nn.functional.one_hot(y).T.float(), torch.ones(40, dtype=torch.bool),
                    True)
    assert (xs[0] is not x) == centred
    if centred:  # on its first point, by the two-point probe: no second Gram matrix
        assert torch.equal(xs[0][0], torch.zeros(8))
    got = soft_nearest_neighbor_losses([x], y, [2.0])
    assert float(got[0]) == pytest.approx(truth, rel=1e-5)


def test_the_gram_matrix_check_catches_what_the_two_point_probe_misses():
    g = torch.Generator().manual_seed(6)
    x = (torch.randn(400, 8, generator=g, dtype=torch.float64) + 1e4).float()
    x[:2] = 0.0  # the probe sees its two points at the origin: "near"; all the others are far
    y = torch.arange(400) % 4
    xs, *_ = _stats([x], torch.tensor([2.0]), y, nn.functional.one_hot(y).T.float(), torch.ones(400, dtype=torch.bool),
                    True)
    assert xs[0] is not x and xs[0].mean(0).abs().max() < 1e-2  # centred on the mean after all
    # centred on the mean, the others lie ~50 per coordinate from it: float32 keeps ~4 digits
    assert float(soft_nearest_neighbor_losses([x], y, [2.0])[0]) == pytest.approx(naive_snnl(x, y, 2.0), rel=1e-3)


def test_points_without_partner_are_left_out_and_all_singletons_give_zero():
    xs = layers(6, b=5, widths=(3, 2))
    got = soft_nearest_neighbor_losses(xs, torch.arange(5), [1.0, 1.0])
    assert torch.equal(got.detach(), torch.zeros(2, dtype=torch.float64))
    sum(got).backward()
    assert all(torch.equal(x.grad, torch.zeros_like(x)) for x in xs)


def test_backward_twice_through_a_retained_graph():
    xs = layers(7, b=14, widths=(4, 2))
    got = soft_nearest_neighbor_losses(xs, LABELS, [1.0, 3.0]).sum()
    first = torch.autograd.grad(got, xs, retain_graph=True)
    second = torch.autograd.grad(got, xs)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b)


def test_half_precision_and_mixed_inputs():
    xs = [torch.randn(20, 6).half(), torch.randn(20, 3)]
    y = torch.arange(20) % 2
    got = soft_nearest_neighbor_losses(xs, y, [1.0, 1.0])
    assert got.dtype == torch.float32
    assert float(got[0]) == pytest.approx(float(soft_nearest_neighbor_loss(xs[0], y, 1.0)), rel=1e-6)
    assert soft_nearest_neighbor_losses([xs[1], xs[1].double()], y, [1.0, 1.0]).dtype == torch.float64


@pytest.mark.parametrize("call, error, match", [
    (lambda x, y: soft_nearest_neighbor_losses([], y, []), TypeError, "non-empty list"),
    (lambda x, y: soft_nearest_neighbor_losses(x, y, [1.0]), TypeError, "list of tensors"),
    (lambda x, y: soft_nearest_neighbor_losses([x, x[:5]], y, [1.0, 1.0]), ValueError, "same batch"),
    (lambda x, y: soft_nearest_neighbor_losses([x, x], y, [1.0]), ValueError, "1 temperatures for 2"),
    (lambda x, y: soft_nearest_neighbor_losses([x], y, [0.0]), ValueError, "finite and > 0"),
    (lambda x, y: soft_nearest_neighbor_losses([x], y, [1.0], "manhattan"), ValueError, "choose one of"),
    (lambda x, y: soft_nearest_neighbor_losses([x], y[:3], [1.0]), ValueError, "vector of length 6"),
])
def test_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call(torch.randn(6, 2), torch.arange(6) % 2)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_names_the_layer(distance, bad):
    hidden = {"conv": torch.randn(8, 3), "fc": torch.randn(8, 2)}
    hidden["fc"][3, 1] = bad
    losses = {n: SoftNearestNeighborLoss(1.0, distance) for n in hidden}
    with pytest.raises(NonFiniteEmbeddings, match=r"representation fc\)") as err:
        layerwise_snnl(losses, hidden, torch.arange(8) % 2)
    assert err.value.layers == ["fc"]


def test_modules_together_equal_the_modules_in_turn():
    """Values, gradients and the learned temperatures after several steps."""
    def build():
        return nn.ModuleDict({
            "a": SoftNearestNeighborLoss(100.0, learn_temperature=True),
            "b": SoftNearestNeighborLoss(5.0, learn_temperature=True, lr=0.5),
            "c": SoftNearestNeighborLoss(2.0),  # fixed temperature
            "d": SoftNearestNeighborLoss(1.0, "cosine", learn_temperature=True),  # another group
            "e": SoftNearestNeighborLoss(3.0, learn_temperature=True, chunk_size=4),  # called on its own
            "f": SoftNearestNeighborLoss(4.0, learn_temperature=True, reference=True),  # on its own too
        })
    together, alone = build(), build()
    y = torch.arange(24) % 3
    for step in range(4):
        src = {n: x.detach() * (1 + step) for n, x in zip("abcdef", layers(10 + step, b=24, widths=(6, 5, 4, 3, 2, 3)))}
        h1 = {n: x.clone().requires_grad_(True) for n, x in src.items()}
        h2 = {n: x.clone().requires_grad_(True) for n, x in src.items()}
        got = layerwise_snnl(together, h1, y)
        want = {n: together_mod(h2[n], y) for n, together_mod in alone.items()}
        assert list(got) == list(want)
        sum(got.values()).backward()
        sum(want.values()).backward()
        for n in src:
            assert got[n].item() == pytest.approx(want[n].item(), rel=1e-12)
            torch.testing.assert_close(h1[n].grad, h2[n].grad, rtol=1e-9, atol=1e-14)
            assert together[n].temperature == pytest.approx(alone[n].temperature, rel=1e-12)
    assert together["a"].temperature != 100.0 and together["c"].temperature == 2.0
    together.eval()
    before = together["a"].temperature
    layerwise_snnl(together, {n: x.detach() for n, x in src.items()}, y)
    assert together["a"].temperature == before  # no step outside training


def test_a_missing_layer_is_a_clear_error():
    with pytest.raises(KeyError, match="no representation for layer"):
        layerwise_snnl({"fc": SoftNearestNeighborLoss()}, {"conv": torch.randn(4, 2)}, torch.arange(4) % 2)


@pytest.mark.parametrize("scale", [1.0, 1e3])  # 1e3 at T = 1: the per-class shifts
@pytest.mark.parametrize("distance", DISTANCES)
def test_temperature_derivative_equals_the_single_layer_one(scale, distance):
    xs = [x.detach().float() * scale for x in layers(8, b=40, widths=(12, 5))]
    y = torch.arange(40) % 4
    _, dt = _losses(xs, y, [1.0, 2.0], distance, want_dt=True)
    for k, (x, t) in enumerate(zip(xs, [1.0, 2.0])):
        assert float(dt[k]) == pytest.approx(float(_loss_and_dt(x, y, t, distance)[1]), rel=1e-4, abs=1e-9)


def test_nan_in_a_module_called_on_its_own_names_the_layer_too():
    hidden = {"conv": torch.randn(8, 3), "fc": torch.randn(8, 2)}
    hidden["fc"][3, 1] = float("nan")
    losses = {"conv": SoftNearestNeighborLoss(1.0), "fc": SoftNearestNeighborLoss(1.0, chunk_size=4)}
    with pytest.raises(NonFiniteEmbeddings, match=r"representation fc\)") as err:
        layerwise_snnl(losses, hidden, torch.arange(8) % 2)
    assert err.value.layers == ["fc"]


def test_image_shaped_and_non_contiguous_layers_with_downstream_gradients():
    """(b, C, H, W) layers, one not contiguous, each also used further on (so autograd adds the
    rest of the graph's gradient to the loss's): as one call per layer."""
    base = torch.randn(14, 3, 4, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    weights = torch.tensor([1.0, -2.0], dtype=torch.float64)

    def run(together):
        a = base.clone().requires_grad_(True)
        conv, perm = a * 2.0, (a + 1.0).permute(0, 2, 3, 1)
        if together:
            losses = soft_nearest_neighbor_losses([conv, perm], LABELS, [3.0, 7.0])
        else:
            losses = torch.stack([soft_nearest_neighbor_loss(conv, LABELS, 3.0),
                                  soft_nearest_neighbor_loss(perm, LABELS, 7.0)])
        (conv.sin().sum() + perm.cos().sum() + (losses * weights).sum()).backward()
        return losses.detach(), a.grad

    (got, got_grad), (want, want_grad) = run(True), run(False)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-9, atol=1e-12)
