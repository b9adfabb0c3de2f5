"""Conditional generators ``g(z, c, m)`` for image completion (cCoopNets, conditional VALS):
the latent ``z ~ N(0, I)`` and the condition — the masked image ``c`` (missing pixels 0)
and the mask ``m`` (1 = missing) — to whole images. ``c = m = None``: nothing observed
(``c = 0``, ``m = 1``), so ``g(z)`` is the model's unconditional generator and the module
is a :class:`~ebmlab.generators.base.Generator` like any other.

:class:`BoundGenerator` is ``z ↦ g(z, c, m)`` for one condition per row (a plain
generator of ``z``, e.g. for :class:`~ebmlab.generators.GeneratorPosterior`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ebmlab.energies.conditional import nothing_observed
from ebmlab.generators.base import Generator, as_shape, check_positive_int
from ebmlab.generators.mlp import MLPGenerator


class ConditionalMLPGenerator(Generator):
    """``g(z, c, m) = MLP([z, c, m])``: ``depth`` hidden layers of ``width`` units on the
    latent and the flattened condition and mask, ``(B, latent_dim + 2D) -> (B, *shape)``."""

    def __init__(self, latent_dim: int, output_shape: int | Sequence[int], width: int = 128,
                 depth: int = 2, activation: str = "leaky_relu") -> None:
        super().__init__()
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        self.output_shape = as_shape(output_shape)
        d = math.prod(self.output_shape)
        self.net = MLPGenerator(latent_dim + 2 * d, d, width=width, depth=depth,
                                activation=activation)

    def forward(self, z: Tensor, c: Tensor | None = None, m: Tensor | None = None) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"{type(self).__name__} expects latent shape (B, "
                             f"{self.latent_dim}), got {tuple(z.shape)}")
        if (c is None) != (m is None):
            raise ValueError("give both the condition c and the mask m, or neither")
        shape = (z.shape[0], *self.output_shape)
        if c is None or m is None:
            c, m = nothing_observed(z.new_zeros(shape))
        if tuple(c.shape) != shape or tuple(m.shape) != shape:
            raise ValueError(f"condition {tuple(c.shape)} and mask {tuple(m.shape)} must have "
                             f"shape {shape}")
        h = torch.cat((z, c.to(z.dtype).flatten(1), m.to(z.dtype).flatten(1)), dim=1)
        return self.net(h).reshape(shape)


class BoundGenerator(nn.Module):
    """``z ↦ g(z, c, m)`` for one condition per row; ``latent_dim`` is ``g``'s."""

    def __init__(self, generator: ConditionalMLPGenerator, c: Tensor, m: Tensor) -> None:
        super().__init__()
        self.generator, self.latent_dim = generator, generator.latent_dim
        self.c, self.m = c.detach(), m.detach()

    def forward(self, z: Tensor) -> Tensor:
        return self.generator(z, self.c, self.m)


__all__ = ["BoundGenerator", "ConditionalMLPGenerator"]
