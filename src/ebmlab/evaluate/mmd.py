"""Maximum mean discrepancy between two samples (Gretton et al. 2012).

Unbiased estimate with an RBF kernel ``k(x, y) = exp(−‖x − y‖²/(2ℓ²))``:

    MMD²ᵤ = mean_{i≠j} k(xᵢ, xⱼ) + mean_{i≠j} k(yᵢ, yⱼ) − 2 mean_{i,j} k(xᵢ, yⱼ).

``ℓ`` defaults to the median pairwise distance of the pooled sample. Works on
any ``(N, *shape)`` (flattened); zero in expectation when the laws agree.
"""

from __future__ import annotations

import torch
from torch import Tensor


def mmd2(x: Tensor, y: Tensor, bandwidth: float | None = None) -> float:
    """Unbiased MMD² between samples ``x`` and ``y`` (float64 arithmetic)."""
    if x.shape[1:] != y.shape[1:]:
        raise ValueError(f"samples differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError("mmd2 needs at least 2 points in each sample")
    a = x.detach().reshape(x.shape[0], -1).double()
    b = y.detach().reshape(y.shape[0], -1).double().to(a.device)
    if bandwidth is None:
        pooled = torch.cat((a, b))
        d = torch.pdist(pooled[torch.randperm(len(pooled), generator=torch.Generator()
                                              .manual_seed(0))[:2000]])
        bandwidth = float(d.median()) or 1.0
    gamma = 1.0 / (2.0 * bandwidth**2)

    def mean_k(p: Tensor, q: Tensor, same: bool) -> Tensor:
        k = torch.exp(-gamma * torch.cdist(p, q).square())
        if same:
            n = p.shape[0]
            return (k.sum() - k.diagonal().sum()) / (n * (n - 1))
        return k.mean()

    return float(mean_k(a, a, True) + mean_k(b, b, True) - 2 * mean_k(a, b, False))
