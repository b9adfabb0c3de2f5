"""mmd2 against hand-computed values and the closed form for Gaussians."""

from __future__ import annotations

import math

import pytest
import torch

from ebmlab.evaluate import mmd2

Z = 4.5  # Monte-Carlo standard errors


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_mmd2_by_hand() -> None:
    # k(a, b) = exp(−‖a − b‖²/2) (ℓ = 1). Squared distances: within x 1, within y 5,
    # across 1, 4, 2, 1.
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    e = math.exp
    cross = (2 * e(-0.5) + e(-2.0) + e(-1.0)) / 4
    assert mmd2(x, y, bandwidth=1.0) == pytest.approx(e(-0.5) + e(-2.5) - 2 * cross, abs=1e-12)
    # ℓ = 2 scales every squared distance by 1/4.
    cross2 = (2 * e(-0.125) + e(-0.5) + e(-0.25)) / 4
    assert mmd2(x, y, bandwidth=2.0) == pytest.approx(e(-0.125) + e(-0.625) - 2 * cross2,
                                                      abs=1e-12)
    assert mmd2(x, y, bandwidth=1.0) == pytest.approx(mmd2(y, x, bandwidth=1.0), abs=1e-15)


def test_mmd2_of_a_set_with_itself() -> None:
    # Unbiased within-set terms, biased cross term: for two points at distance d the
    # estimate is k − 1 with k = exp(−d²/(2ℓ²)), and 2[(S − n)/(n(n−1)) − S/n²] in general.
    x = torch.tensor([[0.0, 0.0], [0.0, 3.0]])
    assert mmd2(x, x, bandwidth=1.5) == pytest.approx(math.exp(-2.0) - 1.0, abs=1e-12)
    pts = torch.randn(7, 3, generator=gen(0), dtype=torch.float64)
    k = torch.exp(-torch.cdist(pts, pts).square() / 2)
    s, n = k.sum().item(), 7
    assert mmd2(pts, pts, bandwidth=1.0) == pytest.approx(2 * ((s - n) / (n * (n - 1)) - s / n**2),
                                                          abs=1e-12)


def test_mmd2_default_bandwidth_is_the_pooled_median_distance() -> None:
    x = torch.randn(150, 2, generator=gen(1), dtype=torch.float64)
    y = torch.randn(120, 2, generator=gen(2), dtype=torch.float64) + 0.5
    med = torch.pdist(torch.cat((x, y))).median().item()
    assert mmd2(x, y) == pytest.approx(mmd2(x, y, bandwidth=med), abs=1e-12)
    assert mmd2(x, y) != pytest.approx(mmd2(x, y, bandwidth=2 * med), abs=1e-6)
    # float32 and image-shaped inputs are flattened and computed in float64.
    assert mmd2(x.float().reshape(150, 1, 2), y.float().reshape(120, 1, 2), bandwidth=1.0) \
        == pytest.approx(mmd2(x, y, bandwidth=1.0), abs=1e-6)


def block_estimates(shift: float, blocks: int = 20, n: int = 100) -> torch.Tensor:
    """Independent unbiased estimates on disjoint blocks of N(0, I₂) vs N(shift·e₁, I₂)."""
    g = gen(3)
    out = []
    for _ in range(blocks):
        x = torch.randn(n, 2, generator=g, dtype=torch.float64)
        y = torch.randn(n, 2, generator=g, dtype=torch.float64)
        y[:, 0] += shift
        out.append(mmd2(x, y, bandwidth=1.0))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_mmd2_matches_the_gaussian_closed_form(shift: float) -> None:
    # x ~ N(0, σ²I_d), y ~ N(Δ, σ²I_d), k = exp(−‖·‖²/(2ℓ²)):
    # MMD² = 2 c (1 − exp(−‖Δ‖²/(2(ℓ² + 2σ²)))), c = (ℓ²/(ℓ² + 2σ²))^(d/2).
    c = 1.0 / 3.0  # ℓ = σ = 1, d = 2
    exact = 2 * c * (1 - math.exp(-shift**2 / 6))
    est = block_estimates(shift)
    se = est.std().item() / math.sqrt(len(est))
    assert abs(est.mean().item() - exact) < Z * se
    if shift:
        assert exact > 2 * Z * se  # a real difference, clearly resolved


def test_mmd2_errors() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        mmd2(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="at least 2"):
        mmd2(torch.zeros(1, 2), torch.zeros(3, 2))
