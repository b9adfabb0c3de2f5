"""Sliced Wasserstein distance between two samples (Rabin et al. 2011; Bonneel et al. 2015).

    SW_p(μ, ν)^p = E_{θ ~ U(S^{d−1})} [ W_p^p(θ#μ, θ#ν) ],

the average over random directions ``θ`` of the 1-D Wasserstein distance between the
projections ``⟨θ, x⟩``. In 1-D, ``W_p^p`` between empirical laws is the integral of
``|F⁻¹(t) − G⁻¹(t)|^p`` over ``t ∈ (0, 1)``; with equal sample sizes it is the mean of
``|x₍ᵢ₎ − y₍ᵢ₎|^p`` over sorted samples, otherwise both quantile functions are evaluated on
the merged grid of their jump points (exact for step functions). ``θ`` are drawn from a
generator seeded by ``seed``: the same seed, the same directions.

For Gaussians with equal covariances, ``SW_2² = ‖μ₁ − μ₂‖² / d`` (each projection is a
pair of 1-D Gaussians with equal variances, whose ``W_2`` is the distance of the means).
"""

from __future__ import annotations

import torch
from torch import Tensor


def wasserstein_1d(a: Tensor, b: Tensor, p: float = 2.0) -> Tensor:
    """``W_p^p`` between the empirical laws of the columns of ``a (n, k)`` and ``b (m, k)``
    (``k`` pairs of 1-D samples), shape ``(k,)``."""
    a, b = torch.sort(a, dim=0).values, torch.sort(b, dim=0).values
    n, m = a.shape[0], b.shape[0]
    if n == m:
        return (a - b).abs().pow(p).mean(dim=0)
    # quantile functions are step functions with jumps at i/n and j/m: integrate exactly
    t = torch.unique(torch.cat((torch.arange(1, n + 1, dtype=a.dtype) / n,
                                torch.arange(1, m + 1, dtype=a.dtype) / m)).clamp(max=1.0))
    widths = torch.diff(torch.cat((t.new_zeros(1), t)))
    mid = t - widths / 2  # a point inside each interval
    ia = torch.clamp((mid * n).long(), max=n - 1).to(a.device)
    ib = torch.clamp((mid * m).long(), max=m - 1).to(a.device)
    return ((a[ia] - b[ib]).abs().pow(p) * widths.to(a.device)[:, None]).sum(dim=0)


def sliced_wasserstein(x: Tensor, y: Tensor, n_projections: int = 500, p: float = 2.0,
                       seed: int = 0) -> float:
    """``SW_p`` between samples ``x (n, *shape)`` and ``y (m, *shape)`` (flattened), by
    ``n_projections`` random directions, float64 arithmetic."""
    if x.shape[1:] != y.shape[1:]:
        raise ValueError(f"samples differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.shape[0] < 1 or y.shape[0] < 1:
        raise ValueError("sliced_wasserstein needs at least 1 point in each sample")
    if n_projections < 1 or not p >= 1:
        raise ValueError(f"need n_projections >= 1 and p >= 1, got {n_projections}, {p}")
    a = x.detach().reshape(x.shape[0], -1).double()
    b = y.detach().reshape(y.shape[0], -1).double().to(a.device)
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(a.shape[1], n_projections, generator=g, dtype=torch.float64)
    theta = (theta / theta.norm(dim=0, keepdim=True)).to(a.device)
    return float(wasserstein_1d(a @ theta, b @ theta, p).mean() ** (1.0 / p))
