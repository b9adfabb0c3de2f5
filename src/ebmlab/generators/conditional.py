"""Conditional generators ``g(z, c, m)`` for image completion (cCoopNets, conditional VALS):
the latent ``z ~ N(0, I)`` and the condition — the masked image ``c`` (missing pixels 0)
and the mask ``m`` (1 = missing) — to whole images. ``c = m = None``: nothing observed
(``c = 0``, ``m = 1``), so ``g(z)`` is the model's unconditional generator and the module
is a :class:`~ebmlab.generators.base.Generator` like any other.

Two networks: :class:`ConditionalMLPGenerator` (``[generator] name = "mlp"``, any data)
and :class:`ConditionalConvGenerator` (``name = "conv"``, images: a small U-Net of 3×3
convolutions on the channel-stacked ``[c, m, z]``, ``z`` broadcast over the pixels).

:class:`BoundGenerator` is ``z ↦ g(z, c, m)`` for one condition per row (a plain
generator of ``z``, e.g. for :class:`~ebmlab.generators.GeneratorPosterior`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ebmlab.energies.conditional import nothing_observed
from ebmlab.generators.base import Generator, as_shape, check_positive_int, make_activation
from ebmlab.generators.mlp import MLPGenerator


class ConditionalGenerator(Generator):
    """Base class: ``forward(z, c=None, m=None)`` checks the shapes, fills in the
    nothing-observed condition and calls ``_conditional(z, c, m)``."""

    def _conditional(self, z: Tensor, c: Tensor, m: Tensor) -> Tensor:
        raise NotImplementedError

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
        return self._conditional(z, c.to(z.dtype), m.to(z.dtype)).reshape(shape)


class ConditionalMLPGenerator(ConditionalGenerator):
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

    def _conditional(self, z: Tensor, c: Tensor, m: Tensor) -> Tensor:
        return self.net(torch.cat((z, c.flatten(1), m.flatten(1)), dim=1))


class ConditionalConvGenerator(ConditionalGenerator):
    """``g(z, c, m)`` for images ``(C, H, W)``: a U-Net of 3×3 convolutions on ``[c, m, z]``
    stacked along the channels (``2C + latent_dim`` input channels, ``z`` constant over
    the pixels).

    ``depth`` levels: at level ``ℓ = 0..depth`` a 3×3 convolution with ``width·2^ℓ``
    channels (stride 2 from level 1 on, so level ℓ is ``H/2^ℓ × W/2^ℓ``), one more
    convolution at the bottom, then back up: nearest ×2 upsampling, concatenation with
    the level's encoder features (skip connection) and a 3×3 convolution; a final 1×1
    convolution to ``C`` channels. ``H`` and ``W`` must be divisible by ``2^depth``
    (8×8 and 28×28: ``depth ≤ 2``). The output keeps the input's resolution, so every
    missing pixel is predicted from its neighbourhood and, through the bottom level, the
    whole image.
    """

    def __init__(self, latent_dim: int, output_shape: Sequence[int], width: int = 32,
                 depth: int = 2, activation: str = "leaky_relu") -> None:
        super().__init__()
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        shape = as_shape(output_shape)
        if len(shape) != 3:
            raise ValueError(f"the conv conditional generator needs images (C, H, W), got "
                             f"shape {shape}")
        check_positive_int("width", width)
        check_positive_int("depth", depth)
        channels, height, wide = shape
        if height % 2**depth or wide % 2**depth:
            raise ValueError(f"depth = {depth} halves the {height}×{wide} images {depth} "
                             f"times: H and W must be divisible by {2**depth}")
        self.output_shape = shape
        widths = [width * 2**level for level in range(depth + 1)]
        self.down = nn.ModuleList()
        c_in = 2 * channels + latent_dim
        for level, w in enumerate(widths):
            self.down.append(nn.Sequential(
                nn.Conv2d(c_in, w, 3, stride=1 if level == 0 else 2, padding=1),
                make_activation(activation)))
            c_in = w
        self.bottom = nn.Sequential(nn.Conv2d(c_in, c_in, 3, padding=1),
                                    make_activation(activation))
        self.up = nn.ModuleList()
        for level in range(depth - 1, -1, -1):
            self.up.append(nn.Sequential(
                nn.Conv2d(widths[level + 1] + widths[level], widths[level], 3, padding=1),
                make_activation(activation)))
        self.out = nn.Conv2d(widths[0], channels, 1)

    def _conditional(self, z: Tensor, c: Tensor, m: Tensor) -> Tensor:
        _, height, wide = self.output_shape
        h = torch.cat((c, m, z[:, :, None, None].expand(-1, -1, height, wide)), dim=1)
        skips = []
        for block in self.down:
            h = block(h)
            skips.append(h)
        h = self.bottom(h)
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            h = nn.functional.interpolate(h, size=skip.shape[2:], mode="nearest")
            h = block(torch.cat((h, skip), dim=1))
        return self.out(h)


class BoundGenerator(nn.Module):
    """``z ↦ g(z, c, m)`` for one condition per row; ``latent_dim`` is ``g``'s."""

    def __init__(self, generator: ConditionalGenerator, c: Tensor, m: Tensor) -> None:
        super().__init__()
        self.generator, self.latent_dim = generator, generator.latent_dim
        self.c, self.m = c.detach(), m.detach()

    def forward(self, z: Tensor) -> Tensor:
        return self.generator(z, self.c, self.m)


__all__ = ["BoundGenerator", "ConditionalConvGenerator", "ConditionalGenerator",
           "ConditionalMLPGenerator"]
