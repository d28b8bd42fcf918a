"""The cost of SNNLRegularizer's forward hooks over calling layerwise_snnl directly.

One training step (forward, Eq. 3's loss, backward, Adam update) of Table 1's CNN written as an
``nn.Sequential`` of named blocks (conv1, conv2, fc1, fc2: the representations
:class:`snnl.models.CNN` regularises, 3136-, 1568-, 256- and 128-d) at batch 256 on 28x28
images, two ways on the same model and batch:

* ``layerwise``: the step walks the blocks itself, keeps their outputs in a dict and calls
  :func:`snnl.layerwise.layerwise_snnl` on it, as :func:`snnl.train.train` does;
* ``hooks``: the model is called as it is and :class:`snnl.SNNLRegularizer` keeps the blocks'
  outputs with forward hooks, then calls the same function.

Both learn their temperatures. The steps are timed interleaved as in ``bench_train`` (a block
of each per round, in reversed order every other round); the ratio is the median over rounds
of each round's pair. Goal: hooks / layerwise <= 1.05.

    python -m benchmarks.bench_regularizer [--batch-size 256 --rounds 16 --steps 5]
"""

from __future__ import annotations

import statistics
import sys
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmarks.interleave import interleaved, parser, ratio
from snnl.layerwise import layerwise_snnl
from snnl.losses import SoftNearestNeighborLoss
from snnl.regularizer import SNNLRegularizer

GOAL = 1.05
VARIANTS = ("layerwise", "hooks")
LAYERS = ("conv1", "conv2", "fc1", "fc2")


def sequential_cnn(seed: int = 0) -> nn.Sequential:
    """Table 1's CNN (:class:`snnl.models.CNN`) as named blocks whose outputs are its hidden layers."""
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(
        conv1=nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        conv2=nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        fc1=nn.Sequential(nn.Flatten(), nn.Linear(32 * 7 * 7, 256), nn.ReLU()),
        fc2=nn.Sequential(nn.Linear(256, 128), nn.ReLU()),
        logits=nn.Linear(128, 10)))


def make_step(variant: str, batch_size: int, alpha: float = 10.0, seed: int = 0):
    """A closure doing one training step of a fresh model; returns the step's loss (a float)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
    g = torch.Generator().manual_seed(seed)
    model = sequential_cnn(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(batch_size, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (batch_size,), generator=g)
    if variant == "hooks":
        reg = SNNLRegularizer(model, LAYERS, temperature=100.0, learn_temperature=True)

        def forward_and_loss():
            return F.cross_entropy(model(x), y) - alpha * reg(y)
    else:
        snnl = nn.ModuleDict({n: SoftNearestNeighborLoss(100.0, "euclidean", learn_temperature=True) for n in LAYERS})

        def forward_and_loss():
            h, hidden = x, {}
            for name, block in model.named_children():
                h = block(h)
                hidden[name] = h
            return F.cross_entropy(h, y) - alpha * sum(layerwise_snnl(snnl, {n: hidden[n] for n in LAYERS},
                                                                      y).values())

    def step():
        loss = forward_and_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def main(argv: list[str] | None = None) -> dict:
    """Run once, print per-step times and the ratio, return them."""
    args = parser(__doc__.splitlines()[0]).parse_args([] if argv is None else argv)
    steps = {k: make_step(k, args.batch_size) for k in VARIANTS}
    first = {k: s() for k, s in steps.items()}  # the same model, batch and loss: the same first step
    if abs(first["hooks"] - first["layerwise"]) > 1e-5 * max(1.0, abs(first["layerwise"])):
        raise AssertionError(f"the two steps differ: {first}")
    wall = interleaved(steps, args.rounds, args.steps, args.warmup)[0]
    med = {k: statistics.median(v) for k, v in wall.items()}
    rat, q = ratio(wall, "hooks", "layerwise")
    print(f"Table 1's CNN as nn.Sequential, batch {args.batch_size}, {torch.get_num_threads()} thread(s), "
          f"{args.rounds} x {args.steps} steps each, interleaved; median per step (first-step loss "
          f"{first['layerwise']:.4f} both ways):")
    for k in steps:
        print(f"  {k:10s} {1e3 * med[k]:8.1f} ms")
    verdict = "meets" if rat <= GOAL else "misses"
    print(f"  hooks / layerwise, median of the rounds' ratios: {rat:.3f} (quartiles {q[0]:.3f}-{q[2]:.3f}); "
          f"ratio of the medians {med['hooks'] / med['layerwise']:.3f} ({verdict} the goal <= {GOAL})")
    return {"batch_size": args.batch_size, "threads": torch.get_num_threads(), "wall_s": med, "ratio": rat,
            "goal": GOAL}


if __name__ == "__main__":
    main(sys.argv[1:])
