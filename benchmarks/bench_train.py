"""Training step time of Table 1's CNN, entangled (Eq. 3) vs cross-entropy baseline, on the CPU.

One step = forward, loss, backward and an Adam update of :class:`snnl.models.CNN` at batch 256
on 28x28 images (the paper's Table 1 setting). The entangled step adds the soft nearest
neighbor loss of all four hidden layers (conv1 3136-d, conv2 1568-d, fc1 256-d, fc2 128-d),
each with a learned temperature, through :func:`snnl.layerwise.layerwise_snnl` as
:func:`snnl.train.train` does with ``alpha > 0``. The steps are timed interleaved (a block
of each per round, after a warm-up, in reversed order every other round), and the ratio is
the median over rounds of each round's pair of blocks, so that a machine whose speed drifts
(shared with other work) slows both sides of every ratio alike; the ratio of the medians
is printed too.
Goal: entangled / baseline <= 1.3. Above it, a ``torch.profiler`` table of the
entangled step says where the time goes.

A third step, timed in the same rounds, puts the ratio in context: the baseline plus only
the matrix products that any exact implementation of the loss computes on each hidden
layer, the Gram matrix ``x x^T`` (as :func:`snnl.layerwise.gram_into` does it) and the
gradient product ``G x``: 1.75 b^2 D multiply-adds for a layer whose Gram matrix is split
in halves (conv1, conv2), 2 b^2 D for the others. Its ratio to the
baseline is the floor of the goal on this machine; ``entangled - products`` is what the
rest of the loss (its (b, b) arithmetic, the checks, Python) costs inside the step.

    python -m benchmarks.bench_train [--batch-size 256 --rounds 16 --steps 5 --profile]
"""

from __future__ import annotations

import statistics
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmarks.interleave import interleaved, parser, ratio
from snnl.layerwise import gram_into, layerwise_snnl
from snnl.losses import SoftNearestNeighborLoss
from snnl.models import build_model

GOAL = 1.3
VARIANTS = ("baseline", "entangled", "products")


class _Products(torch.autograd.Function):
    """The floor: per layer, the Gram matrix (forward) and ``G x`` (backward), nothing else.
    Returns ``|G|_F^2 / 4`` per layer, an (L,) tensor whose gradient is ``G x``."""

    @staticmethod
    def forward(ctx, *hidden):
        xs = [h.reshape(h.shape[0], -1) for h in hidden]
        grams = xs[0].new_empty(len(xs), xs[0].shape[0], xs[0].shape[0])
        for k, x in enumerate(xs):
            gram_into(x, grams[k])
        ctx.shapes = [h.shape for h in hidden]
        ctx.save_for_backward(grams, *xs)
        return 0.25 * grams.square().sum((1, 2))

    @staticmethod
    def backward(ctx, grad):
        grams, *xs = ctx.saved_tensors
        out = tuple(x.new_empty(shape) for x, shape in zip(xs, ctx.shapes))  # not views, as in _Layerwise
        for k, x in enumerate(xs):
            torch.mm(grams[k].mul(grad[k]), x, out=out[k].view(x.shape))
        return out


def make_step(variant: str, batch_size: int, alpha: float = 10.0, seed: int = 0):
    """A closure doing one training step of a fresh CNN (random images, 10 classes):
    ``variant`` is one of :data:`VARIANTS`."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build_model("cnn", (1, 28, 28), 10)
    snnl = nn.ModuleDict({n: SoftNearestNeighborLoss(100.0, "euclidean", learn_temperature=True)
                          for n in model.layer_names})
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(batch_size, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (batch_size,), generator=g)

    def step():
        logits, hidden = model(x)
        loss = F.cross_entropy(logits, y)
        if variant == "entangled":
            loss = loss - alpha * sum(layerwise_snnl(snnl, hidden, y).values())
        elif variant == "products":
            loss = loss - 1e-12 * _Products.apply(*hidden.values()).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def profile_table(step, steps: int = 5, rows: int = 15) -> str:
    """``torch.profiler`` table of ``steps`` steps, sorted by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main(argv: list[str] | None = None) -> dict:
    """Run once, print per-step times and the ratios, return them."""
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--profile", action="store_true", help="print the profiler table even under the goal")
    args = p.parse_args([] if argv is None else argv)

    steps = {k: make_step(k, args.batch_size) for k in VARIANTS}
    wall, cpu = interleaved(steps, args.rounds, args.steps, args.warmup)
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    rat, spread = ratio(wall, "entangled", "baseline")
    floor, floor_spread = ratio(wall, "products", "baseline")
    ratio_cpu = ratio(cpu, "entangled", "baseline")[0]
    above = statistics.median(e - f for e, f in zip(wall["entangled"], wall["products"]))
    print(f"CNN (Table 1), batch {args.batch_size}, {torch.get_num_threads()} thread(s), "
          f"{args.rounds} x {args.steps} steps each, interleaved; median per step:")
    label = {"baseline": "baseline", "entangled": "entangled", "products": "products only"}
    for k in steps:
        print(f"  {label[k]:13s} {1e3 * med[k]:8.1f} ms wall   {1e3 * med_cpu[k]:8.1f} ms CPU")
    verdict = "meets" if rat <= GOAL else "misses"
    print(f"  entangled / baseline, median of the rounds' ratios: {rat:.3f} wall (quartiles "
          f"{spread[0]:.3f}-{spread[2]:.3f}), {ratio_cpu:.3f} CPU; ratio of the medians "
          f"{med['entangled'] / med['baseline']:.3f} ({verdict} the goal <= {GOAL})")
    print(f"  products only / baseline: {floor:.3f} (quartiles {floor_spread[0]:.3f}-{floor_spread[2]:.3f}), "
          f"the floor of any exact loss here; the rest of the loss costs {1e3 * above:.1f} ms per step")
    if rat > GOAL or args.profile:
        print("\nentangled step, by self CPU time:")
        print(profile_table(steps["entangled"]))
    return {"batch_size": args.batch_size, "threads": torch.get_num_threads(), "wall_s": med, "cpu_s": med_cpu,
            "ratio": rat, "ratio_cpu": ratio_cpu, "floor": floor, "above_floor_s": above, "goal": GOAL}


if __name__ == "__main__":
    main(sys.argv[1:])
