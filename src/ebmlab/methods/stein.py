"""Stein methods: SteinCD and amortized MLE / SteinGAN (Liu & Wang, the SteinCD-SteinGAN
paper in ``shared/papers``; equation numbers are that paper's).

Both update the energy with the CD-type gradient (Eq. 13 / Eq. 23)

    ∇_θ [ mean U(x⁺) − mean U(x⁻) ]        (f = −U),

and differ in where the negatives ``x⁻`` come from:

* :class:`SteinCD` (Algorithm 1): one SVGD step from the data batch,
  ``x⁻ = x⁺ + ε φ*(x⁺)``. ``symmetric=True`` is Eq. (17): the positives are
  moved the other way, ``x⁺ − ε φ*(x⁺)``, a central finite difference of Stein
  score matching (Eq. 15).
* :class:`SteinGAN` (Algorithm 2, amortized MLE): a generator ``x⁻ = G(ξ; η)``
  trained by back-propagating the SVGD direction, ``η ← η + ε Σᵢ ∂_η G(ξᵢ) φ*(xᵢ⁻)``
  (Eq. 21), i.e. minimising ``−mean ⟨G(ξᵢ), stop_grad φ*(xᵢ⁻)⟩`` with the
  generator's optimiser. ``kernel="none"`` replaces φ* by the plain gradient
  ``−∇U(xᵢ)`` per particle (the paper's "without the kernel": amortized MAP, no
  repulsion). ``cd_prob = α`` gives SteinCD-GAN(α): with probability α an
  iteration's energy update uses SteinCD negatives instead of the generator's
  (the generator is trained every iteration). The paper's stabiliser, a
  discount ``γ`` on the negative term, ``mean U(x⁺) − (1 − γ) mean U(x⁻)``,
  raised to ``discount_high`` while the data's energy exceeds the samples'
  (Sec. 5.2, "Stabilization"; it modifies Eq. 23, so SteinCD iterations of
  SteinCD-GAN(α) keep γ = 0), is off by default.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ebmlab.methods.base import Method, StepOutput
from ebmlab.samplers.base import clip_grad_norm, energy_and_grad
from ebmlab.samplers.svgd import SVGD

KERNELS = ("rbf", "features", "none")


def _stein_cd_negatives(energy: nn.Module, svgd: SVGD, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(φ*(x), x + ε φ*(x), ∇U(x))`` for a batch (one SVGD step, Algorithm 1 step 2)."""
    phi, _, grad = svgd.direction(energy, x.detach())
    x_neg = (x + svgd.step_size * phi).detach()
    svgd._clamp_(x_neg)
    return phi, x_neg, grad


def _mean_norm(v: Tensor) -> float:
    return float(v.reshape(v.shape[0], -1).norm(dim=1).mean())


class SteinCD(Method):
    """Stein contrastive divergence: negatives are one SVGD step from the data."""

    name = "steincd"

    def __init__(self, energy: nn.Module, sampler: SVGD, *, symmetric: bool = False,
                 energy_penalty: float = 0.0) -> None:
        if not isinstance(sampler, SVGD):
            raise ValueError(f"SteinCD needs an SVGD sampler, got {type(sampler).__name__}")
        self.energy, self.sampler = energy, sampler
        self.symmetric = bool(symmetric)
        self.energy_penalty = float(energy_penalty)

    def modules(self) -> dict[str, nn.Module]:
        return {"energy": self.energy}

    def step(self, batch: Tensor, generator: torch.Generator | None = None) -> StepOutput:
        phi, x_neg, grad = _stein_cd_negatives(self.energy, self.sampler, batch)
        x_pos = (batch - self.sampler.step_size * phi).detach() if self.symmetric else batch
        u_pos, u_neg = self.energy(x_pos), self.energy(x_neg)
        d_st = u_pos.mean() - u_neg.mean()
        loss = d_st
        if self.energy_penalty > 0:
            loss = loss + self.energy_penalty * (u_pos.square().mean() + u_neg.square().mean())
        metrics = {"d_st": float(d_st.detach()),
                   "r_t": self.sampler.step_size * _mean_norm(grad),
                   "phi_norm": _mean_norm(phi),
                   "energy_pos": float(u_pos.detach().mean()),
                   "energy_neg": float(u_neg.detach().mean())}
        return StepOutput(losses={"energy": loss}, metrics=metrics, negatives=x_neg)


