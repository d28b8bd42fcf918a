"""Hidden layers of any model by name: the names of ``model.named_modules()``, the one-line error
for an unknown name (the closest names suggested), and forward hooks that keep the outputs of
named modules. :class:`snnl.SNNLRegularizer` and :func:`snnl.extract_features` (so the Deep
k-NN) resolve layer names here, so that both take the same names and fail the same way.

>>> import torch, torch.nn as nn
>>> model = nn.Sequential(nn.Flatten(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
>>> with LayerOutputs(model, ["2"]) as kept:
...     logits = model(torch.randn(5, 8))
...     kept.take()["2"].shape
torch.Size([5, 16])
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

import torch
import torch.nn as nn

MODULE_NAMES = "model.named_modules()'s"
"""Where :func:`find_modules` looks names up, as its error message says."""


def first_tensor(output) -> torch.Tensor | None:
    """A module's output as one tensor: itself, else the first tensor of a tuple, list or mapping."""
    if isinstance(output, torch.Tensor):
        return output
    items = output.values() if isinstance(output, Mapping) else output if isinstance(output, (tuple, list)) else ()
    return next((o for o in items if isinstance(o, torch.Tensor)), None)


def unknown_layer(name: str, model: nn.Module, names: list[str], where: str = MODULE_NAMES) -> str:
    """The one-line message for a layer ``name`` that is not among ``names`` (those of ``model``):
    the closest names (difflib), else the first valid ones."""
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    if close:
        hint = f"closest: {', '.join(map(repr, close))}"
    else:
        shown = [n for n in names if n][:8]
        hint = f"valid names include: {', '.join(map(repr, shown))}{', ...' if len(names) > 9 else ''}"
    return f"unknown layer {name!r} in {type(model).__name__} (names are {where}); {hint}"


def check_layer_names(layers) -> list[str]:
    """``layers`` as a list of distinct names (a single string is one name); a ValueError else."""
    layers = [layers] if isinstance(layers, str) else list(layers)
    if not layers or not all(isinstance(n, str) for n in layers):
        raise ValueError(f"layers must be a non-empty list of module names, got {layers!r}")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers must be distinct, got {layers}")
    return layers


def find_modules(model: nn.Module, layers: Iterable[str]) -> dict[str, nn.Module]:
    """``{name: module}`` for names of ``model.named_modules()`` (``""`` is the model itself);
    an unknown name is a one-line ValueError listing the closest valid names."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    modules = dict(model.named_modules())
    for name in layers:
        if name not in modules:
            raise ValueError(unknown_layer(name, model, list(modules)))
    return {name: modules[name] for name in layers}


def check_runs(layers: list[str], runs: Mapping[str, int]) -> None:
    """A RuntimeError unless each of ``layers`` ran exactly once in the forward pass (``runs``:
    how many times each ran)."""
    missing = [n for n in layers if not runs.get(n)]
    if missing:
        raise RuntimeError(f"layer(s) {missing} did not run in the last forward pass of the model")
    twice = {n: runs[n] for n in layers if runs[n] > 1}
    if twice:
        raise RuntimeError(f"layer(s) {sorted(twice)} ran {max(twice.values())} times in one forward pass "
                           f"(a module used more than once); name modules that run once")


class LayerOutputs:
    """Forward hooks that keep a copy of the output of named modules of ``model``, pass by pass.

    ``take()`` returns ``{name: output}`` of the last forward pass of ``model`` (detached copies,
    made as each layer ran, so a later in-place change by the model does not reach them) and
    forgets them; a layer that did not run in that pass, or ran more than once, is a
    RuntimeError. ``remove()`` (or leaving a ``with`` block) takes the hooks off.
    """

    def __init__(self, model: nn.Module, layers: Iterable[str]):
        self.layers = check_layer_names(layers)
        modules = find_modules(model, self.layers)
        self._kept: dict[str, torch.Tensor] = {}
        self._runs: dict[str, int] = {}
        self._pass = model.register_forward_pre_hook(self._new_pass)
        self._handles = {n: modules[n].register_forward_hook(self._hook(n)) for n in self.layers}

    def _new_pass(self, module, args):
        self._kept, self._runs = {}, {}

    def _hook(self, name: str):
        def keep(module, args, output):
            out = first_tensor(output)
            if out is None:
                raise TypeError(f"layer {name!r} returned {type(output).__name__} with no tensor")
            self._kept[name] = out.detach().clone()
            self._runs[name] = self._runs.get(name, 0) + 1
        return keep

    def keep_only(self, layers: Iterable[str]) -> None:
        """Take the hooks off every layer but ``layers`` (a subset of :attr:`layers`)."""
        self.layers = [n for n in self.layers if n in set(layers)]
        for n in [n for n in self._handles if n not in self.layers]:
            self._handles.pop(n).remove()

    def take(self) -> dict[str, torch.Tensor]:
        """``{layer: output}`` of the last forward pass, in the order of ``layers``."""
        kept, runs = self._kept, self._runs
        self._kept, self._runs = {}, {}
        check_runs(self.layers, runs)
        return {n: kept[n] for n in self.layers}

    def remove(self) -> None:
        """Take the hooks off the model (idempotent)."""
        for h in [self._pass, *self._handles.values()]:
            h.remove()
        self._handles, self._kept, self._runs = {}, {}, {}

    def __enter__(self) -> LayerOutputs:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
