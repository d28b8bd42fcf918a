"""The models of the Deep k-NN calibration experiments (paper Section 5; Figs. 9, 18-20 of
Appendix F; Fig. 14 of Appendix B): their configuration, roles and training.

Four roles share one architecture: the victims ``baseline`` (cross-entropy, ``alpha = 0``) and
the regularised model (Eq. 3 with ``alpha > 0`` *maximising* the soft nearest neighbor loss,
``entangled``; or, for Appendix B, the triplet loss, ``triplet``), and for the transfer attacks
a second model of each (seed + 1): ``baseline_source`` and ``<name>_source``. The experiment
itself is :mod:`snnl.experiments.adversarial.calibration`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from snnl.experiments.common import PAPER_RECIPE, config_from_profile
from snnl.results import PROFILES
from snnl.train import TrainConfig, train

ATTACKS = ("fgsm", "bim", "bim_source", "bim_zero")  # the four panels of Fig. 9
TITLES = {"fgsm": "FGSM, white box", "bim": "BIM, white box",
          "bim_source": "BIM, transfer (source knowledge)", "bim_zero": "BIM, transfer (zero knowledge)"}


@dataclass
class CalibrationConfig:
    dataset: str = "digits"  # digits (small); mnist, fashion-mnist (Figs. 18, 19)
    profile: str = "small"  # small or paper (written in the record)
    model: str = "cnn"  # Table 1's CNN
    regularizer: str = "snnl"  # snnl (Figs. 9, 18, 19) or triplet (Appendix B, Fig. 14)
    alpha: float | None = None  # regulariser weight, > 0 maximises it; None: 10 (snnl), 1e-4 (triplet)
    steps: int = 200  # training steps of the victims (paper: 14,000)
    source_steps: int | None = None  # training steps of the transfer-source models (None = steps)
    batch_size: int = 128  # paper: 256
    lr: float = 1e-3  # Adam learning rate (paper: 1e-4)
    size: int | None = 14  # resize images (small: 14x14 digits, 4x less compute); None = native 28x28
    train_experiment: str = "table1"  # experiment in the victims' TrainConfig (reuses Table 1 models)
    eps: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3)  # L-inf budgets, one point each
    attacks: tuple[str, ...] = ATTACKS  # subset of ATTACKS
    bim_steps: int = 10  # BIM steps, the same for every eps (paper: 1,000)
    bim_alpha: float = 0.05  # BIM step size, the same for every eps
    n_test: int = 300  # attacked test points
    n_calibration: int = 200  # DkNN calibration points (test split, disjoint from the attacked ones)
    n_fit: int | None = None  # training points the DkNN indexes (None = all)
    k: int = 75  # DkNN neighbours per layer (the authors' code)
    layers: tuple[str, ...] | None = None  # DkNN layers (None = every hidden layer and the logits)
    seed: int = 0  # victims; source models use seed + 1; also the test/calibration split
    device: str = "auto"

    def __post_init__(self):
        self.eps, self.attacks = tuple(float(e) for e in self.eps), tuple(self.attacks)
        self.layers = None if self.layers is None else tuple(self.layers)
        if self.regularizer not in ("snnl", "triplet"):
            raise ValueError(f"unknown regularizer {self.regularizer!r}; choose snnl or triplet")
        if self.alpha is None:
            self.alpha = 10.0 if self.regularizer == "snnl" else 1e-4
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0 (the regularised model maximises its loss), got {self.alpha}")
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; choose one of: {', '.join(PROFILES)}")
        if len(self.eps) < 2 or any(not (0 <= e <= 1) for e in self.eps) or list(self.eps) != sorted(set(self.eps)):
            raise ValueError(f"eps must be at least 2 increasing values in [0, 1], got {self.eps}")
        bad = [a for a in self.attacks if a not in ATTACKS]
        if bad or not self.attacks:
            raise ValueError(f"unknown attack(s) {bad}; choose from {', '.join(ATTACKS)}")
        for name in ("steps", "batch_size", "bim_steps", "n_test", "n_calibration", "k", "bim_alpha"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    @property
    def name(self) -> str:
        """The regularised victim's role, ``entangled`` (SNNL) or ``triplet``."""
        return "entangled" if self.regularizer == "snnl" else "triplet"


