"""Shared behaviour of generators ``G(ξ; η)``: latent noise ``ξ ~ N(0, I)`` to samples."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ebmlab.energies.mlp import make_activation

OUTPUT_ACTIVATIONS = (None, "sigmoid", "tanh")

__all__ = ["Generator", "as_shape", "check_positive_int", "make_activation",
           "make_output_activation"]


def make_output_activation(name: str | None) -> nn.Module:
    """``None`` (identity), ``"sigmoid"`` (data in [0, 1]) or ``"tanh"`` (data in [−1, 1])."""
    if name is None:
        return nn.Identity()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "tanh":
        return nn.Tanh()
    raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {name!r}")


def check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def as_shape(output_shape: int | Sequence[int]) -> tuple[int, ...]:
    """``d`` or a sequence of positive ints, as a tuple."""
    shape = (output_shape,) if isinstance(output_shape, int) else tuple(output_shape)
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(
            f"output_shape must be a positive int or a sequence of positive ints, "
            f"got {output_shape!r}"
        )
    return shape


class Generator(nn.Module):
    """Base class: ``forward(z) -> x``, ``(B, latent_dim) -> (B, *output_shape)``.

    Subclasses set ``latent_dim`` and ``output_shape`` and implement ``_generate``.
    ``sample`` draws ``ξ ~ N(0, I)`` on the module's device and dtype and keeps the
    graph, so losses on the samples back-propagate into the generator's parameters.
    """

    latent_dim: int
    output_shape: tuple[int, ...]

    @property
    def output_dim(self) -> int:
        """``prod(output_shape)``."""
        return math.prod(self.output_shape)

    def _dtype_device(self) -> tuple[torch.dtype, torch.device]:
        p = next(iter(self.parameters()), None)
        if p is None:
            return torch.get_default_dtype(), torch.device("cpu")
        return p.dtype, p.device

    def _generate(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(
                f"{type(self).__name__} expects latent shape (B, {self.latent_dim}), "
                f"got {tuple(z.shape)}"
            )
        return self._generate(z).reshape(z.shape[0], *self.output_shape)

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``ξ ~ N(0, I)`` of shape ``(n, latent_dim)`` on the module's device and dtype."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an integer >= 0, got {n!r}")
        dtype, device = self._dtype_device()
        return torch.randn((n, self.latent_dim), generator=generator, dtype=dtype, device=device)

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        return_latent: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """``x = G(ξ)``, ``ξ ~ N(0, I)``: ``(n, *output_shape)``, or ``(x, ξ)`` if asked."""
        z = self.sample_latent(n, generator)
        x = self(z)
        return (x, z) if return_latent else x
