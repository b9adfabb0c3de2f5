"""Gaussian inference networks ``π_β(z | x) = N(μ_β(x), diag exp(ℓ_β(x)))`` (VALS, Eq. 10).

An encoder maps a batch ``(B, *input_shape)`` to the mean and the log-variance of its
latent code, both ``(B, latent_dim)``. With a generator ``g`` as decoder it forms the VAE
of VALS: :meth:`GaussianEncoder.sample` draws the reparametrised code
``z = μ + exp(ℓ/2) ⊙ ε``, ``ε ~ N(0, I)`` (gradients flow into ``μ`` and ``ℓ``), and
:func:`kl_standard_normal` is the closed-form ``KL(N(μ, diag e^ℓ) ‖ N(0, I))``.

* :class:`MLPEncoder` — flat data (and any shape, flattened);
* :class:`ConvEncoder` — images ``(C, H, W)``: two 4×4 stride-2 convolutions (the VALS
  reference code's MNIST encoder, with fewer channels), then a linear head.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ebmlab.generators.base import as_shape, check_positive_int, make_activation


def kl_standard_normal(mean: Tensor, log_var: Tensor) -> Tensor:
    """``KL(N(μ, diag e^ℓ) ‖ N(0, I)) = ½ Σⱼ (μⱼ² + e^ℓⱼ − 1 − ℓⱼ)`` per row, ``(B,)``."""
    return 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var).sum(dim=1)


class GaussianEncoder(nn.Module):
    """Base class: ``forward(x) -> (mean, log_var)``, each ``(B, latent_dim)``.

    Subclasses set ``latent_dim`` and ``input_shape`` and implement ``_features``
    (``(B, *input_shape) -> (B, n_features)``); a linear head gives ``2·latent_dim``
    numbers, the mean and the log-variance.
    """

    latent_dim: int
    input_shape: tuple[int, ...]
    head: nn.Linear

    def _features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _accepts(self, shape: tuple[int, ...]) -> bool:
        return len(shape) >= 2 and shape[1:] == self.input_shape

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not self._accepts(tuple(x.shape)):
            raise ValueError(f"{type(self).__name__} expects input shape (B, "
                             f"{', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}")
        out = self.head(self._features(x))
        return out[:, :self.latent_dim], out[:, self.latent_dim:]

    def sample(self, x: Tensor, generator: torch.Generator | None = None
               ) -> tuple[Tensor, Tensor, Tensor]:
        """``(z, mean, log_var)`` with ``z = μ + exp(ℓ/2) ⊙ ε`` (reparametrised, keeps the
        graph)."""
        mean, log_var = self(x)
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + (0.5 * log_var).exp() * eps, mean, log_var


class MLPEncoder(GaussianEncoder):
    """``(B, *input_shape) -> (μ, ℓ)``: ``depth`` hidden layers of ``width`` units on the
    flattened input."""

    def __init__(self, input_shape: int | Sequence[int], latent_dim: int, width: int = 128,
                 depth: int = 2, activation: str = "leaky_relu") -> None:
        super().__init__()
        self.input_shape = as_shape(input_shape)
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        check_positive_int("width", width)
        check_positive_int("depth", depth)
        layers: list[nn.Module] = []
        d_in = math.prod(self.input_shape)
        for _ in range(depth):
            layers += [nn.Linear(d_in, width), make_activation(activation)]
            d_in = width
        self.net = nn.Sequential(*layers)
        self.head = nn.Linear(d_in, 2 * self.latent_dim)

    def _accepts(self, shape: tuple[int, ...]) -> bool:
        """Any batch with ``prod(input_shape)`` entries per row (it is flattened)."""
        return len(shape) >= 2 and math.prod(shape[1:]) == math.prod(self.input_shape)

    def _features(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))


class ConvEncoder(GaussianEncoder):
    """``(B, C, H, W) -> (μ, ℓ)``: 4×4 convolutions of stride 2 (``channels``, then
    ``2·channels``; each halves H and W), then a linear head on the flattened map."""

    def __init__(self, input_shape: Sequence[int], latent_dim: int, channels: int = 32,
                 activation: str = "leaky_relu") -> None:
        super().__init__()
        shape = as_shape(input_shape)
        if len(shape) != 3:
            raise ValueError(f"ConvEncoder needs an image shape (C, H, W), got {input_shape!r}")
        if min(shape[1:]) < 4:
            raise ValueError(f"ConvEncoder needs images of at least 4×4, got {shape[1]}×"
                             f"{shape[2]}")
        self.input_shape = shape
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        check_positive_int("channels", channels)
        self.net = nn.Sequential(
            nn.Conv2d(shape[0], channels, 4, stride=2, padding=1), make_activation(activation),
            nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1),
            make_activation(activation), nn.Flatten())
        with torch.no_grad():
            n_features = self.net(torch.zeros(1, *shape)).shape[1]
        self.head = nn.Linear(n_features, 2 * self.latent_dim)

    def _features(self, x: Tensor) -> Tensor:
        return self.net(x)


__all__ = ["ConvEncoder", "GaussianEncoder", "MLPEncoder", "kl_standard_normal"]
