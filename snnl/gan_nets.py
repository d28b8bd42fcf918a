"""The generators and discriminators of the GAN experiments (paper Section 3.2, Appendices D
and I): a fully connected pair (``"fc"``) and a convolutional one (``"dcgan"``, Radford et al.
2016), built by :func:`build_gan`; :mod:`snnl.gan` trains them."""

from __future__ import annotations

import torch
import torch.nn as nn

VARIANTS = ("fc", "dcgan")


def check_choice(kind: str, value, choices) -> None:
    """A one-line ValueError unless ``value`` is one of ``choices`` (a ``kind`` of option)."""
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; choose one of: {', '.join(choices)}")


class FCGenerator(nn.Module):
    """z -> w -> 2w -> 4w -> C*H*W (LeakyReLU 0.2, batch norm on the wider layers, sigmoid output)."""

    def __init__(self, z_dim: int = 64, shape=(1, 28, 28), width: int = 128):
        super().__init__()
        self.shape = tuple(shape)
        n = shape[0] * shape[1] * shape[2]
        self.net = nn.Sequential(nn.Linear(z_dim, width), nn.LeakyReLU(0.2),
                                 nn.Linear(width, 2 * width), nn.BatchNorm1d(2 * width), nn.LeakyReLU(0.2),
                                 nn.Linear(2 * width, 4 * width), nn.BatchNorm1d(4 * width), nn.LeakyReLU(0.2),
                                 nn.Linear(4 * width, n))

    def forward(self, z):
        return torch.sigmoid(self.net(z)).view(-1, *self.shape)


class FCDiscriminator(nn.Module):
    """C*H*W -> 4w -> 2w -> out_dim (LeakyReLU 0.2)."""

    def __init__(self, shape=(1, 28, 28), width: int = 128, out_dim: int = 1):
        super().__init__()
        n = shape[0] * shape[1] * shape[2]
        self.net = nn.Sequential(nn.Linear(n, 4 * width), nn.LeakyReLU(0.2), nn.Linear(4 * width, 2 * width),
                                 nn.LeakyReLU(0.2), nn.Linear(2 * width, out_dim))

    def forward(self, x):
        return self.net(x.flatten(1))


class DCGenerator(nn.Module):
    """z -> 2w x H/4 x W/4 -> (transposed conv, BN, ReLU) 2x up twice -> C x H x W (sigmoid)."""

    def __init__(self, z_dim: int = 64, shape=(1, 28, 28), width: int = 32):
        super().__init__()
        c, h, w = shape
        if h % 4 or w % 4:
            raise ValueError(f"the dcgan variant needs image sides divisible by 4, got {tuple(shape)}")
        self.start = (2 * width, h // 4, w // 4)
        self.fc = nn.Sequential(nn.Linear(z_dim, 2 * width * (h // 4) * (w // 4)),
                                nn.BatchNorm1d(2 * width * (h // 4) * (w // 4)), nn.ReLU())
        self.net = nn.Sequential(nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
                                 nn.ConvTranspose2d(width, c, 4, 2, 1))

    def forward(self, z):
        return torch.sigmoid(self.net(self.fc(z).view(-1, *self.start)))


class DCDiscriminator(nn.Module):
    """C x H x W -> (conv 4x4 stride 2, LeakyReLU 0.2) twice -> linear out_dim."""

    def __init__(self, shape=(1, 28, 28), width: int = 32, out_dim: int = 1):
        super().__init__()
        c, h, w = shape
        self.net = nn.Sequential(nn.Conv2d(c, width, 4, 2, 1), nn.LeakyReLU(0.2),
                                 nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten(),
                                 nn.Linear(2 * width * (h // 4) * (w // 4), out_dim))

    def forward(self, x):
        return self.net(x)


def build_gan(variant: str, shape=(1, 28, 28), z_dim: int = 64, width: int | None = None,
              out_dim: int = 1) -> tuple[nn.Module, nn.Module]:
    """A ``(generator, discriminator)`` pair of a ``variant`` (``"fc"`` or ``"dcgan"``) for images of ``shape``.

    ``out_dim`` is the discriminator's output size (1 for a GAN, ``embed_dim`` for App. I's
    learned space); generators end in a sigmoid (images in [0, 1]). :func:`train_gan` builds
    them from a :class:`GANConfig`:

    >>> import torch
    >>> generator, discriminator = build_gan("dcgan", shape=(1, 28, 28), z_dim=64)
    >>> images = generator(torch.randn(5, 64))
    >>> images.shape, discriminator(images).shape, bool(images.min() >= 0)
    (torch.Size([5, 1, 28, 28]), torch.Size([5, 1]), True)
    >>> real_fake_entanglement(torch.rand(5, 1, 28, 28), images.detach()).value >= 0
    True
    """
    check_choice("variant", variant, VARIANTS)
    if len(tuple(shape)) != 3:
        raise ValueError(f"shape must be (C, H, W), got {tuple(shape)}")
    if variant == "fc":
        w = width or 128
        return FCGenerator(z_dim, shape, w), FCDiscriminator(shape, w, out_dim)
    w = width or 32
    return DCGenerator(z_dim, shape, w), DCDiscriminator(shape, w, out_dim)
