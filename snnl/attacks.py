"""White-box L-inf attacks on image classifiers: FGSM, BIM, PGD (SPEC section 4).

The paper crafts adversarial examples with FGSM and BIM to test the calibration
of Deep k-NN credibility (Section 5.2, Fig. 9, Appendix F), transfers BIM
examples between models (Fig. 20), and adversarially trains with PGD
(Appendix E, Table 2). The interface follows torchattacks: one class per
attack, ``attack(images, labels) -> adversarial images``.

Conventions:

* Images are in [0, 1]; any normalisation lives inside the model. The result
  stays in [0, 1] and within the L-inf ball of radius ``eps`` around the input
  (up to the rounding of ``x +- eps`` in the input's dtype). ``eps`` and the step
  ``alpha`` are on that scale: at most 1 (``eps=8`` is refused: the 0-255 budget
  8 is ``eps=8/255``).
* The loss is the cross-entropy of the model's logits (summed over the batch,
  so each example's gradient is its own). A model may return plain logits,
  ``(logits, hidden)``, a dict with a ``"logits"`` key or an object with a
  ``.logits`` attribute (see :func:`logits_of`).
* The model runs in eval mode during the attack (``eval_mode=True``); every
  submodule's train/eval flag and every parameter's ``requires_grad`` are
  restored afterwards, and no gradient is accumulated into parameters' ``.grad``.
* ``targeted=True``: ``labels`` are the target classes and the attack steps
  *down* their cross-entropy.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

from snnl.models import logits_of

__all__ = ["Attack", "FGSM", "BIM", "PGD", "logits_of"]


def _check_eps(name: str, value: float, positive: bool = False) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'} and finite, got {value}")
    if value > 1:  # a budget on the 0-255 scale: every pixel of a [0, 1] image would move to 0 or 1
        raise ValueError(f"{name}={value:g} is larger than the [0, 1] range of the images; on the 0-255 scale "
                         f"{value:g} is {name}={value:g}/255 = {value / 255:.4g}")
    return value


class Attack:
    """The base class of the attacks: argument checks, the model's state, the gradient of the loss.

    ``attack(images, labels)`` checks its inputs, runs ``perturb(images, labels)`` with the
    model in eval mode (``eval_mode``) and its parameters frozen, and restores both; a subclass
    writes ``perturb``, with the helpers ``_grad`` (the loss's gradient) and ``_project``:

    >>> import torch, torch.nn as nn
    >>> class Noise(Attack):                                   # a random sign step, for comparison
    ...     def perturb(self, images, labels):
    ...         return self._project(images + self.eps * torch.randn_like(images).sign(), images)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    >>> x, y = torch.rand(4, 1, 28, 28), torch.arange(4)
    >>> [bool((a(x, y) - x).abs().max() <= 0.1 + 1e-6) for a in (Noise(model, 0.1), FGSM(model, 0.1))]
    [True, True]
    """

    def __init__(self, model: nn.Module, eps: float, targeted: bool = False, eval_mode: bool = True):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.eps = _check_eps("eps", eps)
        self.targeted = bool(targeted)
        self.eval_mode = bool(eval_mode)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        images, labels = self._check_inputs(images, labels)
        device = next((p.device for p in self.model.parameters()), images.device)
        with self._model_state(), torch.enable_grad():
            adv = self.perturb(images.detach().to(device), labels.to(device))
        return adv.detach().to(images.device)

    def perturb(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items() if k != "model" and not k.startswith("_"))
        return f"{type(self).__name__}({args})"

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _check_inputs(images, labels):
        if not isinstance(images, torch.Tensor) or not images.is_floating_point():
            raise TypeError("images must be a floating-point torch.Tensor")
        if not isinstance(labels, torch.Tensor):
            labels = torch.as_tensor(labels)
        if labels.dim() != 1 or labels.dtype.is_floating_point or len(labels) != len(images):
            raise ValueError(f"labels must be a 1-D integer tensor of length {len(images)}, "
                             f"got shape {tuple(labels.shape)} and dtype {labels.dtype}")
        if images.numel() and (torch.isnan(images).any() or images.min() < 0 or images.max() > 1):
            raise ValueError("images must lie in [0, 1] (normalise inside the model)")
        return images, labels.long()

    @contextmanager
    def _model_state(self):
        modes = [(m, m.training) for m in self.model.modules()]
        grads = [(p, p.requires_grad) for p in self.model.parameters()]
        try:
            if self.eval_mode:
                self.model.eval()
            for p, _ in grads:
                p.requires_grad_(False)
            yield
        finally:
            for m, mode in modes:
                m.training = mode
            for p, flag in grads:
                p.requires_grad_(flag)

    def _grad(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Gradient of the summed cross-entropy w.r.t. the input, negated when targeted,
        so that stepping along ``+sign`` is always the attack direction."""
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(logits_of(self.model(x)), labels, reduction="sum")
        (g,) = torch.autograd.grad(loss, x)
        return -g if self.targeted else g

    def _project(self, adv: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        adv = torch.minimum(torch.maximum(adv, images - self.eps), images + self.eps)
        return adv.clamp_(0.0, 1.0)


class FGSM(Attack):
    r"""Fast Gradient Sign Method: one step of size ``eps`` along the sign of the loss's gradient.

    Goodfellow et al., *Explaining and Harnessing Adversarial Examples* (arXiv:1412.6572).
    ``x' = clip_[0,1](x + eps * sign(grad_x CE(f(x), y)))``; targeted:
    ``x' = clip_[0,1](x - eps * sign(grad_x CE(f(x), t)))``.

    Arguments:
        model (nn.Module): classifier returning logits (or ``(logits, hidden)``).
        eps (float): maximum L-inf perturbation. (Default: 0.3, the MNIST setting)
        targeted (bool): ``labels`` are target classes. (Default: False)
        eval_mode (bool): run the model in eval mode during the attack. (Default: True)

    Shape:
        - images: (N, C, H, W) or any (N, ...) in [0, 1].
        - labels: (N,) integer class indices (targets when ``targeted``).
        - output: same shape and dtype as ``images``.

    Examples::
        >>> import torch
        >>> model = CNN()                                          # returns (logits, hidden)
        >>> images, labels = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
        >>> adv = FGSM(model, eps=8 / 255)(images, labels)          # the 0-255 budget 8, on [0, 1] images
        >>> bool((adv - images).abs().max() <= 8 / 255 + 1e-6)
        True
        >>> extract_features(model, adv, layers=["conv1"])[0].shape   # the hidden layer of the examples
        (8, 3136)
    """

    def __init__(self, model: nn.Module, eps: float = 0.3, targeted: bool = False, eval_mode: bool = True):
        super().__init__(model, eps, targeted, eval_mode)

    def perturb(self, images, labels):
        return (images + self.eps * self._grad(images, labels).sign()).clamp_(0.0, 1.0)


class BIM(Attack):
    r"""Basic Iterative Method: ``steps`` FGSM steps of size ``alpha``, each projected onto the eps-ball.

    Kurakin et al., *Adversarial Examples in the Physical World* (arXiv:1607.02533).
    Each step is projected onto the L-inf ball of radius ``eps`` around ``x`` and onto
    [0, 1]. As in the paper, the number of steps and the step size are fixed, whatever ``eps``.

    Arguments:
        model (nn.Module): classifier returning logits (or ``(logits, hidden)``).
        eps (float): maximum L-inf perturbation. (Default: 0.3)
        alpha (float): step size. (Default: 0.01)
        steps (int): number of steps. (Default: 40)
        targeted (bool): ``labels`` are target classes. (Default: False)
        eval_mode (bool): run the model in eval mode during the attack. (Default: True)

    Shape:
        - images: (N, C, H, W) or any (N, ...) in [0, 1].
        - labels: (N,) integer class indices (targets when ``targeted``).
        - output: same shape and dtype as ``images``.

    Examples::
        >>> import torch, torch.nn as nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
        >>> images, labels = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
        >>> adv = BIM(model, eps=0.1, alpha=0.01, steps=10)(images, labels)
        >>> adv.shape, logits_of(model(adv)).shape
        (torch.Size([8, 1, 28, 28]), torch.Size([8, 10]))
    """

    def __init__(self, model: nn.Module, eps: float = 0.3, alpha: float = 0.01, steps: int = 40,
                 targeted: bool = False, eval_mode: bool = True):
        super().__init__(model, eps, targeted, eval_mode)
        self.alpha = _check_eps("alpha", alpha)
        if isinstance(steps, bool) or int(steps) != steps or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps}")
        self.steps = int(steps)

    def _iterate(self, adv, images, labels):
        for _ in range(self.steps):
            adv = self._project(adv + self.alpha * self._grad(adv, labels).sign(), images)
        return adv

    def perturb(self, images, labels):
        return self._iterate(images.clone(), images, labels)


class PGD(BIM):
    r"""Projected Gradient Descent: BIM from a random start in the eps-ball, as in adversarial training.

    Madry et al., *Towards Deep Learning Models Resistant to Adversarial Attacks*
    (arXiv:1706.06083). BIM started from a uniform random point of the L-inf ball of
    radius ``eps`` (clipped to [0, 1]). Madry et al.'s MNIST setting, used for adversarial
    training in Appendix E: ``eps=0.3, alpha=0.01, steps=40``.

    Arguments:
        model (nn.Module): classifier returning logits (or ``(logits, hidden)``).
        eps (float): maximum L-inf perturbation. (Default: 0.3)
        alpha (float): step size. (Default: 0.01)
        steps (int): number of steps. (Default: 40)
        random_start (bool): start from a uniform random point of the eps-ball. (Default: True)
        targeted (bool): ``labels`` are target classes. (Default: False)
        generator (int | torch.Generator | None): randomness of the start. An int seeds a
            fresh generator at every call (the same start each call); a Generator is
            advanced; None uses torch's global generator. (Default: None)
        eval_mode (bool): run the model in eval mode during the attack. (Default: True)

    Shape:
        - images: (N, C, H, W) or any (N, ...) in [0, 1].
        - labels: (N,) integer class indices (targets when ``targeted``).
        - output: same shape and dtype as ``images``.

    Examples::
        >>> import torch, torch.nn as nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
        >>> images, labels = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
        >>> attack = PGD(model, eps=0.3, alpha=0.01, steps=40, generator=0)
        >>> torch.equal(attack(images, labels), attack(images, labels))
        True
        >>> cnn = CNN()                         # Madry-style training: snnl.train.train(..., transform=...)
        >>> sorted(evaluate(cnn, PGD(cnn, eps=0.3, steps=3)(images, labels), labels))
        ['accuracy', 'ce']
    """

    def __init__(self, model: nn.Module, eps: float = 0.3, alpha: float = 0.01, steps: int = 40,
                 random_start: bool = True, targeted: bool = False,
                 generator: int | torch.Generator | None = None, eval_mode: bool = True):
        super().__init__(model, eps, alpha, steps, targeted, eval_mode)
        self.random_start = bool(random_start)
        if generator is not None and not isinstance(generator, (int, torch.Generator)):
            raise TypeError(f"generator must be an int seed, a torch.Generator or None, got {generator!r}")
        self.generator = generator

    def perturb(self, images, labels):
        adv = images.clone()
        if self.random_start:
            gen = self.generator
            if isinstance(gen, int):
                gen = torch.Generator().manual_seed(gen)
            dev = gen.device if gen is not None else images.device
            noise = torch.rand(images.shape, generator=gen, device=dev, dtype=images.dtype)
            adv = (adv + (2 * noise.to(images.device) - 1) * self.eps).clamp_(0.0, 1.0)
        return self._iterate(adv, images, labels)
