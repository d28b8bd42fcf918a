"""GANs and the soft nearest neighbor loss (paper Section 3.2, Appendices D and I).

Three training objectives share one loop, :func:`train_gan`:

* ``"gan"`` — a GAN with a one-logit discriminator and the non-saturating loss
  (Goodfellow et al. 2014). Throughout training we *measure* the entanglement
  (Eq. 2) of a batch of equal parts real and generated images, labelled real /
  synthetic, in pixel space (Figs. 4, 5, 17): :func:`real_fake_entanglement`.
* ``"snnl"`` — no discriminator: the generator maximises the soft nearest
  neighbor loss of real and generated batches in pixel space (Fig. 6). The
  temperature follows the authors' scheme (``T = T0 / t``, one step on ``t``
  per step towards the minimum over T), so the generator maximises entanglement.
* ``"snnl-learned"`` — Appendix I: a discriminator with an ``embed_dim``
  (10) dimensional output *minimises* the soft nearest neighbor loss of real vs
  synthetic in that space; the generator maximises it.

Two architectures (``variant``): ``"fc"`` (fully connected) and ``"dcgan"``
(convolutional, Radford et al. 2016). Generators end in a sigmoid, as images
are in [0, 1]. Runs are seeded (same seed, same numbers on CPU), checkpointed
and resumable (a killed run resumes to the same result).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from snnl.checkpointing import CheckpointError, checkpoint_file, diverged, resume_state, save_checkpoint, use_folder
from snnl.data import Dataset, check_dataset, load_dataset
from snnl.gan_nets import VARIANTS, build_gan, check_choice  # noqa: F401 (build_gan, VARIANTS: re-exported)
from snnl.losses import DISTANCES, Entanglement, SoftNearestNeighborLoss, entanglement
from snnl.results import Run, check_folder, check_name, device_name, resolve_device, seed_everything

OBJECTIVES = ("gan", "snnl", "snnl-learned")
GENERATOR_LOSSES = ("maximize", "nonsaturating")


# ----------------------------------------------------------------------------------------------
# the measurement of Figs. 4, 5, 17
def real_fake_entanglement(real: torch.Tensor, fake: torch.Tensor, distance: str = "euclidean") -> Entanglement:
    """Entanglement (Eq. 2) of real vs synthetic data in pixel space (Section 3.2), as an :class:`Entanglement`.

    ``real`` and ``fake`` are (N, ...) batches of the same shape; they are flattened and
    labelled 0 (real) and 1 (synthetic). High (up to about log 2 for equal parts) =
    entangled; near 0 = separable:

    >>> import torch
    >>> real = torch.rand(100, 1, 8, 8)
    >>> real_fake_entanglement(real, torch.rand(100, 1, 8, 8)).value > 0.5           # alike: entangled
    True
    >>> real_fake_entanglement(real, torch.zeros(100, 1, 8, 8)).value < 0.01         # apart: separable
    True
    >>> generator, _ = build_gan("fc", shape=(1, 8, 8))
    >>> e = real_fake_entanglement(real, generator(torch.randn(100, 64)).detach())
    """
    if real.dim() < 2 or real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"real and fake must be batches of the same shape, got {tuple(real.shape)} "
                         f"and {tuple(fake.shape)}")
    if len(real) < 2 or len(fake) < 2:
        raise ValueError(f"need at least 2 real and 2 fake points, got {len(real)} and {len(fake)}")
    x = torch.cat([real.flatten(1), fake.flatten(1).to(real)])
    y = torch.cat([torch.zeros(len(real), dtype=torch.long), torch.ones(len(fake), dtype=torch.long)])
    return entanglement(x, y.to(x.device), distance=distance)


@torch.no_grad()
def nearest_neighbour_accuracy(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Leave-one-out 1-nearest-neighbour two-sample test (pixel space, Euclidean): the share of
    points whose nearest other point carries their label (real / synthetic). 1 = separable,
    about 0.5 = indistinguishable. As T -> 0 the soft nearest neighbor loss only sees nearest
    neighbours, so an accuracy of 1 means an entanglement (min over T) of about 0."""
    x = torch.cat([real.flatten(1), fake.flatten(1).to(real)]).double()
    y = torch.cat([torch.zeros(len(real)), torch.ones(len(fake))]).to(x.device)
    d = torch.cdist(x, x)
    d.fill_diagonal_(float("inf"))
    return float((y[d.argmin(1)] == y).double().mean())


