"""Conditional energies ``U(x | c, m)`` for image completion (cCoopNets, conditional VALS).

The condition is a masked image: ``m`` is the mask (1 = missing) and ``c = x ⊙ (1 − m)``
the observed pixels with the missing ones set to 0 (the data mean, in standardised units).
The network reads the image, the condition and the mask stacked (:func:`stack_condition`:
along the channels of images ``(B, C, H, W)``, along the features of vectors ``(B, D)``):

    U(x | c, m) = f([x, c, m]) + ‖x‖² / (2σ_ref²),

the Gaussian reference term on ``x`` only (``σ_ref = model.reference_sd``; none: off).

``c = m = None`` is the condition with nothing observed (``c = 0``, ``m = 1``), so
``U(x) := U(x | nothing observed)`` is the model's density of whole images, and the module
is an energy ``(B, *shape) -> (B,)`` like any other (model samples, evaluation, the
long-run check). :class:`Conditioned` binds one condition per row.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def stack_condition(x: Tensor, c: Tensor, m: Tensor) -> Tensor:
    """``[x, c, m]`` stacked along dim 1 (channels of images, features of vectors)."""
    if c.shape != x.shape or m.shape != x.shape:
        raise ValueError(f"condition {tuple(c.shape)} and mask {tuple(m.shape)} must have the "
                         f"shape of the inputs {tuple(x.shape)}")
    return torch.cat((x, c.to(x.dtype), m.to(x.dtype)), dim=1)


def nothing_observed(x: Tensor) -> tuple[Tensor, Tensor]:
    """``(c, m) = (0, 1)`` of ``x``'s shape: every pixel missing."""
    return torch.zeros_like(x), torch.ones_like(x)


class ConditionalEnergy(nn.Module):
    """``U(x | c, m) = f([x, c, m]) + ‖x‖²/(2σ_ref²)``; ``net`` reads three stacked copies
    of the data's shape (``3C`` channels or ``3D`` features)."""

    def __init__(self, net: nn.Module, reference_sd: float | None = None) -> None:
        super().__init__()
        if reference_sd is not None and not reference_sd > 0:
            raise ValueError(f"reference_sd must be > 0, got {reference_sd!r}")
        self.net, self.reference_sd = net, reference_sd

    def forward(self, x: Tensor, c: Tensor | None = None, m: Tensor | None = None) -> Tensor:
        if (c is None) != (m is None):
            raise ValueError("give both the condition c and the mask m, or neither")
        if c is None or m is None:
            c, m = nothing_observed(x)
        u = self.net(stack_condition(x, c, m))
        if self.reference_sd is not None:
            u = u + x.reshape(x.shape[0], -1).square().sum(1) / (2 * self.reference_sd**2)
        return u


class Conditioned(nn.Module):
    """``U(· | c, m)`` for one condition per row: ``(B, *shape) -> (B,)`` with ``B`` the
    rows of ``c`` (an energy any sampler of the registry runs on)."""

    def __init__(self, energy: nn.Module, c: Tensor, m: Tensor) -> None:
        super().__init__()
        self.energy = energy
        self.c, self.m = c.detach(), m.detach().to(c.dtype)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] != self.c.shape[0]:
            raise ValueError(f"{x.shape[0]} chains for {self.c.shape[0]} conditions (one "
                             "chain per condition)")
        return self.energy(x, self.c.to(x.dtype), self.m.to(x.dtype))


__all__ = ["ConditionalEnergy", "Conditioned", "nothing_observed", "stack_condition"]
