"""Exact (Metropolis-adjusted) samplers: MALA and HMC.

Both keep, per chain, the energy and gradient at the current state, so each
transition costs one (MALA) or ``n_leapfrog`` (HMC) gradient evaluations.
Each chain accepts or rejects on its own. Opt-in step-size adaptation
(``adapt_steps > 0``) tunes one step size shared by all chains toward
``target_accept`` by dual averaging, then freezes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ebmlab.samplers.adaptation import DualAveraging, DualAveragingState
from ebmlab.samplers.base import (
    Energy,
    Sampler,
    SamplerState,
    StepInfo,
    _flat_norm,
    check_chains,
    check_positive,
    clip_grad_norm,
    energy_and_grad,
    gaussian_like,
    per_chain,
    uniform_like,
)


@dataclass
class MetropolisState(SamplerState):
    """A Metropolis chain always knows the energy and gradient at its state."""

    energy: Tensor
    grad: Tensor
    step_size: float = 0.0
    adaptation: DualAveragingState | None = None


def _sum_sq(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1).square().sum(dim=1)


class _Metropolis(Sampler):
    default_target_accept = 0.65

    def __init__(
        self,
        step_size: float,
        *,
        adapt_steps: int = 0,
        target_accept: float | None = None,
        clamp: tuple[float, float] | None = None,
        grad_clip: float | None = None,
    ) -> None:
        super().__init__(clamp=clamp, grad_clip=grad_clip)
        self.step_size = check_positive("step_size", step_size)
        target = self.default_target_accept if target_accept is None else target_accept
        self.adaptation = DualAveraging(target, adapt_steps) if adapt_steps else None
        if target_accept is not None and not 0 < target_accept < 1:
            raise ValueError(f"target_accept must be in (0, 1), got {target_accept!r}")

    def init(self, energy: Energy, x0: Tensor) -> MetropolisState:
        check_chains(x0)
        x = x0.detach().clone()
        u, g = energy_and_grad(energy, x)
        return MetropolisState(
            x=x,
            energy=u,
            grad=clip_grad_norm(g, self.grad_clip),
            step_size=self.step_size,
            adaptation=None if self.adaptation is None else self.adaptation.init(self.step_size),
        )

    def _proposal(
        self, energy: Energy, state: MetropolisState, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Return (y, U(y), ∇U(y), log acceptance ratio)."""
        raise NotImplementedError

    def step(
        self, energy: Energy, state: SamplerState, generator: torch.Generator | None = None
    ) -> tuple[MetropolisState, StepInfo]:
        assert isinstance(state, MetropolisState)
        y, u_y, g_y, log_ratio = self._proposal(energy, state, generator)
        # +inf proposal energy -> log_ratio = -inf -> rejected; NaN stays NaN and is reported.
        accept_prob = torch.exp(torch.clamp(log_ratio, max=0.0))
        log_unif = torch.log(uniform_like(state.x, state.x.shape[0], generator))
        accepted = (log_unif < log_ratio) & self._inside(y)
        mask = per_chain(accepted, y)
        new = MetropolisState(
            x=torch.where(mask, y, state.x),
            energy=torch.where(accepted, u_y, state.energy),
            grad=torch.where(mask, g_y, state.grad),
            n_steps=state.n_steps + 1,
            step_size=state.step_size,
            adaptation=state.adaptation,
        )
        if self.adaptation is not None and state.adaptation is not None:
            mean_accept = float(torch.nan_to_num(accept_prob, nan=0.0).mean())
            new.adaptation = self.adaptation.update(state.adaptation, mean_accept)
            new.step_size = new.adaptation.step_size
        info = StepInfo(
            energy=state.energy,
            grad_norm=_flat_norm(state.grad),
            accept_prob=accept_prob,
            accepted=accepted,
            step_size=state.step_size,
        )
        return new, info

    def _energy_grad(self, energy: Energy, x: Tensor) -> tuple[Tensor, Tensor]:
        u, g = energy_and_grad(energy, x)
        return u, clip_grad_norm(g, self.grad_clip)


