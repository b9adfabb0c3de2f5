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
from ebmlab.evaluate.exact2d import as_box, bounds_from_points, grid_log_density

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
    assert res.edge_mass > 1e-4 and res.mass_outside > 0.1
    # The mass outside is counted (on the coarse outer rings), so log Z stays close;
    # the box alone underestimates it.
    assert res.log_z == pytest.approx(g.log_partition(), abs=2e-3)
    assert res.log_z_box < g.log_partition() - 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        log_partition(g, BOX, n_grid=100)
        quiet = log_partition(g, (-2.0, 2.0), n_grid=100, warn=False)
    assert quiet.edge_mass == pytest.approx(res.edge_mass)
    assert quiet.mass_outside == pytest.approx(res.mass_outside)


def test_kl_warns_when_data_mass_is_missing() -> None:
    g = Gaussian((0.0, 0.0))
    with pytest.warns(QuadratureWarning, match="data density has mass"):
        kl_divergence(g.log_prob, Gaussian((0.0, 0.0), ((0.1, 0.0), (0.0, 0.1))),
                      (-2.5, 2.5), n_grid=100)


BASE_KEYS = {"log_z", "log_z_box", "edge_mass", "model_mass_outside", "tail_converged"}


def test_evaluate_2d() -> None:
    target = toy_target("rings")
    x = make_toy("rings", 500, seed=9)
    out = evaluate_2d(target, "rings", x_test=x, n_grid=300)
    assert set(out) == BASE_KEYS | {"kl", "data_mass_outside", "nll"}
    assert abs(out["log_z"] - target.log_partition()) < 1e-8
    assert abs(out["kl"]) < 1e-6
    assert out["model_mass_outside"] < 1e-6 and 0 <= out["data_mass_outside"] < 1e-6
    assert out["tail_converged"] == 1.0
    assert out["nll"] == pytest.approx(-target.log_prob(x.double()).mean().item(), abs=1e-6)

    model = MLPEnergy(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QuadratureWarning)
        out = evaluate_2d(model, "swissroll", n_grid=100)
    assert set(out) == BASE_KEYS
    g = Gaussian(MEAN, COV)
    out = evaluate_2d(g, g.log_prob, bounds=BOX, n_grid=200)
    assert abs(out["kl"]) < 1e-8 and abs(out["log_z"] - g.log_partition()) < 1e-8
    out = evaluate_2d(g, x_test=g.sample(300), n_grid=200)
    assert set(out) == BASE_KEYS | {"nll"}
    assert toy_log_density("moons") is None


# -- mass outside the box ------------------------------------------------------------------
def _std_normal_box_mass(lo: float, hi: float) -> float:
    return 0.5 * (math.erf(hi / math.sqrt(2)) - math.erf(lo / math.sqrt(2)))