SETTINGS = {  # per profile (PROFILES)
    "small": {},
    "paper": dict(PAPER_RECIPE, source_steps=5000, size=None, bim_steps=50, bim_alpha=0.01,
                  eps=(0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3), n_test=1000, n_calibration=1000, dataset="mnist"),
}


def make_config(profile: str = "small", **overrides) -> CalibrationConfig:
    """The small defaults, or the paper profile (the paper's CNN training; fewer BIM steps,
    1,000 attacked points and source models trained ``source_steps``), then ``overrides``."""
    return config_from_profile(CalibrationConfig, SETTINGS, profile, **overrides)


def model_configs(config: CalibrationConfig) -> dict[str, TrainConfig]:
    """TrainConfig of each role: the victims ``baseline`` and ``config.name`` (seed), and the
    transfer sources ``baseline_source`` and ``<name>_source`` (seed + 1, ``source_steps``)."""
    def tc(alpha, seed, steps, experiment):
        return TrainConfig(dataset=config.dataset, model=config.model, alpha=float(alpha),
                           regularizer=config.regularizer if alpha else "snnl", steps=steps,
                           batch_size=config.batch_size, lr=config.lr, size=config.size, seed=seed,
                           device=config.device, profile=config.profile, experiment=experiment)
    src = config.source_steps or config.steps
    victim_exp = config.train_experiment if config.regularizer == "snnl" else "dknn_calibration_model"
    return {"baseline": tc(0, config.seed, config.steps, config.train_experiment),
            config.name: tc(config.alpha, config.seed, config.steps, victim_exp),
            "baseline_source": tc(0, config.seed + 1, src, "dknn_calibration_source"),
            f"{config.name}_source": tc(config.alpha, config.seed + 1, src, "dknn_calibration_source")}


def checkpoint_name(tc: TrainConfig) -> str:
    """Default checkpoint folder name of a model: ``cal_<dataset>_<reg>_a<alpha>_s<seed>_<steps>``."""
    return f"cal_{tc.dataset}_{tc.regularizer}_a{tc.alpha:g}_s{tc.seed}_{tc.steps}"


def roles_needed(config: CalibrationConfig, transfer: bool = False) -> list[str]:
    """The models a sweep of ``config.attacks`` (and, with ``transfer``, the matrix) needs."""
    transfer = transfer or "bim_source" in config.attacks
    return ["baseline", config.name] + ["baseline_source"] * (transfer or "bim_zero" in config.attacks) \
        + [f"{config.name}_source"] * transfer


def train_models(config: CalibrationConfig, roles=None, checkpoint_root=None, checkpoint_dirs=None,
                 known=None, progress: bool = True) -> dict:
    """Train (or load from checkpoints) the models of ``roles`` (default: those the attacks need).

    ``checkpoint_dirs`` maps a role to its folder (e.g. a finished Table 1 run), others go to
    ``checkpoint_root/checkpoint_name(...)`` (no checkpoints when both are None). ``known``: a
    dict of :class:`snnl.train.TrainResult` to reuse when a role's TrainConfig equals one.
    Returns role -> TrainResult.
    """
    configs, dirs, out = model_configs(config), dict(checkpoint_dirs or {}), {}
    pool = list((known or {}).values())
    for role in roles or roles_needed(config):
        tc = configs[role]
        hit = next((r for r in pool if asdict(r.config) == asdict(tc)), None)
        if hit is None:
            ckpt = dirs.get(role) or (Path(checkpoint_root) / checkpoint_name(tc) if checkpoint_root else None)
            hit = train(tc, checkpoint_dir=ckpt, progress=progress)
            pool.append(hit)
        out[role] = hit
    return out

