"""Independent Metropolis–Hastings (IMH): proposals that ignore the current state.

Each transition draws ``y ~ q = N(loc, scale² I)`` independently of ``x`` and accepts
with probability

    min(1, exp(U(x) − U(y)) · q(x) / q(y)),   log q(x) = −‖x − loc‖² / (2 scale²) + const,

so the chain is exact for ``p ∝ exp(−U)`` (Tierney 1994) and uses no gradient. It
mixes well only when ``q`` covers ``p`` (bounded ``p/q``).

This is the "IMH" baseline of the GEBM paper (after Turner et al., MH-GAN) when run on
the latent energy ``U(z) = ½‖z‖² + E(G(z))/T`` with ``q = η = N(0, I)``: the ratio is
then ``exp((E(G(x)) − E(G(y)))/T)``, importance weights of the base's own samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ebmlab.samplers.base import (
    Energy,
    Sampler,
    SamplerState,
    StepInfo,
    check_chains,
    check_positive,
    per_chain,
    uniform_like,
)


@dataclass
class IndependentState(SamplerState):
    pass


class IndependentMH(Sampler):
    """IMH with a Gaussian proposal ``N(loc, scale² I)``; ``grad_clip`` is accepted and
    unused (no gradients). Proposals outside ``clamp`` are rejected (exact for the target
    truncated to the box)."""

    name = "imh"

    def __init__(
        self,
        scale: float = 1.0,
        loc: float = 0.0,
        *,
        clamp: tuple[float, float] | None = None,
        grad_clip: float | None = None,
    ) -> None:
        super().__init__(clamp=clamp, grad_clip=grad_clip)
        self.scale = check_positive("scale", scale)
        try:
            self.loc = float(loc)
        except (TypeError, ValueError):
            raise ValueError(f"loc must be a number, got {loc!r}") from None
        if self.loc != self.loc or abs(self.loc) == float("inf"):
            raise ValueError(f"loc must be finite, got {loc!r}")

    def log_proposal(self, x: Tensor) -> Tensor:
        """``log q(x)`` up to its constant, per chain."""
        flat = (x - self.loc).reshape(x.shape[0], -1)
        return -flat.square().sum(dim=1) / (2 * self.scale * self.scale)

    def _energy(self, energy: Energy, x: Tensor) -> Tensor:
        with torch.no_grad():
            u = energy(x)
        if not isinstance(u, Tensor) or u.shape != (x.shape[0],):
            shape = tuple(u.shape) if isinstance(u, Tensor) else type(u).__name__
            raise ValueError(f"energy must map a batch of shape {tuple(x.shape)} to shape "
                             f"({x.shape[0]},), got {shape}")
        return u.detach()

    def init(self, energy: Energy, x0: Tensor) -> IndependentState:
        check_chains(x0)
        x = x0.detach().clone()
        return IndependentState(x=x, energy=self._energy(energy, x))

    def step(
        self, energy: Energy, state: SamplerState, generator: torch.Generator | None = None
    ) -> tuple[IndependentState, StepInfo]:
        assert state.energy is not None
        x, u_x = state.x, state.energy
        y = self.loc + self.scale * torch.randn(x.shape, generator=generator, dtype=x.dtype,
                                                device=x.device)
        u_y = self._energy(energy, y)
        log_ratio = (u_x - u_y) + self.log_proposal(x) - self.log_proposal(y)
        accept_prob = torch.exp(torch.clamp(log_ratio, max=0.0))
        log_unif = torch.log(uniform_like(x, x.shape[0], generator))
        accepted = (log_unif < log_ratio) & self._inside(y)
        new = IndependentState(x=torch.where(per_chain(accepted, y), y, x),
                               energy=torch.where(accepted, u_y, u_x),
                               n_steps=state.n_steps + 1)
        info = StepInfo(energy=u_x, grad_norm=torch.zeros_like(u_x), accept_prob=accept_prob,
                        accepted=accepted)
        return new, info
