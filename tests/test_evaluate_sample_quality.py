"""kde_log_density and kde_kl against hand-written densities and a Monte-Carlo KL."""

from __future__ import annotations

import math

import pytest
import torch

from ebmlab.energies import Gaussian
from ebmlab.evaluate.sample_quality import kde_kl, kde_log_density

Z = 4.5  # Monte-Carlo standard errors


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mixture_log_density(samples: torch.Tensor, points: torch.Tensor, h: torch.Tensor
                        ) -> torch.Tensor:
    """log (1/n) Σᵢ Πⱼ N(pⱼ; sᵢⱼ, hⱼ²), written out term by term."""
    out = torch.empty(len(points), dtype=torch.float64)
    for k, p in enumerate(points):
        dens = 0.0
        for s in samples:
            term = 1.0
            for j in range(samples.shape[1]):
                z = (p[j] - s[j]) / h[j]
                term *= math.exp(-0.5 * z.item() ** 2) / (math.sqrt(2 * math.pi) * h[j].item())
            dens += term
        out[k] = math.log(dens / len(samples))
    return out


def test_kde_log_density_by_hand() -> None:
    samples = torch.randn(5, 2, generator=gen(0), dtype=torch.float64)
    points = torch.randn(7, 2, generator=gen(1), dtype=torch.float64) * 1.5
    h = torch.tensor([0.3, 0.5], dtype=torch.float64)
    torch.testing.assert_close(kde_log_density(samples, points, h),
                               mixture_log_density(samples, points, h), rtol=0, atol=1e-12)
    # Default: Scott's rule, h = σ̂ · n^(−1/6) per coordinate (σ̂ with n − 1).
    n = len(samples)
    scott = torch.tensor([samples[:, j].numpy().std(ddof=1) * n ** (-1 / 6) for j in range(2)],
                         dtype=torch.float64)
    torch.testing.assert_close(kde_log_density(samples, points),
                               mixture_log_density(samples, points, scott), rtol=0, atol=1e-12)
    # float32 samples, many points (chunked): same values.
    many = torch.randn(5000, 2, generator=gen(2), dtype=torch.float64)
    full = kde_log_density(samples.float(), many, h)
    torch.testing.assert_close(full[:7], mixture_log_density(samples.float().double(),
                                                             many[:7], h), rtol=0, atol=1e-6)
    assert full.shape == (5000,) and full.dtype == torch.float64


def test_kde_density_integrates_to_one() -> None:
    samples = torch.randn(40, 2, generator=gen(3), dtype=torch.float64)
    xs = torch.linspace(-8, 8, 401, dtype=torch.float64)
    gx, gy = torch.meshgrid(xs, xs, indexing="ij")
    pts = torch.stack((gx.reshape(-1), gy.reshape(-1)), 1)
    mass = kde_log_density(samples, pts).exp().sum().item() * (16 / 400) ** 2
    assert mass == pytest.approx(1.0, abs=1e-4)


def test_kde_kl_matches_a_monte_carlo_kl() -> None:
    # KL(p ‖ q̂) = E_p[log p − log q̂], estimated from 20 000 draws of p with the
    # hand-written KDE: an independent route (sampling, not quadrature).
    data = Gaussian((0.0, 0.0))
    samples = Gaussian((0.4, -0.2), ((1.5, 0.3), (0.3, 0.8))).sample(200, generator=gen(4))
    got = kde_kl(data.log_prob, samples, (-7.0, 7.0))
    n = len(samples)
    h = samples.std(0) * n ** (-1 / 6)
    x = data.sample(20_000, generator=gen(5))
    # Vectorised hand formula (checked term by term in test_kde_log_density_by_hand).
    z = (x[:, None, :] - samples[None, :, :]) / h
    log_q = (torch.logsumexp(-0.5 * z.square().sum(-1), 1) - math.log(n)
             - math.log(2 * math.pi) - h.log().sum())
    diff = data.log_prob(x) - log_q
    mc, se = diff.mean().item(), diff.std().item() / math.sqrt(len(diff))
    assert abs(got - mc) < Z * se
    assert got > 0.1 and se < 0.01  # a real divergence, measured precisely


def test_kde_kl_uses_the_data_mass_on_the_grid_and_errors() -> None:
    # The data density restricted to the box is renormalised: a box that cuts the data
    # gives the same value as integrating the truncated density by hand.
    data = Gaussian((0.0, 0.0))
    samples = data.sample(100, generator=gen(6))
    box = (-1.5, 2.5)
    n_grid = 80
    c = torch.linspace(-1.5, 2.5, n_grid + 1, dtype=torch.float64)
    c = (c[1:] + c[:-1]) / 2
    gy, gx = torch.meshgrid(c, c, indexing="ij")
    pts = torch.stack((gx.reshape(-1), gy.reshape(-1)), 1)
    log_p = data.log_prob(pts)
    w = log_p.exp() / log_p.exp().sum()
    h = samples.std(0) * 100 ** (-1 / 6)
    log_q = mixture_log_density(samples, pts[::97], h)
    # Spot-check the KDE on a subset, then the full sum with the vectorised KDE.
    torch.testing.assert_close(kde_log_density(samples, pts[::97]), log_q, rtol=0, atol=1e-12)
    by_hand = (w * (log_p - kde_log_density(samples, pts))).sum().item()
    assert kde_kl(data.log_prob, samples, box, n_grid=n_grid) == pytest.approx(by_hand, abs=1e-12)
    with pytest.raises(ValueError, match="shape"):
        kde_kl(data.log_prob, torch.zeros(5, 3), (-3.0, 3.0))
    with pytest.raises(ValueError, match="NaN"):
        kde_kl(data.log_prob, torch.tensor([[0.0, math.nan], [1.0, 1.0]]), (-3.0, 3.0))


def test_kde_kl_with_a_data_density_of_bounded_support() -> None:
    # Uniform data on [0, 1]²: log p = −inf on most of the box, where cells contribute 0
    # (not NaN); inside, KL = −E_p[log q̂] by hand.
    def log_p(x: torch.Tensor) -> torch.Tensor:
        inside = ((x >= 0) & (x <= 1)).all(dim=1)
        return torch.where(inside, 0.0, -math.inf).to(torch.float64)

    samples = torch.rand(300, 2, generator=gen(7), dtype=torch.float64)
    got = kde_kl(log_p, samples, (-1.0, 2.0), n_grid=60)
    c = (torch.arange(60, dtype=torch.float64) + 0.5) / 60 * 3 - 1
    gy, gx = torch.meshgrid(c, c, indexing="ij")
    pts = torch.stack((gx.reshape(-1), gy.reshape(-1)), 1)
    inside = ((pts >= 0) & (pts <= 1)).all(dim=1)
    by_hand = -kde_log_density(samples, pts[inside]).mean().item()
    assert math.isfinite(got) and got == pytest.approx(by_hand, abs=1e-12)
