"""Exact 2-D quadrature: log Z, normalised densities, NLL and KL against closed forms."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from ebmlab.data.toy2d import make_toy, toy_bounds, toy_log_density, toy_target
from ebmlab.energies import Gaussian, MLPEnergy
from ebmlab.evaluate import (
    DEFAULT_N_GRID,
    PartitionResult,
    QuadratureWarning,
    evaluate_2d,
    kl_divergence,
    log_density,
    log_partition,
    nll,
)
from ebmlab.evaluate.exact2d import as_box, bounds_from_points

MEAN = (0.7, -0.4)
COV = ((1.0, 0.6), (0.6, 0.8))
BOX = ((-7.3, 8.7), (-8.4, 7.6))


def _kl_gauss(m0, c0, m1, c1) -> float:
    """``KL(N(m0, c0) ‖ N(m1, c1)) = ½[tr(c1⁻¹c0) + Δᵀc1⁻¹Δ − d + log det c1 − log det c0]``."""
    m0, c0, m1, c1 = (torch.as_tensor(v, dtype=torch.float64) for v in (m0, c0, m1, c1))
    p1 = torch.linalg.inv(c1)
    delta = m1 - m0
    val = (torch.trace(p1 @ c0) + delta @ p1 @ delta - len(m0)
           + torch.logdet(c1) - torch.logdet(c0))
    return 0.5 * val.item()


class Quadratic32(nn.Module):
    """A float32 energy with parameters: ``U = ½ (x−μ)ᵀ P (x−μ)``."""

    def __init__(self) -> None:
        super().__init__()
        self.mu = nn.Parameter(torch.tensor(MEAN, dtype=torch.float32))
        self.prec = nn.Parameter(torch.linalg.inv(torch.tensor(COV)).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dtype == torch.float32
        z = x - self.mu
        return 0.5 * ((z @ self.prec) * z).sum(1)


def test_log_z_exact_on_correlated_gaussian() -> None:
    g = Gaussian(MEAN, COV)
    res = log_partition(g, BOX)
    assert isinstance(res, PartitionResult) and res.n_grid == DEFAULT_N_GRID
    assert abs(res.log_z - g.log_partition()) < 1e-6
    assert res.edge_mass < 1e-10
    assert float(res) == res.log_z


def test_log_z_float32_energy_with_parameters() -> None:
    e = Quadratic32()
    res = log_partition(e, BOX)
    assert abs(res.log_z - Gaussian(MEAN, COV).log_partition()) < 1e-4
    assert all(p.requires_grad for p in e.parameters())


def test_log_density_and_nll_match_exact() -> None:
    g = Gaussian(MEAN, COV)
    res = log_partition(g, BOX, n_grid=200)
    x = g.sample(2000, generator=torch.Generator().manual_seed(0))
    lp = log_density(g, x, res)
    assert lp.dtype == torch.float64 and lp.shape == (2000,)
    torch.testing.assert_close(lp, g.log_prob(x), atol=1e-8, rtol=0)
    exact = -g.log_prob(x).mean().item()
    assert nll(g, x, res) == pytest.approx(exact, abs=1e-8)
    # Box derived from the test points (range padded by 50% per side).
    assert nll(g, x) == pytest.approx(exact, abs=1e-6)
    assert nll(g, x.numpy(), bounds=BOX, n_grid=200) == pytest.approx(exact, abs=1e-6)


@pytest.mark.parametrize("name", ["8gaussians", "rings"])
def test_kl_of_target_with_itself_is_zero(name: str) -> None:
    target = toy_target(name)
    assert abs(kl_divergence(target.log_prob, target, toy_bounds(name), n_grid=300)) < 1e-6


def test_kl_matches_closed_form_for_gaussians() -> None:
    m1, c1 = (-0.5, 0.3), ((1.5, -0.4), (-0.4, 0.7))
    p, q = Gaussian(MEAN, COV), Gaussian(m1, c1)
    kl = kl_divergence(p.log_prob, q, ((-8.0, 8.0), (-8.0, 8.0)))
    exact = _kl_gauss(MEAN, COV, m1, c1)
    assert exact > 0.5
    assert kl == pytest.approx(exact, abs=1e-5)


def test_kl_positive_for_a_wrong_model_and_infinite_off_support() -> None:
    target = toy_target("8gaussians")
    model = Gaussian((0.0, 0.0), ((4.0, 0.0), (0.0, 4.0)))
    assert kl_divergence(target.log_prob, model, (-12, 12), n_grid=300) > 0.1

    class HalfPlane(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            u = 0.5 * x.square().sum(1)
            return torch.where(x[:, 0] > 0, u, torch.full_like(u, math.inf))

    g = Gaussian((0.0, 0.0))
    assert kl_divergence(g.log_prob, HalfPlane(), (-8, 8), n_grid=100) == math.inf
    # The other way round the half-plane data density has -inf log p: zero contribution.
    half = HalfPlane()
    log_z_half = math.log(math.pi)  # half of 2π

    def log_p_half(x: torch.Tensor) -> torch.Tensor:
        return -half(x) - log_z_half

    exact = math.log(2.0)  # KL(half-normal ‖ normal) = log 2
    assert kl_divergence(log_p_half, g, (-8, 8), n_grid=400) == pytest.approx(exact, abs=1e-3)


def test_edge_mass_warning_when_box_too_small() -> None:
    g = Gaussian(MEAN, COV)
    with pytest.warns(QuadratureWarning, match="box is too small"):
        res = log_partition(g, (-2.0, 2.0), n_grid=100)
    assert res.edge_mass > 1e-4
    assert res.log_z < g.log_partition()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        log_partition(g, BOX, n_grid=100)
        quiet = log_partition(g, (-2.0, 2.0), n_grid=100, warn=False)
    assert quiet.edge_mass == pytest.approx(res.edge_mass)


def test_kl_warns_when_data_mass_is_missing() -> None:
    g = Gaussian((0.0, 0.0))
    with pytest.warns(QuadratureWarning, match="data density has mass"):
        kl_divergence(g.log_prob, Gaussian((0.0, 0.0), ((0.1, 0.0), (0.0, 0.1))),
                      (-2.5, 2.5), n_grid=100)


def test_evaluate_2d() -> None:
    target = toy_target("rings")
    x = make_toy("rings", 500, seed=9)
    out = evaluate_2d(target, "rings", x_test=x, n_grid=300)
    assert set(out) == {"log_z", "edge_mass", "kl", "nll"}
    assert abs(out["log_z"] - target.log_partition()) < 1e-8
    assert abs(out["kl"]) < 1e-6
    assert out["nll"] == pytest.approx(-target.log_prob(x.double()).mean().item(), abs=1e-6)

    model = MLPEnergy(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QuadratureWarning)
        out = evaluate_2d(model, "swissroll", n_grid=100)
    assert set(out) == {"log_z", "edge_mass"}
    g = Gaussian(MEAN, COV)
    out = evaluate_2d(g, g.log_prob, bounds=BOX, n_grid=200)
    assert abs(out["kl"]) < 1e-8 and abs(out["log_z"] - g.log_partition()) < 1e-8
    out = evaluate_2d(g, x_test=g.sample(300), n_grid=200)
    assert set(out) == {"log_z", "edge_mass", "nll"}
    assert toy_log_density("moons") is None


def test_eval_mode_restored_and_params_untouched() -> None:
    model = MLPEnergy(2, spectral_norm=True)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = log_partition(model, (-4, 4), n_grid=60, warn=False).log_z
    b = log_partition(model, (-4, 4), n_grid=60, warn=False).log_z
    assert a == b
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_input_errors() -> None:
    g = Gaussian((0.0, 0.0))
    with pytest.raises(ValueError, match="bounds are required"):
        log_partition(g)
    with pytest.raises(ValueError, match="lo < hi"):
        log_partition(g, (1.0, -1.0))
    with pytest.raises(ValueError, match="bounds must be"):
        as_box((1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="n_grid"):
        log_partition(g, (-5, 5), n_grid=3)
    with pytest.raises(ValueError, match="must map shape"):
        log_partition(lambda x: x, (-5, 5), n_grid=20)
    with pytest.raises(ValueError, match="NaN"):
        log_partition(lambda x: torch.full((x.shape[0],), math.nan), (-5, 5), n_grid=20)
    with pytest.raises(ValueError, match="shape"):
        nll(g, torch.zeros(5, 3), 0.0)
    with pytest.raises(ValueError, match="data must be"):
        evaluate_2d(g, 3, bounds=(-5, 5))  # type: ignore[arg-type]
    assert as_box((-1, 2)) == ((-1.0, 2.0), (-1.0, 2.0))
    assert as_box(((-1, 2), (0, 3))) == ((-1.0, 2.0), (0.0, 3.0))
    box = bounds_from_points(torch.tensor([[0.0, 0.0], [2.0, 4.0]]))
    assert box == ((-1.0, 3.0), (-2.0, 6.0))
