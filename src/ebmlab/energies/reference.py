"""A Gaussian reference term added to any energy (CoopNets / VALS, Eq. 1):

    U(x) = f(x) + ‖x‖² / (2 σ_ref²),

i.e. ``p(x) ∝ exp(−f(x)) · N(x; 0, σ_ref² I)``. With ``f`` of at most linear growth
(an MLP or ConvNet with piecewise-linear activations) the quadratic term wins far
from the data, so ``exp(−U)`` is always integrable and puts no mass at infinity — a
network alone can fall linearly outside the region its chains visit and put most of
its mass there, unseen by training and by a quadrature box.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ebmlab.energies import closed_form


class GaussianReference(nn.Module):
    """``energy(x) + ‖x‖²/(2·sd²)`` over all of ``x``'s entries; ``features`` passes through."""

    def __init__(self, energy: nn.Module, sd: float) -> None:
        super().__init__()
        if not sd > 0:
            raise ValueError(f"sd must be > 0, got {sd!r}")
        self.energy, self.sd = energy, float(sd)

    def forward(self, x: Tensor) -> Tensor:
        return self.energy(x) + x.reshape(x.shape[0], -1).square().sum(1) / (2 * self.sd**2)

    def energy_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(U(x), ∇ₓU(x))`` with ``∇ₓU = ∇ₓf + x/sd²``, ``∇ₓf`` from the wrapped
        network's own ``energy_and_grad`` when it has one (autograd otherwise)."""
        inner = getattr(self.energy, "energy_and_grad", None)
        if inner is None or not closed_form.enabled() or type(self) is not GaussianReference \
                or self._forward_hooks or self._forward_pre_hooks or self._backward_hooks \
                or self._backward_pre_hooks:
            return closed_form.autograd_energy_and_grad(self, x)
        u, g = inner(x)
        with torch.no_grad():
            u = u + x.reshape(x.shape[0], -1).square().sum(1) / (2 * self.sd**2)
            g = g + x * (1 / self.sd**2)
        return u, g

    def features(self, x: Tensor) -> Tensor:
        """The wrapped network's features (for SVGD's feature kernel)."""
        inner = getattr(self.energy, "features", None)
        if not callable(inner):
            raise AttributeError(f"{type(self.energy).__name__} has no features()")
        return inner(x)

    def extra_repr(self) -> str:
        return f"sd={self.sd:g}"
