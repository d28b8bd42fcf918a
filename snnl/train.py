"""Regularized training (paper Eq. 3, Sections 3.1 and 4).

    L = CE(f_k(x), y) - alpha * sum_{i in layers} l_sn(f_i(x), y, T_i)

``alpha = 0`` is the cross-entropy baseline, ``alpha > 0`` maximises the
entanglement of the hidden layers (the paper's regulariser), ``alpha < 0``
minimises it. Each regularised layer has its own temperature, fixed or learned
(``T = T0 / t``, one step on ``t`` per training step: the authors' scheme, see
:class:`snnl.losses.SoftNearestNeighborLoss`); all layers' losses are computed in one
pass by :func:`snnl.layerwise.layerwise_snnl`.

:func:`train` is the one training function used by the command line, the
notebooks and the tests. It records per-layer SNNL of the training batches and
the learned temperatures, train/test cross-entropy and accuracy at evaluation
points, checkpoints at intervals (a killed run resumes from its last checkpoint
and ends with the same result), stops on a non-finite loss with a message that
names the step, and writes a results record at the end.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from snnl.checkpointing import (  # noqa: F401 (TrainingDiverged: snnl.train.TrainingDiverged)
    CheckpointError, Preempted, TrainingDiverged, checkpoint_file, diverged, note_record, resume_state,
    save_checkpoint, stop_requested, use_folder, written_record)
from snnl.data import Dataset, check_dataset, load_dataset
from snnl.layerwise import layerwise_snnl
from snnl.losses import DISTANCES, NonFiniteEmbeddings, SoftNearestNeighborLoss, triplet_loss
from snnl.models import MODELS, build_model
from snnl.results import Run, check_folder, check_name, device_name, resolve_device, seed_everything

REGULARIZERS = ("snnl", "snnl-reference", "triplet")
OPTIMIZERS = ("adam", "sgd")


@dataclass
class TrainConfig:
    """What :func:`snnl.train.train` trains: the data, the model, Eq. 3's regulariser and the optimiser.

    The defaults are the paper's Table 1 recipe (Adam 1e-4, batch 256, 14,000 steps, every hidden
    layer at T0 = 100, learned), on the embedded digits; ``alpha > 0`` maximises the hidden
    layers' entanglement, ``alpha = 0`` is the baseline. A :class:`TrainResult` comes back:

    >>> from snnl.train import train
    >>> config = TrainConfig(dataset="digits", model="cnn", alpha=10.0, steps=3, batch_size=32, n_train=64,
    ...                      n_test=32, eval_every=3, device="cpu")
    >>> result = train(config, progress=False)
    >>> isinstance(result, TrainResult), 0 <= result.metrics["test_accuracy"] <= 1
    (True, True)
    >>> sorted(result.metrics["final_temperature"]) == sorted(build_model("cnn").layer_names)
    True
    """

    dataset: str = "digits"  # one of snnl.data.DATASETS
    model: str = "cnn"  # cnn (Table 1), cnn1 (App. C) or resnet (CIFAR-10)
    alpha: float = 0.0  # weight of the SNNL term; > 0 maximises entanglement (Eq. 3), 0 = baseline
    temperature: float = 100.0  # initial temperature T0 of every layer (authors' code: 100)
    learn_temperature: bool = True  # T = T0 / t with one step on t per training step
    distance: str = "euclidean"  # euclidean (squared) or cosine (the paper's ResNet)
    layers: tuple[str, ...] | None = None  # hidden layers to regularise/record (None = all)
    regularizer: str = "snnl"  # snnl; snnl-reference (the authors' formula, with its 1e-5 terms); triplet (App. B)
    optimizer: str = "adam"  # adam (the CNN: lr 1e-4) or sgd (momentum 0.9; the ResNet)
    lr: float = 1e-4  # learning rate
    lr_decay: float = 1.0  # exponential decay: lr * lr_decay ** (step / decay_steps)
    decay_steps: int = 1000  # steps per decay factor
    weight_decay: float = 0.0  # L2 penalty in the optimiser
    batch_size: int = 256  # the paper: 256
    steps: int = 14000  # the paper's CNN: 14,000
    eval_every: int = 500  # steps between evaluations of train/test CE and accuracy
    log_every: int = 50  # steps between records of per-layer SNNL and temperature
    eval_train_size: int = 10000  # training points used for the train CE/accuracy
    n_train: int | None = None  # training subset (None = all)
    n_test: int | None = None  # test subset (None = all)
    size: int | None = None  # resize images (e.g. 32 for the ResNet)
    channels: int | None = None  # replicate channels (e.g. 3 for the ResNet)
    seed: int = 0
    device: str = "auto"
    profile: str = "small"  # recorded in the results record: small or paper
    experiment: str = "train"  # name of the results record

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose one of: {', '.join(MODELS)}")
        if self.distance not in DISTANCES:
            raise ValueError(f"unknown distance {self.distance!r}; choose one of: {', '.join(DISTANCES)}")
        if self.regularizer not in REGULARIZERS:
            raise ValueError(f"unknown regularizer {self.regularizer!r}; choose one of: {', '.join(REGULARIZERS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
        for name in ("steps", "batch_size", "eval_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be finite and > 0, got {self.temperature}")
        for name in ("decay_steps", "eval_train_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("n_train", "n_test", "size", "channels"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (or None), got {getattr(self, name)}")
        if not math.isfinite(self.alpha):
            raise ValueError(f"alpha must be finite, got {self.alpha}")
        for name in ("lr", "lr_decay"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be finite and > 0, got {getattr(self, name)}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be finite and >= 0, got {self.weight_decay}")
        check_name(self.experiment, "experiment")
        if self.layers is not None:
            self.layers = tuple(self.layers)


@dataclass
class TrainResult:
    """What :func:`snnl.train.train` returns: the trained model, its config, metrics, history and record.

    ``metrics``: the final test and train accuracy and cross-entropy, and each layer's final
    temperature; ``history``: the curves (evaluation every ``eval_every`` steps, per-layer SNNL
    and temperature every ``log_every``); ``record``: the results record (:class:`Run`):

    >>> from snnl.train import train
    >>> result = train(TrainConfig(steps=2, batch_size=32, n_train=64, n_test=32, eval_every=2, device="cpu"),
    ...                progress=False)
    >>> ds = load_dataset("digits", n_train=64, n_test=32)    # the same data: the config's
    >>> evaluate(result.model, ds.x_test, ds.y_test)["accuracy"] == result.metrics["test_accuracy"]
    True
    >>> isinstance(result, TrainResult), result.record["experiment"], result.history["eval_step"]
    (True, 'train', [2])
    """

    model: nn.Module
    config: TrainConfig
    metrics: dict
    history: dict
    record: dict = field(default_factory=dict)


def load_for(config: TrainConfig) -> Dataset:
    """The dataset a config asks for (subsets, resizing)."""
    return load_dataset(config.dataset, n_train=config.n_train, n_test=config.n_test,
                        size=config.size, channels=config.channels, seed=config.seed)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> dict:
    """Cross-entropy and accuracy of a model of :data:`MODELS` on (x, y), in eval mode (mode restored).

    >>> ds = load_dataset("digits", n_test=100)
    >>> scores = evaluate(build_model("cnn", ds.shape, ds.num_classes), ds.x_test, ds.y_test)
    >>> sorted(scores), 0 <= scores["accuracy"] <= 1
    (['accuracy', 'ce'], True)
    """
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    ce, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev)
        logits = model(xb)[0]
        ce += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
    model.train(was_training)
    return {"ce": ce / len(x), "accuracy": correct / len(x)}


@torch.no_grad()
def activation_scale(h: torch.Tensor, temperature: float, distance: str = "euclidean") -> float:
    """The median pairwise distance of a batch of activations (squared Euclidean or cosine, as
    the loss uses it) divided by the temperature: near 0, every pair looks close at that T and
    the SNNL is near its maximum whatever the classes (a network can raise its SNNL at a fixed
    T by shrinking its activations); large, only the nearest points count."""
    h = h.detach().flatten(1).double()
    if distance == "cosine":
        h = F.normalize(h, dim=1)
        d = (1.0 - h @ h.T)[torch.triu_indices(len(h), len(h), 1, device=h.device).unbind()]
    else:
        d = torch.pdist(h).square()
    return float(d.median()) / float(temperature) if d.numel() else float("nan")


def train(config: TrainConfig, data: Dataset | None = None, out_dir: str | os.PathLike | None = None,
          checkpoint_dir: str | os.PathLike | None = None, checkpoint_every: int = 1000,
          progress: bool = True, transform: Callable | None = None,
          callback: Callable | None = None, record_extra: dict | None = None) -> TrainResult:
    """Train a model with Eq. 3 and return it with its metrics, history and results record.

    Args:
        config: what to train (see :class:`TrainConfig`).
        data: an already loaded dataset (else loaded from ``config``).
        out_dir: where to write the results record (None: not written).
        checkpoint_dir: where to keep ``checkpoint.pt``; an existing checkpoint of the
            same config is resumed.
        transform: ``transform(model, x, y) -> x`` applied to each training batch
            (e.g. PGD adversarial examples for Madry-style training, App. E).
        record_extra: entries added to the config of the results record (e.g. ``substitute_for``).
        callback: ``callback(step, model)`` called with the number of steps done, once
            before the first step (``step`` = 0, or the step resumed from) and after every
            step; for measurements during training (Section 3.1). It must leave the model's
            mode, parameters and the global random state as it found them.

    ``out_dir`` and ``checkpoint_dir`` are checked (created, writable) before anything runs;
    the checkpoint folder is locked while the run uses it (:func:`snnl.checkpointing.use_folder`:
    a second live process on it is refused, unless its checkpoint is finished and only read).
    ``batch_size`` may not exceed the training set.

    One record per run: with a checkpoint folder, the record's file name is kept there
    (``record.json``); a finished run started again returns that record and writes none.
    A stop request (:func:`snnl.checkpointing.request_stop`, e.g. a sweep worker's SIGTERM)
    saves a checkpoint at the next step and raises :class:`~snnl.checkpointing.Preempted`.
    """
    if out_dir is not None:
        check_folder(out_dir, "output folder")
    if checkpoint_dir is None:
        return _train(config, data, out_dir, None, checkpoint_every, progress, transform, callback, record_extra)
    check_folder(checkpoint_dir, "checkpoint folder")
    with use_folder(checkpoint_dir, config.steps):  # a second live run on it is refused
        return _train(config, data, out_dir, checkpoint_dir, checkpoint_every, progress, transform, callback,
                      record_extra)


def _train(config, data, out_dir, checkpoint_dir, checkpoint_every, progress, transform, callback,
           record_extra=None) -> TrainResult:
    device = resolve_device(config.device)
    data = data if data is not None else load_for(config)
    if data.x_train is None:
        raise ValueError(f"{data.name} has no training split")
    check_dataset(data)
    if config.batch_size > len(data.x_train):
        raise ValueError(f"batch_size {config.batch_size} is larger than the training set "
                         f"({len(data.x_train)} points); use a smaller batch or more data")
    seed_everything(config.seed)
    model = build_model(config.model, data.shape, data.num_classes).to(device)
    layers = config.layers or tuple(model.layer_names)
    unknown = [n for n in layers if n not in model.layer_names]
    if unknown:
        raise ValueError(f"unknown layer(s) {unknown} for {config.model}; choose from {list(model.layer_names)}")
    snnl = nn.ModuleDict({n: SoftNearestNeighborLoss(config.temperature, config.distance, config.learn_temperature,
                                                     reference=config.regularizer == "snnl-reference")
                          for n in layers}).to(device)
    if config.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: config.lr_decay ** (s / config.decay_steps))
    gen = torch.Generator().manual_seed(config.seed)
    x_tr, y_tr = data.x_train.to(device), data.y_train.to(device)
    x_te, y_te = data.x_test, data.y_test
    n_eval = min(config.eval_train_size, len(x_tr))
    eval_idx = torch.randperm(len(x_tr), generator=torch.Generator().manual_seed(config.seed + 1))[:n_eval]
    history = {"step": [], "ce": [], "snnl": {n: [] for n in layers}, "temperature": {n: [] for n in layers},
               "scale": {n: [] for n in layers},
               "eval_step": [], "train_ce": [], "train_accuracy": [], "test_ce": [], "test_accuracy": []}
    step, perm, pos = 0, torch.randperm(len(x_tr), generator=gen), 0

    ckpt = checkpoint_file(checkpoint_dir)
    if (state := resume_state(ckpt, asdict(config), device)) is not None:
        try:
            model.load_state_dict(state["model"]); opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"]); snnl.load_state_dict(state["snnl"])
            gen.set_state(state["gen"].cpu()); torch.set_rng_state(state["torch_rng"].cpu())
            step, perm, pos, history = int(state["step"]), state["perm"].cpu(), int(state["pos"]), state["history"]
            history.setdefault("scale", {n: [] for n in layers})  # checkpoints written before it was recorded
        except (KeyError, AttributeError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"cannot resume from checkpoint {ckpt}: {type(e).__name__}: "
                                  f"{' '.join(str(e).split())[:300]}; remove it or use another folder") from None
    resumed_from = step  # > 0: the record's wall time and commit are of this process, from that step on
    if step >= config.steps and (done := written_record(checkpoint_dir, out_dir)) is not None:
        return TrainResult(model, config, done["metrics"], done.get("history", history), done)  # no second record

    def checkpoint():
        if ckpt is not None:
            save_checkpoint(ckpt, {"config": asdict(config), "model": model.state_dict(), "opt": opt.state_dict(),
                                   "sched": sched.state_dict(), "snnl": snnl.state_dict(), "gen": gen.get_state(),
                                   "torch_rng": torch.get_rng_state(), "step": step, "perm": perm, "pos": pos,
                                   "history": history})

    def do_eval():
        tr = evaluate(model, x_tr[eval_idx], y_tr[eval_idx])
        te = evaluate(model, x_te, y_te)
        history["eval_step"].append(step)
        for k, v in (("train_ce", tr["ce"]), ("train_accuracy", tr["accuracy"]),
                     ("test_ce", te["ce"]), ("test_accuracy", te["accuracy"])):
            history[k].append(v)

    run = Run(config.experiment, config.profile, data.name, config.seed, {**asdict(config), **(record_extra or {})},
              device_name(device))
    model.train()
    bar = tqdm(total=config.steps, initial=step, disable=not progress, desc=f"{config.model} a={config.alpha:g}")
    if callback is not None:
        callback(step, model)
    while step < config.steps:
        if pos + config.batch_size > len(perm):
            perm, pos = torch.randperm(len(x_tr), generator=gen), 0
        idx = perm[pos:pos + config.batch_size].to(device)
        pos += config.batch_size
        xb, yb = x_tr[idx], y_tr[idx]
        if transform is not None:
            xb = transform(model, xb, yb)
        logits, hidden = model(xb)
        ce = F.cross_entropy(logits, yb)
        reg, bad = {}, None
        if config.alpha != 0 or step % config.log_every == 0:
            if config.regularizer != "triplet":  # all layers in one pass; the losses check their inputs
                try:
                    reg = layerwise_snnl(snnl, hidden, yb)
                except NonFiniteEmbeddings as err:
                    bad = ", ".join(map(str, err.layers))
            else:
                for n in layers:
                    try:
                        reg[n] = triplet_loss(hidden[n], yb, generator=gen)
                    except NonFiniteEmbeddings:
                        bad = n
                        break
        loss = ce - config.alpha * sum(reg.values()) if config.alpha != 0 and bad is None else ce
        if bad is not None or not torch.isfinite(loss):
            bar.close()
            what = (f"non-finite activations in layer {bad}" if bad is not None else
                    f"regulariser {[round(float(v), 4) for v in reg.values()]}")
            raise diverged("loss", step, ckpt, f" (cross-entropy {ce.item():.4g}, {what}; "
                                               f"alpha {config.alpha:g}, lr {config.lr:g})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % config.log_every == 0:
            history["step"].append(step)
            history["ce"].append(ce.item())
            for n in layers:
                history["snnl"][n].append(reg[n].item())
                history["temperature"][n].append(snnl[n].temperature)
                history["scale"][n].append(activation_scale(hidden[n], snnl[n].temperature, config.distance))
            bar.set_postfix(ce=f"{ce.item():.3f}", snnl=f"{sum(v.item() for v in reg.values()):.3f}")
        step += 1
        bar.update(1)
        if callback is not None:
            callback(step, model)
        if stop_requested():  # preempted: keep this step's state, give the run back
            checkpoint()
            bar.close()
            raise Preempted(f"stopped at step {step} of {config.steps}"
                            + (f"; checkpoint {ckpt}" if ckpt is not None else " (no checkpoint folder)"))
        if step % config.eval_every == 0 or step == config.steps:
            do_eval()
        if ckpt is not None and (step % checkpoint_every == 0 or step == config.steps):
            checkpoint()
    bar.close()
    if not history["eval_step"] or history["eval_step"][-1] != step:
        do_eval()
    metrics = {"test_accuracy": history["test_accuracy"][-1], "test_ce": history["test_ce"][-1],
               "train_accuracy": history["train_accuracy"][-1], "train_ce": history["train_ce"][-1],
               "final_temperature": {n: snnl[n].temperature for n in layers}}
    record = run.finish(metrics, out_dir, history={**history, "resumed_from_step": resumed_from} if resumed_from
                        else history)
    note_record(checkpoint_dir, record)
    return TrainResult(model, config, metrics, history, record)
