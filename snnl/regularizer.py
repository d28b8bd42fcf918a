"""The soft nearest neighbor regulariser (paper Eq. 3) for any ``nn.Module``, by layer name.

Eq. 3 trains on ``CE(f(x), y) - alpha * sum_i l_sn(f_i(x), y, T_i)``: the cross-entropy minus
``alpha`` times the soft nearest neighbor loss of hidden layers ``f_i``. The paper *maximises*
the hidden layers' entanglement: ``alpha > 0`` with the minus sign. :class:`SNNLRegularizer`
attaches to a model with forward hooks on the named layers, so the model's ``forward`` is left
as it is (a torchvision ResNet, a timm model, one's own network):

>>> import torch, torch.nn as nn, torch.nn.functional as F
>>> model = nn.Sequential(nn.Flatten(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
>>> x, y = torch.randn(32, 8), torch.arange(32) % 3
>>> with SNNLRegularizer(model, layers=["2"], temperature=10.0) as reg:
...     loss = F.cross_entropy(model(x), y) - 0.1 * reg(y)   # alpha = 0.1 > 0: maximise
...     loss.backward()
>>> list(reg.losses), list(reg.temperatures)
(['2'], ['2'])

The hooks only keep the layers' outputs; ``reg(y)`` computes their losses in one pass with
:func:`snnl.layerwise.layerwise_snnl` and one :class:`snnl.losses.SoftNearestNeighborLoss` per
layer, the loss and the learned-temperature rule of the rest of the package. Layer names are
resolved by :mod:`snnl.layers`, as for :func:`snnl.extract_features`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn

from snnl.layers import check_layer_names, check_runs, find_modules, first_tensor
from snnl.layerwise import layerwise_snnl
from snnl.losses import SoftNearestNeighborLoss


class SNNLRegularizer(nn.Module):
    """The soft nearest neighbor loss of named layers of any model, summed: Eq. 3's regulariser.

    Forward hooks on ``layers`` keep each layer's output during the model's forward pass;
    ``reg(labels)`` then returns the sum over those layers of the soft nearest neighbor loss
    (Eq. 1) of the batch, each layer at its own temperature, and drops the kept outputs. With
    :func:`entanglement` to measure the layers afterwards:

    >>> import torch, torch.nn as nn, torch.nn.functional as F
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> x, y, alpha = torch.randn(64, 8), torch.arange(64) % 3, 0.1
    >>> with SNNLRegularizer(model, layers=["2"], temperature=10.0) as reg:
    ...     for step in range(3):
    ...         logits = model(x)                                   # the hooks keep the layers' outputs
    ...         loss = F.cross_entropy(logits, y) - alpha * reg(y)  # the paper: alpha > 0, maximised
    ...         opt.zero_grad(); loss.backward(); opt.step()
    >>> list(reg.losses), list(reg.temperatures)                    # {layer: last loss}, {layer: T}
    (['2'], ['2'])
    >>> hidden = extract_features(model, x, layers=["2"])[0]        # the layer on held-out data
    >>> ent = entanglement(torch.from_numpy(hidden), y)             # Eq. 2: the loss at its best T

    **The sign**: the paper maximises the hidden layers' entanglement, so its training loss is
    ``cross_entropy - alpha * reg(y)`` with ``alpha > 0``; ``+ alpha * reg(y)`` minimises it
    (classes pulled apart in every layer).

    **What maximising it does not guarantee**: ``- alpha * reg(y)`` raises each layer's loss *at
    its temperature T*, and a network can meet that by shrinking the layer's activations against
    T (every pair of points then looks close) without mixing its classes. A user's own CNN
    trained with this sign ended with a *lower* test-set entanglement (Eq. 2, the loss at its
    best T) in most layers than without the regulariser; the book's Table 1 study found why: the
    entangled networks shrink the pairwise distances of every hidden layer to a small fraction
    of T (chapter *Entanglement as a regulariser*, `the Table 1 study
    <regularization.html#table1-study>`__). Measure :func:`entanglement` of the layers on test
    data, and their activations' scale against T, before concluding that training entangled them.

    Args:
        model: any ``nn.Module``; it is not copied, not changed and not part of this module's
            parameters or ``state_dict()``.
        layers: names from ``model.named_modules()`` (``""`` is the model itself). An unknown
            name is a ``ValueError`` listing the closest valid names. A layer whose output is a
            tuple, list or mapping (e.g. an LSTM) contributes the first tensor in it. Outputs
            are flattened per example (their first dimension is the batch), so the layers
            may have any shape and width.
        temperature: T of every layer (the initial T0 when learned); the authors' code uses 100.
        learn_temperature: per layer ``T = T0 / t``, one step on ``t`` per ``reg(y)`` towards
            the temperature that minimises the loss (Eq. 2), as
            :class:`snnl.losses.SoftNearestNeighborLoss` does; only while both the model and this
            module are in training mode. The temperatures are buffers: the model's optimiser
            never touches them, and ``state_dict()`` keeps them (with the layer names, checked
            by ``load_state_dict``), so a checkpoint of ``reg.state_dict()`` restores them.
        distance: ``"euclidean"`` (squared) or ``"cosine"``.
        lr: the step size on ``t`` (0.1 in the authors' code).
        capture_in_eval: keep the layers' outputs in every forward pass. By default they are kept
            only when the model is in training mode and gradients are enabled: evaluation passes
            (``model.eval()``, ``torch.no_grad()``) capture nothing and leave a pending capture
            as it is.

    The outputs of one forward pass of ``model`` are kept until ``reg(y)`` uses them. The next
    training forward pass drops them: nothing accumulates across steps when ``reg`` is not
    called (a step whose backward pass went through the kept outputs). ``reg(y)`` raises a
    ``RuntimeError`` when no forward pass was captured since the last call (none yet, or a
    second call for one forward pass), when a second training-mode forward pass ran between
    ``model(x)`` and ``reg(y)`` (e.g. an attack in training mode: its outputs would have
    replaced those of ``model(x)``; run it in eval mode or under ``torch.no_grad()``), when a
    named layer did not run in the pass or ran more than once (a module reused in one pass,
    such as the ReLU of torchvision's ``BasicBlock``: name one that runs once), or when a kept
    output was later changed in place by the model (e.g. by a following ``ReLU(inplace=True)``:
    name the module that produces the final value); and a ``ValueError`` when the labels do not
    match the batch, hold a negative label (e.g. an ignore index of -1) or lie on another device
    than the layers' outputs. Passes are counted by a forward pre-hook on ``model`` itself: call
    ``model``, not one of its submodules, between two ``reg(y)``.

    Attributes:
        layers: the layer names, in order.
        losses: ``{layer: loss}`` of the last ``reg(y)`` (0-d tensors, detached).
        temperatures: ``{layer: T}``, the current temperatures (floats).

    ``torch.compile(model)`` works (the same values and gradients; tested with the default
    compiler and ``backend="aot_eager"``): the compiler traces the hooks with the model, and
    ``reg(y)`` itself runs eagerly. The tensors a compiled model hands over carry no record of
    in-place changes, so that one check is not made there.
    ``remove()`` (or leaving a ``with`` block) takes the hooks off the model; the module then
    only holds its temperatures.
    """

    def __init__(self, model: nn.Module, layers: Iterable[str], temperature: float = 100.0,
                 learn_temperature: bool = True, distance: str = "euclidean", lr: float = 0.1,
                 capture_in_eval: bool = False):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        layers = check_layer_names(layers)
        modules = find_modules(model, layers)
        self.layers = tuple(layers)
        self.criteria = nn.ModuleList(SoftNearestNeighborLoss(temperature, distance, learn_temperature, lr)
                                      for _ in layers)
        self.capture_in_eval = bool(capture_in_eval)
        self.__dict__["_model"] = model  # a reference, not a submodule: not in parameters() nor state_dict()
        self._kept: dict[str, tuple[torch.Tensor, int]] = {}  # layer -> (output, its version when kept)
        self._runs: dict[str, int] = {}  # layer -> times it ran in the pass being kept
        self._state = "empty"  # "empty" (nothing kept yet), "kept", "consumed", "removed"
        self._backward = _Flag()  # set when a backward pass reaches the kept outputs (see _new_pass)
        self._whole_pass = False  # the kept outputs come from a call of the model (not of a submodule)
        self._replaced = False  # a kept pass, never used, was replaced by another training pass
        self.losses: dict[str, torch.Tensor] = {}
        self._handles = [model.register_forward_pre_hook(self._new_pass)]
        self._handles += [modules[n].register_forward_hook(self._hook(n)) for n in layers]

    # -- capture ---------------------------------------------------------------------------------
    def _capturing(self) -> bool:
        return self.capture_in_eval or (self._model.training and torch.is_grad_enabled())

    def _new_pass(self, module, args):
        if not self._capturing():
            return
        # a kept pass that reg(y) never used and no backward pass went through is a pass between
        # model(x) and reg(y) (e.g. an attack in training mode): reg(y) would see this one instead.
        # A kept pass that a backward went through was a step without reg(y): dropped quietly
        if self._state == "kept" and self._whole_pass and self._backward.watched and not self._backward.seen:
            self._replaced = True
        self._kept.clear()  # the previous pass's outputs, if never used, are dropped here
        self._runs.clear()
        self._backward, self._whole_pass = _Flag(), True

    def _hook(self, name: str):
        def keep(module, args, output):
            if not self._capturing():
                return
            out = first_tensor(output)
            if out is None:
                raise TypeError(f"SNNLRegularizer: layer {name!r} returned {type(output).__name__} with no tensor")
            # the version counter tells a later in-place change; a compiled graph's outputs do not
            # keep it (their kernels write them), so there the check is not made
            compiling = torch.compiler.is_compiling()
            self._kept[name] = (out, None if compiling else out._version)
            self._runs[name] = self._runs.get(name, 0) + 1
            self._state = "kept"
            if out.requires_grad and not compiling:
                self._backward.watch(out)
        return keep

    # -- the loss --------------------------------------------------------------------------------
    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """The sum over the layers of their soft nearest neighbor loss on the kept batch (a 0-d
        tensor, differentiable in the model's parameters); also sets :attr:`losses`, and takes
        one step on the learned temperatures (in training mode)."""
        hidden = self._take(labels)
        learn = self.training and self._model.training
        # layerwise_snnl steps a temperature when its module is in training mode: set for this call
        switched = [c for c in self.criteria if c.training != learn]
        for c in switched:
            c.training = learn
        try:
            values = layerwise_snnl(dict(zip(self.layers, self.criteria)), hidden, labels)
        finally:
            for c in switched:
                c.training = not learn
        self.losses = {n: v.detach() for n, v in values.items()}
        return torch.stack(list(values.values())).sum()

    def _take(self, labels) -> dict[str, torch.Tensor]:
        """The kept outputs, checked against each other and the labels, handed over once."""
        if self._state != "kept":
            raise RuntimeError({
                "empty": "reg(y) needs a forward pass of the model first (in training mode with gradients "
                         "enabled, or capture_in_eval=True)",
                "consumed": "reg(y) was already called for this forward pass: run the model again first",
                "removed": "this SNNLRegularizer was removed from its model"}[self._state])
        if self._replaced:
            self._drop("consumed")
            raise RuntimeError("reg(y): the model ran a second training-mode forward pass (e.g. an attack) after "
                               "model(x) and before reg(y), whose layer outputs replaced those of model(x); call "
                               "reg(y) before it, or run it in eval mode or under torch.no_grad()")
        name, (out, _) = next(iter(self._kept.items()))
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else tuple(torch.as_tensor(labels).shape)
        if shape != (out.shape[0],):
            raise ValueError(f"got labels of shape {shape} for a batch of {out.shape[0]} (the output of layer "
                             f"{name!r}): one label per example")
        kept, runs = self._kept, self._runs
        self._drop("consumed")  # nothing outlives this call
        check_runs(list(self.layers), runs)
        changed = [n for n, (out, version) in kept.items() if version is not None and out._version != version]
        if changed:
            raise RuntimeError(f"the output of layer(s) {changed} was changed in place after the layer ran "
                               f"(e.g. by a following ReLU(inplace=True)); name the module whose output is final")
        return {n: kept[n][0] for n in self.layers}

    def _drop(self, state: str) -> None:
        """Forget the kept outputs; the regulariser is then in ``state``."""
        self._kept, self._runs, self._state, self._replaced, self._whole_pass = {}, {}, state, False, False

    @property
    def temperatures(self) -> dict[str, float]:
        """``{layer: T}``: each layer's current temperature."""
        return {n: c.temperature for n, c in zip(self.layers, self.criteria)}

    # -- life cycle ------------------------------------------------------------------------------
    def remove(self) -> None:
        """Take the hooks off the model and drop any kept output (idempotent)."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self._drop("removed")

    def __enter__(self) -> SNNLRegularizer:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def get_extra_state(self) -> dict:
        return {"layers": list(self.layers), "initial_temperatures": [c.initial_temperature for c in self.criteria]}

    def set_extra_state(self, state: dict) -> None:
        if list(state["layers"]) != list(self.layers):
            raise ValueError(f"the state is of a regulariser on layers {state['layers']}, this one is on "
                             f"{list(self.layers)}")
        for c, t0 in zip(self.criteria, state["initial_temperatures"]):
            c.initial_temperature = float(t0)

    def extra_repr(self) -> str:
        return f"layers={list(self.layers)}, model={type(self._model).__name__}" + (
            ", capture_in_eval=True" if self.capture_in_eval else "") + (
            ", removed" if self._state == "removed" else "")


class _Flag:
    """Whether a backward pass reached any of the tensors it watches (a gradient hook on each)."""

    def __init__(self):
        self.watched = self.seen = False

    def watch(self, tensor: torch.Tensor) -> None:
        self.watched = True
        tensor.register_hook(self._seen)

    def _seen(self, grad) -> None:
        self.seen = True
