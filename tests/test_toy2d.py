"""Toy 2-D data sets: shapes, seeding, exact densities and agreement of samples with them."""

from __future__ import annotations

import math

import pytest
import torch

from ebmlab.data import toy2d
from ebmlab.data.toy2d import (
    TOY_DATASETS,
    checkerboard_log_density,
    make_toy,
    toy_bounds,
    toy_log_density,
    toy_target,
)
from ebmlab.evaluate.exact2d import make_grid

NAMES = list(TOY_DATASETS)
WITH_DENSITY = ["8gaussians", "25gaussians", "rings", "checkerboard"]


def _grid_log_p(name: str, n_grid: int = 400) -> tuple[torch.Tensor, float]:
    grid = make_grid(toy_bounds(name), n_grid)
    log_p = toy_log_density(name)(grid.points())
    return log_p, grid.cell_area


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_and_seeding(name: str) -> None:
    state = torch.random.get_rng_state()
    a = make_toy(name, 1000, seed=3)
    b = make_toy(name, 1000, seed=3)
    c = make_toy(name, 1000, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state), "global RNG was used"
    assert a.shape == (1000, 2) and a.dtype == torch.float32
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.std(dim=0).min() > 0.1
    assert make_toy(name, 0).shape == (0, 2)


@pytest.mark.parametrize("name", NAMES)
def test_points_lie_in_bounds(name: str) -> None:
    lo, hi = toy_bounds(name)
    x = make_toy(name, 5000, seed=1)
    assert ((x > lo) & (x < hi)).all()


def test_function_names_and_aliases() -> None:
    assert torch.equal(make_toy("spirals", 50, 2), toy2d.spirals(50, 2))
    assert torch.equal(make_toy("eight_gaussians", 50, 2), toy2d.eight_gaussians(50, 2))
    assert torch.equal(make_toy("25gaussians", 50, 2), toy2d.twentyfive_gaussians(50, 2))


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="valid names: 8gaussians, 25gaussians, rings"):
        make_toy("circles", 10)
    with pytest.raises(ValueError):
        toy_bounds("nope")


@pytest.mark.parametrize("bad", [-1, 2.5, True, "10"])
def test_bad_n(bad: object) -> None:
    with pytest.raises(ValueError, match="n must be"):
        make_toy("moons", bad)  # type: ignore[arg-type]


def test_bad_seed() -> None:
    with pytest.raises(ValueError, match="seed must be"):
        make_toy("moons", 10, seed=1.5)  # type: ignore[arg-type]


def test_densities_known_only_in_closed_form() -> None:
    for name in NAMES:
        assert (toy_log_density(name) is None) == (name not in WITH_DENSITY)
    assert toy_target("checkerboard") is None and toy_target("moons") is None


@pytest.mark.parametrize("name", ["8gaussians", "25gaussians", "rings"])
def test_density_normalised(name: str) -> None:
    log_p, area = _grid_log_p(name)
    mass = torch.exp(log_p).sum().item() * area
    assert mass == pytest.approx(1.0, abs=1e-3)


def test_checkerboard_density_exact() -> None:
    # The midpoint grid is aligned with the squares (cell width 10/500 divides 1), so
    # the quadrature of the piecewise-constant density is exact.
    log_p, area = _grid_log_p("checkerboard", n_grid=500)
    on = torch.isfinite(log_p)
    assert on.sum().item() * area == pytest.approx(32.0, abs=1e-9)  # 8 squares of area 4
    assert torch.exp(log_p).sum().item() * area == pytest.approx(1.0, abs=1e-12)
    x = make_toy("checkerboard", 5000, seed=0)
    assert (checkerboard_log_density(x) == -math.log(32.0)).all()
    # Each of the 8 squares gets about 1/8 of the points.
    cells = torch.floor(x.double() / 2.0)
    keys = (cells[:, 0] + 2) * 4 + (cells[:, 1] + 2)
    counts = torch.bincount(keys.long(), minlength=16)
    assert (counts > 0).sum() == 8
    assert counts[counts > 0].float().sub(625).abs().max() < 5 * math.sqrt(625)
    off = torch.tensor([[-3.0, -1.0], [1.0, -1.0], [4.5, 0.0], [0.0, -4.01]])
    assert torch.isinf(checkerboard_log_density(off)).all()
    assert checkerboard_log_density(torch.tensor([[-3.0, -3.0], [1.0, 1.0]])).isfinite().all()


@pytest.mark.parametrize("name", ["8gaussians", "25gaussians", "rings"])
def test_samples_match_density(name: str) -> None:
    """Mean log-density of the samples agrees with the quadrature ``E_p[log p] = −H(p)``."""
    log_p_grid, area = _grid_log_p(name)
    p = torch.exp(log_p_grid)
    neg_entropy = (p * torch.where(p > 0, log_p_grid, 0.0)).sum().item() * area
    x = make_toy(name, 20_000, seed=5)
    lp = toy_log_density(name)(x.double())
    se = lp.std().item() / math.sqrt(len(lp))
    assert abs(lp.mean().item() - neg_entropy) < 4 * se


def test_gaussian_sets_moments() -> None:
    x = make_toy("8gaussians", 20_000, seed=0).double()
    r2 = x.square().sum(1).mean().item()
    assert r2 == pytest.approx(8.0 + 2 * toy2d.EIGHT_SD**2, rel=0.01)
    assert x.mean(0).abs().max() < 0.06
    y = make_toy("25gaussians", 20_000, seed=0).double()
    # Per-axis variance: grid variance 1.5² · 2 plus the component variance.
    assert y.var(0).mean().item() == pytest.approx(4.5 + 0.04, rel=0.03)


def test_rings_radii() -> None:
    r = make_toy("rings", 20_000, seed=0).double().norm(dim=1)
    nearest = torch.round(r).clamp(1, 4)
    assert (r - nearest).abs().max() < 0.15 * 6
    assert torch.bincount(nearest.long(), minlength=5)[1:].min() > 4500
