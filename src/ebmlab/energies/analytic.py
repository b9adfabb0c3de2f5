"""Analytic targets with exact log-density, exact samples and exact log Z.

Each is an ``nn.Module`` energy ``U`` (buffers only, no parameters) with

* ``forward(x) -> U(x)`` of shape ``(B,)``,
* ``log_prob(x) = -U(x) - log Z`` (normalised),
* ``log_partition() = log ∫ exp(-U)``, exact,
* ``sample(n, generator=None)``, exact i.i.d. draws.

They serve as sampler test targets, benchmark targets and as the true data
density of the 2-D toy sets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

LOG_2PI = math.log(2 * math.pi)


class AnalyticEnergy(nn.Module):
    """Base for targets whose normalising constant and samples are known."""

    dim: int

    def log_partition(self) -> float:
        raise NotImplementedError

    def log_prob(self, x: Tensor) -> Tensor:
        return -self(x) - self.log_partition()

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def _check(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(
                f"{type(self).__name__} expects shape (B, {self.dim}), got {tuple(x.shape)}"
            )

    def _dtype_device(self) -> tuple[torch.dtype, torch.device]:
        b = next(iter(self.buffers()))
        return b.dtype, b.device


class Gaussian(AnalyticEnergy):
    """``U(x) = ½ (x−μ)ᵀ Σ⁻¹ (x−μ)`` (unnormalised), ``log Z = ½ d log 2π + ½ log det Σ``."""

    mean: Tensor  # buffers (registered in __init__), declared for type checkers
    cov: Tensor
    chol: Tensor
    precision: Tensor

    def __init__(self, mean: Sequence[float] | Tensor, cov: Sequence | Tensor | None = None):
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
        d = mean_t.numel()
        cov_t = torch.eye(d, dtype=torch.float64) if cov is None else torch.as_tensor(
            cov, dtype=torch.float64
        )
        if cov_t.shape != (d, d):
            raise ValueError(f"cov must have shape ({d}, {d}), got {tuple(cov_t.shape)}")
        if not torch.allclose(cov_t, cov_t.T):
            raise ValueError("cov must be symmetric")
        chol = torch.linalg.cholesky_ex(cov_t)
        if chol.info.item() != 0:
            raise ValueError("cov must be positive definite")
        self.dim = d
        self.register_buffer("mean", mean_t)
        self.register_buffer("cov", cov_t)
        self.register_buffer("chol", chol.L)
        self.register_buffer("precision", torch.cholesky_inverse(chol.L))

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        z = x - self.mean.to(x.dtype)
        return 0.5 * ((z @ self.precision.to(x.dtype)) * z).sum(dim=1)

    def log_partition(self) -> float:
        logdet = 2 * torch.log(torch.diagonal(self.chol)).sum().item()
        return 0.5 * self.dim * LOG_2PI + 0.5 * logdet

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        dtype, device = self._dtype_device()
        eps = torch.randn((n, self.dim), generator=generator, dtype=dtype, device=device)
        return self.mean + eps @ self.chol.T


class GaussianMixture(AnalyticEnergy):
    """Isotropic Gaussian mixture ``p(x) = Σₖ wₖ N(x; μₖ, σₖ² I)``, ``U = −log p`` (log Z = 0).

    ``stds`` is one number or one per component; ``weights`` default to uniform.
    """

    means: Tensor  # buffers
    stds: Tensor
    log_weights: Tensor

    def __init__(
        self,
        means: Sequence[Sequence[float]] | Tensor,
        stds: float | Sequence[float] | Tensor = 1.0,
        weights: Sequence[float] | Tensor | None = None,
    ) -> None:
        super().__init__()
        mu = torch.as_tensor(means, dtype=torch.float64)
        if mu.dim() != 2 or mu.shape[0] < 1:
            raise ValueError(f"means must have shape (K, dim), got {tuple(mu.shape)}")
        k = mu.shape[0]
        sd = torch.as_tensor(stds, dtype=torch.float64).reshape(-1).expand(k).clone()
        if (sd <= 0).any():
            raise ValueError("stds must be > 0")
        w = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else (
            torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
        )
        if w.shape != (k,) or (w <= 0).any():
            raise ValueError(f"weights must be {k} positive numbers")
        self.dim = mu.shape[1]
        self.register_buffer("means", mu)
        self.register_buffer("stds", sd)
        self.register_buffer("log_weights", torch.log(w / w.sum()))

    def component_log_probs(self, x: Tensor) -> Tensor:
        """``log wₖ + log N(x; μₖ, σₖ²I)``, shape ``(B, K)``."""
        self._check(x)
        mu, sd = self.means.to(x.dtype), self.stds.to(x.dtype)
        d2 = torch.cdist(x, mu).square()
        return (
            self.log_weights.to(x.dtype)
            - 0.5 * d2 / sd.square()
            - self.dim * torch.log(sd)
            - 0.5 * self.dim * LOG_2PI
        )

    def forward(self, x: Tensor) -> Tensor:
        return -torch.logsumexp(self.component_log_probs(x), dim=1)

    def log_partition(self) -> float:
        return 0.0

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        dtype, device = self._dtype_device()
        idx = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        eps = torch.randn((n, self.dim), generator=generator, dtype=dtype, device=device)
        return self.means[idx] + self.stds[idx, None] * eps


class Rings(AnalyticEnergy):
    """Concentric rings in 2-D, as in the Anatomy toy code: radius ``rₖ + sd·ε``, angle uniform.

    Density ``p(x) = (1/K) Σₖ N(‖x‖; rₖ, sd²) / (2π‖x‖)`` (rings equally weighted);
    ``U = −log p``. The radial normal puts mass ``Φ(−rₖ/sd)`` below radius 0, which
    does not exist in the plane, so ``log Z = log(1 − mean_k Φ(−rₖ/sd))`` exactly and
    ``sample`` draws the radius from the normal truncated to ``r > 0``.
    """

    radii: Tensor  # buffers
    sd: Tensor

    def __init__(self, radii: Sequence[float] = (1.0, 2.0, 3.0, 4.0), sd: float = 0.15):
        super().__init__()
        r = torch.as_tensor(radii, dtype=torch.float64).reshape(-1)
        if r.numel() < 1 or (r <= 0).any() or sd <= 0:
            raise ValueError("radii must be positive and sd > 0")
        self.dim = 2
        self.register_buffer("radii", r)
        self.register_buffer("sd", torch.tensor(float(sd), dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        # Keep the 1/‖x‖ factor finite at the origin, where the density is ~0 anyway.
        r = torch.linalg.vector_norm(x, dim=1).clamp_min(1e-12)
        sd, radii = self.sd.to(x.dtype), self.radii.to(x.dtype)
        z = (r[:, None] - radii) / sd
        log_radial = torch.logsumexp(-0.5 * z.square(), dim=1) - math.log(radii.numel())
        log_radial = log_radial - torch.log(sd) - 0.5 * LOG_2PI
        return -(log_radial - torch.log(2 * math.pi * r))

    def log_partition(self) -> float:
        below = torch.special.ndtr(-self.radii / self.sd).mean().item()
        return math.log1p(-below)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        dtype, device = self._dtype_device()
        k = torch.randint(0, self.radii.numel(), (n,), generator=generator, device=device)
        # Exact draw from the radial normal truncated to r > 0 (rejection; rarely repeats).
        r = self.radii[k] + self.sd * torch.randn((n,), generator=generator, dtype=dtype,
                                                  device=device)
        while bool((r <= 0).any()):
            bad = r <= 0
            r[bad] = self.radii[k[bad]] + self.sd * torch.randn(
                (int(bad.sum()),), generator=generator, dtype=dtype, device=device
            )
        theta = 2 * math.pi * torch.rand((n,), generator=generator, dtype=dtype, device=device)
        return torch.stack((r * torch.cos(theta), r * torch.sin(theta)), dim=1)