class MALA(_Metropolis):
    """Metropolis-adjusted Langevin: propose ``y = x − s∇U(x) + √(2s)ξ``, accept w.p.

    ``min(1, exp(U(x) − U(y)) q(x|y)/q(y|x))``, ``q(y|x) ∝ exp(−‖y − x + s∇U(x)‖²/(4s))``.
    Exact for ``exp(−U)`` at any step size. Default adaptation target 0.574
    (optimal scaling of Roberts & Rosenthal 1998).
    """

    name = "mala"
    default_target_accept = 0.574

    def _proposal(
        self, energy: Energy, state: MetropolisState, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        assert state.energy is not None and state.grad is not None
        xi = gaussian_like(state.x, generator)
        return self._move(energy, state.x, state.energy, state.grad, xi, state.step_size)

    def _move(
        self, energy: Energy, x: Tensor, u_x: Tensor, g_x: Tensor, xi: Tensor, s: float
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        y = x - s * g_x + math.sqrt(2 * s) * xi
        u_y, g_y = self._energy_grad(energy, y)
        log_q_fwd = -0.5 * _sum_sq(xi)  # ‖y − x + s∇U(x)‖²/(4s) = ‖ξ‖²/2
        log_q_bwd = -_sum_sq(x - y + s * g_y) / (4 * s)
        log_ratio = u_x - u_y + log_q_bwd - log_q_fwd
        return y, u_y, g_y, log_ratio

    def propose(
        self, energy: Energy, x: Tensor, noise: Tensor, step_size: float | None = None
    ) -> tuple[Tensor, Tensor]:
        """The proposal from ``x`` with the given standard-normal ``noise`` ξ, and its log
        acceptance ratio ``log α = U(x) − U(y) + log q(x|y) − log q(y|x)`` (not clipped at 0),
        by the same code as :meth:`step`. Deterministic; for tests and diagnostics (detailed
        balance: the reverse move ``y → x`` has ``log α`` exactly ``−log α``)."""
        s = self.step_size if step_size is None else check_positive("step_size", step_size)
        u_x, g_x = self._energy_grad(energy, x)
        y, _, _, log_ratio = self._move(energy, x, u_x, g_x, noise, s)
        return y, log_ratio


class HMC(_Metropolis):
    """Hamiltonian Monte Carlo with ``n_leapfrog`` leapfrog steps of size ε.

    ``H(x, p) = U(x) + ½ pᵀM⁻¹p`` with a diagonal mass ``M`` (``mass``: a number,
    or a tensor broadcastable to one chain's shape); momentum refreshed each
    transition, accept w.p. ``min(1, exp(H₀ − H₁))``: exact for ``exp(−U)``.
    """

    name = "hmc"
    default_target_accept = 0.65

    def __init__(
        self,
        step_size: float,
        n_leapfrog: int = 10,
        mass: float | Tensor | None = None,
        *,
        adapt_steps: int = 0,
        target_accept: float | None = None,
        clamp: tuple[float, float] | None = None,
        grad_clip: float | None = None,
    ) -> None:
        super().__init__(step_size, adapt_steps=adapt_steps, target_accept=target_accept,
                         clamp=clamp, grad_clip=grad_clip)
        if isinstance(n_leapfrog, bool) or not isinstance(n_leapfrog, int) or n_leapfrog < 1:
            raise ValueError(f"n_leapfrog must be an integer >= 1, got {n_leapfrog!r}")
        self.n_leapfrog = n_leapfrog
        if mass is not None:
            m = torch.as_tensor(mass)
            if not torch.isfinite(m).all() or (m <= 0).any():
                raise ValueError("mass must be finite and > 0")
        self.mass = mass

    def _mass(self, x: Tensor) -> Tensor | None:
        if self.mass is None:
            return None
        m = torch.as_tensor(self.mass, dtype=x.dtype, device=x.device)
        try:
            return torch.broadcast_to(m, x.shape[1:])
        except RuntimeError:
            raise ValueError(
                f"mass of shape {tuple(m.shape)} does not broadcast to a chain's shape "
                f"{tuple(x.shape[1:])}"
            ) from None

    def _proposal(
        self, energy: Energy, state: MetropolisState, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        assert state.energy is not None and state.grad is not None
        m = self._mass(state.x)
        p = gaussian_like(state.x, generator)
        if m is not None:
            p = p * m.sqrt()
        x, u, g, _, log_ratio = self._leapfrog(energy, state.x, state.energy, state.grad, p,
                                               state.step_size)
        return x, u, g, log_ratio

    def _leapfrog(
        self, energy: Energy, x: Tensor, u0: Tensor, g: Tensor, p: Tensor, eps: float
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``n_leapfrog`` steps from ``(x, p)``: ``(x₁, U(x₁), ∇U(x₁), p₁, H₀ − H₁)``."""
        m = self._mass(x)
        inv_mass: Tensor | float = 1.0 if m is None else 1.0 / m
        kinetic0 = 0.5 * (p.square() * inv_mass).reshape(x.shape[0], -1).sum(dim=1)
        u = u0
        p = p - 0.5 * eps * g
        for i in range(self.n_leapfrog):
            x = x + eps * (p * inv_mass)
            u, g = self._energy_grad(energy, x)
            p = p - (eps if i < self.n_leapfrog - 1 else 0.5 * eps) * g
        kinetic1 = 0.5 * (p.square() * inv_mass).reshape(x.shape[0], -1).sum(dim=1)
        log_ratio = (u0 + kinetic0) - (u + kinetic1)
        return x, u, g, p, log_ratio

    def propose(
        self, energy: Energy, x: Tensor, momentum: Tensor, step_size: float | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The leapfrog proposal from ``(x, momentum)``: ``(y, final momentum, log α)`` with
        ``log α = H(x, p₀) − H(y, p₁)`` (not clipped at 0), by the same code as :meth:`step`.
        Deterministic; for tests and diagnostics (detailed balance: from ``(y, −p₁)`` the
        move returns to ``(x, −p₀)`` with ``log α`` exactly ``−log α``)."""
        eps = self.step_size if step_size is None else check_positive("step_size", step_size)
        u_x, g_x = self._energy_grad(energy, x)
        y, _, _, p1, log_ratio = self._leapfrog(energy, x, u_x, g_x, momentum, eps)
        return y, p1, log_ratio
