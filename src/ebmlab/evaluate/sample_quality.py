"""Sample quality against an exact 2-D data density.

``kde_kl(log_p_data, samples, bounds)`` is ``KL(p_data ‖ p̂)`` where ``p̂`` is a
Gaussian kernel density estimate of the samples (Scott's bandwidth,
``h = σ̂ · n^(−1/6)`` per coordinate in 2-D), integrated by the midpoint rule on
the grid. It is exact in ``p_data`` and consistent as the sample grows: it
measures whether samples cover the data's mass, the failure that MMD is slow
to see (e.g. long-run chains that leave modes).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ebmlab.evaluate.exact2d import BoundsLike, make_grid


def kde_log_density(samples: Tensor, points: Tensor, bandwidth: Tensor | None = None) -> Tensor:
    """Log of a product-Gaussian KDE of ``samples (n, 2)`` at ``points (m, 2)``."""
    s = samples.detach().double()
    n = s.shape[0]
    h = s.std(0).clamp_min(1e-6) * n ** (-1.0 / 6.0) if bandwidth is None else bandwidth
    out = []
    for chunk in points.double().split(4096):
        z = (chunk[:, None, :] - s[None, :, :]) / h
        out.append(torch.logsumexp(-0.5 * z.square().sum(-1), dim=1))
    log_norm = math.log(n) + math.log(2 * math.pi) + torch.log(h).sum()
    return torch.cat(out) - log_norm


def kde_kl(log_p_data: Callable[[Tensor], Tensor], samples: Tensor, bounds: BoundsLike,
           n_grid: int = 150) -> float:
    """``KL(p_data ‖ KDE(samples))`` in nats on the box ``bounds``."""
    if samples.dim() != 2 or samples.shape[1] != 2:
        raise ValueError(f"samples must have shape (n, 2), got {tuple(samples.shape)}")
    finite = torch.isfinite(samples).all(dim=1)
    if not bool(finite.all()):
        raise ValueError(f"{int((~finite).sum())} samples are NaN or infinite")
    grid = make_grid(bounds, n_grid)
    pts = grid.points()
    log_p = log_p_data(pts).double()
    log_q = kde_log_density(samples, pts)
    p = log_p.exp() * grid.cell_area
    mask = p > 0
    return float((p[mask] * (log_p[mask] - log_q[mask])).sum() / p.sum())
