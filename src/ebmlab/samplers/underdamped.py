"""Underdamped (kinetic) Langevin with the BAOAB splitting (Leimkuhler & Matthews 2013).

SDE: ``dx = v dt``, ``dv = −∇U(x)/m dt − γ v dt + √(2γ/m) dW``; invariant law
``exp(−U(x) − ½ m‖v‖²)``, so ``x ~ exp(−U)``. One step of size h:

    B: v ← v − (h/2)∇U(x)/m    A: x ← x + (h/2)v
    O: v ← c·v + √((1−c²)/m)·ξ, c = e^{−γh}
    A: x ← x + (h/2)v          B: v ← v − (h/2)∇U(x)/m

one gradient per step; configurational bias O(h²) (exact for Gaussian targets
in the h → 0 limit and very small otherwise). This is the kinetic latent sampler
of the GEBM paper, which explores several modes within one chain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ebmlab.samplers.base import (
    Energy,
    Sampler,
    SamplerState,
    StepInfo,
    _flat_norm,
    check_positive,
    gaussian_like,
)


@dataclass
class UnderdampedState(SamplerState):
    velocity: Tensor | None = None


class UnderdampedLangevin(Sampler):
    """Kinetic Langevin, BAOAB. ``friction`` γ > 0; ``mass`` m > 0 (scalar).

    Velocities start from their stationary law ``N(0, 1/m)`` at the first step
    (drawn with the run's generator) and persist across steps.
    """

    name = "underdamped"

    def __init__(
        self,
        step_size: float,
        friction: float = 1.0,
        mass: float = 1.0,
        *,
        clamp: tuple[float, float] | None = None,
        grad_clip: float | None = None,
    ) -> None:
        super().__init__(clamp=clamp, grad_clip=grad_clip)
        self.step_size = check_positive("step_size", step_size)
        self.friction = check_positive("friction", friction)
        self.mass = check_positive("mass", mass)

    def init(self, energy: Energy, x0: Tensor) -> UnderdampedState:
        base = super().init(energy, x0)
        return UnderdampedState(x=base.x)

    def step(
        self, energy: Energy, state: SamplerState, generator: torch.Generator | None = None
    ) -> tuple[UnderdampedState, StepInfo]:
        assert isinstance(state, UnderdampedState)
        h, m = self.step_size, self.mass
        u0, g = self._grad_at(energy, state)
        v = state.velocity
        if v is None:
            v = gaussian_like(state.x, generator) / math.sqrt(m)
        c = math.exp(-self.friction * h)
        v = v - (0.5 * h / m) * g
        x = state.x + 0.5 * h * v
        v = c * v + math.sqrt((1 - c * c) / m) * gaussian_like(x, generator)
        x = x + 0.5 * h * v
        self._clamp_(x)
        new = UnderdampedState(x=x, velocity=v, n_steps=state.n_steps + 1)
        u1, g1 = self._grad_at(energy, new)
        new.velocity = v - (0.5 * h / m) * g1
        new.energy, new.grad = u1, g1
        return new, StepInfo(energy=u0, grad_norm=_flat_norm(g), step_size=h)
