"""Sliced Wasserstein distance against exact answers."""

from __future__ import annotations

import math

import pytest
import torch

from ebmlab.evaluate import sliced_wasserstein, wasserstein_1d


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_w1d_by_hand():
    # F⁻¹ of {0, 1} is 0 on (0, ½], 1 on (½, 1]; of {0.5} it is 0.5: |diff| = 0.5 everywhere.
    a = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    b = torch.tensor([[0.5]], dtype=torch.float64)
    assert float(wasserstein_1d(a, b, p=1)) == pytest.approx(0.5)
    assert float(wasserstein_1d(a, b, p=2)) == pytest.approx(0.25)
    # {0, 1, 2} vs {0, 3}: quantiles 0,0 | 1,0 on (1/3, 1/2] | 1,3 on (1/2, 2/3] | 2,3
    a = torch.tensor([[0.0], [1.0], [2.0]], dtype=torch.float64)
    b = torch.tensor([[3.0], [0.0]], dtype=torch.float64)
    expected = (1 / 6) * 1 + (1 / 6) * 2 + (1 / 3) * 1
    assert float(wasserstein_1d(a, b, p=1)) == pytest.approx(expected)


def test_unequal_sizes_agree_with_the_equal_size_formula_on_the_same_law():
    a = torch.randn(50, 3, generator=gen(0), dtype=torch.float64)
    b = torch.randn(50, 3, generator=gen(1), dtype=torch.float64)
    twice = torch.cat((b, b))  # the same empirical law with 100 points
    torch.testing.assert_close(wasserstein_1d(a, twice), wasserstein_1d(a, b))
    assert float(wasserstein_1d(b, twice).abs().max()) < 1e-12


def test_sliced_wasserstein_of_shifted_gaussians():
    # equal covariances: SW₂² = ‖Δμ‖²/d exactly; Δμ = (2, 0, 0, 0), d = 4: SW₂ = 1. Over
    # 2000 directions the average of (2θ₁)² has sd 1/√2000 ≈ 0.022 (SW₂: ≈ 0.011); the
    # finite samples add a bias of order 1e-3.
    n = 4000
    x = torch.randn(n, 4, generator=gen(2), dtype=torch.float64)
    y = torch.randn(n, 4, generator=gen(3), dtype=torch.float64) + torch.tensor(
        [2.0, 0, 0, 0], dtype=torch.float64)
    assert sliced_wasserstein(x, y, n_projections=2000) == pytest.approx(1.0, abs=0.05)
    same = sliced_wasserstein(x, torch.randn(n, 4, generator=gen(4), dtype=torch.float64))
    assert same < 0.05
    # a scale change is seen too: N(0, I) vs N(0, 4I): every projection has W₂ = 1
    z = 2 * torch.randn(n, 4, generator=gen(5), dtype=torch.float64)
    assert sliced_wasserstein(x, z, n_projections=200) == pytest.approx(1.0, abs=0.05)


def test_sliced_wasserstein_properties():
    x = torch.randn(300, 5, generator=gen(6))
    y = torch.randn(200, 5, generator=gen(7)) + 0.5
    d = sliced_wasserstein(x, y)
    assert d == pytest.approx(sliced_wasserstein(y, x), rel=1e-12)
    assert sliced_wasserstein(x, x) == 0.0
    assert d == pytest.approx(sliced_wasserstein(x[torch.randperm(300)], y), rel=1e-12)
    assert sliced_wasserstein(x, y, seed=1) != d  # other directions
    assert math.isfinite(sliced_wasserstein(x.reshape(300, 5, 1), y.reshape(200, 5, 1)))
    with pytest.raises(ValueError, match="differ in shape"):
        sliced_wasserstein(x, y[:, :3])
    with pytest.raises(ValueError, match="p >= 1"):
        sliced_wasserstein(x, y, p=0.5)