class BroadMixture(nn.Module):
    """``½·p_data + ½·N(0, 100² I)``: half the mass far outside the data's box."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.target = toy_target(name)
        self.broad = Gaussian((0.0, 0.0), ((1e4, 0.0), (0.0, 1e4)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.double()
        return math.log(2.0) - torch.logaddexp(self.target.log_prob(x), self.broad.log_prob(x))


def test_broad_mixture_scores_log_2_not_zero() -> None:
    # Normalised over the box alone this model scored KL 0.0008 nats; the truth is
    # E_p[-log(½ + ½ N/p)] ≈ log 2 (N/p is ~1e-5 where the data are).
    with pytest.warns(QuadratureWarning, match="outside the box"):
        out = evaluate_2d(BroadMixture("8gaussians"), "8gaussians")
    assert out["kl"] == pytest.approx(math.log(2.0), abs=0.05)
    assert out["kl"] == pytest.approx(math.log(2.0), abs=2e-3)
    assert out["model_mass_outside"] == pytest.approx(0.5, abs=2e-3)
    assert out["log_z"] == pytest.approx(0.0, abs=2e-3)
    assert out["log_z_box"] == pytest.approx(-math.log(2.0), abs=2e-3)
    target = toy_target("8gaussians")
    with pytest.warns(QuadratureWarning):
        kl = kl_divergence(target.log_prob, BroadMixture("8gaussians"), toy_bounds("8gaussians"))
    assert kl == pytest.approx(out["kl"], abs=1e-12)


def test_model_equal_to_data_scores_zero_with_no_outside_mass() -> None:
    target = toy_target("8gaussians")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing significant outside: no warning
        out = evaluate_2d(target, "8gaussians")
        part = log_partition(target, toy_bounds("8gaussians"))
    assert abs(out["kl"]) < 1e-6
    assert out["model_mass_outside"] < 1e-6 and part.mass_outside < 1e-6
    assert part.tail_converged and abs(part.log_z - target.log_partition()) < 1e-6


@pytest.mark.parametrize("box", [((-2.0, 2.0), (-2.0, 2.0)), ((-1.0, 3.0), (-2.5, 1.5))])
def test_mass_outside_matches_closed_form(box) -> None:
    g = Gaussian((0.0, 0.0))
    with pytest.warns(QuadratureWarning):
        res = log_partition(g, box, n_grid=100)
    inside = _std_normal_box_mass(*box[0]) * _std_normal_box_mass(*box[1])
    assert 1 - inside > 0.08
    # Midpoint error O(h²) on the first outer ring (cells 1/16 of the box width).
    assert res.mass_outside == pytest.approx(1 - inside, abs=5e-4)
    assert res.log_z_box == pytest.approx(g.log_partition() + math.log(inside), abs=1e-4)
    assert res.log_z == pytest.approx(g.log_partition(), abs=5e-4)
    assert res.tail_converged and res.outer_box is not None


def test_shifted_gaussian_kl_against_closed_form() -> None:
    # The model's mode sits near the box's edge: 6.7 % of its mass is outside.
    m1, c1 = (3.0, 1.0), ((4.0, 0.5), (0.5, 2.0))
    with pytest.warns(QuadratureWarning):
        kl = kl_divergence(Gaussian((0.0, 0.0)).log_prob, Gaussian(m1, c1), (-6, 6),
                           n_grid=200)
    exact = _kl_gauss((0.0, 0.0), ((1.0, 0.0), (0.0, 1.0)), m1, c1)
    assert kl == pytest.approx(exact, abs=1e-3)
    # Normalising over the box alone would have been off by -log(1 - 0.067) ≈ 0.07.
    assert abs(kl - exact) < 0.01 * 0.07


def test_heavy_power_law_tail_is_extrapolated() -> None:
    # p ∝ (1 + ‖x‖²)^(-3/2): Z = 2π, mass beyond radius R is (1 + R²)^(-1/2), 18 % outside
    # [-5, 5]²; found out to ~10⁷ box widths, the rest by the geometric tail limit.
    with pytest.warns(QuadratureWarning):
        res = log_partition(lambda x: 1.5 * torch.log1p(x.square().sum(1)), (-5, 5),
                            n_grid=200)
    assert res.tail_converged
    assert res.log_z == pytest.approx(math.log(2 * math.pi), abs=5e-4)
    assert res.mass_outside == pytest.approx(0.177, abs=5e-3)


def test_non_normalisable_energy_warns_and_gives_a_lower_bound() -> None:
    with pytest.warns(QuadratureWarning, match="not be integrable"):
        res = log_partition(lambda x: -x.norm(dim=1), (-3, 3), n_grid=50)
    assert not res.tail_converged and res.mass_outside > 0.999
    assert res.log_z > res.log_z_box + 1e3


def test_outer_rings_errors() -> None:
    g = Gaussian((0.0, 0.0))
    with pytest.raises(ValueError, match="n_outer"):
        log_partition(g, (-5, 5), n_grid=20, n_outer=30)

    def nan_far(x: torch.Tensor) -> torch.Tensor:
        u = 0.5 * x.square().sum(1)
        return torch.where(x.abs().max(1).values > 8, math.nan, u)

    with pytest.raises(ValueError, match="outside the box"):
        log_partition(nan_far, (-5, 5), n_grid=20)


def test_exact_evaluation_of_an_mlp_is_fast() -> None:
    import time

    model = MLPEnergy(2, width=64, depth=3, activation="leaky_relu")
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QuadratureWarning)
        evaluate_2d(model, "8gaussians")
    assert time.perf_counter() - start < 5.0  # ~0.5 s on one shared CPU core


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


def test_bounded_support_model_converges_without_warning() -> None:
    # exp(−U) is zero beyond radius 7: the outer rings find zero mass and stop there
    # (no "not integrable" warning); the mass between the box and radius 7 is counted.
    def disc(x: torch.Tensor) -> torch.Tensor:
        u = 0.5 * x.square().sum(1)
        return torch.where(x.norm(dim=1) > 7.0, math.inf, u)

    with pytest.warns(QuadratureWarning, match="box is too small"):
        res = log_partition(disc, (-2.0, 2.0), n_grid=100)
    assert res.tail_converged
    assert res.log_z == pytest.approx(math.log(2 * math.pi * (1 - math.exp(-24.5))), abs=2e-3)


def test_grid_log_density_is_normalised_over_the_plane() -> None:
    g = Gaussian(MEAN, COV)
    xs, ys, log_p, part = grid_log_density(g, (-2.0, 2.0), n_grid=100)
    assert xs.shape == ys.shape == (100,) and log_p.shape == (100, 100)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    pts = torch.stack((gx.reshape(-1), gy.reshape(-1)), 1)
    # The true density (up to the outer rings' accuracy), not the box-normalised one.
    torch.testing.assert_close(log_p.reshape(-1), g.log_prob(pts), rtol=0, atol=3e-3)
    cell = (4.0 / 100) ** 2
    assert log_p.exp().sum().item() * cell == pytest.approx(1 - part.mass_outside, abs=1e-3)
    assert part.mass_outside > 0.1


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_kl_rejects_a_nan_or_plus_inf_data_log_density(bad: float) -> None:
    g = Gaussian((0.0, 0.0))

    def log_p(x: torch.Tensor) -> torch.Tensor:
        out = g.log_prob(x)
        out[0] = bad
        return out

    with pytest.raises(ValueError, match="log_p_data"):
        kl_divergence(log_p, g, (-6, 6), n_grid=20)


@pytest.mark.parametrize("a", [1.25, 1.1])
def test_very_heavy_tail_reaches_the_largest_box_and_is_extrapolated(a: float) -> None:
    # p ∝ (1 + ‖x‖²)^(−a): Z = π/(a − 1), mass beyond R ∝ R^(−2(a−1)), still 10⁻² – 10⁻⁴ of
    # Z at 2²⁴ box widths; the geometric tail limit (exact for power laws) supplies it.
    with pytest.warns(QuadratureWarning):
        res = log_partition(lambda x: a * torch.log1p(x.square().sum(1)), (-5, 5), n_grid=200)
    assert res.tail_converged and res.outer_box[0][1] == 5.0 * 2**24
    assert res.log_z == pytest.approx(math.log(math.pi / (a - 1)), abs=1e-3)


def test_bounds_from_points_degenerate_axis() -> None:
    # Zero range on y: half-width 1; x padded by 50 % per side.
    box = bounds_from_points(torch.tensor([[0.0, 3.0], [4.0, 3.0]]))
    assert box == ((-2.0, 6.0), (2.0, 4.0))
    box = bounds_from_points(torch.tensor([[0.0, 3.0], [4.0, 3.0]]), pad=0.0)
    assert box == ((0.0, 4.0), (2.0, 4.0))