def log_other_class_probability(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float,
                                distance: str = "euclidean") -> torch.Tensor:
    """Per point ``log P(other class)``: log of the probability, under Eq. 1's sampling of
    neighbours (``exp(-d / T)``, self excluded), of picking a neighbour of another class.

    Eq. 1 is ``-mean(log(1 - P(other)))``. Minimising ``-mean(log P(other))`` moves the same
    way, with gradients that do not vanish when classes are separated: the soft nearest
    neighbor analogue of the non-saturating GAN generator loss.
    """
    x = embeddings.flatten(1).float()
    if distance == "cosine":
        xn = F.normalize(x, dim=1)
        d = 1.0 - xn @ xn.T
    else:
        d = torch.cdist(x, x).pow(2)
    eye = torch.eye(len(x), dtype=torch.bool, device=x.device)
    logits = (-d / temperature).masked_fill(eye, float("-inf"))
    other = labels[:, None] != labels[None, :]
    return torch.logsumexp(logits.masked_fill(~other, float("-inf")), 1) - torch.logsumexp(logits, 1)


# ----------------------------------------------------------------------------------------------
@dataclass
class GANConfig:
    """What :func:`train_gan` trains: the objective, the networks, the optimiser and the measurements.

    ``objective``: ``"gan"`` (a GAN, whose real/synthetic entanglement is measured: Figs. 4, 5,
    17), ``"snnl"`` (no discriminator: the generator maximises the soft nearest neighbor loss of
    real and synthetic images, Fig. 6) or ``"snnl-learned"`` (in a learned space, App. I):

    >>> config = GANConfig(objective="snnl", variant="fc", steps=2, batch_size=16, n_train=64, measure_every=2,
    ...                    measure_size=32, device="cpu")
    >>> result = train_gan(config, progress=False)
    >>> result.discriminator is None, result.history["measure_step"]
    (True, [0, 2])
    """

    objective: str = "gan"  # gan (Figs. 4, 5, 17), snnl (Fig. 6: no discriminator) or snnl-learned (App. I)
    variant: str = "dcgan"  # architecture: fc or dcgan
    dataset: str = "digits"  # one of snnl.data.DATASETS
    z_dim: int = 64  # input noise dimension
    width: int | None = None  # network width (None: 128 for fc, 32 for dcgan)
    lr: float = 2e-4  # Adam learning rate (DCGAN's default)
    beta1: float = 0.5  # Adam beta1 (DCGAN's default)
    batch_size: int = 64  # real images per step (and as many generated)
    steps: int = 1000  # generator steps
    temperature: float = 100.0  # initial temperature T0 of the soft nearest neighbor loss (snnl objectives)
    learn_temperature: bool = True  # T = T0 / t, one step on t per step towards the minimum over T
    distance: str = "euclidean"  # distance of the soft nearest neighbor loss
    g_loss: str = "maximize"  # snnl objectives: maximize (-SNNL, the paper) or nonsaturating (-log P(other))
    embed_dim: int = 10  # discriminator output dimension for snnl-learned (the paper: 10)
    log_every: int = 10  # steps between records of the losses and the temperature
    measure_every: int = 100  # steps between entanglement measurements (and at step 0 and the end)
    measure_size: int = 256  # real and as many generated images per measurement
    snapshot_steps: tuple[int, ...] = ()  # steps at which to keep the samples of the fixed noise
    n_samples: int = 64  # generated images per snapshot (fixed noise)
    n_train: int | None = None  # training subset (None = all)
    seed: int = 0
    device: str = "auto"
    profile: str = "small"  # small or paper (recorded)
    experiment: str = "gan"  # name of the results record

    def __post_init__(self):
        check_choice("objective", self.objective, OBJECTIVES)
        check_choice("variant", self.variant, VARIANTS)
        check_choice("distance", self.distance, DISTANCES)
        check_choice("generator loss", self.g_loss, GENERATOR_LOSSES)
        for name in ("z_dim", "batch_size", "steps", "log_every", "measure_every", "embed_dim", "n_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.measure_size < 2:
            raise ValueError(f"measure_size must be >= 2, got {self.measure_size}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be finite and > 0, got {self.temperature}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be finite and > 0, got {self.lr}")
        if self.width is not None and self.width < 1:
            raise ValueError(f"width must be >= 1 (or None), got {self.width}")
        if self.n_train is not None and self.n_train < 1:
            raise ValueError(f"n_train must be >= 1 (or None), got {self.n_train}")
        check_name(self.experiment, "experiment")
        self.snapshot_steps = tuple(sorted(set(int(s) for s in self.snapshot_steps)))
        bad = [s for s in self.snapshot_steps if not 0 <= s <= self.steps]
        if bad:
            raise ValueError(f"snapshot_steps must lie in [0, steps={self.steps}], got {bad}")


@dataclass
class GANResult:
    """What :func:`train_gan` returns: the networks, config, metrics, history, samples and record.

    ``metrics``: the real/synthetic entanglement (:func:`real_fake_entanglement`) and the
    1-nearest-neighbour two-sample accuracy at the start and the end, and the final temperature;
    ``eval_real`` and ``eval_noise`` are the data of those measurements:

    >>> config = GANConfig(variant="fc", steps=2, batch_size=16, n_train=64, measure_every=2, measure_size=32,
    ...                    device="cpu")
    >>> result = train_gan(config, progress=False)
    >>> isinstance(result, GANResult), result.eval_real.shape
    (True, torch.Size([32, 1, 28, 28]))
    >>> fake = result.generator.eval()(result.eval_noise)
    >>> abs(real_fake_entanglement(result.eval_real, fake).value - result.metrics["entanglement_end"]) < 1e-6
    True
    """

    generator: nn.Module
    discriminator: nn.Module | None
    config: GANConfig
    metrics: dict
    history: dict  # step, g_loss, d_loss, temperature; measure_step, entanglement(_temperature), nn_accuracy
    snapshots: dict = field(default_factory=dict)  # step -> generated images of the fixed noise (CPU)
    eval_real: torch.Tensor | None = None  # the real images of the measurements
    eval_noise: torch.Tensor | None = None  # the noise of the measurements (generated = G(eval_noise))
    record: dict = field(default_factory=dict)


@torch.no_grad()
def sample(generator: nn.Module, z: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Generated images of the noise ``z``, in eval mode (mode restored), on the CPU."""
    was = generator.training
    generator.eval()
    dev = next(generator.parameters()).device
    out = torch.cat([generator(z[i:i + batch_size].to(dev)).cpu() for i in range(0, len(z), batch_size)])
    generator.train(was)
    return out


def _measure(generator, real, z, distance="euclidean") -> tuple[Entanglement, float]:
    fake = sample(generator, z)
    return real_fake_entanglement(real, fake, distance), nearest_neighbour_accuracy(real, fake)


def train_gan(config: GANConfig, data: Dataset | None = None, out_dir: str | os.PathLike | None = None,
              checkpoint_dir: str | os.PathLike | None = None, checkpoint_every: int = 500,
              progress: bool = True) -> GANResult:
    """Train a generator with ``config.objective`` and measure its real/synthetic entanglement over training.

    Args:
        config: see :class:`GANConfig`.
        data: an already loaded dataset (else ``load_dataset(config.dataset)``).
        out_dir: where to write a results record (None: not written).
        checkpoint_dir: where to keep ``checkpoint.pt``; an existing one of the same config is resumed.
        checkpoint_every: steps between checkpoints (and at the end).

    ``out_dir`` and ``checkpoint_dir`` are checked before anything runs, and the checkpoint
    folder is locked while the run uses it, as in ``snnl.train.train()``. On a dataset of one's
    own (a :class:`Dataset`), with a results record:

    >>> import torch
    >>> data = Dataset("blobs", torch.rand(64, 1, 8, 8), torch.zeros(64, dtype=torch.long),
    ...                torch.rand(16, 1, 8, 8), torch.zeros(16, dtype=torch.long), ["blob"])
    >>> config = GANConfig(variant="fc", steps=3, batch_size=16, measure_every=3, measure_size=16, device="cpu")
    >>> result = train_gan(config, data=data, out_dir="records", progress=False)
    >>> sorted(result.metrics)[:2], read_record(result.record["path"])["dataset"]
    (['entanglement_end', 'entanglement_max'], 'blobs')
    """
    if out_dir is not None:
        check_folder(out_dir, "output folder")
    if checkpoint_dir is None:
        return _train_gan(config, data, out_dir, None, checkpoint_every, progress)
    check_folder(checkpoint_dir, "checkpoint folder")
    with use_folder(checkpoint_dir, config.steps):  # a second live run on it is refused
        return _train_gan(config, data, out_dir, checkpoint_dir, checkpoint_every, progress)


def _train_gan(config, data, out_dir, checkpoint_dir, checkpoint_every, progress) -> GANResult:
    device = resolve_device(config.device)
    data = data if data is not None else load_dataset(config.dataset, n_train=config.n_train, seed=config.seed)
    if data.x_train is None:
        raise ValueError(f"{data.name} has no training split")
    check_dataset(data)
    x_tr = data.x_train if config.n_train is None else data.x_train[:config.n_train]
    seed_everything(config.seed)
    obj = config.objective
    out_dim = config.embed_dim if obj == "snnl-learned" else 1
    G, D = build_gan(config.variant, data.shape, config.z_dim, config.width, out_dim)
    G, D = G.to(device), (D.to(device) if obj != "snnl" else None)
    snnl = SoftNearestNeighborLoss(config.temperature, config.distance, config.learn_temperature).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=config.lr, betas=(config.beta1, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=config.lr, betas=(config.beta1, 0.999)) if D is not None else None
    gen = torch.Generator().manual_seed(config.seed)
    fixed = torch.Generator().manual_seed(config.seed + 1)
    eval_real = x_tr[torch.randperm(len(x_tr), generator=fixed)[:config.measure_size]]
    eval_noise = torch.randn(len(eval_real), config.z_dim, generator=fixed)
    snap_noise = torch.randn(config.n_samples, config.z_dim, generator=fixed)
    x_dev = x_tr.to(device)
    labels = torch.cat([torch.zeros(config.batch_size), torch.ones(config.batch_size)]).long().to(device)
    history = {"step": [], "g_loss": [], "d_loss": [], "temperature": [],
               "measure_step": [], "entanglement": [], "entanglement_temperature": [], "nn_accuracy": []}
    snapshots: dict[int, torch.Tensor] = {}
    step = 0

    def g_objective(emb, loss_module):
        if config.g_loss == "maximize":
            return -loss_module(emb, labels)
        if loss_module.training and loss_module.learn_temperature:
            loss_module(emb.detach(), labels)  # the temperature step only
        return -log_other_class_probability(emb, labels, loss_module.temperature, config.distance).mean()

    ckpt = checkpoint_file(checkpoint_dir)
    if (state := resume_state(ckpt, asdict(config), device)) is not None:
        try:
            G.load_state_dict(state["G"]); opt_g.load_state_dict(state["opt_g"]); snnl.load_state_dict(state["snnl"])
            if D is not None:
                D.load_state_dict(state["D"]); opt_d.load_state_dict(state["opt_d"])
            gen.set_state(state["gen"].cpu()); torch.set_rng_state(state["torch_rng"].cpu())
            step, history, snapshots = int(state["step"]), state["history"], state["snapshots"]
        except (KeyError, AttributeError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"cannot resume from checkpoint {ckpt}: {type(e).__name__}: "
                                  f"{' '.join(str(e).split())[:300]}; remove it or use another folder") from None

    def checkpoint():
        if ckpt is not None:
            save_checkpoint(ckpt, {"config": asdict(config), "G": G.state_dict(), "opt_g": opt_g.state_dict(),
                                   "D": D.state_dict() if D is not None else None,
                                   "opt_d": opt_d.state_dict() if D is not None else None, "snnl": snnl.state_dict(),
                                   "gen": gen.get_state(), "torch_rng": torch.get_rng_state(), "step": step,
                                   "history": history, "snapshots": snapshots})

    def observe():
        if step % config.measure_every == 0 or step == config.steps:
            e, acc = _measure(G, eval_real, eval_noise)
            history["measure_step"].append(step)
            history["entanglement"].append(e.value)
            history["entanglement_temperature"].append(e.temperature)
            history["nn_accuracy"].append(acc)
        if step in config.snapshot_steps:
            snapshots[step] = sample(G, snap_noise)

    run = Run(config.experiment, config.profile, data.name, config.seed, asdict(config), device_name(device))
    if step == 0 and not history["measure_step"]:
        observe()
    G.train()
    bar = tqdm(total=config.steps, initial=step, disable=not progress, desc=f"{obj} {config.variant}")
    while step < config.steps:
        idx = torch.randint(len(x_tr), (config.batch_size,), generator=gen).to(device)
        real = x_dev[idx]
        z = torch.randn(config.batch_size, config.z_dim, generator=gen).to(device)
        fake = G(z)
        d_loss = torch.zeros(())
        if obj == "gan":  # discriminator step, then the non-saturating generator loss
            d_real, d_fake = D(real).squeeze(1), D(fake.detach()).squeeze(1)
            d_loss = (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                      + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
            opt_d.zero_grad(set_to_none=True); d_loss.backward(); opt_d.step()
            d_out = D(fake).squeeze(1)
            g_loss = F.binary_cross_entropy_with_logits(d_out, torch.ones_like(d_out))
        elif obj == "snnl":  # the generator maximises the SNNL of real vs synthetic pixels
            g_loss = g_objective(torch.cat([real, fake]).flatten(1), snnl)
        else:  # snnl-learned: D minimises the SNNL in its learned space, G maximises it
            d_loss = snnl(torch.cat([D(real), D(fake.detach())]), labels)
            opt_d.zero_grad(set_to_none=True); d_loss.backward(); opt_d.step()
            snnl.eval()  # one temperature step per training step (taken in the D step)
            g_loss = g_objective(torch.cat([D(real), D(fake)]), snnl)
            snnl.train()
        if not torch.isfinite(g_loss):
            bar.close()
            raise diverged("generator loss", step, ckpt)
        opt_g.zero_grad(set_to_none=True); g_loss.backward(); opt_g.step()
        if step % config.log_every == 0:
            history["step"].append(step)
            history["g_loss"].append(g_loss.item())
            history["d_loss"].append(d_loss.item())
            history["temperature"].append(snnl.temperature)
        step += 1
        bar.update(1)
        observe()
        if step % config.measure_every == 0:
            bar.set_postfix(entanglement=f"{history['entanglement'][-1]:.3f}", g=f"{g_loss.item():.3f}")
        if ckpt is not None and (step % checkpoint_every == 0 or step == config.steps):
            checkpoint()
    bar.close()
    ent = history["entanglement"]
    acc = history["nn_accuracy"]
    metrics = {"entanglement_start": ent[0], "entanglement_end": ent[-1], "entanglement_max": max(ent),
               "nn_accuracy_start": acc[0], "nn_accuracy_end": acc[-1], "final_temperature": snnl.temperature}
    result = GANResult(G, D, config, metrics, history, snapshots, eval_real, eval_noise)
    if out_dir is not None:
        result.record = run.finish(metrics, out_dir, history=history)
    return result
