"""Stein variational gradient descent (Liu & Wang 2016; Stein paper Eq. 5).

Particles ``x₁..xₙ`` (the chains, flattened to vectors) move deterministically:

    xᵢ ← xᵢ + ε φ*(xᵢ),
    φ*(xᵢ) = (1/n) Σⱼ [ −∇U(xⱼ) k(xⱼ, xᵢ) + ∇_{xⱼ} k(xⱼ, xᵢ) ],

with the RBF kernel ``k(x, x') = exp(−‖x − x'‖²/h)`` and, when ``bandwidth`` is
``None``, the paper's median heuristic ``h = med²/log n`` (med: median pairwise
distance). ``normalize=True`` divides by ``Σⱼ k(xⱼ, xᵢ)`` instead of ``n``
(the SteinGAN variant). ``features=F`` puts the kernel on features,
``k(x, x') = exp(−‖F(x) − F(x')‖²/h)``; the repulsive term is then computed
exactly through F's Jacobian (one backward pass per feature dimension).
Particles interact, so unlike the MCMC samplers the chains are not independent.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ebmlab.samplers.base import (
    Energy,
    Sampler,
    SamplerState,
    StepInfo,
    _flat_norm,
    check_positive,
    clip_grad_norm,
    energy_and_grad,
    frozen,
)


def median_bandwidth(sq_dists: Tensor) -> Tensor:
    """``h = med²/log n`` from a matrix of squared pairwise distances (h = 1 if degenerate)."""
    n = sq_dists.shape[0]
    if n < 2:
        return sq_dists.new_ones(())
    iu = torch.triu_indices(n, n, offset=1, device=sq_dists.device)
    med_sq = sq_dists[iu[0], iu[1]].median()
    h = med_sq / math.log(n) if n > 2 else med_sq
    return torch.where(h > 0, h, torch.ones_like(h))


class SVGD(Sampler):
    """SVGD with an RBF kernel; see the module docstring for the update."""

    name = "svgd"

    def __init__(
        self,
        step_size: float,
        bandwidth: float | None = None,
        *,
        normalize: bool = False,
        features: Callable[[Tensor], Tensor] | None = None,
        clamp: tuple[float, float] | None = None,
        grad_clip: float | None = None,
    ) -> None:
        super().__init__(clamp=clamp, grad_clip=grad_clip)
        self.step_size = check_positive("step_size", step_size)
        self.bandwidth = None if bandwidth is None else check_positive("bandwidth", bandwidth)
        self.normalize = bool(normalize)
        self.features = features

    def __repr__(self) -> str:
        feats = None if self.features is None else getattr(
            self.features, "__qualname__", type(self.features).__name__)
        return (f"SVGD(step_size={self.step_size!r}, bandwidth={self.bandwidth!r}, "
                f"normalize={self.normalize}, features={feats}, clamp={self.clamp!r}, "
                f"grad_clip={self.grad_clip!r})")

    def kernel(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Kernel matrix ``K[i, j] = k(xⱼ, xᵢ)``, repulsion ``Σⱼ ∇_{xⱼ}k(xⱼ, xᵢ)``, bandwidth."""
        n = x.shape[0]
        flat = x.reshape(n, -1)
        if self.features is None:
            sq = torch.cdist(flat, flat).square()
            h = median_bandwidth(sq) if self.bandwidth is None else sq.new_tensor(self.bandwidth)
            k = torch.exp(-sq / h)
            # ∇_{xⱼ} k(xⱼ, xᵢ) = −(2/h)(xⱼ − xᵢ) k  ⇒  Σⱼ = (2/h)(xᵢ Σⱼ k − Σⱼ k xⱼ)
            repulse = (2 / h) * (flat * k.sum(dim=1, keepdim=True) - k @ flat)
            return k, repulse.reshape(x.shape), h
        return self._feature_kernel(x)

    def _feature_kernel(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        assert self.features is not None
        n = x.shape[0]
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            f = self.features(xg)
            if f.dim() != 2 or f.shape[0] != n:
                raise ValueError(f"features must map x to shape ({n}, m), got {tuple(f.shape)}")
            # jac[k, j] = ∂F_k(xⱼ)/∂xⱼ  (m backward passes; rows of F are per-particle)
            jac = torch.stack([
                torch.autograd.grad(f[:, k].sum(), xg, retain_graph=k + 1 < f.shape[1])[0]
                .reshape(n, -1)
                for k in range(f.shape[1])
            ])
        f = f.detach()
        sq = torch.cdist(f, f).square()
        h = median_bandwidth(sq) if self.bandwidth is None else sq.new_tensor(self.bandwidth)
        k = torch.exp(-sq / h)
        # Σⱼ Jⱼᵀ κ'(Fⱼ − Fᵢ) with κ'(u) = −(2/h) u κ(u):
        jt_f = torch.einsum("jk,kjd->jd", f, jac)  # Jⱼᵀ Fⱼ
        k_jac = torch.einsum("ij,kjd->kid", k, jac)  # Σⱼ K_ij Jⱼ[k]
        repulse = -(2 / h) * (k @ jt_f - torch.einsum("ik,kid->id", f, k_jac))
        return k, repulse.reshape(x.shape), h

    def direction(self, energy: Energy, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The Stein direction φ*(xᵢ) for every particle, with ``U(x)`` and ``∇U(x)``.

        Callable on its own (methods use it for one-step negatives): like a sampler
        run, the energy and ``features`` are evaluated in eval mode with frozen
        parameters, restored after (:func:`~ebmlab.samplers.base.frozen`).
        """
        with frozen(energy, self.features):
            u, g = energy_and_grad(energy, x)
            g = clip_grad_norm(g, self.grad_clip)
            k, repulse, _ = self.kernel(x)
        n = x.shape[0]
        drive = (k @ (-g).reshape(n, -1)).reshape(x.shape)
        denom = k.sum(dim=1) if self.normalize else x.new_full((n,), float(n))
        phi = (drive + repulse) / denom.view(-1, *([1] * (x.dim() - 1)))
        return phi, u, g

    def step(
        self, energy: Energy, state: SamplerState, generator: torch.Generator | None = None
    ) -> tuple[SamplerState, StepInfo]:
        phi, u, g = self.direction(energy, state.x)
        x = state.x + self.step_size * phi
        self._clamp_(x)
        info = StepInfo(energy=u, grad_norm=_flat_norm(g), step_size=self.step_size)
        return SamplerState(x=x, n_steps=state.n_steps + 1), info