class SteinGAN(Method):
    """Amortized MLE: an energy and a generator trained together (Algorithm 2)."""

    name = "steingan"

    def __init__(
        self,
        energy: nn.Module,
        generator: nn.Module,
        sampler: SVGD,
        *,
        kernel: str = "rbf",
        cd_prob: float = 0.0,
        discount: float = 0.0,
        discount_high: float | None = None,
        energy_penalty: float = 0.0,
        n_samples: int | None = None,
    ) -> None:
        if not isinstance(sampler, SVGD):
            raise ValueError(f"SteinGAN needs an SVGD sampler, got {type(sampler).__name__}")
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        if kernel == "features" and sampler.features is None:
            raise ValueError("kernel='features' needs an SVGD sampler built with features=...")
        if not 0.0 <= cd_prob <= 1.0:
            raise ValueError(f"cd_prob must be in [0, 1], got {cd_prob}")
        for key, value in (("discount", discount), ("discount_high", discount_high)):
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"{key} must be in [0, 1), got {value}")
        self.energy, self.generator, self.sampler = energy, generator, sampler
        self.kernel, self.cd_prob = kernel, float(cd_prob)
        self.discount = float(discount)
        self.discount_high = None if discount_high is None else float(discount_high)
        self.energy_penalty = float(energy_penalty)
        self.n_samples = n_samples
        self.name = "steingan" if cd_prob == 0 else "steincd_gan"

    def modules(self) -> dict[str, nn.Module]:
        return {"energy": self.energy, "generator": self.generator}

    def generate(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` generator samples ``G(ξ)``, ξ ~ N(0, I), shaped like the data."""
        p = next(self.generator.parameters(), None)
        z = torch.randn(n, self.generator.latent_dim, generator=generator,
                        device=None if p is None else p.device,
                        dtype=None if p is None else p.dtype)
        return self.generator(z)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor | None:
        with torch.no_grad():
            return self.generate(n, generator)

    def noise_init(self, n: int, generator: torch.Generator | None = None) -> Tensor | None:
        """Long-run checks start SVGD from the generator's samples."""
        return self.sample(n, generator)

    def stein_direction(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(φ*(x), ∇U(x))`` for the generator update; ``kernel="none"``: φ = ``−∇U(x)``
        per particle."""
        if self.kernel == "none":
            _, g = energy_and_grad(self.energy, x)
            g = clip_grad_norm(g, self.sampler.grad_clip)
            return -g, g
        phi, _, g = self.sampler.direction(self.energy, x)
        return phi, g

    def step(self, batch: Tensor, generator: torch.Generator | None = None) -> StepOutput:
        n = self.n_samples or batch.shape[0]
        x_gen = self.generate(n, generator).reshape(n, *batch.shape[1:])
        phi, grad = self.stein_direction(x_gen.detach())
        phi = phi.detach()
        # Eq. (21) as a loss: its gradient w.r.t. η is −(1/n) Σᵢ ∂_η G(ξᵢ) φ*(xᵢ).
        loss_gen = -(x_gen * phi).reshape(n, -1).sum(dim=1).mean()
        use_cd = self.cd_prob > 0 and bool(
            torch.rand((), generator=generator, device=batch.device) < self.cd_prob)
        x_neg = (_stein_cd_negatives(self.energy, self.sampler, batch)[1] if use_cd
                 else x_gen.detach())
        u_pos, u_neg = self.energy(batch), self.energy(x_neg)
        gamma = 0.0 if use_cd else self.discount
        if (not use_cd and self.discount_high is not None
                and bool(u_pos.detach().mean() > u_neg.detach().mean())):
            gamma = self.discount_high
        d_st = u_pos.mean() - u_neg.mean()
        loss = u_pos.mean() - (1.0 - gamma) * u_neg.mean()
        if self.energy_penalty > 0:
            loss = loss + self.energy_penalty * (u_pos.square().mean() + u_neg.square().mean())
        metrics: dict[str, Any] = {
            "d_st": float(d_st.detach()),
            "r_t": self.sampler.step_size * _mean_norm(grad),
            "phi_norm": _mean_norm(phi),
            "energy_pos": float(u_pos.detach().mean()),
            "energy_neg": float(u_neg.detach().mean()),
            "cd_update": float(use_cd),
        }
        if self.discount_high is not None or self.discount > 0:
            metrics["discount"] = gamma
        return StepOutput(losses={"energy": loss, "generator": loss_gen}, metrics=metrics,
                          negatives=x_neg)
